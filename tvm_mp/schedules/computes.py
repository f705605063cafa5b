"""TE computes of tvm-mp's integer kernels (the "what"; schedules in sibling modules say "how").

Each function takes ``te.Tensor`` operands and plain ints or ``tirx`` expressions for sizes and geometry, so the
same compute builds both the shape-specialized kernels of a compiled model and shape-generic kernels (symbolic
sizes) that the tests reuse across thousands of cases. The arithmetic is the one in
:mod:`tvm_mp.quantize.scheme` and :mod:`tvm_mp.quantize.packing`; kernels know nothing of graphs or search.

Layouts: activations NCHW (codes uint8), conv weights as ``[OC, R]`` rows with ``r = (c * KH + ky) * KW + kx``,
outputs NCHW (conv) or ``[N, OC]`` (dense).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tvm import te, tirx

WORD_BITS = 32


@dataclass(frozen=True)
class ConvGeom:
    """Geometry of a conv as ints (specialized kernels) or tirx expressions (shape-generic kernels)."""

    kh: Any
    kw: Any
    stride_h: Any
    stride_w: Any
    pad_top: Any
    pad_left: Any
    dil_h: Any
    dil_w: Any
    groups: Any

    def out_hw(self, h, w, pad_bottom, pad_right):
        oh = (h + self.pad_top + pad_bottom - self.dil_h * (self.kh - 1) - 1) // self.stride_h + 1
        ow = (w + self.pad_left + pad_right - self.dil_w * (self.kw - 1) - 1) // self.stride_w + 1
        return oh, ow


def _i32(x):
    return x.astype("int32") if hasattr(x, "astype") else tirx.const(x, "int32")


def quantize(x: te.Tensor, inv_scale: float, zero_point: int, qmax: int, name: str = "quantize") -> te.Tensor:
    """uint8 codes ``clip(rint(x * inv_scale) + zp, 0, qmax)`` (rint = round half to even, like NumPy)."""
    inv = tirx.const(float(inv_scale), "float32")
    lo = tirx.const(float(-zero_point), "float32")
    hi = tirx.const(float(qmax - zero_point), "float32")

    def f(*idx):
        t = tirx.nearbyint(x(*idx) * inv)
        t = tirx.max(tirx.min(t, hi), lo)
        return (t.astype("int32") + zero_point).astype("uint8")

    return te.compute(x.shape, f, name=name)


def _window_code(codes: te.Tensor, geom: ConvGeom, cg, r, n, g, oy, ox, zero_point, h, w):
    """Code at reduction index ``r`` of output pixel (oy, ox), group g: the zero point inside spatial padding."""
    khw = geom.kh * geom.kw
    c = r // khw
    rem = r % khw
    ky = rem // geom.kw
    kx = rem % geom.kw
    iy = oy * geom.stride_h + ky * geom.dil_h - geom.pad_top
    ix = ox * geom.stride_w + kx * geom.dil_w - geom.pad_left
    inside = tirx.all(iy >= 0, iy < h, ix >= 0, ix < w)
    value = codes[n, g * cg + c, tirx.max(tirx.min(iy, h - 1), 0), tirx.max(tirx.min(ix, w - 1), 0)]
    return tirx.Select(inside, value.astype("int32"), _i32(zero_point))


def bitserial_pack_conv(codes: te.Tensor, geom: ConvGeom, a_bits, out_hw, zero_point) -> te.Tensor:
    """Run-time im2col + bit-packing: uint32 ``[N, a_bits, G, OH, OW, ceil(R/32)]`` activation bit-planes."""
    n_, c_, h, w = codes.shape
    cg = c_ // geom.groups
    rr = cg * geom.kh * geom.kw
    words = (rr + WORD_BITS - 1) // WORD_BITS
    oh, ow = out_hw
    t = te.reduce_axis((0, WORD_BITS), name="t")

    def f(n, j, g, oy, ox, wd):
        r = wd * WORD_BITS + t
        code = _window_code(codes, geom, cg, r, n, g, oy, ox, zero_point, h, w)
        bit = tirx.Select(r < rr, (code >> j) & 1, 0).astype("uint32")
        return te.sum(bit << t.astype("uint32"), axis=t)

    return te.compute((n_, a_bits, geom.groups, oh, ow, words), f, name="bitpack")


def window_sum_conv(codes: te.Tensor, geom: ConvGeom, out_hw, zero_point) -> te.Tensor:
    """int32 ``[N, G, OH, OW]`` sum of the codes in each window (needed by 1-bit weights' offset term)."""
    n_, c_, h, w = codes.shape
    cg = c_ // geom.groups
    r = te.reduce_axis((0, cg * geom.kh * geom.kw), name="r")
    oh, ow = out_hw

    def f(n, g, oy, ox):
        return te.sum(_window_code(codes, geom, cg, r, n, g, oy, ox, zero_point, h, w), axis=r)

    return te.compute((n_, geom.groups, oh, ow), f, name="window_sum")


def bitserial_conv_acc(apack: te.Tensor, wplanes: te.Tensor, wcoef: te.Tensor, out_channels, groups,
                       asum: te.Tensor | None = None, woff=None) -> te.Tensor:
    """int32 ``acc[n, oc, oy, ox] = sum_ij wcoef[i] 2^j popcount(W_i & A_j) (+ woff * window_sum)``."""
    n_, a_bits, _, oh, ow, words = apack.shape
    w_planes = wplanes.shape[1]
    kg = out_channels // groups
    i = te.reduce_axis((0, w_planes), name="i")
    j = te.reduce_axis((0, a_bits), name="j")
    wd = te.reduce_axis((0, words), name="wd")

    def f(n, oc, oy, ox):
        g = oc // kg
        pc = tirx.popcount(wplanes[oc, i, wd] & apack[n, j, g, oy, ox, wd]).astype("int32")
        return te.sum(wcoef[i] * (pc << j.astype("int32")), axis=[i, j, wd])

    acc = te.compute((n_, out_channels, oh, ow), f, name="bitserial_acc")
    if asum is None:
        return acc
    return te.compute(
        (n_, out_channels, oh, ow),
        lambda n, oc, oy, ox: acc[n, oc, oy, ox] + woff * asum[n, oc // kg, oy, ox],
        name="bitserial_offset",
    )


def decode_packed(byte_val, r, w_bits: int):
    """Integer weight ``r`` from its packed byte (see :mod:`tvm_mp.quantize.packing`)."""
    cw = 1 if w_bits == 1 else 2 if w_bits == 2 else 4 if w_bits <= 4 else 8
    per = 8 // cw
    if cw == 8:
        return byte_val.astype("int8").astype("int32")
    v = (byte_val.astype("int32") >> ((r % per) * cw)) & ((1 << cw) - 1)
    if w_bits == 1:
        return v * 2 - 1
    return v - ((v >> (cw - 1)) << cw)


def packed_conv_acc(codes: te.Tensor, wpacked: te.Tensor, w_bits: int, geom: ConvGeom, out_channels, out_hw,
                    zero_point) -> te.Tensor:
    """int32 conv accumulator on codes with densely packed weights (unpacked in the inner loop)."""
    n_, c_, h, w = codes.shape
    cg = c_ // geom.groups
    kg = out_channels // geom.groups
    cw = 1 if w_bits == 1 else 2 if w_bits == 2 else 4 if w_bits <= 4 else 8
    per = 8 // cw
    r = te.reduce_axis((0, cg * geom.kh * geom.kw), name="r")
    oh, ow = out_hw

    def f(n, oc, oy, ox):
        g = oc // kg
        code = _window_code(codes, geom, cg, r, n, g, oy, ox, zero_point, h, w)
        return te.sum(code * decode_packed(wpacked[oc, r // per], r, w_bits), axis=r)

    return te.compute((n_, out_channels, oh, ow), f, name="packed_acc")


def bitserial_pack_dense(codes: te.Tensor, a_bits) -> te.Tensor:
    """uint32 ``[N, a_bits, ceil(K/32)]`` activation bit-planes of ``codes [N, K]``."""
    n_, k = codes.shape
    words = (k + WORD_BITS - 1) // WORD_BITS
    t = te.reduce_axis((0, WORD_BITS), name="t")

    def f(n, j, wd):
        r = wd * WORD_BITS + t
        code = codes[n, tirx.min(r, k - 1)].astype("int32")
        bit = tirx.Select(r < k, (code >> j) & 1, 0).astype("uint32")
        return te.sum(bit << t.astype("uint32"), axis=t)

    return te.compute((n_, a_bits, words), f, name="bitpack")


def bitserial_dense_acc(apack: te.Tensor, wplanes: te.Tensor, wcoef: te.Tensor, codes: te.Tensor | None = None,
                        woff=None) -> te.Tensor:
    n_, a_bits, words = apack.shape
    oc_, w_planes, _ = wplanes.shape
    i = te.reduce_axis((0, w_planes), name="i")
    j = te.reduce_axis((0, a_bits), name="j")
    wd = te.reduce_axis((0, words), name="wd")
    acc = te.compute(
        (n_, oc_),
        lambda n, oc: te.sum(
            wcoef[i] * (tirx.popcount(wplanes[oc, i, wd] & apack[n, j, wd]).astype("int32") << j.astype("int32")),
            axis=[i, j, wd],
        ),
        name="bitserial_acc",
    )
    if codes is None:
        return acc
    k = te.reduce_axis((0, codes.shape[1]), name="k")
    asum = te.compute((n_,), lambda n: te.sum(codes[n, k].astype("int32"), axis=k), name="row_sum")
    return te.compute((n_, oc_), lambda n, oc: acc[n, oc] + woff * asum[n], name="bitserial_offset")


def packed_dense_acc(codes: te.Tensor, wpacked: te.Tensor, w_bits: int) -> te.Tensor:
    n_, k = codes.shape
    oc_ = wpacked.shape[0]
    cw = 1 if w_bits == 1 else 2 if w_bits == 2 else 4 if w_bits <= 4 else 8
    per = 8 // cw
    r = te.reduce_axis((0, k), name="r")
    return te.compute(
        (n_, oc_),
        lambda n, oc: te.sum(
            codes[n, r].astype("int32") * decode_packed(wpacked[oc, r // per], r, w_bits), axis=r
        ),
        name="packed_acc",
    )


def epilogue_float(acc: te.Tensor, bias_corr: te.Tensor, scale: te.Tensor, lo: float | None = None,
                   hi: float | None = None) -> te.Tensor:
    """float32 ``clamp(float(acc + bias_corr[c]) * scale[c], lo, hi)``, channel = axis 1."""

    def f(*idx):
        c = idx[1]
        y = (acc(*idx) + bias_corr[c]).astype("float32") * scale[c]
        if lo is not None:
            y = tirx.max(y, tirx.const(lo, "float32"))
        if hi is not None:
            y = tirx.min(y, tirx.const(hi, "float32"))
        return y

    return te.compute(acc.shape, f, name="dequantize")


def epilogue_requant(acc: te.Tensor, bias_corr: te.Tensor, mult: te.Tensor, shift: te.Tensor, zero_point, lo,
                     hi) -> te.Tensor:
    """uint8 ``clip(zp + ((acc + bias_corr) * M + 2^(s-1)) >> s, lo, hi)`` per channel (axis 1), in int64."""

    def f(*idx):
        c = idx[1]
        s = shift[c]
        t = (acc(*idx) + bias_corr[c]).astype("int64") * mult[c] + (tirx.const(1, "int64") << (s - 1))
        q = (t >> s) + _i64(zero_point)
        return tirx.max(tirx.min(q, _i64(hi)), _i64(lo)).astype("uint8")

    return te.compute(acc.shape, f, name="requantize")


def _i64(x):
    return x.astype("int64") if hasattr(x, "astype") else tirx.const(x, "int64")
