"""TE computes of the float-format and clustered kernels (the "what"; :mod:`tvm_mp.formats.kernels` says "how").

The float rounding and decoding are the integer operations of :func:`tvm_mp.quantize.floats.round_bits` and
:func:`tvm_mp.quantize.floats.decode`, one for one, on the float32 bit pattern (``tirx.reinterpret``); the
accumulation is one ``te.sum`` over the reduction index ``r = (c, ky, kx)`` in order, which the schedules never
split or reorder. Sizes and conv geometry may be ints or ``tirx`` expressions (shape-generic test kernels).
"""

from __future__ import annotations

from tvm import te, tirx

from ..quantize.floats import F32_EXP_BIAS, F32_MAN_BITS, F32_QNAN_BITS, INF_BITS, FloatFormat
from ..schedules.computes import ConvGeom

__all__ = ["ConvGeom", "round_to_format", "decode_weights", "float_conv2d", "float_dense", "product_table",
           "unpack_indices", "clustered_conv2d_acc", "clustered_dense_acc"]


def _u32(value: int):
    return tirx.const(value, "uint32")


def _i32(value):
    return value.astype("int32") if hasattr(value, "astype") else tirx.const(value, "int32")


def round_expr(x, fmt: FloatFormat):
    """float32 expression rounded to ``fmt`` (the operations of ``tvm_mp.quantize.floats.round_bits``)."""
    m = fmt.man_bits
    u = tirx.reinterpret("uint32", x)
    sign = u & _u32(0x80000000)
    a = u & _u32(0x7FFFFFFF)
    shift = F32_MAN_BITS - m
    normal = (a + _u32((1 << (shift - 1)) - 1) + ((a >> _u32(shift)) & _u32(1))) & _u32((0xFFFFFFFF << shift)
                                                                                          & 0xFFFFFFFF)
    normal = tirx.min(normal, _u32(fmt.max_bits))
    e32 = (a >> _u32(F32_MAN_BITS)).astype("int32")
    frac = (a & _u32(0x7FFFFF)).astype("int32")
    sig = tirx.Select(e32 == 0, frac, frac | _i32(1 << F32_MAN_BITS))
    sh = _i32(fmt.emin - m + 150) - tirx.max(e32, _i32(1))
    sh = tirx.min(tirx.max(sh, _i32(1)), _i32(31))
    n = (sig + ((_i32(1) << (sh - 1)) - 1) + ((sig >> sh) & 1)) >> sh
    sub = tirx.reinterpret("uint32", n.astype("float32") * tirx.const(fmt.subnormal_step, "float32"))
    out = tirx.Select(a < _u32(fmt.min_normal_bits), sub, normal) | sign
    return tirx.reinterpret("float32", tirx.Select(a > _u32(INF_BITS), u, out))


def round_to_format(x: te.Tensor, fmt: FloatFormat, name: str = "round") -> te.Tensor:
    """Elementwise rounding of a float32 tensor to ``fmt``."""
    return te.compute(x.shape, lambda *i: round_expr(x(*i), fmt), name=name)


def decode_expr(p, fmt: FloatFormat):
    """float32 value of a bit pattern of ``fmt`` held in an unsigned integer (the operations of
    ``tvm_mp.quantize.floats.decode``)."""
    e, m = fmt.exp_bits, fmt.man_bits
    p = p.astype("uint32")
    sign = ((p >> _u32(e + m)) & _u32(1)) << _u32(31)
    exp = (p >> _u32(m)) & _u32((1 << e) - 1)
    man = p & _u32((1 << m) - 1)
    normal = ((exp + _u32(F32_EXP_BIAS - fmt.bias)) << _u32(F32_MAN_BITS)) | (man << _u32(F32_MAN_BITS - m))
    sub = tirx.reinterpret("uint32", man.astype("float32") * tirx.const(fmt.subnormal_step, "float32"))
    out = tirx.Select(exp == _u32(0), sub, normal) | sign
    if fmt.finite:
        nan = tirx.all(exp == _u32((1 << e) - 1), man == _u32((1 << m) - 1))
    else:
        nan = exp == _u32((1 << e) - 1)
    return tirx.reinterpret("float32", tirx.Select(nan, _u32(F32_QNAN_BITS), out))


def decode_weights(stored: te.Tensor, fmt: FloatFormat, name: str = "wdecode") -> te.Tensor:
    """float32 weights from their storage: a cast of a native dtype, or integer decoding of bit patterns."""
    if fmt.native_dtype is not None:
        return te.compute(stored.shape, lambda *i: stored(*i).astype("float32"), name=name)
    return te.compute(stored.shape, lambda *i: decode_expr(stored(*i), fmt), name=name)


