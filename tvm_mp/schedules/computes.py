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

from .. import _tvm

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


def quantize(x: te.Tensor, inv_scale: float, zero_point: int, qmax: int, name: str = "quantize",
             llvm: bool = False) -> te.Tensor:
    """uint8 codes ``clip(rint(x * inv_scale) + zp, 0, qmax)`` (rint = round half to even, like NumPy). ``llvm``:
    the code is built by LLVM, which gets a rounding it vectorizes (:func:`tvm_mp._tvm.round_half_even`)."""
    inv = tirx.const(float(inv_scale), "float32")
    lo = tirx.const(float(-zero_point), "float32")
    hi = tirx.const(float(qmax - zero_point), "float32")

    def f(*idx):
        t = _tvm.round_half_even(x(*idx) * inv, llvm)
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


def bitserial_pack_dense(codes: te.Tensor, a_bits, words=None) -> te.Tensor:
    """uint32 ``[N, a_bits, words]`` activation bit-planes of ``codes [N, K]`` (``words`` default
    ``ceil(K/32)``; words past K are zero)."""
    n_, k = codes.shape
    if words is None:
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
    """uint8 ``clip(zp + ((acc + bias_corr) * M + 2^(s-1)) >> s, lo, hi)`` per channel (axis 1), in int64.

    Computed as ``((acc * M + k) >> s) + zp`` with the channel's ``k = bias_corr * M + 2^(s-1)`` (the same
    integer, and no intermediate exceeds it), which the compiled loop holds per channel; ``M < 2^31``
    (``scheme.requant_multiplier``) multiplies as a sign-extended int32 (x86 ``vpmuldq``, not ``vpmullq``).
    The zero point is added after the narrowing, in uint8 (clamped to ``[lo - zp, hi - zp]`` first, the sum is in
    ``[lo, hi]``, so the byte addition does not wrap): eight times the lanes of an int64 addition. (It is not folded
    into ``k``: ``zp * 2^s`` overflows int64 at the shifts of tiny scales.)"""

    def f(*idx):
        c = idx[1]
        s = shift[c]
        k = bias_corr[c].astype("int64") * mult[c] + (tirx.const(1, "int64") << (s - 1))
        m32 = mult[c].astype("int32").astype("int64")
        q = (acc(*idx).astype("int64") * m32 + k) >> s
        low, high = _i64(lo) - _i64(zero_point), _i64(hi) - _i64(zero_point)
        return tirx.max(tirx.min(q, high), low).astype("uint8") + _u8(zero_point)

    return te.compute(acc.shape, f, name="requantize")


def _i64(x):
    return x.astype("int64") if hasattr(x, "astype") else tirx.const(x, "int64")


def _u8(x):
    return x.astype("uint8") if hasattr(x, "astype") else tirx.const(x, "uint8")


# ------------------------------------------------------------------------------------------------------------------
# Fast-path computes (the layouts the x86 / arm_cpu schedules use). Same integer arithmetic as above; only the data
# layout differs. "Flat phase planes" (:class:`FlatPlane`): the zero-point-padded input plane split into its
# stride phases and flattened, so that the window tap (ky, kx) of flat output position ``p = oy * wq + ox`` is
# ``p + offset(ky, kx)`` in phase ``phase(ky, kx)``: a contiguous run of pixels per tap, whatever the stride.
# Columns ``ox >= OW`` of that output grid are computed and dropped.
# ------------------------------------------------------------------------------------------------------------------


