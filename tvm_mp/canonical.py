"""Canonical form of a Relax module for tvm-mp, from whatever a TVM user already has.

tvm-mp's passes read ``mod["main"]`` and find layers as ``conv2d`` / ``matmul`` calls whose weight is a Relax
constant. Modules straight from TVM often are not in that form: ``relax.frontend.onnx.from_onnx`` leaves
``batch_norm`` and ``permute_dims(constant)`` Gemm weights, ``relax.frontend.nn``'s ``export_tvm`` names the entry
``forward`` and passes weights as parameters, a TVMScript module may hold constant subexpressions.
:func:`canonicalize` brings such a module into the form (and is what :func:`tvm_mp.load_onnx` runs after import,
so there is one code path):

1. The entry function is ``main``, else the single public Relax function, which is renamed ``main``.
2. Refused with a one-line error: a module already legalized or lowered (``call_tir`` to PrimFuncs instead of
   ``R.nn.conv2d`` / ``R.matmul``, e.g. after ``LegalizeOps`` or ``tvm.compile``'s pipeline), weights that are
   function parameters instead of bound constants, and dynamic (symbolic) input shapes.
3. Folded, in order: ``FoldConstant``, ``CanonicalizeClip`` (the importer's Clip PrimFuncs -> ``R.clip``),
   ``FoldBatchnormToConv2D``, ``DecomposeOpsForInference`` (any other batch_norm -> arithmetic on constants),
   ``FoldConstant`` (so ``permute_dims(W)`` becomes one constant ``W^T``), ``CanonicalizeBindings``, dead-code
   elimination. Constant folding runs only when some call has only constant arguments: it is the expensive
   step, and it has nothing to do on a module already canonical.
4. Refused if a value still has a dynamic shape (data-dependent ops).

Idempotent: when nothing changes, the input module object itself is returned, so a module already canonical
(e.g. :func:`tvm_mp.load_onnx` output) passes through unchanged and cheaply. Modules that tvm-mp's own passes
have rewritten (they hold functions with ``tvm_mp.*`` attributes) are returned as they are.

This module sits at the bottom of the package: it imports only ``_tvm`` and ``errors`` (``layers``,
``frontend`` and the passes import it, never the other way round).
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import tvm
from tvm import relax, tirx

from . import _tvm
from .errors import InputShapeError, ModelError, UnsupportedError

__all__ = ["canonicalize", "canonicalize_clip", "find_entry"]

#: Call ops that mean the module went through tvm.compile's lowering pipeline (VM builtins, memory planning).
_LOWERED_PREFIXES = ("relax.vm.", "relax.memory.", "relax.builtin.")
#: Ops that call out of Relax (PrimFuncs, packed functions) rather than being a high-level Relax operator.
_CALL_OUT_OPS = ("relax.call_tir", "relax.call_tir_inplace", "relax.call_tir_with_grad", "relax.call_dps_packed",
                 "relax.call_pure_packed", "relax.call_packed")
#: LegalizeOps names the PrimFunc of a layer after the op (``conv2d``, ``conv2d1``, ``matmul``, ``dense`` ...).
_LAYER_PRIMFUNC = re.compile(r"^(conv\d?d|conv2d_transpose|matmul|batch_matmul|dense)\d*(_|$)")
_LAYER_OPS = ("relax.nn.conv2d", "relax.matmul")


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


# --- the importer's Clip --------------------------------------------------------------------------------------


def _elementwise_kind(func) -> str | None:
    """'max' / 'min' if the PrimFunc computes out[i] = max/min(a[i], b[()]) over a float tensor."""
    if not isinstance(func, tirx.PrimFunc) or len(func.params) != 3:
        return None
    found = []
    for node in _tvm.tir_nodes(func):
        if isinstance(node, tirx.Max):
            found.append("max")
        elif isinstance(node, tirx.Min):
            found.append("min")
        elif isinstance(node, (tirx.Add, tirx.Sub, tirx.Mul, tirx.Div, tirx.Select)):
            found.append("other")
    kinds = set(found)
    return kinds.pop() if len(kinds) == 1 and len(found) == 1 and kinds <= {"max", "min"} else None


def _scalar(expr) -> float | None:
    if not _tvm.is_const(expr):
        return None
    value = _tvm.const_value(expr)
    if value.size != 1 or not np.issubdtype(value.dtype, np.floating):
        return None
    return float(value.reshape(()))


def canonicalize_clip(mod: tvm.IRModule) -> tvm.IRModule:
    """Fold the ONNX importer's ``call_tir`` of maximum/minimum PrimFuncs with scalar constant bounds into one
    ``R.clip`` (the function behind :class:`tvm_mp.passes.canonicalize_clip.CanonicalizeClip`; see there)."""
    kinds = {gv: _elementwise_kind(f) for gv, f in mod.functions_items() if isinstance(f, tirx.PrimFunc)}
    if not any(kinds.values()):
        return mod

    def as_bound(call):
        """(x, kind, bound) for a call_tir of a max/min PrimFunc with a scalar constant bound."""
        if not (isinstance(call, relax.Call) and isinstance(call.op, tvm.ir.Op)
                and call.op.name == "relax.call_tir"):
            return None
        gv, args = call.args[0], call.args[1]
        kind = kinds.get(gv)
        fields = list(getattr(args, "fields", []))
        if kind is None or len(fields) != 2 or _tvm.expr_dtype(fields[0]) != "float32":
            return None
        bound = _scalar(fields[1])
        return None if bound is None else (fields[0], kind, bound)

    @relax.expr_functor.mutator
    class Fold(relax.PyExprMutator):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            outer = as_bound(call)
            if outer is None:
                return call
            x, kind, bound = outer
            lo, hi = (bound, math.inf) if kind == "max" else (-math.inf, bound)
            inner = self.lookup_binding(x) if isinstance(x, relax.Var) else None
            if (isinstance(inner, relax.Call) and isinstance(inner.op, tvm.ir.Op)
                    and inner.op.name == "relax.clip"):  # the other half, already rewritten
                x = inner.args[0]
                lo = max(lo, float(_tvm.prim_value(inner.args[1])))
                hi = min(hi, float(_tvm.prim_value(inner.args[2])))
            return relax.op.clip(x, lo, hi)

    mutator = Fold(mod)
    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            mutator.builder_.update_func(gv, mutator.visit_expr(func))
    return relax.transform.DeadCodeElimination()(mutator.builder_.get())


# --- the entry function ----------------------------------------------------------------------------------------


def _is_public(func) -> bool:
    return func.attrs is not None and "global_symbol" in func.attrs


def find_entry(mod: tvm.IRModule, entry: str | None = None) -> tvm.ir.GlobalVar:
    """The entry function: ``entry`` if given, else ``main``, else the single public Relax function."""
    relax_funcs = {gv.name_hint: gv for gv, f in mod.functions_items() if isinstance(f, relax.Function)}
    if entry is not None:
        if entry not in relax_funcs:
            raise ModelError(_one_line(
                f"the module has no Relax function {entry!r}; its Relax functions are "
                f"{', '.join(sorted(relax_funcs)) or '(none)'}")) from None
        return relax_funcs[entry]
    if "main" in relax_funcs:
        return relax_funcs["main"]
    if not relax_funcs:
        prims = sorted(gv.name_hint for gv, f in mod.functions_items() if isinstance(f, tirx.PrimFunc))
        raise ModelError(_one_line(
            f"the module has no Relax function (only PrimFuncs: {', '.join(prims[:6]) or 'none'}); tvm-mp needs "
            "the Relax graph: give the module before LegalizeOps/tvm.compile's pipeline")) from None
    public = sorted(name for name, gv in relax_funcs.items() if _is_public(mod[gv]))
    if len(public) == 1:
        return relax_funcs[public[0]]
    choices = ", ".join(public or sorted(relax_funcs))
    first = (public or sorted(relax_funcs))[0]
    raise ModelError(_one_line(
        f"the module has no main and {len(public) or 'no'} public Relax functions ({choices}): name the entry, "
        f"e.g. tvm_mp.frontend.canonicalize(mod, entry={first!r})")) from None


def _references(func, gv: tvm.ir.GlobalVar) -> bool:
    found = []

    def visit(expr):
        if isinstance(expr, tvm.ir.GlobalVar) and expr.same_as(gv):
            found.append(expr)

    relax.analysis.post_order_visit(func.body, visit)
    return bool(found)


def _as_main(mod: tvm.IRModule, gv: tvm.ir.GlobalVar) -> tvm.IRModule:
    """The module with the entry function ``gv`` renamed ``main`` (global symbol too)."""
    if gv.name_hint == "main":
        return mod
    callers = [g.name_hint for g, f in mod.functions_items()
               if isinstance(f, relax.Function) and not g.same_as(gv) and _references(f, gv)]
    if callers:
        raise ModelError(_one_line(
            f"the entry function {gv.name_hint!r} is called by {', '.join(callers)}; tvm-mp renames the entry to "
            "main: give a module whose entry no other function calls, or name it main yourself")) from None
    funcs = {g: f for g, f in mod.functions_items() if not g.same_as(gv)}
    main = mod[gv]
    if _is_public(main):
        main = main.with_attr("global_symbol", "main")
    funcs[tvm.ir.GlobalVar("main")] = main
    return tvm.IRModule(funcs, attrs=mod.attrs, global_infos=mod.global_infos)


# --- checks ------------------------------------------------------------------------------------------------------


def _bindings(func: relax.Function):
    body = func.body
    if not isinstance(body, relax.SeqExpr):
        return
    for block in body.blocks:
        yield from block.bindings


def _op_name(expr) -> str | None:
    if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
        return expr.op.name
    return None


def _made_by_tvm_mp(mod: tvm.IRModule) -> bool:
    """True when tvm-mp's passes have rewritten the module (a function carries a ``tvm_mp.*`` attribute)."""
    for _, func in mod.functions_items():
        attrs = getattr(func, "attrs", None)
        if attrs is not None and any(str(key).startswith("tvm_mp.") for key in attrs.keys()):
            return True
    return False


