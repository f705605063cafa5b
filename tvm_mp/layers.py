"""Layer discovery: every conv2d (any stride, padding, dilation, groups) and dense/matmul with constant weights.

Names are stable and deterministic: ``conv2d_<i>`` and ``dense_<i>``, numbered in the order the layers appear in
``main`` (depthwise convs are ``conv2d_<i>`` too; :attr:`LayerInfo.op` says ``depthwise_conv2d``). The same names
are found before and after :class:`~tvm_mp.passes.AnnotatePrecision`, which keeps them in a function attribute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import tvm
from tvm import relax

from . import _tvm
from .canonical import canonicalize
from .errors import UnsupportedError
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
    """``(kind, input, weight [OC, ...], ConvParams | None, input shape)`` of a conv2d/matmul we can quantize,
    or None. ``weight_value`` is the call's weight as stored (OIHW for conv2d, [K, OC] for matmul)."""
    op = op_name(call)
    x = call.args[0]
    if _tvm.expr_dtype(x) != "float32":
        return None
    in_shape = _tvm.expr_shape(x)
    if op == "relax.nn.conv2d":
        a = call.attrs
        if str(a.data_layout) != "NCHW" or str(a.kernel_layout) != "OIHW" or str(a.out_layout) not in ("NCHW", ""):
            return None
        weight = np.asarray(weight_value, dtype=np.float32)
        params = ConvParams(tuple(a.strides), tuple(a.padding), tuple(a.dilation), int(a.groups))
        depthwise = params.groups == in_shape[1] and params.groups > 1 and weight.shape[1] == 1
        return ("depthwise_conv2d" if depthwise else "conv2d"), x, weight, params, in_shape
    if op == "relax.matmul":
        if np.ndim(weight_value) != 2 or len(in_shape) != 2:
            return None
        return "dense", x, np.asarray(weight_value, dtype=np.float32).T.copy(), None, in_shape
    return None


def match_layers(func: relax.Function, mod: tvm.IRModule | None = None) -> list[LayerMatch]:
    """Find the quantizable layers of a Relax function (in binding order).

    With ``mod``, calls to layer functions made by AnnotatePrecision count in the numbering, so the remaining
    layers keep the names they had before annotation.
    """
    bindings = list(dataflow_bindings(func))
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
        if op not in ("relax.nn.conv2d", "relax.matmul") or not _tvm.is_const(call.args[1]):
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
        from .errors import Error

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


def _sorted_by_name(layers: list[LayerInfo]) -> list[LayerInfo]:
    def key(layer: LayerInfo):
        family, _, idx = layer.name.rpartition("_")
        return (0 if family == "conv2d" else 1, int(idx) if idx.isdigit() else 0, layer.name)

    return sorted(layers, key=key)
