"""conv2d in NumPy without a full im2col where a cheaper form exists: the fast path of the references.

:func:`conv2d` computes an NCHW/OIHW grouped conv2d in a floating-point ``dtype``:

* **1x1, no padding, one group**: one matrix product per sample (``w [OC, C] @ x [C, OH*OW]``), no window copy;
* **depthwise** (one input channel per group, any channel multiplier): one multiply-add per kernel tap over the
  whole ``[N, OC, OH, OW]`` tensor (9 passes for a 3x3 kernel instead of a 9x larger window copy and a batched
  product per channel);
* otherwise: the windows ``[N, OH, OW, C/G, KH, KW]`` (one copy) times the weights, one product per group.

On integer operands (codes and integer weights held in float) every partial sum is an integer, so the result is
exact whatever the summation order as long as ``|partial sums| < 2**24`` (float32) or ``2**53`` (float64): callers
pick the dtype from that bound (:func:`tvm_mp.search.accuracy.integer_acc`). On real operands the result equals
any other float32 conv up to rounding.
"""

from __future__ import annotations

import numpy as np

from ..workload import ConvParams


def _padded(x: np.ndarray, params: ConvParams, pad_value) -> np.ndarray:
    pt, pl, pb, pr = params.padding
    if not (pt or pl or pb or pr):
        return x
    n, c, h, w = x.shape
    out = np.full((n, c, h + pt + pb, w + pl + pr), pad_value, dtype=x.dtype)
    out[:, :, pt : pt + h, pl : pl + w] = x
    return out


def windows(x: np.ndarray, kh: int, kw: int, params: ConvParams, pad_value) -> np.ndarray:
    """``[N, OH, OW, C, KH, KW]`` conv windows of ``x [N, C, H, W]`` (padding reads ``pad_value``), one copy."""
    _, _, h, w = x.shape
    sh, sw = params.strides
    dh, dw = params.dilation
    oh, ow = params.output_hw(h, w, kh, kw)
    padded = _padded(x, params, pad_value)
    view = np.lib.stride_tricks.sliding_window_view(padded, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    view = view[:, :, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw, ::dh, ::dw]  # [N, C, OH, OW, KH, KW]
    return np.ascontiguousarray(view.transpose(0, 2, 3, 1, 4, 5))


def conv2d(x: np.ndarray, w: np.ndarray, params: ConvParams, pad_value=0, dtype=np.float32) -> np.ndarray:
    """``[N, OC, OH, OW]`` conv2d of ``x [N, C, H, W]`` with ``w [OC, C/G, KH, KW]`` computed in ``dtype``; padding
    reads ``pad_value`` (0 for real inputs, the zero point for codes). See the module docstring for exactness."""
    x = np.asarray(x, dtype=dtype)
    w = np.asarray(w, dtype=dtype)
    n, c, h, wd = x.shape
    oc, cg, kh, kw = w.shape
    g = params.groups
    sh, sw = params.strides
    dh, dw = params.dilation
    oh, ow = params.output_hw(h, wd, kh, kw)
    if kh == kw == 1 and g == 1 and not any(params.padding):
        xs = x[:, :, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw].reshape(n, c, oh * ow)
        return np.matmul(w.reshape(oc, c), xs).reshape(n, oc, oh, ow)
    if cg == 1 and g == c:  # depthwise, channel multiplier oc // c
        return _depthwise(x, w, params, pad_value, (oh, ow))
    cols = windows(x, kh, kw, params, pad_value)  # [N, OH, OW, C, KH, KW]
    if g == 1:
        out = cols.reshape(n * oh * ow, -1) @ w.reshape(oc, -1).T  # [N*OH*OW, OC]
        return np.ascontiguousarray(out.reshape(n, oh, ow, oc).transpose(0, 3, 1, 2))
    cols = cols.reshape(n * oh * ow, g, cg * kh * kw).transpose(1, 0, 2)  # [G, N*OH*OW, R]
    wr = w.reshape(g, oc // g, cg * kh * kw).transpose(0, 2, 1)  # [G, R, Kg]
    out = np.matmul(cols, wr)  # [G, N*OH*OW, Kg]
    out = out.reshape(g, n, oh, ow, oc // g).transpose(1, 0, 4, 2, 3)
    return np.ascontiguousarray(out).reshape(n, oc, oh, ow)


#: Output elements per chunk of samples in the depthwise path (the multiply-adds of one chunk stay in cache).
DEPTHWISE_CHUNK = 1 << 16


def _depthwise(x: np.ndarray, w: np.ndarray, params: ConvParams, pad_value, out_hw) -> np.ndarray:
    """Depthwise conv2d as one multiply-add per kernel tap, a few samples at a time. A tap whose rows (or columns)
    fall in the padding for every output pixel reads ``pad_value`` only: it adds ``pad_value * w`` per channel
    (late layers of a wide-input network are 2-3 rows high: most 5x5 taps are such)."""
    n, c, h, wd = x.shape
    oc, _, kh, kw = w.shape
    oh, ow = out_hw
    sh, sw = params.strides
    dh, dw = params.dilation
    pt, pl, _, _ = params.padding
    dtype = x.dtype
    mult = oc // c
    taps = w.reshape(oc, kh * kw)
    rows_in = [bool(((ky * dh + sh * np.arange(oh) >= pt) & (ky * dh + sh * np.arange(oh) < pt + h)).any())
               for ky in range(kh)]
    cols_in = [bool(((kx * dw + sw * np.arange(ow) >= pl) & (kx * dw + sw * np.arange(ow) < pl + wd)).any())
               for kx in range(kw)]
    live = [(ky, kx) for ky in range(kh) for kx in range(kw) if rows_in[ky] and cols_in[kx]]
    dead = [ky * kw + kx for ky in range(kh) for kx in range(kw) if not (rows_in[ky] and cols_in[kx])]
    const = None
    if dead and pad_value != 0:
        const = (dtype.type(pad_value) * taps[:, dead]).sum(axis=1, dtype=dtype)[None, :, None, None]
    out = np.zeros((n, oc, oh, ow), dtype=dtype)
    step = max(1, DEPTHWISE_CHUNK // max(1, oc * oh * ow))
    for s0 in range(0, n, step):
        src = _padded(x[s0 : s0 + step], params, pad_value)
        if mult > 1:
            src = np.repeat(src, mult, axis=1)
        acc = out[s0 : s0 + step]
        tmp = np.empty_like(acc)
        for ky, kx in live:
            y0, x0 = ky * dh, kx * dw
            view = src[:, :, y0 : y0 + sh * (oh - 1) + 1 : sh, x0 : x0 + sw * (ow - 1) + 1 : sw]
            np.multiply(view, taps[:, ky * kw + kx][None, :, None, None], out=tmp)
            acc += tmp
        if const is not None:
            acc += const
    return out
