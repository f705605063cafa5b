"""Whole-model prediction: the calls of a built model, the fixed terms' fits, the predictor's sum and files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tvm_mp.cost_models.analytical import AnalyticalModel
from tvm_mp.cost_models.base import CostModelError, Workload
from tvm_mp.cost_models.whole_model import FixedCosts, ModelCall, RuntimeCalls, WholeModel
from tvm_mp.workload import ConvParams

CONV = Workload("conv2d", (1, 8, 10, 10), (16, 8, 3, 3), 4, 4, "packed", ConvParams((1, 1), (1, 1, 1, 1)), "requant")
DENSE = Workload("dense", (1, 64), (10, 64), 8, 8, "packed", None, "float")


def calls(pool_elems=1600, quant_elems=800, views=1) -> RuntimeCalls:
    return RuntimeCalls((
        ModelCall("tvm_mp_conv2d_0_quantize", "quantize", [(1, 8, 10, 10), (1, 8, 10, 10)],
                  ["float32", "uint8"], "conv2d_0") if quant_elems == 800 else
        ModelCall("tvm_mp_conv2d_0_quantize", "quantize", [(quant_elems,), (quant_elems,)], ["float32", "uint8"],
                  "conv2d_0"),
        ModelCall("tvm_mp_conv2d_0_kernel", "layer", [(1, 8, 10, 10), (16, 36), (1, 16, 10, 10)],
                  ["uint8", "uint8", "uint8"], "conv2d_0", CONV),
        ModelCall("max_pool2d1", "op", [(pool_elems,), (pool_elems // 4,)], ["uint8", "uint8"]),
        ModelCall("tvm_mp_dense_0_kernel", "layer", [(1, 64), (10, 32), (1, 10)], ["uint8", "uint8", "float32"],
                  "dense_0", DENSE),
    ), views)


def test_model_call_checks_and_round_trip():
    c = calls()
    pool = c.calls[2]
    assert pool.family == "max_pool2d" and pool.nbytes == 2000 and pool.elements == 400
    assert c.calls[0].family == "quantize" and c.calls[1].family == "layer"
    assert c.workloads == [CONV, DENSE]
    back = RuntimeCalls.from_dict(json.loads(json.dumps(c.to_dict())))
    assert back == c
    with pytest.raises(CostModelError, match="role"):
        ModelCall("f", "kernel", [(1,)], ["uint8"])
    with pytest.raises(CostModelError, match="one dtype per argument"):
        ModelCall("f", "op", [(1,), (2,)], ["uint8"])
    with pytest.raises(CostModelError, match="needs its workload"):
        ModelCall("tvm_mp_conv2d_0_kernel", "layer", [(1,)], ["uint8"], "conv2d_0")
    with pytest.raises(CostModelError, match="names its layer"):
        ModelCall("tvm_mp_conv2d_0_quantize", "quantize", [(1,)], ["uint8"])


def test_fixed_costs_fit_recovers_linear_terms():
    # quantize 1 us + 2 ns/element, max_pool 0.5 us + 1 ns/byte, VM 0.4 us per call
    samples = []
    for k, (q, p, v) in enumerate([(800, 1600, 0), (3200, 6400, 1), (200, 400, 2), (5000, 8000, 1), (1000, 800, 3)]):
        rc = calls(pool_elems=p, quant_elems=q, views=v)
        times = [1e-3 + 2e-6 * q, 0.05 * (k + 1), 0.5e-3 + 1e-6 * rc.calls[2].nbytes, 0.01]
        whole = sum(times) + 0.4e-3 * len(rc.calls)
        samples.append((rc, times, whole))
    fixed = FixedCosts.fit(samples)
    assert fixed.quantize == pytest.approx((1e-3, 2e-6), rel=1e-6)
    assert fixed.ops["max_pool2d"] == pytest.approx((0.5e-3, 1e-6), rel=1e-6)
    assert fixed.vm == pytest.approx((0.0, 0.4e-3, 0.0))
    rc = samples[1][0]
    assert fixed.call_ms(rc.calls[0]) == pytest.approx(samples[1][1][0])
    assert fixed.vm_ms(rc) == pytest.approx(1.6e-3)
    unknown = ModelCall("avg_pool2d", "op", [(100,), (25,)], ["float32", "float32"])
    assert fixed.call_ms(unknown) == pytest.approx(fixed.other_op[0] + fixed.other_op[1] * 500)
    with pytest.raises(CostModelError, match="layer model costs it"):
        fixed.call_ms(rc.calls[1])
    assert FixedCosts.from_dict(json.loads(json.dumps(fixed.to_dict()))) == fixed
    with pytest.raises(CostModelError, match="non-negative"):
        FixedCosts(quantize=(-1.0, 0.0))


def test_whole_model_is_layers_plus_fixed_terms():
    layer_model = AnalyticalModel()
    fixed = FixedCosts((1e-3, 1e-6), {"max_pool2d": (2e-3, 0.0)}, (0.0, 0.0), (5e-3, 1e-3, 0.5e-3))
    model = WholeModel(layer_model, fixed)
    rc = calls()
    est = model.predict_calls(rc)
    layers = layer_model.predict([CONV, DENSE]).latency_ms
    assert est.layer_ms == pytest.approx(tuple(layers)) and est.layers == ("conv2d_0", "dense_0")
    assert est.quantize_ms == pytest.approx(1e-3 + 800e-6)
    assert est.ops_ms == pytest.approx(2e-3)
    assert est.vm_ms == pytest.approx(5e-3 + 4e-3 + 0.5e-3)
    assert est.total_ms == pytest.approx(float(np.sum(layers)) + est.fixed_ms)
    assert model.predict([CONV]).latency_ms[0] == pytest.approx(layers[0])  # a per-layer CostModel too
    with pytest.raises(CostModelError, match="XGBCostModel"):
        model.to_dict()


def test_shipped_host_predictor_loads_and_predicts():
    model = WholeModel.default()
    est = model.predict_calls(calls())
    assert 0 < est.layers_ms < 10 and np.isfinite(est.total_ms) and est.total_ms > 0
    assert model.info["layer_model"] == "xgboost" and "digits_cnn" in model.info["models"]


def test_shipped_predictors_are_per_cpu():
    """A predictor trained on one CPU is not another's: each shipped one is picked for its own CPU; a CPU none was
    trained on gets the one whose vector features agree most, and the report says so."""
    from tvm_mp.cost_models.whole_model import shipped_cpu_for, shipped_cpus

    shipped = shipped_cpus()
    assert "znver1" in shipped  # AVX2
    for cpu in shipped:
        model = WholeModel.default(cpu)
        assert shipped_cpu_for(cpu) == cpu and model.info["cpu"] == cpu
        assert "trained_on_other_cpu" not in model.info and f"on {cpu}" in model.description
    assert shipped_cpu_for("haswell") == "znver1"  # AVX2, no AVX-512
    if "znver4" in shipped:
        assert shipped_cpu_for("sapphirerapids") == "znver4"  # AVX-512 VNNI + VPOPCNTDQ
    other = WholeModel.default("haswell")
    assert other.info["cpu"] == "znver1" and "trained on znver1, this CPU is haswell" in other.description


@pytest.mark.slow
def test_report_of_a_whole_model_predictor_covers_the_calls_the_build_makes(residual, residual_calib):
    """The residual net has float and integer edges, a residual add, pooling and clip: the calls listed from the
    lowered module are the ones its executable makes, and the report's total is the layers plus the fixed terms."""
    import tvm_mp
    from tvm_mp import _tvm
    from tvm_mp.cost_models.whole_model import runtime_calls
    from tvm_mp.layers import list_layers

    fixed = FixedCosts((1e-3, 1e-6), {}, (2e-3, 1e-7), (0.0, 0.5e-3, 0.0))
    model = WholeModel(AnalyticalModel(), fixed)
    plan = tvm_mp.PrecisionPlan({"conv2d_0": "w8a8", "conv2d_1": "w2a2", "conv2d_2": "w4a4", "dense_0": "w4a8"})
    with pytest.warns(UserWarning, match="stay fp32: conv2d_3"):
        compiled = tvm_mp.compile(residual, plan, calibration=residual_calib, cost_model=model)
    calls = runtime_calls(compiled.lowered, {i.name: i for i in list_layers(residual)}, plan, compiled.target)
    vm = _tvm.vm(compiled.executable)
    seen = []
    vm.set_instrument(lambda f, sym, before, ret, *args: seen.append(str(sym)) if before else None)
    vm["main"](_tvm.to_device(residual_calib[0][:1]))
    assert [c.func for c in calls.calls] == [s for s in seen if not s.startswith("vm.builtin.")]
    assert {c.layer for c in calls.of_role("layer")} == set(plan)  # conv2d_3 stays fp32: an operator call
    assert calls.of_role("quantize") and calls.of_role("op")
    rep = compiled.report
    est = model.predict_calls(calls)
    assert rep.fixed_latency_ms == pytest.approx(est.fixed_ms)
    assert rep.latency_ms == pytest.approx(sum(r.latency_ms for r in rep.layers if r.latency_ms) + est.fixed_ms)
    assert "fixed" in str(rep) and rep.cost_model.startswith("WholeModel (latency: AnalyticalModel layer kernels")
