"""tvm-mp's Relax passes: each a ``tvm.transform.Pass`` to drop into a ``tvm.transform.Sequential``."""

from .annotate_precision import AnnotatePrecision
from .pipeline import mixed_precision_passes, mixed_precision_pipeline
from .quantize_weights import QuantizeWeights
from .rewrite_mixed_precision import RewriteMixedPrecision

__all__ = [
    "AnnotatePrecision",
    "QuantizeWeights",
    "RewriteMixedPrecision",
    "mixed_precision_passes",
    "mixed_precision_pipeline",
]