def _window(t: te.Tensor, geom: ConvGeom, cg, r, n, g, oy, ox, pad):
    """``t[n, g*cg + c, iy, ix]`` at reduction index ``r = (c, ky, kx)`` of output pixel (oy, ox); ``pad`` outside."""
    _, _, h, w = t.shape
    khw = geom.kh * geom.kw
    c = r // khw
    rem = r % khw
    iy = oy * geom.stride_h + (rem // geom.kw) * geom.dil_h - geom.pad_top
    ix = ox * geom.stride_w + (rem % geom.kw) * geom.dil_w - geom.pad_left
    inside = tirx.all(iy >= 0, iy < h, ix >= 0, ix < w)
    value = t[n, g * cg + c, tirx.max(tirx.min(iy, h - 1), 0), tirx.max(tirx.min(ix, w - 1), 0)]
    return tirx.Select(inside, value, pad)


def _bias_clamp(acc: te.Tensor, bias: te.Tensor, lo, hi, name: str = "epilogue") -> te.Tensor:
    def f(*idx):
        y = acc(*idx) + bias[idx[1]]
        if lo is not None:
            y = tirx.max(y, tirx.const(float(lo), "float32"))
        if hi is not None:
            y = tirx.min(y, tirx.const(float(hi), "float32"))
        return y

    return te.compute(acc.shape, f, name=name)


def float_conv2d(x: te.Tensor, weights: te.Tensor, bias: te.Tensor, fmt: FloatFormat, geom: ConvGeom, out_channels,
                 out_hw, lo=None, hi=None) -> te.Tensor:
    """float32 NCHW conv2d in ``fmt``: ``weights`` is the storage ``[OC, R]`` (R = Cg*KH*KW in (c, ky, kx)
    order); input and weights rounded to ``fmt``, products and a sequential sum over r in float32, then
    ``bias`` and the clamp [lo, hi]."""
    n_, c_, _, _ = x.shape
    cg = c_ // geom.groups
    kg = out_channels // geom.groups
    xr = round_to_format(x, fmt, "xround")
    wd = decode_weights(weights, fmt)
    r = te.reduce_axis((0, cg * geom.kh * geom.kw), name="r")
    oh, ow = out_hw
    zero = tirx.const(0.0, "float32")

    def f(n, oc, oy, ox):
        a = _window(xr, geom, cg, r, n, oc // kg, oy, ox, zero)
        return te.sum(a * wd[oc, r], axis=r)

    acc = te.compute((n_, out_channels, oh, ow), f, name="float_acc")
    return _bias_clamp(acc, bias, lo, hi)


def float_dense(x: te.Tensor, weights: te.Tensor, bias: te.Tensor, fmt: FloatFormat, lo=None, hi=None) -> te.Tensor:
    """float32 ``[N, OC]`` dense layer in ``fmt`` (weights stored ``[OC, K]``)."""
    n_, k = x.shape
    xr = round_to_format(x, fmt, "xround")
    wd = decode_weights(weights, fmt)
    r = te.reduce_axis((0, k), name="r")
    acc = te.compute((n_, weights.shape[0]), lambda n, oc: te.sum(xr[n, r] * wd[oc, r], axis=r), name="float_acc")
    return _bias_clamp(acc, bias, lo, hi)


def product_table(centroids: te.Tensor, a_bits) -> te.Tensor:
    """int32 ``T[k, q] = c_q[k] * q`` (``K x 2**a_bits``), built once per call."""
    levels = _i32(1) << a_bits if not isinstance(a_bits, int) else 1 << a_bits
    return te.compute((centroids.shape[0], levels), lambda k, q: centroids[k].astype("int32") * q,
                      name="product_table")


def unpack_indices(packed: te.Tensor, bits, rows, row_len, name: str = "unpack_idx") -> te.Tensor:
    """int32 ``[rows, row_len]`` cluster indices from the dense bit stream of
    ``tvm_mp.quantize.clustering.pack_indices``."""

    def f(o, r):
        pos = (o * row_len + r) * bits
        word = pos >> 5
        pair = packed[word].astype("uint64") | (packed[word + 1].astype("uint64") << tirx.const(32, "uint64"))
        mask = (tirx.const(1, "uint64") << _i32(bits).astype("uint64")) - tirx.const(1, "uint64")
        return ((pair >> (pos & 31).astype("uint64")) & mask).astype("int32")

    return te.compute((rows, row_len), f, name=name)


def clustered_conv2d_acc(codes: te.Tensor, packed: te.Tensor, centroids: te.Tensor, bits, a_bits, geom: ConvGeom,
                         out_channels, out_hw, zero_point) -> te.Tensor:
    """int32 ``acc[n, oc, oy, ox] = sum_r T[idx[oc, r], code[r]]``: look-up and addition, no multiply."""
    n_, c_, _, _ = codes.shape
    cg = c_ // geom.groups
    kg = out_channels // geom.groups
    rr = cg * geom.kh * geom.kw
    table = product_table(centroids, a_bits)
    idx = unpack_indices(packed, bits, out_channels, rr)
    r = te.reduce_axis((0, rr), name="r")
    oh, ow = out_hw

    def f(n, oc, oy, ox):
        pad = zero_point.astype("uint8") if hasattr(zero_point, "astype") else tirx.const(zero_point, "uint8")
        code = _window(codes, geom, cg, r, n, oc // kg, oy, ox, pad)
        return te.sum(table[idx[oc, r], code.astype("int32")], axis=r)

    return te.compute((n_, out_channels, oh, ow), f, name="table_acc")


def clustered_dense_acc(codes: te.Tensor, packed: te.Tensor, centroids: te.Tensor, bits, a_bits,
                        out_features) -> te.Tensor:
    """int32 ``acc[n, oc] = sum_k T[idx[oc, k], code[n, k]]``."""
    n_, k = codes.shape
    table = product_table(centroids, a_bits)
    idx = unpack_indices(packed, bits, out_features, k)
    r = te.reduce_axis((0, k), name="r")
    return te.compute((n_, out_features), lambda n, oc: te.sum(table[idx[oc, r], codes[n, r].astype("int32")], axis=r),
                      name="table_acc")
