"""Inputs to ``CompiledModel.run`` / ``.reference``: kinds of values, shapes, dtypes, names, layouts.

Class: every input mistake is one line naming the input; what is accepted gives ``run`` == ``reference`` exactly
(NaN/Inf are refused, so bit-exactness can never break silently). The rules: :mod:`tvm_mp.inputs`.
"""

import numpy as np

from ._corpus import Case, corpus_tests
from ._models import exact, loaded, samples


def _run(art, make, method="run"):
    """``model.<method>(make(x))`` on the loaded digits model; returns the output's shape."""
    model = loaded(art)
    out = getattr(model, method)(make(samples(art)))
    return np.shape(out)


def _same_as_reference(art, make):
    """``run(make(x))`` must equal ``reference(x)`` exactly (and ``run`` of the plain float32 array)."""
    model = loaded(art)
    x = samples(art)
    got = model.run(make(x))
    exact(got, model.reference(x))
    exact(got, model.run(x))
    return got.shape


def _with_value(art, value, method="run", dtype=np.float32, at=(0, 0, 3, 3)):
    x = samples(art).astype(dtype)
    x[at] = value
    return np.shape(getattr(loaded(art), method)(x))


def _call(art, args=(), kwargs=None, method="run"):
    return np.shape(getattr(loaded(art), method)(*args, **(kwargs or {})))


# value makers (module level: cases must pickle) ----------------------------------------------------------------

def complex_of(x):
    return x.astype(np.complex64) + 1j


def strings_of(x):
    return x.astype(str)


def bytes_of(x):
    return x.astype("S8")


def objects_of(x):
    return x.astype(object)


def datetimes_of(x):
    return np.zeros(x.shape, "datetime64[s]")


def none_of(x):
    return None


def string_of(x):
    return "image.png"


def ragged_of(x):
    return [[1.0, 2.0], [3.0]]


def list_of(x):
    return x.tolist()


def tuple_of(x):
    return tuple(map(tuple, x.reshape(len(x), -1).tolist()))


def float64_of(x):
    return x.astype(np.float64)


def uint8_of(x):
    return np.round(x * 16).astype(np.uint8)


def bool_of(x):
    return x > 0.5


def fortran_of(x):
    return np.asfortranarray(x)


def strided_of(x):
    wide = np.repeat(x, 2, axis=3)  # every other column is the original
    return wide[..., ::2]


def reversed_view_of(x):
    return x[::-1][::-1]


def readonly_of(x):
    y = x.copy()
    y.setflags(write=False)
    return y


def shape_9x9(x):
    return np.zeros((len(x), 1, 9, 9), np.float32)


def rank3(x):
    return x[:, 0]


def rank5(x):
    return x[..., None]


def batch0(x):
    return x[:0]


def scalar_of(x):
    return np.float32(1.0)


def transposed(x):
    return x.transpose(0, 1, 3, 2).copy().reshape(len(x), 8, 1, 8)


def _float16_case(art):
    model = loaded(art)
    x = samples(art).astype(np.float16)
    exact(model.run(x), model.reference(x.astype(np.float32)))
    return x.shape


def _uint8_case(art):
    model = loaded(art)
    x = uint8_of(samples(art))
    exact(model.run(x), model.reference(x.astype(np.float32)))
    return x.shape


def _bool_case(art):
    model = loaded(art)
    x = bool_of(samples(art))
    exact(model.run(x), model.reference(x.astype(np.float32)))
    return x.shape


def _float64_rounding(art):
    """float64 inputs are rounded to float32 first: run(x64) == reference(x64) == run(float32(x64))."""
    model = loaded(art)
    x = samples(art).astype(np.float64) + 1e-12
    exact(model.run(x), model.reference(x))
    exact(model.run(x), model.run(x.astype(np.float32)))
    return x.shape


def _dict_input(art):
    model = loaded(art)
    x = samples(art)
    exact(model.run({"input": x}), model.reference(x))
    exact(model.reference({"input": x}), model.reference(x))
    return x.shape


def _keyword_input(art):
    model = loaded(art)
    x = samples(art)
    exact(model.run(input=x), model.reference(input=x))
    exact(model.run(input=x), model.run(x))
    return x.shape


def _larger_batch(art, n):
    """A batch of ``n`` (compiled batch 1) runs block by block: equal to the reference and to one-by-one runs."""
    model = loaded(art)
    x = np.load(art.calib_npy)[:n]
    got = model.run(x)
    exact(got, model.reference(x))
    exact(got, np.concatenate([model.run(x[i : i + 1]) for i in range(n)]))
    return got.shape


def _nan_then_clean(art):
    """After a refused NaN input the same model still runs (no state is left behind)."""
    import tvm_mp

    model = loaded(art)
    x = samples(art)
    bad = x.copy()
    bad[1, 0, 2, 2] = np.nan
    try:
        model.run(bad)
    except tvm_mp.Error:
        pass
    else:
        raise AssertionError("NaN input accepted")
    exact(model.run(x), model.reference(x))
    exact(np.nan_to_num(bad)[0], x[0])
    return x.shape


