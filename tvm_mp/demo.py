"""``tvm-mp demo``: the bundled digits CNN compiled under a budget, next to uniform plans.

:func:`run_demo` builds one search context (calibration, scorer, cost table) for the model, compiles each uniform
plan, searches and compiles the plan that scores best within an energy budget (by default between the two
cheapest uniform plans), sweeps a small Pareto front on the same context (the scorer remembers every plan it
scored), and measures every built model on this machine. :func:`format_table` is the comparison the command
prints first.

Search effort is kept small (:data:`DEMO_ANNEAL`) so that the whole demo finishes in well under a minute on two
cores; ``tvm_mp.compile(..., budget=...)`` and ``tvm_mp.explore`` search harder by default.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .budget import Budget
from .errors import PlanError
from .model import CompiledModel
from .precision import Precision, PrecisionPlan
from .search.annealing import AnnealConfig
from .search.pareto import ParetoFront

logger = logging.getLogger(__name__)

#: The annealer's effort for the budget's plan in the demo (the library's default scores up to 250 plans).
DEMO_ANNEAL = AnnealConfig(steps=400, restarts=0, reheat_after=None, max_evaluations=80)
#: The annealer's effort per budget of the demo's Pareto front.
FRONT_ANNEAL = AnnealConfig(steps=200, restarts=0, reheat_after=None, max_evaluations=30)
#: Bit-widths the demo's search offers each layer (weights and activations; the library's default is 1 to 8).
DEMO_BITS = (2, 3, 4, 6, 8)
#: Calibration batches (of 32 training images) used by the demo.
CALIBRATION_BATCHES = 8


@dataclass(frozen=True)
class DemoRow:
    """One compiled plan of the demo, with its figures.

    ``accuracy``: top-1 of the built model on the held-out split. ``predicted_latency_ms`` and ``energy_uj``: the
    cost model's figures (energy is modelled on CPUs). ``measured_latency_ms``: one inference of the built model's
    ``main`` on this machine, median of rounds (:func:`~tvm_mp.search.budget.measure_in_model`: timed as the
    host's whole-model predictor was trained; None when the target is not this machine). ``memory_kb``: weight memory.
    """

    name: str
    kind: str  # "budget" or "uniform"
    key: str  # "budget" or the uniform plan ("w4a4"): the artifact's directory
    plan: PrecisionPlan
    accuracy: float
    predicted_latency_ms: float
    measured_latency_ms: float | None
    energy_uj: float
    memory_kb: float
    exact: bool  # outputs equal the NumPy reference of the same plan
    model: CompiledModel = field(repr=False, compare=False)


@dataclass(frozen=True)
class DemoResult:
    rows: tuple[DemoRow, ...]
    budget: Budget
    budget_note: str
    front: ParetoFront
    output: Path
    files: tuple[Path, ...]
    seconds: float
    layers: tuple[str, ...]
    energy_basis: str

    @property
    def chosen(self) -> DemoRow:
        return next(r for r in self.rows if r.kind == "budget")


def _default_budget(uniform: Sequence[tuple[str, float]]) -> tuple[float, str]:
    """An energy limit between the two cheapest uniform plans (geometric mean), and how it was chosen."""
    ranked = sorted(uniform, key=lambda t: t[1])
    if len(ranked) < 2:
        raise PlanError("the demo needs two uniform plans to place its budget between them, or "
                        "--budget-energy-uj")
    (lo_name, lo), (hi_name, hi) = ranked[0], ranked[1]
    return math.sqrt(lo * hi), f"between uniform {lo_name} ({lo:.1f} uJ) and {hi_name} ({hi:.1f} uJ)"


def run_demo(plans: Sequence[str] = ("w8a8", "w4a4", "w2a2"), budget_energy_uj: float | None = None,
             target="host", output: str | Path | None = None, front_budgets: int = 3, seed: int = 0,
             config: AnnealConfig | None = None, front_config: AnnealConfig | None = None,
             progress: bool | None = False) -> DemoResult:
    """Compile the bundled digits CNN under uniform ``plans`` and under an energy budget; write the Pareto front.

    ``budget_energy_uj``: the limit (default: between the two cheapest uniform plans, see ``budget_note``).
    ``output``: directory for ``pareto.json``, ``pareto.png`` and the budget plan's artifact (``budget/``; the
    demo writes nowhere else). ``front_budgets``: budgets swept for the front. ``config`` / ``front_config``: the
    annealer's effort for the budget's plan and per budget of the front (default :data:`DEMO_ANNEAL`,
    :data:`FRONT_ANNEAL`). Each layer may take the bit-widths :data:`DEMO_BITS` (for weights and activations).
    ``plans``: uniform plans written like ``w4a4``, with bit-widths from :data:`DEMO_BITS`.
    """
    import tvm_mp

    from .datasets import calibration_batches, load_digits_split
    from .models import digits_cnn_path
    from .search.budget import compile_with_budget, measure_in_model
    from .search.pareto import check_explore_args, explore, search_context
    from .search.space import default_options
    from .targets import parse

    if output is None:
        raise PlanError("run_demo needs output=DIRECTORY for the front and the artifacts")
    if isinstance(plans, str):
        raise PlanError(f"plans={plans!r}: give a list of uniform plans, e.g. ['w8a8', 'w4a4']")
    parsed = {text: Precision.parse(text) for text in plans}  # bad plans and arguments fail before any work
    check_explore_args(front_budgets, ("energy_uj",), seed)
    tgt = parse(target)
    start = time.perf_counter()
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    config = config or DEMO_ANNEAL
    digits = load_digits_split()
    mod = tvm_mp.load_onnx(digits_cnn_path(), shapes={"input": (1, 1, 8, 8)})
    calib = calibration_batches(CALIBRATION_BATCHES, 32)

    def top1(model) -> float:
        return float((model.run(digits.x_test).argmax(axis=1) == digits.y_test).mean())

    options = default_options(w_bits=DEMO_BITS, a_bits=DEMO_BITS)
    ctx = search_context(mod, calib, accuracy_fn=top1, target=tgt, progress=progress, options=options)
    logger.info("model, data and search context ready: %.1f s", time.perf_counter() - start)
    uniform_plans = {text: PrecisionPlan.uniform(mod, prec) for text, prec in parsed.items()}
    if budget_energy_uj is None:
        costs = [(text, ctx.costs.totals(ctx.space.index_of(plan))["energy_uj"])
                 for text, plan in uniform_plans.items()]
        limit, note = _default_budget(costs)
    else:
        limit, note = float(budget_energy_uj), "given"
    budget = Budget(energy_uj=limit)
    logger.info("energy budget %.2f uJ (%s)", limit, note)

    def row(name: str, kind: str, key: str, model: CompiledModel) -> DemoRow:
        x = digits.x_test[:64]
        exact = bool(np.array_equal(model.run(x), model.reference(x))) if tgt.is_host else False
        measured = measure_in_model(model).latency_ms if tgt.is_host else None
        rep = model.report
        return DemoRow(name, kind, key, model.plan, float(rep.accuracy), float(rep.latency_ms), measured,
                       float(rep.energy_uj), float(rep.memory_kb), exact, model)

    rows = []
    chosen = compile_with_budget(mod, budget, target=tgt, calibration=calib, accuracy_fn=top1, seed=seed,
                                 config=config, measure=False, progress=progress, context=ctx)
    rows.append(row(f"budget {limit:.1f} uJ", "budget", "budget", chosen))
    logger.info("budget plan searched, compiled and measured: %.1f s", time.perf_counter() - start)
    for text, plan in uniform_plans.items():
        logger.info("compiling uniform %s", text)
        model = tvm_mp.compile(mod, plan=plan, target=tgt, calibration=calib, accuracy_fn=top1)
        rows.append(row(f"uniform {text}", "uniform", text, model))
    logger.info("uniform plans compiled and measured: %.1f s", time.perf_counter() - start)
    front = explore(mod, context=ctx, budgets=front_budgets, seed=seed, config=front_config or FRONT_ANNEAL,
                    progress=progress)
    front.to_json(out / "pareto.json")
    files = [out / "pareto.json",
             front.plot(out / "pareto.png", title="digits CNN: top-1 on the held-out split against energy")]
    logger.info("Pareto front swept and written: %.1f s", time.perf_counter() - start)
    files.append(rows[0].model.export(out / "budget"))
    logger.info("the budget plan's artifact exported: %.1f s", time.perf_counter() - start)
    return DemoResult(tuple(rows), budget, note, front, out, tuple(files), time.perf_counter() - start,
                      tuple(ctx.space.names), ctx.costs.energy_basis)


def format_table(result: DemoResult) -> str:
    """The comparison table: one line per compiled plan, the budget-chosen plan first."""
    head = (f"{'plan':<18} {'top-1':>6} {'latency ms':>10} {'(measured)':>10} {'energy uJ':>9} {'weights kB':>10}  "
            f"bits per layer ({', '.join(result.layers)})")
    lines = [head, "-" * len(head)]
    for r in result.rows:
        measured = "n/a" if r.measured_latency_ms is None else f"{r.measured_latency_ms:.3f}"
        bits = " ".join(str(p) for _, p in r.plan.items())
        lines.append(f"{r.name:<18} {r.accuracy:>6.4f} {r.predicted_latency_ms:>10.3f} {measured:>10} "
                     f"{r.energy_uj:>9.2f} {r.memory_kb:>10.2f}  {bits}")
    lines.append(f"latency: modelled by the cost model, and measured (one inference of main, median of rounds on "
                 "this machine); "
                 f"energy: {result.energy_basis}; top-1 on the {_test_size()} held-out digits images")
    return "\n".join(lines)


def _test_size() -> int:
    from .datasets import load_digits_split

    return len(load_digits_split().y_test)
