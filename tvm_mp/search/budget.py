"""Budget-driven compilation: ``tvm_mp.compile(mod, budget=Budget(...), calibration=..., accuracy_fn=...)``.

layer discovery -> cost prediction -> search -> rewrite -> build -> report:

1. the layers of ``mod`` and their candidate precisions (:mod:`tvm_mp.search.space`);
2. every layer at every option through the cost model in one batch (:mod:`tvm_mp.search.costs`); a budget no plan
   can meet raises :class:`~tvm_mp.search.costs.BudgetError` with the smallest achievable value of each limit;
3. the search (:func:`~tvm_mp.search.pareto.optimize`): by default integer programs on a per-layer noise proxy
   and a few real checks (:mod:`tvm_mp.search.guided`); with an ``AnnealConfig``, the ILP optimum of the measured
   sensitivity, then simulated annealing. Real scores are ``accuracy_fn`` on the plan's NumPy reference, or top-1
   agreement with fp32 on the calibration data;
4. the compile driver (:func:`tvm_mp.driver.build`) with the search's activation ranges and rounded weights
   (calibrated and rounded once) and the search's cost model, so the report's per-layer and total latency/energy
   are the ones the search used (energy labelled by its basis, "modelled" on CPUs);
5. the accuracy from ``accuracy_fn`` on the compiled model;
6. **verification by measurement** (a latency budget on a target that can be measured: this host): the built model
   is timed (:func:`measure_in_model`: one inference of its ``main`` as the whole-model predictor was trained,
   median and spread of rounds, :class:`Measurement`). **Safety margin**: the search does not spend the budget
   to the limit, where prediction error and timing noise decide by a coin flip whether the built model is under:
   each round searches under ``limit x (1 - margin)`` (:attr:`Round.search_limit_ms`): the first round's margin
   is ``margin`` (default :data:`DEFAULT_MARGIN`, from the whole-model predictor's held-out error), a later
   round's is the last measurement's relative noise twice over, at least :data:`MIN_MARGIN` (the corrected costs
   carry the plan-to-plan error and the drift between timings). When the corrected costs cannot reach the
   tightened limit, the margin shrinks to what they reach (down to none). A plan is accepted when its measured
   median **plus its noise** is within the limit; otherwise the latency costs are corrected by the ratio
   measured / predicted of that plan (costs corrected, never the limit) and the search runs again, at most
   :data:`MAX_ROUNDS` rounds. When no round's plan is under by median + noise, the returned plan is the fastest
   one under the limit by its median, else one over it by less than its own noise: so the plan returned is under
   the limit by the median whenever a round found one, and within the noise otherwise. The result
   says predicted and measured values and whether the budget is met by measurement; a budget no measured plan meets
   raises :class:`~tvm_mp.search.costs.BudgetError` with the best measured plan's figures.
   ``model.search`` keeps the outcome (:class:`BudgetOutcome`) with every round.
   On the accelerator (target ``"accel"``) the figures checked are the simulator's (the build's report: cycles
   at the clock, energy from the event counts), for energy and latency limits alike; a missed limit corrects that
   metric's costs by simulated / predicted and the search runs again.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import tvm

from ..budget import Budget
from ..canonical import canonicalize
from ..driver import build
from ..errors import CalibrationError, Error, PlanError
from ..kinds import DEFAULT_CALIBRATION_METHOD
from ..targets import parse
from .annealing import AnnealConfig
from .costs import FIT_RTOL, METRICS, BudgetError, check_budget
from .explain import explain_plan
from .guided import GuidedConfig
from .pareto import SearchContext, optimize, search_context
from .problem import SearchResult

logger = logging.getLogger(__name__)

#: Runs of the built model timed for the measured latency (after one warm-up run).
MEASURE_RUNS = 15
#: Search rounds at most when the measured latency misses the budget (the first search included).
MAX_ROUNDS = 3
#: Safety margin of the first round (fraction of the latency limit kept free): about half the whole-model
#: predictor's held-out median |error| (docs/bench_predict_model.md), so a plan predicted under the tightened
#: limit is under the limit itself more often than by a coin flip, without giving up much precision.
DEFAULT_MARGIN = 0.03
#: Smallest margin of a round searched on measured-corrected costs (the timing drift between two measurements
#: of one model on this host: docs/bench_predict_model.md, test-retest).
MIN_MARGIN = 0.015


@dataclass(frozen=True)
class Measurement:
    """Measured latency of a built model: the median of repeats and its noise (half the interquartile range, ms)."""

    latency_ms: float
    noise_ms: float = 0.0
    source: str = "host"

    def meets(self, limit_ms: float) -> bool:
        """True when the median is within the limit, give or take the measurement's own noise."""
        return self.latency_ms <= limit_ms + self.noise_ms

    def surely_meets(self, limit_ms: float) -> bool:
        """True when the median plus the noise is within the limit (what a measured budget compile accepts)."""
        return self.latency_ms + self.noise_ms <= limit_ms

    @property
    def relative_noise(self) -> float:
        return self.noise_ms / self.latency_ms if self.latency_ms > 0 else 0.0


