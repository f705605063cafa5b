"""Which cost model costs a target's plans: the target's default, or the one a user names (an object, a name, or a
model file written by ``tvm-mp cost-model train``), and how reports name it."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..precision import Precision
from ..targets import CompileTarget
from .analytical import AnalyticalModel, DatapathModel
from .base import CostModelError, Estimate, Workload

#: Cost models a user can name instead of giving a file (``--cost-model NAME``).
NAMED = ("analytical", "datapath", "xgboost", "whole-model")


def default_cost_model(target: CompileTarget | None = None, precisions: Iterable[Precision] = ()):
    """:class:`~tvm_mp.cost_models.analytical.DatapathModel` when any precision is a number format (it costs every
    kind on one scale), else the target's default model (``target.default_cost_model``): "whole-model" for x86-64
    CPU targets (``host``, ``llvm``), the shipped :class:`~tvm_mp.cost_models.whole_model.WholeModel` (latency:
    XGBoost on kernels timed inside built models, plus the fixed per-inference terms; energy: the analytical CPU
    model, labelled "modelled"; read once per process, about 1 s, only when a plan is costed), or "analytical",
    the analytical model of tvm-mp's integer kernels (other targets, and no target given)."""
    if any(not p.is_integer for p in precisions):
        return DatapathModel()
    name = target.default_cost_model if target is not None else "analytical"
    if name == "whole-model":
        return shipped_whole_model()
    if name != "analytical":
        raise ValueError(f"unknown default cost model {name!r}")
    return AnalyticalModel()


@dataclass(frozen=True)
class LoadedCostModel:
    """A cost model read from a file (an XGBoost model as ``tvm-mp cost-model train --out`` writes it): predicts as
    the model does; reports name it with its file and what it was trained on."""

    model: Any
    path: Path

    def predict(self, workloads: Sequence[Workload]) -> Estimate:
        return self.model.predict(workloads)

    @property
    def name(self) -> str:
        info = getattr(self.model, "info", None) or {}
        trained = ""
        if info.get("records"):
            devices = ", ".join(str(d) for d in info.get("devices", ())) or "?"
            trained = f", trained on {info['records']} records of {devices}"
        return f"{type(self.model).__name__} ({self.path.name}{trained})"


def load_cost_model(path: str | Path) -> LoadedCostModel:
    """The XGBoost cost model in ``path`` (one-line errors for a missing, unreadable or foreign file)."""
    from .xgb import XGBCostModel

    path = Path(path)
    if not path.is_file():
        raise CostModelError(f"cost model file {path} not found: give a model written by `tvm-mp cost-model train "
                             f"--records RECORDS --out {path.name}`, or one of {', '.join(NAMED)}")
    return LoadedCostModel(XGBCostModel.load(path), path)


def resolve_cost_model(spec: Any):
    """The cost model ``spec`` names: a model object (anything with ``predict(workloads)``) as it is; a path to a model
    file (:func:`load_cost_model`); or a name: ``"analytical"``, ``"datapath"``, ``"xgboost"`` (the isolated-kernel
    model shipped with tvm-mp), ``"whole-model"`` (the host's shipped whole-model predictor)."""
    if hasattr(spec, "predict"):
        return spec
    if isinstance(spec, (str, Path)):
        text = str(spec).strip()
        if isinstance(spec, str) and text in NAMED and not Path(text).is_file():
            if text == "analytical":
                return AnalyticalModel()
            if text == "datapath":
                return DatapathModel()
            if text == "whole-model":
                return shipped_whole_model()
            from .xgb import XGBCostModel

            return XGBCostModel.default()
        return load_cost_model(text)
    raise CostModelError(f"cost_model must be a cost model (with predict), a model file or one of "
                         f"{', '.join(NAMED)}; got {type(spec).__name__}")


def cost_model_name(model: Any) -> str:
    """How reports name ``model``: its class, and for a model read from a file the file and its training data."""
    if isinstance(model, LoadedCostModel):
        return model.name
    description = getattr(model, "description", None)  # e.g. WholeModel: what gives latency and energy
    return description if isinstance(description, str) and description else type(model).__name__


@functools.lru_cache(maxsize=1)
def shipped_whole_model():
    """The host's shipped :class:`~tvm_mp.cost_models.whole_model.WholeModel`, read once per process (about 1 s:
    its XGBoost trees); it is only ever read from, so every compile can share it."""
    from .whole_model import WholeModel

    return WholeModel.default()
