"""Budget-driven compilation: ``tvm_mp.compile(mod, budget=Budget(...), calibration=..., accuracy_fn=...)``.

layer discovery -> cost prediction -> search -> rewrite -> build -> report:

1. the layers of ``mod`` and their candidate precisions (:mod:`tvm_mp.search.space`);
2. every layer at every option through the cost model in one batch (:mod:`tvm_mp.search.costs`); a budget no plan
   can meet raises :class:`~tvm_mp.search.costs.BudgetError` with the smallest achievable value of each limit;
3. per-layer sensitivity, the ILP optimum of that additive guide, then simulated annealing on the real score
   (``accuracy_fn`` on the plan's NumPy reference, or top-1 agreement with fp32 on the calibration data);
4. the compile driver (:func:`tvm_mp.driver.build`) with the search's activation ranges and rounded weights
   (calibrated and rounded once) and the search's cost model, so the report's per-layer and total latency/energy
   are the ones the search used (energy labelled by its basis, "modelled" on CPUs);
5. the accuracy from ``accuracy_fn`` on the compiled model, and -- on the host -- the measured latency of the
   built model. ``model.search`` keeps the outcome (:class:`BudgetOutcome`).
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np
import tvm

from ..budget import Budget
from ..canonical import canonicalize
from ..driver import build
from ..errors import CalibrationError, Error, PlanError
from ..targets import parse
from .annealing import AnnealConfig
from .costs import FIT_RTOL, METRICS, BudgetError, check_budget
from .pareto import SearchContext, optimize, search_context
from .problem import SearchResult

logger = logging.getLogger(__name__)

#: Runs of the built model timed for the measured latency (after one warm-up run).
MEASURE_RUNS = 15


@dataclass(frozen=True)
class BudgetOutcome:
    """What the budget search decided and how the result compares with the budget.

    ``predicted``: the plan's totals by the cost model (``energy_uj``, ``latency_ms``, ``memory_kb``).
    ``search_score``: the plan's score during the search (``metric``), on the NumPy reference.
    ``measured_latency_ms``: median wall time of one inference of the built model on this host (None when the
    target is not this host).
    """

    budget: Budget
    result: SearchResult
    predicted: Mapping[str, float]
    energy_basis: str
    cost_model: str
    metric: str
    search_score: float
    measured_latency_ms: float | None = None

    def meets_budget(self) -> bool:
        """True when every limit holds by the cost model's estimate."""
        return all(self.predicted[m] <= getattr(self.budget, m) * (1 + FIT_RTOL) for m in METRICS
                   if getattr(self.budget, m) is not None)

    def to_dict(self) -> dict:
        return {"budget": {m: getattr(self.budget, m) for m in METRICS}, "predicted": dict(self.predicted),
                "energy_basis": self.energy_basis, "cost_model": self.cost_model, "metric": self.metric,
                "search_score": self.search_score, "measured_latency_ms": self.measured_latency_ms,
                "meets_budget": self.meets_budget(), "search": self.result.to_dict()}


def measure_latency_ms(model, runs: int = MEASURE_RUNS) -> float:
    """Median wall time (ms) of ``model.run`` on one zero input of the compiled shape."""
    inputs = [np.zeros(shape, dtype=np.float32) for shape in model._input_shapes]
    model.run(*inputs)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model.run(*inputs)
        times.append((time.perf_counter() - start) * 1e3)
    return float(statistics.median(times))


def compile_with_budget(mod: tvm.IRModule, budget: Budget, target: Any = None, calibration: Iterable | None = None,
                        accuracy_fn=None, calibration_method: str = "mse", percentile: float = 99.99, *,
                        options=None, cost_model=None, seed: int = 0, config: AnnealConfig | None = None,
                        metric: str = "agreement", measure: bool = True, progress: bool | None = None,
                        database: Any = None, context: SearchContext | None = None):
    """Search the plan that scores best within ``budget``, compile it, and report (see module docstring).

    ``config``: the annealer's knobs (default: :func:`~tvm_mp.search.pareto.optimize`'s). ``context``: a
    :class:`~tvm_mp.search.pareto.SearchContext` of ``mod`` already built (its scorer remembers every plan it
    scored, so a later :func:`~tvm_mp.search.pareto.explore` or search on the same context reuses them); it
    replaces ``accuracy_fn``/``metric``/``options``/``cost_model`` for the search, and the budget is checked
    against it.
    """
    if not isinstance(budget, Budget):
        raise PlanError(f"budget must be a tvm_mp.Budget, e.g. Budget(energy_uj=20.0), got {type(budget).__name__}")
    if calibration is None:
        raise CalibrationError("budget-driven compile needs calibration=[batches of representative inputs]: the "
                               "search scores plans on them")
    if not isinstance(mod, tvm.IRModule):
        raise Error(f"compile needs a tvm.IRModule (from tvm_mp.load_onnx or a TVM frontend), got "
                    f"{type(mod).__name__}")
    calibration = list(calibration)
    tgt = parse(target)
    mod = canonicalize(mod)
    if context is None:
        ctx = search_context(mod, calibration, accuracy_fn=accuracy_fn, metric=metric, options=options,
                             cost_model=cost_model, target=tgt, budget=budget, progress=progress,
                             calibration_method=calibration_method, percentile=percentile)
    else:
        ctx = context
        check_budget(ctx.costs, budget)
    start = time.perf_counter()
    result, _ = optimize(ctx, budget, np.random.default_rng(seed), config)
    logger.info("budget search: %d plans scored in %.1f s; chosen %s", result.evaluations,
                time.perf_counter() - start,
                " ".join(f"{name}={prec}" for name, prec in result.plan.items()))
    if not result.feasible:  # check_budget passed, so the guide's ILP always finds a feasible plan
        raise BudgetError(f"the search found no plan within {budget}; widen the options or raise the limits")
    plan = result.plan
    # one calibration, one rounding: the driver takes the search's ranges and rounded weights
    model = build(mod, plan, tgt, ranges=ctx.scorer.ranges, weights=ctx.scorer.evaluator.bank.rounded_weights(),
                  accuracy_fn=accuracy_fn, cost_model=ctx.costs.model, database=database)
    index = ctx.space.index_of(plan)
    predicted = ctx.costs.totals(index)
    measured = measure_latency_ms(model) if measure and tgt.is_host else None
    model.search = BudgetOutcome(budget, result, predicted, ctx.costs.energy_basis, ctx.costs.model_name,
                                 ctx.scorer.name, -result.objective, measured)
    return model
