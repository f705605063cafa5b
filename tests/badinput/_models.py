"""Small things the corpus modules share: the compiled digits model read back, sample inputs, copies of the
artifact, and tiny ONNX models built with ``onnx.helper`` (integer inputs, unsupported ops, other opsets)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np


def loaded(art):
    """``art.compiled`` read back with :func:`tvm_mp.load` (no compile)."""
    import tvm_mp

    return tvm_mp.load(art.compiled)


def samples(art, n: int = 4) -> np.ndarray:
    """The first ``n`` calibration samples, float32 (n, 1, 8, 8)."""
    return np.load(art.calib_npy)[:n].astype(np.float32)


def _module_json(art) -> Path:
    return art.root / "scratch" / "digits-module.json"


def save_digits_module(art) -> None:
    """Write ``load_onnx(art.onnx)`` as TVM JSON once (in the test process), so cases that need the Relax module
    but do not test ``load_onnx`` read it in milliseconds instead of importing the ONNX file again (seconds)."""
    import tvm

    import tvm_mp

    path = _module_json(art)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        mod = tvm_mp.load_onnx(art.onnx, shapes={"input": (1, 1, 8, 8)})
        tmp = path.with_suffix(".tmp")
        tmp.write_text(tvm.ir.save_json(mod))
        tmp.replace(path)


def digits_module(art):
    """The digits CNN as ``tvm_mp.load_onnx(art.onnx, shapes={"input": (1, 1, 8, 8)})`` returns it."""
    import tvm

    path = _module_json(art)
    if path.exists():
        return tvm.ir.load_json(path.read_text())
    import tvm_mp

    return tvm_mp.load_onnx(art.onnx, shapes={"input": (1, 1, 8, 8)})


def artifact_copy(art, name: str) -> Path:
    """A fresh copy of the exported artifact in the case's scratch directory (cases may change it)."""
    dest = art.scratch(name) / "artifact"
    shutil.copytree(art.compiled, dest)
    return dest


def exact(a, b) -> None:
    """Assert bit-equality (same shape, same values) of two outputs."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    assert np.array_equal(a, b), f"outputs differ (max |diff| {np.max(np.abs(a.astype(np.float64) - b))})"


# --- tiny ONNX models ------------------------------------------------------------------------------------------


def _save(graph, path: Path, opset: int = 17, extra_domains: tuple[str, ...] = ()) -> Path:
    import onnx
    from onnx import helper

    imports = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in extra_domains]
    onnx.save(helper.make_model(graph, opset_imports=imports), str(path))
    return path


def uint8_image_model(path: Path) -> Path:
    """``img`` uint8 (1, 1, 8, 8) -> Cast float -> * 1/255 -> Conv 4x3x3 -> Relu -> Flatten -> MatMul (10)."""
    from onnx import TensorProto as T
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(4, 1, 3, 3)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.normal(size=4).astype(np.float32) * 0.1, "B"),
             numpy_helper.from_array(rng.normal(size=(4 * 6 * 6, 10)).astype(np.float32), "G"),
             numpy_helper.from_array(np.array(1 / 255, np.float32), "s")]
    nodes = [helper.make_node("Cast", ["img"], ["f"], to=T.FLOAT), helper.make_node("Mul", ["f", "s"], ["x"]),
             helper.make_node("Conv", ["x", "W", "B"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Flatten", ["r"], ["fl"]), helper.make_node("MatMul", ["fl", "G"], ["out"])]
    graph = helper.make_graph(nodes, "u8", [helper.make_tensor_value_info("img", T.UINT8, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("out", T.FLOAT, [1, 10])], inits)
    return _save(graph, path)


def index_model(path: Path) -> Path:
    """``x`` float (1, 8) -> MatMul (8x6) -> Gather(axis=1, ``idx`` int64 (3,)) -> (1, 3)."""
    from onnx import TensorProto as T
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.normal(size=(8, 6)).astype(np.float32), "G")]
    nodes = [helper.make_node("MatMul", ["x", "G"], ["y"]), helper.make_node("Gather", ["y", "idx"], ["out"], axis=1)]
    graph = helper.make_graph(nodes, "idx", [helper.make_tensor_value_info("x", T.FLOAT, [1, 8]),
                                             helper.make_tensor_value_info("idx", T.INT64, [3])],
                              [helper.make_tensor_value_info("out", T.FLOAT, [1, 3])], inits)
    return _save(graph, path)


def int64_offset_model(path: Path) -> Path:
    """``x`` float (1, 8) -> MatMul (8x4) -> + Cast(``k`` int64 (1, 4)) -> (1, 4)."""
    from onnx import TensorProto as T
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array(rng.normal(size=(8, 4)).astype(np.float32), "G")]
    nodes = [helper.make_node("MatMul", ["x", "G"], ["y"]), helper.make_node("Cast", ["k"], ["kf"], to=T.FLOAT),
             helper.make_node("Add", ["y", "kf"], ["out"])]
    graph = helper.make_graph(nodes, "off", [helper.make_tensor_value_info("x", T.FLOAT, [1, 8]),
                                             helper.make_tensor_value_info("k", T.INT64, [1, 4])],
                              [helper.make_tensor_value_info("out", T.FLOAT, [1, 4])], inits)
    return _save(graph, path)


def one_op_model(path: Path, op: str, opset: int = 17, domain: str = "") -> Path:
    """``y = op(x)`` on a float (1, 4) input (an op from ``domain`` when given)."""
    from onnx import TensorProto as T
    from onnx import helper

    node = helper.make_node(op, ["x"], ["y"], domain=domain)
    graph = helper.make_graph([node], "one", [helper.make_tensor_value_info("x", T.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", T.FLOAT, [1, 4])])
    return _save(graph, path, opset, (domain,) if domain else ())
