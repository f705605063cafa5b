"""Float-format and clustered layers through the passes, the NumPy reference, the compiler and the report.

The network of ``tests/passes/conftest.py`` has conv, depthwise conv and dense layers, integer-edge chains
(relu -> maxpool, relu -> reshape) and float edges (residual add, fan-out); mixed plans put integer, float-format
and clustered layers on both sides of those edges.
"""

from __future__ import annotations

import numpy as np
import pytest

import tvm_mp
from tvm_mp import Precision, PrecisionPlan, _tvm
from tvm_mp.datasets import calibration_batches, load_digits_split
from tvm_mp.layers import annotated_layer_functions
from tvm_mp.models import digits_cnn_path
from tvm_mp.passes import AnnotatePrecision, QuantizeWeights, RewriteMixedPrecision
from tvm_mp.quantize import floats as F
from tvm_mp.quantize.calibrate import calibrate
from tvm_mp.quantize.graph import analyze_outputs
from tvm_mp.quantize.interpreter import Interpreter
from tvm_mp.quantize.qlayer import read_layer

from ..passes.conftest import op_counts

PLAN_A = {"conv2d_0": Precision(8, 8), "conv2d_1": Precision.fp16(), "conv2d_2": Precision.clustered(8, 6),
          "conv2d_3": Precision.clustered(16, 8), "dense_0": Precision(4, 8)}
PLAN_B = {"conv2d_0": Precision.fp8_e4m3(), "conv2d_1": Precision.clustered(16, 8), "conv2d_2": Precision.bf16(),
          "conv2d_3": Precision.float(3, 4), "dense_0": Precision.fp8_e5m2()}


@pytest.fixture(scope="module")
def net(residual):
    return residual


@pytest.fixture(scope="module")
def calib(residual_calib):
    return residual_calib


@pytest.fixture(scope="module")
def ranges(net, calib):
    return calibrate(net, calib)


def quantized(net, ranges, plan):
    return QuantizeWeights()(AnnotatePrecision(PrecisionPlan(plan), ranges)(net))


def test_annotate_records_the_format(net, ranges):
    mod = AnnotatePrecision(PrecisionPlan(PLAN_B), ranges)(net)
    funcs = {n: f for n, (_, f) in annotated_layer_functions(mod).items()}
    e4m3 = funcs["conv2d_0"].attrs
    assert str(e4m3["tvm_mp.kind"]) == "float" and int(e4m3["tvm_mp.exp_bits"]) == 4
    assert int(e4m3["tvm_mp.man_bits"]) == 3 and int(e4m3["tvm_mp.finite"]) == 1
    assert "tvm_mp.in_scale" not in e4m3  # float formats take float input
    k16 = funcs["conv2d_1"].attrs
    assert str(k16["tvm_mp.kind"]) == "clustered" and int(k16["tvm_mp.clusters"]) == 16
    assert "tvm_mp.in_scale" in k16 and int(k16["tvm_mp.w_bits"]) == 4
    # numerics unchanged by annotation
    x = np.random.default_rng(0).normal(size=(1, 3, 10, 10)).astype(np.float32)
    np.testing.assert_allclose(Interpreter(mod).run([x]), Interpreter(net).run([x]), rtol=1e-5, atol=1e-5)


def test_quantize_weights_forms(net, ranges):
    q = quantized(net, ranges, PLAN_B)
    layers = {n: read_layer(f) for n, (_, f) in annotated_layer_functions(q).items()}
    weights = {n: f for n, (_, f) in annotated_layer_functions(q).items()}
    # bf16: astype(const bfloat16); fp8 and custom formats: a float32 constant of the rounded values
    assert op_counts(weights["conv2d_2"]).get("relax.astype") == 1
    assert "relax.astype" not in op_counts(weights["conv2d_3"])
    for name in ("conv2d_0", "conv2d_2", "conv2d_3", "dense_0"):
        layer = layers[name]
        fmt = F.FloatFormat.of(layer.precision)
        np.testing.assert_array_equal(F.round_to_format(layer.w_float, fmt), layer.w_float)
        assert layer.act is None and layer.w_q is None
    k16 = layers["conv2d_1"]
    assert len(np.unique(k16.w_q)) <= 16 and k16.clustered.clusters == 16
    assert len(np.unique(k16.w_scale)) == 1  # one scale per layer
    np.testing.assert_array_equal(k16.clustered.w_q, k16.w_q)
    assert _tvm.structural_equal(q, QuantizeWeights()(q))  # idempotent


def test_graph_edges_only_between_integer_layers(net, ranges):
    a = quantized(net, ranges, PLAN_A)
    outs = {o.producer.name: o for o in analyze_outputs(a["main"], a).values()}
    by_layer = {str(a[b.value.op].attrs["tvm_mp.layer"]): b.var.name
                for blk in a["main"].body.blocks for b in blk.bindings if hasattr(b.value.op, "name_hint")
                and b.value.op.name_hint.startswith("tvm_mp_")}
    assert not outs[by_layer["conv2d_0"]].integer  # integer -> fp16: float edge (relu fused as a float clamp)
    assert outs[by_layer["conv2d_0"]].float_lo == 0.0
    assert outs[by_layer["conv2d_3"]].integer  # clustered -> integer dense: integer edge through relu + reshape


