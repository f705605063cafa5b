"""QuantizeWeights: replace each annotated layer's fp32 weight by its quantized integers and per-channel scales.

Rewrites: inside every layer function made by AnnotatePrecision, the constant weight ``W`` becomes
``astype(W_q, "float32") * scale`` with ``W_q`` an int8 constant holding the ``w_bits``-bit integers
(symmetric per output channel; one bit: {-1, +1}) and ``scale`` a float32 per-channel constant. The module still
runs in floating point and now computes with the quantized weights (fake quantization), so a TVM build of it can
be checked against NumPy; RewriteMixedPrecision turns it into integer kernels. Given calibration statistics, the
integers are chosen by GPTQ-style error feedback (:mod:`tvm_mp.quantize.rounding`) rather than round-to-nearest.

Float-format layers get their weight rounded to the format (in its native dtype where one exists, see
:func:`format_weight_expr`); clustered layers get k-means-clustered integer weights ``c_q[idx]`` with one scale per
layer, in the same ``astype(W_q) * scale`` form.

Leaves alone: ``main``, layer functions whose weight is already quantized (idempotent), un-annotated layers.

Must run after: AnnotatePrecision.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import tvm
from tvm import relax

from .. import _tvm
from ..errors import ensure_ffi_registration
from ..layers import annotated_layer_functions, dataflow_bindings
from ..precision import Precision
from ..quantize import floats
from ..quantize.clustering import cluster_weights
from ..quantize.correction import corrected_bias
from ..quantize.floats import FloatFormat, round_to_format
from ..quantize.qlayer import (
    ATTR_IN_SCALE,
    ATTR_IN_ZP,
    ATTR_QUANTIZED,
    _attr,
    dequantized_weight,
    layer_bias,
    precision_of,
)
from ..quantize.scheme import ActQuant, fit_accumulator, quantize_weights


def quantized_weight_expr(weight: np.ndarray, bits: int, transposed: bool, hessian=None, groups: int = 1,
                          rounded: tuple[np.ndarray, np.ndarray] | None = None, bias: np.ndarray | None = None,
                          in_scale: float | None = None) -> relax.Expr:
    """``astype(W_q, float32) * scale`` for a weight with output channels on axis 0 (or 1 if ``transposed``).

    ``rounded``: ``(w_q, scale)`` already computed by :func:`~tvm_mp.quantize.scheme.quantize_weights` for this
    weight (output channels on axis 0), used as they are. With the layer's calibrated input scale ``in_scale``,
    channels whose bias or tiny scale the int32 accumulator cannot hold get a wider scale
    (:func:`~tvm_mp.quantize.scheme.fit_accumulator`)."""
    w = weight.T if transposed else weight
    if rounded is not None:
        w_q, scale = rounded
        w_q = np.asarray(w_q, np.int8).reshape(w.shape)
        scale = np.asarray(scale, np.float32).reshape(-1)
    else:
        w_q, scale = quantize_weights(w, bits, hessian, groups)
    if in_scale is not None:
        w_q, scale = fit_accumulator(w, w_q, scale, bias, in_scale, bits)
    if transposed:
        w_q, scale_shape = w_q.T.copy(), (1, -1)
    else:
        scale_shape = (-1,) + (1,) * (w.ndim - 1)
    return relax.op.multiply(relax.op.astype(_tvm.const(w_q), "float32"),
                             _tvm.const(scale.reshape(scale_shape).astype(np.float32)))


def format_weight_expr(weight: np.ndarray, precision: Precision, transposed: bool, seed: int = 0) -> relax.Expr:
    """The weight of a float-format or clustered layer (output channels on axis 0, or 1 if ``transposed``).

    Float formats: ``astype(W_F, float32)`` with ``W_F`` in the native dtype (float16, bfloat16, float8_e4m3fn,
    float8_e5m2), or a float32 constant of the rounded values for other formats. Clustered: ``astype(c_q[idx],
    float32) * scale`` (k-means with ``seed``; one scale per layer, repeated per channel).
    """
    if precision.kind == "float":
        fmt = FloatFormat.of(precision)
        rounded = round_to_format(weight, fmt)
        if fmt.native_dtype is None:
            return _tvm.const(rounded)
        return relax.op.astype(_tvm.const(floats.storage(rounded, fmt)), "float32")
    w = weight.T if transposed else weight
    cw = cluster_weights(w, precision.clusters, seed=seed)
    w_q = cw.w_q.T.copy() if transposed else cw.w_q
    scale_shape = (1, -1) if transposed else (-1,) + (1,) * (w.ndim - 1)
    scale = np.full(w.shape[0], cw.scale, np.float32).reshape(scale_shape)
    return relax.op.multiply(relax.op.astype(_tvm.const(w_q), "float32"), _tvm.const(scale))


def _correct_bias(new_func: relax.Function, func: relax.Function, bias: np.ndarray, stats, precision: Precision):
    """``new_func`` with its bias constant replaced by :func:`~tvm_mp.quantize.correction.corrected_bias` of the
    quantized weight it now holds (unchanged without bias-correction statistics)."""
    if getattr(stats, "mean", None) is None:
        return new_func
    act = ActQuant(float(_attr(func, ATTR_IN_SCALE)), int(_attr(func, ATTR_IN_ZP)), precision.a_bits)
    bindings = {b.var: b.value for b in dataflow_bindings(new_func)}
    cores = [v for v in bindings.values() if isinstance(v, relax.Call) and isinstance(v.op, tvm.ir.Op)
             and v.op.name in ("relax.nn.conv2d", "relax.matmul")]
    old_cores = [b.value for b in dataflow_bindings(func) if isinstance(b.value, relax.Call)
                 and isinstance(b.value.op, tvm.ir.Op) and b.value.op.name in ("relax.nn.conv2d", "relax.matmul")]
    quantized = dequantized_weight(cores[0].args[1], bindings) if len(cores) == 1 else None
    if quantized is None or len(old_cores) != 1 or not _tvm.is_const(old_cores[0].args[1]):
        return new_func
    core, old_w = cores[0], _tvm.const_value(old_cores[0].args[1])
    w_q, scale = quantized
    transposed = core.op.name == "relax.matmul"
    groups = int(core.attrs.groups) if not transposed else 1
    weight = old_w.T if transposed else old_w
    w_q = w_q.T if transposed else w_q
    new_bias = corrected_bias(weight, w_q, scale.reshape(-1), bias, stats, act, groups)
    if new_bias is bias:
        return new_func
    done = []

    @relax.expr_functor.mutator
    class ReplaceBias(relax.PyExprMutator):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            if done or not (isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.add"):
                return call
            args = list(call.args)
            for i, a in enumerate(args):
                if _tvm.is_const(a):
                    value = _tvm.const_value(a)
                    if value.dtype == np.float32 and value.size == bias.size and np.array_equal(
                            value.reshape(-1), bias.reshape(-1)):
                        args[i] = _tvm.const(new_bias.reshape(value.shape))
                        done.append(True)
                        return relax.Call(call.op, args, call.attrs)
            return call

    return ReplaceBias().visit_expr(new_func)


@tvm.transform.module_pass(opt_level=0, name="QuantizeWeights")
class QuantizeWeights:
    """Quantize the weights of every annotated layer to its ``w_bits`` (see module docstring).

    ``statistics``: optional layer name -> calibration result carrying ``hessian`` (the input second moment);
    layers that have one get GPTQ-style rounding, the others round to nearest.
    ``weights``: optional ``(layer name, w_bits) -> (w_q, scale)`` rounded by the same rule from the same
    statistics (e.g. by the plan search), used instead of rounding again.
    """

    def __init__(self, statistics: Mapping | None = None, seed: int = 0, weights: Mapping | None = None):
        self.statistics = dict(statistics or {})
        self.weights = dict(weights or {})
        self.seed = int(seed)  # seeds the k-means of clustered layers

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        ensure_ffi_registration()
        updates = {}
        for name, (gv, func) in annotated_layer_functions(mod).items():
            if func.attrs is not None and ATTR_QUANTIZED in func.attrs:
                continue
            bits = int(func.attrs["tvm_mp.w_bits"])
            precision = precision_of(func)
            seed = self.seed
            rounded = self.weights.get((name, bits))
            hessian = getattr(self.statistics.get(name), "hessian", None)
            in_scale = float(func.attrs[ATTR_IN_SCALE].value) if ATTR_IN_SCALE in func.attrs else None
            bias = layer_bias(func) if in_scale is not None and precision.is_integer else None

            # Replace is instantiated and run within this iteration, so it sees this iteration's values
            @relax.expr_functor.mutator
            class Replace(relax.PyExprMutator):
                def visit_call_(self, call):
                    call = super().visit_call_(call)
                    if isinstance(call.op, tvm.ir.Op) and call.op.name in ("relax.nn.conv2d", "relax.matmul"):
                        weight = call.args[1]
                        if _tvm.is_const(weight) and dequantized_weight(weight) is None:
                            groups = int(call.attrs.groups) if call.op.name == "relax.nn.conv2d" else 1
                            if not precision.is_integer:  # float format or clustered  # noqa: B023
                                new_w = format_weight_expr(_tvm.const_value(weight), precision,  # noqa: B023
                                                           call.op.name == "relax.matmul", seed)  # noqa: B023
                            else:
                                new_w = quantized_weight_expr(_tvm.const_value(weight), bits,  # noqa: B023
                                                              call.op.name == "relax.matmul", hessian, groups,  # noqa: B023
                                                              rounded, bias, in_scale)  # noqa: B023
                            return relax.Call(call.op, [call.args[0], new_w], call.attrs)
                    return call

            new_func = Replace().visit_expr(func)
            if precision.is_integer and bias is not None:
                new_func = _correct_bias(new_func, func, bias, self.statistics.get(name), precision)
            new_func = new_func.with_attr(ATTR_QUANTIZED, 1)
            updates[gv] = new_func
        if not updates:
            return mod
        mod = mod.clone() if hasattr(mod, "clone") else tvm.IRModule(dict(mod.functions_items()), attrs=mod.attrs)
        for gv, func in updates.items():
            mod[gv] = func
        return mod
