"""The TIR-driven lowering of every accelerator layer (dense; conv2d kxk, strided, padded, dilated, grouped, depthwise;
any mapping, remainder tiles included): the built TIR pushes the same instruction stream as the Python generator (so
the same cycles and energy), and the simulator runs it bit-exactly."""

import numpy as np
import pytest
import tvm

from tvm_mp.accel.hardware import HardwareConfig
from tvm_mp.accel.lower import ConvShape, LayerMapping, LayerPlan, OnChipInput, OnChipOutput, OutputSpec, lower
from tvm_mp.accel.mapping import candidate_mappings, search_mappings
from tvm_mp.accel.simulator import run_layer
from tvm_mp.accel.tir_lower import TirLayer, tir_program
from tvm_mp.quantize import reference, scheme
from tvm_mp.workload import ConvParams

HW = HardwareConfig.default()


def _operands(rng, shape, w_bits, a_bits):
    dense = shape.h == shape.w == 1
    codes = rng.integers(0, 1 << a_bits, (shape.n, shape.c) + (() if dense else (shape.h, shape.w))).astype(np.uint8)
    lo, hi = scheme.weight_qrange(w_bits)
    w = rng.integers(lo, hi + 1, (shape.oc, shape.cg) + (() if dense else (shape.kh, shape.kw))).astype(np.int8)
    bias = rng.integers(-5000, 5000, shape.oc).astype(np.int32)
    return codes, w, bias


@pytest.mark.parametrize("bits,shape,mapping,kind", [
    ((8, 8), ConvShape(3, 64, 1, 1, 48, 1, 1), LayerMapping(1, 1, 1, 2), "acc"),  # dense: reloaded every step
    ((8, 8), ConvShape(3, 64, 1, 1, 48, 1, 1), LayerMapping(1, 1, 3, 4, order="sp_oc", dataflow="output"),
     "codes"),  # one tile: resident
    ((4, 4), ConvShape(2, 96, 4, 4, 48, 1, 1), LayerMapping(2, 4, 1, 1, order="sp_oc", double_buffer=False),
     "codes"),  # 1x1 conv, 4x4 px
    ((4, 8), ConvShape(2, 48, 7, 7, 48, 3, 3, ConvParams(strides=(2, 2), padding=(1, 1, 1, 1), groups=48)),
     LayerMapping(3, 2, 1, 1), "codes"),  # depthwise, strided, padded, tail tiles, a smaller last super-group
    ((2, 2), ConvShape(1, 32, 6, 5, 24, 3, 3, ConvParams(padding=(1, 1, 1, 1))), LayerMapping(4, 5, 2, 1), "acc"),
])
def test_tir_pushes_the_generators_stream_and_runs_bit_exact(bits, shape, mapping, kind):
    w_bits, a_bits = bits
    rng = np.random.default_rng(shape.n + w_bits)
    zp = 5 if a_bits > 2 else 1
    output = OutputSpec() if kind == "acc" else OutputSpec.codes(8, zero_point=3, lo=1, hi=200)
    plan = LayerPlan(shape, w_bits, a_bits, HW, mapping, output, zp)
    prefix = f"tvm_mp.accel.tir.test{shape.n}{w_bits}{shape.h}"
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
    acc = reference.conv2d_acc(codes.reshape(shape.n, shape.c, shape.h, shape.w),
                               w.reshape(shape.oc, shape.cg, shape.kh, shape.kw), shape.params, zp)
    acc = (acc.astype(np.int64) + bias[None, :, None, None]).astype(np.int32)
    expected = acc if kind == "acc" else scheme.requantize(acc, 1, mult, shift, 3, 1, 200)
    np.testing.assert_array_equal(out, expected.reshape(out.shape))


def test_the_built_tir_calls_the_runtime():
    plan = LayerPlan(ConvShape(1, 32, 1, 1, 32, 1, 1), 8, 8, HW, LayerMapping(1, 1, 1, 1))
    layer = TirLayer(plan, prefix="tvm_mp.accel.tir.test")
    script = layer.schedule().mod.script()
    for name in ("gemm", "reset", "load_inp", "load_wgt", "alu_store"):
        assert f'T.call_packed("tvm_mp.accel.tir.test.{name}"' in script


# (shape, bits, mapping): kxk / strided / padded / dilated / grouped / depthwise, tail tiles in every dimension
PAD1 = ConvParams(padding=(1, 1, 1, 1))
LAYERS = [
    (ConvShape(1, 16, 6, 6, 16, 3, 3, PAD1), 8, LayerMapping(4, 4, 1, 1)),  # 3x3: 4 + 2 rows / columns
    (ConvShape(1, 40, 7, 7, 24, 3, 3, ConvParams(strides=(2, 2), padding=(1, 1, 1, 1))), 8,
     LayerMapping(3, 2, 1, 2, order="sp_oc", dataflow="output")),  # strided; 3 input blocks in tiles of 2
    (ConvShape(2, 24, 9, 7, 24, 5, 5, ConvParams(strides=(2, 1), padding=(2, 2, 2, 2), groups=24)), 2,
     LayerMapping(2, 5, 1, 1, double_buffer=False)),  # depthwise 5x5, batch 2, single buffer
    (ConvShape(1, 48, 5, 5, 48, 3, 3, ConvParams(padding=(0, 1, 1, 0), groups=48)), 4,
     LayerMapping(3, 4, 1, 1, order="sp_oc")),  # super-groups of 32 and 16 channels: a smaller last one
    (ConvShape(1, 64, 5, 5, 96, 3, 3, ConvParams(padding=(1, 1, 1, 1), groups=4)), 4,
     LayerMapping(2, 3, 2, 1)),  # grouped
    (ConvShape(1, 16, 9, 9, 16, 3, 3, ConvParams(padding=(2, 2, 2, 2), dilation=(2, 2))), 8, LayerMapping(4, 9, 1, 1)),
    (ConvShape(1, 16, 8, 8, 32, 1, 1, ConvParams(strides=(2, 2))), 2, LayerMapping(3, 4, 1, 1, order="sp_oc")),
    (ConvShape(3, 100, 1, 1, 40, 1, 1), 8, LayerMapping(1, 1, 2, 3)),  # dense: 7 input and 3 output blocks
]