@dataclass(frozen=True)
class Round:
    """One search round of a measured budget compile: the plan, its predicted and measured latency, the correction
    factor of the latency costs it was searched with, and the latency limit it was searched under (the budget's
    minus the safety margin; None: the budget's own)."""

    plan: Any
    predicted_latency_ms: float
    measured: Measurement | None
    correction: float
    search_limit_ms: float | None = None

    def to_dict(self) -> dict:
        return {"plan": {n: str(p) for n, p in self.plan.items()}, "predicted_latency_ms": self.predicted_latency_ms,
                "measured_latency_ms": None if self.measured is None else self.measured.latency_ms,
                "noise_ms": None if self.measured is None else self.measured.noise_ms, "correction": self.correction,
                "search_limit_ms": self.search_limit_ms}


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
    measurement_noise_ms: float | None = None
    rounds: tuple[Round, ...] = field(default=())

    def meets_budget(self) -> bool:
        """True when every limit holds by the cost model's estimate (latency corrected by measurement, if any)."""
        return all(self.predicted[m] <= getattr(self.budget, m) * (1 + FIT_RTOL) for m in METRICS
                   if getattr(self.budget, m) is not None)

    def meets_budget_measured(self) -> bool | None:
        """True/False when the latency limit was checked by measuring the built model; None when not measured (no
        latency limit, or a target this host cannot run)."""
        if self.budget.latency_ms is None or self.measured_latency_ms is None:
            return None
        return Measurement(self.measured_latency_ms, self.measurement_noise_ms or 0.0).meets(self.budget.latency_ms)

    def to_dict(self) -> dict:
        return {"budget": {m: getattr(self.budget, m) for m in METRICS}, "predicted": dict(self.predicted),
                "energy_basis": self.energy_basis, "cost_model": self.cost_model, "metric": self.metric,
                "search_score": self.search_score, "measured_latency_ms": self.measured_latency_ms,
                "measurement_noise_ms": self.measurement_noise_ms, "meets_budget": self.meets_budget(),
                "meets_budget_measured": self.meets_budget_measured(),
                "rounds": [r.to_dict() for r in self.rounds], "search": self.result.to_dict()}


def measure(model, runs: int = MEASURE_RUNS) -> Measurement:
    """Median wall time (ms) of ``model.run`` on one zero input of the compiled shape, with half its IQR as noise."""
    specs = getattr(model, "inputs", None)  # a CompiledModel's InputSpecs (integer inputs keep their dtype)
    inputs = ([np.zeros(s.shape, s.dtype) for s in specs] if specs is not None
              else [np.zeros(shape, np.float32) for shape in model.input_shapes])
    model.run(*inputs)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model.run(*inputs)
        times.append((time.perf_counter() - start) * 1e3)
    q1, q3 = np.percentile(times, [25, 75])
    return Measurement(float(statistics.median(times)), float(q3 - q1) / 2.0)


def measure_latency_ms(model, runs: int = MEASURE_RUNS) -> float:
    """Median wall time (ms) of ``model.run`` on one zero input of the compiled shape."""
    return measure(model, runs).latency_ms


