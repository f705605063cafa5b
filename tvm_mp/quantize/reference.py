"""NumPy reference of the integer kernels: what every TVM kernel must reproduce exactly.

Both kernel kinds (bit-serial and packed) compute the same integer accumulator; the storage format differs, the
arithmetic does not. No TVM here: this is what the compiler is checked against.
"""

from __future__ import annotations

import numpy as np

from ..workload import ConvParams


def im2col(codes: np.ndarray, kh: int, kw: int, params: ConvParams, pad_value: int) -> np.ndarray:
    """``[N, G, OH, OW, R]`` windows of ``codes [N, C, H, W]``, ``R = (C/G) * KH * KW`` in (c, ky, kx) order.

    Spatial padding reads ``pad_value`` (the zero point: real zero).
    """
    n, c, h, w = codes.shape
    g = params.groups
    pt, pl, pb, pr = params.padding
    sh, sw = params.strides
    dh, dw = params.dilation
    oh, ow = params.output_hw(h, w, kh, kw)
    padded = np.full((n, c, h + pt + pb, w + pl + pr), pad_value, dtype=codes.dtype)
    padded[:, :, pt : pt + h, pl : pl + w] = codes
    cols = np.empty((n, c, kh, kw, oh, ow), dtype=codes.dtype)
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dh, kx * dw
            cols[:, :, ky, kx] = padded[:, :, y0 : y0 + sh * (oh - 1) + 1 : sh, x0 : x0 + sw * (ow - 1) + 1 : sw]
    cols = cols.reshape(n, g, c // g, kh, kw, oh, ow).transpose(0, 1, 5, 6, 2, 3, 4)
    return cols.reshape(n, g, oh, ow, (c // g) * kh * kw)


def conv2d_acc(codes: np.ndarray, w_q: np.ndarray, params: ConvParams, zero_point: int) -> np.ndarray:
    """int32 ``acc[n, oc, oy, ox] = sum(code * w_q)`` of an NCHW/OIHW grouped conv2d on unsigned codes."""
    oc, cg, kh, kw = w_q.shape
    g = params.groups
    cols = im2col(codes, kh, kw, params, zero_point).astype(np.int64)  # [N, G, OH, OW, R]
    wr = w_q.reshape(g, oc // g, cg * kh * kw).astype(np.int64)  # [G, Kg, R]
    acc = np.einsum("ngyxr,gkr->ngkyx", cols, wr, optimize=True)
    n, _, _, oh, ow = acc.shape
    return acc.reshape(n, oc, oh, ow).astype(np.int32)


def dense_acc(codes: np.ndarray, w_q: np.ndarray) -> np.ndarray:
    """int32 ``acc[n, oc] = sum_k code[n, k] * w_q[oc, k]``."""
    return (codes.astype(np.int64) @ w_q.astype(np.int64).T).astype(np.int32)