def _check_not_lowered(main: relax.Function) -> None:
    """Refuse a module whose layers are already PrimFuncs (LegalizeOps) or that tvm.compile's pipeline lowered."""
    ops, layer_prims = set(), []
    for b in _bindings(main):
        op = _op_name(b.value)
        if op is None:
            continue
        ops.add(op)
        if op.startswith(_LOWERED_PREFIXES):
            raise ModelError(_one_line(
                f"the module is already lowered by tvm.compile's pipeline (main calls {op}); tvm-mp rewrites the "
                "high-level Relax ops: give the module before LegalizeOps/tvm.compile's pipeline")) from None
        if op in _CALL_OUT_OPS:
            callee = b.value.args[0] if b.value.args else None
            if isinstance(callee, tvm.ir.GlobalVar) and _LAYER_PRIMFUNC.match(callee.name_hint):
                layer_prims.append(callee.name_hint)
    if layer_prims and not ops & set(_LAYER_OPS):  # importers emit PrimFuncs (pad, flip, ...), never layers
        names = ", ".join(sorted(set(layer_prims))[:6])
        raise ModelError(_one_line(
            f"the module is already legalized (main calls PrimFuncs {names} through call_tir and has no "
            "R.nn.conv2d / R.matmul left); tvm-mp rewrites the high-level Relax ops: give the module before "
            "LegalizeOps/tvm.compile's pipeline")) from None


