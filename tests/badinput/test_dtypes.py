"""Models whose inputs are not float32: uint8 image data, int64 indices, int64 offsets.

Class: integer inputs run as declared (``run`` and ``reference``), bit-exact, through export and load; values that
do not fit the declared type (floats, out of range, an index past its axis) are one line naming the input.
The models are built with ``onnx.helper``, compiled once per module (in the test process) and exported; the cases
read them back with ``tvm_mp.load``.
"""

from pathlib import Path

import numpy as np

from ._corpus import Case, corpus_tests
from ._models import exact, index_model, int64_offset_model, uint8_image_model

MODELS = ("u8", "idx", "offset")


def _models_dir(art) -> Path:
    return art.root / "scratch" / "dtype-models"


def _load(art, name):
    import tvm_mp

    return tvm_mp.load(_models_dir(art) / name)


def _images(n=4, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 1, 8, 8)).astype(np.uint8)


def _x(n=1, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 8)).astype(np.float32)


def _calibration(name):
    if name == "u8":
        return [_images(8, 1)]
    if name == "idx":
        return [{"x": _x(8, 1), "idx": np.array([0, 2, 5])}]
    return [{"x": _x(8, 1), "k": np.repeat(np.array([[1, -2, 3, 0]]), 8, axis=0)}]


def build_models(root: Path) -> None:
    """Compile each model at w8a8 and export it under ``root`` (once per module)."""
    import tvm_mp

    root.mkdir(parents=True, exist_ok=True)
    makers = {"u8": uint8_image_model, "idx": index_model, "offset": int64_offset_model}
    for name in MODELS:
        if (root / name / "model.so").exists():
            continue
        mod = tvm_mp.load_onnx(makers[name](root / f"{name}.onnx"))
        plan = tvm_mp.PrecisionPlan.uniform(mod, tvm_mp.Precision(8, 8))
        tvm_mp.compile(mod, plan=plan, calibration=_calibration(name)).export(root / name)


# --- uint8 image input ------------------------------------------------------------------------------------------

def _u8_exact(art):
    model = _load(art, "u8")
    assert model.input_dtypes == ["uint8"], model.inputs
    x = _images(6, 2)
    got = model.run(x)
    exact(got, model.reference(x))
    assert got.dtype == np.float32 and got.shape == (6, 10)
    return got.shape


def _u8_full_range(art):
    model = _load(art, "u8")
    x = np.stack([np.full((1, 8, 8), v, np.uint8) for v in (0, 1, 127, 128, 254, 255)])
    exact(model.run(x), model.reference(x))
    return x.shape


def _u8_from(art, make):
    """``run(make(images))`` equals ``run(images)``: other integer arrays whose values fit are converted exactly."""
    model = _load(art, "u8")
    x = _images(4, 3)
    exact(model.run(make(x)), model.run(x))
    exact(model.reference(make(x)), model.run(x))
    return x.shape


def as_int64(x):
    return x.astype(np.int64)


def as_list(x):
    return x.tolist()


def as_int8_wrapped(x):
    return x.astype(np.int16) - 300  # below 0: refused


def as_float(x):
    return x.astype(np.float32)


def as_big(x):
    y = x.astype(np.int64)
    y[0, 0, 0, 0] = 300
    return y


def as_complex(x):
    return x.astype(np.complex64)


def _u8_bad(art, make, method="run"):
    model = _load(art, "u8")
    return np.shape(getattr(model, method)(make(_images(2, 4))))


def _u8_compile_float_calibration(art):
    """Calibration follows the input rules too: float data for a uint8 input is refused (it would not be what
    ``run`` sees)."""
    import tvm_mp

    src = art.scratch("u8-float-calibration") / "u8.onnx"
    mod = tvm_mp.load_onnx(uint8_image_model(src))
    tvm_mp.compile(mod, plan=tvm_mp.PrecisionPlan.uniform(mod, tvm_mp.Precision(8, 8)),
                   calibration=[_images(4).astype(np.float32) / 255])


# --- int64 index input (ONNX Gather) ---------------------------------------------------------------------------

def _idx_exact(art, idx):
    model = _load(art, "idx")
    assert model.input_dtypes == ["float32", "int64"], model.inputs
    x = _x(1, 5)
    idx = np.asarray(idx)
    got = model.run(x, idx)
    exact(got, model.reference(x, idx))
    # the gathered columns are the right ones: compare with the all-columns view through the same model
    cols = np.concatenate([model.run(x, np.array([c, c, c]))[:, :1] for c in range(6)], axis=1)
    exact(got, cols[:, np.asarray(idx) % 6])
    return got.shape


