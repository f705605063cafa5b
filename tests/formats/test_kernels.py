"""Float-format and clustered kernels vs the NumPy references, bit for bit, on hypothesis-drawn shapes.

Shape-generic kernels (sizes and conv geometry symbolic, the format compiled in) are built once per format and op
and run on every drawn case; the shape-specialized kernels compiled models use are checked on a few cases, and one
kernel is built for an FMA-capable CPU to show that contraction cannot change a float-format result.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tvm_mp import Precision, _tvm
from tvm_mp.formats import kernels as K
from tvm_mp.quantize import clustering as CL
from tvm_mp.quantize import floats as F
from tvm_mp.quantize import reference, scheme
from tvm_mp.workload import ConvParams

FORMATS = [F.FloatFormat.of(p) for p in (Precision.fp16(), Precision.bf16(), Precision.fp8_e4m3(),
                                         Precision.fp8_e5m2(), Precision.float(3, 4))]
CASES = 25


@functools.lru_cache(maxsize=None)
def float_conv_executable(fmt: F.FloatFormat, target: str = "llvm"):
    return _tvm.build(K.generic_float_conv2d_kernel(fmt), _target(target))


def float_conv(fmt: F.FloatFormat, target: str = "llvm"):
    return float_conv_executable(fmt, target)["main"]


@functools.lru_cache(maxsize=None)
def float_dense(fmt: F.FloatFormat):
    return _tvm.build(K.generic_float_dense_kernel(fmt))["main"]


@functools.lru_cache(maxsize=None)
def clustered_conv():
    return _tvm.build(K.generic_clustered_conv2d_kernel())["main"]


@functools.lru_cache(maxsize=None)
def clustered_dense():
    return _tvm.build(K.generic_clustered_dense_kernel())["main"]


def _target(name: str):
    return {"kind": "llvm", "mcpu": "haswell"} if name == "fma" else name


@st.composite
def conv_cases(draw, depthwise: bool):
    groups = draw(st.integers(1, 4))
    cg = 1 if depthwise else draw(st.integers(1, 5))
    kg = 1 if depthwise else draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    params = ConvParams((draw(st.integers(1, 3)), draw(st.integers(1, 3))),
                        tuple(draw(st.integers(0, 2)) for _ in range(4)),
                        (draw(st.integers(1, 2)), draw(st.integers(1, 2))), groups)
    min_h = max(1, params.dilation[0] * (kh - 1) + 1 - params.padding[0] - params.padding[2])
    min_w = max(1, params.dilation[1] * (kw - 1) + 1 - params.padding[1] - params.padding[3])
    h = draw(st.integers(min_h, min_h + 5))
    w = draw(st.integers(min_w, min_w + 5))
    return draw(st.integers(1, 2)), groups * cg, h, w, groups * kg, kh, kw, params, draw(st.integers(0, 2**31 - 1))


def float_data(rng, shape, scale=1.0):
    """Normal values with exact zeros, a few large ones (saturation in fp8) and tiny ones (subnormals)."""
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    pick = rng.random(shape)
    x[pick < 0.1] = 0.0
    x[pick > 0.97] *= 1000.0
    x[(pick > 0.94) & (pick <= 0.97)] *= 1e-6
    return x


def conv_scalars(kh, kw, params):
    return [kh, kw, *params.strides, *params.padding, *params.dilation, params.groups]


def run(func, arrays, out_shape, out_dtype, scalars=()):
    args = [_tvm.to_device(a) for a in arrays] + [_tvm.to_device(np.zeros(out_shape, out_dtype))]
    func(*args, *scalars)
    return args[-1].numpy()


def check_float_conv(fmt, case, target="llvm"):
    n, c, h, w, oc, kh, kw, params, seed = case
    rng = np.random.default_rng(seed)
    x = float_data(rng, (n, c, h, w))
    wt = float_data(rng, (oc, c // params.groups, kh, kw), 0.5)
    bias = rng.standard_normal(oc).astype(np.float32)
    expected = F.conv2d(x, wt, bias, params, fmt)
    got = run(float_conv(fmt, target), [x, K.float_weight_storage(wt, fmt), bias], expected.shape, np.float32,
              conv_scalars(kh, kw, params))
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
@settings(max_examples=CASES)
@given(case=conv_cases(depthwise=False))
def test_float_conv2d_exact(fmt, case):
    check_float_conv(fmt, case)


@pytest.mark.parametrize("fmt", FORMATS[:4], ids=lambda f: f.name)
@settings(max_examples=CASES // 2)
@given(case=conv_cases(depthwise=True))
def test_float_depthwise_exact(fmt, case):
    check_float_conv(fmt, case)


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
@settings(max_examples=CASES)
@given(n=st.integers(1, 3), k=st.integers(1, 70), oc=st.integers(1, 9), seed=st.integers(0, 2**31 - 1))
def test_float_dense_exact(fmt, n, k, oc, seed):
    rng = np.random.default_rng(seed)
    x, wt = float_data(rng, (n, k)), float_data(rng, (oc, k), 0.3)
    bias = rng.standard_normal(oc).astype(np.float32)
    expected = F.dense(x, wt, bias, fmt)
    got = run(float_dense(fmt), [x, K.float_weight_storage(wt, fmt), bias], expected.shape, np.float32)
    np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))


def _has_fma() -> bool:
    try:
        return " fma " in f" {Path('/proc/cpuinfo').read_text()} ".replace("\n", " ")
    except OSError:
        return False


@pytest.mark.skipif(not _has_fma(), reason="the host CPU cannot run FMA code")
@pytest.mark.parametrize("fmt", FORMATS[:2], ids=lambda f: f.name)
def test_fma_contraction_cannot_change_results(fmt):
    """Built for an FMA CPU, LLVM contracts acc + a*b into vfmadd; exact products make that harmless."""
    asm = float_conv_executable(fmt, "fma").mod.inspect_source("asm")
    assert "vfmadd" in asm
    rng = np.random.default_rng(7)
    for _ in range(6):
        g = int(rng.integers(1, 3))
        params = ConvParams((1, 1), (1, 1, 1, 1), (1, 1), g)
        check_float_conv(fmt, (1, 4 * g, 6, 5, 3 * g, 3, 3, params, int(rng.integers(2**31))), target="fma")


def random_clustered(rng, shape, clusters):
    cq = np.unique(rng.integers(-127, 128, clusters)).astype(np.int8)
    return CL.ClusteredWeights(cq, rng.integers(0, len(cq), shape).astype(np.uint8), 0.01, clusters)


@settings(max_examples=2 * CASES)
@given(case=st.one_of(conv_cases(False), conv_cases(True)), clusters=st.integers(2, 64), a_bits=st.integers(1, 8),
       zp_frac=st.floats(0, 1))
def test_clustered_conv2d_exact(case, clusters, a_bits, zp_frac):
    n, c, h, w, oc, kh, kw, params, seed = case
    rng = np.random.default_rng(seed)
    zp = int(zp_frac * ((1 << a_bits) - 1))
    codes = rng.integers(0, 1 << a_bits, (n, c, h, w)).astype(np.uint8)
    cw = random_clustered(rng, (oc, c // params.groups, kh, kw), clusters)
    expected = CL.conv2d_acc(codes, cw, params, zp, a_bits)
    np.testing.assert_array_equal(expected, reference.conv2d_acc(codes, cw.w_q, params, zp))
    packed, centroids = K.clustered_weight_storage(cw)
    got = run(clustered_conv(), [codes, packed, centroids], expected.shape, np.int32,
              conv_scalars(kh, kw, params) + [cw.index_bits, a_bits, zp])
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=CASES)
@given(n=st.integers(1, 3), k=st.integers(1, 80), oc=st.integers(1, 9), clusters=st.integers(2, 64),
       a_bits=st.integers(1, 8), seed=st.integers(0, 2**31 - 1))
def test_clustered_dense_exact(n, k, oc, clusters, a_bits, seed):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 1 << a_bits, (n, k)).astype(np.uint8)
    cw = random_clustered(rng, (oc, k), clusters)
    expected = CL.dense_acc(codes, cw, a_bits)
    np.testing.assert_array_equal(expected, reference.dense_acc(codes, cw.w_q))
    packed, centroids = K.clustered_weight_storage(cw)
    got = run(clustered_dense(), [codes, packed, centroids], expected.shape, np.int32, [cw.index_bits, a_bits])
    np.testing.assert_array_equal(got, expected)


def test_specialized_kernels_with_epilogues():
    """The scheduled, shape-specialized kernels of compiled models: float clamp, requantization, fused bias."""
    rng = np.random.default_rng(3)
    params = ConvParams((2, 1), (1, 1, 0, 1), (1, 1), 2)
    x = float_data(rng, (2, 6, 7, 6))
    wt = float_data(rng, (4, 3, 3, 2), 0.5)
    bias = rng.standard_normal(4).astype(np.float32)
    for fmt in (FORMATS[0], FORMATS[2]):
        func = K.float_conv2d_kernel("k", fmt, x.shape, wt.shape, params, 0.0, 6.0)
        expected = F.conv2d(x, wt, bias, params, fmt, 0.0, 6.0)
        got = run(_tvm.build(func)["k"], [x, K.float_weight_storage(wt, fmt), bias], expected.shape, np.float32)
        np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32))
    a_bits, zp = 6, 5
    codes = rng.integers(0, 1 << a_bits, x.shape).astype(np.uint8)
    cw = CL.cluster_weights(wt, 12, seed=0)
    act = scheme.ActQuant(0.05, zp, a_bits)
    w_scale = np.full(4, cw.scale, np.float32)
    corr = scheme.bias_correction(bias, cw.w_q, w_scale, act)
    acc = CL.conv2d_acc(codes, cw, params, zp, a_bits).astype(np.int64) + corr.reshape(1, -1, 1, 1)
    mult, shift = scheme.requant_multiplier(scheme.output_scale(w_scale, act).astype(np.float64) / 0.1)
    expected = scheme.requantize(acc.astype(np.int32), 1, mult, shift, 3, 3, 200)
    packed, centroids = K.clustered_weight_storage(cw)
    func = K.clustered_conv2d_kernel("k", 12, a_bits, x.shape, wt.shape, params, zp,
                                     K.Epilogue("requant", 3, 200, 3), packed.shape[0])
    got = run(_tvm.build(func)["k"], [codes, packed, centroids, corr, mult, shift], expected.shape, np.uint8)
    np.testing.assert_array_equal(got, expected)
    dense = K.clustered_dense_kernel("k", 12, a_bits, (2, 18), 4, K.Epilogue("float", None, None),
                                     CL.pack_indices(cw.indices.reshape(4, 18), cw.index_bits).shape[0])
    c2 = codes.reshape(2, -1)[:, :18]
    cw2 = CL.ClusteredWeights(cw.centroids_q, cw.indices.reshape(4, 18), cw.scale, 12)
    acc2 = CL.dense_acc(c2, cw2, a_bits).astype(np.int64) + corr
    expected2 = scheme.dequantize_output(acc2.astype(np.int32), 1, scheme.output_scale(w_scale, act))
    got2 = run(_tvm.build(dense)["k"], [c2, *K.clustered_weight_storage(cw2), corr, scheme.output_scale(w_scale, act)],
               expected2.shape, np.float32)
    np.testing.assert_array_equal(got2, expected2)
