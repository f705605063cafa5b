"""Canonicalize: bring a Relax module a TVM user already has into the form tvm-mp's passes read. The first pass.

Rewrites (see :mod:`tvm_mp.canonical` for the details):
  - the entry function becomes ``main``: ``main`` if there is one, else the single public Relax function (e.g.
    ``forward`` from ``relax.frontend.nn``'s ``export_tvm``), renamed;
  - constant subexpressions are folded, so every conv2d/matmul weight is one Relax constant
    (``permute_dims(W)`` of a Gemm/Linear weight becomes the constant ``W^T``);
  - the importer's Clip PrimFuncs become ``R.clip``; ``batch_norm`` is folded into the conv before it
    (``FoldBatchnormToConv2D``) or decomposed into arithmetic on constants (``DecomposeOpsForInference``);
  - trivial bindings and dead code are removed (``CanonicalizeBindings``, ``DeadCodeElimination``).

Leaves alone: a module already canonical (:func:`tvm_mp.load_onnx` output: returned as the same object),
modules tvm-mp's passes have already rewritten, and every op it does not fold (numerics are those of the fp32
module up to float rounding of the folded batch_norm).

Needs before it: a Relax module with its weights bound as constants (``relax.transform.BindParams`` or
``from_onnx(..., keep_params_in_input=False)``), static input shapes, and no legalization (run it before
``LegalizeOps`` / ``tvm.compile``'s pipeline). Otherwise it raises a one-line ``tvm_mp.Error`` saying what to
do. Must run before: :class:`~tvm_mp.passes.AnnotatePrecision` and the other tvm-mp passes.
"""

from __future__ import annotations

import tvm

from ..canonical import canonicalize
from ..errors import ensure_ffi_registration


@tvm.transform.module_pass(opt_level=0, name="tvm_mp.Canonicalize")
class Canonicalize:
    """Module pass running :func:`tvm_mp.frontend.canonicalize` (see module docstring).

    Parameters
    ----------
    entry: name of the entry function when the module has no ``main`` and several public Relax functions.
    """

    def __init__(self, entry: str | None = None):
        self.entry = entry

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        ensure_ffi_registration()
        return canonicalize(mod, self.entry)
