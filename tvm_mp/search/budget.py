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
   median and spread of rounds, :class:`Measurement`); a plan that misses the limit is timed once more and the
   faster session counts (:func:`measure_confirmed`: other tenants of a shared host slow a whole session without
   widening its spread). **Safety margin**: the search does not spend the budget
   to the limit, where prediction error and timing noise decide by a coin flip whether the built model is under:
   each round searches under ``limit x (1 - margin)`` (:attr:`Round.search_limit_ms`): the first round's margin
   is ``margin`` (default :data:`DEFAULT_MARGIN`, from the whole-model predictor's held-out error), a later
   round's is the last measurement's relative noise twice over, at least :data:`MIN_MARGIN` (the corrected costs
   carry the plan-to-plan error and the drift between timings). When the corrected costs cannot reach the
   tightened limit, the margin shrinks to what they reach (down to none). A plan is accepted when its measured
   median **plus its noise** is within the limit; otherwise the latency costs are corrected and the search runs
   again, at most :data:`MAX_ROUNDS` searches. The correction (costs corrected, never the limit) is fitted on
   every plan the compile measured (:func:`_fit`): ``measured ~ scale x predicted + offset`` through the plan
   measured closest under the limit and the one closest over it, when both exist, else the ratio measured /
   predicted of the plan measured closest to the limit. **The floor**: a measured latency limit is never refused on
   the predicted costs alone. When the (corrected) costs put the limit below every plan, or every plan measured so
   far is over the limit, the space's fastest plan by the costs (:func:`fastest_index`) is built and measured (a
   :class:`Round` of kind "fastest"): it gives the correction a point under the limit, or shows that no plan of the
   space can meet it -- then (and only then, when no plan measured is within its noise of the limit) the compile
   raises :class:`~tvm_mp.search.costs.BudgetError` with the fastest measured plan's figures (ms, noise, layers).
   A searched plan the limit shaped (predicted near it) but measured, with its noise, below :data:`UNDERUSED` of it
   left budget unused (the costs over-predicted it): the costs are corrected and the search runs once more, and
   the better-scoring of the plans that meet the limit by measurement is returned. When that search's plan misses
   the limit, the costs are corrected by both measurements and the search runs again while searches remain (the
   digits CNN at 0.9x of w8a8: the first plan, far under the limit, scored 0.41-0.79 top-1; the third search's
   0.96); the plan that met is returned when no search is left or the corrected costs leave no room past it.
   When no search's plan is under the limit by median + noise but the fastest plan is, one more plan is built
   before the fastest is returned (a :class:`Round` of kind "blend"): the best-scoring searched plan with its
   layers moved to their fastest options, the largest saving first (by the corrected costs), until it is predicted
   under the limit minus the margin; it is returned when it meets the limit by median + noise and scores better
   than the fastest plan (searched plans that miss by about the timing noise would otherwise give way to the
   fastest plan, usually the least accurate of the space). Otherwise the plan returned is the fastest plan if it
   is under by median + noise (and meets the budget's other limits), else the fastest plan under the limit by its
   median, else one over it by less than its own noise. The result says predicted and measured values and
   whether the budget is met by measurement.
   ``model.search`` keeps the outcome (:class:`BudgetOutcome`) with every round.
   On the accelerator (target ``"accel"``) the figures checked are the simulator's (the build's report: cycles
   at the clock, energy from the event counts), for energy and latency limits alike; a missed limit corrects that
   metric's costs by simulated / predicted and the search runs again.
