"""Layer discovery: every conv2d (any stride, padding, dilation, groups) and dense/matmul with constant weights.

Names are stable and deterministic: ``conv2d_<i>`` and ``dense_<i>``, numbered in the order the layers appear in
``main`` (depthwise convs are ``conv2d_<i>`` too; :attr:`LayerInfo.op` says ``depthwise_conv2d``). The same names
are found before and after :class:`~tvm_mp.passes.AnnotatePrecision`, which keeps them in a function attribute.

Every other conv-like or matmul-like op of ``main`` (conv1d, conv3d, transposed convs, einsum, a conv2d or matmul
whose weight is not a constant or whose form tvm-mp has no kernel for) is an :class:`UnquantizableLayer`: it runs
unquantized as TVM builds it. :func:`unquantizable_reason` is the one rule that decides, for both lists, and says
why; :func:`unquantizable_layers` lists them, named ``float_<op>_<i>`` (numbered per op in the order of ``main``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import tvm
from tvm import relax

from . import _tvm
from .canonical import canonicalize, weight_source
from .errors import Error, UnsupportedError
from .workload import ConvParams

#: Function attribute holding the layer name of a function made by AnnotatePrecision.
LAYER_ATTR = "tvm_mp.layer"


@dataclass(frozen=True)
class LayerInfo:
    """One quantizable layer. Shapes are NCHW / OIHW for conv2d, ``[N, K]`` / ``[OC, K]`` for dense.

    The one description of a layer, from discovery to cost model to accelerator. Packages that need more fields
    wrap it rather than redefine it: a cost-model :class:`~tvm_mp.cost_models.base.Workload` is a layer at a
    precision with an epilogue, schedule knobs and a target (``Workload.from_layer``); a kernel's
    :class:`~tvm_mp.schedules.registry.ConvWorkload` is a layer at a kernel kind and bit-widths
    (``ConvWorkload.from_layer``); the accelerator's :class:`~tvm_mp.accel.lower.ConvShape` is its grouped-conv
    view (``ConvShape.from_layer``). Layers that are not in a model (random shapes for cost-model records) are made
    with :meth:`from_shapes`, their ``name`` saying where they come from.
    """

    name: str
    op: str  # "conv2d", "depthwise_conv2d" or "dense"
    input_shape: tuple[int, ...]
    weight_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: ConvParams | None  # None for dense
    has_bias: bool
    macs: int
    weight_count: int

    @classmethod
    def from_shapes(cls, name: str, op: str, input_shape, weight_shape, params: ConvParams | None = None,
                    has_bias: bool = False) -> "LayerInfo":
        """A layer from its op, input and weight shapes (and conv geometry): output shape and MACs computed."""
        input_shape = tuple(int(v) for v in input_shape)
        weight_shape = tuple(int(v) for v in weight_shape)
        if op == "dense":
            out_shape = (input_shape[0], weight_shape[0])
        else:
            if params is None:
                raise UnsupportedError(f"a {op} layer needs its ConvParams")
            oh, ow = params.output_hw(input_shape[2], input_shape[3], weight_shape[2], weight_shape[3])
            out_shape = (input_shape[0], weight_shape[0], oh, ow)
        macs = int(np.prod(out_shape)) * int(np.prod(weight_shape[1:]))
        return cls(name, op, input_shape, weight_shape, out_shape, params, has_bias, macs, int(np.prod(weight_shape)))

    @property
    def out_channels(self) -> int:
        return self.weight_shape[0]

    @property
    def reduction(self) -> int:
        """Length of one output's dot product (Cg * KH * KW, or K)."""
        return int(np.prod(self.weight_shape[1:]))

    def __str__(self) -> str:
        geo = ""
        if self.params is not None:
            p = self.params
            geo = f" stride={p.strides} pad={p.padding} dil={p.dilation} groups={p.groups}"
        return (
            f"{self.name:<12} {self.op:<17} in={self.input_shape} w={self.weight_shape} out={self.output_shape}"
            f"{geo} macs={self.macs} weights={self.weight_count}"
        )


@dataclass(frozen=True)
class LayerMatch:
    """Where a layer sits in ``main``: its core call, the optional bias add after it, and its constants."""

    info: LayerInfo
    core_var: relax.Var  # bound to conv2d / matmul
    end_var: relax.Var  # bound to the bias add, or core_var when there is no bias
    input: relax.Expr
    weight: np.ndarray  # OIHW for conv2d, [OC, K] for dense (matmul's constant transposed)
    bias: np.ndarray | None  # [OC]
    core_call: relax.Call
    end_call: relax.Call  # the call bound to end_var (the bias add, or core_call)


