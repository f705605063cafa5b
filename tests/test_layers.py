"""Which conv-like / matmul-like ops are layers, and why the others are not: the one rule
(:func:`tvm_mp.layers.unquantizable_reason`) on small Relax graphs built directly (no ONNX, no build)."""

import numpy as np
import pytest
import tvm
from tvm import relax

import tvm_mp
from tvm_mp import Precision, PrecisionPlan, _tvm
from tvm_mp.errors import Error
from tvm_mp.layers import (
    UnquantizableLayer,
    form_reason,
    list_layers,
    match_layers,
    unquantizable_layers,
    unquantizable_reason,
)
from tvm_mp.passes import AnnotatePrecision


def _const(*shape, dtype="float32"):
    return _tvm.const(np.random.default_rng(len(shape)).normal(0, 0.5, shape).astype(dtype))


def _module(inputs: dict, body, num_input: int | None = None) -> tvm.IRModule:
    """``main(inputs...)`` whose dataflow block ``body(bb, *params)`` emits; the last value is the output."""
    params = [relax.Var(name, relax.TensorType(shape, dtype)) for name, (shape, dtype) in inputs.items()]
    bb = relax.BlockBuilder()
    with bb.function("main", params):
        with bb.dataflow():
            out = bb.emit_output(body(bb, *params))
        bb.emit_func_output(out)
    mod = bb.get()
    if num_input is not None:  # a frontend's module: every parameter is an input (weights given at run time)
        mod["main"] = mod["main"].with_attr("num_input", num_input)
    return mod


F32 = "float32"


def _one(op, x_shape, *args, dtype=F32, **attrs):
    return _module({"x": (x_shape, dtype)}, lambda bb, x: op(x, *args, **attrs))


def _reasons(mod):
    return [(u.name, u.op, u.reason) for u in unquantizable_layers(mod)]


# --- each form and its reason --------------------------------------------------------------------------------


@pytest.mark.parametrize("op, x_shape, w_shape, kind, words", [
    (relax.op.nn.conv1d, (1, 4, 8), (4, 4, 3), "conv1d", "a 1-D convolution"),
    (relax.op.nn.conv3d, (1, 2, 4, 4, 4), (4, 2, 3, 3, 3), "conv3d", "a 3-D convolution"),
    (relax.op.nn.conv1d_transpose, (1, 4, 8), (4, 2, 3), "conv1d_transpose", "a transposed convolution"),
    (relax.op.nn.conv2d_transpose, (1, 4, 4, 4), (4, 2, 3, 3), "conv2d_transpose", "a transposed convolution"),
    (relax.op.nn.conv3d_transpose, (1, 4, 2, 2, 2), (4, 2, 3, 3, 3), "conv3d_transpose", "a transposed convolution"),
])
def test_other_conv_ops_are_named_with_the_reason(op, x_shape, w_shape, kind, words):
    mod = _one(op, x_shape, _const(*w_shape))
    assert list_layers(mod) == []
    (layer,) = unquantizable_layers(mod)
    assert (layer.name, layer.op, layer.input_shape, layer.weight_shape) == (f"float_{kind}_0", kind, x_shape, w_shape)
    assert layer.output_shape == _tvm.expr_shape(mod["main"].body.body)
    assert layer.reason.startswith(words) and "tvm-mp quantizes conv2d and dense" in layer.reason
    assert "so it stays fp32" in layer.reason


def test_conv1d_reason_says_how_to_quantize_it():
    (layer,) = unquantizable_layers(_one(relax.op.nn.conv1d, (1, 4, 8), _const(4, 4, 3)))
    assert layer.reason.endswith("to quantize it, export it as a 2-D Conv over an (N, C, 1, W) input with an "
                                 "(OC, C, 1, K) kernel")


def test_conv2d_nhwc_names_the_layout_and_convert_layout():
    mod = _one(relax.op.nn.conv2d, (1, 8, 8, 4), _const(3, 3, 4, 4), data_layout="NHWC", kernel_layout="HWIO")
    (layer,) = unquantizable_layers(mod)
    assert layer.op == "conv2d" and layer.name == "float_conv2d_0"
    assert layer.reason.startswith("layout NHWC/HWIO (output NHWC): tvm-mp quantizes NCHW/OIHW convolutions only")
    assert "relax.transform.ConvertLayout" in layer.reason
    assert list_layers(mod) == []