"""

from __future__ import annotations

import logging
import time
import warnings
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
from .problem import Problem, ScoreObjective, SearchResult

logger = logging.getLogger(__name__)

#: Search rounds at most when the measured latency misses the budget (the first search included).
MAX_ROUNDS = 3
#: Safety margin of the first round (fraction of the latency limit kept free): about half the whole-model
#: predictor's held-out median |error| (docs/bench_predict_model_<cpu>.md), so a plan predicted under the tightened
#: limit is under the limit itself more often than by a coin flip, without giving up much precision.
DEFAULT_MARGIN = 0.03
#: Smallest margin of a round searched on measured-corrected costs (the timing drift between two measurements
#: of one model on this host: docs/bench_predict_model_<cpu>.md, test-retest).
MIN_MARGIN = 0.015
#: A searched plan measured (median + noise) under this fraction of the latency limit left budget unused (the costs
#: over-predicted it): the compile corrects the costs and searches once more for a more accurate plan, and returns
#: the better-scoring of the two that meet the limit by measurement.
UNDERUSED = 0.9
#: What a round of a measured budget compile builds: a search's plan, the space's fastest plan (the floor), or a
#: blend of the best-scoring searched plan with the floor (see the module docstring).
ROUND_KINDS = ("search", "fastest", "blend")


_RTOL = 1e-9  # rounding of a limit computed from a measured figure
#: The line fitted through two measured plans is used only while its slope is within this factor of the plain
#: measured / predicted ratio (else the ratio is the correction: see :func:`_fit`).
MAX_SLOPE_RATIO = 3.0


@dataclass(frozen=True)
class Measurement:
    """Measured latency of a built model: the median of repeats and its noise (half the interquartile range, ms).
    ``sessions_ms``: the medians of every timing session when the model was timed more than once (a miss timed
    again, :func:`measure_confirmed`): this measurement is the fastest session's."""

    latency_ms: float
    noise_ms: float = 0.0
    source: str = "host"
    sessions_ms: tuple[float, ...] = ()

    def meets(self, limit_ms: float) -> bool:
        """True when the median is within the limit, give or take the measurement's own noise."""
        return self.latency_ms <= limit_ms * (1 + _RTOL) + self.noise_ms

    def surely_meets(self, limit_ms: float) -> bool:
        """True when the median plus the noise is within the limit (what a measured budget compile accepts)."""
        return self.latency_ms + self.noise_ms <= limit_ms * (1 + _RTOL)

    @property
    def relative_noise(self) -> float:
        return self.noise_ms / self.latency_ms if self.latency_ms > 0 else 0.0


