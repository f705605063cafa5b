"""Budget search on a real 54-layer network: time, evaluations and accuracy of the plans, against uniform plans.

The model is the ``cls`` network of the real-model corpus (``tvm_mp.testing.corpus``: PP-OCR text-orientation
classifier, MobileNetV3-style, 53 conv + 1 dense, batch 1 at 3x48x192). Its task: rendered digit strings, every
second one turned by 180 degrees (label 1) -- 16 images calibrate, 100 are the ``accuracy_fn`` of the search
(``search`` split), 100 others are held out (``held-out`` split, never seen by the search); top-1 on both.

A. **Host cost model** (the default: analytical CPU model, energy modelled). For budgets of 0.85x and 0.7x the
   energy of uniform w8a8: a fresh ``tvm_mp.compile(mod, budget=..., calibration=..., accuracy_fn=...)`` timed end
   to end (calibration, cost table, search, TVM build, the accuracy of the built model), with the load average
   around it; the search's own time and real evaluations; top-1 of the built model (TVM) on both splits. Uniform
   plans (fp32, w8a8, w4a8 and every uniform plan at or below the budget's cost) on the NumPy reference.
B. **Accelerator cost model** (``tvm_mp.cost_models.accel.AccelCostModel``, the default hardware): its cost table
   costs ~0.5 s per layer and option, so the space is a grid of :data:`ACCEL_OPTIONS` and the table is built once
   (its time is reported); budgets 0.98x (between uniform w4a8 and w8a8), 0.9x, 0.85x and 0.7x of w8a8 energy are
   searched on that context (``compile_with_budget(context=...)``: search + build + accuracy timed; a budget below
   the cheapest plan of the grid is reported as such), and an energy
   front (``tvm_mp.explore``) is compared with the uniform plans of the grid.

    python bench/search_real.py [--parts host,accel] [--budgets 0.85,0.7]

Writes ``docs/bench_search_real.json`` and ``docs/bench_search_real.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from tvm_mp.testing.machine import describe_machine, machine_line

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
COMMAND = "python bench/search_real.py"
#: The accelerator part's options: a grid of weight x activation bits (the accelerator ignores kernel kinds).
ACCEL_GRID = [(w, a) for w in (2, 3, 4, 6, 8) for a in (4, 8)] + [(2, 2), (4, 2), (3, 3), (4, 3), (8, 6), (6, 6)]
#: Acceptance of the issue: a budget compile of a 50+ layer network within this many seconds.
TARGET_SECONDS = 180.0


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def top1(outputs, labels) -> float:
    out = np.asarray(outputs).reshape(len(labels), -1)
    return float(np.mean(out.argmax(axis=1) == np.asarray(labels)))


class Task:
    """The cls model with its calibration, search and held-out splits."""

    def __init__(self):
        from tvm_mp.testing import corpus

        start = time.perf_counter()
        self.mod, self.model = corpus.load("cls")
        self.load_seconds = time.perf_counter() - start
        shape = self.model.shapes["x"]
        images, _ = corpus.text_images(16, shape, seed=1, rotate=True)
        self.calibration = [images[:8], images[8:]]
        self.x_search, _ = corpus.text_images(100, shape, seed=7, rotate=True)
        self.x_held, _ = corpus.text_images(100, shape, seed=11, rotate=True)
        self.y = np.arange(100) % 2  # every second image is turned by 180 degrees

    def accuracy_fn(self, model) -> float:
        return top1(model.run(self.x_search), self.y)

    def held_out(self, run) -> float:
        return top1(run(self.x_held), self.y)


def plan_mix(plan) -> dict:
    counts: dict = {}
    for _, p in plan.items():
        counts[str(p)] = counts.get(str(p), 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def uniform_rows(task, ctx, reference: float, limit_fraction: float) -> list[dict]:
    """Every uniform plan of the context's space costing at most ``limit_fraction`` x w8a8 energy, plus w8a8 and
    w4a8 if present: cost fraction, top-1 on both splits (NumPy reference, bit-exact with the built model)."""
    from tvm_mp import PrecisionPlan

    rows = []
    for prec in ctx.space.uniform_precisions():
        idx = ctx.space.uniform_index(prec)
        frac = ctx.costs.totals(idx)["energy_uj"] / reference
        if frac > limit_fraction + 1e-9 and str(prec) not in ("w8a8", "w4a8"):
            continue
        plan = PrecisionPlan({n: prec for n in ctx.space.names})
        rows.append({"plan": str(prec), "energy_fraction": frac, "search_top1": ctx.scorer.score(plan),
                     "held_out_top1": task.held_out(lambda x, p=plan: ctx.scorer.evaluator.run(p, [x]))})
        log(f"  uniform {prec}: {frac:.3f} x w8a8, top-1 {rows[-1]['search_top1']:.2f} / "
            f"{rows[-1]['held_out_top1']:.2f}")
    return sorted(rows, key=lambda r: r["energy_fraction"])


def judge(row: dict, uniform: list[dict], w8a8: dict) -> dict:
    """The issue's criteria for one budget: the best uniform plan within it (held-out), whether the mixed plan
    dominates it, and -- where that uniform plan is within 1 point of w8a8 -- whether the mixed plan is too."""
    within = [u for u in uniform if u["energy_fraction"] <= row["budget_fraction"] + 1e-9]
    best = max(within, key=lambda u: u["held_out_top1"]) if within else None
    out = {"best_uniform_within": None if best is None else best["plan"],
           "best_uniform_held_out_top1": None if best is None else best["held_out_top1"],
           "mixed_dominates": best is None or row["held_out_top1"] >= best["held_out_top1"],
           "loss_vs_w8a8_points": 100 * (w8a8["held_out_top1"] - row["held_out_top1"])}
    applies = best is not None and best["held_out_top1"] >= w8a8["held_out_top1"] - 0.01 - 1e-9
    out["one_point_rule"] = ("applies: " + ("met" if out["loss_vs_w8a8_points"] <= 1.0 + 1e-9 else "missed")
                             if applies else "n/a (no uniform plan at this cost is within 1 point of w8a8)")
    return out


def search_row(cm, task, fraction: float, seconds: float, load_before, load_after, w8a8: float) -> dict:
    out = cm.search
    res = out.result
    keep = ("tier", "chosen_by", "candidates", "refined", "proxy_seconds", "exact_seconds", "ilp_seconds",
            "exact_entries", "proxy_entries")
    return {"budget_fraction": fraction, "seconds": seconds, "search_seconds": res.seconds,
            "evaluations": res.evaluations, "notes": {k: res.notes.get(k) for k in keep},
            "checked": [list(c[:2]) for c in res.notes.get("checked", [])],
            "energy_fraction": out.predicted["energy_uj"] / w8a8, "search_top1": out.search_score,
            "compiled_search_top1": cm.report.accuracy, "held_out_top1": task.held_out(cm.run),
            "plan_mix": plan_mix(res.plan), "load_before": load_before, "load_after": load_after,
            "within_target": seconds <= TARGET_SECONDS}


# ---- A: host -----------------------------------------------------------------------------------------------------
def host_part(task: Task, budgets: list[float]) -> dict:
    import tvm_mp
    from tvm_mp import Budget, Precision, PrecisionPlan
    from tvm_mp.canonical import canonicalize
    from tvm_mp.search.costs import BudgetError
    from tvm_mp.search.pareto import search_context

    start = time.perf_counter()
    ctx = search_context(canonicalize(task.mod), task.calibration, accuracy_fn=task.accuracy_fn, progress=False)
    context_seconds = time.perf_counter() - start
    w8a8 = ctx.costs.totals(ctx.space.uniform_index(Precision(8, 8)))["energy_uj"]
    fp32_plan = PrecisionPlan({})
    fp32 = {"plan": "fp32", "search_top1": ctx.scorer.score(fp32_plan),
            "held_out_top1": task.held_out(lambda x: ctx.scorer.evaluator.run(fp32_plan, [x]))}
    uniform = uniform_rows(task, ctx, w8a8, max(budgets))
    cheapest = min((ctx.costs.totals(ctx.space.uniform_index(p))["energy_uj"] / w8a8, str(p))
                   for p in ctx.space.uniform_precisions())
    rows = []
    for frac in budgets:
        log(f"host: compile at {frac} x w8a8 energy")
        before = load_average()
        t0 = time.perf_counter()
        try:
            cm = tvm_mp.compile(task.mod, budget=Budget(energy_uj=frac * w8a8), calibration=task.calibration,
                                accuracy_fn=task.accuracy_fn)
        except BudgetError as err:
            rows.append({"budget_fraction": frac, "infeasible": str(err), "seconds": time.perf_counter() - t0})
            log(f"  infeasible: {err}")
            continue
        seconds = time.perf_counter() - t0
        row = search_row(cm, task, frac, seconds, before, load_average(), w8a8)
        row.update(judge(row, uniform, next(u for u in uniform if u["plan"] == "w8a8")))
        rows.append(row)
        log(f"  {seconds:.0f} s (search {row['search_seconds']:.0f} s, {row['evaluations']} evaluations), top-1 "
            f"{row['search_top1']:.2f} / held-out {row['held_out_top1']:.2f}")
    return {"w8a8_energy_uj": w8a8, "context_seconds": context_seconds, "fp32": fp32, "uniform": uniform,
            "cheapest_uniform": {"plan": cheapest[1], "energy_fraction": cheapest[0]},
            "options_per_layer": int(ctx.space.max_options), "layers": ctx.space.n_layers, "budgets": rows,
            "cost_model": ctx.costs.model_name}


# ---- B: accelerator ----------------------------------------------------------------------------------------------
def accel_part(task: Task, budgets: list[float], front_budgets: int, grid=ACCEL_GRID) -> dict:
    from tvm_mp import Budget, Precision
    from tvm_mp.canonical import canonicalize
    from tvm_mp.cost_models.accel import AccelCostModel
    from tvm_mp.search.budget import compile_with_budget
    from tvm_mp.search.costs import BudgetError
    from tvm_mp.search.pareto import explore, search_context

    mod = canonicalize(task.mod)
    options = [Precision(w, a) for w, a in grid]
    start = time.perf_counter()
    ctx = search_context(mod, task.calibration, accuracy_fn=task.accuracy_fn, options=options,
                         cost_model=AccelCostModel(), progress=False)
    context_seconds = time.perf_counter() - start
    log(f"accel: context (calibration + cost table of {len(options)} options) {context_seconds:.0f} s")
    w8a8 = ctx.costs.totals(ctx.space.uniform_index(Precision(8, 8)))["energy_uj"]
    uniform = uniform_rows(task, ctx, w8a8, 1.0)
    rows = []
    for frac in budgets:
        log(f"accel: search + build at {frac} x w8a8 energy")
        before = load_average()
        t0 = time.perf_counter()
        try:
            cm = compile_with_budget(mod, Budget(energy_uj=frac * w8a8), calibration=task.calibration,
                                     accuracy_fn=task.accuracy_fn, context=ctx, measure=False)
        except BudgetError as err:
            rows.append({"budget_fraction": frac, "infeasible": str(err), "seconds": time.perf_counter() - t0})
            log(f"  infeasible: {err}")
            continue
        seconds = time.perf_counter() - t0
        row = search_row(cm, task, frac, seconds, before, load_average(), w8a8)
        row.update(judge(row, uniform, next(u for u in uniform if u["plan"] == "w8a8")))
        rows.append(row)
        log(f"  {seconds:.0f} s (search {row['search_seconds']:.0f} s, {row['evaluations']} evaluations), top-1 "
            f"{row['search_top1']:.2f} / held-out {row['held_out_top1']:.2f}")
    log(f"accel: energy front, {front_budgets} budgets")
    t0 = time.perf_counter()
    front = explore(mod, context=ctx, budgets=front_budgets, seed=0, progress=False)
    front_seconds = time.perf_counter() - t0
    dominance = front.dominance("energy_uj")
    return {"w8a8_energy_uj": w8a8, "context_seconds": context_seconds, "options": [str(o) for o in options],
            "uniform": uniform, "budgets": rows,
            "front": {"seconds": front_seconds, "budgets": front_budgets, "runs": front.notes["runs"],
                      "points": [{"kind": p.kind, "label": p.label, "energy_fraction": p.energy_uj / w8a8,
                                  "search_top1": p.score} for p in front.front("energy_uj")],
                      "dominance": dominance,
                      "uniform_dominated": sum(d["dominates"] for d in dominance), "uniform_plans": len(dominance)}}


# ---- report ------------------------------------------------------------------------------------------------------
def _budget_table(part: dict) -> list[str]:
    lines = ["| budget (x w8a8 energy) | compile (s) | search (s) | real evaluations | load before / after "
             "| plan energy | top-1 search / held-out | best uniform within budget (held-out) | mixed dominates "
             "| loss vs w8a8 (pt) | 1-point rule | plan |",
             "|---:|---:|---:|---:|---|---:|---|---|---|---:|---|---|"]
    for r in part["budgets"]:
        if "infeasible" in r:
            lines.append(f"| {r['budget_fraction']:.2f} | - | - | - | - | - | - | - | - | - | - | infeasible: "
                         f"{r['infeasible']} |")
            continue
        uni = (f"{r['best_uniform_within']} ({r['best_uniform_held_out_top1']:.2f})"
               if r["best_uniform_within"] else "none")
        mix = ", ".join(f"{n} {p}" for p, n in r["plan_mix"].items())
        load = f"{r['load_before'][0]:.1f} / {r['load_after'][0]:.1f}"
        lines.append(f"| {r['budget_fraction']:.2f} | {r['seconds']:.0f} | {r['search_seconds']:.0f} | "
                     f"{r['evaluations']} | {load} | "
                     f"{r['energy_fraction']:.3f} | {r['search_top1']:.2f} / {r['held_out_top1']:.2f} | {uni} | "
                     f"{r['mixed_dominates']} | {r['loss_vs_w8a8_points']:.0f} | {r['one_point_rule']} | {mix} |")
    return lines


def _uniform_table(part: dict, fp32: dict | None = None) -> list[str]:
    lines = ["| plan | energy (x w8a8) | top-1 search | top-1 held-out |", "|---|---:|---:|---:|"]
    if fp32:
        lines.append(f"| fp32 | - | {fp32['search_top1']:.2f} | {fp32['held_out_top1']:.2f} |")
    for u in part["uniform"]:
        lines.append(f"| {u['plan']} | {u['energy_fraction']:.3f} | {u['search_top1']:.2f} | "
                     f"{u['held_out_top1']:.2f} |")
    return lines


def _search_detail(part: dict) -> list[str]:
    lines = ["| budget | option tier | proxy (s) | exact single-layer runs (s) | integer programs (s) "
             "| candidates + refinements | chosen by | checked plans (how: search top-1) |",
             "|---:|---|---:|---:|---:|---|---|---|"]
    for r in (r for r in part["budgets"] if "infeasible" not in r):
        n = r["notes"]
        checked = "; ".join(f"{how}: {score:.2f}" for how, score in r["checked"])
        lines.append(f"| {r['budget_fraction']:.2f} | {n['tier']} | {n['proxy_seconds']:.1f} | "
                     f"{n['exact_entries']} ({n['exact_seconds']:.1f}) | {n['ilp_seconds']:.1f} | "
                     f"{n['candidates'] - n['refined']} + {n['refined']} | {n['chosen_by']} | {checked} |")
    return lines


def verdict(result: dict) -> list[str]:
    """The issue's acceptance items, read off the figures."""
    lines = ["## Acceptance", ""]
    host = result.get("host")
    if host:
        done = [r for r in host["budgets"] if "infeasible" not in r]
        times = ", ".join(f"{r['budget_fraction']:.2f}x: {r['seconds']:.0f} s at load {r['load_before'][0]:.1f}"
                          for r in done)
        ok = all(r["within_target"] for r in done)
        lines.append(f"* **Budget compile of the 54-layer network within {TARGET_SECONDS:.0f} s** (2 cores, "
                     f"the machine's load): {'met' if ok else 'NOT met'} ({times}; search part "
                     + ", ".join(f"{r['search_seconds']:.0f} s / {r['evaluations']} real evaluations" for r in done)
                     + ").")
    for name, part in (("host", host), ("accelerator", result.get("accel"))):
        if not part:
            continue
        for r in part["budgets"]:
            if "infeasible" in r:
                lines.append(f"* {name} {r['budget_fraction']:.2f}x: no plan of the space meets it.")
                continue
            loss = r["loss_vs_w8a8_points"]
            versus = f"{loss:.0f} pt below w8a8" if loss >= 0 else f"{-loss:.0f} pt above w8a8"
            lines.append(f"* {name} {r['budget_fraction']:.2f}x: mixed plan {r['held_out_top1']:.2f} held-out "
                         f"({versus}), best uniform plan within the budget "
                         f"{r['best_uniform_within'] or 'none'}"
                         + (f" {r['best_uniform_held_out_top1']:.2f}" if r["best_uniform_within"] else "")
                         + f"; dominates: {r['mixed_dominates']}; 1-point rule: {r['one_point_rule']}.")
    if result.get("accel"):
        f = result["accel"]["front"]
        lines.append(f"* Accelerator energy front: mixed plans dominate {f['uniform_dominated']} of the "
                     f"{f['uniform_plans']} uniform plans of the grid.")
    return lines + [""]


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = ["# Budget search on a real 54-layer network", "",
             f"Command: `{result['command']}` ({result['seconds']:.0f} s"
             + "".join(f"; the {k} part from an earlier `{c}`" for k, c in result.get("earlier_commands", {}).items())
             + f"). {machine_line(m)} "
             f"Load average at the end: {' / '.join(f'{x:.2f}' for x in result['load_at_end'])}. The machine was "
             "shared with other jobs during the run (see the load around each compile). Energy is *modelled*.", "",
             "Model: PP-OCR text-orientation classifier (`cls` of `tvm_mp.testing.corpus`, 54 layers: 53 conv "
             "+ 1 dense, batch 1 at 3x48x192), loaded from ONNX in "
             f"{result['load_seconds']:.0f} s (not part of the compile times). Task: rendered digit strings, "
             "every second one turned by 180 degrees; 16 images calibrate, 100 are the search's `accuracy_fn` "
             "(*search*), 100 others are held out (*held-out*, never seen by the search). Top-1 on 100 images moves "
             "in steps of 1 point; two plans a few points apart on one split are within sampling noise.", ""]
    lines += verdict(result)
    if "host" in result:
        h = result["host"]
        lines += ["## A. Host cost model: `tvm_mp.compile(mod, budget=...)` end to end", "",
                  f"Cost model `{h['cost_model']}`; w8a8 costs {h['w8a8_energy_uj']:.0f} uJ (modelled). "
                  f"{h['layers']} layers x up to {h['options_per_layer']} options. The cheapest *uniform* plan is "
                  f"{h['cheapest_uniform']['plan']} at {h['cheapest_uniform']['energy_fraction']:.2f}x w8a8: on "
                  "this CPU model packed sub-8-bit kernels cost more than w8a8 and only bit-serial kernels at 1-3 "
                  "activation bits cost less, so no uniform plan meets either budget and a mixed plan must put "
                  "some layers at 1-3-bit activations.", "",
                  "Compile time = calibration + cost table + search + TVM build + `accuracy_fn` on the built "
                  f"model (target: at most {TARGET_SECONDS:.0f} s).", ""]
        lines += _budget_table(h) + [""] + _search_detail(h) + ["", "Uniform plans (NumPy reference):", ""]
        lines += _uniform_table(h, h["fp32"]) + [""]
    if "accel" in result:
        a = result["accel"]
        lines += ["## B. Accelerator cost model", "",
                  f"`AccelCostModel` (default hardware), options {', '.join(a['options'])}; the context "
                  f"(calibration + the cost table, ~0.5 s per layer x option) took {a['context_seconds']:.0f} s "
                  "and is shared by the budgets below, whose time is search + TVM build + `accuracy_fn` on the "
                  f"built model. w8a8 costs {a['w8a8_energy_uj']:.0f} uJ (modelled).", ""]
        lines += _budget_table(a) + [""] + _search_detail(a) + ["", "Uniform plans of the grid (NumPy reference):",
                                                               ""]
        lines += _uniform_table(a) + [""]
        f = a["front"]
        lines += [f"Energy front (`tvm_mp.explore`, {f['budgets']} budgets, {f['seconds']:.0f} s; scores on the "
                  f"search split): mixed plans dominate {f['uniform_dominated']} of the {f['uniform_plans']} "
                  "uniform plans (a mixed plan on the front costing no more and scoring at least as well, one of "
                  "the two strictly).", "",
                  "| uniform plan | energy (x w8a8) | top-1 | best mixed at <= that energy | top-1 | dominates |",
                  "|---|---:|---:|---:|---:|---|"]
        w8 = a["w8a8_energy_uj"]
        for d in f["dominance"]:
            mixed = "-" if d["mixed_cost"] is None else f"{d['mixed_cost'] / w8:.3f}"
            score = "-" if d["mixed_score"] is None else f"{d['mixed_score']:.2f}"
            lines.append(f"| {d['uniform']} | {d['uniform_cost'] / w8:.3f} | {d['uniform_score']:.2f} | {mixed} | "
                         f"{score} | {d['dominates']} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="host,accel")
    parser.add_argument("--budgets", default="0.85,0.7", help="host budgets, fractions of w8a8 energy")
    parser.add_argument("--accel-budgets", default="0.98,0.9,0.85,0.7")
    parser.add_argument("--front-budgets", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 4 accelerator options, 1 front budget")
    parser.add_argument("--render", metavar="JSON", help="only write the markdown again from a result JSON")
    parser.add_argument("--merge", action="store_true", help="keep the parts not run from the existing JSON")
    args = parser.parse_args(argv)
    if args.render:
        result = json.loads(Path(args.render).read_text())
        (DOCS / "bench_search_real.md").write_text(markdown(result) + "\n")
        return 0
    parts = args.parts.split(",")
    start = time.perf_counter()
    flags = [f" --{k.replace('_', '-')}" + ("" if v is True else f" {v}") for k, v in vars(args).items()
             if v != parser.get_default(k)]
    result = {"command": COMMAND + "".join(flags),
              "machine": describe_machine(packages=("apache-tvm", "numpy", "scipy"))}
    out = DOCS / "bench_search_real.json"
    if args.merge and out.is_file():  # keep the other parts of an earlier run
        earlier = json.loads(out.read_text())
        for key in ("host", "accel"):
            if key in earlier and key not in parts:
                result[key] = earlier[key]
                result.setdefault("earlier_commands", {})[key] = earlier["command"]
    task = Task()
    result["load_seconds"] = task.load_seconds

    def save() -> None:  # after each part: a crash later keeps what was measured
        result["seconds"] = time.perf_counter() - start
        result["load_at_end"] = load_average()
        DOCS.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1, default=str))
        (DOCS / "bench_search_real.md").write_text(markdown(result) + "\n")

    if "host" in parts:
        result["host"] = host_part(task, [float(b) for b in args.budgets.split(",")])
        save()
    if "accel" in parts:
        grid = [(2, 4), (4, 4), (4, 8), (8, 8)] if args.quick else ACCEL_GRID
        result["accel"] = accel_part(task, [float(b) for b in args.accel_budgets.split(",")],
                                     1 if args.quick else args.front_budgets, grid)
        save()
    save()
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