@pytest.mark.parametrize("plan", [PLAN_A, PLAN_B], ids=["int-fp16-clustered", "fp8-clustered-bf16-custom"])
def test_mixed_plan_exact_vs_reference(net, ranges, calib, plan):
    q = quantized(net, ranges, plan)
    lowered = RewriteMixedPrecision()(q)
    counts = op_counts(lowered["main"])
    assert not annotated_layer_functions(lowered)
    assert sum(v for k, v in counts.items() if k.endswith("_kernel")) == 5
    float_layers = [n for n, p in plan.items() if p.kind == "float"]
    assert not any(f"call_tir:tvm_mp_{n}_quantize" in counts for n in float_layers)
    ex = _tvm.build(lowered)
    reference = Interpreter(q, quantized=True)
    for x in (calib[0][:1], calib[2][3:4]):
        got, expected = _tvm.run_relax(ex, [x]), reference.run([x])
        np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


def test_kernel_constants_are_stored_in_the_format_width(net, ranges):
    lowered = RewriteMixedPrecision()(quantized(net, ranges, PLAN_B))
    consts = {}
    for blk in lowered["main"].body.blocks:
        for b in blk.bindings:
            v = b.value
            is_call_tir = getattr(getattr(v, "op", None), "name", "") == "relax.call_tir"
            if is_call_tir and v.args[0].name_hint.endswith("_kernel"):
                consts[v.args[0].name_hint] = [_tvm.const_value(a) for a in v.args[1].fields[1:]]
    e4m3 = consts["tvm_mp_conv2d_0_kernel"]
    assert e4m3[0].dtype == np.uint8 and e4m3[0].shape == (8, 27)  # [OC, R] bit patterns, 1 byte each
    assert str(consts["tvm_mp_conv2d_2_kernel"][0].dtype) == "bfloat16"
    packed, centroids = consts["tvm_mp_conv2d_1_kernel"][:2]
    assert packed.dtype == np.uint32 and packed.nbytes == 4 * (-(-8 * 9 * 4 // 32) + 1)  # 72 4-bit indices
    assert centroids.dtype == np.int8 and centroids.shape == (16,)


@pytest.fixture(scope="module")
def digits_mod():
    return tvm_mp.load_onnx(digits_cnn_path(), shapes={"input": (1, 1, 8, 8)})


def test_digits_mixed_plan_compiles_reports_and_matches(digits_mod):
    plan = PrecisionPlan({"conv2d_0": Precision(8, 8), "conv2d_1": Precision.bf16(),
                          "conv2d_2": Precision.clustered(16, 8), "dense_0": Precision.fp8_e4m3()})
    cm = tvm_mp.compile(digits_mod, plan=plan, calibration=calibration_batches(2, 16))
    rows = {r.name: r for r in cm.report.layers}
    assert {n: r.kernel for n, r in rows.items()} == {"conv2d_0": "packed", "conv2d_1": "float:e8m7",
                                                      "conv2d_2": "clustered:K16", "dense_0": "float:e4m3fn"}
    assert rows["conv2d_1"].weight_bytes == 2 * 4608 and rows["dense_0"].weight_bytes == 1280
    assert rows["conv2d_2"].weight_bytes == 4 * (9216 * 4 // 32 + 1) + 16
    assert rows["conv2d_1"].arithmetic == "emulated" and rows["conv2d_2"].arithmetic == "table"
    assert "float:e8m7" in str(cm.report) and "emulated" in str(cm.report)
    x = load_digits_split().x_test[:24]
    np.testing.assert_array_equal(cm.run(x).view(np.uint32), cm.reference(x).view(np.uint32))


def test_float_only_plan_needs_no_calibration(digits_mod):
    cm = tvm_mp.compile(digits_mod, plan=PrecisionPlan.uniform(digits_mod, Precision.fp16()))
    x = load_digits_split().x_test[:4]
    np.testing.assert_array_equal(cm.run(x), cm.reference(x))
    ref32 = _tvm.run_relax(_tvm.build(digits_mod), [x[:1]])
    np.testing.assert_allclose(cm.run(x[:1]), ref32, rtol=0.02, atol=0.02)


def test_analysis_counts_every_mac_of_clustered_layers_and_prices_the_plan(net, ranges, calib):
    from tvm_mp.formats import analysis
    from tvm_mp.layers import list_layers

    q = quantized(net, ranges, PLAN_A)
    counts = analysis.clustered_pair_counts(q, calib[:2])
    infos = {i.name: i for i in list_layers(net)}
    assert set(counts) == {"conv2d_2", "conv2d_3"}
    for name, c in counts.items():
        assert c.shape == (PLAN_A[name].clusters, 1 << PLAN_A[name].a_bits)
        assert c.sum() == infos[name].macs * 8  # two batches of 4 samples; the layer's MACs are per sample
    plan = PrecisionPlan(PLAN_A)
    stats = analysis.clustered_stats(plan, counts, counts, 4, 3)
    assert all(0 < s.hits.exact_hit_rate <= s.hits.approx_hit_rate <= 1 for s in stats.values())
    energy = {e.name: e for e in analysis.plan_energy(list_layers(net), plan, mac_pj={"conv2d_2": 0.0})}
    assert energy["conv2d_2"].compute_pj == 0.0 and energy["conv2d_1"].format == "e5m10"
    assert energy["conv2d_0"].compute_pj == pytest.approx(infos["conv2d_0"].macs * 0.3)