@dataclass(frozen=True)
class Round:
    """One round of a measured budget compile: the plan, its predicted and measured latency, the correction of the
    latency costs it was searched with (``measured ~ correction x predicted + offset_ms``), and the latency limit it
    was searched under (the budget's minus the safety margin; None: the budget's own). ``kind``: "search" (a
    search's plan), "fastest" (the space's fastest plan by the costs, built and measured to learn the floor) or
    "blend" (the best-scoring searched plan with its costliest layers moved to the floor's options)."""

    plan: Any
    predicted_latency_ms: float
    measured: Measurement | None
    correction: float
    search_limit_ms: float | None = None
    offset_ms: float = 0.0
    kind: str = "search"

    def __post_init__(self) -> None:
        if self.kind not in ROUND_KINDS:
            raise PlanError(f"Round.kind={self.kind!r}: use one of {', '.join(ROUND_KINDS)}")

    def to_dict(self) -> dict:
        return {"plan": {n: str(p) for n, p in self.plan.items()}, "predicted_latency_ms": self.predicted_latency_ms,
                "measured_latency_ms": None if self.measured is None else self.measured.latency_ms,
                "noise_ms": None if self.measured is None else self.measured.noise_ms,
                "sessions_ms": None if self.measured is None else list(self.measured.sessions_ms),
                "correction": self.correction,
                "offset_ms": self.offset_ms, "search_limit_ms": self.search_limit_ms, "kind": self.kind}


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
    ``max_rounds``: searches at most on a measured latency limit (the fastest plan built to learn the floor is not
    one of them).
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
    # the accelerator's figures come from its simulator (the report of the build), not from timing this host
    simulated = [m for m in ("energy_uj", "latency_ms") if tgt.kind == "accel" and getattr(budget, m) is not None]
    measurer = measure if callable(measure) else (
        _measure_host if measure and tgt.is_host and tgt.kind != "accel" else None)
    by_measurement = measurer is not None and budget.latency_ms is not None and not simulated
    # a measured latency limit is not refused on the predicted costs alone: the machine may run faster than the
    # predictor's records (the fastest plan is built and measured first, see _measured_rounds)
    checked = _other_limits(budget) if by_measurement else budget
    if context is None:
        ctx = search_context(mod, calibration, accuracy_fn=accuracy_fn, metric=metric, options=options,
                             cost_model=cost_model, target=tgt, progress=progress,
                             calibration_method=calibration_method, percentile=percentile)
    else:
        ctx = context
    if checked is not None:
        try:
            check_budget(ctx.costs, checked)
        except BudgetError:
            check_budget(ctx.costs, budget)  # out of reach anyway: name every limit the costs miss, latency too
            raise
    if by_measurement:
        model, result, predicted, costs, measured, rounds = _measured_rounds(
            mod, ctx, budget, tgt, measurer, seed=seed, config=config, margin=float(margin), max_rounds=max_rounds,
            accuracy_fn=accuracy_fn, database=database)
        return _finish(ctx, budget, model, result, predicted, costs, measured, rounds)
    verify = bool(simulated)
    rounds: list[Round] = []
    factors: dict[str, float] = {}  # simulated / predicted of the accelerator's missed limits
    model = None
    chosen = None  # (model, result, predicted, costs, measured) returned
    for _ in range(max_rounds if verify else 1):
        costs = ctx.costs if not factors else ctx.costs.scaled(**factors)
        round_ctx = replace(ctx, costs=costs)
        if factors:
            try:
                check_budget(costs, budget)  # the corrected costs may show the budget out of reach
            except BudgetError as err:
                raise BudgetError(f"{err}. Simulated: {_simulated_text(model)}") from None
        start = time.perf_counter()
        result, _ = optimize(round_ctx, budget, np.random.default_rng(seed), config)
        logger.info("budget search: %d plans scored in %.1f s; chosen %s", result.evaluations,
                    time.perf_counter() - start, " ".join(f"{name}={prec}" for name, prec in result.plan.items()))
        if not result.feasible:  # check_budget passed, so the guide's ILP always finds a feasible plan
            raise BudgetError(f"the search found no plan within {budget}; widen the options or raise the limits")
        model = build(mod, result.plan, tgt, ranges=ctx.scorer.ranges,
                      weights=ctx.scorer.evaluator.bank.rounded_weights(), accuracy_fn=accuracy_fn,
                      cost_model=ctx.costs.model, database=database)
        predicted = costs.totals(costs.space.index_of(result.plan))
        measured = measurer(model) if measurer is not None else None
        rounds.append(Round(result.plan, predicted["latency_ms"], measured, factors.get("latency_ms", 1.0)))
        if simulated:  # the accelerator: check the simulator's figures, correct the costs of what it missed
            missed = [m for m in simulated if getattr(model.report, m) > getattr(budget, m) * (1 + 1e-9)]
            if not missed:
                chosen = (model, result, predicted, costs, measured)
                break
            for m in missed:
                factors[m] = factors.get(m, 1.0) * getattr(model.report, m) / max(predicted[m], 1e-12)
            continue
        chosen = (model, result, predicted, costs, measured)
    if chosen is None:
        raise BudgetError(f"no plan met {budget} by the accelerator simulator in {len(rounds)} round(s): "
                          f"{_simulated_text(model)}; raise the limit or allow lower precisions")
    return _finish(ctx, budget, *chosen, rounds)


def fastest_index(costs) -> np.ndarray:
    """Index vector of the plan with the smallest latency by ``costs`` (each layer at its fastest option)."""
    return np.argmin(costs.array("latency_ms"), axis=1)


def _other_limits(budget: Budget) -> Budget | None:
    """``budget`` without its latency limit (None when it sets no other)."""
    if budget.energy_uj is None and budget.memory_kb is None:
        return None
    return replace(budget, latency_ms=None)


def _corrected(costs, scale: float, offset_ms: float):
    """``costs`` with latencies mapped to ``scale x latency + offset_ms`` per plan (the offset spread evenly over the
    layers, as :meth:`CostTable.with_fixed_latency` spreads the fixed terms), labelled as corrected; ``costs`` itself
    when there is nothing to correct."""
    if scale == 1.0 and offset_ms == 0.0:
        return costs
    from .costs import CostTable

    share = offset_ms / max(costs.space.n_layers, 1)
    latency = np.maximum(costs.array("latency_ms") * scale + share, 0.0)
    name = costs.model_name + f", latency_ms x{scale:.3g}" + (f" {offset_ms:+.3g} ms" if offset_ms else "") + \
        " by measurement"
    return CostTable(costs.space, costs.energy_uj, latency, costs.memory_kb, costs.energy_basis, name, costs.model,
                     costs.fixed_latency_ms * scale + offset_ms)


