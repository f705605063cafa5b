"""tvm-mp's Relax passes: each a ``tvm.transform.Pass`` to drop into a ``tvm.transform.Sequential``.

:class:`Canonicalize` comes first: it brings a module a TVM user already has (``from_onnx`` output, an
``export_tvm`` module with bound params, TVMScript) into the form the other passes read. Then
:class:`AnnotatePrecision`, :class:`QuantizeWeights`, :class:`RewriteMixedPrecision`, :class:`ScheduleRemainingOps`
(see :mod:`.pipeline`)::

    seq = tvm.transform.Sequential([Canonicalize(), *mixed_precision_passes(plan, ranges)])
"""

from .annotate_precision import AnnotatePrecision
from .canonicalize import Canonicalize
from .pipeline import mixed_precision_passes, mixed_precision_pipeline
from .quantize_weights import QuantizeWeights
from .rewrite_mixed_precision import RewriteMixedPrecision
from .schedule_remaining_ops import ScheduleRemainingOps

__all__ = [
    "AnnotatePrecision",
    "Canonicalize",
    "QuantizeWeights",
    "RewriteMixedPrecision",
    "ScheduleRemainingOps",
    "mixed_precision_passes",
    "mixed_precision_pipeline",
]
