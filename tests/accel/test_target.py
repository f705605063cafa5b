"""``tvm_mp.compile(target="accel")``: the accelerator as a compile target, bit-exact with the CPU build."""

import json

import numpy as np
import pytest

import tvm_mp
from tests._nets import residual_net
from tvm_mp import Budget, Precision, PrecisionPlan
from tvm_mp.accel.hardware import HardwareConfig, HardwareError
from tvm_mp.accel.lower import lower
from tvm_mp.accel.simulator import run_layer
from tvm_mp.errors import Error
from tvm_mp.targets import TargetError, parse

P = Precision


@pytest.fixture(scope="module")
def net():
    return residual_net(0, last_channels=20)  # conv, depthwise, 1x1 conv, dense; integer and float edges


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    calib = [rng.normal(0, 1, (4, 3, 10, 10)).astype(np.float32) for _ in range(2)]
    xs = rng.normal(0, 1, (3, 1, 3, 10, 10)).astype(np.float32)
    return calib, xs


MIXED = {"conv2d_0": P(8, 8), "conv2d_1": P(4, 4), "conv2d_2": P(2, 2), "conv2d_3": P(4, 8), "dense_0": P(8, 4)}


def test_mixed_plan_equals_the_cpu_compile(net, data, tmp_path):
    calib, xs = data
    plan = PrecisionPlan(MIXED)
    accel = tvm_mp.compile(net, plan=plan, target="accel", calibration=calib)
    cpu = tvm_mp.compile(net, plan=plan, target="host", calibration=calib)
    assert sorted(accel.accel.kernels) == sorted(MIXED)
    for x in xs:
        y = accel.run(x)
        np.testing.assert_array_equal(y, cpu.run(x))  # integer layers exact, float epilogue exact too
        assert np.isfinite(y).all() and y.std() > 0
    # the report: simulated figures per layer, totals, per-component energy; data-independent
    rep = accel.report
    a = rep.accelerator
    assert rep.energy_basis == rep.latency_basis == "simulated" and a["hardware"] == "tvm-mp-accel-45nm"
    assert a["cycles"] == sum(e["cycles"] for e in a["layers"]) and a["cycles"] > 0
    assert abs(sum(a["components_uj"].values()) - rep.energy_uj) < 1e-9
    assert [r.kernel for r in rep.layers] == ["accel"] * 5
    outputs = {e["name"]: e["output"] for e in a["layers"]}
    assert outputs["conv2d_0"] == "codes" and outputs["dense_0"] == "int32 to host"
    last = accel.accel.last
    for e in a["layers"]:
        assert last[e["name"]].cycles == e["cycles"] and abs(last[e["name"]].energy_uj - e["energy_uj"]) < 1e-12
    assert "accelerator tvm-mp-accel-45nm" in str(rep)
    # the runtime's figures are the simulator's for the same layer and mapping
    k = accel.accel.kernels["conv2d_0"]
    s = k.spec
    codes = np.full((1, s.shape.c, s.shape.h, s.shape.w), s.zero_point, np.uint8)
    _, res = run_layer(s.shape, s.w_bits, s.a_bits, codes, k.arrays["w_q"], k.arrays["bias_corr"], k.hw, s.mapping,
                       s.output, s.zero_point, k.arrays["mult"], k.arrays["shift"])
    assert res.cycles == last["conv2d_0"].cycles and res.energy == last["conv2d_0"].energy
    # export + load round trip: same outputs, figures, mappings
    art = accel.export(tmp_path / "art")
    assert {"model.so", "accel"} <= {p.name for p in art.iterdir()}
    assert (art / "accel" / "conv2d_1.program.txt").read_text().count("GEMM") >= 1
    # every layer's stream (3x3, strided, depthwise, 1x1 conv, dense) is what its tensorized TIR pushed
    # (tir_lower), the same as the generator's
    for name, kernel in accel.accel.kernels.items():
        assert kernel.program.instructions == lower(kernel.plan).instructions, name
        assert (art / "accel" / f"{name}.program.txt").read_text().startswith("# lowered by: tir\n")
    back = tvm_mp.load(art)
    assert back.target == accel.target and back.report.accelerator == json.loads(json.dumps(a))
    np.testing.assert_array_equal(back.run(xs[0]), accel.run(xs[0]))
    assert {n: str(k.spec.mapping) for n, k in back.accel.kernels.items()} == \
        {n: str(k.spec.mapping) for n, k in accel.accel.kernels.items()}


@pytest.mark.slow
@pytest.mark.parametrize("bits", [(8, 8), (4, 4), (2, 2)])
def test_uniform_plans_bit_exact(net, data, bits):
    calib, xs = data
    model = tvm_mp.compile(net, plan=PrecisionPlan.uniform(net, P(*bits)), target="accel", calibration=calib)
    assert len(model.accel.kernels) == 5
    for x in xs[:2]:
        np.testing.assert_array_equal(model.run(x), model.reference(x))


@pytest.mark.slow
def test_unsupported_precisions_stay_on_the_cpu(net, data):
    calib, xs = data
    hw = HardwareConfig.default()
    only8 = hw.to_dict()
    only8["supported_bits"] = [8]
    only8["mac_energy_pj"] = {"w8a8": 0.3}
    plan = PrecisionPlan({"conv2d_0": P(8, 8), "conv2d_2": P(4, 4), "dense_0": P(8, 8)})
    model = tvm_mp.compile(net, plan=plan, target={"kind": "accel", "config": only8}, calibration=calib)
    assert sorted(model.accel.kernels) == ["conv2d_0", "dense_0"]
    assert model.report.accelerator["cpu_layers"] == ["conv2d_2"]
    np.testing.assert_array_equal(model.run(xs[0]), model.reference(xs[0]))


