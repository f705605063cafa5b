"""The order of tvm-mp's passes, in phases. The one place that says which pass runs when.

Phase 0, canonicalize: Canonicalize (entry ``main``, weights folded to constants; a no-op on a canonical module)
Phase 1, annotate:  AnnotatePrecision(plan, activation ranges)
Phase 2, quantize:  QuantizeWeights(calibration statistics: GPTQ rounding)
Phase 3, lower:     RewriteMixedPrecision (integer kernels, integer edges between layers), then
                    ScheduleRemainingOps (the fp32 ops legalized and given the default CPU schedule)

After these, the module is an ordinary Relax module: ``tvm.compile`` (TVM's default pipeline) builds it.
A user with their own flow puts :func:`mixed_precision_passes` into their ``tvm.transform.Sequential``.
"""

from __future__ import annotations

from typing import Mapping

import tvm

from ..precision import PrecisionPlan
from ..quantize.calibrate import ActivationRange
from .annotate_precision import AnnotatePrecision
from .canonicalize import Canonicalize
from .quantize_weights import QuantizeWeights
from .rewrite_mixed_precision import RewriteMixedPrecision
from .schedule_remaining_ops import ScheduleRemainingOps


def canonicalize_phase() -> list:
    return [Canonicalize()]


def annotate_phase(plan: PrecisionPlan, activations: Mapping[str, ActivationRange] | None) -> list:
    return [AnnotatePrecision(plan, activations)]


def quantize_phase(statistics: Mapping[str, ActivationRange] | None = None, weights: Mapping | None = None) -> list:
    return [QuantizeWeights(statistics, weights=weights)]


def lower_phase(schedule: bool = True, target=None, database=None) -> list:
    passes = [RewriteMixedPrecision(schedule=schedule, target=target, database=database)]
    return passes + ([ScheduleRemainingOps(target=target)] if schedule else [])


def mixed_precision_passes(plan: PrecisionPlan, activations: Mapping[str, ActivationRange] | None,
                           schedule: bool = True) -> list:
    """All tvm-mp passes in order, Canonicalize first. The activation ranges must come from the canonical module
    (``tvm_mp.frontend.canonicalize(mod)``): calibration reads its ``main``."""
    return (canonicalize_phase() + annotate_phase(plan, activations) + quantize_phase(activations)
            + lower_phase(schedule))


def mixed_precision_pipeline(plan: PrecisionPlan, activations: Mapping[str, ActivationRange] | None,
                             schedule: bool = True) -> tvm.transform.Pass:
    """One Sequential pass running every tvm-mp pass."""
    return tvm.transform.Sequential(mixed_precision_passes(plan, activations, schedule), name="tvm_mp")
