"""``tvm_mp.driver.compile_offloaded``: a thin alias of ``tvm_mp.compile(target="accel")`` (same build, same model
object), with its ``accel_layers`` subset, ``hw``, ``mappings`` and ``objective`` passed through."""

import numpy as np
import pytest
from tvm import relax

import tvm_mp
from tests._nets import residual_net
from tvm_mp import Precision, PrecisionPlan
from tvm_mp.accel.hardware import HardwareConfig
from tvm_mp.accel.target import accel_layer_names, chosen_layers
from tvm_mp.driver import compile_offloaded
from tvm_mp.errors import UnsupportedError
from tvm_mp.model import CompiledModel

P = Precision
HW = HardwareConfig.default()
MIXED = {"conv2d_0": P(2, 2), "conv2d_1": P(8, 4), "conv2d_2": P(4, 8), "conv2d_3": P(2, 8), "dense_0": P(4, 4)}


@pytest.fixture(scope="module")
def net():
    return residual_net(0, last_channels=20)  # conv, depthwise, 1x1 conv, dense; integer and float edges


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    calib = [rng.normal(0, 1, (4, 3, 10, 10)).astype(np.float32) for _ in range(2)]
    xs = [rng.normal(0, 1, (1, 3, 10, 10)).astype(np.float32) for _ in range(2)]
    return calib, xs


@pytest.fixture(scope="module")
def cpu(net, data):
    """The CPU compile of the mixed plan: what every alias build must equal bit for bit."""
    return tvm_mp.compile(net, plan=PrecisionPlan(MIXED), target="host", calibration=data[0])


def calls(model, op: str) -> list:
    return [b.value for blk in model.lowered["main"].body.blocks for b in blk.bindings
            if isinstance(b.value, relax.Call) and b.value.op.name == op]


def test_accel_layers_subset_equals_the_cpu_compile(net, data, cpu):
    """Chosen layers on the accelerator, the other planned layers stay CPU integer kernels; the result is the
    accelerator target's model and equals the CPU compile of the same plan exactly."""
    calib, xs = data
    model = compile_offloaded(net, PrecisionPlan(MIXED), calib, accel_layers=["conv2d_1", "dense_0"])
    assert type(model) is CompiledModel and model.target.kind == "accel" and model.accel is not None
    assert sorted(model.accel.kernels) == ["conv2d_1", "dense_0"]
    assert model.report.accelerator["cpu_layers"] == ["conv2d_0", "conv2d_2", "conv2d_3"]
    kernels = {c.args[0].name_hint for c in calls(model, "relax.call_tir")}
    assert {"tvm_mp_conv2d_0_kernel", "tvm_mp_conv2d_2_kernel", "tvm_mp_conv2d_3_kernel"} <= kernels
    assert "tvm_mp_conv2d_1_kernel" not in kernels and len(calls(model, "relax.call_dps_packed")) == 2
    for x in xs:
        np.testing.assert_array_equal(model.run(x), cpu.run(x))
    assert model.accel.last["conv2d_1"].cycles > 0
    text = str(model.accel.report("net", model.report.layers))
    assert "(cpu)" in text and "conv2d_1" in text


def test_hw_mappings_and_default_layers_pass_through(net, data, cpu):
    """``hw`` becomes the target's description: layers at precisions it lacks (2 bits) stay on the CPU by
    default, and asking for one is a one-line error; a given mapping is used as is."""
    calib, xs = data
    hw = HardwareConfig.from_dict({**HW.to_dict(), "supported_bits": [8, 4],
                                   "mac_energy_pj": {k: v for k, v in HW.mac_energy_pj.items()
                                                     if "1" not in k and "2" not in k}})
    from tvm_mp.accel.lower import LayerMapping

    mapping = LayerMapping(2, 2, 1, 1, "sp_oc", "output", False)  # small tiles the search would not pick
    model = compile_offloaded(net, PrecisionPlan(MIXED), calib, hw, mappings={"conv2d_2": mapping},
                              objective="latency")
    assert model.target.hardware == hw
    assert sorted(model.accel.kernels) == ["conv2d_1", "conv2d_2", "dense_0"]
    assert model.report.accelerator["cpu_layers"] == ["conv2d_0", "conv2d_3"]
    assert model.accel.kernels["conv2d_2"].spec.mapping == mapping
    for x in xs:
        np.testing.assert_array_equal(model.run(x), cpu.run(x))
    q = model.quantized_module
    capable = set(accel_layer_names(q, hw))
    with pytest.raises(UnsupportedError, match="cannot run on .* leave it out of accel_layers"):
        chosen_layers(q, hw, capable, ["conv2d_0"])
    with pytest.raises(UnsupportedError, match="'conv2d_9' is not a planned layer"):
        chosen_layers(q, hw, capable, ["conv2d_9"])


def test_cpu_target_or_hw_with_target_refused(net, data):
    plan = PrecisionPlan(MIXED)
    with pytest.raises(UnsupportedError, match="leave target out, or give target='accel'"):
        compile_offloaded(net, plan, data[0], target="host")
    with pytest.raises(UnsupportedError, match="hw or target, not both"):
        compile_offloaded(net, plan, data[0], HW, target="accel")
    with pytest.raises(UnsupportedError, match="options of the accelerator target"):
        tvm_mp.driver.build(net, plan, "host", calibration=data[0], accel_layers=["conv2d_1"])
