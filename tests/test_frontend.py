"""Tests of tvm_mp.frontend.load_onnx: small ONNX graphs built inline, checked against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from tvm import relax

from tvm_mp import _tvm
from tvm_mp.errors import Error, InputShapeError, ModelError, UnsupportedError
from tvm_mp.frontend import load_onnx

RTOL, ATOL = 1e-4, 1e-5


# --- helpers ----------------------------------------------------------------------------------------------------


def _rand(rng, *shape, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, size=shape).astype(np.float32)


def _init(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def _vi(name, dims, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, dims)


def _model(nodes, inputs, outputs, inits=(), opset=17):
    """A ModelProto from nodes; ``inputs`` / ``outputs`` are (name, dims) pairs (dims None: unknown)."""
    graph = helper.make_graph(
        nodes,
        "g",
        [_vi(n, d) for n, d in inputs],
        [_vi(n, d) for n, d in outputs],
        list(inits),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8  # readable by the installed onnxruntime
    return model


def _ort(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def _relax_calls(mod, func="main"):
    """(op name, call) for every operator call bound in ``func``."""
    out = []
    for block in mod[func].body.blocks:
        for binding in block.bindings:
            value = binding.value
            if isinstance(value, relax.Call) and hasattr(value.op, "name"):
                out.append((value.op.name, value))
    return out


def _assert_static(mod):
    for param in mod["main"].params:
        assert all(isinstance(v, int) for v in _tvm.expr_shape(param))
    for block in mod["main"].body.blocks:
        for binding in block.bindings:
            ty = binding.var.ty
            if isinstance(ty, relax.TensorType):
                assert ty.shape is not None, binding
                _tvm.expr_shape(binding.var)  # raises if a dim is symbolic


def _check_matches_ort(model, feeds, shapes=None):
    """Import with load_onnx, compile for llvm, run, compare with onnxruntime; return the module."""
    mod = load_onnx(model, shapes)
    _assert_static(mod)
    got = _tvm.run_relax(_tvm.build(mod, "llvm"), list(feeds.values()))
    np.testing.assert_allclose(got, _ort(model, feeds), rtol=RTOL, atol=ATOL)
    return mod


def _assert_one_line(err, *words):
    msg = str(err.value)
    assert isinstance(err.value, Error)
    assert "\n" not in msg and msg.strip() == msg and msg
    for word in words:
        assert word in msg, f"{word!r} not in {msg!r}"


def _conv_bn_model(rng, bias=True, batch="N"):
    c_in, c_out = 3, 8
    inits = [
        _init("W", _rand(rng, c_out, c_in, 3, 3)),
        _init("scale", _rand(rng, c_out, lo=0.5, hi=1.5)),
        _init("beta", _rand(rng, c_out)),
        _init("mean", _rand(rng, c_out)),
        _init("var", _rand(rng, c_out, lo=0.5, hi=1.5)),
    ]
    conv_inputs = ["x", "W"]
    if bias:
        inits.append(_init("B", _rand(rng, c_out)))
        conv_inputs.append("B")
    nodes = [
        helper.make_node("Conv", conv_inputs, ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "scale", "beta", "mean", "var"], ["bn"], epsilon=1e-3),
        helper.make_node("Relu", ["bn"], ["y"]),
    ]
    return _model(nodes, [("x", [batch, c_in, 8, 8])], [("y", None)], inits)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def model_file(tmp_path, rng):
    """A real (static-shape) conv model saved to disk, with a weight big enough that half the file is mid-tensor."""
    inits = [_init("W", _rand(rng, 16, 3, 3, 3)), _init("B", _rand(rng, 16))]
    model = _model(
        [helper.make_node("Conv", ["x", "W", "B"], ["y"])], [("x", [1, 3, 8, 8])], [("y", None)], inits
    )
    path = tmp_path / "conv.onnx"
    onnx.save(model, str(path))
    return path


# --- graphs compared with onnxruntime -------------------------------------------------------------------------


def test_constant_node_weights(rng):
    w, b = _rand(rng, 8, 16), _rand(rng, 16)
    nodes = [
        helper.make_node("Constant", [], ["W"], value=numpy_helper.from_array(w, "W")),
        helper.make_node("Constant", [], ["B"], value=numpy_helper.from_array(b, "B")),
        helper.make_node("MatMul", ["x", "W"], ["m"]),
        helper.make_node("Add", ["m", "B"], ["y"]),
    ]
    model = _model(nodes, [("x", [4, 8])], [("y", None)])
    mod = _check_matches_ort(model, {"x": _rand(rng, 4, 8)})
    mm = [call for name, call in _relax_calls(mod) if name == "relax.matmul"]
    assert mm and _tvm.is_const(mm[0].args[1])


@pytest.mark.parametrize("bias", [True, False])
def test_conv_batchnorm_is_folded(rng, bias):
    model = _conv_bn_model(rng, bias=bias)
    mod = _check_matches_ort(model, {"x": _rand(rng, 2, 3, 8, 8)}, shapes={"x": (2, 3, 8, 8)})
    assert "batch_norm" not in mod.script(show_meta=False)
    calls = _relax_calls(mod)
    names = [n for n, _ in calls]
    assert names.count("relax.nn.conv2d") == 1
    conv = next(c for n, c in calls if n == "relax.nn.conv2d")
    assert _tvm.is_const(conv.args[1])
    # The folded bias is R.add(conv, const of shape (1, C, 1, 1)).
    adds = [c for n, c in calls if n == "relax.add"]
    assert any(_tvm.is_const(a.args[1]) and _tvm.expr_shape(a.args[1]) == (1, 8, 1, 1) for a in adds)


def test_batchnorm_without_conv_still_imports(rng):
    c = 4
    inits = [
        _init("scale", _rand(rng, c, lo=0.5, hi=1.5)),
        _init("beta", _rand(rng, c)),
        _init("mean", _rand(rng, c)),
        _init("var", _rand(rng, c, lo=0.5, hi=1.5)),
    ]
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("BatchNormalization", ["r", "scale", "beta", "mean", "var"], ["y"]),
    ]
    model = _model(nodes, [("x", [2, c, 5, 5])], [("y", None)], inits)
    _check_matches_ort(model, {"x": _rand(rng, 2, c, 5, 5)})


def _flatten_nodes(kind):
    """Nodes computing ``r = Reshape(x, [batch, -1])`` from x's runtime shape, as exporters emit it."""
    if kind == "gather":
        return [
            helper.make_node("Shape", ["x"], ["s"]),
            helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
            helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
            helper.make_node("Concat", ["n1", "minus1"], ["newshape"], axis=0),
            helper.make_node("Reshape", ["x", "newshape"], ["r"]),
        ]
    return [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Slice", ["s", "start0", "end1"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["newshape"], axis=0),
        helper.make_node("Reshape", ["x", "newshape"], ["r"]),
    ]


