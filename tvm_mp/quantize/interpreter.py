"""NumPy interpreter of a Relax ``main``: the fp32 network, or the quantized network of a plan.

No TVM compilation is involved: the interpreter walks the IR and computes each op in NumPy. It serves

* calibration (float mode, recording each layer's input), and
* the reference of the quantized network (layer functions computed with the integer arithmetic of
  :mod:`tvm_mp.quantize.scheme`, outputs kept integer or dequantized by the rule in :mod:`tvm_mp.quantize.graph`),
  which the compiled model must match exactly on its integer part. Float-format layers compute as
  :mod:`tvm_mp.quantize.floats` defines them, clustered layers by the table look-ups of
  :mod:`tvm_mp.quantize.clustering`; both are matched bit for bit too.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import tvm
from scipy import special
from tvm import relax

from .. import _tvm
from ..errors import InputValueError, UnsupportedError
from ..layers import LAYER_ATTR, dataflow_bindings
from ..layers import op_name as _op
from . import clustering, fastconv, floats, reference, scheme, tvm_ops
from .graph import analyze_outputs, integer_bounds, layer_name_of
from .qlayer import QuantLayer, read_layer


def _pool_windows(x: np.ndarray, attrs, pad_value: float):
    kh, kw = (int(v) for v in attrs.pool_size)
    sh, sw = (int(v) for v in attrs.strides)
    dh, dw = (int(v) for v in attrs.dilation)
    pt, pl, pb, pr = (int(v) for v in attrs.padding)
    n, c, h, w = x.shape
    hp, wp = h + pt + pb, w + pl + pr
    ceil = bool(attrs.ceil_mode)
    rnd = math.ceil if ceil else math.floor
    oh = int(rnd((hp - dh * (kh - 1) - 1) / sh)) + 1
    ow = int(rnd((wp - dw * (kw - 1) - 1) / sw)) + 1
    extra_h = max(0, (oh - 1) * sh + dh * (kh - 1) + 1 - hp)
    extra_w = max(0, (ow - 1) * sw + dw * (kw - 1) + 1 - wp)
    padded = np.full((n, c, hp + extra_h, wp + extra_w), pad_value, dtype=x.dtype)
    padded[:, :, pt : pt + h, pl : pl + w] = x
    valid = np.zeros(padded.shape[2:], dtype=bool)
    valid[pt : pt + h, pl : pl + w] = True
    wins, masks = [], []
    for ky in range(kh):
        for kx in range(kw):
            ys = slice(ky * dh, ky * dh + sh * (oh - 1) + 1, sh)
            xs = slice(kx * dw, kx * dw + sw * (ow - 1) + 1, sw)
            wins.append(padded[:, :, ys, xs])
            masks.append(valid[ys, xs])
    return wins, masks


def _max_pool(x, attrs):
    pad = np.iinfo(x.dtype).min if np.issubdtype(x.dtype, np.integer) else -np.inf
    wins, _ = _pool_windows(x, attrs, pad)
    out = wins[0]
    for win in wins[1:]:
        out = np.maximum(out, win)
    return out


def _avg_pool(x, attrs):
    wins, masks = _pool_windows(x, attrs, 0.0)
    total = np.zeros_like(wins[0])
    for win in wins:  # sequential order, as the compiled loop adds
        total = total + win
    if bool(attrs.count_include_pad):
        count = np.float32(len(wins))
    else:
        count = np.sum(np.stack(masks), axis=0).astype(np.float32)
    return total / count


def _mean(x, axes, keepdims):
    if axes is None:
        axes = tuple(range(x.ndim))
    axes = tuple(int(a) % x.ndim for a in axes)
    total = x.sum(axis=axes, keepdims=keepdims, dtype=np.float32)
    return (total / np.float32(np.prod([x.shape[a] for a in axes]))).astype(np.float32)


def _prim(v):
    return _tvm.prim_value(v)


def _shape(expr) -> tuple[int, ...]:
    return tuple(int(v) for v in expr.values)


def _conv2d(x, w, attrs):
    from ..workload import ConvParams

    params = ConvParams(tuple(attrs.strides), tuple(attrs.padding), tuple(attrs.dilation), int(attrs.groups))
    return fastconv.conv2d(x, w, params, 0.0, np.float32)


def _reshape(x, shape):
    """Reshape; a batch larger than the compiled one keeps its leading dimension (calibration batches)."""
    if x.size != int(np.prod(shape)) and shape and x.shape[0] != shape[0]:
        shape = (x.shape[0],) + tuple(shape[1:])
    return x.reshape(shape)


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


OPS: dict[str, Callable] = {
    "relax.nn.conv2d": lambda c, a: _conv2d(a[0], a[1], c.attrs),
    "relax.matmul": lambda c, a: np.matmul(a[0], a[1]).astype(np.float32),
    "relax.add": lambda c, a: np.add(a[0], a[1]),
    "relax.subtract": lambda c, a: np.subtract(a[0], a[1]),
    "relax.multiply": lambda c, a: np.multiply(a[0], a[1]),
    "relax.divide": lambda c, a: np.divide(a[0], a[1]),
    "relax.maximum": lambda c, a: np.maximum(a[0], a[1]),
    "relax.minimum": lambda c, a: np.minimum(a[0], a[1]),
    "relax.nn.relu": lambda c, a: np.maximum(a[0], np.zeros((), a[0].dtype)),
    "relax.clip": lambda c, a: np.minimum(np.maximum(a[0], np.float32(_prim(c.args[1]))), np.float32(_prim(c.args[2]))),
    "relax.sigmoid": lambda c, a: special.expit(a[0]).astype(np.float32),  # 1 / (1 + e^-x) without overflow
    "relax.tanh": lambda c, a: np.tanh(a[0]),
    "relax.exp": lambda c, a: np.exp(a[0]),
    "relax.sqrt": lambda c, a: np.sqrt(a[0]),
    "relax.nn.softmax": lambda c, a: _softmax(a[0], int(c.attrs.axis)),
    "relax.nn.max_pool2d": lambda c, a: _max_pool(a[0], c.attrs),
    "relax.nn.avg_pool2d": lambda c, a: _avg_pool(a[0], c.attrs),
    "relax.mean": lambda c, a: _mean(a[0], None if c.attrs.axis is None else list(c.attrs.axis),
                                     bool(c.attrs.keepdims)),
    "relax.reshape": lambda c, a: _reshape(a[0], _shape(c.args[1])),
    "relax.permute_dims": lambda c, a: np.transpose(a[0], None if c.attrs.axes is None
                                                    else [int(v) for v in c.attrs.axes]),
    "relax.squeeze": lambda c, a: np.squeeze(a[0], None if c.attrs.axis is None
                                             else tuple(int(v) for v in c.attrs.axis)),
    "relax.expand_dims": lambda c, a: np.expand_dims(a[0], tuple(int(v) for v in c.attrs.axis)),
    "relax.concat": lambda c, a: np.concatenate(a[0], axis=int(c.attrs.axis)),
    "relax.astype": lambda c, a: a[0].astype(str(c.attrs.dtype)),
    # index arithmetic the ONNX importer emits around integer inputs (Gather's negative-index fix-up)
    "relax.shape_of": lambda c, a: tuple(int(d) for d in np.shape(a[0])),
    "relax.shape_to_tensor": lambda c, a: np.asarray(a[0], dtype=np.int64),
    "relax.less": lambda c, a: np.less(a[0], a[1]),
    "relax.less_equal": lambda c, a: np.less_equal(a[0], a[1]),
    "relax.greater": lambda c, a: np.greater(a[0], a[1]),
    "relax.greater_equal": lambda c, a: np.greater_equal(a[0], a[1]),
    "relax.equal": lambda c, a: np.equal(a[0], a[1]),
    "relax.not_equal": lambda c, a: np.not_equal(a[0], a[1]),
    "relax.where": lambda c, a: np.where(a[0], a[1], a[2]),
    "relax.take": lambda c, a: _take(a[0], a[1], c.attrs),
}


#: Ops whose NumPy rule computes in float32: operands of another dtype (float16, ...) go through TVM instead, so
#: the reference computes them in their own dtype, as the build does.
FLOAT32_RULES = ("relax.nn.conv2d", "relax.matmul")


def _take(x, indices, attrs):
    """``R.take``: a gather, exact. Mode "fast" has no bounds check in TVM (it reads past the buffer), so an index
    out of range is an error here too (:func:`index_guard` refuses the inputs that lead to one first)."""
    axis = None if attrs.axis is None else int(attrs.axis)
    mode = str(attrs.mode)
    indices = np.asarray(indices)
    if mode == "fast":
        size = x.size if axis is None else x.shape[axis]
        if indices.size and (indices.min() < 0 or indices.max() >= size):
            raise InputValueError(f"an index reaches {int(indices.min() if indices.min() < 0 else indices.max())} "
                                  f"in a take (ONNX Gather) over {size} elements; give indices within range")
    return np.take(x, indices, axis=axis, mode="wrap" if mode == "wrap" else "clip")


def _adaptive_avg(c, a):
    x = a[0]
    out = c.attrs.output_size
    if out is not None and tuple(int(v) for v in out) != (1, 1):
        return tvm_ops.run_op(c, a)
    return _mean(x, [2, 3], True)


OPS["relax.nn.adaptive_avg_pool2d"] = _adaptive_avg


class Interpreter:
    """Evaluate ``mod["main"]`` in NumPy.

    ``quantized=False``: every layer in float32 (layer functions too); ``on_layer_input(name, x)`` sees each
    quantizable layer's float input (calibration).
    ``quantized=True``: layer functions of AnnotatePrecision compute in integers (the reference).
    """

    def __init__(self, mod: tvm.IRModule, quantized: bool = False,
                 on_layer_input: Callable[[str, np.ndarray], None] | None = None):
        self.mod = mod
        self.quantized = quantized
        self.on_layer_input = on_layer_input
        self._layers: dict[str, QuantLayer] = {}
        self.fallback_ops: set[str] = set()  # ops this interpreter computed through TVM
        self._polymorphic: bool | None = None
        self._consts: dict = {}

    def _layer(self, gv) -> QuantLayer:
        func = self.mod[gv]
        name = str(func.attrs[LAYER_ATTR])
        if name not in self._layers:
            self._layers[name] = read_layer(func)
        return self._layers[name]

    def run(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """``main`` on ``inputs``. A batch larger than the IR's runs as one batch when every value keeps the batch
        on axis 0 (:func:`batch_polymorphic`), else sample-block by sample-block (``on_layer_input`` still sees
        each layer's input of the whole batch, once)."""
        arrays = [np.asarray(x) for x in inputs]
        blocks = sample_blocks(self.mod, arrays)
        if blocks is not None:
            if self._polymorphic is None:
                self._polymorphic = batch_polymorphic(self.mod)
            if self._polymorphic:
                blocks = None
        if blocks is None:
            return self._run_function(self.mod["main"], arrays, top=True)
        outer = self.on_layer_input
        seen: dict[str, list[np.ndarray]] = {}
        if outer is not None:
            self.on_layer_input = lambda name, x: seen.setdefault(name, []).append(np.asarray(x))
        try:
            outs = [self._run_function(self.mod["main"], block, top=True) for block in blocks]
        finally:
            self.on_layer_input = outer
        if outer is not None:
            for name, xs in seen.items():
                outer(name, np.concatenate(xs, axis=0))
        return concat_batches(outs)

    def _run_function(self, func: relax.Function, args: list, top: bool = False):
        env = {p: np.asarray(v) for p, v in zip(func.params, args)}
        outputs = analyze_outputs(func, self.mod) if (top and self.quantized) else {}
        taken = {}  # chain var -> producer's LayerOutput
        for out in outputs.values():
            for b in out.chain:
                taken[b.var] = out
        from ..layers import match_layers

        layer_inputs = {}
        if top and self.on_layer_input is not None:
            names = {m.core_var: (m.info.name, m.input) for m in match_layers(func, self.mod)}
            layer_inputs = names
        for b in dataflow_bindings(func):
            value = b.value
            if b.var in taken:
                out = taken[b.var]
                src = env[value.args[0]]
                if out.integer and _op(value) in ("relax.nn.max_pool2d", "relax.reshape"):
                    env[b.var] = self._eval_call(value, [src])
                else:  # ReLU/Clip folded into the producer's clamp
                    env[b.var] = src
                continue
            name = layer_name_of(value, self.mod)
            if name is not None:
                x = env[value.args[0]]
                if self.on_layer_input is not None:
                    self.on_layer_input(name, np.asarray(x))
                if self.quantized:
                    env[b.var] = self._quantized_layer(b.var, value, x, outputs, env)
                else:
                    env[b.var] = self._run_function(self.mod[value.op], [x])
                continue
            if b.var in layer_inputs:
                lname, lin = layer_inputs[b.var]
                self.on_layer_input(lname, np.asarray(self._eval(lin, env)))
            env[b.var] = self._eval(value, env)
        return self._eval(func.body.body, env)

    def _float_format_layer(self, layer: QuantLayer, x, out):
        """A float-format layer: the NumPy reference of :mod:`tvm_mp.quantize.floats` (float in, float out)."""
        fmt = floats.FloatFormat.of(layer.precision)
        x = np.asarray(x, dtype=np.float32)
        if layer.info.op == "dense":
            return floats.dense(x, layer.w_float, layer.bias, fmt, out.float_lo, out.float_hi)
        return floats.conv2d(x, layer.w_float, layer.bias, layer.info.params, fmt, out.float_lo, out.float_hi)

    def _quantized_layer(self, var, call, x, outputs, env):
        layer = self._layer(call.op)
        if layer.precision.kind == "float":
            return self._float_format_layer(layer, x, outputs[var])
        act = layer.require_act()
        codes = x if x.dtype == np.uint8 else act.quantize(x)
        if layer.clustered is not None:  # products by table look-up: T[idx, code]
            if layer.info.op == "dense":
                acc = clustering.dense_acc(codes, layer.clustered, act.bits)
            else:
                acc = clustering.conv2d_acc(codes, layer.clustered, layer.info.params, act.zero_point, act.bits)
        elif layer.info.op == "dense":
            acc = reference.dense_acc(codes, layer.w_q)
        else:
            acc = reference.conv2d_acc(codes, layer.w_q, layer.info.params, act.zero_point)
        return self._finish_layer(layer, acc, outputs[var])

    def _finish_layer(self, layer: QuantLayer, acc: np.ndarray, out) -> np.ndarray:
        """Bias correction, then requantized codes for the next layer (integer edge) or dequantized floats."""
        corr = layer.bias_corr().reshape((1, -1) + (1,) * (acc.ndim - 2))
        acc = (np.asarray(acc, dtype=np.int64) + corr).astype(np.int32)
        if out.integer:
            consumer = self._layer(_binding_of(self.mod["main"], out.consumer).value.op)
            cact = consumer.require_act()
            mult, shift = scheme.requant_multiplier(layer.out_scale().astype(np.float64) / cact.scale)
            lo, hi = integer_bounds(out.chain, cact)
            return scheme.requantize(acc, 1, mult, shift, cact.zero_point, lo, hi)
        lo = -np.inf if out.float_lo is None else out.float_lo
        hi = np.inf if out.float_hi is None else out.float_hi
        return scheme.dequantize_output(acc, 1, layer.out_scale(), lo, hi)

    def _eval(self, expr, env):
        if isinstance(expr, relax.Var):
            return env[expr]
        if _tvm.is_const(expr):  # converted once per constant (read-only: ops make new arrays)
            value = self._consts.get(expr)
            if value is None:
                value = self._consts[expr] = _tvm.const_value(expr)
                if isinstance(value, np.ndarray):
                    value.setflags(write=False)
            return value
        if _tvm.is_prim_value(expr):
            return _tvm.prim_value(expr)
        if isinstance(expr, relax.Tuple):
            return tuple(self._eval(f, env) for f in expr.fields)
        if isinstance(expr, relax.TupleGetItem):
            return self._eval(expr.tuple_value, env)[int(expr.index)]
        if isinstance(expr, relax.ShapeExpr):
            return _shape(expr)
        if isinstance(expr, relax.Call):
            if isinstance(expr.op, tvm.ir.GlobalVar):
                return self._run_function(self.mod[expr.op], [self._eval(a, env) for a in expr.args])
            args = [None if _tvm.is_prim_value(a) else self._eval(a, env) for a in expr.args]
            return self._eval_call(expr, args)
        raise UnsupportedError(f"the NumPy reference cannot evaluate {type(expr).__name__}")

    def _eval_call(self, call, args):
        name = _op(call)
        fn = OPS.get(name)
        if name in FLOAT32_RULES and any(isinstance(a, np.ndarray) and a.dtype != np.float32 for a in args[:2]):
            fn = None
        if fn is None:  # an fp32 op without a NumPy rule: TVM computes it (float tolerance, see tvm_ops)
            self.fallback_ops.add(name)
            out = tvm_ops.run_op(call, args)
        else:
            out = fn(call, args)
        if isinstance(out, np.ndarray) and out.dtype == np.float64:
            out = out.astype(np.float32)
        return out


def ir_batch(mod: tvm.IRModule) -> int | None:
    """Leading dimension of ``main``'s first input (None for a scalar input)."""
    params = mod["main"].params
    if not params or not isinstance(params[0].ty, relax.TensorType):
        return None
    shape = _tvm.expr_shape(params[0])
    return shape[0] if shape else None


def _axes(attrs, name: str):
    try:
        return getattr(attrs, name)
    except AttributeError:
        return ...


def batch_polymorphic(mod: tvm.IRModule) -> bool:
    """True when every value of ``main`` keeps the batch on axis 0 and no op mixes samples (no reshape, transpose,
    reduction, concat, ... touches axis 0): then a larger batch runs through the graph in one go."""
    main = mod["main"]
    batch = ir_batch(mod)
    if batch is None:
        return False

    def leading_ok(ty) -> bool:
        if isinstance(ty, relax.TupleType):
            return all(leading_ok(f) for f in ty.fields)
        if not isinstance(ty, relax.TensorType) or ty.shape is None:
            return False
        values = ty.shape.values
        return len(values) > 0 and int(values[0]) == batch

    for b in dataflow_bindings(main):
        if not leading_ok(b.var.ty):
            return False
        value = b.value
        if not (isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op)) or value.attrs is None:
            continue
        for name in ("axis", "axes"):
            axes = _axes(value.attrs, name)
            if axes is ...:
                continue
            if axes is None:
                return False
            first = value.args[0]
            ndim = len(first.fields) if isinstance(first, relax.Tuple) else None
            if ndim is None and isinstance(first.ty, relax.TensorType):
                ndim = int(first.ty.ndim)
            listed = [int(a) for a in axes] if hasattr(axes, "__len__") else [int(axes)]
            if _op(value) == "relax.permute_dims":
                if listed and listed[0] != 0:
                    return False
            elif _op(value) == "relax.concat":
                if listed[0] == 0:
                    return False
            elif any(a == 0 or (ndim and a % ndim == 0) for a in listed):
                return False
    return True


