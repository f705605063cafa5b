import re

import numpy as np
import pytest
import tvm
from tvm import relax

from tvm_mp import Precision, PrecisionPlan, _tvm
from tvm_mp.passes import AnnotatePrecision, QuantizeWeights, RewriteMixedPrecision, ScheduleRemainingOps
from tvm_mp.quantize.calibrate import calibrate
from tvm_mp.quantize.interpreter import Interpreter
from tvm_mp.targets import parse

from .conftest import op_counts

HOST = parse("host").tvm_target


def lowered(net, calib, bits=(8, 8)):
    plan = PrecisionPlan.uniform(net, Precision(*bits))
    q = QuantizeWeights()(AnnotatePrecision(plan, calibrate(net, calib))(net))
    return q, RewriteMixedPrecision()(q)


def vectorized_extents(func) -> list[int]:
    return [int(n.extent) for n in _tvm.tir_nodes(func)
            if isinstance(n, tvm.tirx.For) and n.kind == tvm.tirx.ForKind.VECTORIZED]


def test_structure_fp32_ops_become_scheduled_primfuncs(net, calib):
    _, low = lowered(net, calib)
    counts = op_counts(low["main"])
    relax_ops = {k for k in counts if k.startswith("relax.") and k != "relax.call_tir"}
    assert "relax.add" in relax_ops  # the residual add is an fp32 op before the pass
    before = {gv.name_hint for gv in low.functions}

    out = ScheduleRemainingOps(HOST)(low)
    after = op_counts(out["main"])
    assert not {k for k in after if k.startswith("relax.nn.") or k in ("relax.add", "relax.clip")}
    new = {gv.name_hint: f for gv, f in out.functions.items() if gv.name_hint not in before}
    assert "add" in new
    for name, func in new.items():
        assert isinstance(func, tvm.tirx.PrimFunc), name
    # the residual add runs over (1, C, H, W): its innermost loop is vectorized by TVM, not left to LLVM
    assert vectorized_extents(new["add"]), new["add"].script()
    # tvm-mp's kernels are untouched
    for gv, func in low.functions.items():
        if gv.name_hint.startswith("tvm_mp_"):
            assert _tvm.structural_equal(out[gv.name_hint], func)


def test_idempotent(net, calib):
    _, low = lowered(net, calib)
    once = ScheduleRemainingOps(HOST)(low)
    twice = ScheduleRemainingOps(HOST)(once)
    assert _tvm.structural_equal(once, twice)


def test_without_target_or_for_c_code_leaves_the_module_alone(net, calib):
    _, low = lowered(net, calib)
    assert ScheduleRemainingOps()(low).same_as(low)  # no target and no Target context
    assert ScheduleRemainingOps("cortex-m4")(low).same_as(low)
    with HOST:
        assert not ScheduleRemainingOps()(low).same_as(low)  # the Target context is the target


def test_numerics_equal_numpy_reference_and_the_unscheduled_build(net, calib):
    q, low = lowered(net, calib, (4, 8))
    scheduled = _tvm.build(ScheduleRemainingOps(HOST)(low), HOST)
    plain = _tvm.build(low, HOST)
    for x in (calib[0][:1], calib[2][3:4]):
        got = _tvm.run_relax(scheduled, [x])
        np.testing.assert_array_equal(got, _tvm.run_relax(plain, [x]))  # the schedule reorders loops only
        np.testing.assert_array_equal(got, Interpreter(q, quantized=True).run([x]))


def test_ops_that_are_not_elementwise_are_legalized_and_kept_correct():
    # softmax and mean reduce; resize gathers: legalized, scheduled where the default schedule applies, equal
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 8, 16, 16), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            up = bb.emit(relax.op.image.resize2d(x, (32, 32), method="nearest_neighbor"))
            m = bb.emit(relax.op.mean(up, axis=[2, 3], keepdims=False))
            s = bb.emit(relax.op.nn.softmax(m, axis=1))
            out = bb.emit_output(s)
        bb.emit_func_output(out)
    mod = bb.get()
    data = np.random.default_rng(0).normal(0, 1, (1, 8, 16, 16)).astype(np.float32)
    got = _tvm.run_relax(_tvm.build(ScheduleRemainingOps(HOST)(mod), HOST), [data])
    mean = data.mean(axis=(2, 3))
    expected = np.exp(mean - mean.max()) / np.exp(mean - mean.max()).sum()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def _max_pool_reference(x, k, s, pad):
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=-np.inf)
    oh, ow = (xp.shape[2] - k) // s + 1, (xp.shape[3] - k) // s + 1
    out = np.full(x.shape[:2] + (oh, ow), -np.inf, np.float32)
    for i in range(k):
        for j in range(k):
            out = np.maximum(out, xp[:, :, i:i + s * oh:s, j:j + s * ow:s])
    return out


@pytest.mark.parametrize("shape,k,s,pad,vector", [
    ((1, 16, 20, 20), 2, 2, 0, 10),  # 10 outputs per row, vectorized whole
    ((1, 8, 24, 16), 3, 2, 1, 8),  # 8
    ((1, 4, 64, 64), 3, 2, 1, 0),  # 32 outputs per row: left to LLVM
])
def test_pooling_windows_move_outside_the_vectorized_row_and_equal_numpy(shape, k, s, pad, vector):
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(bb.emit(relax.op.nn.max_pool2d(x, (k, k), (s, s), (pad, pad, pad, pad))))
        bb.emit_func_output(out)
    mod = ScheduleRemainingOps(HOST)(bb.get())
    pool = [f for gv, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc) and "max_pool" in gv.name_hint]
    assert len(pool) == 1
    script = pool[0].script()
    assert (vector in vectorized_extents(pool[0])) == (vector > 0), script
    if vector:  # the window's loops are outside the vector loop
        assert re.search(r"rv0, rv1(, \w+)? in T\.grid\([^\n]*\):\n\s+for \w+ in T\.vectorized", script), script
    data = np.random.default_rng(1).normal(0, 1, shape).astype(np.float32)
    got = _tvm.run_relax(_tvm.build(mod, HOST), [data])
    np.testing.assert_array_equal(got, _max_pool_reference(data, k, s, pad))