@pytest.mark.parametrize("kind", ["gather", "slice"])
def test_shape_subgraph_flatten_with_dynamic_batch(rng, kind):
    w, b = _rand(rng, 10, 36), _rand(rng, 10)
    inits = [
        _init("zero", np.array(0, np.int64)),
        _init("axes0", np.array([0], np.int64)),
        _init("minus1", np.array([-1], np.int64)),
        _init("start0", np.array([0], np.int64)),
        _init("end1", np.array([1], np.int64)),
        _init("W", w),
        _init("B", b),
    ]
    nodes = _flatten_nodes(kind) + [helper.make_node("Gemm", ["r", "W", "B"], ["y"], transB=1)]
    model = _model(nodes, [("x", ["batch", 4, 3, 3])], [("y", ["batch", 10])], inits)
    mod = _check_matches_ort(model, {"x": _rand(rng, 3, 4, 3, 3)}, shapes={"x": (3, 4, 3, 3)})
    names = [n for n, _ in _relax_calls(mod)]
    assert "relax.shape_of" not in names


def test_clip_and_hardsigmoid(rng):
    inits = [_init("lo", np.array(0.0, np.float32)), _init("hi", np.array(6.0, np.float32))]
    nodes = [
        helper.make_node("Clip", ["x", "lo", "hi"], ["c"]),
        helper.make_node("HardSigmoid", ["x"], ["h"], alpha=0.2, beta=0.5),
        helper.make_node("Add", ["c", "h"], ["y"]),
    ]
    model = _model(nodes, [("x", [2, 3, 4, 4])], [("y", None)], inits)
    _check_matches_ort(model, {"x": _rand(rng, 2, 3, 4, 4, lo=-8, hi=8)})