def op_name(expr) -> str | None:
    """Name of the Relax operator ``expr`` calls, or None."""
    if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
        return expr.op.name
    return None


def dataflow_bindings(func: relax.Function) -> Iterator[relax.VarBinding]:
    for block in func.body.blocks:
        yield from block.bindings


def use_counts(func: relax.Function) -> dict:
    """Number of uses of each bound variable in ``func`` (including the function's return value)."""
    counts: dict = {}

    def visit(expr):
        if isinstance(expr, relax.Var):
            counts[expr] = counts.get(expr, 0) + 1

    for binding in dataflow_bindings(func):
        relax.analysis.post_order_visit(binding.value, visit)
    relax.analysis.post_order_visit(func.body.body, visit)
    return counts


def _bias_of(add_call: relax.Call, core_var: relax.Var, out_channels: int, channel_axis: int, ndim: int):
    """The bias vector if ``add_call`` is ``core_var + const`` broadcasting along the channel axis only."""
    if op_name(add_call) != "relax.add":
        return None
    a, b = add_call.args
    if a.same_as(core_var) and _tvm.is_const(b):
        const = b
    elif b.same_as(core_var) and _tvm.is_const(a):
        const = a
    else:
        return None
    value = _tvm.const_value(const)
    if value.dtype != np.float32 or value.size != out_channels:
        return None
    shape = (1,) * (ndim - value.ndim) + value.shape
    if out_channels > 1 and shape[channel_axis] != out_channels:
        return None
    return value.reshape(out_channels).astype(np.float32)


def describe_core(call: relax.Call, weight_value: np.ndarray):
    """``(kind, input, weight [OC, ...], ConvParams | None, input shape)`` of a conv2d/matmul whose form we can
    quantize (:func:`form_reason` is None), or None. ``weight_value`` is the call's weight as stored (OIHW for
    conv2d, [K, OC] for matmul)."""
    if form_reason(call) is not None:
        return None
    op = op_name(call)
    x = call.args[0]
    in_shape = _tvm.expr_shape(x)
    if op == "relax.nn.conv2d":
        a = call.attrs
        weight = np.asarray(weight_value, dtype=np.float32)
        params = ConvParams(tuple(a.strides), tuple(a.padding), tuple(a.dilation), int(a.groups))
        depthwise = params.groups == in_shape[1] and params.groups > 1 and weight.shape[1] == 1
        return ("depthwise_conv2d" if depthwise else "conv2d"), x, weight, params, in_shape
    if np.ndim(weight_value) != 2:
        return None
    return "dense", x, np.asarray(weight_value, dtype=np.float32).T.copy(), None, in_shape


# --- which conv-like / matmul-like ops are layers, and why the others are not ---------------------------------

#: Relax ops that multiply an input by a weight (conv-like and matmul-like): their short names.
LAYER_LIKE_OPS = {
    "relax.nn.conv1d": "conv1d",
    "relax.nn.conv2d": "conv2d",
    "relax.nn.conv3d": "conv3d",
    "relax.nn.conv1d_transpose": "conv1d_transpose",
    "relax.nn.conv2d_transpose": "conv2d_transpose",
    "relax.nn.conv3d_transpose": "conv3d_transpose",
    "relax.matmul": "matmul",
    "relax.einsum": "einsum",
}
#: The ops a quantizable layer is made of (in the forms :func:`form_reason` accepts, with a constant weight).
QUANTIZABLE_OPS = ("relax.nn.conv2d", "relax.matmul")
#: What tvm-mp quantizes, said once for the reasons below.
_QUANTIZES = "tvm-mp quantizes conv2d and dense (x @ constant W) layers only"
#: Ops that are never a layer: (what it is, how to make it quantizable or "").
_OTHER_OPS = {
    "conv1d": ("a 1-D convolution", "export it as a 2-D Conv over an (N, C, 1, W) input with an (OC, C, 1, K) "
               "kernel"),
    "conv3d": ("a 3-D convolution", ""),
    "conv1d_transpose": ("a transposed convolution (ConvTranspose)", ""),
    "conv2d_transpose": ("a transposed convolution (ConvTranspose)", ""),
    "conv3d_transpose": ("a transposed convolution (ConvTranspose)", ""),
    "einsum": ("an einsum", "write it as MatMul with a constant weight"),
}


def _reason(cause: str, fix: str = "", stays: str = "fp32") -> str:
    """One reason: the cause, that the op stays unquantized, and what would make it quantizable."""
    return f"{cause}, so it stays {stays}" + (f"; to quantize it, {fix}" if fix else "")


