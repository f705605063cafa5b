"""fastconv.conv2d equals the int64 reference exactly on integer operands (every path: 1x1, depthwise with
multipliers and all-padding taps, grouped, general) and the im2col float conv up to rounding."""

import numpy as np
import pytest

from tvm_mp.quantize import fastconv, reference
from tvm_mp.workload import ConvParams

CASES = [  # (C, OC, groups, kernel, stride, padding, dilation, H, W)
    (8, 16, 1, 3, 1, 1, 1, 9, 11),  # general
    (5, 7, 1, 1, 1, 0, 1, 9, 11),  # 1x1: one product
    (5, 7, 1, 1, 2, 0, 1, 9, 11),  # strided 1x1
    (4, 8, 1, 1, 1, 1, 1, 5, 6),  # 1x1 with padding: general path
    (8, 8, 8, 3, 2, 1, 1, 9, 11),  # depthwise
    (8, 16, 8, 3, 1, 1, 1, 9, 11),  # depthwise, channel multiplier 2
    (4, 4, 4, 5, 1, 2, 2, 9, 11),  # dilated depthwise
    (4, 4, 4, 5, 1, 2, 1, 2, 9),  # 2 rows, 5x5: taps reading only padding
    (4, 12, 4, 5, 2, (2, 2, 2, 1), 1, 1, 3),  # 1 row, multiplier 3, asymmetric padding
    (6, 12, 3, 3, 2, (0, 1, 1, 0), 1, 9, 11),  # grouped
]


@pytest.mark.parametrize("case", CASES)
def test_integer_conv_is_exact_and_float_conv_matches(case):
    c, oc, g, k, s, p, d, h, w = case
    params = ConvParams((s, s), (p, p) if isinstance(p, int) else p, (d, d), g)
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, (3, c, h, w)).astype(np.uint8)
    w_q = rng.integers(-127, 128, (oc, c // g, k, k)).astype(np.int8)
    ref = reference.conv2d_acc(codes, w_q, params, 7)  # zero point 7: padding reads 7
    for dtype in (np.float32, np.float64):  # |partial sums| < 255 * 127 * 200 < 2**24
        got = fastconv.conv2d(codes, w_q, params, 7, dtype)
        assert got.dtype == dtype and np.array_equal(np.rint(got).astype(np.int64), ref)
    x = rng.normal(size=(3, c, h, w)).astype(np.float32)
    wf = rng.normal(size=(oc, c // g, k, k)).astype(np.float32)
    cols = reference.im2col(x, k, k, params, 0.0)
    expect = np.einsum("ngyxr,gkr->ngkyx", cols, wf.reshape(g, oc // g, -1)).reshape(ref.shape)
    np.testing.assert_allclose(fastconv.conv2d(x, wf, params), expect, rtol=1e-4, atol=1e-4)


def test_depthwise_chunks_give_the_same_result(monkeypatch):
    params = ConvParams((1, 1), (1, 1, 1, 1), (1, 1), 6)
    rng = np.random.default_rng(1)
    x = rng.integers(0, 16, (7, 6, 5, 5)).astype(np.float32)
    w = rng.integers(-7, 8, (6, 1, 3, 3)).astype(np.float32)
    whole = fastconv.conv2d(x, w, params, 3.0)
    monkeypatch.setattr(fastconv, "DEPTHWISE_CHUNK", 1)  # one sample per chunk
    assert np.array_equal(fastconv.conv2d(x, w, params, 3.0), whole)
