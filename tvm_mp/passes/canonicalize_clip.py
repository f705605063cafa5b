"""CanonicalizeClip: turn TVM's ONNX import of ``Clip`` back into one ``R.clip``.

TVM's ONNX importer lowers ``Clip(x, min, max)`` (opset >= 11) to ``call_tir`` of ``topi.maximum`` and
``topi.minimum`` PrimFuncs with scalar constant bounds, which hides a ReLU6 from every graph-level pass.

Rewrites: ``call_tir(minimum, (call_tir(maximum, (x, lo)), hi))`` -> ``R.clip(x, lo, hi)``, and a lone
``call_tir(maximum, (x, lo))`` / ``call_tir(minimum, (x, hi))`` with a scalar constant bound -> ``R.clip`` with
an infinite other bound. A PrimFunc counts as ``maximum``/``minimum`` when its body is exactly that elementwise
op of the tensor and the scalar (checked on the TIR, not by name).

Leaves alone: maximum/minimum of two tensors, non-float dtypes, anything else. Idempotent.
Needs before it: constant folding (the bounds must be scalar constants). Runs inside
:class:`~tvm_mp.passes.Canonicalize` (and so in :func:`tvm_mp.load_onnx`), after the first constant folding; the
rewrite itself is :func:`tvm_mp.canonical.canonicalize_clip`.
"""

from __future__ import annotations

import tvm

from ..canonical import canonicalize_clip
from ..errors import ensure_ffi_registration


@tvm.transform.module_pass(opt_level=0, name="CanonicalizeClip")
class CanonicalizeClip:
    """Fold imported maximum/minimum PrimFunc calls into ``R.clip`` (see module docstring)."""

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        ensure_ffi_registration()
        return canonicalize_clip(mod)