def _shape_of(expr) -> tuple[int, ...]:
    """Static shape of a tensor-typed expression, () when it has none (tuples, unknown dims)."""
    ty = getattr(expr, "ty", None)
    values = getattr(getattr(ty, "shape", None), "values", None) if isinstance(ty, relax.TensorType) else None
    try:
        return tuple(int(v) for v in values) if values is not None else ()
    except TypeError:  # symbolic dims
        return ()


def _dtype_of(expr) -> str:
    ty = getattr(expr, "ty", None)
    return str(ty.dtype) if isinstance(ty, relax.TensorType) else ""


def form_reason(call: relax.Call) -> str | None:
    """Why the op, dtypes, layouts or ranks of a conv-like / matmul-like call are not a form tvm-mp quantizes, or
    None when they are (a conv2d NCHW/OIHW or a 2-D x @ 2-D W, float32 throughout). The weight need not be a
    constant here (:func:`unquantizable_reason` checks that)."""
    op = op_name(call)
    kind = LAYER_LIKE_OPS.get(op)
    if kind is None:
        return f"{op} is not a conv or matmul op"
    if kind in _OTHER_OPS:
        what, fix = _OTHER_OPS[kind]
        return _reason(f"{what}: {_QUANTIZES}", fix)
    x, w = call.args[0], call.args[1]
    out_dtype = str(call.ty.dtype) if isinstance(call.ty, relax.TensorType) else ""
    dtypes = {"input": _dtype_of(x), "weight": _dtype_of(w), "output": out_dtype}
    odd = [f"{role} dtype {dt}" for role, dt in dtypes.items() if dt != "float32"]
    if odd:
        return _reason(f"{', '.join(odd)}: tvm-mp quantizes float32 layers only", "give the layer float32 inputs "
                       "and weights", stays=f"in {dtypes['input'] or 'its dtype'}")
    x_shape, w_shape = _shape_of(x), _shape_of(w)
    if kind == "conv2d":
        a = call.attrs
        layouts = (str(a.data_layout), str(a.kernel_layout), str(a.out_layout) or str(a.data_layout))
        if layouts != ("NCHW", "OIHW", "NCHW"):
            return _reason(f"layout {layouts[0]}/{layouts[1]} (output {layouts[2]}): tvm-mp quantizes NCHW/OIHW "
                           "convolutions only", "convert the layout first with relax.transform.ConvertLayout("
                           "{'relax.nn.conv2d': ['NCHW', 'OIHW']})")
        return None
    shape_rule = "tvm-mp quantizes a 2-D input (N, K) times a 2-D constant weight (K, OC)"
    if len(x_shape) != 2:
        what = "a vector" if len(x_shape) == 1 else f"{len(x_shape)}-D (a batched matmul)"
        return _reason(f"its input {x_shape} is {what}: {shape_rule}", "reshape the input to 2-D (N, K) first")
    if len(w_shape) != 2:
        what = "a vector (a matrix-vector product)" if len(w_shape) == 1 else f"{len(w_shape)}-D"
        return _reason(f"its weight {w_shape} is {what}: {shape_rule}",
                       "make the weight a 2-D (K, OC) matrix" if len(w_shape) == 1 else "")
    return None


def _origin(expr, func: relax.Function | None, bound: dict) -> str:
    """Where a non-constant operand comes from, for a reason: "graph input 'w'" or "computed at run time"."""
    if func is None:
        return "computed at run time"
    src = weight_source(expr, bound)
    for p in func.params:
        if src.same_as(p):
            return f"graph input {_tvm.var_name(p)!r}, given at run time"
    producer = op_name(bound.get(src)) if isinstance(src, relax.Var) else None
    return f"computed at run time by {producer}" if producer else "computed at run time"


def unquantizable_reason(call: relax.Call, func: relax.Function | None = None,
                         bound: dict | None = None) -> str | None:
    """None when ``call`` (a binding value of ``func``) is the core of a quantizable layer; else why tvm-mp leaves
    it unquantized, in words that say what would make it quantizable. The one rule behind :func:`match_layers`
    and :func:`unquantizable_layers`. ``func`` and ``bound`` (its var -> value bindings) let the reason say where
    a non-constant weight comes from."""
    reason = form_reason(call)
    if reason is not None:
        return reason
    bound = bound if bound is not None else {}
    x, w = call.args[0], call.args[1]
    if _tvm.is_const(w):
        return None
    if op_name(call) == "relax.matmul" and _tvm.is_const(x):
        return _reason("its constant operand is on the left (W @ x): tvm-mp quantizes x @ W with the constant "
                       "weight on the right", "write it as (x^T @ W^T)^T")
    return _reason(f"its weight is not a constant ({_origin(w, func, bound)}): tvm-mp quantizes layers with "
                   "constant weights only", "make the weight an initializer (a constant) of the model")


