"""Which cost model costs a target's plans by default."""

from __future__ import annotations

import functools
from typing import Iterable

from ..precision import Precision
from ..targets import CompileTarget
from .analytical import AnalyticalModel, DatapathModel


def default_cost_model(target: CompileTarget | None = None, precisions: Iterable[Precision] = ()):
    """:class:`~tvm_mp.cost_models.analytical.DatapathModel` when any precision is a number format (it costs every
    kind on one scale), else the target's default model (``target.default_cost_model``): "whole-model", the
    host's shipped :class:`~tvm_mp.cost_models.whole_model.WholeModel` (XGBoost on kernels timed inside built
    models, plus the fixed per-inference terms), or "analytical", the analytical model of tvm-mp's integer
    kernels."""
    if any(not p.is_integer for p in precisions):
        return DatapathModel()
    name = target.default_cost_model if target is not None else "analytical"
    if name == "whole-model":
        return shipped_whole_model()
    if name != "analytical":
        raise ValueError(f"unknown default cost model {name!r}")
    return AnalyticalModel()


@functools.lru_cache(maxsize=1)
def shipped_whole_model():
    """The host's shipped :class:`~tvm_mp.cost_models.whole_model.WholeModel`, read once per process (about 1 s:
    its XGBoost trees); it is only ever read from, so every compile can share it."""
    from .whole_model import WholeModel

    return WholeModel.default()