def sample_blocks(mod: tvm.IRModule, arrays: Sequence[np.ndarray]) -> list[list[np.ndarray]] | None:
    """``arrays`` cut into blocks of the IR's batch when their batch is a larger multiple of it (inputs whose
    leading dimension is not the batch pass whole), else None."""
    block = ir_batch(mod)
    if not arrays or np.ndim(arrays[0]) == 0 or block in (None, arrays[0].shape[0]) or arrays[0].shape[0] % block:
        return None
    batch = arrays[0].shape[0]
    shapes = [_tvm.expr_shape(p) if isinstance(p.ty, relax.TensorType) else () for p in mod["main"].params]
    cut = [bool(s) and s[0] == block and np.ndim(a) > 0 and a.shape[0] == batch for a, s in zip(arrays, shapes)]
    return [[a[i : i + block] if c else a for a, c in zip(arrays, cut)] for i in range(0, batch, block)]


def concat_batches(parts: list):
    """Outputs of sample blocks joined along axis 0 (tuples field by field)."""
    if isinstance(parts[0], tuple):
        return tuple(concat_batches([p[i] for p in parts]) for i in range(len(parts[0])))
    return np.concatenate([np.asarray(p) for p in parts], axis=0)


def unimplemented_ops(mod: tvm.IRModule) -> list[str]:
    """Sorted names of the ops in ``main`` (and the functions it calls) that the NumPy reference computes through
    TVM (:mod:`tvm_mp.quantize.tvm_ops`) because it has no NumPy rule for them."""
    found: set[str] = set()
    seen: set[str] = set()

    def visit(func) -> None:
        for b in dataflow_bindings(func):
            value = b.value
            if not isinstance(value, relax.Call):
                continue
            if isinstance(value.op, tvm.ir.GlobalVar):
                if value.op.name_hint not in seen and isinstance(mod[value.op], relax.Function):
                    seen.add(value.op.name_hint)
                    visit(mod[value.op])
            elif isinstance(value.op, tvm.ir.Op) and (value.op.name not in OPS or (
                    value.op.name in FLOAT32_RULES and any(_dtype(a) not in ("float32", "") for a in value.args[:2]))):
                found.add(value.op.name)

    visit(mod["main"])
    return sorted(found)


