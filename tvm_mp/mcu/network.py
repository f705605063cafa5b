"""A whole quantized network as C for a Cortex-M: the layer sequence of a plan, computed like the NumPy reference.

:func:`emit_network` walks ``main`` of the quantized module (what ``tvm_mp.compile`` builds:
``CompiledModel.quantized_module``) with the rules of :mod:`tvm_mp.quantize.graph`, exactly as
:class:`tvm_mp.quantize.interpreter.Interpreter` does:

* a layer whose input is float first quantizes it (``rint(x * inv_scale)``, clip, ``+ zero_point``, in float32);
* an **integer edge** requantizes straight into the consumer's codes (clamped by the ReLU/Clip of the chain), and
  MaxPool / Reshape in the chain run on the uint8 codes;
* a **float edge** dequantizes (``float32(acc') * scale``, clamped by the fused ReLU/Clip) and the ops after it
  run in float32, each op one IEEE operation per element in NumPy's order: ReLU/Clip (``maximum``/``minimum``
  semantics), MaxPool, AvgPool (sequential sum over the window, then one division), global mean (NumPy's pairwise
  summation, reproduced), elementwise add; Reshape/Squeeze/ExpandDims are free (same memory).

Every step is one ``noinline`` C function (``vq_step_<k>_<what>``), so the ELF gives its code size and the
instruction trace its instruction count. Intermediate tensors live in one static arena; a first-fit allocator over
tensor lifetimes places them (aliases share storage).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax

from .. import _tvm
from ..errors import PlanError, UnsupportedError
from ..layers import dataflow_bindings, layer_name_of
from ..layers import op_name as _op
from ..precision import INTEGER_KINDS
from ..quantize import scheme
from ..quantize.graph import analyze_outputs, integer_bounds
from ..quantize.qlayer import read_layer
from .cgen import c_float, c_ident
from .kernels import PRELUDE, Dequantize, McuLayer, Requantize, format_helpers, layer_formats

ALIAS_OPS = ("relax.reshape", "relax.squeeze", "relax.expand_dims")
FLOAT_OPS = ("relax.nn.relu", "relax.clip", "relax.nn.max_pool2d", "relax.nn.avg_pool2d", "relax.mean",
             "relax.nn.adaptive_avg_pool2d", "relax.add") + ALIAS_OPS


@dataclass(frozen=True)
class Tensor:
    """A tensor of the network: ``ctype`` ``uint8_t`` (codes) or ``float``; ``storage`` shared by aliases."""

    tid: int
    shape: tuple[int, ...]
    ctype: str
    storage: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.size * (1 if self.ctype == "uint8_t" else 4)


@dataclass(frozen=True, eq=False)
class Step:
    """One C function of the network: reads ``inputs``, writes ``output`` (tensor ids)."""

    fn: str
    kind: str
    inputs: tuple[int, ...]
    output: int
    source: str
    layer: McuLayer | None = None


@dataclass(frozen=True, eq=False)
class McuNetwork:
    """The emitted network: steps, tensors, arena placement; :meth:`sources` gives the C files."""

    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    output_ctype: str
    steps: tuple[Step, ...]
    tensors: dict
    input_tid: int
    output_tid: int
    offsets: dict = field(default_factory=dict)  # storage -> byte offset in the arena
    arena_bytes: int = 0

    @property
    def layers(self) -> tuple[McuLayer, ...]:
        return tuple(s.layer for s in self.steps if s.layer is not None)

    @property
    def weight_bytes(self) -> int:
        return sum(layer.weight_bytes for layer in self.layers)

    def step_of_layer(self, name: str) -> Step:
        for s in self.steps:
            if s.layer is not None and s.layer.name == name:
                return s
        raise KeyError(name)

    def _ptr(self, tid: int, const: bool) -> str:
        t = self.tensors[tid]
        if t.storage == self.tensors[self.input_tid].storage:
            return "in"
        q = "const " if const else ""
        return f"({q}{t.ctype} *)(vq_arena + {self.offsets[t.storage]})"

    def declaration(self) -> str:
        return f"void net_run(const float *in, {self.output_ctype} *out);\n"

    def c_source(self) -> str:
        """``net.c``: helpers, constant data, one function per step and ``net_run(in, out)``."""
        parts = [PRELUDE, "#include <string.h>\n"]
        parts += [format_helpers(f) for f in layer_formats(self.layers)]
        parts.append(_PAIRWISE_C)
        parts.append(f"static uint8_t vq_arena[{max(self.arena_bytes, 4)}] __attribute__((aligned(8)));\n")
        parts += [s.source for s in self.steps]
        calls = []
        for s in self.steps:
            args = [self._ptr(t, True) for t in s.inputs] + [self._ptr(s.output, False)]
            calls.append(f"  {s.fn}({', '.join(args)});\n")
        out = self.tensors[self.output_tid]
        copy = f"  memcpy(out, {self._ptr(self.output_tid, True)}, {out.nbytes});\n"
        parts.append(f"void net_run(const float *in, {self.output_ctype} *out) {{\n" + "".join(calls) + copy + "}\n")
        return "".join(parts)

    def sources(self) -> dict[str, str]:
        return {"net.c": self.c_source()}


# numpy's pairwise float32 summation (the inner loop of np.add.reduce over a contiguous axis), to reproduce
# x.sum(axis=..., dtype=float32) bit for bit: blocks of 8 partial sums up to 128 elements, halves above.
_PAIRWISE_C = r"""static float vq_pairwise_sum(const float *a, int32_t n) {
  if (n < 8) {
    float res = 0.0f;
    for (int32_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    float r[8];
    int32_t i;
    for (i = 0; i < 8; ++i) r[i] = a[i];
    for (i = 8; i < n - (n % 8); i += 8)
      for (int32_t j = 0; j < 8; ++j) r[j] += a[i + j];
    float res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  int32_t n2 = n / 2;
  n2 -= n2 % 8;
  return vq_pairwise_sum(a, n2) + vq_pairwise_sum(a + n2, n - n2);
}
"""


class _Builder:
    def __init__(self, word_bits: int):
        self.word_bits = word_bits
        self.tensors: dict[int, Tensor] = {}
        self.steps: list[Step] = []

    def tensor(self, shape, ctype, alias_of: int | None = None) -> int:
        tid = len(self.tensors)
        storage = self.tensors[alias_of].storage if alias_of is not None else tid
        self.tensors[tid] = Tensor(tid, tuple(int(v) for v in shape), ctype, storage)
        return tid

    def fn_name(self, what: str) -> str:
        return f"vq_step_{len(self.steps)}_{c_ident(what)}"

    def add(self, kind: str, what: str, inputs, out_shape, out_ctype, make_source, layer=None) -> int:
        fn = self.fn_name(what)
        out = self.tensor(out_shape, out_ctype)
        self.steps.append(Step(fn, kind, tuple(inputs), out, make_source(fn), layer))
        return out

    # -- steps -----------------------------------------------------------------------------------
    def quantize(self, src: int, act: scheme.ActQuant) -> int:
        t = self.tensors[src]
        lo, hi = float(-act.zero_point), float(act.qmax - act.zero_point)

        def source(fn):
            return (f"static void VQ_NOINLINE {fn}(const float *restrict x, uint8_t *restrict y) {{\n"
                    f"  for (int32_t i = 0; i < {t.size}; ++i) {{\n"
                    f"    float v = __builtin_rintf(x[i] * {c_float(act.inv_scale)});\n"
                    f"    v = (v > {c_float(lo)}) ? v : {c_float(lo)};\n"
                    f"    v = (v < {c_float(hi)}) ? v : {c_float(hi)};\n"
                    f"    y[i] = (uint8_t)((int32_t)v + {act.zero_point});\n"
                    "  }\n}\n")
        return self.add("quantize", "quantize", [src], t.shape, "uint8_t", source)

    def layer(self, src: int, layer: McuLayer) -> int:
        return self.add(layer.op, layer.name, [src], layer.output_shape, layer.out_ctype,
                        lambda fn: layer.c_source(fn), layer)

    def elementwise(self, src: int, what: str, lo: float | None, hi: float | None) -> int:
        t = self.tensors[src]
        clamps = ""
        if lo is not None:
            clamps += f" v = (v > {c_float(lo)}) ? v : {c_float(lo)};"
        if hi is not None:
            clamps += f" v = (v < {c_float(hi)}) ? v : {c_float(hi)};"

        def source(fn):
            return (f"static void VQ_NOINLINE {fn}(const float *restrict x, float *restrict y) {{\n"
                    f"  for (int32_t i = 0; i < {t.size}; ++i) {{ float v = x[i];{clamps} y[i] = v; }}\n}}\n")
        return self.add(what, what, [src], t.shape, "float", source)

    def add_tensors(self, a: int, b: int) -> int:
        ta, tb = self.tensors[a], self.tensors[b]
        if ta.shape != tb.shape or ta.ctype != "float" or tb.ctype != "float":
            raise UnsupportedError(f"the MCU emitter adds only float tensors of one shape, got {ta.shape} and "
                                   f"{tb.shape}")

        def source(fn):
            return (f"static void VQ_NOINLINE {fn}(const float *restrict a, const float *restrict b, "
                    f"float *restrict y) {{\n"
                    f"  for (int32_t i = 0; i < {ta.size}; ++i) y[i] = a[i] + b[i];\n}}\n")
        return self.add("add", "add", [a, b], ta.shape, "float", source)

    def pool(self, src: int, attrs, mode: str) -> int:
        t = self.tensors[src]
        if len(t.shape) != 4 or str(attrs.layout) != "NCHW":
            raise UnsupportedError(f"the MCU emitter pools NCHW tensors only, got layout {attrs.layout}")
        n, c, h, w = t.shape
        kh, kw = (int(v) for v in attrs.pool_size)
        sh, sw = (int(v) for v in attrs.strides)
        dh, dw = (int(v) for v in attrs.dilation)
        pt, pl, pb, pr = (int(v) for v in attrs.padding)
        hp, wp = h + pt + pb, w + pl + pr
        rnd = (lambda v: -(-v // sh)) if bool(attrs.ceil_mode) else (lambda v: v // sh)
        rndw = (lambda v: -(-v // sw)) if bool(attrs.ceil_mode) else (lambda v: v // sw)
        oh = rnd(hp - dh * (kh - 1) - 1) + 1
        ow = rndw(wp - dw * (kw - 1) - 1) + 1
        ct = t.ctype
        head = (f"  for (int32_t p = 0; p < {n * c}; ++p) {{\n"
                f"    const {ct} *xc = x + p * {h * w};\n"
                f"    {ct} *yc = y + p * {oh * ow};\n"
                f"    for (int32_t oy = 0; oy < {oh}; ++oy) {{\n"
                f"      for (int32_t ox = 0; ox < {ow}; ++ox) {{\n")
        pos = (f"          const int32_t iy = oy * {sh} - {pt} + (k / {kw}) * {dh};\n"
               f"          const int32_t ix = ox * {sw} - {pl} + (k % {kw}) * {dw};\n"
               f"          const int valid = (uint32_t)iy < {h}u && (uint32_t)ix < {w}u;\n")
        if mode == "max":
            pad = "0" if ct == "uint8_t" else "(-__builtin_inff())"
            body = (f"        {ct} m = 0;\n"
                    f"        for (int32_t k = 0; k < {kh * kw}; ++k) {{\n" + pos +
                    f"          const {ct} v = valid ? xc[iy * {w} + ix] : {pad};\n"
                    "          m = (k == 0) ? v : ((m > v) ? m : v);\n"
                    "        }\n"
                    "        yc[oy * " + str(ow) + " + ox] = m;\n")
        else:
            include = bool(attrs.count_include_pad)
            body = ("        float total = 0.0f;\n        int32_t count = 0;\n"
                    f"        for (int32_t k = 0; k < {kh * kw}; ++k) {{\n" + pos +
                    f"          total = total + (valid ? xc[iy * {w} + ix] : 0.0f);\n"
                    "          count += valid;\n"
                    "        }\n"
                    + (f"        yc[oy * {ow} + ox] = total / {c_float(kh * kw)};\n" if include else
                       f"        yc[oy * {ow} + ox] = total / (float)count;\n"))

        def source(fn):
            return (f"static void VQ_NOINLINE {fn}(const {ct} *restrict x, {ct} *restrict y) {{\n" + head + body +
                    "      }\n    }\n  }\n}\n")
        return self.add(f"{mode}_pool2d", f"{mode}pool", [src], (n, c, oh, ow), ct, source)

    def mean(self, src: int, axes, keepdims: bool) -> int:
        t = self.tensors[src]
        nd = len(t.shape)
        axes = tuple(range(nd)) if axes is None else tuple(sorted(int(a) % nd for a in axes))
        if axes != tuple(range(nd - len(axes), nd)) or t.ctype != "float":
            raise UnsupportedError(f"the MCU emitter averages float tensors over trailing axes only, got axes {axes} "
                                   f"of a {nd}-d tensor")
        inner = int(np.prod([t.shape[a] for a in axes]))
        outer = t.size // inner
        shape = tuple(1 if a in axes else s for a, s in enumerate(t.shape)) if keepdims else t.shape[: nd - len(axes)]

        def source(fn):
            return (f"static void VQ_NOINLINE {fn}(const float *restrict x, float *restrict y) {{\n"
                    f"  for (int32_t i = 0; i < {outer}; ++i)\n"
                    f"    y[i] = (0.0f + vq_pairwise_sum(x + i * {inner}, {inner})) / {c_float(inner)};\n}}\n")
        return self.add("mean", "mean", [src], shape, "float", source)


def _layer_of(mod, call, word_bits: int, in_shape, outputs, var, bindings) -> tuple[McuLayer, object]:
    func = mod[call.op]
    layer = read_layer(func)
    if layer.precision.kind not in INTEGER_KINDS:
        raise UnsupportedError(f"layer {layer.name} uses the {layer.precision.kind} format: the MCU kernels compute "
                               "integer layers only")
    act = layer.require_act()
    out = outputs[var]
    if out.integer:
        consumer = read_layer(mod[bindings[out.consumer].value.op])
        cact = consumer.require_act()
        mult, shift = scheme.requant_multiplier(layer.out_scale().astype(np.float64) / cact.scale)
        lo, hi = integer_bounds(out.chain, cact)
        epi = Requantize(mult, shift, cact.zero_point, lo, hi)
    else:
        epi = Dequantize(layer.out_scale(), out.float_lo, out.float_hi)
    params = None if layer.info.op == "dense" else layer.info.params
    mcu = McuLayer(c_ident(layer.name), tuple(in_shape), layer.w_q, layer.precision.w_bits, act.zero_point,
                   layer.bias_corr(), epi, params, word_bits)
    return mcu, act


def emit_network(quantized_module, word_bits: int = 32) -> McuNetwork:
    """C for the whole quantized network (``CompiledModel`` or its ``quantized_module``); see the module docstring.

    ``word_bits`` (8, 16 or 32): the word size every layer's weights are packed into.
    """
    mod = getattr(quantized_module, "quantized_module", quantized_module)
    if not isinstance(mod, tvm.IRModule):
        raise PlanError("emit_network needs the quantized module of tvm_mp.compile (CompiledModel.quantized_module)")
    func = mod["main"]
    if len(func.params) != 1:
        raise UnsupportedError(f"the MCU emitter handles one-input networks, this one has {len(func.params)} inputs")
    if _tvm.expr_dtype(func.params[0]) != "float32":
        raise UnsupportedError("the MCU emitter needs a float32 network input")
    b = _Builder(word_bits)
    env = {func.params[0]: b.tensor(_tvm.expr_shape(func.params[0]), "float")}
    input_tid = env[func.params[0]]
    outputs = analyze_outputs(func, mod)
    taken = {}
    for out in outputs.values():
        for binding in out.chain:
            taken[binding.var] = out
    bindings = {bd.var: bd for bd in dataflow_bindings(func)}
    for bd in dataflow_bindings(func):
        value = bd.value
        if bd.var in taken:
            src = env[value.args[0]]
            op = _op(value)
            if taken[bd.var].integer and op == "relax.nn.max_pool2d":
                env[bd.var] = b.pool(src, value.attrs, "max")
            elif taken[bd.var].integer and op == "relax.reshape":
                env[bd.var] = b.tensor(_tvm.expr_shape(bd.var), b.tensors[src].ctype, alias_of=src)
            else:  # ReLU/Clip folded into the producer's clamp
                env[bd.var] = src
            continue
        name = layer_name_of(value, mod)
        if name is not None:
            src = env[value.args[0]]
            layer, act = _layer_of(mod, value, word_bits, b.tensors[src].shape, outputs, bd.var, bindings)
            if b.tensors[src].ctype == "float":
                src = b.quantize(src, act)
            env[bd.var] = b.layer(src, layer)
            continue
        env[bd.var] = _float_op(b, value, env, bd.var)
    out_var = func.body.body
    if out_var not in env:
        raise UnsupportedError("the network's output is not a computed tensor")
    output_tid = env[out_var]
    offsets, arena = _place(b, input_tid, output_tid)
    out_t = b.tensors[output_tid]
    return McuNetwork(b.tensors[input_tid].shape, out_t.shape, out_t.ctype, tuple(b.steps), dict(b.tensors),
                      input_tid, output_tid, offsets, arena)


def _float_op(b: _Builder, call, env, var) -> int:
    op = _op(call)
    if not isinstance(call, relax.Call) or op not in FLOAT_OPS:
        what = op or type(call).__name__
        raise UnsupportedError(f"the MCU emitter does not implement {what} (it handles quantized conv2d/dense and "
                               f"{', '.join(o.split('.')[-1] for o in FLOAT_OPS)}); quantize every layer of the plan")
    args = []
    for a in call.args:
        if isinstance(a, relax.Var):
            if a not in env:
                raise UnsupportedError(f"{op} reads a value the MCU emitter did not compute")
            args.append(env[a])
        elif _tvm.is_const(a):
            raise UnsupportedError(f"{op} with a constant operand is not supported by the MCU emitter")
    src = args[0]
    if b.tensors[src].ctype != "float":
        raise UnsupportedError(f"{op} on integer codes outside a layer chain is not supported by the MCU emitter")
    if op in ALIAS_OPS:
        return b.tensor(_tvm.expr_shape(var), "float", alias_of=src)
    if op == "relax.nn.relu":
        return b.elementwise(src, "relu", 0.0, None)
    if op == "relax.clip":
        return b.elementwise(src, "clip", float(_tvm.prim_value(call.args[1])), float(_tvm.prim_value(call.args[2])))
    if op == "relax.add":
        if len(args) != 2:
            raise UnsupportedError("the MCU emitter adds two computed tensors only")
        return b.add_tensors(args[0], args[1])
    if op == "relax.nn.max_pool2d":
        return b.pool(src, call.attrs, "max")
    if op == "relax.nn.avg_pool2d":
        return b.pool(src, call.attrs, "avg")
    if op == "relax.nn.adaptive_avg_pool2d":
        size = call.attrs.output_size
        if size is not None and tuple(int(v) for v in size) != (1, 1):
            raise UnsupportedError("the MCU emitter supports adaptive_avg_pool2d to 1x1 only")
        return b.mean(src, [2, 3], True)
    axis = call.attrs.axis
    return b.mean(src, None if axis is None else [int(v) for v in axis], bool(call.attrs.keepdims))


def _place(b: _Builder, input_tid: int, output_tid: int) -> tuple[dict, int]:
    """First-fit arena offsets over storage lifetimes (step index of the first write to the last read)."""
    first, last, size = {}, {}, {}
    for k, step in enumerate(b.steps):
        for tid in step.inputs:
            s = b.tensors[tid].storage
            last[s] = max(last.get(s, k), k)
        s = b.tensors[step.output].storage
        first.setdefault(s, k)
        last[s] = max(last.get(s, k), k)
        size[s] = max(size.get(s, 0), b.tensors[step.output].nbytes)
    out_s = b.tensors[output_tid].storage
    last[out_s] = len(b.steps)
    in_s = b.tensors[input_tid].storage
    placed: list[tuple[int, int, int, int]] = []  # (offset, bytes, first, last)
    offsets = {}
    for s in sorted(first, key=lambda v: (first[v], -size[v])):
        if s == in_s:
            continue
        need = -(-size[s] // 8) * 8
        clash = sorted((o, o + n) for o, n, f, l in placed if not (l < first[s] or last[s] < f))
        off = 0
        for lo, hi in clash:
            if off + need <= lo:
                break
            off = max(off, hi)
        offsets[s] = off
        placed.append((off, need, first[s], last[s]))
    arena = max((o + n for o, n, _, _ in placed), default=0)
    return offsets, arena
