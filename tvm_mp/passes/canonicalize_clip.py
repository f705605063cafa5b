"""CanonicalizeClip: turn TVM's ONNX import of ``Clip`` back into one ``R.clip``.

TVM's ONNX importer lowers ``Clip(x, min, max)`` (opset >= 11) to ``call_tir`` of ``topi.maximum`` and
``topi.minimum`` PrimFuncs with scalar constant bounds, which hides a ReLU6 from every graph-level pass.

Rewrites: ``call_tir(minimum, (call_tir(maximum, (x, lo)), hi))`` -> ``R.clip(x, lo, hi)``, and a lone
``call_tir(maximum, (x, lo))`` / ``call_tir(minimum, (x, hi))`` with a scalar constant bound -> ``R.clip`` with
an infinite other bound. A PrimFunc counts as ``maximum``/``minimum`` when its body is exactly that elementwise
op of the tensor and the scalar (checked on the TIR, not by name).

Leaves alone: maximum/minimum of two tensors, non-float dtypes, anything else. Idempotent.
Runs in :func:`tvm_mp.load_onnx`, after the importer and before constant folding.
"""

from __future__ import annotations

import math

import numpy as np
import tvm
from tvm import relax, tirx

from .. import _tvm
from ..errors import ensure_ffi_registration


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


@tvm.transform.module_pass(opt_level=0, name="CanonicalizeClip")
class CanonicalizeClip:
    """Fold imported maximum/minimum PrimFunc calls into ``R.clip`` (see module docstring)."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        ensure_ffi_registration()
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
