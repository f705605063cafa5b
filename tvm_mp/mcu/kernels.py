"""C kernels of quantized conv2d / depthwise conv2d / dense layers for Cortex-M, with virtually quantized weights.

A layer is an :class:`McuLayer` (weights, geometry, the input zero point, ``bias_corr`` and an epilogue); the
emitter writes one ``static`` C function per layer with every shape a compile-time constant, plus the constant
arrays it reads. The arithmetic is the one of :mod:`tvm_mp.quantize.scheme`, to the bit:

* ``acc = sum(code * w)`` accumulated in 32 bits with wrap-around (``uint32_t``; the reference casts its int64 sum
  to int32), padding positions read the input zero point;
* ``acc' = acc + bias_corr`` (wrapping);
* integer output: ``clip(zp' + ((acc' * M + 2**(s-1)) >> s), lo, hi)`` in ``int64_t``;
* float output: ``float32(acc') * scale`` then ``y = y > lo ? y : lo`` and ``y = y < hi ? y : hi`` (NumPy's
  ``maximum`` / ``minimum``; only the finite bounds are emitted).

Weights are stored as described in :mod:`tvm_mp.mcu.packing` and decoded with ordinary integer instructions:
``(int32_t)(word << (32 - pos - b)) >> (32 - b)`` per weight (GCC emits one ``SBFX`` for it on ARMv7-M). The dot
product is unrolled over whole words (at least :data:`UNROLL_MACS` weights an iteration), so one word load feeds
``word_bits // b`` multiply-accumulates, each of them a byte load of the code, one ``SBFX`` and one ``MLA``. The
8-bit baseline reads ``int8`` weights with ``LDRSB``, unrolled by the same :data:`UNROLL_MACS`. One-bit weights
``w = 2s + 1`` (``s`` = the sign-extended bit) accumulate ``sum(a * s)`` and add ``sum(a)`` once per input column.

Kernels
    * dense: one packed dot product per output;
    * conv2d (any groups): per output pixel and group, an im2col column of ``R = Cg * KH * KW`` codes on the stack
      (copied without bounds checks where the window lies inside the input, else padded with the zero point), then
      one packed dot product per output channel of the group;
    * depthwise (``Cg == 1``, one output channel per group): the channel's ``KH * KW`` weights are decoded once
      into ``int32_t`` locals; inside pixels run the fully unrolled window, border pixels start from
      ``zp * sum(w)`` and add ``(x - zp) * w`` over the taps inside the input (per-row / per-column tap tables).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import PlanError, UnsupportedError
from ..quantize import reference, scheme
from ..workload import ConvParams
from .cgen import c_array, c_float, check_ident
from .packing import VqFormat

#: Common C helpers every generated file starts with.
PRELUDE = r"""#include <stdint.h>
#define VQ_INLINE static inline __attribute__((always_inline))
#define VQ_NOINLINE __attribute__((noinline, noclone))
/* sign-extended field of `b` bits at bit `pos` of a 32-bit word */
#define VQ_FIELD(v, pos, b) ((int32_t)((uint32_t)(v) << (32 - (pos) - (b))) >> (32 - (b)))
VQ_INLINE uint32_t vq_sum_u8(const uint8_t *a, int32_t n) {
  uint32_t s = 0;
  for (int32_t i = 0; i < n; ++i) s += a[i];
  return s;
}
VQ_INLINE uint8_t vq_requant(int32_t acc, int32_t m, int32_t s, int32_t zp, int32_t lo, int32_t hi) {
  int64_t t = ((int64_t)acc * m + ((int64_t)1 << (s - 1))) >> s;
  t += zp;
  if (t < lo) t = lo;
  if (t > hi) t = hi;
  return (uint8_t)t;
}
"""


#: Largest im2col column (codes on the stack) a conv kernel may use.
MAX_COLUMN = 16384
#: Multiply-accumulates per iteration of the dot-product loops, at least (8-bit: exactly; n-bit: whole words).
UNROLL_MACS = 8


def format_helpers(fmt: VqFormat) -> str:
    """``vq_dot_<tag>`` (packed row . codes) and ``vq_unpack_<tag>`` (row -> int32) for one storage format.

    For 1-bit weights ``w = 2 * s + 1`` with ``s`` the sign-extended bit (0 or -1), and ``vq_dot_b1*`` returns
    ``sum(a * s)``: the kernel adds ``sum(a)`` once per input column (:func:`acc_expr`), so a 1-bit MAC costs the
    same three instructions (load, extract, multiply-accumulate) as the others.
    """
    tag, b, per, word = fmt.tag, fmt.w_bits, fmt.per_word, fmt.c_word
    if b == 8:
        step = UNROLL_MACS
        dot_body = (
            "  uint32_t acc = 0;\n"
            f"  for (; n >= {step}; n -= {step}, a += {step}, w += {step}) {{\n"
            + "".join(f"    acc += (uint32_t)((int32_t)a[{k}] * (int32_t)w[{k}]);\n" for k in range(step))
            + "  }\n"
            "  for (int32_t k = 0; k < n; ++k) acc += (uint32_t)((int32_t)a[k] * (int32_t)w[k]);\n"
            "  return (int32_t)acc;\n")
        unpack_body = "  for (int32_t i = 0; i < n; ++i) out[i] = w[i];\n"
    else:
        def weight(pos: str) -> str:
            f = f"VQ_FIELD(v, {pos}, {b})"
            return f"(2 * {f} + 1)" if b == 1 else f

        def factor(v: str, pos: str) -> str:  # 1 bit: the dot product sums a * s, s in {0, -1} (see acc_expr)
            return f"VQ_FIELD({v}, {pos}, {b})"

        words = -(-UNROLL_MACS // per)  # words per iteration: at least UNROLL_MACS multiply-accumulates

        def block(nwords: int) -> str:
            loads = "".join(f"    const uint32_t v{j} = w[{j}];\n" for j in range(nwords))
            macs = "".join(f"    acc += (uint32_t)((int32_t)a[{j * per + k}] * {factor(f'v{j}', str(k * b))});\n"
                           for j in range(nwords) for k in range(per))
            return (f"  for (; n >= {nwords * per}; n -= {nwords * per}, a += {nwords * per}, w += {nwords}) {{\n"
                    + loads + macs + "  }\n")
        dot_body = (
            "  uint32_t acc = 0;\n"
            + block(words) + (block(1) if words > 1 else "") +
            "  if (n > 0) {  /* the last, partial word: n is a constant where the call is inlined */\n"
            "    const uint32_t v = *w;\n"
            + "".join(f"    if (n > {k}) acc += (uint32_t)((int32_t)a[{k}] * {factor('v', str(k * b))});\n"
                      for k in range(per - 1)) +
            "  }\n"
            "  return (int32_t)acc;\n")
        unpack_body = (
            "  for (int32_t i = 0; i < n; ++i) {\n"
            f"    const uint32_t v = w[i / {per}];\n"
            f"    out[i] = {weight(f'(i % {per}) * {b}')};\n"
            "  }\n")
    return (f"/* {b}-bit weights, {per} per {fmt.word_bits}-bit word */\n"
            f"VQ_INLINE int32_t vq_dot_{tag}(const {word} *w, const uint8_t *a, int32_t n) {{\n{dot_body}}}\n"
            f"VQ_INLINE void vq_unpack_{tag}(const {word} *w, int32_t *out, int32_t n) {{\n{unpack_body}}}\n")


@dataclass(frozen=True)
class Requantize:
    """Integer epilogue: ``clip(zero_point + ((acc' * mult + 2**(shift-1)) >> shift), lo, hi)`` per channel."""

    mult: np.ndarray
    shift: np.ndarray
    zero_point: int
    lo: int
    hi: int

    def __post_init__(self) -> None:
        mult = np.asarray(self.mult, dtype=np.int64).reshape(-1)
        shift = np.asarray(self.shift, dtype=np.int64).reshape(-1)
        if mult.shape != shift.shape:
            raise PlanError(f"requantization needs one multiplier and one shift per channel, got {mult.shape} and "
                            f"{shift.shape}")
        if ((mult < 0) | (mult >= 2**31)).any() or ((shift < 1) | (shift > 62)).any():
            raise PlanError("requantization multipliers must be in [0, 2**31) and shifts in 1..62: build them with "
                            "tvm_mp.quantize.scheme.requant_multiplier")
        if not (0 <= self.lo <= self.hi <= 255 and 0 <= self.zero_point <= 255):
            raise PlanError(f"output code range {self.lo}..{self.hi} / zero point {self.zero_point} must lie in 0..255")
        object.__setattr__(self, "mult", mult)
        object.__setattr__(self, "shift", shift)

    @property
    def channels(self) -> int:
        return int(self.mult.size)

    def apply(self, acc: np.ndarray) -> np.ndarray:
        return scheme.requantize(acc, 1, self.mult, self.shift, self.zero_point, self.lo, self.hi)


@dataclass(frozen=True)
class Dequantize:
    """Float epilogue: ``clamp(float32(acc') * scale, lo, hi)`` (``None``: no bound on that side)."""

    scale: np.ndarray
    lo: float | None = None
    hi: float | None = None

    def __post_init__(self) -> None:
        scale = np.asarray(self.scale, dtype=np.float32).reshape(-1)
        if not np.isfinite(scale).all():
            raise PlanError("dequantization scales must be finite float32 values")
        object.__setattr__(self, "scale", scale)

    @property
    def channels(self) -> int:
        return int(self.scale.size)

    def apply(self, acc: np.ndarray) -> np.ndarray:
        lo = -np.inf if self.lo is None else self.lo
        hi = np.inf if self.hi is None else self.hi
        return scheme.dequantize_output(acc, 1, self.scale, lo, hi)


@dataclass(frozen=True, eq=False)
class McuLayer:
    """One quantized layer as the MCU computes it.

    ``input_shape`` is NCHW (conv, with ``params``) or ``[N, K]`` (dense, ``params=None``); ``w_q`` int8 OIHW or
    ``[OC, K]`` within the ``w_bits`` range; ``zero_point`` the input codes' zero point (the padding value);
    ``bias_corr`` int32 per output channel.
    """

    name: str
    input_shape: tuple[int, ...]
    w_q: np.ndarray
    w_bits: int
    zero_point: int
    bias_corr: np.ndarray
    epilogue: Requantize | Dequantize
    params: ConvParams | None = None
    word_bits: int = 32
    fmt: VqFormat = field(init=False)

    def __post_init__(self) -> None:
        check_ident(self.name)
        object.__setattr__(self, "input_shape", tuple(int(v) for v in self.input_shape))
        object.__setattr__(self, "fmt", VqFormat(int(self.w_bits), int(self.word_bits)))
        w = np.asarray(self.w_q)
        object.__setattr__(self, "w_q", w.astype(np.int8))
        corr = np.asarray(self.bias_corr).reshape(-1)
        oc = w.shape[0]
        if corr.shape != (oc,) or self.epilogue.channels != oc:
            raise PlanError(f"layer {self.name}: bias_corr and the epilogue need {oc} channels, got {corr.size} and "
                            f"{self.epilogue.channels}")
        object.__setattr__(self, "bias_corr", corr.astype(np.int32))
        if not (0 <= self.zero_point <= 255):
            raise PlanError(f"layer {self.name}: input zero point {self.zero_point} is outside 0..255")
        if self.params is None:
            if len(self.input_shape) != 2 or w.ndim != 2 or w.shape[1] != self.input_shape[1]:
                raise PlanError(f"dense layer {self.name}: input {self.input_shape} does not fit weight {w.shape}")
        else:
            if len(self.input_shape) != 4 or w.ndim != 4:
                raise PlanError(f"conv layer {self.name}: needs an NCHW input and an OIHW weight")
            g = self.params.groups
            c = self.input_shape[1]
            if c % g or oc % g or w.shape[1] != c // g:
                raise PlanError(f"conv layer {self.name}: input channels {c}, weight {w.shape} and groups {g} do not "
                                "fit")
            oh, ow = self.params.output_hw(self.input_shape[2], self.input_shape[3], w.shape[2], w.shape[3])
            if oh < 1 or ow < 1:
                raise PlanError(f"conv layer {self.name}: output would be empty ({oh}x{ow})")
            if max(w.shape[2:]) > 255 or int(np.prod(w.shape[1:])) > MAX_COLUMN:
                raise UnsupportedError(f"conv layer {self.name}: kernel {w.shape[2:]} / im2col column of "
                                       f"{int(np.prod(w.shape[1:]))} codes exceeds the MCU kernels' limits "
                                       f"(255 taps a side, {MAX_COLUMN} codes)")
        self.fmt.pack(w)  # validates the weight range

    @property
    def op(self) -> str:
        if self.params is None:
            return "dense"
        oc, cg = self.w_q.shape[:2]
        return "depthwise_conv2d" if cg == 1 and oc == self.params.groups else "conv2d"

    @property
    def out_channels(self) -> int:
        return int(self.w_q.shape[0])

    @property
    def reduction(self) -> int:
        return int(np.prod(self.w_q.shape[1:]))

    @property
    def output_shape(self) -> tuple[int, ...]:
        if self.params is None:
            return (self.input_shape[0], self.out_channels)
        oh, ow = self.params.output_hw(self.input_shape[2], self.input_shape[3], *self.w_q.shape[2:])
        return (self.input_shape[0], self.out_channels, oh, ow)

    @property
    def integer_output(self) -> bool:
        return isinstance(self.epilogue, Requantize)

    @property
    def out_ctype(self) -> str:
        return "uint8_t" if self.integer_output else "float"

    @property
    def weight_bytes(self) -> int:
        return self.fmt.weight_bytes(self.out_channels, self.reduction)

    @property
    def param_bytes(self) -> int:
        """Bytes of the per-channel constants (bias_corr + multiplier + shift, or bias_corr + scale)."""
        per = 4 + 4 + 1 if self.integer_output else 4 + 4
        return self.out_channels * per

    @property
    def macs(self) -> int:
        return int(np.prod(self.output_shape)) * self.reduction

    def reference(self, codes: np.ndarray) -> np.ndarray:
        """The NumPy reference output for uint8 input ``codes`` (what the C kernel must reproduce)."""
        codes = np.asarray(codes, dtype=np.uint8).reshape(self.input_shape)
        if self.params is None:
            acc = reference.dense_acc(codes, self.w_q)
        else:
            acc = reference.conv2d_acc(codes, self.w_q, self.params, self.zero_point)
        shape = (1, -1) + (1,) * (acc.ndim - 2)
        acc = (acc.astype(np.int64) + self.bias_corr.reshape(shape)).astype(np.int32)
        return self.epilogue.apply(acc)

    # -- C -------------------------------------------------------------------------------------
    def c_source(self, fn: str) -> str:
        """Constant arrays and ``static void fn(const uint8_t *x, <out> *y)`` computing this layer."""
        check_ident(fn)
        fmt = self.fmt
        oc, r = self.out_channels, self.reduction
        packed = fmt.pack(self.w_q)
        parts = [f"/* {self.op} {self.name}: weight {tuple(self.w_q.shape)}, {fmt.w_bits}-bit in {fmt.word_bits}-bit "
                 f"words, {self.weight_bytes} bytes */\n",
                 c_array(f"{fn}_w", fmt.c_word, packed),
                 c_array(f"{fn}_corr", "int32_t", self.bias_corr)]
        epi = self.epilogue
        if isinstance(epi, Requantize):
            parts.append(c_array(f"{fn}_m", "int32_t", epi.mult))
            parts.append(c_array(f"{fn}_s", "uint8_t", epi.shift.astype(np.uint8)))
        else:
            parts.append(c_array(f"{fn}_scale", "float", epi.scale))
        row = fmt.row_elems(r)
        sig = f"static void VQ_NOINLINE {fn}(const uint8_t *restrict x, {self.out_ctype} *restrict y)"
        store = self._epilogue_c(fn)
        if self.op == "dense":
            n, k = self.input_shape
            body = (f"  for (int32_t n = 0; n < {n}; ++n) {{\n"
                    f"    const uint8_t *xn = x + n * {k};\n"
                    + (f"    const uint32_t asum = vq_sum_u8(xn, {k});\n" if fmt.w_bits == 1 else "") +
                    f"    for (int32_t oc = 0; oc < {oc}; ++oc) {{\n"
                    f"      const int32_t acc = {acc_expr(fmt, f'{fn}_w + oc * {row}', 'xn', k)};\n"
                    f"      {store('y[n * ' + str(oc) + ' + oc]')}\n"
                    "    }\n  }\n")
        else:
            tables, body = self._conv_body(fn, row, store)
            parts.append(tables)
        parts.append(f"{sig} {{\n{body}}}\n")
        return "".join(parts)

    def _epilogue_c(self, fn: str):
        epi = self.epilogue
        acc2 = f"(int32_t)((uint32_t)acc + (uint32_t){fn}_corr[oc])"
        if isinstance(epi, Requantize):
            def store(target: str) -> str:
                return (f"{target} = vq_requant({acc2}, {fn}_m[oc], {fn}_s[oc], {epi.zero_point}, {epi.lo}, "
                        f"{epi.hi});")
            return store
        clamps = ""
        if epi.lo is not None:
            clamps += f" v = (v > {c_float(epi.lo)}) ? v : {c_float(epi.lo)};"
        if epi.hi is not None:
            clamps += f" v = (v < {c_float(epi.hi)}) ? v : {c_float(epi.hi)};"

        def store(target: str) -> str:
            return f"{{ float v = (float){acc2} * {fn}_scale[oc];{clamps} {target} = v; }}"
        return store

    def _interior(self) -> tuple[int, int, int, int]:
        """Output rows [y0, y1) and columns [x0, x1) whose whole window lies inside the input (no padding)."""
        _, _, h, w = self.input_shape
        _, _, kh, kw = self.w_q.shape
        _, _, oh, ow = self.output_shape
        p = self.params

        def span(size, out, k, stride, dil, pad):
            inside = [o for o in range(out) if o * stride - pad >= 0 and o * stride - pad + (k - 1) * dil <= size - 1]
            return (inside[0], inside[-1] + 1) if inside else (0, 0)
        y0, y1 = span(h, oh, kh, p.strides[0], p.dilation[0], p.padding[0])
        x0, x1 = span(w, ow, kw, p.strides[1], p.dilation[1], p.padding[1])
        return y0, y1, x0, x1

    def _conv_body(self, fn: str, row: int, store) -> tuple[str, str]:
        """``(constant tables, function body)`` of a conv layer."""
        n, c, h, w = self.input_shape
        oc, cg, kh, kw = self.w_q.shape
        p = self.params
        g = p.groups
        kg = oc // g
        _, _, oh, ow = self.output_shape
        sh, sw = p.strides
        dh, dw = p.dilation
        pt, pl = p.padding[0], p.padding[1]
        zp = self.zero_point
        tag = self.fmt.tag
        y0, y1, x0, x1 = self._interior()
        inside = f"(oy >= {y0} && oy < {y1} && ox >= {x0} && ox < {x1})"
        head = (f"  for (int32_t n = 0; n < {n}; ++n) {{\n"
                f"    const uint8_t *xn = x + n * {c * h * w};\n"
                f"    {self.out_ctype} *yn = y + n * {oc * oh * ow};\n")
        # checked window walk: padding positions read the zero point
        checked_tap = (f"          for (int32_t ky = 0; ky < {kh}; ++ky) {{\n"
                       f"            const int32_t iy = oy * {sh} - {pt} + ky * {dh};\n"
                       f"            for (int32_t kx = 0; kx < {kw}; ++kx) {{\n"
                       f"              const int32_t ix = ox * {sw} - {pl} + kx * {dw};\n"
                       f"              const int32_t v = ((uint32_t)iy < {h}u && (uint32_t)ix < {w}u) ? "
                       f"(int32_t)xc[iy * {w} + ix] : {zp};\n"
                       "              TAP\n"
                       "            }\n"
                       "          }\n")
        if self.op == "depthwise_conv2d":
            kk = kh * kw
            fast = "".join(f"            acc += (uint32_t)((int32_t)xp[{ky * dh * w + kx * dw}] * "
                           f"wl[{ky * kw + kx}]);\n" for ky in range(kh) for kx in range(kw))
            # border pixels: only the taps inside the input, from per-row / per-column tables, on top of
            # zp * sum(w) (each inside tap adds (x - zp) * w: the same sum modulo 2**32)
            ky_lo, ky_hi = _tap_ranges(h, oh, kh, sh, dh, pt)
            kx_lo, kx_hi = _tap_ranges(w, ow, kw, sw, dw, pl)
            tables = (c_array(f"{fn}_kylo", "uint8_t", ky_lo) + c_array(f"{fn}_kyhi", "uint8_t", ky_hi)
                      + c_array(f"{fn}_kxlo", "uint8_t", kx_lo) + c_array(f"{fn}_kxhi", "uint8_t", kx_hi))
            return tables, head + (
                f"    for (int32_t oc = 0; oc < {oc}; ++oc) {{\n"
                f"      int32_t wl[{kk}];\n"
                f"      vq_unpack_{tag}({fn}_w + oc * {row}, wl, {kk});\n"
                "      uint32_t zpsum = 0;\n"
                f"      for (int32_t k = 0; k < {kk}; ++k) zpsum += (uint32_t)({zp} * wl[k]);\n"
                f"      const uint8_t *xc = xn + oc * {h * w};\n"
                f"      for (int32_t oy = 0; oy < {oh}; ++oy) {{\n"
                f"        for (int32_t ox = 0; ox < {ow}; ++ox) {{\n"
                "          uint32_t acc = 0;\n"
                f"          if {inside} {{\n"
                f"            const uint8_t *xp = xc + (oy * {sh} - {pt}) * {w} + ox * {sw} - {pl};\n"
                + fast +
                "          } else {\n"
                "            acc = zpsum;\n"
                f"            const int32_t kx0 = {fn}_kxlo[ox], kx1 = {fn}_kxhi[ox];\n"
                f"            for (int32_t ky = {fn}_kylo[oy]; ky < {fn}_kyhi[oy]; ++ky) {{\n"
                f"              const uint8_t *xr = xc + (oy * {sh} - {pt} + ky * {dh}) * {w} + ox * {sw} - {pl};\n"
                f"              for (int32_t kx = kx0; kx < kx1; ++kx)\n"
                f"                acc += (uint32_t)(((int32_t)xr[kx * {dw}] - {zp}) * wl[ky * {kw} + kx]);\n"
                "            }\n"
                "          }\n"
                f"          {store(f'yn[(oc * {oh} + oy) * {ow} + ox]')}\n"
                "        }\n      }\n    }\n  }\n")
        r = cg * kh * kw
        return "", head + (
            f"    uint8_t col[{r}] __attribute__((aligned(4)));\n"
            f"    for (int32_t g = 0; g < {g}; ++g) {{\n"
            f"      for (int32_t oy = 0; oy < {oh}; ++oy) {{\n"
            f"        for (int32_t ox = 0; ox < {ow}; ++ox) {{\n"
            "          uint8_t *p = col;\n"
            f"          if {inside} {{\n"
            f"            const uint8_t *xp = xn + g * {cg * h * w} + (oy * {sh} - {pt}) * {w} + ox * {sw} - {pl};\n"
            f"            for (int32_t c = 0; c < {cg}; ++c, xp += {h * w}) {{\n"
            f"              for (int32_t ky = 0; ky < {kh}; ++ky) {{\n"
            f"                for (int32_t kx = 0; kx < {kw}; ++kx) *p++ = xp[ky * {dh * w} + kx * {dw}];\n"
            "              }\n"
            "            }\n"
            "          } else {\n"
            f"            for (int32_t c = 0; c < {cg}; ++c) {{\n"
            f"              const uint8_t *xc = xn + (g * {cg} + c) * {h * w};\n"
            + checked_tap.replace("TAP", "*p++ = (uint8_t)v;") +
            "            }\n"
            "          }\n"
            + (f"          const uint32_t asum = vq_sum_u8(col, {r});\n" if self.fmt.w_bits == 1 else "") +
            f"          for (int32_t k = 0; k < {kg}; ++k) {{\n"
            f"            const int32_t oc = g * {kg} + k;\n"
            f"            const int32_t acc = {acc_expr(self.fmt, f'{fn}_w + oc * {row}', 'col', r)};\n"
            f"            {store(f'yn[(oc * {oh} + oy) * {ow} + ox]')}\n"
            "          }\n"
            "        }\n      }\n    }\n  }\n")


def acc_expr(fmt: VqFormat, row: str, codes: str, n: int) -> str:
    """C expression of ``sum(codes * w)`` over a packed row (1 bit: ``asum + 2 * sum(codes * s)``, wrapping)."""
    dot = f"vq_dot_{fmt.tag}({row}, {codes}, {n})"
    return f"(int32_t)(asum + 2u * (uint32_t){dot})" if fmt.w_bits == 1 else dot


def _tap_ranges(size: int, out: int, k: int, stride: int, dil: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output position, the first and one-past-last kernel tap that reads inside the input."""
    lo, hi = [], []
    for o in range(out):
        taps = [t for t in range(k) if 0 <= o * stride - pad + t * dil < size]
        lo.append(taps[0] if taps else 0)
        hi.append(taps[-1] + 1 if taps else 0)
    return np.array(lo, dtype=np.uint8), np.array(hi, dtype=np.uint8)


def layer_formats(layers) -> list[VqFormat]:
    """The distinct storage formats of ``layers`` (each needs its helpers once)."""
    seen: dict[str, VqFormat] = {}
    for layer in layers:
        seen.setdefault(layer.fmt.tag, layer.fmt)
    return list(seen.values())
