"""Which layer outputs stay integer, and which activations fuse into a layer's epilogue.

One rule, used by both the compiler (RewriteMixedPrecision) and the NumPy reference, over the IR that
AnnotatePrecision produces (``main`` calling layer functions):

* Starting at a layer's output, follow the chain of single-use bindings through "code-transparent" ops:
  ReLU, Clip, MaxPool2d, Reshape. These commute with a monotone per-tensor quantizer, so they can run on codes.
* If that chain ends as the only argument of another quantized layer (with calibrated input), and both layers
  compute on integer codes (integer or clustered kinds, not float formats), the edge is **integer**: the producer
  requantizes straight into the consumer's input codes; ReLU/Clip in the chain become
  integer clamps; MaxPool/Reshape run on uint8 codes.
* Otherwise the edge is **float**: the producer dequantizes, and ReLU/Clip ops directly after it are fused
  into its epilogue as a float clamp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import tvm
from tvm import relax

from .. import _tvm
from ..layers import dataflow_bindings, layer_name_of, use_counts
from ..layers import op_name as _op

TRANSPARENT_OPS = ("relax.nn.relu", "relax.clip", "relax.nn.max_pool2d", "relax.reshape")
ACTIVATION_OPS = ("relax.nn.relu", "relax.clip")


@dataclass
class LayerOutput:
    """How a layer's output leaves it."""

    producer: relax.Var  # the var bound to the layer call
    integer: bool
    consumer: relax.Var | None = None  # var bound to the consuming layer call (integer edges)
    consumer_layer: str | None = None
    chain: list = field(default_factory=list)  # bindings after the producer that the rewrite takes over
    float_lo: float | None = None  # fused activation of a float edge
    float_hi: float | None = None


def activation_bounds(call) -> tuple[float, float]:
    """Real-valued [lo, hi] that a ReLU or Clip call keeps."""
    if _op(call) == "relax.nn.relu":
        return 0.0, math.inf
    return float(_tvm.prim_value(call.args[1])), float(_tvm.prim_value(call.args[2]))


def _is_calibrated(func) -> bool:
    """True for a layer computing on integer codes with a calibrated input: integer and clustered kinds. Float-format
    layers (kind ``float``) take and give float32, so every edge touching one is a float edge."""
    if func.attrs is None or "tvm_mp.in_scale" not in func.attrs:
        return False
    return "tvm_mp.kind" not in func.attrs or str(func.attrs["tvm_mp.kind"]) != "float"


def analyze_outputs(func: relax.Function, mod: tvm.IRModule) -> dict:
    """Producer var -> :class:`LayerOutput` for every layer call in ``func``."""
    bindings = list(dataflow_bindings(func))
    counts = use_counts(func)
    user_of = {}
    for b in bindings:
        for arg in getattr(b.value, "args", None) or []:
            if isinstance(arg, relax.Var):
                user_of.setdefault(arg, []).append(b)
    outputs = {}
    for b in bindings:
        if layer_name_of(b.value, mod) is None:
            continue
        chain = []
        var = b.var
        consumer = None
        while counts.get(var, 0) == 1 and len(user_of.get(var, [])) == 1:
            nxt = user_of[var][0]
            name = layer_name_of(nxt.value, mod)
            if name is not None:
                if _is_calibrated(mod[nxt.value.op]) and len(nxt.value.args) == 1:
                    consumer = nxt
                break
            if _op(nxt.value) not in TRANSPARENT_OPS or not nxt.value.args[0].same_as(var):
                break
            if _op(nxt.value) == "relax.nn.max_pool2d" and str(nxt.value.attrs.layout) != "NCHW":
                break
            chain.append(nxt)
            var = nxt.var
        if consumer is not None and _is_calibrated(mod[b.value.op]):
            outputs[b.var] = LayerOutput(b.var, True, consumer.var, layer_name_of(consumer.value, mod), chain)
            continue
        lead = []
        lo, hi = -math.inf, math.inf
        for nxt in chain:
            if _op(nxt.value) not in ACTIVATION_OPS:
                break
            a, c = activation_bounds(nxt.value)
            lo, hi = max(lo, a), min(hi, c)
            lead.append(nxt)
        outputs[b.var] = LayerOutput(
            b.var, False, chain=lead,
            float_lo=None if lo == -math.inf else lo, float_hi=None if hi == math.inf else hi)
    return outputs


def integer_bounds(chain: list, act) -> tuple[int, int]:
    """Code clamp [lo, hi] of an integer edge: the consumer's code range narrowed by ReLU/Clip in the chain."""
    lo, hi = 0, act.qmax
    for binding in chain:
        if _op(binding.value) in ACTIVATION_OPS:
            a, c = activation_bounds(binding.value)
            if a != -math.inf:
                lo = max(lo, act.code_of(a))
            if c != math.inf:
                hi = min(hi, act.code_of(c))
    return lo, max(lo, hi)