@pytest.mark.parametrize("shape,bits,mapping", LAYERS, ids=[f"{s.kh}x{s.kw}g{s.groups}w{b}" for s, b, _ in LAYERS])
def test_every_conv_lowers_to_the_generators_stream(shape, bits, mapping):
    output = OutputSpec.codes(bits, zero_point=1) if shape.n == 1 else OutputSpec()
    plan = LayerPlan(shape, bits, bits, HW, mapping, output, zero_point=1)
    assert tir_program(plan).instructions == lower(plan).instructions


def test_the_searchs_mappings_lower_to_the_generators_stream():
    """The mapping the search returns and a seeded sample of its candidates whose tiles do not divide the layer (a
    strided 3x3 layer with 7x7 outputs, 2 input and 3 output blocks at w4a4)."""
    shape = ConvShape(1, 48, 13, 13, 40, 3, 3, ConvParams(strides=(2, 2), padding=(1, 1, 1, 1)))  # 7x7 out
    out = OutputSpec.codes(4)
    tails = [m for m in candidate_mappings(shape, 4, 4, HW, out) if shape.oh % m.th and shape.ow % m.tw and m.toc == 2]
    rng = np.random.default_rng(0)
    mappings = [search_mappings(shape, 4, 4, HW, out).best.mapping]
    mappings += [tails[i] for i in rng.choice(len(tails), 2, replace=False)]
    for m in mappings:
        plan = LayerPlan(shape, 4, 4, HW, m, out)
        assert tir_program(plan).instructions == lower(plan).instructions, str(m)


# chains of three layers (producer -> both -> consumer), tiled so windows, tails and clipped FORWARDs occur
CHAINS = [
    (8, ConvShape(1, 16, 8, 8, 32, 3, 3, PAD1), ConvShape(1, 32, 8, 8, 32, 3, 3, ConvParams((2, 2), (1, 1, 1, 1))),
     ConvShape(1, 32, 4, 4, 16, 1, 1), [LayerMapping(3, 5, 1, 1), LayerMapping(3, 2, 2, 1, order="sp_oc"),
                                        LayerMapping(3, 4, 1, 1, dataflow="output")]),
    (4, ConvShape(2, 16, 8, 8, 48, 3, 3, PAD1), ConvShape(2, 48, 8, 8, 48, 3, 3, ConvParams(padding=(0, 1, 1, 0),
                                                                                               groups=48)),
     ConvShape(2, 48, 7, 7, 16, 1, 1), [LayerMapping(5, 3, 1, 1, order="sp_oc", double_buffer=False),
                                        LayerMapping(3, 4, 1, 1, order="sp_oc"), LayerMapping(2, 7, 1, 1)]),
    (8, ConvShape(1, 16, 8, 8, 32, 3, 3, PAD1), ConvShape(1, 32, 8, 8, 32, 3, 3, ConvParams((2, 2), (1, 1, 1, 1),
                                                                                               groups=32)),
     ConvShape(1, 32, 4, 4, 16, 3, 3, PAD1), [LayerMapping(8, 3, 1, 1), LayerMapping(3, 3, 1, 1),
                                              LayerMapping(4, 3, 1, 2, double_buffer=False)]),
]


@pytest.mark.parametrize("bits,s1,s2,s3,mappings", CHAINS, ids=["w8a8", "w4a4-depthwise-2sg", "w8a8-depthwise"])
def test_chained_layers_lower_to_the_generators_stream(bits, s1, s2, s3, mappings):
    """A producer (FORWARDs), a layer chained on both sides and a consumer (FILLs, GEMMs in its resident image): the
    TIR run pushes the generator's stream, spatial tiles, tail tiles and clipped FORWARDs included."""
    m1, m2, m3 = mappings
    p3 = LayerPlan(s3, bits, bits, HW, m3, OutputSpec.codes(bits, 2), 1, onchip_in=OnChipInput(5))
    p2 = LayerPlan(s2, bits, bits, HW, m2, OutputSpec.codes(bits, 1), 3, onchip_in=OnChipInput(0),
                   onchip_out=OnChipOutput.to(p3))
    p1 = LayerPlan(s1, bits, bits, HW, m1, OutputSpec.codes(bits, 3), 5, onchip_out=OnChipOutput.to(p2))
    assert p2.fills()
    for plan in (p1, p2, p3):
        program, generated = tir_program(plan), lower(plan)
        kinds = {type(i).__name__ for i in generated.instructions}
        assert ("Forward" in kinds) == (plan.onchip_out is not None) and ("Store" in kinds) == (plan.onchip_out is None)
        assert ("Fill" in kinds) == bool(plan.fills())  # a padded consumer's border (p2 is padded in every case)
        assert program.instructions == generated.instructions and program.regions == generated.regions