def compile_with_budget(mod: tvm.IRModule, budget: Budget, target: Any = None, calibration: Iterable | None = None,
                        accuracy_fn=None, calibration_method: str = DEFAULT_CALIBRATION_METHOD,
                        percentile: float = 99.99, *,
                        options=None, cost_model=None, seed: int = 0,
                        config: AnnealConfig | GuidedConfig | None = None,
                        metric: str = "agreement", measure: bool | Callable = True, progress: bool | None = None,
                        database: Any = None, max_rounds: int = MAX_ROUNDS, context: SearchContext | None = None,
                        margin: float = DEFAULT_MARGIN):
    """Search the plan that scores best within ``budget``, compile it, verify it by measurement, and report (see
    module docstring).

    ``measure``: True (time the built model on this host when the target is this host), False, or a function
    ``model -> Measurement`` (another device, or a test's stand-in).
    ``config``: the search's knobs: None or a :class:`~tvm_mp.search.guided.GuidedConfig` (the guided search: proxy
    integer programs and a few real checks), or an :class:`AnnealConfig` (annealing on the real score). ``context``: a
    :class:`~tvm_mp.search.pareto.SearchContext` of ``mod`` already built (its scorer remembers every plan it
    scored, so a later :func:`~tvm_mp.search.pareto.explore` or search on the same context reuses them); it
    replaces ``accuracy_fn``/``metric``/``options``/``cost_model`` for the search, and the budget is checked
    against it. ``margin``: the first round's safety margin on a measured latency limit (a fraction, 0 to
    spend the budget to the limit; see the module docstring).
    """
    if not isinstance(budget, Budget):
        raise PlanError(f"budget must be a tvm_mp.Budget, e.g. Budget(energy_uj=20.0), got {type(budget).__name__}")
    if calibration is None:
        raise CalibrationError("budget-driven compile needs calibration=[batches of representative inputs]: the "
                               "search scores plans on them")
    if not isinstance(mod, tvm.IRModule):
        raise Error(f"compile needs a tvm.IRModule (from tvm_mp.load_onnx or a TVM frontend), got "
                    f"{type(mod).__name__}")
    if isinstance(max_rounds, bool) or not isinstance(max_rounds, int) or max_rounds < 1:
        raise PlanError(f"max_rounds={max_rounds!r}: give a positive number of search rounds")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < 0.5:
        raise PlanError(f"margin={margin!r}: give the fraction of the latency limit to keep free, from 0 to below "
                        "0.5 (e.g. 0.03)")
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
    # the accelerator's figures come from its simulator (the report of the build), not from timing this host
    simulated = [m for m in ("energy_uj", "latency_ms") if tgt.kind == "accel" and getattr(budget, m) is not None]
    measurer = measure if callable(measure) else (
        _measure_host if measure and tgt.is_host and tgt.kind != "accel" else None)
    verify = (measurer is not None and budget.latency_ms is not None) or bool(simulated)
    rounds: list[Round] = []
    correction = 1.0
    factors: dict[str, float] = {}  # simulated / predicted of the accelerator's missed limits
    best = None  # (measurement, model, result, predicted, costs) of the fastest measured plan
    model = None
    chosen = None  # (model, result, predicted, costs, measured) returned
    under_median = None  # the same of the fastest plan under the limit by its median only (the first fallback)
    within_noise = None  # the same of a plan over the limit by less than its measurement's noise (the last one)
    next_margin = float(margin) if measurer is not None and budget.latency_ms is not None else 0.0
    for _ in range(max_rounds if verify else 1):
        if correction != 1.0:
            factors["latency_ms"] = correction
        costs = ctx.costs if not factors else ctx.costs.scaled(**factors)
        round_ctx = replace(ctx, costs=costs)
        if factors:
            try:
                check_budget(costs, budget)  # the corrected costs may show the budget out of reach
            except BudgetError as err:
                if under_median is not None or within_noise is not None:
                    break
                raise BudgetError(f"{err}. Measured: {_best_text(best) if best else _simulated_text(model)}") \
                    from None
        search_budget = _tightened(costs, budget, next_margin)
        start = time.perf_counter()
        result, _ = optimize(round_ctx, search_budget, np.random.default_rng(seed), config)
        logger.info("budget search: %d plans scored in %.1f s; chosen %s", result.evaluations,
                    time.perf_counter() - start, " ".join(f"{name}={prec}" for name, prec in result.plan.items()))
        if not result.feasible:  # check_budget passed, so the guide's ILP always finds a feasible plan
            raise BudgetError(f"the search found no plan within {budget}; widen the options or raise the limits")
        model = build(mod, result.plan, tgt, ranges=ctx.scorer.ranges,
                      weights=ctx.scorer.evaluator.bank.rounded_weights(), accuracy_fn=accuracy_fn,
                      cost_model=ctx.costs.model, database=database)
        predicted = costs.totals(costs.space.index_of(result.plan))
        measured = measurer(model) if measurer is not None else None
        rounds.append(Round(result.plan, predicted["latency_ms"], measured, correction,
                            search_budget.latency_ms if search_budget is not budget else None))
        if measured is not None and (best is None or measured.latency_ms < best[0].latency_ms):
            best = (measured, model, result, predicted, costs)
        if simulated:  # the accelerator: check the simulator's figures, correct the costs of what it missed
            missed = [m for m in simulated if getattr(model.report, m) > getattr(budget, m) * (1 + 1e-9)]
            if not missed:
                chosen = (model, result, predicted, costs, measured)
                break
            for m in missed:
                factors[m] = factors.get(m, 1.0) * getattr(model.report, m) / max(predicted[m], 1e-12)
            continue
        if not verify or measured.surely_meets(budget.latency_ms):
            chosen = (model, result, predicted, costs, measured)
            break
        if measured.latency_ms <= budget.latency_ms:
            if under_median is None or measured.latency_ms < under_median[4].latency_ms:
                under_median = (model, result, predicted, costs, measured)
        elif measured.meets(budget.latency_ms) and (within_noise is None
                                                    or measured.latency_ms < within_noise[4].latency_ms):
            within_noise = (model, result, predicted, costs, measured)
        # the plan is not under the limit by its median plus noise: correct the latency costs by what was measured
        # and search again under a margin of the measurement's noise; a plan under by its median, or over by less
        # than its noise, is kept in case no round does better
        correction *= measured.latency_ms / max(predicted["latency_ms"], 1e-12)
        next_margin = min(max(MIN_MARGIN, 2.0 * measured.relative_noise), 0.25)
    if chosen is None and under_median is not None:
        chosen = under_median
    if chosen is None:
        if simulated:
            raise BudgetError(f"no plan met {budget} by the accelerator simulator in {len(rounds)} round(s): "
                              f"{_simulated_text(model)}; raise the limit or allow lower precisions")
        if within_noise is None:
            raise BudgetError(f"no plan met latency_ms={budget.latency_ms:.4g} by measurement in {len(rounds)} "
                              f"round(s): {_best_text(best)}; raise the limit or allow lower precisions")
        chosen = within_noise
    model, result, predicted, costs, measured = chosen
    model.report = replace(model.report, explanation=explain_plan(ctx, result.plan, budget))
    model.search = BudgetOutcome(budget, result, predicted, costs.energy_basis, costs.model_name, ctx.scorer.name,
                                 -result.objective, None if measured is None else measured.latency_ms,
                                 None if measured is None else measured.noise_ms, tuple(rounds))
    return model


