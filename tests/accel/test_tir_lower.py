"""The TIR-driven lowering of dense and 1x1 conv layers: the built TIR pushes the same instruction stream as the Python
generator (so the same cycles and energy), and the simulator runs it bit-exactly."""

import numpy as np
import pytest
import tvm

from tvm_mp.accel.hardware import HardwareConfig
from tvm_mp.accel.lower import ConvShape, LayerMapping, LayerPlan, OutputSpec, lower
from tvm_mp.accel.simulator import run_layer
from tvm_mp.accel.tir_lower import TirLayer, TirLowerError, tir_program, tir_supported
from tvm_mp.quantize import reference, scheme
from tvm_mp.workload import ConvParams

HW = HardwareConfig.default()


def _operands(rng, shape, w_bits, a_bits):
    dense = shape.h == shape.w == 1
    codes = rng.integers(0, 1 << a_bits, (shape.n, shape.c) + (() if dense else (shape.h, shape.w))).astype(np.uint8)
    lo, hi = scheme.weight_qrange(w_bits)
    w = rng.integers(lo, hi + 1, (shape.oc, shape.c) + (() if dense else (1, 1))).astype(np.int8)
    bias = rng.integers(-5000, 5000, shape.oc).astype(np.int32)
    return codes, w, bias


@pytest.mark.parametrize("bits,n,hw_px,mapping,kind", [
    ((8, 8), 3, 1, LayerMapping(1, 1, 1, 2), "acc"),  # dense: weights and inputs reloaded every step
    ((8, 8), 3, 1, LayerMapping(1, 1, 3, 4, order="sp_oc", dataflow="output"), "codes"),  # one tile: resident
    ((4, 4), 2, 4, LayerMapping(2, 4, 1, 1, order="sp_oc", double_buffer=False), "codes"),  # 1x1 conv, 4x4 px
])
def test_tir_pushes_the_generators_stream_and_runs_bit_exact(bits, n, hw_px, mapping, kind):
    w_bits, a_bits = bits
    rng = np.random.default_rng(n + w_bits)
    shape = ConvShape(n, 64 if w_bits == 8 else 96, hw_px, hw_px, 48, 1, 1)
    zp = 5
    output = OutputSpec() if kind == "acc" else OutputSpec.codes(8, zero_point=3, lo=1, hi=200)
    plan = LayerPlan(shape, w_bits, a_bits, HW, mapping, output, zp)
    assert tir_supported(plan)
    prefix = f"tvm_mp.accel.tir.test{n}{w_bits}{hw_px}"
    program = tir_program(plan, prefix)
    assert tvm.get_global_func(f"{prefix}.gemm", allow_missing=True) is None  # the recorder is gone again
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
    acc = reference.conv2d_acc(codes.reshape(n, -1, hw_px, hw_px), w.reshape(shape.oc, -1, 1, 1), shape.params, zp)
    acc = (acc.astype(np.int64) + bias[None, :, None, None]).astype(np.int32)
    expected = acc if kind == "acc" else scheme.requantize(acc, 1, mult, shift, 3, 1, 200)
    np.testing.assert_array_equal(out, expected.reshape(out.shape))


def test_the_built_tir_calls_the_runtime():
    plan = LayerPlan(ConvShape(1, 32, 1, 1, 32, 1, 1), 8, 8, HW, LayerMapping(1, 1, 1, 1))
    layer = TirLayer(plan, prefix="tvm_mp.accel.tir.test")
    script = layer.schedule().mod.script()
    for name in ("gemm", "reset", "load_inp", "load_wgt", "alu_store"):
        assert f'T.call_packed("tvm_mp.accel.tir.test.{name}"' in script


def test_tiles_that_do_not_divide_are_refused_in_one_line():
    plan = LayerPlan(ConvShape(1, 48, 1, 1, 32, 1, 1), 8, 8, HW, LayerMapping(1, 1, 1, 2))  # 3 input blocks / 2
    assert not tir_supported(plan)
    conv3x3 = ConvShape(1, 16, 6, 6, 16, 3, 3, ConvParams(padding=(1, 1, 1, 1)))
    assert not tir_supported(LayerPlan(conv3x3, 8, 8, HW, LayerMapping(3, 3, 1, 1)))
    with pytest.raises(TirLowerError, match="use accel.lower.lower") as err:
        TirLayer(plan)
    assert "\n" not in str(err.value)

