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


WINDOW = x86.has_window_dot(HOST)
#: Depthwise layers for the window form (kernels.window_dot): rows of 14 pixels in 16 lanes, 7 in 8, 3 in 4 and
#: 40 in 16 + 16 + 8; strides up to 4 (the widest a 64-code load holds at 16 lanes), dilation 2; kernels wider
#: than a quad (5 and 7 columns: two quads); a channel multiplier of 2.
WINDOW_LAYERS = [
    ((1, 6, 14, 14), (6, 1, 3, 3), ConvParams((1, 1), (1, 1, 1, 1), (1, 1), 6)),
    ((1, 5, 15, 15), (5, 1, 3, 3), ConvParams((2, 2), (0, 0, 1, 1), (1, 1), 5)),
    ((1, 4, 9, 40), (4, 1, 3, 3), ConvParams((1, 1), (1, 1, 1, 1), (1, 2), 4)),
    ((1, 3, 20, 61), (3, 1, 5, 5), ConvParams((2, 4), (2, 2, 2, 2), (1, 1), 3)),
    ((2, 4, 8, 12), (8, 1, 7, 7), ConvParams((1, 1), (3, 3, 3, 3), (1, 1), 4)),
    ((1, 7, 6, 7), (7, 1, 3, 1), ConvParams((1, 1), (1, 0, 1, 0), (1, 1), 7)),
]


@pytest.mark.skipif(not WINDOW, reason="needs AVX-512 VNNI + VBMI")
@pytest.mark.parametrize("in_shape,w_shape,params", WINDOW_LAYERS)
@pytest.mark.parametrize("kind,bits", [("packed", (8, 8)), ("packed", (3, 5)), ("bitserial", (1, 1)),
                                       ("bitserial", (2, 3))])
def test_depthwise_window_form_exact(kind, bits, in_shape, w_shape, params):
    """The window form (a vector load, a shuffle and a ``vpdpbusd`` per tap quad): exact at the extremes and on
    random operands, no column phases, the accumulator in registers."""
    config = registry.KernelConfig("depthwise", lanes=16, oc_block=1, p_unroll=1, use_dot=True, parallel=False)
    work = kernels.conv_workload(kind, *bits, in_shape, w_shape, params)
    assert kernels.window_dot(work, config, HOST)
    for extreme in (True, False):
        func = _check(kind, *bits, in_shape, w_shape, params, config, extreme=extreme, zp=(1 << bits[1]) - 2)
    script = func.script()
    assert "vpdpbusd" in script and "T.Shuffle" in script and 'sblock("phased' not in script
    assert 'dw_acc = T.sblock_alloc_buffer' not in script  # (the accumulator is local: registers)


@pytest.mark.skipif(not WINDOW, reason="needs AVX-512 VNNI + VBMI")
@pytest.mark.parametrize("parallel", [False, True])
def test_depthwise_window_form_requantizes_each_row_exact(parallel):
    """The requantizing epilogue runs on each row from the registers (14 pixels: 8 + 4 + 2 lanes), exact against
    ``scheme.requantize`` with extreme multipliers and shifts."""
    from tvm_mp.quantize import scheme

    in_shape, w_shape = (1, 8, 14, 14), (8, 1, 3, 3)
    params = ConvParams((1, 1), (1, 1, 1, 1), (1, 1), 8)
    codes, w_q = _operands(np.random.default_rng(3), in_shape, w_shape, 8, 8, True)
    corr = np.array([0, -1, 7, -(1 << 20), 1 << 20, 123, -5, 2**31 - 1 - 255 * 128 * 9], np.int32)
    real = np.array([1e-9, 2.0**-31, 0.3, 0.9999, 1.0, 3.5, 2.0**31, 1e-3])
    mult, shift = scheme.requant_multiplier(real)
    acc = reference.conv2d_acc(codes, w_q, params, 5) + corr.reshape(1, -1, 1, 1)
    _run_window_epilogue(codes, w_q, params, parallel, kernels.Epilogue("requant", 0, 255, 7), [corr, mult, shift],
                         scheme.requantize(acc, 1, mult, shift, 7, 0, 255))


@pytest.mark.skipif(not WINDOW, reason="needs AVX-512 VNNI + VBMI")
@pytest.mark.parametrize("parallel", [False, True])
def test_depthwise_window_form_dequantizes_each_row_exact(parallel):
    """The float epilogue on each row (stride 2, 29 columns: 15 outputs in 16 lanes), exact against
    ``scheme.dequantize_output``."""
    from tvm_mp.quantize import scheme

    rng = np.random.default_rng(4)
    in_shape, w_shape = (1, 8, 30, 29), (8, 1, 3, 3)
    params = ConvParams((2, 2), (0, 0, 1, 1), (1, 1), 8)
    codes, w_q = _operands(rng, in_shape, w_shape, 8, 8, False)
    corr = rng.integers(-1000, 1000, 8).astype(np.int32)
    scale = rng.uniform(0.001, 0.01, 8).astype(np.float32)
    acc = reference.conv2d_acc(codes, w_q, params, 5) + corr.reshape(1, -1, 1, 1)
    _run_window_epilogue(codes, w_q, params, parallel, kernels.Epilogue("float", 0.0, None), [corr, scale],
                         scheme.dequantize_output(acc, 1, scale, 0.0))


def _run_window_epilogue(codes, w_q, params, parallel, epi, extra, expected):
    config = registry.KernelConfig("depthwise", lanes=16, oc_block=1, p_unroll=1, use_dot=True, parallel=parallel)
    data = kernels.conv2d_weight_data("packed", w_q, 8, config)
    func = kernels.conv2d_kernel("k", "packed", 8, 8, codes.shape, w_q.shape, params, 5, epi, data[0].shape,
                                 target=HOST, config=config)
    assert "vpdpbusd" in func.script()
    lib = _tvm.build(tvm.IRModule({"k": func}), HOST)
    out = _tvm.to_device(np.zeros(expected.shape, expected.dtype))
    lib["k"](*[_tvm.to_device(a) for a in [codes, *data, *extra]], out)
    np.testing.assert_array_equal(out.numpy(), expected)


def test_depthwise_window_form_only_where_a_load_holds_the_quads():
    """Stride 5 at 16 lanes reads 79 codes: no window form (integer MACs); the default takes it on VNNI hosts."""
    config = registry.KernelConfig("depthwise", lanes=16, oc_block=1, p_unroll=1, use_dot=True, parallel=False)
    wide = kernels.conv_workload("packed", 8, 8, (1, 4, 9, 90), (4, 1, 3, 3), ConvParams((1, 5), (1, 1, 1, 1),
                                                                                         (1, 1), 4))
    assert not kernels.window_dot(wide, config, HOST)
    _check("packed", 8, 8, (1, 4, 9, 90), (4, 1, 3, 3), ConvParams((1, 5), (1, 1, 1, 1), (1, 1), 4), config)
    work = kernels.conv_workload("packed", 8, 8, (1, 6, 14, 14), (6, 1, 3, 3), WINDOW_LAYERS[0][2])
    assert kernels.conv2d_config(work, HOST, database=False).use_dot == WINDOW
