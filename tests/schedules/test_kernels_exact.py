"""Integer kernels vs the NumPy reference, exactly, on hypothesis-drawn shapes, geometries and bit-widths.

Shape-generic kernels (every size and conv parameter symbolic) are compiled once per (op, kind, w_bits) and run
on every drawn case, so thousands of cases cost seconds. Shape-specialized, scheduled kernels with their
epilogues (the ones compiled models use) are checked separately on fewer cases.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st

from tvm_mp import _tvm
from tvm_mp.quantize import packing, reference, scheme
from tvm_mp.schedules import kernels
from tvm_mp.workload import ConvParams

BITS = [1, 2, 3, 4, 8]
KINDS = ["bitserial", "packed"]
CASES = 60  # per (kind, w_bits) combination and op: 2 kinds x 5 w_bits x 60 = 600 cases per op family


@functools.lru_cache(maxsize=None)
def generic_conv(kind: str, w_bits: int):
    return _tvm.build(kernels.generic_conv2d_kernel(kind, w_bits))["main"]


@functools.lru_cache(maxsize=None)
def generic_dense(kind: str, w_bits: int):
    return _tvm.build(kernels.generic_dense_kernel(kind, w_bits))["main"]


def random_weights(rng, shape, w_bits):
    lo, hi = scheme.weight_qrange(w_bits)
    w = rng.integers(lo, hi + 1, shape)
    if w_bits == 1:
        w = np.where(w >= 0, 1, -1)
    return w.astype(np.int8)


def weight_data(kind, w_q, w_bits):
    if kind == "bitserial":
        return [packing.weight_bitplanes(w_q, w_bits), packing.plane_coefficients(w_bits)[0]]
    return [packing.pack_dense(w_q, w_bits)]


@st.composite
def conv_cases(draw, depthwise: bool):
    groups = draw(st.integers(1, 4))
    cg = 1 if depthwise else draw(st.integers(1, 5))
    c = groups * cg
    kg = 1 if depthwise else draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    params = ConvParams(
        (draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        tuple(draw(st.integers(0, 2)) for _ in range(4)),
        (draw(st.integers(1, 2)), draw(st.integers(1, 2))),
        groups,
    )
    min_h = params.dilation[0] * (kh - 1) + 1 - params.padding[0] - params.padding[2]
    min_w = params.dilation[1] * (kw - 1) + 1 - params.padding[1] - params.padding[3]
    h = draw(st.integers(max(1, min_h), max(1, min_h) + 6))
    w = draw(st.integers(max(1, min_w), max(1, min_w) + 6))
    n = draw(st.integers(1, 2))
    a_bits = draw(st.sampled_from(BITS))
    zp = draw(st.integers(0, (1 << a_bits) - 1))
    seed = draw(st.integers(0, 2**31 - 1))
    return n, c, h, w, groups * kg, kh, kw, params, a_bits, zp, seed


def run_generic_conv(kind, w_bits, case):
    n, c, h, w, oc, kh, kw, params, a_bits, zp, seed = case
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 1 << a_bits, (n, c, h, w)).astype(np.uint8)
    w_q = random_weights(rng, (oc, c // params.groups, kh, kw), w_bits)
    expected = reference.conv2d_acc(codes, w_q, params, zp)
    out = _tvm.to_device(np.zeros(expected.shape, np.int32))
    scalars = [kh, kw, *params.strides, *params.padding, *params.dilation, params.groups, a_bits, zp]
    if kind == "bitserial":
        scalars.append(packing.plane_coefficients(w_bits)[1])
    data = [_tvm.to_device(a) for a in [codes, *weight_data(kind, w_q, w_bits)]]
    generic_conv(kind, w_bits)(*data, out, *scalars)
    np.testing.assert_array_equal(out.numpy(), expected)


@pytest.mark.parametrize("w_bits", BITS)
@pytest.mark.parametrize("kind", KINDS)
def test_conv2d_exact(kind, w_bits):
    @settings(max_examples=CASES)
    @given(conv_cases(depthwise=False))
    def check(case):
        run_generic_conv(kind, w_bits, case)

    check()


@pytest.mark.parametrize("w_bits", BITS)
@pytest.mark.parametrize("kind", KINDS)
def test_depthwise_conv2d_exact(kind, w_bits):
    @settings(max_examples=CASES)
    @given(conv_cases(depthwise=True))
    def check(case):
        run_generic_conv(kind, w_bits, case)

    check()


@pytest.mark.parametrize("w_bits", BITS)
@pytest.mark.parametrize("kind", KINDS)
def test_dense_exact(kind, w_bits):
    @settings(max_examples=CASES)
    @given(st.integers(1, 3), st.integers(1, 200), st.integers(1, 12), st.sampled_from(BITS),
           st.integers(0, 2**31 - 1))
    def check(n, k, oc, a_bits, seed):
        rng = np.random.default_rng(seed)
        codes = rng.integers(0, 1 << a_bits, (n, k)).astype(np.uint8)
        w_q = random_weights(rng, (oc, k), w_bits)
        expected = reference.dense_acc(codes, w_q)
        out = _tvm.to_device(np.zeros(expected.shape, np.int32))
        scalars = [a_bits] + ([packing.plane_coefficients(w_bits)[1]] if kind == "bitserial" else [])
        data = [_tvm.to_device(a) for a in [codes, *weight_data(kind, w_q, w_bits)]]
        generic_dense(kind, w_bits)(*data, out, *scalars)
        np.testing.assert_array_equal(out.numpy(), expected)

    check()


def test_every_bit_pair_in_both_kinds_is_covered():
    """The acceptance grid: every w_bits x a_bits pair over {1,2,3,4,8}^2 runs in both kernel kinds."""
    for kind in KINDS:
        for w_bits in BITS:
            for a_bits in BITS:
                case = (1, 4, 5, 5, 6, 3, 3, ConvParams((1, 1), (1, 1, 1, 1), (1, 1), 2), a_bits,
                        (1 << a_bits) // 2, w_bits * 10 + a_bits)
                run_generic_conv(kind, w_bits, case)


@pytest.mark.parametrize("op", ["conv2d", "depthwise_conv2d", "dense"])
@pytest.mark.parametrize("kind", KINDS)
def test_specialized_kernels_with_epilogues(op, kind):
    """Scheduled, shape-specialized kernels (what compiled models run), float and requantizing epilogues."""

    @settings(max_examples=6)
    @given(st.sampled_from(BITS), st.sampled_from(BITS), st.booleans(), st.integers(0, 2**31 - 1))
    def check(w_bits, a_bits, requant, seed):
        rng = np.random.default_rng(seed)
        act = scheme.ActQuant(float(rng.uniform(0.01, 0.2)), int(rng.integers(0, 1 << a_bits)), a_bits)
        if op == "dense":
            in_shape, w_shape, params = (2, 37), (5, 37), None
        elif op == "depthwise_conv2d":
            in_shape, w_shape, params = (1, 6, 7, 6), (6, 1, 3, 3), ConvParams((2, 1), (1, 1, 0, 1), (1, 1), 6)
        else:
            in_shape, w_shape, params = (1, 5, 6, 7), (4, 5, 3, 2), ConvParams((1, 2), (2, 0, 1, 1), (2, 1), 1)
        codes = rng.integers(0, 1 << a_bits, in_shape).astype(np.uint8)
        w_q = random_weights(rng, w_shape, w_bits)
        w_scale = rng.uniform(0.01, 0.1, w_shape[0]).astype(np.float32)
        bias = rng.normal(0, 1, w_shape[0]).astype(np.float32)
        corr = scheme.bias_correction(bias, w_q, w_scale, act)
        if op == "dense":
            acc = reference.dense_acc(codes, w_q)
        else:
            acc = reference.conv2d_acc(codes, w_q, params, act.zero_point)
        acc = acc + corr.reshape((1, -1) + (1,) * (acc.ndim - 2))
        if requant:
            out_act = scheme.ActQuant(0.05, 3, 4)
            mult, shift = scheme.requant_multiplier(scheme.output_scale(w_scale, act) / out_act.scale)
            epi = kernels.Epilogue("requant", 1, 14, out_act.zero_point)
            expected = scheme.requantize(acc, 1, mult, shift, out_act.zero_point, 1, 14)
            extra = [mult, shift]
        else:
            scale = scheme.output_scale(w_scale, act)
            epi = kernels.Epilogue("float", 0.0, None)
            expected = scheme.dequantize_output(acc, 1, scale, 0.0)
            extra = [scale]
        data = weight_data(kind, w_q, w_bits)
        if op == "dense":
            func = kernels.dense_kernel("k", kind, w_bits, a_bits, in_shape, w_shape[0], epi, data[0].shape)
        else:
            func = kernels.conv2d_kernel("k", kind, w_bits, a_bits, in_shape, w_shape, params, act.zero_point, epi,
                                         data[0].shape)
        lib = _tvm.build(tvm.IRModule({"k": func}))
        out = _tvm.to_device(np.zeros(expected.shape, expected.dtype))
        lib["k"](*[_tvm.to_device(a) for a in [codes, *data, corr, *extra]], out)
        np.testing.assert_array_equal(out.numpy(), expected)

    check()


@pytest.mark.parametrize("llvm", [False, True])  # nearbyint (any code generator) / llvm.roundeven (vectorized)
@pytest.mark.parametrize("width", [11, 16, 48, 96])  # 2 x 96: a multiple of the flat loop's 64 (4 x 16 lanes)
def test_quantize_kernel_matches_numpy_including_ties(llvm, width):
    act = scheme.ActQuant(0.5, 3, 4)
    ties = np.array([-10, -1.75, -1.25, -0.25, 0.25, 0.75, 1.25, 2.5, 3.0, 100.0, np.float32(1.2499999)])
    x = np.resize(ties, (2, width)).astype(np.float32)
    x[1] = np.random.default_rng(width).normal(0, 2, width)
    func = kernels.quantize_kernel("q", x.shape, act.inv_scale, act.zero_point, act.qmax, llvm=llvm)
    calls = {str(n.op.name) for n in _tvm.tir_nodes(func) if isinstance(n, tvm.ir.expr.Call)}
    assert ("tirx.call_llvm_pure_intrin" in calls) == llvm and ("tirx.nearbyint" in calls) != llvm
    flat = [n for n in _tvm.tir_nodes(func) if isinstance(n, tvm.tirx.For) and n.kind == tvm.tirx.ForKind.UNROLLED]
    assert bool(flat) == (x.size % (kernels.QUANTIZE_UNROLL * kernels.QUANTIZE_LANES) == 0)
    lib = _tvm.build(tvm.IRModule({"q": func}))
    out = _tvm.to_device(np.zeros(x.shape, np.uint8))
    lib["q"](_tvm.to_device(x), out)
    np.testing.assert_array_equal(out.numpy(), act.quantize(x))
    assert act.quantize(np.array([0.25], np.float32))[0] == 3  # 0.5 rounds half to even -> 0, plus zero point