def weight_source(expr, bound: dict):
    """Follow a weight through layout/cast ops (permute_dims, reshape, astype) back to what it comes from."""
    seen = 0
    while isinstance(expr, relax.Var) and expr in bound and seen < 16:
        value = bound[expr]
        if _op_name(value) in ("relax.permute_dims", "relax.reshape", "relax.astype", "relax.expand_dims",
                               "relax.squeeze") or isinstance(value, relax.Var):
            expr = value.args[0] if isinstance(value, relax.Call) else value
            seen += 1
            continue
        break
    return expr


def _check_weights_bound(main: relax.Function, entry_name: str) -> None:
    """Refuse weights that are function parameters instead of bound constants.

    With a ``num_input`` attribute (TVM's frontends: ``export_tvm``, ``from_onnx``), the parameters after the
    first ``num_input`` are the weights: any left is unbound; the inputs before may feed a conv/matmul weight (a
    weight computed at run time: that layer stays fp32). Without it (TVMScript, BlockBuilder), parameters feeding
    a conv/matmul weight slot count as unbound weights only when no conv/matmul has a constant weight, i.e.
    nothing was bound.
    """
    params = list(main.params)
    bound = {b.var: b.value for b in _bindings(main)}
    num_input = main.attrs["num_input"] if main.attrs is not None and "num_input" in main.attrs else None
    if num_input is not None:  # relax.frontend (nn.export_tvm, from_onnx keep_params_in_input=True)
        unbound = params[int(num_input):]
    else:
        unbound, constant_weights = [], 0
        for value in bound.values():
            if _op_name(value) in _LAYER_OPS and len(value.args) >= 2:
                weight = weight_source(value.args[1], bound)
                if _tvm.is_const(weight):
                    constant_weights += 1
                elif any(weight.same_as(p) for p in params) and not any(weight.same_as(u) for u in unbound):
                    unbound.append(weight)
        if constant_weights:
            unbound = []
    if not unbound:
        return
    names = [_tvm.var_name(p) for p in unbound]
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    example = f'relax.transform.BindParams("{entry_name}", {{"{names[0]}": array, ...}})(mod)'
    raise ModelError(_one_line(
        f"weights are function parameters of {entry_name}, not constants: {shown}; tvm-mp needs them bound: "
        f"bind them first, e.g. mod = {example} (relax.frontend.nn: mod, params = model.export_tvm(spec), then "
        "bind each parameter's data), or import ONNX with from_onnx(..., keep_params_in_input=False)")) from None