def _input_specs(art):
    model = loaded(art)
    assert model.input_names == ["input"] and model.input_dtypes == ["float32"], model.inputs
    assert model.input_shapes == [(1, 1, 8, 8)]
    return repr(model.inputs)


CASES = [
    # non-finite values: refused by run and reference alike
    Case("nan-run", _with_value, "error", "NaN", "InputValueError", args=(np.nan,)),
    Case("nan-reference", _with_value, "error", "NaN", "InputValueError", args=(np.nan, "reference")),
    Case("inf-run", _with_value, "error", "Inf", "InputValueError", args=(np.inf,)),
    Case("neg-inf-float64", _with_value, "error", "Inf", "InputValueError", args=(-np.inf, "run", np.float64)),
    Case("float64-beyond-float32", _with_value, "error", "beyond", "InputValueError",
         args=(1e300, "run", np.float64)),
    Case("nan-names-position", _with_value, "error", "(2, 0, 5, 1)", "InputValueError",
         args=(np.nan, "run", np.float32, (2, 0, 5, 1))),
    Case("nan-then-clean-run", _nan_then_clean, "ok"),
    # kinds of values
    Case("complex-run", _run, "error", "complex", "InputValueError", args=(complex_of,)),
    Case("complex-reference", _run, "error", "complex", "InputValueError", args=(complex_of, "reference")),
    Case("string-array", _run, "error", "strings", "InputValueError", args=(strings_of,)),
    Case("bytes-array", _run, "error", "bytes", "InputValueError", args=(bytes_of,)),
    Case("object-array", _run, "error", "objects", "InputValueError", args=(objects_of,)),
    Case("datetime-array", _run, "error", "datetimes", "InputValueError", args=(datetimes_of,)),
    Case("none-input", _run, "error", "numeric array", "InputValueError", args=(none_of,)),
    Case("path-string-input", _run, "error", "got str", "InputValueError", args=(string_of,)),
    Case("ragged-list", _run, "error", "NumPy can read", "InputValueError", args=(ragged_of,)),
    Case("python-list", _same_as_reference, "ok", args=(list_of,)),
    # shapes
    Case("shape-9x9", _run, "error", "(batch, 1, 8, 8)", "InputShapeError", args=(shape_9x9,)),
    Case("rank-3", _run, "error", "rank 3", "InputShapeError", args=(rank3,)),
    Case("rank-5", _run, "error", "rank 5", "InputShapeError", args=(rank5,)),
    Case("transposed-shape", _run, "error", "(batch, 1, 8, 8)", "InputShapeError", args=(transposed,)),
    Case("batch-0-run", _run, "error", "batch 0", "InputShapeError", args=(batch0,)),
    Case("batch-0-reference", _run, "error", "batch 0", "InputShapeError", args=(batch0, "reference")),
    Case("scalar-input", _run, "error", "rank 0", "InputShapeError", args=(scalar_of,)),
    Case("tuple-rows-wrong-rank", _run, "error", "rank 2", "InputShapeError", args=(tuple_of,)),
    Case("batch-5", _larger_batch, "ok", args=(5,)),
    # dtypes
    Case("float64-rounded", _float64_rounding, "ok"),
    Case("float16", _float16_case, "ok"),
    Case("uint8-into-float", _uint8_case, "ok"),
    Case("bool-into-float", _bool_case, "ok"),
    # how inputs are given
    Case("no-inputs", _call, "error", "takes 1 input", "InputShapeError"),
    Case("two-inputs", _call, "error", "got 2", "InputShapeError", args=((np.zeros((1, 1, 8, 8)),) * 2,)),
    Case("dict-input", _dict_input, "ok"),
    Case("keyword-input", _keyword_input, "ok"),
    Case("dict-wrong-name", _call, "error", "unknown input name", "InputShapeError",
         args=(({"x": np.zeros((1, 1, 8, 8))},),)),
    Case("dict-extra-name", _call, "error", "'extra'", "InputShapeError",
         args=(({"input": np.zeros((1, 1, 8, 8)), "extra": 1},),)),
    Case("empty-dict", _call, "error", "missing", "InputShapeError", args=(({},),)),
    Case("keyword-wrong-name", _call, "error", "unknown input name", "InputShapeError",
         args=((), {"image": np.zeros((1, 1, 8, 8))})),
    Case("positional-and-keyword", _call, "error", "not both", "InputShapeError",
         args=((np.zeros((1, 1, 8, 8)),), {"input": np.zeros((1, 1, 8, 8))})),
    Case("input-specs", _input_specs, "ok"),
    # layouts: the same values in any memory layout give the same output
    Case("fortran-order", _same_as_reference, "ok", args=(fortran_of,)),
    Case("strided-view", _same_as_reference, "ok", args=(strided_of,)),
    Case("negative-stride-view", _same_as_reference, "ok", args=(reversed_view_of,)),
    Case("read-only-array", _same_as_reference, "ok", args=(readonly_of,)),
]


outcomes, test_case = corpus_tests(CASES)