def _retry_margin(measured: Measurement) -> float:
    """The safety margin of a search after a measurement: twice its relative noise, at least :data:`MIN_MARGIN`
    and at most 25 %."""
    return min(max(MIN_MARGIN, 2.0 * measured.relative_noise), 0.25)


def _fit(points, limit_ms: float) -> tuple[float, float]:
    """The latency correction ``(scale, offset_ms)``, ``measured ~ scale x predicted + offset_ms``, from the measured
    plans ``points`` ((predicted, Measurement) pairs, predicted by the uncorrected costs): the line through the
    plan measured closest under the limit and the one closest over it, when both exist (the limit lies between them,
    so the next search interpolates instead of extrapolating one plan's ratio); else the ratio measured / predicted
    of the plan measured closest to the limit."""
    p, m = min(((p, m.latency_ms) for p, m in points), key=lambda pm: abs(pm[1] - limit_ms))
    ratio = m / max(p, 1e-12)
    under = [(p, m.latency_ms) for p, m in points if m.latency_ms <= limit_ms]
    over = [(p, m.latency_ms) for p, m in points if m.latency_ms > limit_ms]
    if under and over:
        p0, m0 = max(under, key=lambda pm: pm[1])
        p1, m1 = min(over, key=lambda pm: pm[1])
        if p1 - p0 > 1e-3 * max(p0, p1):  # a faster measurement of a plan predicted slower: no line to draw
            scale = (m1 - m0) / (p1 - p0)
            offset = m0 - scale * p0
            # two plans predicted almost alike give a line too steep to trust (timing noise over a small
            # difference): more than MAX_SLOPE_RATIO from the plain ratio, the ratio is the correction
            if scale > 0 and scale * min(p0, p1) + offset > 0 and 1 / MAX_SLOPE_RATIO <= scale / ratio \
                    <= MAX_SLOPE_RATIO:
                return float(scale), (0.0 if abs(offset) < 1e-9 * limit_ms else float(offset))
    return ratio, 0.0