def ty_static(ty: Any) -> bool:
    """True when a Relax type has only static (integer) dims."""
    if isinstance(ty, relax.TensorType):
        values = getattr(ty.shape, "values", None)
        return values is not None and all(isinstance(v, tirx.IntImm) for v in values)
    if isinstance(ty, relax.ShapeType):
        return ty.values is not None and all(isinstance(v, tirx.IntImm) for v in ty.values)
    if isinstance(ty, relax.TupleType):
        return all(ty_static(f) for f in ty.fields)
    return True


def _check_static_inputs(main: relax.Function, entry_name: str) -> None:
    for param in main.params:
        if not ty_static(param.ty):
            raise UnsupportedError(_one_line(
                f"input {_tvm.var_name(param)} of {entry_name} has a dynamic shape {param.ty}; tvm-mp needs static "
                "shapes: fix its dims (tvm_mp.load_onnx(..., shapes=...), from_onnx(..., shape_dict=...) with "
                "numbers, or nn.spec.Tensor with integer dims for export_tvm)")) from None


#: Most elements a tensor may hold: TVM indexes buffers with int32 (a larger one fails deep inside the build).
MAX_ELEMENTS = 2**31 - 1


def _check_size(var, what: str) -> None:
    ty = var.ty
    if not isinstance(ty, relax.TensorType) or getattr(ty.shape, "values", None) is None:
        return
    dims = [int(v) for v in ty.shape.values]
    count = math.prod(dims)
    if count > MAX_ELEMENTS:
        raise InputShapeError(_one_line(
            f"{what} would hold {count} elements (shape {tuple(dims)}), more than the {MAX_ELEMENTS} TVM can index "
            "(int32): compile with a smaller batch; run() takes any multiple of the compiled batch")) from None


