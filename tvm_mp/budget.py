"""Budget: the limits a precision search must meet. A frozen, self-validating value type."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from .errors import PlanError


@dataclass(frozen=True)
class Budget:
    """Upper limits per inference. ``None`` means no limit on that quantity; at least one limit must be set."""

    energy_uj: float | None = None
    latency_ms: float | None = None
    memory_kb: float | None = None

    def __post_init__(self) -> None:
        set_any = False
        for name in ("energy_uj", "latency_ms", "memory_kb"):
            value = getattr(self, name)
            if value is None:
                continue
            set_any = True
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise PlanError(f"Budget.{name}={value!r} is a {type(value).__name__}, not a number: give a positive "
                                f"number, e.g. Budget({name}=20.0)")
            if not math.isfinite(value) or value <= 0:
                raise PlanError(f"Budget.{name}={value!r} is invalid: give a positive finite number or None")
            if type(value) is not float:  # ints and NumPy numbers: kept as plain floats (JSON, arithmetic)
                object.__setattr__(self, name, float(value))
        if not set_any:
            raise PlanError("Budget needs at least one limit: energy_uj, latency_ms or memory_kb")
