"""Reduced-precision floating point (fp16, bf16, fp8 e4m3 / e5m2, any IEEE-style eXmY), defined once in NumPy.

Format ``eXmY``
    ``X`` exponent bits with bias ``2**(X-1) - 1``, ``Y`` mantissa bits, a sign bit; normal numbers
    ``(1 + M / 2**Y) * 2**(E - bias)``, subnormals ``(M / 2**Y) * 2**(1 - bias)``. IEEE-style formats reserve the
    top exponent for infinities and NaN (largest finite value ``(2 - 2**-Y) * 2**bias``). "Finite" formats (the
    OCP FP8 ``fn`` layout of fp8 e4m3) use the top exponent for numbers and keep only its all-ones mantissa for
    NaN (fp8 e4m3: largest value 448).

Rounding float32 -> format (:func:`round_to_format`)
    Round to nearest, ties to even; subnormals of the format are kept (not flushed); a finite value beyond the
    largest finite value, and +-Inf, **saturate** to +-largest finite value (no infinities are produced); NaN stays
    NaN (its float32 bits unchanged); the sign of zero is kept. It is integer arithmetic on the float32 bit
    pattern, written identically here and in the TE computes (:mod:`tvm_mp.formats.computes`), so both agree by
    construction. Differences from ``ml_dtypes`` / NumPy casts: those round overflow to Inf (float16, bfloat16,
    float8_e5m2) or NaN (float8_e4m3fn); everything else is identical (checked by the tests on every
    representable value and many random ones).

A layer in format F (:func:`conv2d` / :func:`dense`)
    rounds its input activations and its weights to F, multiplies in float32 -- exact, since two significands of at
    most 12 bits give at most 24 bits -- and accumulates in float32 **sequentially** over the reduction index
    ``r = (c, ky, kx)`` (dense: ``k``), starting from +0. Padding contributes 0. The bias is added in float32 after
    the sum; a fused ReLU/Clip is a float max/min. With exact products, contracting ``acc + a * b`` into an FMA
    cannot change a result (``acc + exact product`` rounds once either way), so kernels built with or without FMA
    match this reference bit for bit. (Caveat for exponent widths >= 7: a product outside float32's normal range --
    below ~2**-126 or above ~2**127 in magnitude -- is no longer exact, and then an FMA target may differ; the
    default x86-64 target does not contract.)

Storage
    fp16 and bf16 weights are stored in the native ``float16`` / ``bfloat16`` dtypes (TVM's casts of those to
    float32 are bit-exact on every bit pattern, checked by the tests); every other format -- fp8 included -- as bit
    patterns in the smallest unsigned container of 8, 16 or 32 bits, decoded with integer operations
    (:func:`encode`, :func:`decode`). fp8 is not stored as TVM's ``float8_e4m3fn`` / ``float8_e5m2``: apache-tvm
    0.27's llvm cast of those to float32 is wrong for zero, subnormals and Inf/NaN (e.g. e4m3fn 0x00 -> 0.0078125),
    while the bit patterns are the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import PlanError
from ..precision import Precision
from ..workload import ConvParams
from .reference import im2col

F32_EXP_BIAS = 127
F32_MAN_BITS = 23
SIGN_MASK = 0x80000000
ABS_MASK = 0x7FFFFFFF
INF_BITS = 0x7F800000
F32_QNAN_BITS = 0x7FC00000

#: NumPy / ml_dtypes dtypes of the formats that have one (the same values and bit layout; ml_dtypes rounds
#: overflow to Inf/NaN where this module saturates).
ML_DTYPES = {(5, 10, False): "float16", (8, 7, False): "bfloat16", (4, 3, True): "float8_e4m3fn",
             (5, 2, False): "float8_e5m2"}
#: The ones stored natively: TVM casts them to float32 bit-exactly (its float8 casts are not, see module docstring).
NATIVE_DTYPES = {key: name for key, name in ML_DTYPES.items() if name in ("float16", "bfloat16")}


@dataclass(frozen=True)
class FloatFormat:
    """An IEEE-style float format ``e{exp_bits}m{man_bits}`` (``finite``: the OCP ``fn`` layout, no infinities)."""

    exp_bits: int
    man_bits: int
    finite: bool = False

    def __post_init__(self) -> None:
        Precision.float(self.exp_bits, self.man_bits, self.finite)  # the one place that validates formats

    @classmethod
    def of(cls, precision: Precision) -> "FloatFormat":
        if not isinstance(precision, Precision) or precision.kind != "float":
            raise PlanError(f"{precision} is not a float format: use Precision.fp16(), .bf16(), .fp8_e4m3(), "
                            ".fp8_e5m2() or .float(e, m)")
        return cls(precision.exp_bits, precision.man_bits, precision.finite)

    @property
    def name(self) -> str:
        return f"e{self.exp_bits}m{self.man_bits}" + ("fn" if self.finite else "")

    @property
    def total_bits(self) -> int:
        return 1 + self.exp_bits + self.man_bits

    @property
    def bias(self) -> int:
        return (1 << (self.exp_bits - 1)) - 1

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal number."""
        return 1 - self.bias

    @property
    def emax(self) -> int:
        """Exponent of the largest finite number."""
        return self.bias + (1 if self.finite else 0)

    @property
    def max_bits(self) -> int:
        """float32 bit pattern of the largest finite value."""
        top = (1 << self.man_bits) - (2 if self.finite else 1)  # fn: the all-ones mantissa is NaN
        return ((self.emax + F32_EXP_BIAS) << F32_MAN_BITS) | (top << (F32_MAN_BITS - self.man_bits))

    @property
    def max_value(self) -> float:
        return float(np.array([self.max_bits], np.uint32).view(np.float32)[0])

    @property
    def min_normal_bits(self) -> int:
        """float32 bit pattern of ``2**emin``: magnitudes below it are the format's subnormals."""
        return (self.emin + F32_EXP_BIAS) << F32_MAN_BITS

    @property
    def subnormal_step(self) -> float:
        """``2**(emin - man_bits)``: the spacing of subnormals (exactly a float32 value)."""
        return float(np.ldexp(np.float32(1.0), self.emin - self.man_bits))

    @property
    def native_dtype(self) -> str | None:
        """``float16`` / ``bfloat16`` (weights stored in it), or None (stored as bit patterns)."""
        return NATIVE_DTYPES.get((self.exp_bits, self.man_bits, self.finite))

    @property
    def ml_dtype(self) -> str | None:
        """The NumPy / ml_dtypes dtype with this format's values (float8 ones included), or None."""
        return ML_DTYPES.get((self.exp_bits, self.man_bits, self.finite))

    @property
    def container_dtype(self) -> str:
        """Unsigned integer dtype holding one bit pattern (for formats without a native dtype)."""
        return "uint8" if self.total_bits <= 8 else "uint16" if self.total_bits <= 16 else "uint32"

    @property
    def storage_dtype(self) -> str:
        return self.native_dtype or self.container_dtype

    @property
    def storage_bits(self) -> int:
        return int(np.dtype(_np_dtype(self.storage_dtype)).itemsize * 8)