def _idx_by_name(art):
    model = _load(art, "idx")
    x, idx = _x(1, 6), np.array([5, 0, 3])
    exact(model.run({"idx": idx, "x": x}), model.run(x, idx))
    exact(model.reference(idx=idx, x=x), model.run(x, idx))
    return "ok"


def _idx_larger_batch(art):
    """x batch 4 with the (3,) index vector: the index is not batched, it passes whole to every block."""
    model = _load(art, "idx")
    x, idx = _x(4, 7), np.array([1, 4, 2])
    got = model.run(x, idx)
    exact(got, model.reference(x, idx))
    exact(got, np.concatenate([model.run(x[i : i + 1], idx) for i in range(4)]))
    return got.shape


def _idx_bad(art, idx, method="run"):
    model = _load(art, "idx")
    return np.shape(getattr(model, method)(_x(1), idx))


# --- int64 offset input (Cast to float, Add) -------------------------------------------------------------------

def _offset_exact(art):
    model = _load(art, "offset")
    x, k = _x(3, 8), np.array([[5, -3, 0, 1000]])
    # k is not batched (its leading dimension 1 is the compiled batch: it is, so give it the batch of x)
    k3 = np.repeat(k, 3, axis=0)
    got = model.run(x, k3)
    exact(got, model.reference(x, k3))
    exact(got - model.run(x, np.zeros_like(k3)), k3.astype(np.float32))
    return got.shape


def _offset_batch_mismatch(art):
    model = _load(art, "offset")
    model.run(_x(3), np.zeros((1, 4), np.int64))


def _offset_from_int32(art):
    model = _load(art, "offset")
    x, k = _x(1, 9), np.array([[1, 2, 3, 4]], np.int32)
    exact(model.run(x, k), model.run(x, k.astype(np.int64)))
    return "ok"


CASES = [
    Case("u8-run-equals-reference", _u8_exact, "ok"),
    Case("u8-full-range", _u8_full_range, "ok"),
    Case("u8-from-int64", _u8_from, "ok", args=(as_int64,)),
    Case("u8-from-python-list", _u8_from, "ok", args=(as_list,)),
    Case("u8-float-array", _u8_bad, "error", "float values", "InputValueError", args=(as_float,)),
    Case("u8-float-array-reference", _u8_bad, "error", "float values", "InputValueError",
         args=(as_float, "reference")),
    Case("u8-value-300", _u8_bad, "error", "outside its range [0, 255]", "InputValueError", args=(as_big,)),
    Case("u8-negative", _u8_bad, "error", "outside its range", "InputValueError", args=(as_int8_wrapped,)),
    Case("u8-complex", _u8_bad, "error", "complex", "InputValueError", args=(as_complex,)),
    Case("u8-float-calibration", _u8_compile_float_calibration, "error", "float values", "CalibrationError"),
    Case("idx-run-equals-reference", _idx_exact, "ok", args=([0, 2, 5],)),
    Case("idx-negative-counts-from-end", _idx_exact, "ok", args=([-1, -6, 3],)),
    Case("idx-by-name", _idx_by_name, "ok"),
    Case("idx-larger-batch", _idx_larger_batch, "ok"),
    Case("idx-past-end", _idx_bad, "error", "indexes past", "InputValueError", args=(np.array([0, 6, 1]),)),
    Case("idx-past-end-reference", _idx_bad, "error", "indexes past", "InputValueError",
         args=(np.array([0, 1, 900000]), "reference")),
    Case("idx-below-start", _idx_bad, "error", "indexes past", "InputValueError", args=(np.array([-7, 0, 1]),)),
    Case("idx-float-indices", _idx_bad, "error", "float values", "InputValueError", args=(np.array([0.0, 1.5, 2.0]),)),
    Case("idx-wrong-length", _idx_bad, "error", "expected exactly (3,)", "InputShapeError",
         args=(np.array([0, 1, 2, 3]),)),
    Case("idx-beyond-int64", _idx_bad, "error", "outside its range", "InputValueError",
         args=(np.array([2**63, 0, 1], np.uint64),)),
    Case("offset-run-equals-reference", _offset_exact, "ok"),
    Case("offset-batch-mismatch", _offset_batch_mismatch, "error", "same batch", "InputShapeError"),
    Case("offset-from-int32", _offset_from_int32, "ok"),
]


def _build_models(art):
    build_models(_models_dir(art))


outcomes, test_case = corpus_tests(CASES, prepare=_build_models)