def test_hardware_description_through_the_target(tmp_path):
    cfg = HardwareConfig.default().to_dict()
    cfg["name"] = "small"
    cfg["buffers"]["acc"]["size_bytes"] = 8192
    path = tmp_path / "small.json"
    path.write_text(json.dumps(cfg))
    for spec in ({"kind": "accel", "config": str(path)}, json.dumps({"kind": "accel", "config": str(path)})):
        t = parse(spec)
        assert t.kind == "accel" and t.hardware.name == "small" and t.cost_key == "accel" and t.is_host
    assert parse(parse({"kind": "accel", "config": str(path)}).to_json()).hardware == t.hardware
    assert parse("accel").hardware == HardwareConfig.default() and parse("accel") != t
    bad = dict(cfg, buffers={**cfg["buffers"], "inp": {**cfg["buffers"]["inp"], "size_bytes": 0}})
    cases = [({"kind": "accel", "config": str(tmp_path / "none.json")}, HardwareError, "not found"),
             ({"kind": "accel", "config": bad}, HardwareError, "buffers.inp.size_bytes=0"),
             ({"kind": "accel", "hw": "x"}, TargetError, "unknown key 'hw'"),
             ({"kind": "accel", "config": 3}, TargetError, "hardware description file")]
    for spec, kind, needle in cases:
        with pytest.raises(kind) as err:
            parse(spec)
        assert needle in str(err.value) and "\n" not in str(err.value) and isinstance(err.value, Error)


@pytest.mark.slow
def test_budget_met_by_the_simulator(net, data):
    from tvm_mp.search.budget import compile_with_budget

    calib, xs = data
    options = (P(8, 8), P(4, 4), P(2, 2))
    top = tvm_mp.compile(net, plan=PrecisionPlan.uniform(net, P(8, 8)), target="accel", calibration=calib)
    low = tvm_mp.compile(net, plan=PrecisionPlan.uniform(net, P(2, 2)), target="accel", calibration=calib)
    limit = 0.5 * (top.report.energy_uj + low.report.energy_uj)
    model = compile_with_budget(net, Budget(energy_uj=limit), target="accel", calibration=calib, options=options)
    assert model.report.energy_basis == "simulated" and model.report.energy_uj <= limit
    assert model.report.cost_model.startswith("accelerator simulator")
    np.testing.assert_array_equal(model.run(xs[0]), model.reference(xs[0]))


def _model(name):
    from tvm_mp.models import digits_cnn_path
    from tvm_mp.models.builders import BUILDERS, build_random_cnn, random_cnn_input_shape

    if name == "digits":
        return tvm_mp.load_onnx(digits_cnn_path(), shapes={"input": (1, 1, 8, 8)}), (1, 1, 8, 8)
    if name == "held-out":  # a random architecture no other accel test uses
        shape = random_cnn_input_shape(3)
        return tvm_mp.load_onnx(build_random_cnn(3), shapes={"input": shape}), shape
    b = BUILDERS[name]
    return tvm_mp.load_onnx(b.build(0), shapes={b.input_name: b.input_shape}), b.input_shape


@pytest.mark.slow
@pytest.mark.parametrize("name", ["digits", "ds_cnn", "held-out"])
def test_models_mixed_plan_equals_the_cpu_compile(name):
    mod, shape = _model(name)
    rng = np.random.default_rng(0)
    calib = [rng.random((2,) + tuple(shape[1:]), dtype=np.float32) for _ in range(2)]
    x = rng.random(shape, dtype=np.float32)
    cycle = [P(8, 8), P(4, 4), P(2, 2), P(4, 8), P(8, 2)]
    plan = PrecisionPlan({info.name: cycle[i % len(cycle)] for i, info in enumerate(tvm_mp.list_layers(mod))})
    accel = tvm_mp.compile(mod, plan=plan, target="accel", calibration=calib)
    cpu = tvm_mp.compile(mod, plan=plan, target="host", calibration=calib)
    assert len(accel.accel.kernels) == len(plan)
    np.testing.assert_array_equal(accel.run(x), cpu.run(x))


@pytest.mark.slow
def test_resnet8_w8a8_every_layer_through_tir_equals_the_cpu_compile():
    # digits: test_models_mixed_plan_equals_the_cpu_compile; MobileNetV1-0.25 (a minute here): bench/accel_tir.py
    mod, shape = _model("resnet8")
    rng = np.random.default_rng(0)
    calib = [rng.random((2,) + tuple(shape[1:]), dtype=np.float32) for _ in range(2)]
    x = rng.random(shape, dtype=np.float32)
    plan = PrecisionPlan.uniform(mod, P(8, 8))
    accel = tvm_mp.compile(mod, plan=plan, target="accel", calibration=calib)
    cpu = tvm_mp.compile(mod, plan=plan, target="host", calibration=calib)
    assert len(accel.accel.kernels) == len(plan)
    np.testing.assert_array_equal(accel.run(x), cpu.run(x))
