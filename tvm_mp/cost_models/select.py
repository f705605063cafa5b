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
    if name == "accel":  # the accelerator's analytical mapping model, for the target's hardware description
        from .accel import AccelCostModel

        return AccelCostModel(target.hardware)
    if name != "analytical":
        raise ValueError(f"unknown default cost model {name!r}")
    return AnalyticalModel()


#: The unit of a model trained on emulated records (``tvm_mp.measure.records.EMULATED_UNIT``).
EMULATED_UNIT = "emulated instructions"
#: The ARM latency proxy's default rate: 1e6 emulated instructions per proxy millisecond (one per ns).
PROXY_INSTRUCTIONS_PER_MS = 1e6


@dataclass(frozen=True)
class LoadedCostModel:
    """A cost model read from a file (an XGBoost model as ``tvm-mp cost-model train --out`` writes it): predicts as
    the model does; reports name it with its file and what it was trained on.

    A model trained on emulated records (``model.unit == "emulated instructions"``, e.g. from ``tvm-mp tune
    --target aarch64`` without a device) is the **ARM latency proxy**: its predicted instruction counts become
    proxy milliseconds at ``instructions_per_ms`` (default :data:`PROXY_INSTRUCTIONS_PER_MS`, one instruction per
    ns), so latency budgets are read in those units (``Budget(latency_ms=0.5)`` = 500k emulated instructions per
    inference) and the report names the rate. It is a count scaled by a declared rate, not a time.
    """

    model: Any
    path: Path
    instructions_per_ms: float = PROXY_INSTRUCTIONS_PER_MS

    def __post_init__(self) -> None:
        if not (isinstance(self.instructions_per_ms, (int, float)) and self.instructions_per_ms > 0):
            raise CostModelError(f"instructions_per_ms={self.instructions_per_ms!r}: give a positive number")

    @property
    def is_proxy(self) -> bool:
        """True for a model predicting emulated instructions (read as proxy ms)."""
        return getattr(self.model, "unit", "ms") == EMULATED_UNIT

    def predict(self, workloads: Sequence[Workload]) -> Estimate:
        est = self.model.predict(workloads)
        if not self.is_proxy:
            return est
        scale = 1.0 / self.instructions_per_ms
        interval = None if est.latency_interval_ms is None else est.latency_interval_ms * scale
        return Estimate(est.latency_ms * scale, est.energy_uj, est.energy_basis, interval, est.energy_interval_uj,
                        {**est.notes, "latency": f"proxy: {EMULATED_UNIT} / {self.instructions_per_ms:g} per ms"})

    @property
    def name(self) -> str:
        info = getattr(self.model, "info", None) or {}
        trained = ""
        if info.get("records"):
            devices = ", ".join(str(d) for d in info.get("devices", ())) or "?"
            trained = f", trained on {info['records']} records of {devices}"
        proxy = (f"; ARM latency proxy: {EMULATED_UNIT} at {self.instructions_per_ms:g} per ms"
                 if self.is_proxy else "")
        return f"{type(self.model).__name__} ({self.path.name}{trained}{proxy})"


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