def test_conv2d_float16_stays_in_float16():
    mod = _one(relax.op.nn.conv2d, (1, 4, 8, 8), _const(4, 4, 3, 3, dtype="float16"), dtype="float16")
    (layer,) = unquantizable_layers(mod)
    assert layer.reason.startswith("input dtype float16, weight dtype float16, output dtype float16: tvm-mp "
                                   "quantizes float32 layers only, so it stays in float16")


def test_weight_from_an_input_or_computed_names_its_origin():
    def body(bb, x, w, v):
        a = bb.emit(relax.op.nn.conv2d(x, relax.op.permute_dims(w, [0, 1, 3, 2]), padding=(1, 1)))
        b = bb.emit(relax.op.nn.conv2d(a, relax.op.multiply(v, v)))
        return relax.op.nn.conv2d(b, _const(2, 4, 1, 1))

    mod = _module({"x": ((1, 4, 8, 8), F32), "w": ((4, 4, 3, 3), F32), "v": ((4, 4, 1, 1), F32)}, body)
    reasons = _reasons(mod)
    assert [(n, op) for n, op, _ in reasons] == [("float_conv2d_0", "conv2d"), ("float_conv2d_1", "conv2d")]
    assert reasons[0][2].startswith("its weight is not a constant (graph input 'w', given at run time): tvm-mp "
                                    "quantizes layers with constant weights only, so it stays fp32; to quantize it, "
                                    "make the weight an initializer")
    assert reasons[1][2].startswith("its weight is not a constant (computed at run time by relax.multiply)")
    assert [layer.name for layer in list_layers(mod)] == ["conv2d_0"]  # numbering of layers is unaffected


@pytest.mark.parametrize("x_shape, w_shape, words", [
    ((2, 4, 16), (16, 8), "its input (2, 4, 16) is 3-D (a batched matmul): tvm-mp quantizes a 2-D input (N, K) "
                          "times a 2-D constant weight (K, OC), so it stays fp32; to quantize it, reshape the input"),
    ((16,), (16, 8), "its input (16,) is a vector"),
    ((2, 16), (16,), "its weight (16,) is a vector (a matrix-vector product)"),
    ((2, 16), (3, 16, 8), "its weight (3, 16, 8) is 3-D: tvm-mp quantizes a 2-D input"),
])
def test_matmul_forms(x_shape, w_shape, words):
    (layer,) = unquantizable_layers(_one(relax.op.matmul, x_shape, _const(*w_shape)))
    assert layer.op == "matmul" and layer.name == "float_matmul_0" and layer.reason.startswith(words)


def test_matmul_with_the_constant_on_the_left():
    mod = _module({"x": ((16, 4), F32)}, lambda bb, x: relax.op.matmul(_const(8, 16), x), num_input=1)
    (layer,) = unquantizable_layers(mod)
    assert layer.reason.startswith("its constant operand is on the left (W @ x)")
    assert layer.reason.endswith("write it as (x^T @ W^T)^T")


def test_matmul_of_two_inputs_and_of_two_activations():
    def body(bb, x, w):
        h = bb.emit(relax.op.matmul(x, w))
        return relax.op.matmul(h, relax.op.permute_dims(h))

    mod = _module({"x": ((4, 16), F32), "w": ((16, 8), F32)}, body, num_input=2)
    reasons = _reasons(mod)
    assert [n for n, _, _ in reasons] == ["float_matmul_0", "float_matmul_1"]
    assert "(graph input 'w', given at run time)" in reasons[0][2]
    assert "(computed at run time by relax.matmul)" in reasons[1][2]


def test_einsum():
    mod = _module({"x": ((2, 16), F32)}, lambda bb, x: relax.op.einsum((x, _const(16, 8)), "bk,kn->bn"))
    (layer,) = unquantizable_layers(mod)
    assert (layer.op, layer.input_shape, layer.weight_shape, layer.output_shape) == ("einsum", (2, 16), (16, 8),
                                                                                    (2, 8))
    assert layer.reason.endswith("write it as MatMul with a constant weight")


# --- the one rule: quantizable forms, numbering, stability -------------------------------------------------------