def _measured_rounds(mod, ctx, budget: Budget, tgt, measurer, *, seed, config, margin: float, max_rounds: int,
                     accuracy_fn, database):
    """The rounds of a budget compile whose latency limit is checked by measurement (module docstring, step 6).
    Returns (model, result, predicted, costs, measurement, rounds) of the plan returned."""
    limit = budget.latency_ms
    others = _other_limits(budget)
    points = []  # (predicted by the uncorrected costs, Measurement) of every plan built
    built: dict = {}  # plan key -> (model, Measurement)
    rounds: list[Round] = []
    scale, offset = 1.0, 0.0
    # candidates, each (model, result, predicted, costs, measured): a searched plan under by median + noise is
    # returned at once; else the first of: the fastest plan under by median + noise, the fastest searched plan under
    # by its median, one over by less than its noise
    floor_ok = under_median = within_noise = None
    met = None  # a searched plan surely under the limit that left slack: kept while one more search uses it
    best = None  # (measurement, model, result, predicted, costs) of the fastest measured plan
    searched = []  # the entries of the searches' plans
    fast_key = ctx.space.key(fastest_index(ctx.costs))
    next_margin = margin

    def run(index, result, costs, search_limit, kind):
        nonlocal best
        key = ctx.space.key(index)
        if key not in built:
            plan = ctx.space.plan(index)
            model = build(mod, plan, tgt, ranges=ctx.scorer.ranges,
                          weights=ctx.scorer.evaluator.bank.rounded_weights(), accuracy_fn=accuracy_fn,
                          cost_model=ctx.costs.model, database=database)
            built[key] = (model, measure_confirmed(measurer, model, limit))
            points.append((ctx.costs.totals(index)["latency_ms"], built[key][1]))
        model, measured = built[key]
        predicted = costs.totals(index)
        rounds.append(Round(model.plan, predicted["latency_ms"], measured, scale, search_limit, offset, kind))
        entry = (model, result, predicted, costs, measured)
        if best is None or measured.latency_ms < best[0].latency_ms:
            best = (measured, model, result, predicted, costs)
        return entry

    def probe_fastest(costs):
        """Build and measure the space's fastest plan (the floor of what any plan of the space runs in)."""
        nonlocal floor_ok
        index = np.array(fast_key)
        problem = Problem(ctx.space, costs, budget, ScoreObjective(ctx.scorer, ctx.space))
        entry = run(index, problem.result("fastest", index, 0.0, 1), costs, None, "fastest")
        if others is None or costs.fits(index, others):  # a candidate only when it meets the other limits
            if entry[4].surely_meets(limit):
                floor_ok = entry
            else:
                consider(entry)
        return entry

    def blend_toward_floor(costs):
        """The "blend" round (module docstring): its entry when it meets the limit by median + noise and scores
        better than the fastest plan, else None."""
        base = min(searched, key=lambda e: e[1].objective)
        index = np.array(ctx.space.index_of(base[1].plan))
        fast = np.array(fast_key)
        latency = costs.array("latency_ms")
        rows = np.arange(len(index))
        saving = latency[rows, index] - latency[rows, fast]
        target = limit * (1.0 - next_margin)
        blend = index.copy()
        for layer in np.argsort(-saving, kind="stable"):
            if costs.totals(blend)["latency_ms"] <= target or saving[layer] <= 0:
                break
            blend[layer] = fast[layer]
        key = ctx.space.key(blend)
        if key in built or costs.totals(blend)["latency_ms"] > target or \
                (others is not None and not costs.fits(blend, others)):
            return None
        problem = Problem(ctx.space, costs, budget, ScoreObjective(ctx.scorer, ctx.space))
        entry = run(blend, problem.result("blend", blend, 0.0, 1), costs, target, "blend")
        if entry[4].surely_meets(limit) and entry[1].objective < floor_ok[1].objective:
            return entry
        return None

    def consider(entry):
        nonlocal under_median, within_noise
        measured = entry[4]
        if measured.latency_ms <= limit:
            if under_median is None or measured.latency_ms < under_median[4].latency_ms:
                under_median = entry
        elif measured.meets(limit) and (within_noise is None or measured.latency_ms < within_noise[4].latency_ms):
            within_noise = entry

    searches = 0
    while searches < max_rounds:
        costs = _corrected(ctx.costs, scale, offset)
        try:
            check_budget(costs, budget)  # the (corrected) costs may show the budget out of reach
        except BudgetError:
            if met is not None:  # the corrected costs leave no room past the plan that met: it is returned
                return (*met, rounds)
            if fast_key not in built:  # measure the floor before refusing: the machine may run faster
                probe_fastest(costs)
                scale, offset = _fit(points, limit)
                continue
            if floor_ok is not None or under_median is not None or within_noise is not None:
                break
            raise BudgetError(f"no plan met latency_ms={limit:.4g} by measurement: {_best_text(best)}, over the "
                              f"limit by more than its noise ({_plans_text(rounds)}); raise the limit or allow lower "
                              "precisions") from None
        search_budget = _tightened(costs, budget, next_margin)
        start = time.perf_counter()
        result, _ = optimize(replace(ctx, costs=costs), search_budget, np.random.default_rng(seed), config)
        searches += 1
        logger.info("budget search: %d plans scored in %.1f s; chosen %s", result.evaluations,
                    time.perf_counter() - start, " ".join(f"{name}={prec}" for name, prec in result.plan.items()))
        if not result.feasible:  # check_budget passed, so the guide's ILP always finds a feasible plan
            raise BudgetError(f"the search found no plan within {budget}; widen the options or raise the limits")
        index = ctx.space.index_of(result.plan)
        entry = run(index, result, costs, search_budget.latency_ms if search_budget is not budget else None,
                    "search")
        searched.append(entry)
        measured = entry[4]
        if measured.surely_meets(limit):
            better = entry if met is None or result.objective < met[1].objective else met
            bound = entry[2]["latency_ms"] >= UNDERUSED * search_budget.latency_ms  # the limit shaped the plan
            if met is not None or searches >= max_rounds or not bound or \
                    measured.latency_ms + measured.noise_ms >= UNDERUSED * limit:
                return (*better, rounds)
            # far under the limit: the costs over-predicted this plan; search once more on corrected costs for a
            # more accurate plan that still meets the limit
            met = better
            scale, offset = _fit(points, limit)
            next_margin = _retry_margin(measured)
            continue
        if met is not None:  # the search that used the slack missed: once more on the line through both points
            scale, offset = _fit(points, limit)  # (one under, one over the limit) while searches remain; the plan
            next_margin = _retry_margin(measured)  # that met is returned after the loop
            continue
        consider(entry)
        if ctx.space.key(index) == fast_key and not measured.meets(limit):
            break  # the fastest plan of the space misses: no plan can meet the limit
        if searches < max_rounds and fast_key not in built and not any(m.latency_ms <= limit for _, m in points):
            # every plan measured so far is over: the floor gives the correction a point under the limit (a line
            # to interpolate on), or shows at once that no plan can meet the limit
            probe = probe_fastest(costs)
            if not probe[4].meets(limit):
                break
        # correct the latency costs by what was measured and search again under a margin of the measurement's noise
        scale, offset = _fit(points, limit)
        next_margin = _retry_margin(measured)
    if met is None and floor_ok is not None and searched:
        blend = blend_toward_floor(_corrected(ctx.costs, *_fit(points, limit)))
        if blend is not None:
            return (*blend, rounds)
    for entry in (met, floor_ok, under_median, within_noise):
        if entry is not None:
            return (*entry, rounds)
    raise BudgetError(f"no plan met latency_ms={limit:.4g} by measurement in {len(rounds)} round(s): "
                      f"{_best_text(best)}; raise the limit or allow lower precisions")


