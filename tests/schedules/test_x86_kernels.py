"""x86 kernel paths of issue 17, exactly against the NumPy reference: the AVX2 ``vpmaddubsw`` + ``vpmaddwd`` dot
intrinsic (its exact split form for 8-bit codes x 8-bit weights, where a plain ``vpmaddubsw`` pair sum saturates)
and the column-phase depthwise kernel for strides > 1. Extreme operands (every code at its maximum, weights at
+-max) are the cases random data rarely hits."""

from __future__ import annotations

import numpy as np
import pytest
import tvm

from tvm_mp import _tvm
from tvm_mp.quantize import reference
from tvm_mp.schedules import kernels, registry, x86
from tvm_mp.targets import parse
from tvm_mp.workload import ConvParams

HOST = parse("host").tvm_target
AVX2 = parse("host").has("avx2")
P3 = ConvParams((1, 1), (1, 1, 1, 1), (1, 1), 1)


def _operands(rng, in_shape, w_shape, w_bits, a_bits, extreme: bool):
    top = (1 << (w_bits - 1)) - 1 if w_bits > 1 else 1
    if extreme:
        codes = np.full(in_shape, (1 << a_bits) - 1, np.uint8)
        codes[..., ::5] = 0  # a few low codes: the split form's two halves both matter
        w_q = np.where(rng.random(w_shape) < 0.5, -top, top)
    else:
        codes = rng.integers(0, 1 << a_bits, in_shape).astype(np.uint8)
        w_q = rng.integers(-top, top + 1, w_shape)
    if w_bits == 1:
        w_q = np.where(w_q >= 0, 1, -1)
    return codes, w_q.astype(np.int8)


def _check(kind, w_bits, a_bits, in_shape, w_shape, params, config, extreme=True, zp=0):
    codes, w_q = _operands(np.random.default_rng(w_bits * 10 + a_bits), in_shape, w_shape, w_bits, a_bits, extreme)
    data = kernels.conv2d_weight_data(kind, w_q, w_bits, config)
    func = kernels.conv2d_kernel("k", kind, w_bits, a_bits, in_shape, w_shape, params, zp, kernels.Epilogue("acc"),
                                 data[0].shape, target=HOST, config=config)
    lib = _tvm.build(tvm.IRModule({"k": func}), HOST)
    expected = reference.conv2d_acc(codes, w_q, params, zp)
    out = _tvm.to_device(np.zeros(expected.shape, np.int32))
    lib["k"](*[_tvm.to_device(a) for a in [codes, *data]], out)
    np.testing.assert_array_equal(out.numpy(), expected)
    return func


@pytest.mark.skipif(not AVX2, reason="needs an AVX2 host")
@pytest.mark.parametrize("algorithm,w_bits,a_bits", [("direct", 8, 8), ("direct", 8, 7), ("direct", 7, 8),
                                                     ("direct", 2, 2), ("im2col", 8, 8)])
def test_avx2_dot_exact_at_the_extremes(algorithm, w_bits, a_bits):
    config = registry.KernelConfig(algorithm, lanes=8, oc_block=2, p_unroll=2, use_dot=True, parallel=False)
    func = _check("packed", w_bits, a_bits, (1, 12, 7, 9), (6, 12, 3, 3), P3, config)
    assert "pmadd.ub.sw" in func.script()


@pytest.mark.skipif(not AVX2, reason="needs an AVX2 host")
def test_avx2_intrinsic_choice_and_default():
    """Split form only when both codes and weights have 8 bits; 8-lane packed defaults use the dot on AVX2."""
    config = registry.KernelConfig("direct", lanes=8, use_dot=True)
    work = kernels.conv_workload("packed", 8, 8, (1, 16, 8, 8), (16, 16, 3, 3), P3)
    assert x86.dot_intrin(HOST, config, work) == x86.AVX2_SPLIT_INTRIN
    for w_bits, a_bits in [(8, 7), (4, 8), (2, 2)]:
        work = kernels.conv_workload("packed", w_bits, a_bits, (1, 16, 8, 8), (16, 16, 3, 3), P3)
        assert x86.dot_intrin(HOST, config, work) == x86.AVX2_INTRIN
    if not parse("host").has("avx512vnni"):
        default = kernels.conv2d_config(work, HOST, database=False)
        assert default.use_dot and default.lanes == 8


@pytest.mark.parametrize("stride", [(2, 2), (1, 3)])
@pytest.mark.parametrize("kind,bits", [("packed", (8, 8)), ("bitserial", (1, 1))])
def test_strided_depthwise_reads_column_phases(kind, bits, stride):
    params = ConvParams(stride, (1, 1, 1, 1), (1, 1), 6)
    config = registry.KernelConfig("depthwise", lanes=8, oc_block=1, p_unroll=1, parallel=False)
    func = _check(kind, *bits, (1, 6, 11, 13), (6, 1, 3, 3), params, config, zp=3)
    assert 'sblock("phased' in func.script()  # (the column loop partitioned: blocks phased_x0, ...)


@pytest.mark.parametrize("bits,channels,params", [
    ((1, 1), 70, P3),  # 3 words of 32 channels: the last 64-bit word half empty
    ((2, 3), 64, ConvParams((2, 1), (0, 1, 2, 1), (1, 2), 1)),
    ((4, 1), 33, P3),
])
def test_direct64_bitserial_exact(bits, channels, params):
    """Bit-serial conv on 64-bit words (the AVX2 default above 32 channels), extreme and random operands."""
    config = registry.KernelConfig("direct64", lanes=4, oc_block=4, p_unroll=2, parallel=False)
    for extreme in (True, False):
        _check("bitserial", *bits, (1, channels, 7, 9), (5, channels, 3, 3), params, config, extreme=extreme, zp=1)


def test_direct64_is_the_avx2_default_for_wide_bitserial_convs():
    work = kernels.conv_workload("bitserial", 1, 1, (1, 64, 8, 8), (64, 64, 3, 3), P3)
    narrow = kernels.conv_workload("bitserial", 1, 1, (1, 16, 8, 8), (16, 16, 3, 3), P3)
    if parse("host").has("avx512vpopcntdq"):
        pytest.skip("VPOPCNTDQ host: 32-bit words")
    assert kernels.conv2d_config(work, HOST, database=False).algorithm == "direct64"
    assert kernels.conv2d_config(narrow, HOST, database=False).algorithm == "direct"
    assert kernels.conv2d_config(work, HOST, database=False) in registry.lookup("conv2d", "bitserial", HOST).space(
        work, HOST)
    pointwise = kernels.conv_workload("bitserial", 1, 1, (1, 96, 8, 8), (64, 96, 1, 1), ConvParams())
    assert kernels.conv2d_config(pointwise, HOST, database=False).algorithm == "direct"
    with pytest.raises(Exception, match="direct64"):
        kernels.conv2d_kernel("k", "packed", 8, 8, (1, 4, 6, 6), (4, 4, 1, 1), ConvParams(), 0,
                              kernels.Epilogue("acc"), (4, 4), target=HOST,
                              config=registry.KernelConfig("direct64", lanes=4))