def test_dynamic_spatial_dims(rng):
    inits = [_init("W", _rand(rng, 4, 3, 3, 3)), _init("B", _rand(rng, 4))]
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    model = _model(nodes, [("x", [1, 3, "H", "W"])], [("y", [1, 4, "H2", "W2"])], inits)
    mod = _check_matches_ort(model, {"x": _rand(rng, 1, 3, 10, 12)}, shapes={"x": (1, 3, 10, 12)})
    assert _tvm.expr_shape(mod["main"].params[0]) == (1, 3, 10, 12)


def test_gemm_transb_weight_is_constant(rng):
    w, b = _rand(rng, 6, 5), _rand(rng, 6)  # (out, in), used as W^T
    model = _model(
        [helper.make_node("Gemm", ["x", "W", "B"], ["y"], transB=1)],
        [("x", [3, 5])],
        [("y", None)],
        [_init("W", w), _init("B", b)],
    )
    mod = _check_matches_ort(model, {"x": _rand(rng, 3, 5)})
    calls = _relax_calls(mod)
    assert "relax.permute_dims" not in [n for n, _ in calls]
    matmul = next(c for n, c in calls if n == "relax.matmul")
    assert _tvm.is_const(matmul.args[1])
    np.testing.assert_array_equal(_tvm.const_value(matmul.args[1]), w.T)
    add = next(c for n, c in calls if n == "relax.add")
    assert _tvm.is_const(add.args[1])


def test_depthwise_conv(rng):
    c = 6
    inits = [_init("W", _rand(rng, c, 1, 3, 3)), _init("B", _rand(rng, c))]
    model = _model(
        [helper.make_node("Conv", ["x", "W", "B"], ["y"], group=c, pads=[1, 1, 1, 1])],
        [("x", [1, c, 7, 7])],
        [("y", None)],
        inits,
    )
    mod = _check_matches_ort(model, {"x": _rand(rng, 1, c, 7, 7)})
    conv = next(call for name, call in _relax_calls(mod) if name == "relax.nn.conv2d")
    assert int(conv.attrs.groups) == c


def test_accepts_modelproto_and_paths_without_changing_the_proto(rng, tmp_path):
    model = _conv_bn_model(rng)
    before = model.SerializeToString()
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    texts = {
        load_onnx(model, {"x": (1, 3, 8, 8)}).script(show_meta=True),
        load_onnx(path, {"x": (1, 3, 8, 8)}).script(show_meta=True),
        load_onnx(str(path), {"x": (1, 3, 8, 8)}).script(show_meta=True),
    }
    assert len(texts) == 1
    assert model.SerializeToString() == before



def test_weights_listed_as_graph_inputs_are_not_inputs(rng):
    """Old exporters list every initializer in graph.input too; those are weights, not inputs needing shapes."""
    w = _rand(rng, 4, 3)
    model = _model([helper.make_node("MatMul", ["x", "W"], ["y"])], [("x", [2, 4]), ("W", [4, 3])], [("y", None)],
                   [_init("W", w)])
    model.ir_version = 3
    mod = _check_matches_ort(model, {"x": _rand(rng, 2, 4)})
    assert len(mod["main"].params) == 1


def test_still_imports_when_the_simplifier_fails(rng, monkeypatch):
    """If onnxslim raises, TVM imports the graph with the fixed shapes."""
    import onnxslim

    def fail(*args, **kwargs):
        raise RuntimeError("simplifier failed")

    monkeypatch.setattr(onnxslim, "slim", fail)
    model = _conv_bn_model(rng, bias=False)
    mod = _check_matches_ort(model, {"x": _rand(rng, 2, 3, 8, 8)}, shapes={"x": (2, 3, 8, 8)})
    assert "batch_norm" not in mod.script(show_meta=False)
    # Fused into the conv by TVM's FoldBatchnormToConv2D on the raw import.
    assert [n for n, _ in _relax_calls(mod)] == ["relax.nn.conv2d", "relax.add", "relax.nn.relu"]