#: Rounds of the whole-model timing of a measured budget compile (each at least :data:`MEASURE_MIN_MS` of inferences).
MEASURE_ROUNDS = 9
MEASURE_MIN_MS = 10.0


def measure_in_model(model, rounds: int = MEASURE_ROUNDS, min_ms: float = MEASURE_MIN_MS) -> Measurement:
    """One inference of the built model's ``main`` on this host, timed as the whole-model predictor's training data
    was (:meth:`tvm_mp.measure.in_model.InModelSource.whole_ms`: the VM's time evaluator, two call counts
    differenced so its own fixed cost drops out; the thread's CPU clock with one TVM thread, else wall time):
    median of ``rounds`` rounds, half their interquartile range as noise. Zero inputs of the compiled shapes."""
    from ..measure.in_model import InModelSource, InModelTiming

    timing = InModelTiming(rounds=rounds, min_whole_ms=min_ms, reference=False, settle_waits=0)
    inputs = [np.zeros(s.shape, s.dtype) for s in model.inputs]
    times = InModelSource(timing).whole_ms(model, inputs)
    q1, q3 = np.percentile(times, [25, 75])
    clock = timing.resolved_clock()
    return Measurement(float(np.median(times)), float(q3 - q1) / 2.0, f"host ({clock} clock)")


def _measure_host(model) -> Measurement:
    return measure_in_model(model)


def _tightened(costs, budget: Budget, margin: float) -> Budget:
    """``budget`` with its latency limit lowered by ``margin`` (a fraction), or by less when the costs cannot reach
    that (halved twice, then none): ``budget`` itself when no margin is taken."""
    if margin <= 0 or budget.latency_ms is None:
        return budget
    for m in (margin, margin / 2, margin / 4):
        tight = replace(budget, latency_ms=budget.latency_ms * (1.0 - m))
        try:
            check_budget(costs, tight)
        except BudgetError:
            continue
        return tight
    return budget


def _simulated_text(model) -> str:
    r = model.report
    return f"the last plan simulated at {r.energy_uj:.4g} uJ and {r.latency_ms:.4g} ms"


def _best_text(best) -> str:
    measured, _, result, _, _ = best
    mix = ", ".join(sorted({str(p) for _, p in result.plan.items()}))
    return (f"the fastest measured plan ran in {measured.latency_ms:.4g} ms (+/- {measured.noise_ms:.2g}) with "
            f"layers at {mix}")
