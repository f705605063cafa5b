"""A quantized layer as read from the IR that AnnotatePrecision and QuantizeWeights produce.

The contract between the passes, the NumPy reference and the kernels: a layer function carries

* ``tvm_mp.layer``  its stable name;  ``tvm_mp.w_bits``, ``tvm_mp.a_bits``, ``tvm_mp.kind`` its precision;
* ``tvm_mp.in_scale``, ``tvm_mp.in_zero_point`` the calibrated quantization of its input (absent before
  calibration);
* a body ``conv2d(x, W) [+ bias]`` or ``matmul(x, W) [+ bias]``, where after QuantizeWeights ``W`` is
  ``astype(W_q int8, float32) * scale``.

Float-format layers (kind ``float``) carry ``tvm_mp.exp_bits``, ``tvm_mp.man_bits``, ``tvm_mp.finite`` and no input
quantization; after QuantizeWeights their ``W`` is ``astype(W_F, float32)`` with ``W_F`` in the format's native
dtype, or a float32 constant of the rounded values (formats without one). Clustered layers (kind ``clustered``)
carry ``tvm_mp.clusters`` and are otherwise integer layers whose ``W_q`` takes at most ``clusters`` values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import tvm
from tvm import relax

from .. import _tvm
from ..errors import CalibrationError, UnsupportedError
from ..layers import LAYER_ATTR, LayerInfo, _bias_of, dataflow_bindings, describe_core
from ..precision import Precision
from .scheme import ActQuant, bias_correction, fit_accumulator, output_scale, quantize_weights

if TYPE_CHECKING:
    from .clustering import ClusteredWeights

ATTR_W_BITS = "tvm_mp.w_bits"
ATTR_A_BITS = "tvm_mp.a_bits"
ATTR_KIND = "tvm_mp.kind"
ATTR_IN_SCALE = "tvm_mp.in_scale"
ATTR_IN_ZP = "tvm_mp.in_zero_point"
ATTR_QUANTIZED = "tvm_mp.weights_quantized"
ATTR_EXP_BITS = "tvm_mp.exp_bits"
ATTR_MAN_BITS = "tvm_mp.man_bits"
ATTR_FINITE = "tvm_mp.finite"
ATTR_CLUSTERS = "tvm_mp.clusters"


@dataclass(frozen=True, eq=False)
class QuantLayer:
    """Everything needed to compute one layer in integers."""

    info: LayerInfo
    precision: Precision
    act: ActQuant | None
    w_q: np.ndarray | None  # int8, OIHW or [OC, K] (None for float formats)
    w_scale: np.ndarray | None  # float32 [OC] (None for float formats)
    bias: np.ndarray | None
    w_float: np.ndarray | None = None  # float formats: weights rounded to the format, float32 OIHW or [OC, K]
    clustered: "ClusteredWeights | None" = None  # clustered layers: centroids and indices (w_q = c_q[idx])

    @property
    def name(self) -> str:
        return self.info.name

    def require_act(self) -> ActQuant:
        if self.act is None:
            raise CalibrationError(
                f"layer {self.name!r} has no activation range: pass calibration data (compile(..., calibration=...))"
            )
        return self.act

    def bias_corr(self) -> np.ndarray:
        return bias_correction(self.bias, self.w_q, self.w_scale, self.require_act())

    def out_scale(self) -> np.ndarray:
        return output_scale(self.w_scale, self.require_act())


def _attr(func: relax.Function, key: str, default=None):
    if func.attrs is None or key not in func.attrs:
        return default
    value = func.attrs[key]
    return value.value if hasattr(value, "value") else value


def _bound(expr, bindings: dict):
    while isinstance(expr, relax.Var) and expr in bindings:
        expr = bindings[expr]
    return expr


def dequantized_weight(expr, bindings: dict | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """``(W_q, scale)`` if ``expr`` is ``multiply(astype(const int8), const)`` (QuantizeWeights' form)."""
    bindings = bindings or {}
    expr = _bound(expr, bindings)
    if not (isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and expr.op.name == "relax.multiply"):
        return None
    cast, scale = (_bound(a, bindings) for a in expr.args)
    if not (isinstance(cast, relax.Call) and cast.op.name == "relax.astype" and _tvm.is_const(cast.args[0])):
        return None
    if not _tvm.is_const(scale):
        return None
    return _tvm.const_value(cast.args[0]), _tvm.const_value(scale)


def precision_of(func: relax.Function) -> Precision:
    """The :class:`Precision` recorded in a layer function's attributes."""
    kind = str(_attr(func, ATTR_KIND))
    w_bits, a_bits = int(_attr(func, ATTR_W_BITS)), int(_attr(func, ATTR_A_BITS))
    if kind == "float":
        return Precision(w_bits, a_bits, kind, int(_attr(func, ATTR_EXP_BITS)), int(_attr(func, ATTR_MAN_BITS)),
                         bool(int(_attr(func, ATTR_FINITE, 0))))
    if kind == "clustered":
        return Precision(w_bits, a_bits, kind, clusters=int(_attr(func, ATTR_CLUSTERS)))
    return Precision(w_bits, a_bits, kind)


def _float_weight(expr, bindings: dict) -> np.ndarray:
    """float32 value of a float layer's weight: a constant, or ``astype(constant, float32)``."""
    expr = _bound(expr, bindings)
    if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and expr.op.name == "relax.astype":
        expr = _bound(expr.args[0], bindings)
    return np.asarray(_tvm.const_value(expr)).astype(np.float32)


def read_layer(func: relax.Function) -> QuantLayer:
    """Read a layer function (see module docstring)."""
    name = str(_attr(func, LAYER_ATTR))
    precision = precision_of(func)
    if precision.kind == "float":
        return _read_float_layer(func, name, precision)
    scale = _attr(func, ATTR_IN_SCALE)
    act = None if scale is None else ActQuant(float(scale), int(_attr(func, ATTR_IN_ZP)), precision.a_bits)
    bindings = {b.var: b.value for b in dataflow_bindings(func)}
    core, core_var = _core_of(func, bindings, name)
    quantized = dequantized_weight(core.args[1], bindings)
    if quantized is not None:
        w_q, w_scale = quantized
        stored = w_q.astype(np.float32)
    else:
        stored = _tvm.const_value(_bound(core.args[1], bindings))
    kind, _, weight, params, in_shape = describe_core(core, stored)
    if quantized is not None:
        w_q = w_q.T.copy() if kind == "dense" else w_q
        w_scale = w_scale.reshape(-1).astype(np.float32)
    elif precision.kind == "clustered":
        w_q, w_scale = None, None
    else:
        w_q, w_scale = quantize_weights(weight, precision.w_bits)
        if act is not None:  # as QuantizeWeights would store them
            w_q, w_scale = fit_accumulator(weight, w_q, w_scale, _bias(bindings, core_var, weight.shape[0]),
                                           act.scale, precision.w_bits)
    clustered = None
    if precision.kind == "clustered":
        from .clustering import cluster_weights, from_integer_weights

        if w_q is None:
            clustered = cluster_weights(weight, precision.clusters)
            w_q = clustered.w_q
            w_scale = np.full(weight.shape[0], clustered.scale, np.float32)
        else:
            clustered = from_integer_weights(w_q, float(w_scale.reshape(-1)[0]), precision.clusters)
    info, bias = _layer_info(name, kind, in_shape, weight, params, bindings, core_var)
    return QuantLayer(info, precision, act, w_q.astype(np.int8), w_scale, bias, clustered=clustered)


def _bias(bindings: dict, core_var, out_channels: int) -> np.ndarray | None:
    """The bias of a layer function (the ``relax.add`` of a constant after the core), if any."""
    bias = None
    for call in bindings.values():
        if isinstance(call, relax.Call) and isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.add":
            bias = _bias_of(call, core_var, out_channels, 1, len(_tvm.expr_shape(core_var)))
    return bias


def layer_bias(func: relax.Function) -> np.ndarray | None:
    """The bias vector of a layer function made by AnnotatePrecision, or None."""
    bindings = {b.var: b.value for b in dataflow_bindings(func)}
    _, core_var = _core_of(func, bindings, str(_attr(func, LAYER_ATTR)))
    return _bias(bindings, core_var, _tvm.expr_shape(core_var)[1])


def _layer_info(name: str, kind: str, in_shape, weight: np.ndarray, params, bindings: dict, core_var):
    """The layer's :class:`LayerInfo` and its bias (from the ``relax.add`` after the core, if any)."""
    bias = _bias(bindings, core_var, weight.shape[0])
    out_shape = _tvm.expr_shape(core_var)
    macs = int(np.prod(out_shape)) * int(np.prod(weight.shape[1:]))
    info = LayerInfo(name, kind, in_shape, weight.shape, out_shape, params, bias is not None, macs, int(weight.size))
    return info, bias


def _core_of(func: relax.Function, bindings: dict, name: str):
    core = core_var = None
    for var, call in bindings.items():
        if isinstance(call, relax.Call) and isinstance(call.op, tvm.ir.Op) and call.op.name in (
                "relax.nn.conv2d", "relax.matmul"):
            core, core_var = call, var
    if core is None:
        raise UnsupportedError(f"layer function {name!r} holds no conv2d/matmul")
    return core, core_var


def _read_float_layer(func: relax.Function, name: str, precision: Precision) -> QuantLayer:
    """A float-format layer: weights rounded to the format (whether or not QuantizeWeights ran)."""
    from .floats import FloatFormat, round_to_format

    bindings = {b.var: b.value for b in dataflow_bindings(func)}
    core, core_var = _core_of(func, bindings, name)
    kind, _, weight, params, in_shape = describe_core(core, _float_weight(core.args[1], bindings))
    info, bias = _layer_info(name, kind, in_shape, weight, params, bindings, core_var)
    rounded = round_to_format(weight, FloatFormat.of(precision))
    return QuantLayer(info, precision, None, None, None, bias, w_float=rounded)
