"""Compile and run through the Relax VM with layers on the simulated accelerator: bit-exact with the reference."""

import time

import numpy as np
import pytest
import tvm
from tvm import relax

import tvm_mp
from tests._nets import residual_net
from tvm_mp import Precision, PrecisionPlan
from tvm_mp.accel.hardware import HardwareConfig
from tvm_mp.accel.offload import isolate
from tvm_mp.driver import compile_offloaded
from tvm_mp.errors import Error
from tvm_mp.models.builders import BUILDERS

HW = HardwareConfig.default()


def build_net(seed: int = 0) -> tvm.IRModule:
    """Integer and float edges on the CPU side, every layer kind on the accelerator side."""
    return residual_net(seed, last_channels=20)


@pytest.fixture(scope="module")
def net():
    return build_net()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    calib = [rng.normal(0, 1, (4, 3, 10, 10)).astype(np.float32) for _ in range(2)]
    xs = [rng.normal(0, 1, (1, 3, 10, 10)).astype(np.float32) for _ in range(2)]
    return calib, xs


def check_exact(model, xs):
    for x in xs:
        y = model.run(x)
        np.testing.assert_array_equal(y, model.reference(x))
    return y


@pytest.mark.parametrize("bits", [(8, 8), (4, 4), (2, 2), (4, 8), (8, 2), (3, 5)])
def test_all_layers_on_the_accelerator_bit_exact(net, data, bits):
    calib, xs = data
    model = compile_offloaded(net, PrecisionPlan.uniform(net, Precision(*bits)), calib, HW)
    try:
        assert model.accel_layers == ("conv2d_0", "conv2d_1", "conv2d_2", "conv2d_3", "dense_0")
        y = check_exact(model, xs)
        assert np.isfinite(y).all() and y.std() > 0
        report = model.accel_report("net")
        assert all(r.source == "simulator" and r.energy_uj > 0 and r.cycles > 0 for r in report.rows)
        assert {r.precision for r in report.rows} == {f"w{bits[0]}a{bits[1]}"}
    finally:
        model.close()


def test_mixed_cpu_and_accelerator(net, data):
    """Mixed precisions; layers at 2 bits stay on the CPU of hardware without a 2-bit mode, and CPU layers keep
    their integer edges."""
    calib, xs = data
    hw = HardwareConfig.from_dict({**HW.to_dict(), "supported_bits": [8, 4],
                                   "mac_energy_pj": {k: v for k, v in HW.mac_energy_pj.items()
                                                     if "1" not in k and "2" not in k}})
    plan = PrecisionPlan({"conv2d_0": Precision(2, 2), "conv2d_1": Precision(8, 4), "conv2d_2": Precision(4, 8),
                          "conv2d_3": Precision(2, 8), "dense_0": Precision(4, 4)})
    model = compile_offloaded(net, plan, calib, hw)
    try:
        assert model.accel_layers == ("conv2d_1", "conv2d_2", "dense_0")
        assert model.cpu_layers == ("conv2d_0", "conv2d_3")
        check_exact(model, xs)
        calls = [b.value for blk in model.compiled.lowered["main"].body.blocks for b in blk.bindings
                 if isinstance(b.value, relax.Call)]
        packed = [c for c in calls if c.op.name == "relax.call_dps_packed"]
        assert len(packed) == 3
        kernels = [c.args[0].name_hint for c in calls if c.op.name == "relax.call_tir"]
        assert "tvm_mp_conv2d_0_kernel" in kernels and "tvm_mp_conv2d_3_kernel" in kernels
        text = str(model.accel_report("net"))
        assert "(cpu)" in text and "conv2d_2" in text
    finally:
        model.close()


def test_packed_functions_registered_at_build_and_removed_on_close(net, data):
    calib, xs = data
    model = compile_offloaded(net, PrecisionPlan.uniform(net, Precision(4, 4)), calib, HW,
                              accel_layers=["conv2d_1"])
    name = model.session.function_name("conv2d_1")
    assert tvm.get_global_func(name, allow_missing=True) is not None
    with pytest.raises(Error, match="run the model once"):
        model.accel_report()
    check_exact(model, xs)
    assert model.session.layers["conv2d_1"].calls == len(xs)
    model.close()
    assert tvm.get_global_func(name, allow_missing=True) is None


def test_isolate_makes_float_edges(net, data):
    from tvm_mp.passes import AnnotatePrecision, QuantizeWeights
    from tvm_mp.quantize.calibrate import calibrate
    from tvm_mp.quantize.graph import analyze_outputs

    calib, _ = data
    q = QuantizeWeights()(AnnotatePrecision(PrecisionPlan.uniform(net, Precision(4, 4)), calibrate(net, calib))(net))
    before = {str(o.consumer_layer) for o in analyze_outputs(q["main"], q).values() if o.integer}
    assert "conv2d_1" in before  # conv2d_0 -> relu -> maxpool -> conv2d_1 is an integer edge ...
    iso = isolate(q, ["conv2d_1"])
    after = analyze_outputs(iso["main"], iso)
    assert "conv2d_1" not in {str(o.consumer_layer) for o in after.values() if o.integer}  # ... made float
    with pytest.raises(Error, match="not an annotated layer"):
        isolate(q, ["conv2d_9"])


@pytest.mark.slow
def test_resnet8_end_to_end_in_seconds(tmp_path):
    builder = BUILDERS["resnet8"]
    mod = tvm_mp.load_onnx(builder.build(0), shapes={"input": (1, 3, 32, 32)})
    rng = np.random.default_rng(0)
    calib = [rng.normal(0, 1, (4, 3, 32, 32)).astype(np.float32)]
    model = compile_offloaded(mod, PrecisionPlan.uniform(mod, Precision(4, 4)), calib, HW)
    try:
        assert len(model.accel_layers) == 10 and not model.cpu_layers
        x = rng.normal(0, 1, (1, 3, 32, 32)).astype(np.float32)
        start = time.perf_counter()
        y = model.run(x)
        elapsed = time.perf_counter() - start
        np.testing.assert_array_equal(y, model.reference(x))
        assert elapsed < 10.0  # every layer simulated instruction by instruction
        report = model.accel_report("resnet8")
        assert len(report.rows) == 10 and report.cycles > 0
        png = report.plot(tmp_path / "resnet8.png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        model.close()