def _np_dtype(name: str):
    if name == "float16" or name.startswith("uint"):
        return np.dtype(name)
    import ml_dtypes  # the other native formats (bfloat16, float8_*) are ml_dtypes types

    return np.dtype(getattr(ml_dtypes, name))


def round_bits(u: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """uint32 float32 bit patterns -> bit patterns of the values rounded to ``fmt`` (see module docstring).

    The TE compute :func:`tvm_mp.formats.computes.round_to_format` performs these operations one for one.
    """
    u = np.asarray(u, dtype=np.uint32)
    m = fmt.man_bits
    sign = u & np.uint32(SIGN_MASK)
    a = u & np.uint32(ABS_MASK)
    # normal range: round the mantissa to m bits (a carry moves into the exponent), then saturate
    shift = F32_MAN_BITS - m
    half = np.uint32((1 << (shift - 1)) - 1)
    keep = np.uint32((0xFFFFFFFF << shift) & 0xFFFFFFFF)
    normal = (a + half + ((a >> np.uint32(shift)) & np.uint32(1))) & keep
    normal = np.minimum(normal, np.uint32(fmt.max_bits))
    # subnormal range: round the value to a multiple of 2**(emin - m) (integer significand, shifted right)
    e32 = (a >> np.uint32(F32_MAN_BITS)).astype(np.int32)
    frac = (a & np.uint32(0x7FFFFF)).astype(np.int32)
    sig = np.where(e32 == 0, frac, frac | np.int32(1 << F32_MAN_BITS))
    sh = (fmt.emin - m + 150) - np.maximum(e32, 1)  # >= 24 - m >= 13 wherever this branch is taken
    sh = np.minimum(np.maximum(sh, 1), 31)
    n = (sig + ((np.int32(1) << (sh - 1)) - 1) + ((sig >> sh) & 1)) >> sh
    sub = (n.astype(np.float32) * np.float32(fmt.subnormal_step)).view(np.uint32)
    out = np.where(a < np.uint32(fmt.min_normal_bits), sub, normal) | sign
    return np.where(a > np.uint32(INF_BITS), u, out).astype(np.uint32)


def round_to_format(x: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """float32 values rounded to ``fmt`` (returned as float32: every value of the format is a float32 value)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    return round_bits(x.view(np.uint32), fmt).view(np.float32).reshape(x.shape)


def encode(x: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Bit patterns (in :attr:`FloatFormat.container_dtype`) of float32 values already rounded to ``fmt``."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    u = x.view(np.uint32).astype(np.int64)
    e, m = fmt.exp_bits, fmt.man_bits
    sign = (u >> 31) & 1
    a = u & ABS_MASK
    nan = a > INF_BITS
    exp = (a >> F32_MAN_BITS) - F32_EXP_BIAS + fmt.bias
    man = (a & 0x7FFFFF) >> (F32_MAN_BITS - m)
    sub = a < fmt.min_normal_bits
    sub_mag = np.where(sub, a, 0).astype(np.uint32).view(np.float32).astype(np.float64)  # |x| of subnormals only
    sub_man = np.rint(sub_mag / fmt.subnormal_step).astype(np.int64)
    exp = np.where(sub, 0, exp)
    man = np.where(sub, sub_man, man)
    nan_exp = (1 << e) - 1
    nan_man = (1 << m) - 1 if fmt.finite else max(1 << (m - 1), 1) if m else 0
    exp = np.where(nan, nan_exp, exp)
    man = np.where(nan, nan_man, man)
    bits = (sign << (e + m)) | (exp << m) | man
    return bits.astype(fmt.container_dtype)


def decode(bits: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """float32 values of bit patterns of ``fmt`` (the inverse of :func:`encode`; the kernels decode the same way)."""
    p = np.asarray(bits).astype(np.uint32)
    e, m = fmt.exp_bits, fmt.man_bits
    sign = ((p >> np.uint32(e + m)) & np.uint32(1)) << np.uint32(31)
    exp = (p >> np.uint32(m)) & np.uint32((1 << e) - 1)
    man = p & np.uint32((1 << m) - 1)
    normal = (((exp + np.uint32(F32_EXP_BIAS - fmt.bias)) << np.uint32(F32_MAN_BITS))
              | (man << np.uint32(F32_MAN_BITS - m)))
    sub = (man.astype(np.float32) * np.float32(fmt.subnormal_step)).view(np.uint32)
    out = np.where(exp == 0, sub, normal) | sign
    if fmt.finite:
        nan = (exp == np.uint32((1 << e) - 1)) & (man == np.uint32((1 << m) - 1))
    else:
        nan = exp == np.uint32((1 << e) - 1)  # stored weights are finite: Inf never occurs, read as NaN
    return np.where(nan, np.uint32(F32_QNAN_BITS), out).astype(np.uint32).view(np.float32)


def storage(weight: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Weights rounded to ``fmt`` in their storage dtype: native (``float16`` ...) or bit patterns."""
    rounded = round_to_format(weight, fmt)
    if fmt.native_dtype is not None:
        return rounded.astype(_np_dtype(fmt.native_dtype))
    return encode(rounded, fmt)


def from_storage(stored: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """float32 values of weights in their storage dtype (inverse of :func:`storage` on rounded values)."""
    if fmt.native_dtype is not None:
        return np.asarray(stored).astype(np.float32)
    return decode(stored, fmt)


def _accumulate(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``sum_r a[..., r] * b[..., r]`` in float32, sequentially over r from +0 (``a``, ``b`` broadcast)."""
    shape = np.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    acc = np.zeros(shape, dtype=np.float32)
    for r in range(a.shape[-1]):
        acc = acc + a[..., r] * b[..., r]  # float32 product (exact), then one rounding of the sum
    return acc


def _epilogue(acc: np.ndarray, bias: np.ndarray | None, lo: float | None, hi: float | None) -> np.ndarray:
    oc = acc.shape[1]
    b = np.zeros(oc, np.float32) if bias is None else np.asarray(bias, np.float32).reshape(oc)
    y = acc + b.reshape((1, oc) + (1,) * (acc.ndim - 2))
    if lo is not None:
        y = np.maximum(y, np.float32(lo))
    if hi is not None:
        y = np.minimum(y, np.float32(hi))
    return y.astype(np.float32)


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, params: ConvParams, fmt: FloatFormat,
           lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Reference of a conv2d layer in ``fmt`` (NCHW input, OIHW weight; grouped and depthwise included)."""
    xr = round_to_format(x, fmt)
    wr = round_to_format(weight, fmt)
    oc, cg, kh, kw = wr.shape
    g = params.groups
    cols = im2col(xr, kh, kw, params, np.float32(0.0))  # [N, G, OH, OW, R], r = (c, ky, kx)
    w3 = wr.reshape(g, oc // g, cg * kh * kw)  # [G, Kg, R]
    acc = _accumulate(cols[:, :, None], w3[None, :, :, None, None, :])  # [N, G, Kg, OH, OW]
    n, _, _, oh, ow = acc.shape
    return _epilogue(acc.reshape(n, oc, oh, ow), bias, lo, hi)


def dense(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, fmt: FloatFormat, lo: float | None = None,
          hi: float | None = None) -> np.ndarray:
    """Reference of a dense layer in ``fmt``: ``x [N, K]``, ``weight [OC, K]``."""
    xr = round_to_format(x, fmt)
    wr = round_to_format(weight, fmt)
    return _epilogue(_accumulate(xr[:, None, :], wr[None, :, :]), bias, lo, hi)
