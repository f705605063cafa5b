"""The integer arithmetic of tvm-mp, defined once, in NumPy.

Everything a compiled model computes in integers is specified here; the TVM kernels are tested to reproduce it
bit for bit.

Activations
    Unsigned codes ``q`` in ``[0, 2**a_bits - 1]`` with a zero point: ``x ~= scale * (q - zero_point)``.
    After a ReLU-like op the range starts at 0, so ``zero_point == 0`` and all codes are positive values
    ("unsigned"); otherwise the range is signed and ``zero_point`` sits inside it (affine, 0 exactly representable).
    ``quantize(x) = clip(rint(x * inv_scale) + zero_point, 0, 2**a_bits - 1)`` with ``inv_scale = float32(1/scale)``
    and ``rint`` rounding half to even, all in float32 -- one multiply and one rounding, so a compiler cannot fuse
    it into an FMA and change a result.

Weights
    Symmetric per output channel. ``b >= 2`` bits: integers in ``[-(2**(b-1) - 1), 2**(b-1) - 1]``, scale
    ``r * max|W_k| / (2**(b-1) - 1)`` with the clipping ratio ``r`` in [0.3, 1] that minimizes the channel's
    squared quantization error (a fixed grid: deterministic). ``b == 1``: binary ``{-1, +1}`` (the sign), scale
    ``mean|W_k|``.

Layer output
    ``acc = sum(q * w_q)`` over the reduction (int32; padding positions hold ``zero_point``, i.e. real 0).
    ``acc' = acc + bias_corr`` with ``bias_corr = rint(bias / (s_in * s_w)) - zero_point * sum(w_q)`` (int32).
    Float output: ``y = clamp(float32(acc') * float32(s_in * s_w), lo, hi)``.
    Integer output (requantization straight into the next layer's codes):
    ``q' = clip(zp' + ((acc' * M + 2**(shift-1)) >> shift), lo_code, hi_code)`` in int64, where ``M * 2**-shift``
    approximates ``s_in * s_w / s'`` with ``M`` in ``[2**30, 2**31)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import CalibrationError, PlanError

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


@dataclass(frozen=True)
class ActQuant:
    """Quantization of one activation tensor: ``x ~= scale * (q - zero_point)``, ``q`` in ``[0, 2**bits - 1]``."""

    scale: float
    zero_point: int
    bits: int

    def __post_init__(self) -> None:
        if not (1 <= self.bits <= 8):
            raise PlanError(f"activation bits must be 1..8, got {self.bits}")
        if not (math.isfinite(self.scale) and np.float32(self.scale) > 0 and np.isfinite(np.float32(self.scale))):
            raise CalibrationError(f"activation scale must be a positive, finite float32, got {self.scale}")
        if not (0 <= self.zero_point <= self.qmax):
            raise CalibrationError(f"zero point {self.zero_point} is outside 0..{self.qmax}")
        # store the float32 value actually used, so every consumer sees the same number
        object.__setattr__(self, "scale", float(np.float32(self.scale)))

    @property
    def qmax(self) -> int:
        return (1 << self.bits) - 1

    @property
    def inv_scale(self) -> np.float32:
        return np.float32(1.0 / self.scale)

    @classmethod
    def from_range(cls, lo: float, hi: float, bits: int, unsigned: bool = False) -> "ActQuant":
        """Scale and zero point covering ``[lo, hi]`` (always widened to include 0)."""
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise CalibrationError(f"activation range [{lo}, {hi}] is not finite: check the calibration data")
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
        if unsigned:
            lo = 0.0
        qmax = (1 << bits) - 1
        if (hi - lo) / qmax < np.finfo(np.float32).tiny:  # (numerically) constant zero: any scale is exact
            return cls(1.0, 0, bits)
        scale = (hi - lo) / qmax
        zero_point = int(min(max(round(-lo / scale), 0), qmax))
        return cls(scale, zero_point, bits)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Float -> uint8 codes, exactly as the compiled kernels do it."""
        t = np.rint(np.asarray(x, dtype=np.float32) * self.inv_scale)
        t = np.clip(t, -self.zero_point, self.qmax - self.zero_point)
        return (t.astype(np.int32) + self.zero_point).astype(np.uint8)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return (q.astype(np.int32) - self.zero_point).astype(np.float32) * np.float32(self.scale)

    def code_of(self, value: float) -> int:
        """The code the quantizer gives a real value (used to fold ReLU/Clip bounds into integer clamps)."""
        return int(self.quantize(np.array([value], dtype=np.float32))[0])

    def to_dict(self) -> dict:
        return {"scale": self.scale, "zero_point": self.zero_point, "bits": self.bits}


