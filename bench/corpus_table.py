"""The real-model corpus table: per model, what is quantized, the task metric of fp32 / w8a8 / w4a8 / the best
mixed plan at 0.85x and 0.7x of w8a8 on the accelerator model and on the host latency model, and the times.

Models: ``cls``, ``rec``, ``det`` of :mod:`tvm_mp.testing.corpus` (PP-OCR, from the ``rapidocr-onnxruntime``
package), at the corpus' input sizes, each with a labelled task generated offline from rendered digit strings
(:func:`tvm_mp.testing.corpus.text_images`):

- ``cls``: every second image turned by 180 degrees; metric top-1 (2 classes).
- ``rec``: the drawn string; metric exact-string accuracy of the greedy CTC decoding (character table from the
  model's own ``character`` metadata).
- ``det``: the box around the dark (text) pixels of each image; metric the mean IoU of that box with the detected
  box (probability > 0.3, the bounding box of those pixels grown by DB's unclip distance ``1.5 area / perimeter``),
  in points (x100).

For each model: a calibration set, a *search* split (the ``accuracy_fn`` of the searches) and a *held-out* split
(never seen by a search; the figures in the table). Steps, each timed:

1. uniform w8a8 ``tvm_mp.compile`` from the ONNX-imported module (calibration + build); its output is compared with
   its NumPy reference (integer layers exact, fp32 ops through TVM to float tolerance) and scored.
2. a host search context (calibration, scorer, cost table of the host options) with the ``"whole-model"`` latency
   predictor (its per-layer kernel model, trained on kernels timed inside built models); an accelerator context on
   the same scorer (``AccelCostModel``, options :data:`ACCEL_GRID`).
3. per cost model and budget (fractions of uniform w8a8's modelled latency on the host, energy on the accelerator):
   the first feasible budget (the host's, else the accelerator's) ``compile_with_budget(..., context=ctx,
   measure=False)`` (search + TVM build +
   ``accuracy_fn`` on the built model, its ``Report.explanation`` kept); the others search only (the plan scored on
   the NumPy reference).
4. uniform plans (fp32, w8a8, w4a8, and the :data:`MAX_CHEAP_UNIFORM` dearest uniform plans of each space at or
   below the largest budget) on the NumPy reference (bit-exact with the built model for integer layers).
5. per uniform plan, a budget search at exactly its modelled cost; each uniform plan is compared with the mixed plan
   at no more cost (of all the budget runs) scoring best on the search split, on both splits.

    python bench/corpus_table.py [--models cls,rec,det] [--cls-samples 100] [--samples 40] [--det-samples 16]
        [--json PATH]

Writes ``docs/corpus_table.json`` (or ``--json``; after each model, so a stopped run keeps what was measured);
``--render A.json [B.json ...]`` writes ``docs/corpus_table.md`` from one or more of them (models merged).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from tvm_mp.testing.machine import describe_machine, machine_line

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
COMMAND = "python bench/corpus_table.py"
#: The accelerator space: weight x activation bits (the accelerator ignores kernel kinds).
ACCEL_GRID = [(8, 8), (4, 8), (4, 4), (2, 2)]
BUDGETS = (0.85, 0.7)
#: At most this many uniform plans below the largest budget are scored per space (the highest-cost ones).
MAX_CHEAP_UNIFORM = 2


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ---- tasks ---------------------------------------------------------------------------------------------------------
class Task:
    """A corpus model with its labelled splits and metric (higher is better, in points)."""

    metric_name = ""

    def __init__(self, name: str, samples: int, calib: int = 8):
        from tvm_mp.testing import corpus

        start = time.perf_counter()
        self.name = name
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.mod, self.model = corpus.load(name)
        self.load_warnings = [str(w.message) for w in caught]
        self.load_seconds = time.perf_counter() - start
        self.shape = self.model.shapes["x"]
        rotate = name == "cls"
        images, _ = corpus.text_images(calib, self.shape, seed=1, rotate=rotate)
        half = calib // 2
        self.calibration = [images[:half], images[half:]]
        self.x_search, self.s_search = corpus.text_images(samples, self.shape, seed=7, rotate=rotate)
        self.x_held, self.s_held = corpus.text_images(samples, self.shape, seed=11, rotate=rotate)
        self.setup()

    def setup(self) -> None:
        pass

    def metric(self, outputs, split: str) -> float:
        raise NotImplementedError

    def accuracy_fn(self, model) -> float:
        return self.metric(model.run(self.x_search), "search")

    def held_out(self, run) -> float:
        return self.metric(run(self.x_held), "held")


class ClsTask(Task):
    metric_name = "top-1 (%)"

    def metric(self, outputs, split):
        out = np.asarray(outputs).reshape(len(self.x_held if split == "held" else self.x_search), -1)
        labels = np.arange(len(out)) % 2
        return 100.0 * float(np.mean(out.argmax(axis=1) == labels))


class RecTask(Task):
    metric_name = "exact string (%)"

    def setup(self):
        import onnx

        m = onnx.load(str(self.model.path), load_external_data=False)
        table = next(p.value for p in m.metadata_props if p.key == "character").split("\n")
        self.chars = ["", *table, " "]  # CTC: 0 is the blank, then the table, then the space

    def decode(self, logits) -> list[str]:
        out = []
        for row in np.asarray(logits).argmax(axis=-1):
            text, prev = "", 0
            for k in row:
                if k != prev and k != 0:
                    text += self.chars[k] if k < len(self.chars) else ""
                prev = k
            out.append(text.strip())
        return out

    def metric(self, outputs, split):
        truth = self.s_held if split == "held" else self.s_search
        return 100.0 * float(np.mean([a == b for a, b in zip(self.decode(outputs), truth)]))


class DetTask(Task):
    metric_name = "box IoU (x100)"

    def setup(self):
        self.boxes = {"held": [self._box(x) for x in self.x_held], "search": [self._box(x) for x in self.x_search]}

    @staticmethod
    def _box(image):
        ys, xs = np.nonzero(image.mean(axis=0) < 0.0)  # dark text on a light background
        return (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)

    def metric(self, outputs, split):
        maps = np.asarray(outputs)[:, 0]
        h, w = maps.shape[1:]
        ious = []
        for p, g in zip(maps, self.boxes[split]):
            ys, xs = np.nonzero(p > 0.3)
            if not len(ys):
                ious.append(0.0)
                continue
            y0, x0, y1, x1 = ys.min(), xs.min(), ys.max() + 1, xs.max() + 1
            d = (y1 - y0) * (x1 - x0) * 1.5 / (2 * ((y1 - y0) + (x1 - x0)))
            b = (max(0, y0 - d), max(0, x0 - d), min(h, y1 + d), min(w, x1 + d))
            iy = max(0.0, min(b[2], g[2]) - max(b[0], g[0]))
            ix = max(0.0, min(b[3], g[3]) - max(b[1], g[1]))
            inter = iy * ix
            union = (b[2] - b[0]) * (b[3] - b[1]) + (g[2] - g[0]) * (g[3] - g[1]) - inter
            ious.append(inter / union)
        return 100.0 * float(np.mean(ious))


TASKS = {"cls": ClsTask, "rec": RecTask, "det": DetTask}


# ---- measurement ---------------------------------------------------------------------------------------------------
def plan_mix(plan) -> dict:
    counts: dict = {}
    for _, p in plan.items():
        counts[str(p)] = counts.get(str(p), 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def equals_reference(cm, x) -> dict:
    """The compiled model against its NumPy reference on ``x``: integer layers exact, fp32 ops to float tolerance."""
    y, ref = cm.run(x), cm.reference(x)
    scale = float(np.abs(ref).max())
    return {"equal": bool(np.allclose(y, ref, rtol=1e-4, atol=1e-5 * scale)),
            "exact_fraction": float(np.mean(y == ref)), "max_abs_diff": float(np.abs(y - ref).max()),
            "output_scale": scale}


def w8a8_compile(task: Task) -> dict:
    """Uniform w8a8 from the imported module, timed; compiled vs reference; metric of the built model."""
    import tvm_mp
    from tvm_mp import Precision, PrecisionPlan

    before = load_average()
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cm = tvm_mp.compile(task.mod, plan=PrecisionPlan.uniform(task.mod, Precision(8, 8)),
                            calibration=task.calibration)
    seconds = time.perf_counter() - t0
    check = equals_reference(cm, task.x_held[:4])
    close = check["equal"]
    out = {"seconds": seconds, "load_before": before, "load_after": load_average(),
           "fp32_layers": list(cm.report.fp32_layers), "layers": len(cm.report.layers),
           "unquantizable": len(cm.report.unquantizable or ()),
           "tvm_ops": [str(w.message) for w in caught if "run through TVM" in str(w.message)],
           "exact_fraction": check["exact_fraction"], "max_abs_diff": check["max_abs_diff"],
           "output_scale": check["output_scale"], "equals_reference": close,
           "held_out": task.held_out(cm.run)}
    log(f"  w8a8 compile {seconds:.0f} s, equals reference {close} (exact {out['exact_fraction']:.3f}), "
        f"held-out {out['held_out']:.1f}")
    return out


def score_plan(task: Task, ctx, plan) -> dict:
    return {"search": ctx.scorer.score(plan),
            "held_out": task.held_out(lambda x: ctx.scorer.evaluator.run(plan, [x]))}


def uniform_points(task: Task, ctx, quantity: str, ref: float, limit: float) -> list[dict]:
    from tvm_mp import PrecisionPlan

    rows = []
    cheap = []
    for prec in ctx.space.uniform_precisions():
        frac = ctx.costs.totals(ctx.space.uniform_index(prec))[quantity] / ref
        if str(prec) in ("w8a8", "w4a8"):
            rows.append((prec, frac))
        elif frac <= limit + 1e-9:
            cheap.append((frac, str(prec), prec))
    cheap.sort(reverse=True)
    rows += [(p, f) for f, _, p in cheap[:MAX_CHEAP_UNIFORM]]
    out = []
    for prec, frac in rows:
        plan = PrecisionPlan({n: prec for n in ctx.space.names})
        out.append({"plan": str(prec), "fraction": frac, **score_plan(task, ctx, plan)})
        log(f"  uniform {prec}: {frac:.3f} x w8a8, {out[-1]['search']:.1f} / {out[-1]['held_out']:.1f}")
    return sorted(out, key=lambda r: r["fraction"])


def budget_runs(task: Task, ctx, quantity: str, ref: float, budgets, build_first: bool) -> list[dict]:
    """Per budget: with ``build_first`` the first feasible budget is a full ``compile_with_budget`` (search + TVM
    build + ``accuracy_fn`` on the built model, its report's explanation kept); the others search only (the plan
    scored on the NumPy reference, bit-exact with a build for integer layers) -- a TVM build of a corpus model
    costs minutes on the shared machine."""
    from tvm_mp import Budget
    from tvm_mp.search.budget import compile_with_budget
    from tvm_mp.search.costs import BudgetError, check_budget
    from tvm_mp.search.explain import explain_plan
    from tvm_mp.search.pareto import optimize

    rows = []
    for frac in budgets:
        budget = Budget(**{quantity: frac * ref})
        before = load_average()
        t0 = time.perf_counter()
        built = build_first and not any(r.get("built") for r in rows)
        try:
            if built:
                cm = compile_with_budget(task.mod, budget, calibration=task.calibration,
                                         accuracy_fn=task.accuracy_fn, context=ctx, measure=False)
                res, plan, explanation = cm.search.result, cm.plan, cm.report.explanation
            else:
                check_budget(ctx.costs, budget)
                res, _ = optimize(ctx, budget, np.random.default_rng(0))
                plan = res.plan
        except BudgetError as err:
            rows.append({"budget": frac, "infeasible": str(err), "seconds": time.perf_counter() - t0})
            log(f"  {frac}x: infeasible ({err})")
            continue
        seconds = time.perf_counter() - t0
        equal = None
        if built:
            held, search = task.held_out(cm.run), cm.report.accuracy
            equal = equals_reference(cm, task.x_held[:4])
        else:
            held = task.held_out(lambda x, p=plan: ctx.scorer.evaluator.run(p, [x]))
            search = ctx.scorer.score(plan)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                explanation = explain_plan(ctx, plan, budget)
        fraction = ctx.costs.totals(ctx.space.index_of(plan))[quantity] / ref
        why = sorted(explanation.layers, key=lambda r: r.rank)
        row = {"budget": frac, "built": built, "equals_reference": equal, "seconds": seconds,
               "search_seconds": res.seconds, "evaluations": res.evaluations, "fraction": fraction, "search": search,
               "held_out": held, "plan_mix": plan_mix(plan), "load_before": before, "load_after": load_average(),
               "explained": [{"name": r.name, "precision": r.precision, "rank": r.rank,
                              "sensitivity": r.sensitivity, "reason": r.reason} for r in why[:3] + why[-2:]]}
        rows.append(row)
        log(f"  {frac}x: {seconds:.0f} s ({'built, ' if built else ''}search {res.seconds:.0f} s, "
            f"{res.evaluations} evaluations), {fraction:.3f}x, {row['search']:.1f} / held-out {row['held_out']:.1f}")
    return rows


def at_uniform_cost(task: Task, ctx, quantity: str, ref: float, uniform: list[dict]) -> list[dict]:
    """Per uniform plan: the budget search (no build) at exactly its modelled cost -- the mixed plan that has to
    dominate it on the front."""
    fractions = [u["fraction"] * (1 + 1e-9) for u in uniform]
    rows = budget_runs(task, ctx, quantity, ref, fractions, build_first=False)
    for u, row in zip(uniform, rows):
        row["budget"] = f"= {u['plan']}"
    return rows


def dominance(uniform: list[dict], mixed: list[dict], samples: int) -> list[dict]:
    """Per uniform plan: the mixed plan (of the budget runs, the runs at uniform costs included) at no more cost
    scoring best on the search split, and whether it scores at least as well as the uniform plan on the search
    split (what the search sees) and on the held-out split (``within_sample``: at most one sample's worth below)."""
    out = []
    for u in uniform:
        cand = [m for m in mixed if "infeasible" not in m and m["fraction"] <= u["fraction"] * (1 + 1e-6)]
        best = max(cand, key=lambda m: (m["search"], m["held_out"])) if cand else None
        row = {"uniform": u["plan"], "fraction": u["fraction"], "search": u["search"], "held_out": u["held_out"],
               "mixed_budget": None, "mixed_fraction": None, "mixed_search": None, "mixed_held_out": None,
               "dominated": None, "search_dominated": None, "within_sample": None}
        if best is not None:
            row.update({"mixed_budget": best["budget"], "mixed_fraction": best["fraction"],
                        "mixed_search": best["search"], "mixed_held_out": best["held_out"],
                        "dominated": best["held_out"] >= u["held_out"] - 1e-9,
                        "search_dominated": best["search"] >= u["search"] - 1e-9,
                        "within_sample": best["held_out"] >= u["held_out"] - 100.0 / samples - 1e-9})
        out.append(row)
    return out


def run_model(name: str, samples: int, res: dict, save) -> dict:
    """Fill ``res`` step by step (a failure keeps what was measured; ``save()`` after each costly step)."""
    from tvm_mp import Precision, PrecisionPlan
    from tvm_mp.canonical import canonicalize
    from tvm_mp.cost_models.accel import AccelCostModel
    from tvm_mp.search.pareto import search_context

    log(f"== {name}")
    task = TASKS[name](name, samples)
    res.update({"model": name, "description": task.model.description, "shape": list(task.shape),
                "samples": samples, "metric": task.metric_name, "load_seconds": task.load_seconds,
                "load_warnings": task.load_warnings})
    res["w8a8_compile"] = w8a8_compile(task)
    save()
    mod = canonicalize(task.mod)
    t0 = time.perf_counter()
    try:
        host = search_context(mod, task.calibration, accuracy_fn=task.accuracy_fn, cost_model="whole-model",
                              progress=False)
        res["host_cost_model"] = "whole-model"
    except Exception as err:  # noqa: BLE001 -- recorded: the table says which model was used and why
        log(f"  whole-model predictor failed ({err}); the host default instead")
        res["host_cost_model_error"] = str(err)
        host = search_context(mod, task.calibration, accuracy_fn=task.accuracy_fn, progress=False)
        res["host_cost_model"] = host.costs.model_name
    res["host_context_seconds"] = time.perf_counter() - t0
    log(f"  host context {res['host_context_seconds']:.0f} s ({host.costs.model_name})")
    fp32, w8, w4 = PrecisionPlan({}), Precision(8, 8), Precision(4, 8)
    res["fp32"] = score_plan(task, host, fp32)
    res["w8a8"] = score_plan(task, host, PrecisionPlan({n: w8 for n in host.space.names}))
    res["w4a8"] = score_plan(task, host, PrecisionPlan({n: w4 for n in host.space.names}))
    log(f"  fp32 {res['fp32']}, w8a8 {res['w8a8']}, w4a8 {res['w4a8']}")
    save()
    t0 = time.perf_counter()
    accel = search_context(mod, task.calibration, options=[Precision(w, a) for w, a in ACCEL_GRID],
                           cost_model=AccelCostModel(), scorer=host.scorer, progress=False)
    res["accel_context_seconds"] = time.perf_counter() - t0
    log(f"  accel context {res['accel_context_seconds']:.0f} s")
    for key, ctx, quantity in (("host", host, "latency_ms"), ("accel", accel, "energy_uj")):
        ref = ctx.costs.totals(ctx.space.uniform_index(w8))[quantity]
        log(f"  {key}: budgets on {quantity} (w8a8 {ref:.4g})")
        # one full budget compile per model (the 3-minute check): the host's first feasible budget, else the
        # accelerator's (on this host a small model's low-bit kernels may save no latency: every host budget
        # below w8a8 then is infeasible)
        built_before = any(b.get("built") for b in (res.get("host") or {}).get("budgets", []))
        runs = budget_runs(task, ctx, quantity, ref, BUDGETS, build_first=not built_before)
        uniform = uniform_points(task, ctx, quantity, ref, max(BUDGETS))
        res[key] = {"quantity": quantity, "w8a8": ref, "cost_model": ctx.costs.model_name, "budgets": runs,
                    "uniform": uniform, "options_per_layer": int(ctx.space.max_options)}
        save()
        res[key]["at_uniform_cost"] = at_uniform_cost(task, ctx, quantity, ref, uniform)
        res[key]["dominance"] = dominance(uniform, runs + res[key]["at_uniform_cost"], samples)
        save()
    return res


# ---- report --------------------------------------------------------------------------------------------------------
def _fmt(v, spec=".1f") -> str:
    return "-" if v is None else format(v, spec)


def _state(r: dict) -> str:
    return f"failed: {r['error']}" if "error" in r else "not measured (the run stopped before this step)"


def _equal_text(b: dict) -> str:
    eq = b.get("equals_reference")
    if not eq:
        return ""
    return (f" The built model equals its reference: {eq['equal']} (exactly equal outputs "
            f"{100 * eq['exact_fraction']:.1f} %, max |run - reference| {eq['max_abs_diff']:.2e} of outputs up to "
            f"{eq['output_scale']:.3g}).")


def _verdict(x: dict) -> str:
    """A dominance row's held-out verdict."""
    return "dominated" if x["dominated"] else "within one sample" if x.get("within_sample") else "NOT dominated"


def _budget_label(budget) -> str:
    """A budget run's name: ``0.85x`` (of w8a8) or ``= w4a8`` (at that uniform plan's cost)."""
    return budget if isinstance(budget, str) else f"{budget}x"


def _budget_cell(part: dict | None, frac: float) -> str:
    if part is None:
        return "not measured"
    row = next((r for r in part["budgets"] if r["budget"] == frac), None)
    if row is None:
        return "-"
    if "infeasible" in row:
        return "infeasible"
    return f"{row['held_out']:.1f} ({row['fraction']:.2f}x{', built' if row.get('built') else ''})"


def markdown(result: dict) -> str:
    lines = ["# Real-model corpus: quantized layers, task metrics, mixed plans, times", "",
             f"Command: `{result['command']}` ({result.get('seconds', 0):.0f} s). {machine_line(result['machine'])} "
             f"Load average at the end: {' / '.join(f'{x:.2f}' for x in result.get('load_at_end', []))}. "
             "The machine was shared with other jobs (see the load columns).", "",
             "Models: the corpus of `tvm_mp.testing.corpus` (PP-OCR from `rapidocr-onnxruntime` 1.4.4) at its input "
             "sizes; tasks from rendered digit strings (see the docstring of `bench/corpus_table.py`): `cls` top-1, "
             "`rec` exact-string accuracy of the CTC decoding, `det` mean box IoU x100. Every metric is on the "
             "*held-out* split, never seen by a search; fp32 / w8a8 / w4a8 on the NumPy reference (bit-exact with "
             "the built model for integer layers), mixed plans on the built model. Costs are *modelled*: the host "
             "column budgets the latency of the host predictor named below (sum of its per-layer kernel "
             "predictions), the accelerator column budgets the energy of `AccelCostModel` (default hardware, "
             f"options {', '.join(f'w{w}a{a}' for w, a in ACCEL_GRID)}). Sample counts are small: one sample "
             "moves a %-metric by 100/n points.", ""]
    models = result["models"]
    lines += ["## Table", "",
              "| model | layers quantized / left fp32 | samples | metric | fp32 | w8a8 | w4a8 "
              "| host 0.85x | host 0.7x | accel 0.85x | accel 0.7x |",
              "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in models.items():
        if "w8a8" not in r:
            lines.append(f"| {name} | {_state(r)} |" + " |" * 9)
            continue
        c = r["w8a8_compile"]
        lines.append(f"| {name} | {c['layers'] - len(c['fp32_layers'])} / {len(c['fp32_layers'])} "
                     f"(+{c['unquantizable']} unquantizable conv/matmul ops) | {r['samples']} | {r['metric']} | "
                     f"{r['fp32']['held_out']:.1f} | {r['w8a8']['held_out']:.1f} | {r['w4a8']['held_out']:.1f} | "
                     + " | ".join(_budget_cell(r.get(k), f) for k in ("host", "accel") for f in BUDGETS) + " |")
    lines += ["", "Mixed-plan cells: held-out metric (plan cost as a fraction of uniform w8a8 on that cost model).",
              "", "## Times", "",
              "| model | import (s) | w8a8 compile (s) | load before / after | host context (s) | accel context (s) "
              "| host 0.85x / 0.7x: compile (search, evaluations) | accel 0.85x / 0.7x | load during budgets |",
              "|---|---:|---:|---|---:|---:|---|---|---|"]

    def bcell(part):
        if part is None:
            return "not measured"
        cells = []
        for b in part["budgets"]:
            if "infeasible" in b:
                cells.append(f"infeasible ({b['seconds']:.1f} s)")
            else:
                cells.append(f"{b['seconds']:.0f} s ({b['search_seconds']:.0f} s, {b['evaluations']})")
        return " / ".join(cells)

    for name, r in models.items():
        if "w8a8_compile" not in r:
            continue
        c = r["w8a8_compile"]
        loads = [b["load_before"][0] for k in ("host", "accel") for b in (r.get(k) or {}).get("budgets", [])
                 if "load_before" in b]
        lines.append(f"| {name} | {r['load_seconds']:.0f} | {c['seconds']:.0f} | {c['load_before'][0]:.1f} / "
                     f"{c['load_after'][0]:.1f} | {_fmt(r.get('host_context_seconds'), '.0f')} | "
                     f"{_fmt(r.get('accel_context_seconds'), '.0f')} "
                     f"| {bcell(r.get('host'))} | {bcell(r.get('accel'))} | "
                     f"{'-' if not loads else f'{min(loads):.1f}-{max(loads):.1f}'} |")
    lines += ["", "Context = calibration + scorer + the cost table of the space (shared by the budgets of that cost "
              "model; the accelerator context reuses the host one's scorer). The first feasible budget of each "
              "model (the host's, else the accelerator's; marked *built*) is a full `compile_with_budget` "
              "(search + TVM build + `accuracy_fn` on the built model); the other budgets search only and score "
              "the plan on the NumPy reference (bit-exact with a build for integer layers).", "", "## Checks", ""]
    for name, r in models.items():
        built = [(k, b) for k in ("host", "accel") for b in (r.get(k) or {}).get("budgets", []) if b.get("built")]
        if built and r.get("w8a8_compile"):
            k, b = built[0]
            context_s = r["host_context_seconds"] + (r.get("accel_context_seconds", 0.0) if k == "accel" else 0.0)
            lines.append(f"* **{name}** budget compile ({r['w8a8_compile']['layers']} layers, {k} "
                         f"{b['budget']}x, accuracy_fn over {r['samples']} samples): {b['seconds']:.0f} s, of which "
                         f"search {b['search_seconds']:.0f} s, at load {b['load_before'][0]:.1f} / "
                         f"{b['load_after'][0]:.1f} on 2 cores: {'within' if b['seconds'] <= 180 else 'NOT within'} "
                         f"3 minutes (plus the shared context, {context_s:.0f} s)." + _equal_text(b))
    for name, r in models.items():
        if "w8a8" not in r:
            lines.append(f"* {name}: {_state(r)}")
            continue
        c = r["w8a8_compile"]
        d = r["fp32"]["held_out"] - r["w8a8"]["held_out"]
        lines.append(f"* **{name}**: w8a8 vs fp32 {-d:+.1f} points: "
                     f"{'within' if abs(d) <= 1.0 + 1e-9 or d < 0 else 'NOT within'} 1 point "
                     f"(search split: fp32 {r['fp32']['search']:.1f}, w8a8 {r['w8a8']['search']:.1f}). "
                     f"Compiled w8a8 equals its reference: {c['equals_reference']} (exactly equal outputs "
                     f"{100 * c['exact_fraction']:.1f} %, max |run - reference| {c['max_abs_diff']:.2e} of outputs "
                     f"up to {c['output_scale']:.3g}; " + ("; ".join(c["tvm_ops"]) or "no fp32 op through TVM")
                     + f"). Host cost model: {r['host_cost_model']}"
                     + (f" (whole-model failed: {r['host_cost_model_error']})" if r.get("host_cost_model_error")
                        else "") + ".")
        for key, label in (("host", "host latency"), ("accel", "accelerator energy")):
            if key not in r:
                lines.append(f"  * {label}: {_state(r)}")
                continue
            dom = r[key].get("dominance", [])
            parts = []
            for x in dom:
                if x["dominated"] is None:
                    parts.append(f"{x['uniform']} ({x['fraction']:.2f}x, {x['held_out']:.1f}): no mixed plan "
                                 "measured at or below its cost")
                    continue
                verdict = _verdict(x)
                if x.get("search_dominated") is False:
                    verdict += ", NOT on the search split"
                parts.append(f"{x['uniform']} ({x['fraction']:.2f}x, {x['held_out']:.1f}) vs mixed "
                             f"{_budget_label(x['mixed_budget'])} ({x['mixed_held_out']:.1f}): {verdict}")
            counts = [x["dominated"] for x in dom if x["dominated"] is not None]
            lines.append(f"  * {label} ({sum(counts)} of {len(counts)} uniform plans dominated on held-out): "
                         + "; ".join(parts) + ".")
    lines += ["", "## Mixed vs uniform at equal cost", "",
              "Per uniform plan: a budget search at exactly its modelled cost (search only, scored on the NumPy "
              "reference), and the mixed plan at no more cost that scores best on the search split among all "
              "budget runs. The search's first candidate is the dearest uniform plan within the budget, so on the "
              "search split a mixed plan never scores below it; the held-out split says whether that carries over "
              "(one sample moves a %-metric by 100/n points).", "",
              "| model | cost model | uniform | cost (x w8a8) | uniform search / held-out | mixed budget | mixed cost "
              "| mixed search / held-out | search (s, evaluations) | verdict (held-out) |",
              "|---|---|---|---:|---:|---|---:|---:|---|---|"]
    for name, r in models.items():
        for key in ("host", "accel"):
            part = r.get(key) or {}
            runs = {b["budget"]: b for b in part.get("at_uniform_cost", [])}
            for x in part.get("dominance", []):
                run = runs.get(f"= {x['uniform']}")
                searched = ("-" if run is None else "infeasible" if "infeasible" in run
                            else f"{run['search_seconds']:.0f} s, {run['evaluations']}")
                if x["dominated"] is None:
                    lines.append(f"| {name} | {key} | {x['uniform']} | {x['fraction']:.3f} | {_fmt(x.get('search'))} / "
                                 f"{x['held_out']:.1f} | - | - | - | {searched} | no mixed plan |")
                    continue
                verdict = _verdict(x)
                lines.append(f"| {name} | {key} | {x['uniform']} | {x['fraction']:.3f} | {_fmt(x.get('search'))} / "
                             f"{x['held_out']:.1f} | {_budget_label(x['mixed_budget'])} | "
                             f"{_fmt(x.get('mixed_fraction'), '.3f')} | {_fmt(x.get('mixed_search'))} / "
                             f"{x['mixed_held_out']:.1f} | "
                             f"{searched} | {verdict} |")
    lines += ["", "## Plans", ""]
    for name, r in models.items():
        for key in ("host", "accel"):
            for b in (r.get(key) or {}).get("budgets", []) + (r.get(key) or {}).get("at_uniform_cost", []):
                if "infeasible" in b:
                    lines.append(f"* {name} {key} {_budget_label(b['budget'])}: infeasible: {b['infeasible']}")
                else:
                    mix = ", ".join(f"{n} {p}" for p, n in b["plan_mix"].items())
                    lines.append(f"* {name} {key} {_budget_label(b['budget'])}: {mix} (search split "
                                 f"{b['search']:.1f})")
    lines += ["", "## Why the layers got their bits (the report's explanation, excerpt)", "",
              "The three most and the two least sensitive layers of each mixed plan, as `Report.explanation` "
              "gives them (sensitivity: output noise ratio with the layer alone at w4a8).", ""]
    for name, r in models.items():
        for key in ("host", "accel"):
            for b in (r.get(key) or {}).get("budgets", []):
                if "explained" not in b:
                    continue
                lines.append(f"* {name} {key} {b['budget']}x:")
                lines += [f"  * {e['name']} {e['precision']} (sensitivity {e['sensitivity']:.2e}): {e['reason']}"
                          for e in b["explained"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="cls,rec,det")
    parser.add_argument("--samples", type=int, default=40, help="images per split (rec)")
    parser.add_argument("--cls-samples", type=int, default=100,
                        help="images per split (cls: its 54-layer budget compile is the 3-minute check, with an "
                             "accuracy_fn over ~100 samples)")
    parser.add_argument("--det-samples", type=int, default=16, help="images per split (det)")
    parser.add_argument("--render", metavar="JSON", nargs="+",
                        help="only write the markdown again from result JSONs (their models merged, in order)")
    parser.add_argument("--json", default=str(DOCS / "corpus_table.json"), help="where the results go")
    parser.add_argument("--merge", action="store_true", help="keep the models not run from the existing JSON")
    args = parser.parse_args(argv)
    out = Path(args.json)
    if args.render:
        parts = [json.loads(Path(p).read_text()) for p in args.render]
        merged = dict(parts[0])
        merged["models"] = {k: v for part in parts for k, v in part["models"].items()}
        merged["command"] = "; ".join(p["command"] for p in parts)
        merged["seconds"] = max(p.get("seconds", 0) for p in parts)
        merged["load_at_end"] = parts[-1].get("load_at_end", [])
        merged["load_at_start"] = parts[0].get("load_at_start", [])
        (DOCS / "corpus_table.md").write_text(markdown(merged))
        return 0
    flags = [f" --{k.replace('_', '-')}" + ("" if v is True else f" {v}") for k, v in vars(args).items()
             if v != parser.get_default(k)]
    start = time.perf_counter()
    result = {"command": COMMAND + "".join(flags), "load_at_start": load_average(),
              "machine": describe_machine(packages=("apache-tvm", "numpy", "scipy")), "models": {}}
    if args.merge and out.is_file():
        result["models"] = json.loads(out.read_text()).get("models", {})

    def save() -> None:
        result["seconds"] = time.perf_counter() - start
        result["load_at_end"] = load_average()
        out.write_text(json.dumps(result, indent=1, default=str))

    for name in args.models.split(","):
        samples = {"det": args.det_samples, "cls": args.cls_samples}.get(name, args.samples)
        t0 = time.perf_counter()
        result["models"][name] = res = {}
        try:
            run_model(name, samples, res, save)
        except Exception as err:  # noqa: BLE001 -- keep the other models' figures and this one's so far
            import traceback

            traceback.print_exc()
            res["error"] = f"{type(err).__name__}: {err}"
        result["models"][name]["total_seconds"] = time.perf_counter() - t0
        save()
    save()
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