def test_quantizable_forms_have_no_reason():
    def body(bb, x):
        a = bb.emit(relax.op.nn.conv2d(x, _const(4, 2, 3, 3), padding=(0, 1, 2, 0), dilation=(2, 1), groups=2))
        b = bb.emit(relax.op.nn.conv2d(a, _const(4, 1, 3, 3), groups=4))
        return relax.op.matmul(relax.op.reshape(b, (1, 4 * 6 * 5)), _const(120, 5))

    mod = _module({"x": ((1, 4, 10, 8), F32)}, body)
    calls = [b.value for b in mod["main"].body.blocks[0].bindings if isinstance(b.value, relax.Call)
             and getattr(b.value.op, "name", "") in ("relax.nn.conv2d", "relax.matmul")]
    assert [unquantizable_reason(c) for c in calls] == [None, None, None]
    assert [form_reason(c) for c in calls] == [None, None, None]
    assert [(la.name, la.op) for la in list_layers(mod)] == [("conv2d_0", "conv2d"), ("conv2d_1", "depthwise_conv2d"),
                                                             ("dense_0", "dense")]
    assert unquantizable_layers(mod) == []


def test_numbered_per_op_in_graph_order_and_stable_through_annotation():
    def body(bb, x):
        a = bb.emit(relax.op.nn.conv2d(x, _const(4, 4, 3, 3), padding=(1, 1)))
        b = bb.emit(relax.op.reshape(a, (1, 4, 16)))
        c = bb.emit(relax.op.nn.conv1d(b, _const(4, 4, 3), padding=(1, 1)))
        d = bb.emit(relax.op.nn.conv1d(c, _const(4, 4, 1)))
        e = bb.emit(relax.op.reshape(d, (1, 4, 4, 4)))
        f = bb.emit(relax.op.nn.conv2d_transpose(e, _const(4, 2, 2, 2)))
        return relax.op.nn.conv2d(f, _const(2, 2, 1, 1))

    mod = _module({"x": ((1, 4, 4, 4), F32)}, body)
    names = ["float_conv1d_0", "float_conv1d_1", "float_conv2d_transpose_0"]
    assert [u.name for u in unquantizable_layers(mod)] == names
    assert [la.name for la in list_layers(mod)] == ["conv2d_0", "conv2d_1"]
    with pytest.warns(UserWarning, match="layers without a precision stay fp32: conv2d_1"):
        annotated = AnnotatePrecision(PrecisionPlan({"conv2d_0": Precision(4, 4)}))(mod)
    assert [u.name for u in unquantizable_layers(annotated)] == names
    assert [la.name for la in list_layers(annotated)] == ["conv2d_0", "conv2d_1"]
    assert [m.info.name for m in match_layers(annotated["main"], annotated)] == ["conv2d_1"]


def test_public_api_and_wrong_argument():
    assert tvm_mp.unquantizable_layers is unquantizable_layers and tvm_mp.UnquantizableLayer is UnquantizableLayer
    with pytest.raises(Error, match="unquantizable_layers needs a tvm.IRModule"):
        unquantizable_layers("model.onnx")


# --- the record ----------------------------------------------------------------------------------------------


def test_record_validates_and_round_trips():
    layer = UnquantizableLayer("float_conv1d_0", "conv1d", (1, 4, 8), [4, 4, 3], (1, 4, 6), "why")
    assert layer.weight_shape == (4, 4, 3)
    assert UnquantizableLayer.from_dict(layer.to_dict()) == layer
    assert layer.summary == "float_conv1d_0 (conv1d, input (1, 4, 8), weight (4, 4, 3)): why"
    assert str(layer).startswith("float_conv1d_0 conv1d") and str(layer).endswith("not quantized: why")
    with pytest.raises(Error, match="name must be a non-empty string"):
        UnquantizableLayer("", "conv1d", (), (), (), "why")
    with pytest.raises(Error, match="input_shape must be a tuple of non-negative integers"):
        UnquantizableLayer("a", "conv1d", (1, -4), (), (), "why")
    with pytest.raises(Error, match="reason"):
        UnquantizableLayer("a", "conv1d", (), (), (), None)
    with pytest.raises(TypeError, match="unknown field"):
        UnquantizableLayer.from_dict({**layer.to_dict(), "extra": 1})
    with pytest.raises(KeyError):
        UnquantizableLayer.from_dict({"name": "a"})
