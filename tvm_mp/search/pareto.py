"""Pareto explorer: sweep budgets, keep the non-dominated plans in (cost, accuracy) for energy, latency and memory.

:func:`explore` scores every uniform plan of the space, then for each swept axis and each budget on it runs the
annealer on the real score (``accuracy_fn`` or a fidelity proxy), started from the ILP optimum of the additive
sensitivity guide. Every plan scored on the way is a candidate; the front of an axis is the set of candidates no
other candidate beats in both that cost and the score. The result, a :class:`ParetoFront`, keeps the plans behind
each point, writes JSON (the format ``tvm_mp.reporting`` reads: ``points`` with ``energy_uj``, ``accuracy``,
``kind``) and a PNG that marks uniform plans against mixed ones.

Spaces may mix number formats with integer options (``options=default_options() + format_options()``; costs then
come from the format-aware datapath model, see :mod:`tvm_mp.search.costs`). Every point records its format mix
(:func:`plan_mix`: the families its layers use, e.g. "integer+clustered"); the PNG colours front points by mix
and draws every uniform plan by family (integer squares, float diamonds, clustered triangles, labelled when no
other uniform plan beats them or when they are a format), so one sees where formats win.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import tvm

from .._files import atomic_path, write_atomic
from .._progress import show_progress
from ..budget import Budget
from ..cost_models.select import resolve_cost_model
from ..driver import warn_unquantizable
from ..errors import Error, PlanError
from ..kinds import DEFAULT_CALIBRATION_METHOD
from ..layers import list_layers, unquantizable_layers
from ..precision import Precision, PrecisionPlan
from ..targets import parse
from .accuracy import Scorer, plan_key
from .annealing import AnnealConfig, anneal
from .costs import METRICS, CostTable, check_budget, prune_dominated
from .guided import GuidedConfig, guided_search
from .ilp import solve_ilp
from .problem import Problem, ScoreObjective
from .proxy import LayerNoise
from .sensitivity import Sensitivity, measure_sensitivity
from .space import FAMILIES, SearchSpace, family, is_integer

#: Networks with at most this many layers are searched by annealing on the real score by default (their plans score
#: in milliseconds, so hundreds of real evaluations are cheap); larger ones by the guided search.
ANNEAL_MAX_LAYERS = 16
#: The annealer's effort per budget when it is the default.
DEFAULT_ANNEAL = AnnealConfig(steps=1500, restarts=1, reheat_after=400, max_evaluations=250)
#: Axis labels for plots and tables.
AXIS_LABELS = {"energy_uj": "energy per inference (uJ)", "latency_ms": "latency (ms)",
               "memory_kb": "weight memory (kB)"}


@dataclass(frozen=True)
class ParetoPoint:
    """One scored plan with its predicted costs. ``kind`` is "uniform" or "mixed"; ``label`` names uniform plans."""

    plan: PrecisionPlan
    score: float
    energy_uj: float
    latency_ms: float
    memory_kb: float
    kind: str
    label: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("uniform", "mixed"):
            raise PlanError(f"ParetoPoint.kind={self.kind!r}: use 'uniform' or 'mixed'")
        for name in ("score",) + METRICS:
            if not math.isfinite(getattr(self, name)):
                raise PlanError(f"ParetoPoint.{name} must be finite, got {getattr(self, name)}")

    @property
    def mix(self) -> str:
        """The plan's format mix (:func:`plan_mix`)."""
        return plan_mix(self.plan)

    def cost(self, axis: str) -> float:
        if axis not in METRICS:
            raise PlanError(f"unknown axis {axis!r}: use one of {', '.join(METRICS)}")
        return getattr(self, axis)

    def to_dict(self) -> dict:
        return {"plan": {n: p.to_dict() for n, p in self.plan.items()}, "accuracy": self.score,
                "energy_uj": self.energy_uj, "latency_ms": self.latency_ms, "memory_kb": self.memory_kb,
                "kind": self.kind, "label": self.label, "mix": self.mix}

    @classmethod
    def from_dict(cls, data: Mapping) -> "ParetoPoint":
        plan = PrecisionPlan({n: Precision.from_dict(p) for n, p in data["plan"].items()})
        return cls(plan, float(data["accuracy"]), float(data["energy_uj"]), float(data["latency_ms"]),
                   float(data["memory_kb"]), str(data["kind"]), str(data.get("label", "")))


