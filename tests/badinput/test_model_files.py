"""Model files given to ``load_onnx`` and ``tvm-mp compile``: missing, empty, not ONNX, cut short, ops or opsets TVM
cannot import, wrong ``shapes=``.

Class: one line naming the file (or the op, the opset, the input) and the fix; through the CLI the same line as
``tvm-mp: error: ...`` with exit code 2. The bad files are written once per module into ``scratch/model-files``.
"""

from pathlib import Path

from ._corpus import Case, cli_case, corpus_tests
from ._models import one_op_model

FILES = "{scratch}/../model-files"


def _files(art) -> Path:
    return art.root / "scratch" / "model-files"


def write_files(art) -> None:
    """The bad model files every case here reads (written once)."""
    d = _files(art)
    d.mkdir(parents=True, exist_ok=True)
    data = art.onnx.read_bytes()
    (d / "empty.onnx").write_bytes(b"")
    (d / "text.onnx").write_text("this is not a model\n")
    (d / "numpy.onnx").write_bytes(art.calib_npy.read_bytes())
    (d / "half.onnx").write_bytes(data[: len(data) // 2])
    (d / "tail.onnx").write_bytes(data[: len(data) - 40])
    (d / "head.onnx").write_bytes(data[:16])
    one_op_model(d / "custom.onnx", "MyCustomOp", domain="com.example")
    one_op_model(d / "stft.onnx", "STFT")
    one_op_model(d / "opset99.onnx", "Relu", opset=99)
    one_op_model(d / "opset1.onnx", "Relu", opset=1)
    (d / "a-directory.onnx").mkdir(exist_ok=True)


def _load(art, name, shapes=None):
    import tvm_mp

    path = _files(art) / name if isinstance(name, str) else name
    mod = tvm_mp.load_onnx(path, shapes=shapes)
    return [str(p.name) for p in mod["main"].params]


def _load_digits(art, shapes):
    import tvm_mp

    return len(tvm_mp.load_onnx(art.onnx, shapes=shapes)["main"].params)


def _opset1_relu(art):
    """An old opset the importer still knows: accepted, and the module computes relu."""
    import numpy as np

    import tvm_mp

    mod = tvm_mp.load_onnx(_files(art) / "opset1.onnx")
    from tvm_mp.quantize.interpreter import Interpreter

    x = np.array([[-1.0, 0.0, 2.0, -3.0]], np.float32)
    out = Interpreter(mod).run([x])
    assert np.array_equal(out, np.maximum(x, 0)), out
    return out.shape


def _model_bytes(art):
    import tvm_mp

    tvm_mp.load_onnx(art.onnx.read_bytes())


_COMPILE = ["--plan", "w8a8", "--calibration", "digits", "-o", "{scratch}/out"]


def _cli(id, name, match, shape=("input=1,1,8,8",)):
    shapes = [a for s in shape for a in ("--shape", s)]
    return cli_case(id, ["compile", f"{FILES}/{name}", *shapes, *_COMPILE], match)


CASES = [
    Case("missing-file", _load, "error", "not found", "ModelError", args=("no-such.onnx",)),
    Case("empty-file", _load, "error", "no ONNX graph", "ModelError", args=("empty.onnx",)),
    Case("text-file", _load, "error", "not a readable ONNX model", "ModelError", args=("text.onnx",)),
    Case("numpy-file", _load, "error", "not a readable ONNX model", "ModelError", args=("numpy.onnx",)),
    Case("truncated-half", _load, "error", "truncated", "ModelError", args=("half.onnx",)),
    Case("truncated-tail", _load, "error", "truncated", "ModelError", args=("tail.onnx",)),
    Case("truncated-head", _load, "error", "truncated", "ModelError", args=("head.onnx",)),
    Case("a-directory", _load, "error", "is a directory", "ModelError", args=("a-directory.onnx",)),
    Case("none-path", _load, "error", "got NoneType", "ModelError", args=(None,)),
    Case("bytes-not-path", _model_bytes, "error", "got bytes", "ModelError"),
    Case("custom-op", _load, "error", "MyCustomOp", "UnsupportedError", args=("custom.onnx",)),
    Case("stft-op", _load, "error", "STFT", "UnsupportedError", args=("stft.onnx",)),
    Case("opset-99", _load, "error", "opset 99", "UnsupportedError", args=("opset99.onnx",)),
    Case("opset-1", _opset1_relu, "ok"),
    Case("shapes-unknown-input", _load_digits, "error", "unknown input(s) 'x'", "InputShapeError",
         args=({"x": (1, 1, 8, 8)},)),
    Case("shapes-wrong-rank", _load_digits, "error", "rank 3", "InputShapeError", args=({"input": (1, 8, 8)},)),
    Case("shapes-negative", _load_digits, "error", "non-positive", "InputShapeError",
         args=({"input": (-1, 1, 8, 8)},)),
    Case("shapes-zero-batch", _load_digits, "error", "non-positive", "InputShapeError",
         args=({"input": (0, 1, 8, 8)},)),
    Case("shapes-float-dim", _load_digits, "error", "non-integer", "InputShapeError",
         args=({"input": (1.5, 1, 8, 8)},)),
    Case("shapes-bool-dim", _load_digits, "error", "non-integer", "InputShapeError",
         args=({"input": (True, 1, 8, 8)},)),
    Case("shapes-string", _load_digits, "error", "tuple of ints", "InputShapeError", args=({"input": "1,1,8,8"},)),
    Case("shapes-list-not-dict", _load_digits, "error", "must be a dict", "InputShapeError", args=([1, 1, 8, 8],)),
    Case("shapes-missing-for-dynamic", _load_digits, "error", "dynamic input dims", "InputShapeError", args=(None,)),
    Case("shapes-too-large", _load_digits, "error", "int32", "InputShapeError", args=({"input": (2**26, 1, 8, 8)},)),
    Case("shapes-wrong-channels", _load_digits, "error", "Conv", "ModelError", args=({"input": (1, 3, 8, 8)},)),
    Case("shapes-ok-batch-4", _load_digits, "ok", args=({"input": (4, 1, 8, 8)},)),
    _cli("cli-missing-file", "no-such.onnx", "not found"),
    _cli("cli-empty-file", "empty.onnx", "no ONNX graph"),
    _cli("cli-text-file", "text.onnx", "not a readable ONNX model"),
    _cli("cli-truncated", "half.onnx", "truncated"),
    _cli("cli-custom-op", "custom.onnx", "MyCustomOp", shape=()),
    _cli("cli-opset-99", "opset99.onnx", "opset 99", shape=()),
    _cli("cli-a-directory", "a-directory.onnx", "is a directory"),
    cli_case("cli-shape-unknown-input", ["compile", "{onnx}", "--shape", "image=1,1,8,8", *_COMPILE], "'image'"),
    cli_case("cli-shape-negative", ["compile", "{onnx}", "--shape", "input=-1,1,8,8", *_COMPILE], "input"),
]


outcomes, test_case = corpus_tests(CASES, prepare=write_files)