#: A budget compile warns when its plan scores below this fraction of the fp32 network's score.
COLLAPSE_FRACTION = 0.5


def _warn_collapse(ctx, budget, score: float) -> None:
    """Warn (one line) when the best plan within ``budget`` scores below :data:`COLLAPSE_FRACTION` of the fp32
    network: the budget needs precisions the model does not tolerate (the corpus' text recognizer: exact strings
    0 % at a host latency budget of 0.85x w8a8, 97.5 % at w8a8), which a returned model would otherwise hide."""
    fp32 = float(ctx.scorer.fp32_score())
    if fp32 > 0 and score < COLLAPSE_FRACTION * fp32:
        limits = ", ".join(f"{k}={v:.4g}" for k, v in vars(budget).items() if v is not None)
        warnings.warn(f"the best plan within the budget ({limits}) scores {score:.4g} against {fp32:.4g} for the "
                      "fp32 network: this budget needs precisions the model does not tolerate; raise the budget "
                      "(the report's explanation says which layers it pushed lowest)", stacklevel=4)


def _finish(ctx, budget, model, result, predicted, costs, measured, rounds):
    _warn_collapse(ctx, budget, -result.objective)
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


def measure_confirmed(measurer: Callable, model, limit_ms: float, strict: bool = True) -> Measurement:
    """``measurer(model)``, timed once more when it misses ``limit_ms`` (``strict``: median + noise over the limit,
    what a measured budget compile accepts; else median over the limit by more than the noise); the faster of the
    two sessions counts, and both are kept (:attr:`Measurement.sessions_ms`). Other tenants of a shared host slow
    it through the memory system for seconds to minutes: one model timed 0.198 and 0.260 ms in one compile. The
    noise a session reports is its spread, which such a slowdown does not show, so a miss is confirmed before the
    costs are corrected by it or the budget is refused."""
    first = measurer(model)
    missed = not first.surely_meets(limit_ms) if strict else not first.meets(limit_ms)
    if not missed:
        return first
    return faster_session(first, measurer(model))


def faster_session(*sessions: Measurement) -> Measurement:
    """The fastest of several timing sessions of one model, keeping every session's median
    (:attr:`Measurement.sessions_ms`)."""
    medians = tuple(m for s in sessions for m in (s.sessions_ms or (s.latency_ms,)))
    return replace(min(sessions, key=lambda s: s.latency_ms), sessions_ms=medians)


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


def _plans_text(rounds) -> str:
    return f"{len(rounds)} plan(s) measured, the space's fastest by the costs among them"


def _best_text(best) -> str:
    measured, _, result, _, _ = best
    mix = ", ".join(sorted({str(p) for _, p in result.plan.items()}))
    return (f"the fastest measured plan ran in {measured.latency_ms:.4g} ms (+/- {measured.noise_ms:.2g}) with "
            f"layers at {mix}")