def _dtype(expr) -> str:
    ty = getattr(expr, "ty", None)
    return str(ty.dtype) if isinstance(ty, relax.TensorType) else ""


def _binding_of(func, var):
    for b in dataflow_bindings(func):
        if b.var.same_as(var):
            return b
    raise KeyError(var)


def _is_int(ty) -> bool:
    return isinstance(ty, relax.TensorType) and np.dtype(str(ty.dtype)).kind in "iub"


def index_guard(mod: tvm.IRModule) -> Callable[[Sequence[np.ndarray]], None] | None:
    """A check of ``main``'s inputs that refuses integer inputs leading to an out-of-range index in a
    ``take`` (ONNX Gather) of mode "fast", which TVM compiles without a bounds check (it reads garbage or faults);
    None when ``main`` has no such take fed by its inputs.

    The check evaluates, in NumPy, only the bindings computed from integer inputs, constants and static shapes
    (the importer's negative-index fix-up ``where(idx < 0, idx + n, idx)`` included) and then the indices of each
    such take against the size of its axis."""
    main = mod["main"]
    params = [p for p in main.params if _is_int(p.ty)]
    if not params:
        return None
    computable = set(params)
    source: dict = {p: {p} for p in params}  # var -> the integer inputs it is computed from
    chain, takes = [], []

    def known(arg) -> bool:
        if isinstance(arg, relax.Tuple):
            return all(known(f) for f in arg.fields)
        if isinstance(arg, relax.Var):
            return arg in computable
        return _tvm.is_const(arg) or _tvm.is_prim_value(arg) or isinstance(arg, relax.ShapeExpr)

    def inputs_of(args) -> set:
        out = set()
        for a in args:
            if isinstance(a, relax.Var):
                out |= source.get(a, set())
        return out

    for b in dataflow_bindings(main):
        value = b.value
        if not (isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op)):
            continue
        name = value.op.name
        if name == "relax.shape_of" and isinstance(value.args[0].ty, relax.TensorType) and \
                getattr(value.args[0].ty.shape, "values", None) is not None:
            computable.add(b.var)
            chain.append((b, tuple(int(d) for d in value.args[0].ty.shape.values)))
            continue
        if name == "relax.take" and str(value.attrs.mode) == "fast" and isinstance(value.args[1], relax.Var) \
                and value.args[1] in computable and not known(value.args[0]) and source.get(value.args[1]):
            data_ty = value.args[0].ty
            if isinstance(data_ty, relax.TensorType) and getattr(data_ty.shape, "values", None) is not None:
                dims = [int(d) for d in data_ty.shape.values]
                axis = value.attrs.axis
                size = int(np.prod(dims)) if axis is None else dims[int(axis)]
                takes.append((value.args[1], size, None if axis is None else int(axis), source[value.args[1]]))
            continue
        if all(known(a) for a in value.args):
            computable.add(b.var)
            source[b.var] = inputs_of(value.args)
            chain.append((b, None))
    if not takes:
        return None
    interp = Interpreter(mod)
    positions = {p: i for i, p in enumerate(main.params)}

    def check(arrays: Sequence[np.ndarray]) -> None:
        env = {p: np.asarray(arrays[positions[p]]) for p in params}
        for b, static in chain:
            env[b.var] = static if static is not None else interp._eval(b.value, env)
        for var, size, axis, srcs in takes:
            idx = np.asarray(env[var])
            bad = (idx < 0) | (idx >= size)
            if bad.any():
                names = ", ".join(repr(_tvm.var_name(p)) for p in params if p in srcs)
                where = next(iter(np.argwhere(bad)), ())
                raw = ""
                if len(srcs) == 1:
                    src = np.asarray(env[next(iter(srcs))])
                    if src.shape == idx.shape:
                        raw = f" (it holds {int(src[tuple(where)])} at index {tuple(int(i) for i in where)})"
                axis_text = "the flattened data" if axis is None else f"axis {axis}"
                raise InputValueError(f"input {names} indexes past the {size} elements of {axis_text} of a take "
                                      f"(ONNX Gather){raw}; give indices in [0, {size - 1}] (or [-{size}, -1] "
                                      "counting from the end, where the model allows it)")

    return check
