"""The TIR-driven lowering of dense layers: the built TIR pushes the same instruction stream as the Python
generator (so the same cycles and energy), and the simulator runs it bit-exactly."""

import numpy as np
import pytest

from tvm_mp.accel.hardware import HardwareConfig
from tvm_mp.accel.lower import ConvShape, LayerMapping, LayerPlan, OutputSpec, lower
from tvm_mp.accel.simulator import run_layer
from tvm_mp.accel.tir_lower import TirLayer, TirLowerError, tir_program, tir_supported
from tvm_mp.quantize import reference, scheme

HW = HardwareConfig.default()


def _operands(rng, shape, w_bits, a_bits):
    codes = rng.integers(0, 1 << a_bits, (shape.n, shape.c)).astype(np.uint8)
    lo, hi = scheme.weight_qrange(w_bits)
    w = rng.integers(lo, hi + 1, (shape.oc, shape.c)).astype(np.int8)
    bias = rng.integers(-5000, 5000, shape.oc).astype(np.int32)
    return codes, w, bias


@pytest.mark.parametrize("bits,n,mapping,kind", [
    ((8, 8), 3, LayerMapping(1, 1, 1, 2), "acc"),  # weights reloaded per step, inputs per step
    ((8, 8), 3, LayerMapping(1, 1, 3, 4, order="sp_oc", dataflow="output"), "codes"),  # one tile: all resident
    ((4, 4), 2, LayerMapping(1, 1, 1, 1, order="sp_oc", double_buffer=False), "codes"),
])
def test_tir_pushes_the_generators_stream_and_runs_bit_exact(bits, n, mapping, kind):
    w_bits, a_bits = bits
    rng = np.random.default_rng(n + w_bits)
    shape = ConvShape(n, 64 if w_bits == 8 else 96, 1, 1, 48, 1, 1)
    zp = 5
    output = OutputSpec() if kind == "acc" else OutputSpec.codes(8, zero_point=3, lo=1, hi=200)
    plan = LayerPlan(shape, w_bits, a_bits, HW, mapping, output, zp)
    assert tir_supported(plan)
    program = tir_program(plan)
    generated = lower(plan)
    assert program.instructions == generated.instructions  # same stream, so the same cycles and energy
    assert program.regions == generated.regions
    codes, w, bias = _operands(rng, shape, w_bits, a_bits)
    mult, shift = scheme.requant_multiplier(rng.uniform(1e-4, 0.02, shape.oc))
    out, result = run_layer(shape, w_bits, a_bits, codes, w, bias, HW, output=output, zero_point=zp, mult=mult,
                            shift=shift, program=program, plan=plan)
    _, ref_result = run_layer(shape, w_bits, a_bits, codes, w, bias, HW, output=output, zero_point=zp, mult=mult,
                              shift=shift, program=generated, plan=plan)
    assert (result.cycles, result.energy_uj) == (ref_result.cycles, ref_result.energy_uj)
    acc = reference.conv2d_acc(codes.reshape(n, -1, 1, 1), w.reshape(shape.oc, -1, 1, 1), shape.params, zp)
    acc = (acc.astype(np.int64) + bias[None, :, None, None]).astype(np.int32).reshape(n, -1)
    expected = acc if kind == "acc" else scheme.requantize(acc, 1, mult, shift, 3, 1, 200)
    np.testing.assert_array_equal(out, expected)


def test_the_built_tir_calls_the_runtime():
    plan = LayerPlan(ConvShape(1, 32, 1, 1, 32, 1, 1), 8, 8, HW, LayerMapping(1, 1, 1, 1))
    layer = TirLayer(plan, prefix="tvm_mp.accel.tir.test")
    script = layer.schedule().mod.script()
    for name in ("gemm", "reset", "load_inp", "load_wgt", "alu_store"):
        assert f'T.call_packed("tvm_mp.accel.tir.test.{name}"' in script


def test_tiles_that_do_not_divide_are_refused_in_one_line():
    plan = LayerPlan(ConvShape(1, 48, 1, 1, 32, 1, 1), 8, 8, HW, LayerMapping(1, 1, 1, 2))  # 3 input blocks / 2
    assert not tir_supported(plan)
    with pytest.raises(TirLowerError, match="use accel.lower.lower") as err:
        TirLayer(plan)
    assert "\n" not in str(err.value)
