"""The reference computes fp32 ops it has no NumPy rule for through TVM, one cached op at a time."""

import warnings

import numpy as np
import pytest
from tvm import relax

import tvm_mp
from tvm_mp import Precision, PrecisionPlan, _tvm
from tvm_mp.quantize import tvm_ops
from tvm_mp.quantize.interpreter import Interpreter, batch_polymorphic, unimplemented_ops
from tvm_mp.quantize.tvm_ops import run_op

from .._nets import residual_net


def resize_power_net():
    """conv2d_0 -> relu -> image.resize2d (x2, nearest) -> conv2d_1 -> power(., 2) -> strided_slice, (1,3,6,6)."""
    rng = np.random.default_rng(0)
    const = lambda *shape: _tvm.const(rng.normal(0, 0.4, shape).astype(np.float32))  # noqa: E731
    x = relax.Var("x", relax.TensorType((1, 3, 6, 6), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            c0 = bb.emit(relax.op.nn.conv2d(x, const(4, 3, 3, 3), padding=(1, 1)))
            c0 = bb.emit(relax.op.add(c0, const(1, 4, 1, 1)))
            r0 = bb.emit(relax.op.nn.relu(c0))
            up = bb.emit(relax.op.image.resize2d(r0, (12, 12), method="nearest_neighbor"))
            c1 = bb.emit(relax.op.nn.conv2d(up, const(5, 4, 3, 3), padding=(1, 1)))
            p = bb.emit(relax.op.power(c1, relax.const(2.0, "float32")))
            out = bb.emit_output(relax.op.strided_slice(p, axes=[1], begin=[1], end=[4]))
        bb.emit_func_output(out)
    return bb.get()


def batch_mixing_net():
    """conv2d_0 -> reshape (4, 36): the batch leaves axis 0 -> matmul -> reshape (1, 4, 5)."""
    rng = np.random.default_rng(1)
    x = relax.Var("x", relax.TensorType((1, 3, 6, 6), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            c0 = bb.emit(relax.op.nn.conv2d(x, _tvm.const(rng.normal(size=(4, 3, 3, 3)).astype(np.float32)),
                                            padding=(1, 1)))
            rows = bb.emit(relax.op.reshape(c0, (4, 36)))
            m = bb.emit(relax.op.matmul(rows, _tvm.const(rng.normal(size=(36, 5)).astype(np.float32))))
            out = bb.emit_output(relax.op.reshape(m, (1, 4, 5)))
        bb.emit_func_output(out)
    return bb.get()


def test_unknown_ops_are_named_and_run_as_tvm_builds_them():
    """fp32 interpretation of a graph with resize2d, power and strided_slice equals TVM's build of the whole graph
    (float tolerance), at the IR's batch and at a larger batch (block by block through the cached ops)."""
    mod = resize_power_net()
    assert unimplemented_ops(mod) == ["relax.image.resize2d", "relax.power", "relax.strided_slice"]
    assert unimplemented_ops(residual_net()) == []
    ex = _tvm.build(mod, "llvm")
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 3, 6, 6)).astype(np.float32)
    want = np.concatenate([_tvm.run_relax(ex, [x[i : i + 1]]) for i in range(3)])
    interp = Interpreter(mod)
    np.testing.assert_allclose(interp.run([x[:1]]), want[:1], rtol=1e-5, atol=1e-5)
    assert interp.fallback_ops == {"relax.image.resize2d", "relax.power", "relax.strided_slice"}
    cached = len(tvm_ops._CACHE)
    np.testing.assert_allclose(Interpreter(mod).run([x]), want, rtol=1e-5, atol=1e-5)
    assert len(tvm_ops._CACHE) == cached  # the batch of 3 reuses the batch-1 executables


def test_batch_mixing_graph_runs_block_by_block():
    """A reshape that moves the batch off axis 0 makes the graph batch-dependent: a larger batch runs sample by
    sample (it used to fail with a reshape error), and equals the per-sample results."""
    mod = batch_mixing_net()
    assert not batch_polymorphic(mod) and batch_polymorphic(residual_net())
    x = np.random.default_rng(3).normal(size=(3, 3, 6, 6)).astype(np.float32)
    interp = Interpreter(mod)
    got = interp.run([x])
    assert got.shape == (3, 4, 5)
    np.testing.assert_array_equal(got, np.concatenate([interp.run([x[i : i + 1]]) for i in range(3)]))


def test_an_op_tvm_cannot_build_is_one_line():
    """The fallback's failure is an UnsupportedError of one line naming the op."""
    x = relax.Var("x", relax.TensorType((1, 4), "float32"))
    call = relax.op.nn.softmax(x, axis=1)
    from tvm_mp.errors import UnsupportedError

    with pytest.raises(UnsupportedError) as err:
        run_op(call, [np.zeros(4, np.float32)])  # rank 1: softmax over axis 1 does not type-check
    assert "relax.nn.softmax" in str(err.value) and "\n" not in str(err.value)


def test_compile_warns_once_and_keeps_unknown_ops_on_float_edges():
    """conv2d_0 -> relu -> resize2d -> conv2d_1: the edge through resize2d is a float edge (no integer edge through
    an op tvm-mp does not model); the compile warns once naming the ops TVM computes in the reference; the
    compiled model equals its reference to float tolerance (power and slice follow the last integer layer)."""
    mod = resize_power_net()
    rng = np.random.default_rng(4)
    calib = [rng.uniform(-1, 1, (2, 3, 6, 6)).astype(np.float32) for _ in range(2)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cm = tvm_mp.compile(mod, plan=PrecisionPlan.uniform(mod, Precision(8, 8)), calibration=calib,
                            target="llvm")
    ours = [str(w.message) for w in caught if "run through TVM" in str(w.message)]
    assert ours == ["fp32 ops run through TVM in the reference: relax.image.resize2d, relax.power, "
                    "relax.strided_slice"]
    from tvm_mp.driver import epilogues

    assert epilogues(cm.quantized_module) == {"conv2d_0": "float", "conv2d_1": "float"}
    x = rng.uniform(-1, 1, (2, 3, 6, 6)).astype(np.float32)
    y, ref = cm.run(x), cm.reference(x)
    assert y.shape == (2, 3, 12, 12)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())


def test_float16_conv_and_matmul_run_through_tvm_in_their_dtype():
    """The NumPy conv2d / matmul rules compute in float32; float16 operands go through TVM, as the build does."""
    rng = np.random.default_rng(2)
    x = relax.Var("x", relax.TensorType((1, 2, 4, 4), "float16"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            c = bb.emit(relax.op.nn.conv2d(x, _tvm.const(rng.normal(size=(3, 2, 3, 3)).astype(np.float16))))
            out = bb.emit_output(relax.op.matmul(relax.op.reshape(c, (1, 12)),
                                                 _tvm.const(rng.normal(size=(12, 2)).astype(np.float16))))
        bb.emit_func_output(out)
    mod = bb.get()
    assert unimplemented_ops(mod) == ["relax.matmul", "relax.nn.conv2d"]
    interp = Interpreter(mod)
    xs = rng.normal(size=(1, 2, 4, 4)).astype(np.float16)
    got = interp.run([xs])
    assert got.dtype == np.float16 and interp.fallback_ops == {"relax.matmul", "relax.nn.conv2d"}
    np.testing.assert_array_equal(got, _tvm.run_relax(_tvm.build(mod, "llvm"), [xs]))