@dataclass(frozen=True)
class UnquantizableLayer:
    """A conv-like or matmul-like op of ``main`` that tvm-mp cannot quantize: it runs unquantized (fp32) as TVM
    builds it. ``name`` is ``float_<op>_<i>``; ``op`` the op's short name (``conv1d``, ``conv2d_transpose``,
    ``matmul``, ...); shapes are the input's, the weight's (second operand's) and the output's, () when not
    static; ``reason`` says why and what would make it quantizable."""

    name: str
    op: str
    input_shape: tuple[int, ...]
    weight_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    reason: str

    def __post_init__(self) -> None:
        for field_name in ("name", "op", "reason"):
            value = getattr(self, field_name)
            if not isinstance(value, str) or not value:
                raise Error(f"UnquantizableLayer.{field_name} must be a non-empty string, got {value!r}")
        for field_name in ("input_shape", "weight_shape", "output_shape"):
            value = getattr(self, field_name)
            if not isinstance(value, (tuple, list)) or not all(
                    isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0 for d in value):
                raise Error(f"UnquantizableLayer.{field_name} must be a tuple of non-negative integers, got "
                            f"{value!r}")
            object.__setattr__(self, field_name, tuple(int(d) for d in value))

    def to_dict(self) -> dict:
        return {"name": self.name, "op": self.op, "input_shape": list(self.input_shape),
                "weight_shape": list(self.weight_shape), "output_shape": list(self.output_shape),
                "reason": self.reason}

    @classmethod
    def from_dict(cls, data) -> "UnquantizableLayer":
        """The record :meth:`to_dict` wrote (TypeError / KeyError for anything else)."""
        if not isinstance(data, dict):
            raise TypeError(f"an unquantizable layer is an object, got {type(data).__name__}")
        extra = sorted(set(data) - set(cls.__dataclass_fields__))
        if extra:
            raise TypeError(f"unknown field(s) {', '.join(extra)} in an unquantizable layer")
        return cls(**{f: data[f] for f in cls.__dataclass_fields__})

    @property
    def summary(self) -> str:
        """``name (op, in (..), weight (..)): reason`` -- one item of the compile warning."""
        return f"{self.name} ({self.op}, input {self.input_shape}, weight {self.weight_shape}): {self.reason}"

    def __str__(self) -> str:
        return (f"{self.name:<12} {self.op:<17} in={self.input_shape} w={self.weight_shape} out={self.output_shape}"
                f" not quantized: {self.reason}")


def match_layers(func: relax.Function, mod: tvm.IRModule | None = None) -> list[LayerMatch]:
    """Find the quantizable layers of a Relax function (in binding order).

    With ``mod``, calls to layer functions made by AnnotatePrecision count in the numbering, so the remaining
    layers keep the names they had before annotation.
    """
    bindings = list(dataflow_bindings(func))
    bound = {b.var: b.value for b in bindings}
    counts = use_counts(func)
    next_user = {}
    for b in bindings:
        for arg in getattr(b.value, "args", []) or []:
            if isinstance(arg, relax.Var):
                next_user.setdefault(arg, b)
    matches = []
    n_conv = n_dense = 0
    for b in bindings:
        call = b.value
        op = op_name(call)
        annotated = layer_name_of(call, mod)
        if annotated is not None:
            if annotated.startswith("conv2d_"):
                n_conv += 1
            else:
                n_dense += 1
            continue
        if op not in QUANTIZABLE_OPS or unquantizable_reason(call, func, bound) is not None:
            continue
        described = describe_core(call, _tvm.const_value(call.args[1]))
        if described is None:
            continue
        kind, x, weight, params, in_shape = described
        out_shape = _tvm.expr_shape(b.var)
        channel_axis = 1
        if kind == "dense":
            name = f"dense_{n_dense}"
            n_dense += 1
        else:
            name = f"conv2d_{n_conv}"
            n_conv += 1
        bias = None
        end_var, end_call = b.var, call
        user = next_user.get(b.var)
        if counts.get(b.var, 0) == 1 and user is not None:
            bias = _bias_of(user.value, b.var, weight.shape[0], channel_axis, len(out_shape))
            if bias is not None:
                end_var, end_call = user.var, user.value
        macs = int(np.prod(out_shape)) * int(np.prod(weight.shape[1:]))
        info = LayerInfo(name, kind, in_shape, weight.shape, out_shape, params, bias is not None, macs,
                         int(weight.size))
        matches.append(LayerMatch(info, b.var, end_var, x, weight, bias, call, end_call))
    return matches