# --- errors ---------------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.onnx"
    with pytest.raises(ModelError) as err:
        load_onnx(path)
    _assert_one_line(err, "not found", str(path))


@pytest.mark.parametrize(
    "content",
    [
        np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        b"this is a text file, not an ONNX model\nsecond line\n",
    ],
    ids=["random-bytes", "text"],
)
def test_not_onnx(tmp_path, content):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError) as err:
        load_onnx(path)
    _assert_one_line(err, str(path), "not ONNX")


def test_truncated_file(model_file):
    data = model_file.read_bytes()
    model_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError) as err:
        load_onnx(model_file)
    _assert_one_line(err, "truncated")


def test_wrong_model_type():
    with pytest.raises(ModelError) as err:
        load_onnx(42)
    _assert_one_line(err, "ModelProto")


def test_unknown_input_name(rng):
    with pytest.raises(InputShapeError) as err:
        load_onnx(_conv_bn_model(rng), {"image": (1, 3, 8, 8)})
    _assert_one_line(err, "'image'", "inputs are 'x'")


def test_wrong_rank(rng):
    with pytest.raises(InputShapeError) as err:
        load_onnx(_conv_bn_model(rng), {"x": (3, 8, 8)})
    _assert_one_line(err, "rank 3", "expected rank 4", "(N, 3, 8, 8)")


@pytest.mark.parametrize("shape", [(0, 3, 8, 8), (-1, 3, 8, 8), (1, 3, 8.0, 8), (None, 3, 8, 8), ("1", 3, 8, 8), 5])
def test_bad_dims(rng, shape):
    with pytest.raises(InputShapeError) as err:
        load_onnx(_conv_bn_model(rng), {"x": shape})
    _assert_one_line(err, "'x'", "(N, 3, 8, 8)")


def test_shapes_must_be_a_dict(rng):
    with pytest.raises(InputShapeError) as err:
        load_onnx(_conv_bn_model(rng), [(1, 3, 8, 8)])
    _assert_one_line(err, "dict", "'x'")


def test_dynamic_model_needs_shapes(rng):
    with pytest.raises(InputShapeError) as err:
        load_onnx(_conv_bn_model(rng))
    _assert_one_line(err, "shapes=", "'x'", "(N, 3, 8, 8)", "(1, 3, 8, 8)")


def test_every_dynamic_input_needs_a_shape(rng):
    nodes = [helper.make_node("Add", ["a", "b"], ["y"])]
    model = _model(nodes, [("a", ["N", 4]), ("b", ["M", 4])], [("y", None)])
    with pytest.raises(InputShapeError) as err:
        load_onnx(model, {"a": (2, 4)})
    _assert_one_line(err, "'b'", "shapes=")


def test_unsupported_op():
    model = _model([helper.make_node("Det", ["x"], ["y"])], [("x", [3, 3])], [("y", None)])
    with pytest.raises(UnsupportedError) as err:
        load_onnx(model)
    _assert_one_line(err, "Det")


def test_data_dependent_shape_is_unsupported():
    model = _model([helper.make_node("NonZero", ["x"], ["y"])], [("x", [3, 3])], [("y", None)])
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.INT64
    with pytest.raises(UnsupportedError) as err:
        load_onnx(model)
    _assert_one_line(err, "nonzero", "static")


def test_other_importer_failure(rng):
    model = _model(
        [helper.make_node("Conv", ["x", "W"], ["y"], auto_pad="FOO")],
        [("x", [1, 3, 8, 8])],
        [("y", None)],
        [_init("W", _rand(rng, 2, 3, 3, 3))],
    )
    with pytest.raises(ModelError) as err:
        load_onnx(model)
    _assert_one_line(err, "Conv", "auto_pad")