def check_static(mod: tvm.IRModule) -> None:
    """Every parameter and bound value of every Relax function has a fully static shape, else UnsupportedError;
    no tensor holds more than :data:`MAX_ELEMENTS` elements, else InputShapeError."""
    for gvar, func in mod.functions_items():
        if not isinstance(func, relax.Function):
            continue
        _check_static_inputs(func, _tvm.var_name(gvar))
        for param in func.params:
            _check_size(param, f"input {_tvm.var_name(param)!r}")
        for binding in _bindings(func):
            if not ty_static(binding.var.ty):
                value = binding.value
                op = getattr(getattr(value, "op", None), "name", type(value).__name__)
                raise UnsupportedError(_one_line(
                    f"the output of {op} ({_tvm.var_name(binding.var)}) has a dynamic shape {binding.var.ty} even "
                    "with fixed inputs; tvm-mp needs static shapes: remove data-dependent ops (e.g. NonZero) from "
                    "the model")) from None
            value = binding.value
            op = getattr(getattr(value, "op", None), "name", type(value).__name__)
            _check_size(binding.var, f"the output of {op} ({_tvm.var_name(binding.var)})")


# --- folding -------------------------------------------------------------------------------------------------


def _constant_leaf(expr) -> bool:
    """True for an argument with no variable in it (a constant, shape, prim value, string, tuple of those)."""
    if isinstance(expr, relax.Tuple):
        return all(_constant_leaf(f) for f in expr.fields)
    return not isinstance(expr, relax.Var)


def _has_foldable(mod: tvm.IRModule) -> bool:
    """True when FoldConstant may have work: a binding of a constant, or a call whose arguments hold no variable."""
    for _, func in mod.functions_items():
        if not isinstance(func, relax.Function):
            continue
        for b in _bindings(func):
            value = b.value
            if isinstance(value, relax.Call):
                if isinstance(value.op, tvm.ir.Op) and all(_constant_leaf(a) for a in value.args):
                    return True
            elif isinstance(value, relax.TupleGetItem):
                if _constant_leaf(value.tuple_value):
                    return True
            elif isinstance(value, (tvm.ir.expr.Constant, relax.Tuple)) and _constant_leaf(value):
                return True
    return False


def fold(mod: tvm.IRModule) -> tvm.IRModule:
    """Fold constant expressions so weights are plain constants; fuse or decompose any batch_norm left.

    The order :func:`tvm_mp.load_onnx` has always used; FoldConstant is skipped when it has nothing to fold.
    """
    def constants():
        return [relax.transform.FoldConstant()]

    try:
        mod = tvm.transform.Sequential(constants() if _has_foldable(mod) else [])(mod)
        mod = canonicalize_clip(mod)
        mod = tvm.transform.Sequential([relax.transform.FoldBatchnormToConv2D(),
                                        relax.transform.DecomposeOpsForInference()])(mod)
        tail = [relax.transform.CanonicalizeBindings(), relax.transform.DeadCodeElimination()]
        return tvm.transform.Sequential((constants() if _has_foldable(mod) else []) + tail)(mod)
    except Exception as err:
        raise ModelError(_one_line(
            f"folding constants in the module failed: {_tvm.error_line(err)}")) from None


# --- the whole step --------------------------------------------------------------------------------------------


def canonicalize(mod: tvm.IRModule, entry: str | None = None) -> tvm.IRModule:
    """The module in tvm-mp's canonical form (see the module docstring): entry ``main``, weights folded constants.

    Args:
        mod: a Relax ``IRModule`` (from ``from_onnx``, ``nn.Module.export_tvm`` + bound params, TVMScript, or
            :func:`tvm_mp.load_onnx`).
        entry: name of the entry function when the module has no ``main`` and several public functions.

    Returns ``mod`` itself when it is already canonical.

    Raises (each one line): ModelError for a legalized/lowered module, unbound weights, or no clear entry;
    UnsupportedError for dynamic shapes.
    """
    if not isinstance(mod, tvm.IRModule):
        raise ModelError(_one_line(
            f"expected a tvm.IRModule (from tvm_mp.load_onnx, relax.frontend.onnx.from_onnx, "
            f"nn.Module.export_tvm or TVMScript), got {type(mod).__name__}")) from None
    gv = find_entry(mod, entry)
    if _made_by_tvm_mp(mod) and gv.name_hint == "main":
        return mod
    entry_name = gv.name_hint
    main = mod[gv]
    _check_not_lowered(main)
    _check_static_inputs(main, entry_name)
    _check_weights_bound(main, entry_name)
    out = fold(_as_main(mod, gv))
    check_static(out)
    return mod if _tvm.structural_equal(out, mod) else out