def plan_mix(plan: PrecisionPlan) -> str:
    """The families a plan's layers use, joined in :data:`~tvm_mp.search.space.FAMILIES` order: "integer",
    "float", "clustered", "integer+float", "integer+float+clustered", ... ("fp32" for an empty plan)."""
    used = {family(p) for _, p in plan.items()}
    return "+".join(f for f in FAMILIES if f in used) or "fp32"


#: Plot colour of each format mix (front points).
MIX_COLOURS = {"integer": "tab:blue", "float": "tab:orange", "clustered": "tab:green", "integer+float": "tab:purple",
               "integer+clustered": "tab:olive", "float+clustered": "tab:brown", "integer+float+clustered": "tab:pink",
               "fp32": "0.3"}
#: Marker of each family of uniform plans.
FAMILY_MARKERS = {"integer": "s", "float": "D", "clustered": "^"}


def non_dominated(points: Sequence[ParetoPoint], axis: str) -> list[int]:
    """Indices of the points that no other point beats in both ``axis`` (lower) and score (higher), by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i].cost(axis), -points[i].score, i))
    keep, best = [], -math.inf
    for i in order:
        if points[i].score > best:
            keep.append(i)
            best = points[i].score
    return keep


@dataclass(frozen=True)
class ParetoFront:
    """Uniform plans and non-dominated mixed plans, with the front of each explored axis.

    ``points``: every uniform plan and every mixed plan on some front. ``fronts``: axis -> indices into ``points``
    (by increasing cost). ``metric``: what the score is ("accuracy_fn" or a proxy). ``energy_basis``: how energy
    was obtained ("modelled" for CPU energy).
    """

    points: tuple[ParetoPoint, ...]
    fronts: Mapping[str, tuple[int, ...]]
    metric: str
    energy_basis: str = "modelled"
    fp32_score: float | None = None
    notes: Mapping[str, object] = field(default_factory=dict)

    def front(self, axis: str = "energy_uj") -> list[ParetoPoint]:
        if axis not in self.fronts:
            raise PlanError(f"axis {axis!r} was not explored; explored: {', '.join(self.fronts)}")
        return [self.points[i] for i in self.fronts[axis]]

    def uniform(self) -> list[ParetoPoint]:
        return [p for p in self.points if p.kind == "uniform"]

    def best_within(self, axis: str, limit: float) -> ParetoPoint | None:
        """The highest-scoring point of the front whose ``axis`` cost is at most ``limit``."""
        fits = [p for p in self.front(axis) if p.cost(axis) <= limit]
        return max(fits, key=lambda p: p.score) if fits else None

    def dominance(self, axis: str = "energy_uj", uniform_front_only: bool = False) -> list[dict]:
        """For each uniform plan (or each one no other uniform plan beats): the best mixed point on the front
        costing no more (in ``axis``) and whether it strictly dominates the uniform plan (scores at least as well
        and costs less, or scores better)."""
        out = []
        mixed = [p for p in self.front(axis) if p.kind == "mixed"]
        uniform = self.uniform()
        if uniform_front_only:
            uniform = [uniform[i] for i in non_dominated(uniform, axis)]
        for u in sorted(uniform, key=lambda p: p.cost(axis)):
            fits = [m for m in mixed if m.cost(axis) <= u.cost(axis)]
            best = max(fits, key=lambda m: (m.score, -m.cost(axis))) if fits else None
            dominates = best is not None and best.score >= u.score and (
                best.score > u.score or best.cost(axis) < u.cost(axis))
            out.append({"uniform": u.label, "uniform_cost": u.cost(axis), "uniform_score": u.score,
                        "mixed_cost": None if best is None else best.cost(axis),
                        "mixed_score": None if best is None else best.score, "dominates": bool(dominates)})
        return out

    def saving(self, reference: str = "w8a8", max_loss: float = 0.005, axis: str = "energy_uj") -> dict:
        """The cheapest front point scoring at least ``reference``'s score minus ``max_loss``, and the fraction
        of ``reference``'s cost it saves."""
        refs = [p for p in self.uniform() if p.label == reference]
        if not refs:
            raise PlanError(f"no uniform plan {reference!r} among the points; uniform plans: "
                            f"{', '.join(p.label for p in self.uniform())}")
        ref = refs[0]
        ok = [p for p in self.front(axis) if p.score >= ref.score - max_loss - 1e-12]
        best = min(ok, key=lambda p: (p.cost(axis), -p.score))
        return {"reference": reference, "reference_cost": ref.cost(axis), "reference_score": ref.score,
                "max_loss": max_loss, "cost": best.cost(axis), "score": best.score,
                "saving": 1.0 - best.cost(axis) / ref.cost(axis), "plan": {n: str(p) for n, p in best.plan.items()}}

    # ---- files ----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"metric": self.metric, "energy_basis": self.energy_basis, "fp32_score": self.fp32_score,
                "points": [p.to_dict() for p in self.points], "fronts": {k: list(v) for k, v in self.fronts.items()},
                "notes": {k: v for k, v in self.notes.items() if isinstance(v, (int, float, str, bool, list, dict))}}

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, text)
        return text

    @classmethod
    def from_json(cls, text: str) -> "ParetoFront":
        try:
            data = json.loads(text)
            points = tuple(ParetoPoint.from_dict(p) for p in data["points"])
            fronts = {k: tuple(int(i) for i in v) for k, v in data["fronts"].items()}
            return cls(points, fronts, str(data["metric"]), str(data.get("energy_basis", "modelled")),
                       data.get("fp32_score"), data.get("notes", {}))
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as err:
            raise Error(f"not a Pareto front JSON ({err!s}): write it with ParetoFront.to_json") from None

    def plot(self, path: str | Path, axes: Sequence[str] | None = None, title: str | None = None,
             compare: "ParetoFront | None" = None, compare_label: str = "other front") -> Path:
        """PNG: one panel per axis; front (line) with its mixed plans coloured by format mix, uniform plans by
        family (squares integer, diamonds float, triangles clustered; labelled when no other uniform plan beats
        them, and every uniform format plan). ``compare``: another front drawn as a dashed line (e.g. the
        integer-only search of the same model, to show where formats win)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker

        axes = list(axes or self.fronts)
        fig, panels = plt.subplots(1, len(axes), figsize=(5.6 * len(axes), 4.3), squeeze=False)
        for ax, axis in zip(panels[0], axes):
            front = self.front(axis)
            ax.step([p.cost(axis) for p in front], [p.score for p in front], where="post", color="0.7", lw=1,
                    zorder=1, label="front")
            if compare is not None:
                other = compare.front(axis)
                ax.step([p.cost(axis) for p in other], [p.score for p in other], where="post", color="black",
                        lw=0.9, ls="--", zorder=1, label=compare_label)
            mixed = [p for p in front if p.kind == "mixed"]
            for mix in MIX_COLOURS:
                group = [p for p in mixed if p.mix == mix]
                if group:
                    ax.scatter([p.cost(axis) for p in group], [p.score for p in group], marker="o", s=24, zorder=3,
                               color=MIX_COLOURS[mix], label=f"mixed plan: {mix}")
            uni = self.uniform()
            best = set(non_dominated(uni, axis))
            for fam, marker in FAMILY_MARKERS.items():
                group = [(i, p) for i, p in enumerate(uni) if p.mix == fam]
                if not group:
                    continue
                ax.scatter([p.cost(axis) for _, p in group], [p.score for _, p in group], marker=marker, s=30,
                           zorder=2, facecolors="none", edgecolors="tab:red" if fam == "integer" else "black",
                           linewidths=0.8, label=f"uniform {fam}")
                shown = [(i, p) for i, p in group if i in best or fam != "integer"]
                for k, (_i, p) in enumerate(sorted(shown, key=lambda t: t[1].cost(axis))):
                    stagger = 0 if fam == "integer" else 8 * (k % 3)  # format plans often share a score
                    ax.annotate(p.label, (p.cost(axis), p.score), fontsize=6.5,
                                color="tab:red" if fam == "integer" else "black", xytext=(4, -9 - stagger),
                                textcoords="offset points")
            label = AXIS_LABELS[axis] + (f", {self.energy_basis}" if axis == "energy_uj" else "")
            ax.set_xlabel(label)
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_ylabel(f"score ({self.metric})")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6.5, loc="lower right")
        if title:
            fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:  # a kill mid-write keeps the previous plot whole
            fig.savefig(tmp, dpi=120)
        plt.close(fig)
        return path


@dataclass(frozen=True, eq=False)
class SearchContext:
    """Everything a search over one model needs, built once: the scorer, the full space and its cost table.
    Sensitivities are measured on demand, for the options a problem keeps (the scorer remembers every run; the
    proxy of the guided search keeps its per-layer tables)."""

    scorer: Scorer
    space: SearchSpace
    costs: CostTable
    progress: bool | None = None
    proxy: LayerNoise | None = None  # the guided search's per-layer noise proxy (computed on demand, kept)

    def __post_init__(self) -> None:
        if self.proxy is None:
            object.__setattr__(self, "proxy", LayerNoise(self.scorer))

    def sensitivity(self, space: SearchSpace) -> Sensitivity:
        return measure_sensitivity(self.scorer, space, progress=self.progress)

    def problem(self, budget: Budget, metrics: Sequence[str] | None = None) -> Problem:
        """A score-maximizing problem under ``budget`` over the options not dominated in ``metrics`` (default:
        the limited ones) -- dominance assumes more bits are at least as accurate -- with the per-layer output
        noise of those options as its guide."""
        metrics = list(metrics or self.costs.limits(budget))
        space, costs = prune_dominated(self.space, self.costs, metrics)
        guide = self.sensitivity(space).noise
        return Problem(space, costs, budget, ScoreObjective(self.scorer, space), guide)

    def point(self, plan: PrecisionPlan, kind: str, label: str = "") -> ParetoPoint:
        totals = self.costs.totals(self.space.index_of(plan))
        return ParetoPoint(plan, self.scorer.score(plan), totals["energy_uj"], totals["latency_ms"],
                           totals["memory_kb"], kind, label)


def search_context(mod: tvm.IRModule, calibration: Iterable | None = None, *, accuracy_fn=None, data=None,
                   metric: str = "agreement", options=None, cost_model=None, target=None,
                   scorer: Scorer | None = None, progress: bool | None = None,
                   budget: Budget | None = None, calibration_method: str = DEFAULT_CALIBRATION_METHOD,
                   percentile: float = 99.99) -> SearchContext:
    """Build the scorer (unless given), the space and the cost table of ``mod``. With ``budget``, raise
    :class:`~tvm_mp.search.costs.BudgetError` at once if no plan of the space can meet it."""
    if not isinstance(mod, tvm.IRModule):
        raise Error(f"expected a tvm.IRModule (from tvm_mp.load_onnx), got {type(mod).__name__}")
    if cost_model is not None:  # a file or a name: read it before the (slow) scorer, so a bad one fails at once
        cost_model = resolve_cost_model(cost_model)
    layers = list_layers(mod)
    if not layers:  # nothing to search: say why each conv / matmul op is not a layer
        others = unquantizable_layers(mod)
        why = "".join(f"; {u.name} ({u.op}): {u.reason}" for u in others[:3]) + ("; ..." if len(others) > 3 else "")
        raise PlanError("no plan to search: the model has no layer tvm-mp can quantize (conv2d, dense)" + why
                        + "; compile it with a plan instead (any uniform plan, e.g. --plan w8a8, builds it "
                        "unquantized)")
    space = SearchSpace.build(layers, options)
    scorer = scorer or Scorer(mod, calibration, accuracy_fn=accuracy_fn, data=data, metric=metric,
                              calibration_method=calibration_method, percentile=percentile)
    tgt = parse(target)
    links = scorer.evaluator.links(space.names) if tgt.kind == "accel" else ()
    costs = CostTable.from_model(space, cost_model, tgt, scorer.evaluator.epilogues(space.names), links)
    if callable(getattr(costs.model, "predict_calls", None)):
        costs = costs.with_fixed_latency(fixed_latency_ms(mod, space, scorer.ranges, costs.model, target))
    if budget is not None:
        check_budget(costs, budget)
    return SearchContext(scorer, space, costs, progress)


def fixed_latency_ms(mod: tvm.IRModule, space: SearchSpace, ranges, model, target=None) -> float:
    """The per-inference latency outside the layers (quantize calls, other operators, VM overhead) that the
    whole-model predictor ``model`` (one with ``predict_calls``) gives the plan of each layer's widest integer option,
    lowered as the compile driver lowers it (no build; about as long as lowering the model once). It hardly depends
    on the plan (the calls around the layers are the same for every integer plan); what it misses, a measured budget
    compile corrects. 0 when the target does not build with TVM or the calls cannot be listed."""
    from ..driver import lower, quantize, whole_model_estimate
    from ..targets import parse

    tgt = parse(target)
    if not tgt.builds_with_tvm:
        return 0.0
    plan = PrecisionPlan({name: max(opts, key=lambda o: (is_integer(o), o.w_bits + o.a_bits))
                          for name, opts in zip(space.names, space.options)})
    lowered = lower(quantize(mod, plan, ranges=ranges), tgt)
    whole = whole_model_estimate(model, lowered, {i.name: i for i in space.layers}, plan, tgt)
    return 0.0 if whole is None else max(float(whole.fixed_ms), 0.0)


def _integer_options(space: SearchSpace) -> list[list[int]] | None:
    """Per layer, the indices of its integer options (all options where a layer has none), or None when the space
    has no number-format option."""
    keep = [[j for j, prec in enumerate(opts) if is_integer(prec)] for opts in space.options]
    if all(len(k) == len(opts) for k, opts in zip(keep, space.options)):
        return None
    return [k or list(range(len(opts))) for k, opts in zip(keep, space.options)]


def integer_start(ctx: SearchContext, problem: Problem, rng: np.random.Generator, config: AnnealConfig):
    """In a space with number formats: the best plan the integer-only search finds for ``problem``'s budget (ILP on
    its guide, then annealing), as an index vector of ``problem``'s space; None in an integer-only space.

    Annealing the mixed space from here means a mixed search never ends below the integer-only search of the same
    budget: the larger space holds every integer plan, but the same number of scored plans spread over it."""
    keep = _integer_options(problem.space)
    if keep is None:
        return None
    space, costs = problem.space.restricted(keep), problem.costs.restricted(keep)
    sub = Problem(space, costs, problem.budget, ScoreObjective(ctx.scorer, space), ctx.sensitivity(space).noise)
    start = solve_ilp(sub)
    result = anneal(sub, rng, config, init=start.index)
    if start.feasible and start.objective < result.objective:
        result = start
    if not result.feasible:
        return None
    return np.array([keep[i][j] for i, j in enumerate(result.index)], dtype=np.int64)


def optimize(ctx: SearchContext, budget: Budget, rng: np.random.Generator,
             config: AnnealConfig | GuidedConfig | None = None):
    """Best plan for ``budget``. With a :class:`~tvm_mp.search.guided.GuidedConfig` (the default for networks of
    more than :data:`ANNEAL_MAX_LAYERS` layers), the guided search: integer programs on the per-layer noise proxy,
    then a few real checks (:func:`~tvm_mp.search.guided.guided_search`). With an :class:`AnnealConfig` (the
    default, :data:`DEFAULT_ANNEAL`, for smaller networks, whose plans score in milliseconds): ILP on the measured
    sensitivity guide, then annealing on the real score from there; in a space with number formats, from the better
    of that ILP plan and the integer-only search's plan (:func:`integer_start`). Returns ``(SearchResult,
    Problem)``."""
    if config is None:
        config = DEFAULT_ANNEAL if ctx.space.n_layers <= ANNEAL_MAX_LAYERS else GuidedConfig()
    if isinstance(config, GuidedConfig):
        if config.progress is None and ctx.progress is not None:
            config = replace(config, progress=ctx.progress)
        return guided_search(ctx, budget, rng, config)
    if not isinstance(config, AnnealConfig):
        raise PlanError(f"config must be a GuidedConfig or an AnnealConfig (or None: the default for the network's "
                        f"size), got {type(config).__name__}")
    problem = ctx.problem(budget)
    start = solve_ilp(problem)
    if config.progress is None and ctx.progress is not None:  # progress=False on the search silences the annealer
        config = replace(config, progress=ctx.progress)
    init = start.index
    alt = integer_start(ctx, problem, rng, config)
    if alt is not None and (not start.feasible or problem.objective.value(alt) < start.objective):
        init = alt
    result = anneal(problem, rng, config, init=init)
    if start.feasible and start.objective < result.objective:
        result = start
    return result, problem


#: The most budgets :func:`explore` sweeps per axis (each is one search).
MAX_BUDGETS = 1000


def check_explore_args(budgets, axes, seed) -> tuple[str, ...]:
    """Raise a one-line :class:`PlanError` for an unusable ``budgets`` / ``axes`` / ``seed`` of :func:`explore`
    (before any work); return the axes as a tuple."""
    if isinstance(axes, str) or not isinstance(axes, Iterable):
        raise PlanError(f"axes={axes!r}: give a sequence of cost names, e.g. axes=('energy_uj',) (any of "
                        f"{', '.join(METRICS)})")
    axes = tuple(axes)
    if not axes:
        raise PlanError(f"axes is empty: give at least one of {', '.join(METRICS)}")
    for axis in axes:
        if not isinstance(axis, str) or axis not in METRICS:
            raise PlanError(f"unknown axis {axis!r}: use any of {', '.join(METRICS)}")
    if isinstance(budgets, Mapping):
        for axis, limits in budgets.items():
            if axis not in axes:
                raise PlanError(f"budgets names axis {axis!r}, which is not swept: sweep it with axes=(..., "
                                f"{axis!r}) or drop it (axes: {', '.join(axes)})")
            if isinstance(limits, (str, bytes)) or not isinstance(limits, Iterable):
                raise PlanError(f"budgets[{axis!r}]={limits!r}: give a list of positive limits, e.g. [10.0, 20.0]")
            for limit in limits:
                if isinstance(limit, bool) or not isinstance(limit, (int, float, np.integer, np.floating)) \
                        or not math.isfinite(limit) or limit <= 0:
                    raise PlanError(f"budgets[{axis!r}] holds {limit!r}: every limit is a positive finite number")
    elif isinstance(budgets, bool) or not isinstance(budgets, (int, np.integer)):
        raise PlanError(f"budgets={budgets!r}: give the number of budgets per axis (an integer from 1 to "
                        f"{MAX_BUDGETS}) or a mapping axis -> list of limits")
    elif not 1 <= budgets <= MAX_BUDGETS:
        raise PlanError(f"budgets={budgets}: give the number of budgets per axis, an integer from 1 to "
                        f"{MAX_BUDGETS}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise PlanError(f"seed={seed!r}: give a non-negative integer")
    return axes


def explore(mod: tvm.IRModule, calibration: Iterable | None = None, *, accuracy_fn=None, data=None,
            metric: str = "agreement", budgets: int | Mapping[str, Sequence[float]] = 8,
            axes: Sequence[str] = ("energy_uj",), options=None, cost_model=None, target=None,
            seed: int = 0, config: AnnealConfig | GuidedConfig | None = None, context: SearchContext | None = None,
            progress: bool | None = None) -> ParetoFront:
    """Sweep budgets and return the Pareto front of score against cost (see module docstring).

    Args:
        mod, calibration, accuracy_fn, data, metric: as for :class:`~tvm_mp.search.accuracy.Scorer`.
        budgets: the number of budgets per axis (spaced geometrically from the smallest achievable cost to the
            cost of the dearest uniform plan no other uniform plan beats), or a mapping axis -> explicit limits.
        axes: which costs to sweep: any of "energy_uj", "latency_ms", "memory_kb". Every front is computed over
            all candidates found, so sweeping energy alone still gives latency and memory fronts of those plans.
        options: the per-layer precisions (default :func:`~tvm_mp.search.space.default_options`); add
            :func:`~tvm_mp.search.space.format_options` to mix float formats and clustered weights with integer
            layers (costs then from :class:`~tvm_mp.cost_models.analytical.DatapathModel` unless ``cost_model``
            is given).
        cost_model: what costs the plans (default: the target's model): a cost model object, a model file written
            by ``tvm-mp cost-model train`` or a name (:func:`~tvm_mp.cost_models.select.resolve_cost_model`);
            ``front.notes["cost_model"]`` names it and ``front.energy_basis`` says how energy was obtained.
        target: the target the plans are costed for (default: this machine).
        seed: seeds the annealer (same seed, same front).
        config: the search per budget (:func:`optimize`): None or a
            :class:`~tvm_mp.search.guided.GuidedConfig` for the guided search, an :class:`AnnealConfig` for annealing.
        context: a :class:`SearchContext` of ``mod`` already built (its scorer's plans are reused).
        progress: a progress bar over the budgets: False never, None for long sweeps; only on a terminal.
    """
    axes = check_explore_args(budgets, axes, seed)
    ctx = context or search_context(mod, calibration, accuracy_fn=accuracy_fn, data=data, metric=metric,
                                    options=options, cost_model=cost_model, target=target, progress=progress)
    if context is None:
        warn_unquantizable(mod, stacklevel=3)  # the front covers the layers only: name the ops it leaves out
    rng = np.random.default_rng(seed)
    candidates: dict = {}
    for prec in ctx.space.uniform_precisions():
        plan = PrecisionPlan({n: prec for n in ctx.space.names})
        candidates[plan_key(plan)] = ctx.point(plan, "uniform", str(prec))
    uniform = list(candidates.values())
    # sweep up to the dearest uniform plan that no other uniform plan beats (dearer ones only cost more)
    uniform_max = {a: max(uniform[i].cost(a) for i in non_dominated(uniform, a)) if uniform
                   else ctx.costs.maximum()[a] for a in METRICS}
    sweeps = {}
    for axis in axes:
        if isinstance(budgets, Mapping):
            sweeps[axis] = [float(b) for b in budgets.get(axis, [])]
        else:
            lo, hi = ctx.costs.minimum()[axis], uniform_max[axis]
            sweeps[axis] = list(np.geomspace(lo * (1 + 1e-6), max(hi, lo * 1.01), int(budgets)))
    runs = []
    from tqdm.auto import tqdm

    total = sum(len(v) for v in sweeps.values())
    with tqdm(total=total, desc="explore", disable=not show_progress(progress, total > 4), leave=False) as bar:
        for axis, limits in sweeps.items():
            for limit in limits:
                budget = Budget(**{axis: float(limit)})
                result, problem = optimize(ctx, budget, rng, config)
                runs.append({"axis": axis, "limit": float(limit), "score": -result.objective,
                             "feasible": result.feasible, "evaluations": result.evaluations})
                for key_idx in problem.objective.seen():
                    plan = problem.space.plan(np.array(key_idx))
                    key = plan_key(plan)
                    if key not in candidates:
                        candidates[key] = ctx.point(plan, "mixed")
                bar.update(1)
    points = list(candidates.values())
    fronts_all = {axis: non_dominated(points, axis) for axis in METRICS}
    keep = sorted({i for idx in fronts_all.values() for i in idx} | {i for i, p in enumerate(points)
                                                                      if p.kind == "uniform"})
    remap = {old: new for new, old in enumerate(keep)}
    kept = tuple(points[i] for i in keep)
    fronts = {axis: tuple(remap[i] for i in fronts_all[axis]) for axis in METRICS}
    notes = {"seed": seed, "candidates": len(points), "runs": runs, "axes_swept": list(axes),
             "cost_model": ctx.costs.model_name, "options_per_layer": ctx.space.sizes.tolist()}
    return ParetoFront(kept, fronts, ctx.scorer.name, ctx.costs.energy_basis, ctx.scorer.fp32_score(), notes)
