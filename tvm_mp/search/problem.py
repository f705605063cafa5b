"""What every search algorithm solves: minimize an objective over index vectors of a search space, subject to a
:class:`~tvm_mp.budget.Budget` on additive costs. Shared pieces: objectives, budget violation, repair, results.

Objectives are minimized. :class:`AdditiveObjective` is a ``[layer, option]`` table summed over layers (e.g. the
per-layer output-noise sensitivity: the exact reference the ILP solves); :class:`ScoreObjective` is minus the
score of the plan (e.g. real top-1 accuracy), evaluated by a :class:`~tvm_mp.search.accuracy.Scorer` and not
additive. A problem may carry a ``guide``: an additive table that cheap steps (repair, greedy) use to judge moves
when the objective itself is expensive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from ..budget import Budget
from ..errors import Error, PlanError
from ..precision import PrecisionPlan
from .costs import FIT_RTOL, CostTable
from .space import SearchSpace


class AdditiveObjective:
    """``sum_l table[l, index[l]]``; ``table`` is ``[layers, options]`` (padding entries inf)."""

    additive = True

    def __init__(self, table: np.ndarray, name: str = "additive"):
        self.table = np.asarray(table, dtype=np.float64)
        self.name = name
        self._rows = np.arange(self.table.shape[0])
        self.calls = 0

    def value(self, index: np.ndarray) -> float:
        self.calls += 1
        return float(self.table[self._rows, index].sum())

    @property
    def evaluations(self) -> int:
        return self.calls


class ScoreObjective:
    """Minus the score of the plan (higher scores are better; the search minimizes)."""

    additive = False

    def __init__(self, scorer, space: SearchSpace):
        self.scorer = scorer
        self.space = space
        self.name = f"-{scorer.name}"
        self._seen: dict = {}

    def value(self, index: np.ndarray) -> float:
        key = tuple(int(k) for k in index)
        if key not in self._seen:
            self._seen[key] = -self.scorer.score(self.space.plan(index))
        return self._seen[key]

    @property
    def evaluations(self) -> int:
        """Distinct plans evaluated through this objective."""
        return len(self._seen)

    def seen(self) -> dict:
        return dict(self._seen)


@dataclass(frozen=True, eq=False)
class Problem:
    """A search problem: space, cost table, budget, objective (minimized) and an optional additive guide."""

    space: SearchSpace
    costs: CostTable
    budget: Budget
    objective: object
    guide: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.costs.space is not self.space and self.costs.space.to_dict() != self.space.to_dict():
            raise PlanError("the cost table was made for another search space: build both from the same space")
        if not isinstance(self.budget, Budget):
            raise PlanError(f"Problem.budget must be a tvm_mp.Budget, got {type(self.budget).__name__}")
        if not hasattr(self.objective, "value"):
            raise PlanError("Problem.objective needs a value(index) method (AdditiveObjective or ScoreObjective)")
        guide = self.guide
        if guide is None and getattr(self.objective, "additive", False):
            guide = self.objective.table
        if guide is not None:
            guide = np.asarray(guide, dtype=np.float64)
            if guide.shape != (self.space.n_layers, self.space.max_options):
                raise PlanError(f"guide table must have shape {(self.space.n_layers, self.space.max_options)}")
        object.__setattr__(self, "guide", guide)
        limits = self.costs.limits(self.budget)
        object.__setattr__(self, "_limits", limits)
        # costs divided by their limit: [K, L, O]; a plan fits when every row sums to <= 1
        norm = np.stack([self.costs.array(m) / lim for m, lim in limits.items()])
        object.__setattr__(self, "_norm", norm)
        object.__setattr__(self, "_rows", np.arange(self.space.n_layers))
        object.__setattr__(self, "_sizes", self.space.sizes)

    @property
    def limits(self) -> dict[str, float]:
        return dict(self._limits)

    @property
    def normalized_costs(self) -> np.ndarray:
        """``[limit, layer, option]`` costs divided by their limit (read-only view)."""
        return self._norm

    def totals(self, index) -> np.ndarray:
        """Totals of the limited metrics divided by their limits, in :attr:`limits` order."""
        return self._norm[:, self._rows, index].sum(axis=1)

    def violation(self, index) -> float:
        """Sum over limits of the relative excess ``max(0, total / limit - 1)`` (0 when the plan fits)."""
        excess = self.totals(index) - (1.0 + FIT_RTOL)
        return float(excess[excess > 0].sum())

    def feasible(self, index) -> bool:
        return bool((self.totals(index) <= 1.0 + FIT_RTOL).all())

    def repair(self, index, guide: np.ndarray | None = None, cost_only: bool = False,
               frozen: Sequence[int] = (), one_shot: bool = True) -> np.ndarray:
        """Lower layers until the plan fits. Each step: if some single-layer change makes the plan fit (and
        ``one_shot``), the one with the least guide increase; otherwise the change with the least guide increase per
        unit of violation removed
        (with no guide, or ``cost_only``, the change removing the most violation). Layers in ``frozen`` are changed
        only if the others cannot help. Returns a feasible index vector, or the least violating one reached if the
        budget cannot be met with these options."""
        guide = None if cost_only else (self.guide if guide is None else guide)
        idx = np.array(index, dtype=np.int64)
        rows = self._rows
        norm = self._norm
        frozen = list(frozen)
        for _ in range(int(self._sizes.sum()) + 1):
            totals = norm[:, rows, idx].sum(axis=1)
            excess = totals - (1.0 + FIT_RTOL)
            if (excess <= 0).all():
                break
            viol = excess[excess > 0].sum()
            new_excess = (totals[:, None, None] - norm[:, rows, idx][:, :, None] + norm) - (1.0 + FIT_RTOL)
            new_viol = np.where(new_excess > 0, new_excess, 0.0).sum(axis=0)  # [L, O]; inf where padded
            gain = viol - new_viol
            useful = gain > 1e-15
            if frozen:
                held = useful.copy()
                held[frozen] = False
                if held.any():
                    useful = held
            if not useful.any():
                break
            fits = useful & (new_viol == 0.0) if one_shot else np.zeros_like(useful)
            if guide is not None:
                dpen = guide - guide[rows, idx][:, None]
                if fits.any():
                    score = np.where(fits, dpen, np.inf)
                else:
                    score = np.where(useful, dpen / np.where(useful, gain, 1.0), np.inf)
            else:
                score = np.where(useful, -gain, np.inf)
            flat = int(np.argmin(score))
            layer, option = divmod(flat, norm.shape[2])
            idx[layer] = option
        return idx

    def result(self, method: str, index, seconds: float, evaluations: int, history: Sequence[float] = (),
               objective: float | None = None, notes: Mapping[str, object] | None = None) -> "SearchResult":
        index = np.asarray(index, dtype=np.int64)
        value = self.objective.value(index) if objective is None else float(objective)
        return SearchResult(method, self.space.plan(index), tuple(int(k) for k in index), value,
                            self.feasible(index), self.costs.totals(index), self.costs.budget_use(index, self.budget),
                            float(seconds), int(evaluations), tuple(float(h) for h in history), dict(notes or {}))


@dataclass(frozen=True)
class SearchResult:
    """What a search found: the plan, its objective value (minimized), whether it fits the budget, its cost totals
    and the fraction of each limit it uses, the wall time, the number of objective evaluations and, for
    iterative methods, the best objective over time."""

    method: str
    plan: PrecisionPlan
    index: tuple[int, ...]
    objective: float
    feasible: bool
    totals: Mapping[str, float]
    budget_use: Mapping[str, float]
    seconds: float
    evaluations: int
    history: tuple[float, ...] = ()
    notes: Mapping[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"method": self.method, "plan": {n: str(p) for n, p in self.plan.items()}, "index": list(self.index),
                "objective": self.objective, "feasible": self.feasible, "totals": dict(self.totals),
                "budget_use": dict(self.budget_use), "seconds": self.seconds, "evaluations": self.evaluations,
                "notes": {k: v for k, v in self.notes.items() if isinstance(v, (int, float, str, bool))}}


def check_rng(rng) -> np.random.Generator:
    """Searches take randomness only as a seeded generator (same seed, same plan)."""
    if not isinstance(rng, np.random.Generator):
        raise Error("pass rng=np.random.default_rng(seed): searches take a seeded numpy Generator")
    return rng

