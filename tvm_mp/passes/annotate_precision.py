"""AnnotatePrecision: mark each planned conv2d/dense layer with its precision (and calibrated input range).

Rewrites: in ``main``, every layer named in the plan -- a ``conv2d`` or ``matmul`` with a constant weight and the
optional constant bias ``add`` after it -- becomes a call to a private Relax function ``tvm_mp_<layer>`` holding
the same computation, with attributes ``tvm_mp.layer``, ``tvm_mp.w_bits``, ``tvm_mp.a_bits``, ``tvm_mp.kind``
and, when activation ranges are given, ``tvm_mp.in_scale`` / ``tvm_mp.in_zero_point``. Float-format layers carry
``tvm_mp.exp_bits`` / ``tvm_mp.man_bits`` / ``tvm_mp.finite`` instead of an input quantization; clustered layers
add ``tvm_mp.clusters``.

Leaves alone: layers absent from the plan (they stay fp32; a warning names them), every other op, and layers
that are already annotated (so the pass is idempotent). Numerics are unchanged: the module computes exactly what
it did before.

Must run before: QuantizeWeights and RewriteMixedPrecision. Needs before it: :class:`~tvm_mp.passes.Canonicalize`
(or a module from ``tvm_mp.load_onnx`` / ``tvm_mp.frontend.canonicalize``, which are canonical already); on a
module that is not canonical (no ``main``, unfolded ``batch_norm`` or ``permute_dims`` weights, ...) it raises a
one-line ``ModelError`` saying to put ``Canonicalize()`` first.
"""

from __future__ import annotations

import warnings
from typing import Mapping

import tvm
from tvm import relax

from ..canonical import canonicalize
from ..errors import ModelError, ensure_ffi_registration
from ..layers import LAYER_ATTR, LayerMatch, match_layers
from ..precision import PrecisionPlan
from ..quantize.calibrate import ActivationRange
from ..quantize.qlayer import (
    ATTR_A_BITS,
    ATTR_CLUSTERS,
    ATTR_EXP_BITS,
    ATTR_FINITE,
    ATTR_IN_SCALE,
    ATTR_IN_ZP,
    ATTR_KIND,
    ATTR_MAN_BITS,
    ATTR_W_BITS,
)
from ..quantize.scheme import ActQuant


def layer_function(match: LayerMatch, attrs: dict) -> relax.Function:
    """A private Relax function computing one layer (core op + optional bias) on a fresh input parameter."""
    x = relax.Var("x", match.input.ty)
    bb = relax.BlockBuilder()
    with bb.function(f"tvm_mp_{match.info.name}", [x], private=True):
        with bb.dataflow():
            core = match.core_call
            out = bb.emit(relax.Call(core.op, [x, core.args[1]], core.attrs))
            if not match.end_var.same_as(match.core_var):
                add = match.end_call
                other = add.args[1] if add.args[0].same_as(match.core_var) else add.args[0]
                out = bb.emit(relax.Call(add.op, [out, other], add.attrs))
            gv = bb.emit_output(out)
        bb.emit_func_output(gv)
    func = bb.get()[f"tvm_mp_{match.info.name}"]
    for key, value in attrs.items():
        func = func.with_attr(key, value)
    return func


@tvm.transform.module_pass(opt_level=0, name="AnnotatePrecision")
class AnnotatePrecision:
    """Wrap every planned layer in a layer function carrying its precision (see module docstring).

    Parameters
    ----------
    plan: the layer precisions; names must exist in the module.
    activations: optional layer name -> :class:`ActivationRange` from calibration.
    """

    def __init__(self, plan: PrecisionPlan, activations: Mapping[str, ActivationRange] | None = None):
        self.plan = plan
        self.activations = dict(activations or {})

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        ensure_ffi_registration()
        from ..layers import list_layers

        if canonicalize(mod) is not mod:  # raises its own one-line error for unbound weights, legalized modules
            raise ModelError(
                "AnnotatePrecision needs a canonical module: put tvm_mp.passes.Canonicalize() first in the "
                "Sequential (or pass the module through tvm_mp.frontend.canonicalize / tvm_mp.load_onnx)")
        self.plan.validate_for([layer.name for layer in list_layers(mod)])
        matches = match_layers(mod["main"], mod)
        planned = {m.end_var: m for m in matches if m.info.name in self.plan}
        skipped = [m.info.name for m in matches if m.info.name not in self.plan]
        if skipped:
            warnings.warn(f"tvm-mp: layers without a precision stay fp32: {', '.join(skipped)}", stacklevel=2)
        if not planned:
            return mod
        ends = {m.end_call: m for m in planned.values()}
        annotate = self

        @relax.expr_functor.mutator
        class Wrap(relax.PyExprMutator):
            def visit_call_(self, call):
                for end_call, match in ends.items():
                    if call.same_as(end_call):
                        gv = self.builder_.add_func(annotate._function(match), f"tvm_mp_{match.info.name}")
                        return relax.Call(gv, [self.visit_expr(match.input)])
                return super().visit_call_(call)

        mutator = Wrap(mod)
        main = mutator.visit_expr(mod["main"])
        mutator.builder_.update_func(mod.get_global_var("main"), main)
        return relax.transform.DeadCodeElimination(["main"])(mutator.builder_.get())

    def _function(self, match: LayerMatch) -> relax.Function:
        prec = self.plan[match.info.name]
        attrs = {
            LAYER_ATTR: match.info.name,
            ATTR_W_BITS: prec.w_bits,
            ATTR_A_BITS: prec.a_bits,
            ATTR_KIND: prec.resolved_kind,
        }
        if prec.kind == "float":  # float formats: no input quantization, format in attributes
            attrs.update({ATTR_EXP_BITS: prec.exp_bits, ATTR_MAN_BITS: prec.man_bits, ATTR_FINITE: int(prec.finite)})
            return layer_function(match, attrs)
        if prec.kind == "clustered":
            attrs[ATTR_CLUSTERS] = prec.clusters
        rng = self.activations.get(match.info.name)
        if rng is not None:
            lo, hi = rng.for_bits(prec.a_bits)
            act = ActQuant.from_range(lo, hi, prec.a_bits, unsigned=rng.unsigned)
            attrs[ATTR_IN_SCALE] = tvm.tirx.FloatImm("float64", act.scale)
            attrs[ATTR_IN_ZP] = act.zero_point
        return layer_function(match, attrs)