def layer_name_of(call, mod: tvm.IRModule | None) -> str | None:
    """Layer name if ``call`` calls a layer function of ``mod`` (one made by AnnotatePrecision)."""
    if mod is None or not isinstance(call, relax.Call) or not isinstance(call.op, tvm.ir.GlobalVar):
        return None
    if call.op not in mod.get_global_vars():
        return None
    func = mod[call.op]
    if isinstance(func, relax.Function) and func.attrs is not None and LAYER_ATTR in func.attrs:
        return str(func.attrs[LAYER_ATTR])
    return None


def annotated_layer_functions(mod: tvm.IRModule) -> dict[str, tuple]:
    """Layer name -> (GlobalVar, Function) for functions made by AnnotatePrecision."""
    found = {}
    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function) and func.attrs is not None and LAYER_ATTR in func.attrs:
            found[str(func.attrs[LAYER_ATTR])] = (gv, func)
    return found


def list_layers(mod: tvm.IRModule) -> list[LayerInfo]:
    """Every quantizable layer of ``mod`` (its ``main`` and the layer functions AnnotatePrecision made).

    ``mod`` is canonicalized first (:func:`tvm_mp.frontend.canonicalize`, a no-op on a canonical module), so a
    raw ``from_onnx`` / ``export_tvm`` / TVMScript module lists the same layers, with the same names, as its
    canonical form.
    """
    if not isinstance(mod, tvm.IRModule):
        raise Error(f"list_layers needs a tvm.IRModule (from tvm_mp.load_onnx), got {type(mod).__name__}")
    mod = canonicalize(mod)
    layers = []
    annotated = annotated_layer_functions(mod)
    for name, (_, func) in annotated.items():
        inner = match_layers(func)
        if inner:
            info = inner[0].info
            layers.append(LayerInfo(name, *[getattr(info, f) for f in LayerInfo.__dataclass_fields__][1:]))
    if "main" in [gv.name_hint for gv in mod.get_global_vars()]:
        layers.extend(m.info for m in match_layers(mod["main"], mod))
    return _sorted_by_name(layers)


def unquantizable_in(func: relax.Function, mod: tvm.IRModule | None = None) -> list[UnquantizableLayer]:
    """The conv-like / matmul-like calls of ``func`` that :func:`unquantizable_reason` refuses, in binding order
    (calls to layer functions of ``mod`` are quantized layers, not these)."""
    bindings = list(dataflow_bindings(func))
    bound = {b.var: b.value for b in bindings}
    found, counts = [], {}
    for b in bindings:
        call = b.value
        kind = LAYER_LIKE_OPS.get(op_name(call))
        if kind is None or layer_name_of(call, mod) is not None:
            continue
        reason = unquantizable_reason(call, func, bound)
        if reason is None:
            continue
        index = counts.get(kind, 0)
        counts[kind] = index + 1
        operands = list(call.args[0].fields) if isinstance(call.args[0], relax.Tuple) else list(call.args)
        shapes = [_shape_of(e) for e in operands[:2]] + [()] * (2 - len(operands[:2]))
        found.append(UnquantizableLayer(f"float_{kind}_{index}", kind, shapes[0], shapes[1], _shape_of(b.var),
                                        reason))
    return found


def unquantizable_layers(mod: tvm.IRModule) -> list[UnquantizableLayer]:
    """Every conv-like / matmul-like op of ``mod``'s ``main`` that tvm-mp cannot quantize, with the reason (see
    :func:`unquantizable_reason`). They run unquantized as TVM builds them. ``mod`` is canonicalized first, as in
    :func:`list_layers`."""
    if not isinstance(mod, tvm.IRModule):
        raise Error(f"unquantizable_layers needs a tvm.IRModule (from tvm_mp.load_onnx), got {type(mod).__name__}")
    mod = canonicalize(mod)
    if "main" not in [gv.name_hint for gv in mod.get_global_vars()]:
        return []
    return unquantizable_in(mod["main"], mod)


def _sorted_by_name(layers: list[LayerInfo]) -> list[LayerInfo]:
    def key(layer: LayerInfo):
        family, _, idx = layer.name.rpartition("_")
        return (0 if family == "conv2d" else 1, int(idx) if idx.isdigit() else 0, layer.name)

    return sorted(layers, key=key)
