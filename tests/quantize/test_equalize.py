"""Cross-layer equalization: the fp32 function is unchanged, the ranges of each pair's channels are equal."""

import numpy as np
import tvm
from tvm import relax

from tvm_mp import _tvm
from tvm_mp.quantize.equalize import MAX_SCALE, equalize, find_pairs
from tvm_mp.quantize.interpreter import Interpreter


def chain(relu6: bool = False) -> tvm.IRModule:
    """conv(+bias, channel 2 dead) -> relu -> depthwise(+bias) -> pointwise (no activation between) -> relu|clip ->
    conv, then a conv whose input has two uses (no pair)."""
    rng = np.random.default_rng(0)

    def const(*shape, scale=1.0):
        w = rng.normal(0, 0.5, shape) * np.exp(rng.normal(0, 1.5, (shape[0],) + (1,) * (len(shape) - 1))) * scale
        return w.astype(np.float32)

    w0 = const(6, 3, 3, 3)
    w0[2] = 0.0
    w3 = const(4, 6, 3, 3)
    w3[:, 4] = 0.0  # an input channel nobody reads
    x = relax.Var("x", relax.TensorType((2, 3, 8, 8), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            a = bb.emit(relax.op.nn.conv2d(x, _tvm.const(w0), padding=(1, 1)))
            a = bb.emit(relax.op.add(a, _tvm.const(const(1, 6, 1, 1))))
            a = bb.emit(relax.op.nn.relu(a))
            b = bb.emit(relax.op.nn.conv2d(a, _tvm.const(const(6, 1, 3, 3)), padding=(1, 1), groups=6))
            b = bb.emit(relax.op.add(_tvm.const(const(1, 6, 1, 1)), b))
            c = bb.emit(relax.op.nn.conv2d(b, _tvm.const(const(6, 6, 1, 1))))
            c = bb.emit(relax.op.clip(c, 0.0, 6.0) if relu6 else relax.op.nn.relu(c))
            d = bb.emit(relax.op.nn.conv2d(c, _tvm.const(w3), padding=(1, 1)))
            e = bb.emit(relax.op.nn.conv2d(d, _tvm.const(const(2, 4, 1, 1))))
            out = bb.emit_output(relax.op.add(e, relax.op.mean(d, axis=[1], keepdims=True)))
        bb.emit_func_output(out)
    return bb.get()


def weights(mod):
    from tvm_mp.layers import dataflow_bindings

    return [_tvm.const_value(b.value.args[1]) for b in dataflow_bindings(mod["main"])
            if isinstance(b.value, relax.Call) and b.value.op.name == "relax.nn.conv2d"]


def test_equalized_network_computes_the_same_function():
    mod = chain()
    out, pairs = equalize(mod)
    assert pairs == 3  # conv->relu->dw, dw->pw, pw->relu->conv; not d->e (d has two uses)
    x = np.random.default_rng(1).normal(0, 1, (2, 3, 8, 8)).astype(np.float32)
    ref = Interpreter(mod).run([x])
    np.testing.assert_allclose(Interpreter(out).run([x]), ref, rtol=1e-4, atol=1e-5 * float(np.abs(ref).max()))
    before, after = weights(mod), weights(out)
    assert all(np.isfinite(w).all() for w in after)
    np.testing.assert_array_equal(after[4], before[4])  # the conv outside any pair
    # the last pair (pw -> conv): channel ranges equal on both sides (up to the scale clamp), dead ones untouched
    r1 = np.abs(after[2]).reshape(6, -1).max(axis=1)
    r2 = np.abs(after[3]).max(axis=(0, 2, 3))
    live = r2 > 0
    np.testing.assert_allclose(r1[live], r2[live], rtol=1e-3)
    np.testing.assert_array_equal(after[3][:, 4], 0.0)
    np.testing.assert_array_equal(after[0][2], 0.0)  # the dead conv channel stays dead, no NaN
    spread = [np.abs(w).reshape(w.shape[0], -1).max(axis=1) for w in (before[1], after[1])]
    assert np.ptp(np.log(spread[1][spread[1] > 0])) < np.ptp(np.log(spread[0][spread[0] > 0]))  # depthwise


def test_no_pairs_across_non_homogeneous_activations():
    pairs = find_pairs(chain(relu6=True)["main"])
    assert len(pairs) == 2  # clip(0, 6) between pw and conv is not scale-invariant
    mod = chain()
    assert equalize(mod, rounds=0)[1] == 3 and MAX_SCALE > 1