def weight_qrange(bits: int) -> tuple[int, int]:
    """Smallest and largest integer weight at ``bits`` bits."""
    if bits == 1:
        return -1, 1
    q = (1 << (bits - 1)) - 1
    return -q, q


def quantize_weights(weight: np.ndarray, bits: int, hessian: np.ndarray | None = None,
                     groups: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel quantization of ``weight`` (axis 0 = output channel).

    Returns ``(w_q int8 of weight's shape, scale float32 [OC])`` with ``weight ~= w_q * scale[:, None, ...]``.
    With ``hessian`` (diagonal blocks ``[G, nblocks, B, B]`` -- or ``[nblocks, B, B]`` for one group -- of the second
    moment of the layer's inputs per group, from calibration; see :mod:`tvm_mp.quantize.rounding`) the integers are
    chosen by GPTQ-style error feedback (:mod:`tvm_mp.quantize.rounding`) instead of
    round-to-nearest; the scales and the integer range are the same either way.
    """
    if not (1 <= bits <= 8):
        raise PlanError(f"weight bits must be 1..8, got {bits}")
    w = np.asarray(weight, dtype=np.float32)
    flat = w.reshape(w.shape[0], -1).astype(np.float64)
    if not np.isfinite(flat).all():
        raise PlanError("weights contain NaN or Inf: the model file is damaged")
    if bits == 1:
        scale = np.abs(flat).mean(axis=1)
        wq = np.where(flat >= 0, 1, -1)
        lo = hi = 1
    else:
        qmax = (1 << (bits - 1)) - 1
        scale = _usable(_mse_scales(flat, qmax))
        wq = np.clip(np.rint(flat / scale[:, None]), -qmax, qmax)
        lo, hi = -qmax, qmax
    scale = _usable(scale)
    if hessian is not None:
        from .rounding import gptq_rows

        hs = np.asarray(hessian, dtype=np.float64)
        hs = hs[None] if hs.ndim == 3 else hs
        r = flat.shape[1]
        if hs.ndim != 4 or hs.shape[0] != groups or hs.shape[2] != hs.shape[3] or hs.shape[1] * hs.shape[2] < r \
                or (hs.shape[1] - 1) * hs.shape[2] >= r:
            raise PlanError(f"input statistics of shape {hs.shape} do not fit a weight {w.shape} with {groups} "
                            "group(s): recalibrate on this model")
        from threadpoolctl import threadpool_limits

        per = flat.shape[0] // groups
        with threadpool_limits(1):  # many small factorizations: threads only contend (10x slower on 2 busy cores)
            wq = np.concatenate([gptq_rows(flat[g * per : (g + 1) * per], scale[g * per : (g + 1) * per], lo, hi,
                                           hs[g], bits == 1) for g in range(groups)])
    return wq.astype(np.int8).reshape(w.shape), scale.astype(np.float32)


def _usable(scale: np.ndarray) -> np.ndarray:
    """Scales that round to 0 in float32 (all-zero or denormal-tiny channels) become 1: such a channel's
    integers are then 0 (or its signs), which is exact to float32 precision."""
    return np.where(scale.astype(np.float32) > 0, scale, 1.0)


#: Clipping ratios tried per output channel (fraction of max|w|); 1.0 is plain max scaling.
CLIP_RATIOS = np.linspace(0.3, 1.0, 36)


def _mse_scales(flat: np.ndarray, qmax: int) -> np.ndarray:
    """Per-channel scale minimizing the squared weight error over clipping ratios of max|w|.

    At 8 bits clipping rarely helps; at 2-4 bits (3 to 15 levels) the max is dominated by outliers and a clipped
    scale halves the error. The search is a fixed grid, so the result is deterministic.
    """
    wmax = np.abs(flat).max(axis=1)
    scales = wmax[:, None] * CLIP_RATIOS[None, :] / qmax  # [OC, ratios]
    safe = np.where(scales > 0, scales, 1.0)
    q = np.clip(np.rint(flat[:, None, :] / safe[:, :, None]), -qmax, qmax)
    err = ((q * safe[:, :, None] - flat[:, None, :]) ** 2).sum(axis=2)
    best = np.argmin(err, axis=1)
    return scales[np.arange(flat.shape[0]), best]


def requant_multiplier(real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-point ``(M, shift)`` per channel with ``M * 2**-shift ~= real`` and ``M`` in ``[2**30, 2**31)``."""
    real = np.asarray(real, dtype=np.float64)
    if not (np.isfinite(real).all() and (real > 0).all()):
        raise CalibrationError("requantization scale must be positive and finite")
    exp = np.floor(np.log2(real)).astype(np.int64)
    shift = 30 - exp
    mult = np.rint(real * np.exp2(shift.astype(np.float64))).astype(np.int64)
    # rint can round up to exactly 2**31: renormalize
    over = mult >= (1 << 31)
    mult = np.where(over, mult >> 1, mult)
    shift = np.where(over, shift - 1, shift)
    # tiny multipliers: cap the shift, losing low bits of M (still exact arithmetic, just coarser)
    big = shift > 62
    mult = np.where(big, np.rint(np.where(big, real, 0.0) * 2.0**62).astype(np.int64), mult)
    shift = np.where(big, 62, shift)
    # huge multipliers (>= 2**30: one accumulator unit spans 2**30 codes): M * 2**-1 saturates every non-zero
    # accumulator to the clamp bounds, which is what the exact product does too
    small = shift < 1
    mult = np.where(small, (1 << 31) - 1, mult)
    shift = np.where(small, 1, shift)
    return mult.astype(np.int64), shift.astype(np.int64)


#: Largest ``|rint(bias / (s_in * s_w))|`` a channel's int32 correction holds: with ``|acc - zp * sum(w_q)|``
#: at most ``255 * 127 * R``, ``acc'`` stays inside int32 for reductions up to ~49,000.
BIAS_LIMIT = 2**29
#: Smallest accumulator scale ``s_in * s_w``: keeps the output scale a positive float32 (and the requantization
#: multiplier positive). A channel below it contributes less than 2**-100 per unit of its accumulator.
MIN_ACC_SCALE = 2.0**-100


def fit_accumulator(weight: np.ndarray, w_q: np.ndarray, w_scale: np.ndarray, bias: np.ndarray | None,
                    in_scale: float, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Widen the weight scale of the channels whose accumulator scale ``s_in * s_w`` is too fine for int32.

    Trained networks have output channels with near-zero weights and a real bias (a pruned channel after
    BatchNorm folding: ``bias / (s_in * s_w)`` far beyond int32) and channels so tiny that ``s_in * s_w``
    underflows float32. For ``bits >= 2`` such a channel gets the smallest scale at which its bias correction
    fits :data:`BIAS_LIMIT` and the accumulator scale is at least :data:`MIN_ACC_SCALE`, and its integers are
    rounded again to nearest at that scale (they are small or zero: the bias carries the channel). Dead channels
    (all-zero weights) get exactly that scale at every bit-width. Other one-bit channels (``w = +-s_w``) only
    get the floor; a bias that still does not fit saturates in :func:`bias_correction`. Other channels are
    returned unchanged. The function is idempotent, and the compiler, the NumPy reference and the plan scorer,
    which all call it with the same arguments, agree.

    ``weight`` float, ``w_q`` int8, both with output channels on axis 0; ``w_scale`` float32 ``[OC]``.
    """
    oc = w_q.shape[0]
    scale = np.asarray(w_scale, dtype=np.float32).reshape(oc)
    s_in = np.float64(np.float32(in_scale))
    floor = np.full(oc, MIN_ACC_SCALE / s_in)
    fit = np.zeros(oc) if bias is None else \
        np.abs(np.asarray(bias, dtype=np.float64).reshape(oc)) / (s_in * BIAS_LIMIT)
    dead = ~np.asarray(weight).reshape(oc, -1).any(axis=1)
    need = np.maximum(floor, fit) if bits >= 2 else floor
    need = np.where(dead, np.maximum(floor, fit), need)
    need32 = need.astype(np.float32)
    need32 = np.where(need32.astype(np.float64) < need, np.nextafter(need32, np.float32(np.inf)), need32)  # round up
    # dead channels (all-zero weights): any scale represents them, the finest one that holds the bias keeps the
    # bias exact (a scale of 1 would round it to a multiple of s_in) and a one-bit channel's +-s_w negligible
    low = (scale.astype(np.float64) < need) | (dead & (scale != need32))
    if not low.any():
        return w_q, scale
    new = need32[low]
    scale = scale.copy()
    scale[low] = new
    if bits >= 2:
        w_q = np.array(w_q, dtype=np.int8, copy=True)
        qmax = (1 << (bits - 1)) - 1
        flat = np.asarray(weight, dtype=np.float64).reshape(oc, -1)[low]
        rows = np.clip(np.rint(flat / new.astype(np.float64)[:, None]), -qmax, qmax)
        w_q.reshape(oc, -1)[low] = rows.astype(np.int8)
    return w_q, scale


def bias_correction(bias: np.ndarray | None, w_q: np.ndarray, w_scale: np.ndarray, act: ActQuant) -> np.ndarray:
    """``rint(bias / (s_in * s_w)) - zero_point * sum(w_q)`` per output channel, int32.

    The bias term saturates at ``+-2 * BIAS_LIMIT`` (only one-bit channels can reach it after
    :func:`fit_accumulator`), so a trained network never fails here; the compiled kernels read this same vector."""
    oc = w_q.shape[0]
    wsum = w_q.reshape(oc, -1).astype(np.int64).sum(axis=1)
    corr = -act.zero_point * wsum
    if bias is not None:
        acc_scale = np.float64(act.scale) * w_scale.astype(np.float64)
        term = np.clip(np.asarray(bias, dtype=np.float64).reshape(oc) / acc_scale, -2.0 * BIAS_LIMIT,
                       2.0 * BIAS_LIMIT)
        corr = corr + np.rint(term).astype(np.int64)
    return np.clip(corr, INT32_MIN, INT32_MAX).astype(np.int32)


def output_scale(w_scale: np.ndarray, act: ActQuant) -> np.ndarray:
    """float32 ``s_in * s_w`` per output channel (computed in float64, rounded once)."""
    return (np.float64(act.scale) * w_scale.astype(np.float64)).astype(np.float32)


def requantize(acc: np.ndarray, channel_axis: int, mult: np.ndarray, shift: np.ndarray, zero_point: int,
               lo: int, hi: int) -> np.ndarray:
    """Integer requantization of ``acc'`` (bias already added) into uint8 codes."""
    shape = [1] * acc.ndim
    shape[channel_axis] = -1
    m = mult.reshape(shape)
    s = shift.reshape(shape)
    t = (acc.astype(np.int64) * m + (np.int64(1) << (s - 1))) >> s
    return np.clip(t + zero_point, lo, hi).astype(np.uint8)


def dequantize_output(acc: np.ndarray, channel_axis: int, scale: np.ndarray, lo: float = -np.inf,
                      hi: float = np.inf) -> np.ndarray:
    """Float output ``clamp(float32(acc') * scale, lo, hi)``."""
    shape = [1] * acc.ndim
    shape[channel_axis] = -1
    y = acc.astype(np.float32) * scale.astype(np.float32).reshape(shape)
    if lo != -np.inf or hi != np.inf:
        y = np.minimum(np.maximum(y, np.float32(lo)), np.float32(hi))
    return y