def ceil_to(x: int, m: int) -> int:
    return -(-x // m) * m


@dataclass(frozen=True)
class FlatPlane:
    """Geometry of a conv on flattened, zero-point-padded *phase planes* (ints only).

    A stride ``(sh, sw)`` conv reads input row ``oy*sh + ky*dh``: that is row ``oy + (ky*dh)//sh`` of phase
    ``(ky*dh) % sh`` of the padded plane split into ``sh x sw`` phases (every sh-th row, every sw-th column). On
    each phase plane, flattened with row pitch ``wq``, tap (ky, kx) of flat output ``p = oy * wq + ox`` is
    ``p + off(ky, kx)``: a contiguous run of pixels, whatever the stride. Stride 1 has one phase. Only the phases
    a tap reads are built: a strided 1x1 conv reads phase 0 alone (ResNet's downsampling convs: 4x less padding
    and packing work than all four phases).
    """

    h: int
    w: int
    hp: int
    wp: int
    oh: int
    ow: int
    kh: int
    kw: int
    dil_h: int
    dil_w: int
    pad_top: int
    pad_left: int
    lanes: int  # the flat output length is padded to a multiple of this
    stride_h: int = 1
    stride_w: int = 1

    @property
    def phase_rows(self) -> int:
        """Row phases built: ``stride_h``, or 1 when every tap reads row phase 0 (one row, or a dilation the
        stride divides)."""
        return 1 if self.kh == 1 or self.dil_h % self.stride_h == 0 else self.stride_h

    @property
    def phase_cols(self) -> int:
        """Column phases built (as :attr:`phase_rows`)."""
        return 1 if self.kw == 1 or self.dil_w % self.stride_w == 0 else self.stride_w

    @property
    def phases(self) -> int:
        return self.phase_rows * self.phase_cols

    @property
    def wq(self) -> int:
        """Row pitch of a phase plane (wide enough for every output column plus the largest column offset)."""
        return max(-(-self.wp // self.stride_w), self.ow + (self.kw - 1) * self.dil_w // self.stride_w)

    @property
    def is_codes(self) -> bool:
        """Whether the flat plane is the codes themselves (no padding, stride 1: one phase, the input's width)."""
        return self.stride_h == self.stride_w == 1 and self.wq == self.w and self.pad_top == self.pad_left == 0 \
            and self.hp == self.h and self.wp == self.w

    @property
    def p_out(self) -> int:
        """Flat output positions computed (``OH * wq`` rounded up to the vector lanes)."""
        return ceil_to(self.oh * self.wq, self.lanes)

    @property
    def length(self) -> int:
        """Flat phase-plane length read (last output position plus the largest tap offset), in whole rows."""
        return ceil_to(self.p_out + self.tap_offset(self.kh - 1, self.kw - 1) + 1, self.wq)

    def tap_phase(self, ky, kx):
        return ((ky * self.dil_h) % self.stride_h) * self.phase_cols + (kx * self.dil_w) % self.stride_w

    def tap_offset(self, ky, kx):
        return ((ky * self.dil_h) // self.stride_h) * self.wq + (kx * self.dil_w) // self.stride_w


def flat_plane(in_hw, kernel_hw, padding, dilation, lanes: int, strides=(1, 1)) -> FlatPlane:
    (h, w), (kh, kw), (pt, pl, pb, pr), (dh, dw), (sh, sw) = in_hw, kernel_hw, padding, dilation, strides
    hp, wp = h + pt + pb, w + pl + pr
    oh = (hp - dh * (kh - 1) - 1) // sh + 1
    ow = (wp - dw * (kw - 1) - 1) // sw + 1
    return FlatPlane(h, w, hp, wp, oh, ow, kh, kw, dh, dw, pt, pl, lanes, sh, sw)


def flat_padded(codes: te.Tensor, fp: FlatPlane, zero_point) -> te.Tensor:
    """uint8 ``[N, C, S, L]``: each channel's zero-point-padded plane split into its S stride phases, each
    flattened with row pitch ``fp.wq`` (positions past the padded plane read 0)."""
    n_, c_, _, _ = codes.shape

    def f(n, c, ph, l):
        y = (l // fp.wq) * fp.stride_h + ph // fp.phase_cols
        x = (l % fp.wq) * fp.stride_w + ph % fp.phase_cols
        iy = y - fp.pad_top
        ix = x - fp.pad_left
        inside = tirx.all(iy >= 0, iy < fp.h, ix >= 0, ix < fp.w)
        pad = tirx.Select(tirx.all(y < fp.hp, x < fp.wp), tirx.const(zero_point, "uint8"), tirx.const(0, "uint8"))
        return tirx.if_then_else(inside, codes[n, c, iy, ix], pad)

    return te.compute((n_, c_, fp.phases, fp.length), f, name="padded")


def quad_words(padded: te.Tensor) -> te.Tensor:
    """uint32 ``[N, C4, S, L]``: the codes of channels ``4*c4 .. 4*c4+3`` at each flat phase-plane position,
    one byte each (the u8 operand of 4-way dot products); channels past C read 0."""
    n_, c_, phases, length = padded.shape
    c4 = -(-int(c_) // 4)

    def f(n, q4, ph, l):
        word = tirx.const(0, "uint32")
        for q in range(4):
            c = q4 * 4 + q
            # if_then_else, not Select: a Select's load is evaluated anyway, and the simplifier drops the clamp
            byte = tirx.if_then_else(c < c_, padded[n, tirx.min(c, c_ - 1), ph, l], tirx.const(0, "uint8"))
            word = word | (byte.astype("uint32") << tirx.const(8 * q, "uint32"))
        return word

    return te.compute((n_, c4, phases, length), f, name="quads")


def quad_term(word, q, weight):
    """``byte q of word`` times ``weight`` in int32: the scalar form of a u8 x s8 4-way dot product lane."""
    byte = (word >> (q.astype("uint32") * tirx.const(8, "uint32"))) & tirx.const(255, "uint32")
    return byte.astype("int32") * weight.astype("int32")


#: Bytes per block of the blocked dense packing read by the fast kernels (see :func:`unpack_weights`).
PACK_BLOCK = 16


def unpack_weights(wpacked: te.Tensor, w_bits: int, rows: int, r_len: int, name: str = "wunpack") -> te.Tensor:
    """int8 ``[rows, r_len]`` integer weights from *blocked* dense packing: with ``per = 8 // cw`` weights per byte,
    weights ``r = blk * per * B + s * B + k`` (``B`` = :data:`PACK_BLOCK`) sit in byte ``blk * B + k`` at bit
    ``s * cw`` -- the containers of :func:`tvm_mp.quantize.packing.pack_dense`, ordered so that unpacking is
    contiguous vector work. 8-bit weights: one per byte, in order. ``r`` past the stored weights reads 0."""
    cw = 1 if w_bits == 1 else 2 if w_bits == 2 else 4 if w_bits <= 4 else 8
    per = 8 // cw
    blk = PACK_BLOCK if per > 1 else 1
    nbytes = int(wpacked.shape[1])
    stored = nbytes * per
    r_len = ceil_to(r_len, per * blk)  # whole blocks: unpacking stays contiguous vector work

    def f(o, r):
        byte = wpacked[o, tirx.min((r // (per * blk)) * blk + r % blk, nbytes - 1)]
        if cw == 8:
            val = byte.astype("int8").astype("int32")
        else:
            v = (byte.astype("int32") >> (((r // blk) % per) * cw)) & ((1 << cw) - 1)
            val = v * 2 - 1 if w_bits == 1 else v - ((v >> (cw - 1)) << cw)
        return tirx.if_then_else(r < stored, val, _i32(0)).astype("int8")

    return te.compute((rows, r_len), f, name=name)


def decode_planes(wplanes: te.Tensor, w_bits: int, r_len: int, name: str = "wunpack") -> te.Tensor:
    """int8 ``[OC, r_len]`` integer weights from their bit-planes (``packing.weight_bitplanes``)."""
    oc_, w_planes, _ = wplanes.shape
    i = te.reduce_axis((0, int(w_planes)), name="i")

    def bit(o, pl, r):
        return ((wplanes[o, pl, r // WORD_BITS] >> (r % WORD_BITS).astype("uint32")) & tirx.const(1, "uint32"))

    if w_bits == 1:
        return te.compute((oc_, r_len), lambda o, r: (bit(o, 0, r).astype("int32") * 2 - 1).astype("int8"), name=name)
    total = te.compute((oc_, r_len), lambda o, r: te.sum(bit(o, i, r).astype("int32") * _coef_expr(i, int(w_planes)),
                                                          axis=i), name=name + "_sum")
    return te.compute((oc_, r_len), lambda o, r: total[o, r].astype("int8"), name=name)


def direct_dot_acc(quads: te.Tensor, wk: te.Tensor, fp: FlatPlane, out_channels: int) -> te.Tensor:
    """int32 ``[N, OC, P]``: conv on channel-quad words of the phase planes; ``wk`` is int8
    ``[OC, KH*KW*C4*4]`` in (ky, kx, c) order."""
    n_, c4, _, _ = quads.shape
    ky = te.reduce_axis((0, fp.kh), name="ky")
    kx = te.reduce_axis((0, fp.kw), name="kx")
    rc = te.reduce_axis((0, c4), name="rc")
    q = te.reduce_axis((0, 4), name="q")

    def f(n, oc, p):
        word = quads[n, rc, fp.tap_phase(ky, kx), p + fp.tap_offset(ky, kx)]
        return te.sum(quad_term(word, q, wk[oc, ((ky * fp.kw + kx) * c4 + rc) * 4 + q]), axis=[ky, kx, rc, q])

    return te.compute((n_, out_channels, fp.p_out), f, name="dot_acc")


def _padded_window(padded: te.Tensor, geom: ConvGeom, cg, r, n, g, oy, ox):
    """Code at reduction index ``r`` ((c, ky, kx) order) of output pixel (oy, ox) in group g, from the padded
    plane (:func:`pad_plane`): no bounds logic, so pixel loops vectorize."""
    khw = geom.kh * geom.kw
    c = r // khw
    rem = r % khw
    ky = rem // geom.kw
    kx = rem % geom.kw
    return padded[n, g * cg + c, oy * geom.stride_h + ky * geom.dil_h, ox * geom.stride_w + kx * geom.dil_w]


def _im2col_dims(padded: te.Tensor, geom: ConvGeom, out_hw, lanes: int) -> tuple[int, int, int, int]:
    """(batch, channels per group, reduction length R, pixel axis length P) of an im2col from the padded plane:
    ``P`` is OH*OW rounded up to ``lanes``."""
    cg = padded.shape[1] // geom.groups
    oh, ow = out_hw
    return padded.shape[0], cg, cg * geom.kh * geom.kw, ceil_to(oh * ow, lanes)


def _im2col_code(padded: te.Tensor, geom: ConvGeom, out_hw, cg: int, rr: int, n, g, r, p):
    """Code at reduction index ``r`` of pixel ``p`` (pixels past OH*OW repeat the last), uint8 0 past ``rr``."""
    oh, ow = out_hw
    pp = tirx.min(p, oh * ow - 1)
    code = _padded_window(padded, geom, cg, tirx.min(r, rr - 1), n, g, pp // ow, pp % ow)
    return tirx.if_then_else(r < rr, code, tirx.const(0, "uint8"))


def im2col_words(padded: te.Tensor, geom: ConvGeom, out_hw, lanes: int) -> te.Tensor:
    """uint32 ``[N, G, R4, P]``: im2col quads, byte q of word r4 holds reduction index ``r = 4*r4 + q`` in
    (c, ky, kx) order (0 past R). ``P`` is OH*OW rounded up to ``lanes`` (pixels past OH*OW repeat the last)."""
    n_, cg, rr, p_len = _im2col_dims(padded, geom, out_hw, lanes)

    def f(n, g, r4, p):
        word = tirx.const(0, "uint32")
        for q in range(4):
            byte = _im2col_code(padded, geom, out_hw, cg, rr, n, g, r4 * 4 + q, p)
            word = word | (byte.astype("uint32") << tirx.const(8 * q, "uint32"))
        return word

    return te.compute((n_, geom.groups, -(-rr // 4), p_len), f, name="cols")


def gemm_dot_acc(cols: te.Tensor, wk: te.Tensor, out_channels: int) -> te.Tensor:
    """int32 ``[N, OC, P]`` grouped GEMM of im2col quad words with int8 weights ``wk [OC, R4*4]``."""
    n_, groups, r4, p_len = cols.shape
    kg = out_channels // int(groups)
    rr = te.reduce_axis((0, r4), name="rr")
    q = te.reduce_axis((0, 4), name="q")

    def f(n, oc, p):
        return te.sum(quad_term(cols[n, oc // kg, rr, p], q, wk[oc, rr * 4 + q]), axis=[rr, q])

    return te.compute((n_, out_channels, p_len), f, name="dot_acc")


def pad_plane(codes: te.Tensor, geom: ConvGeom, pad_bottom, pad_right, zero_point) -> te.Tensor:
    """``[N, C, Hp, Wp]`` codes padded with the zero point (as int32-safe uint8)."""
    n_, c_, h, w = codes.shape
    hp = h + geom.pad_top + pad_bottom
    wp = w + geom.pad_left + pad_right

    def f(n, c, y, x):
        iy = y - geom.pad_top
        ix = x - geom.pad_left
        inside = tirx.all(iy >= 0, iy < h, ix >= 0, ix < w)
        v = codes[n, c, tirx.max(tirx.min(iy, h - 1), 0), tirx.max(tirx.min(ix, w - 1), 0)]
        return tirx.Select(inside, v, tirx.const(zero_point, "uint8"))

    return te.compute((n_, c_, hp, wp), f, name="padded")


def depthwise_row_pitch(ow: int, strides, lanes: int) -> int:
    """Row length of the fast depthwise kernel's accumulator: the output row rounded up to its vector (a power
    of two up to ``lanes``), except stride-1 rows shorter than a vector, which stay as long as the output's
    (one vector of ``ow`` lanes each): the epilogue then reads a channel's outputs as one contiguous run, in full
    vectors (DS-CNN's 25 x 5 maps: the requantizing epilogue was scalar, 15 of the layer's 22 us)."""
    if tuple(int(s) for s in strides)[1] == 1 and ow < lanes:
        return ow
    vec = min(lanes, 1 << max(0, (ow - 1).bit_length()))
    return ceil_to(ow, vec)


def depthwise_acc_rows(oh: int, owp: int, strides, lanes: int) -> int:
    """Rows of the fast depthwise kernel's accumulator: the output's, plus one when a stride-1 layer has an odd
    number (more than 5) of rows shorter than a vector and not a power of two wide. LLVM unrolls the row loop by
    two and keeps the rows the two iterations share; with an odd count it peels a row and carries those rows in
    general registers, rebuilding each vector byte by byte (seen in the assembly): a 64-channel depthwise at
    25 x 5 ran 13.6 us against 6.6 at 24 x 5, 256 channels at 13 x 13 55.6 against 31.1 us with the extra row
    (which the epilogue never reads). Power-of-two rows (25 x 4) and 5-row maps gain nothing from it."""
    if int(strides[0]) == 1 and oh % 2 and oh > 5 and owp < lanes and owp & (owp - 1):
        return oh + 1
    return oh


def depthwise_direct_acc(padded: te.Tensor, wk: te.Tensor, geom: ConvGeom, out_channels: int, out_hw) -> te.Tensor:
    """int32 ``[N, OC, OH, OW]`` grouped conv with one input channel per group, integer MACs (``wk [OC, KH*KW]``)."""
    n_ = padded.shape[0]
    c_ = padded.shape[1]
    kg = out_channels // c_
    oh, ow = out_hw
    ky = te.reduce_axis((0, geom.kh), name="ky")
    kx = te.reduce_axis((0, geom.kw), name="kx")

    def f(n, oc, oy, ox):
        a = padded[n, oc // kg, oy * geom.stride_h + ky * geom.dil_h, ox * geom.stride_w + kx * geom.dil_w]
        return te.sum(a.astype("int32") * wk[oc, ky * geom.kw + kx].astype("int32"), axis=[ky, kx])

    return te.compute((n_, out_channels, oh, ow), f, name="dw_acc")


def deinterleave_width(wq: int) -> int:
    """Codes per phase row split by one shuffle pair at stride 2 (``intrinsics.ensure_deinterleave_intrin``): 32
    for phase rows of 32 codes or more, 16 from 16, else 0 (no split: short rows keep TVM's vectors). A phase row
    is then rounded up to a multiple of it, the padded plane to twice that: 56x56 at stride 2, 34 -> 64 codes."""
    return 32 if wq >= 32 else 16 if wq >= 16 else 0


def column_phases(padded: te.Tensor, stride_w: int, wq: int) -> te.Tensor:
    """``[N, C, Hp, S, WQ]``: the padded plane's columns split by phase, ``out[.., y, ph, x] = padded[.., y,
    x * S + ph]`` (the padded plane must be at least ``WQ * S`` wide): a strided conv then reads each tap's
    pixels contiguously."""
    n_, c_, hp, _ = padded.shape
    return te.compute((n_, c_, hp, stride_w, wq), lambda n, c, y, ph, x: padded[n, c, y, x * stride_w + ph],
                      name="phased")


def depthwise_phased_acc(phased: te.Tensor, wk: te.Tensor, geom: ConvGeom, out_channels: int, out_hw) -> te.Tensor:
    """:func:`depthwise_direct_acc` on the column phases of :func:`column_phases` (stride ``geom.stride_w``)."""
    n_, c_, _, sw, _ = phased.shape
    kg = out_channels // c_
    oh, ow = out_hw
    ky = te.reduce_axis((0, geom.kh), name="ky")
    kx = te.reduce_axis((0, geom.kw), name="kx")

    def f(n, oc, oy, ox):
        col = kx * geom.dil_w
        a = phased[n, oc // kg, oy * geom.stride_h + ky * geom.dil_h, col % sw, ox + col // sw]
        return te.sum(a.astype("int32") * wk[oc, ky * geom.kw + kx].astype("int32"), axis=[ky, kx])

    return te.compute((n_, out_channels, oh, ow), f, name="dw_acc")


def window_dot_fits(stride_w: int, dil_w: int, lanes: int) -> bool:
    """True when one vector load of ``4 * lanes`` codes holds every tap quad of ``lanes`` output pixels
    (:func:`depthwise_window_acc`): lane ``i`` reads codes ``i * stride_w + k * dil_w``, ``k < 4``."""
    return stride_w * (lanes - 1) + 3 * dil_w < 4 * lanes


def window_lanes(ow: int, lanes: int) -> int:
    """int32 lanes of the window form's vectors for output rows of ``ow`` pixels: the row's power of two, 4 to
    ``lanes`` (rows are padded to a whole number of vectors)."""
    vec = 4
    while vec < min(ow, lanes):
        vec *= 2
    return vec


def window_weights(wk: te.Tensor, kh: int, kw: int) -> te.Tensor:
    """int8 ``[OC, KH, KQ * 4]``: the depthwise weights ``wk [OC, KH*KW]`` of each kernel row in quads of four
    taps (``KQ = ceil(KW / 4)``), taps past KW zero (:func:`depthwise_window_acc`)."""
    oc_ = wk.shape[0]
    width = ceil_to(kw, 4)
    return te.compute((oc_, kh, width), lambda o, y, t: tirx.if_then_else(
        t < kw, wk[o, y * kw + tirx.min(t, kw - 1)], tirx.const(0, "int8")), name="wquads")


def depthwise_window_acc(padded: te.Tensor, wquads: te.Tensor, geom: ConvGeom, out_channels: int,
                         out_hw) -> te.Tensor:
    """:func:`depthwise_direct_acc` with each kernel row's taps in quads (``wquads`` from :func:`window_weights`):
    per output pixel and quad, the 4-way u8 x s8 dot product of the codes at columns ``ox * stride + (4q + k) *
    dilation`` with the quad's weights -- the form of ``vpdpbusd`` with the pixels in the lanes, the window's
    codes shuffled out of one vector load (``intrinsics.ensure_window_dot_intrin``). The fourth tap of a 3-wide
    kernel reads one code past the window (its weight is 0): the padded plane must be that wide."""
    n_ = padded.shape[0]
    c_ = padded.shape[1]
    kg = out_channels // c_
    oh, ow = out_hw
    nq = int(wquads.shape[2]) // 4
    ky = te.reduce_axis((0, geom.kh), name="ky")
    kq = te.reduce_axis((0, nq), name="kq")
    k = te.reduce_axis((0, 4), name="k")

    def f(n, oc, oy, ox):
        a = padded[n, oc // kg, oy * geom.stride_h + ky * geom.dil_h, ox * geom.stride_w + (kq * 4 + k) * geom.dil_w]
        return te.sum(a.astype("int32") * wquads[oc, ky, kq * 4 + k].astype("int32"), axis=[ky, kq, k])

    return te.compute((n_, out_channels, oh, ow), f, name="dw_acc")


def plane_bits(padded: te.Tensor, a_bits: int, bytewise: bool = False) -> te.Tensor:
    """uint32 ``[N, A, CW, S, L]``: bit j of the codes of channels ``32*cw .. 32*cw+31`` at each flat phase-plane
    position (from :func:`flat_padded`); channels past C are 0 bits.

    ``bytewise``: packed a byte at a time (``planebytes``: 8 channels' bits per uint8 lane, a vector of 64 pixels
    per instruction), then four bytes to a word -- the form for a plane that is the codes themselves (no
    padding, stride 1: the schedule reads the codes straight, ``tiled.schedule``). Zen 4, one thread, w1a1
    kernels with their float epilogue: 1x1 144 -> 24 at 56x56 61 -> 27 us, 96 -> 576 at 14x14 29 -> 28; on a
    padded plane it is slower (3x3 64 -> 64 at 56x56 142 -> 158, stride 2 95 -> 175: the padding's conditions and
    the phases' strides in the byte loop), so padded planes keep the word-at-a-time packing."""
    n_, c_, phases, length = padded.shape
    c_ = int(c_)
    cwords = -(-c_ // WORD_BITS)
    if not bytewise:
        t = te.reduce_axis((0, min(WORD_BITS, c_)), name="t")

        def f(n, j, cw, ph, l):
            c = cw * WORD_BITS + t
            code = padded[n, tirx.min(c, c_ - 1), ph, l].astype("uint32")
            bit = tirx.if_then_else(c < c_, (code >> j.astype("uint32")) & tirx.const(1, "uint32"),
                                    tirx.const(0, "uint32"))
            return te.sum(bit << t.astype("uint32"), axis=t)

        return te.compute((n_, a_bits, cwords, phases, length), f, name="bitplanes")
    cbytes = -(-c_ // 8)
    t = te.reduce_axis((0, min(8, c_)), name="t")

    def fb(n, j, cb, ph, l):
        c = cb * 8 + t
        code = padded[n, tirx.min(c, c_ - 1), ph, l]
        bit = tirx.if_then_else(c < c_, (code >> j.astype("uint8")) & tirx.const(1, "uint8"), tirx.const(0, "uint8"))
        return te.sum(bit << t.astype("uint8"), axis=t)

    planebytes = te.compute((n_, a_bits, cbytes, phases, length), fb, name="planebytes")

    def fw(n, j, cw, ph, l):
        word = tirx.const(0, "uint32")
        for q in range(4):
            cb = cw * 4 + q
            byte = tirx.if_then_else(cb < cbytes, planebytes[n, j, tirx.min(cb, cbytes - 1), ph, l],
                                     tirx.const(0, "uint8"))
            word = word | (byte.astype("uint32") << tirx.const(8 * q, "uint32"))
        return word

    return te.compute((n_, a_bits, cwords, phases, length), fw, name="bitplanes")


def _coef_expr(i, w_planes: int):
    """Weight plane coefficient (``packing.plane_coefficients`` for b >= 2) as an expression of the plane index:
    ``2^i``, negative for the top (sign) plane. Constant once the plane loop is unrolled."""
    return tirx.Select(i == w_planes - 1, -(_i32(1) << i), _i32(1) << i)


def bitplane_direct_acc(bits: te.Tensor, wplanes: te.Tensor, w_bits: int, fp: FlatPlane,
                        out_channels: int, acc_dtype: str = "int32") -> te.Tensor:
    """``acc_dtype`` ``[N, OC, P]`` bit-serial conv on channel-packed bit-planes of the phase planes; ``wplanes``
    ``[OC, planes, KH*KW*CW]`` (bit-planes of the weights in (ky, kx, c) order, channels padded to whole words).
    1-bit weights (+-1): ``2 * sum popcount(W & A) - sum popcount(A)`` (:func:`signed_plane_acc`), the second sum
    once per pixel, not per output channel. uint32 words with int32 sums, or 64-bit words (:func:`words64`,
    :func:`weight_words64`) with ``"int64"``."""
    n_, a_bits, cwords, _, _ = bits.shape
    w_planes = int(wplanes.shape[1])
    i = te.reduce_axis((0, w_planes), name="i")
    j = te.reduce_axis((0, a_bits), name="j")
    ky = te.reduce_axis((0, fp.kh), name="ky")
    kx = te.reduce_axis((0, fp.kw), name="kx")
    cw = te.reduce_axis((0, cwords), name="cw")

    def f(n, oc, p):
        a = bits[n, j, cw, fp.tap_phase(ky, kx), p + fp.tap_offset(ky, kx)]
        wv = wplanes[oc, i, (ky * fp.kw + kx) * cwords + cw]
        term = tirx.popcount(wv & a).astype(acc_dtype) << j.var.astype(acc_dtype)
        if w_bits != 1:
            term = term * _coef_expr(i, w_planes).astype(acc_dtype)
        return te.sum(term, axis=[i, j, ky, kx, cw])

    acc = te.compute((n_, out_channels, fp.p_out), f, name="bitserial_acc")
    if w_bits != 1:
        return acc
    j2 = te.reduce_axis((0, a_bits), name="j")
    ky2 = te.reduce_axis((0, fp.kh), name="ky")
    kx2 = te.reduce_axis((0, fp.kw), name="kx")
    cw2 = te.reduce_axis((0, cwords), name="cw")
    popsum = te.compute(
        (n_, fp.p_out),
        lambda n, p: te.sum(tirx.popcount(bits[n, j2, cw2, fp.tap_phase(ky2, kx2), p + fp.tap_offset(ky2, kx2)])
                            .astype(acc_dtype) << j2.var.astype(acc_dtype), axis=[j2, ky2, kx2, cw2]),
        name="popsum")
    return signed_plane_acc(acc, lambda n, oc, p: popsum[n, p])


def signed_plane_acc(acc: te.Tensor, popsum) -> te.Tensor:
    """The 1-bit-weight accumulator ``2 * acc - popsum``: a +-1 weight is its bit ``b`` as ``2b - 1``, so
    ``sum w a = 2 sum popcount(B & A) - sum popcount(A)``; ``popsum(n, oc, p)`` reads the per-pixel plane sum
    (a block of its own, computed once per pixel and group)."""
    return te.compute(acc.shape, lambda n, oc, p: acc[n, oc, p] * 2 - popsum(n, oc, p), name="signed_acc")


def words64(bits: te.Tensor, cw64: int) -> te.Tensor:
    """uint64 ``[N, A, CW64, S, L]``: pairs of :func:`plane_bits` words (word ``2k`` low, ``2k+1`` high; past the
    last word 0), so AND + popcount run on 64 channels per lane (AVX2's popcount widens to 64-bit lanes in one
    ``vpsadbw``)."""
    n_, a_, cw32, s_, l_ = bits.shape

    def f(n, j, k, ph, l):
        lo = bits[n, j, 2 * k, ph, l].astype("uint64")
        hi_idx = 2 * k + 1
        hi = tirx.if_then_else(hi_idx < cw32, bits[n, j, tirx.min(hi_idx, cw32 - 1), ph, l],
                               tirx.const(0, "uint32")).astype("uint64")
        return lo | (hi << tirx.const(32, "uint64"))

    return te.compute((n_, a_, cw64, s_, l_), f, name="bits64")


def weight_words64(wplanes: te.Tensor, taps: int, cw64: int) -> te.Tensor:
    """uint64 ``[OC, planes, taps * CW64]`` from weight bit-planes stored with ``2 * CW64`` uint32 words per tap."""
    oc_, planes, _ = wplanes.shape

    def f(o, i, r):
        tap, k = r // cw64, r % cw64
        base = tap * (2 * cw64) + 2 * k
        return (wplanes[o, i, base].astype("uint64")
                | (wplanes[o, i, base + 1].astype("uint64") << tirx.const(32, "uint64")))

    return te.compute((oc_, planes, taps * cw64), f, name="w64")


def window_codes(padded: te.Tensor, geom: ConvGeom, out_hw, lanes: int) -> te.Tensor:
    """uint8 ``[N, G, WD * 32, P]``: im2col of codes, reduction index ``r`` in (c, ky, kx) order (code 0 past R,
    so its bits are 0), pixel axis innermost. ``P`` is OH*OW rounded up to ``lanes`` (pixels past OH*OW repeat
    the last). A pixel vector crosses output rows, so each code is read through a division (a gather): once per
    code here, not once per activation bit-plane as a packing straight from the plane would."""
    n_, cg, rr, p_len = _im2col_dims(padded, geom, out_hw, lanes)

    def f(n, g, r, p):
        return _im2col_code(padded, geom, out_hw, cg, rr, n, g, r, p)

    return te.compute((n_, geom.groups, -(-rr // WORD_BITS) * WORD_BITS, p_len), f, name="wcodes")


def plane_window_bits(padded: te.Tensor, geom: ConvGeom, a_bits, out_hw, lanes: int) -> te.Tensor:
    """uint32 ``[N, G, WD, A, P]``: im2col + bit-packing straight from the padded plane, pixel axis innermost:
    every code is gathered once per activation plane, the cheaper form with one plane (no im2col tile)."""
    n_, cg, rr, p_len = _im2col_dims(padded, geom, out_hw, lanes)
    t = te.reduce_axis((0, min(WORD_BITS, rr)), name="t")

    def f(n, g, wd, j, p):
        code = _im2col_code(padded, geom, out_hw, cg, rr, n, g, wd * WORD_BITS + t, p).astype("uint32")
        bit = (code >> j.astype("uint32")) & tirx.const(1, "uint32")  # code 0 past R: bit 0
        return te.sum(bit << t.astype("uint32"), axis=t)

    return te.compute((n_, geom.groups, -(-rr // WORD_BITS), a_bits, p_len), f, name="bitpack")


def window_bits(cols: te.Tensor, a_bits: int, rr: int) -> te.Tensor:
    """uint32 ``[N, G, WD, A, P]``: the bit-planes of :func:`window_codes` (``rr``: the reduction length),
    packed along the reduction, pixel axis innermost (contiguous reads)."""
    n_, groups, rw, p_len = cols.shape
    t = te.reduce_axis((0, min(WORD_BITS, rr)), name="t")

    def f(n, g, wd, j, p):
        code = cols[n, g, wd * WORD_BITS + t, p].astype("uint32")
        return te.sum(((code >> j.astype("uint32")) & tirx.const(1, "uint32")) << t.astype("uint32"), axis=t)

    return te.compute((n_, groups, int(rw) // WORD_BITS, a_bits, p_len), f, name="bitpack")


def window_bits_acc(apack: te.Tensor, wplanes: te.Tensor, w_bits: int, out_channels: int) -> te.Tensor:
    """int32 ``[N, OC, P]`` bit-serial conv on :func:`window_bits` (standard (c, ky, kx) weight planes); 1-bit
    weights as :func:`signed_plane_acc`."""
    n_, groups, words, a_bits, p_len = apack.shape
    kg = out_channels // int(groups)
    w_planes = int(wplanes.shape[1])
    i = te.reduce_axis((0, w_planes), name="i")
    j = te.reduce_axis((0, a_bits), name="j")
    wd = te.reduce_axis((0, words), name="wd")

    def f(n, oc, p):
        term = tirx.popcount(wplanes[oc, i, wd] & apack[n, oc // kg, wd, j, p]).astype("int32") << j
        if w_bits != 1:
            term = term * _coef_expr(i, w_planes)
        return te.sum(term, axis=[i, j, wd])

    acc = te.compute((n_, out_channels, p_len), f, name="bitserial_acc")
    if w_bits != 1:
        return acc
    j2 = te.reduce_axis((0, a_bits), name="j")
    wd2 = te.reduce_axis((0, words), name="wd")
    popsum = te.compute(
        (n_, groups, p_len),
        lambda n, g, p: te.sum(tirx.popcount(apack[n, g, wd2, j2, p]).astype("int32") << j2, axis=[j2, wd2]),
        name="popsum")
    return signed_plane_acc(acc, lambda n, oc, p: popsum[n, oc // kg, p])


def crop_flat(acc: te.Tensor, oh: int, ow: int, row: int, name: str = "crop") -> te.Tensor:
    """``[N, OC, OH, OW]`` view of a flat ``[N, OC, P]`` accumulator with row pitch ``row``."""
    n_, oc_, _ = acc.shape
    return te.compute((n_, oc_, oh, ow), lambda n, c, y, x: acc[n, c, y * row + x].astype("int32"), name=name)


# ------------------------------------------------------------------------------------------------------------------
# Fast dense: the reduction split into ``vw`` interleaved partial sums (a vector of accumulators per output feature),
# summed at the end. Integer addition is associative, so every split gives the reference's result exactly.
# ------------------------------------------------------------------------------------------------------------------


def padded_codes_dense(codes: te.Tensor, length: int) -> te.Tensor:
    """uint8 ``[N, length]``: ``codes [N, K]`` followed by zeros (zero codes add nothing to a product sum)."""
    _, k = codes.shape
    return te.compute((codes.shape[0], length),
                      lambda n, r: tirx.if_then_else(r < k, codes[n, tirx.min(r, k - 1)], tirx.const(0, "uint8")),
                      name="padded")


def dense_partial_acc(codes: te.Tensor, weight, out_features: int, vw: int) -> te.Tensor:
    """int32 ``[N, OC, vw]`` partial sums: ``part[n, o, v] = sum_s codes[n, s*vw + v] * weight(o, s*vw + v)``
    (``codes [N, L]`` with ``L`` a multiple of ``vw``; ``weight(o, r)`` an int8 expression). A uint8 code times an
    int8 weight fits in int16 (-32640..32385), so products are int16 multiplies, widened to add."""
    n_, length = codes.shape
    s = te.reduce_axis((0, int(length) // vw), name="s")

    def f(n, o, v):
        r = s * vw + v
        return te.sum((codes[n, r].astype("int16") * weight(o, r).astype("int16")).astype("int32"), axis=s)

    return te.compute((n_, out_features, vw), f, name="dense_part")


def dense_dot_acc(codes: te.Tensor, wblk: te.Tensor, lanes: int) -> te.Tensor:
    """int32 ``[N, OB * lanes]``: ``codes [N, K4 * 4]`` (uint8) times weights blocked by vectors of output
    features, ``wblk`` uint8 ``[OB, K4, lanes * 4]`` holding int8 bit patterns -- weight (o, r) at
    ``[o // lanes, r // 4, (o % lanes) * 4 + r % 4]`` (:func:`tvm_mp.schedules.kernels.dense_weight_data`). Each
    lane is an output feature adding 4-way u8 x s8 dot products of the same four codes: the form of
    ``vpdpbusd`` with the codes broadcast and the weights one vector load (a dense layer has no pixels to put in
    the lanes)."""
    n_, length = codes.shape
    ob, k4, _ = wblk.shape
    rk = te.reduce_axis((0, int(k4)), name="rk")
    q = te.reduce_axis((0, 4), name="q")

    def f(n, o):
        weight = wblk[o // lanes, rk, (o % lanes) * 4 + q].astype("int8").astype("int32")
        return te.sum(codes[n, rk * 4 + q].astype("int32") * weight, axis=[rk, q])

    return te.compute((n_, int(ob) * lanes), f, name="dense_dot")


def bitserial_dense_partial_acc(apack: te.Tensor, wplanes: te.Tensor, wcoef: te.Tensor, vw: int) -> te.Tensor:
    """int32 ``[N, OC, vw]`` partial sums of the bit-serial dense product over words ``s*vw + v`` (``apack``
    ``[N, a_bits, W]`` and ``wplanes [OC, planes, W]`` with ``W`` a multiple of ``vw``, zero words past K)."""
    n_, a_bits, words = apack.shape
    oc_, w_planes, _ = wplanes.shape
    s = te.reduce_axis((0, int(words) // vw), name="s")
    i = te.reduce_axis((0, w_planes), name="i")
    j = te.reduce_axis((0, a_bits), name="j")

    def f(n, o, v):
        wd = s * vw + v
        return te.sum(wcoef[i] * (tirx.popcount(wplanes[o, i, wd] & apack[n, j, wd]).astype("int32")
                                  << j.astype("int32")), axis=[s, i, j])

    return te.compute((n_, oc_, vw), f, name="dense_part")


def sum_partials(part: te.Tensor, codes: te.Tensor | None = None, woff=None) -> te.Tensor:
    """int32 ``[N, OC]``: the partial sums added up (plus ``woff * sum(codes[n])`` for 1-bit weights)."""
    n_, oc_, vw = part.shape
    v = te.reduce_axis((0, vw), name="v")
    acc = te.compute((n_, oc_), lambda n, o: te.sum(part[n, o, v], axis=v), name="dense_acc")
    if codes is None:
        return acc
    k = te.reduce_axis((0, codes.shape[1]), name="k")
    asum = te.compute((n_,), lambda n: te.sum(codes[n, k].astype("int32"), axis=k), name="row_sum")
    return te.compute((n_, oc_), lambda n, o: acc[n, o] + woff * asum[n], name="bitserial_offset")
