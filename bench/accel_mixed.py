"""Mixed plans on the ACCELERATOR energy model for the real corpus models: what exists, and what the search finds.

For ``rec`` and ``cls`` of the corpus (tasks, splits and metrics of ``bench/corpus_table.py``; the accelerator
space of that table: ``AccelCostModel`` energy, options w8a8, w4a8, w4a4, w2a2):

1. **Uniform plans**: energy as a fraction of uniform w8a8, search-split and held-out metric.
2. **The search** (``tvm_mp.search.pareto.optimize``, guided) at 0.85x and 0.7x of w8a8 energy, each ``--variants``
   on a fresh scorer (calibration ranges and cost table shared, nothing scored before): time, evaluations,
   metric on both splits, plan mix, what the screening did.
3. **Single-layer probes**: uniform w8a8 with one layer at one cheaper option (w4a4 and w2a2 first, then w4a8),
   from the most energy-saving entries down, within ``--cap-seconds``: which entries alone kill the metric.
4. **Greedy by real score per energy saved**: moves from the probes (least loss, then most saving first); a move is
   kept while the whole plan's search-split metric stays within ``--tolerance`` points of w8a8; the plan at each
   budget it passes, with its held-out metric. A plan the search could have found.

    python bench/accel_mixed.py --models rec [--parts search,uniform,probe] [--variants current] [--json PATH]
    python bench/accel_mixed.py --render A.json [B.json ...] [--notes FILE]   # writes docs/accel_mixed.md

Writes ``--json`` after every step (a stopped run keeps what it measured).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus_table import ACCEL_GRID, TASKS, load_average, log, plan_mix  # noqa: E402

from tvm_mp.testing.machine import describe_machine, machine_line  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
COMMAND = "python bench/accel_mixed.py"
BUDGETS = (0.85, 0.7)
VARIANTS = {
    "current": {},  # the default GuidedConfig of the code being run
    "no-screen": {"screen": False},
    "no-anchors": {"anchors": False},  # as before the uniform anchors
}


def accel_context(task):
    from tvm_mp import Precision
    from tvm_mp.canonical import canonicalize
    from tvm_mp.cost_models.accel import AccelCostModel
    from tvm_mp.search.pareto import search_context

    return search_context(canonicalize(task.mod), task.calibration, accuracy_fn=task.accuracy_fn,
                          options=[Precision(w, a) for w, a in ACCEL_GRID], cost_model=AccelCostModel(),
                          progress=False)


def fresh(ctx, task):
    """The same space and costs on a new scorer (same calibration ranges): nothing scored, nothing cached."""
    from tvm_mp.search.accuracy import Scorer
    from tvm_mp.search.pareto import SearchContext

    scorer = Scorer(ctx.scorer.mod, task.calibration, accuracy_fn=task.accuracy_fn, ranges=ctx.scorer.ranges)
    return SearchContext(scorer, ctx.space, ctx.costs, progress=False)


def held(task, ctx, plan) -> float:
    return task.held_out(lambda x, p=plan: ctx.scorer.evaluator.run(p, [x]))


def w8a8_energy(ctx) -> float:
    from tvm_mp import Precision

    return float(ctx.costs.totals(ctx.space.uniform_index(Precision(8, 8)))["energy_uj"])


def uniform(task, ctx, res, save) -> None:
    from tvm_mp import PrecisionPlan

    ref = w8a8_energy(ctx)
    rows = [{"plan": "fp32", "fraction": None, "search": ctx.scorer.fp32_score(),
             "held_out": held(task, ctx, PrecisionPlan({}))}]
    for prec in ctx.space.uniform_precisions():
        frac = float(ctx.costs.totals(ctx.space.uniform_index(prec))["energy_uj"]) / ref
        plan = PrecisionPlan({n: prec for n in ctx.space.names})
        rows.append({"plan": str(prec), "fraction": frac, "search": ctx.scorer.score(plan),
                     "held_out": held(task, ctx, plan)})
        log(f"  uniform {prec}: {frac:.3f}x, {rows[-1]['search']:.1f} / held-out {rows[-1]['held_out']:.1f}")
    res["uniform"] = rows
    save()


def search(task, ctx, res, save, variants, budgets=BUDGETS, shared: bool = False) -> None:
    """Per budget (a fraction of w8a8 energy, or "uniform": every uniform plan's own cost) and variant: the search,
    on a fresh scorer or (``shared``) on the context's (its proxy and scores reused: the plan is the same, being
    deterministic; ``evaluations`` counts only plans not scored before)."""
    from tvm_mp import Budget
    from tvm_mp.search.costs import BudgetError, check_budget
    from tvm_mp.search.guided import GuidedConfig
    from tvm_mp.search.pareto import optimize

    ref = w8a8_energy(ctx)
    rows = res.setdefault("search", [])
    fracs = []
    for b in budgets:
        if b == "uniform":  # each uniform integer plan's own cost below w8a8 (the front's dominance checks)
            from tvm_mp import Precision

            fracs += [float(ctx.costs.totals(ctx.space.uniform_index(p))["energy_uj"]) / ref * (1 + 1e-9)
                      for p in ctx.space.uniform_precisions() if p != Precision(8, 8)]
        else:
            fracs.append(float(b))
    for frac in sorted(set(fracs), reverse=True):
        for name in variants:
            config = GuidedConfig(progress=False, **VARIANTS[name])
            c = ctx if shared else fresh(ctx, task)
            before = load_average()
            t0 = time.perf_counter()
            budget = Budget(energy_uj=frac * ref)
            try:
                check_budget(c.costs, budget)
            except BudgetError as err:
                rows.append({"variant": name, "budget": frac, "infeasible": str(err)})
                log(f"  search {name} {frac}x: infeasible")
                save()
                continue
            out, _ = optimize(c, budget, np.random.default_rng(0), config)
            seconds = time.perf_counter() - t0
            plan = out.plan
            row = {"variant": name, "budget": frac, "shared_scorer": shared, "seconds": seconds,
                   "evaluations": out.evaluations,
                   "fraction": float(c.costs.totals(c.space.index_of(plan))["energy_uj"]) / ref,
                   "search": c.scorer.score(plan), "held_out": held(task, c, plan),
                   "plan_mix": plan_mix(plan), "load_before": before, "load_after": load_average(),
                   "notes": {k: v for k, v in out.notes.items() if k != "checked"},
                   "checked": [list(x[:2]) for x in out.notes.get("checked", [])]}
            rows.append(row)
            log(f"  search {name} {frac}x: {seconds:.0f} s, {out.evaluations} evaluations, {row['fraction']:.3f}x, "
                f"{row['search']:.1f} / held-out {row['held_out']:.1f}  [{row['notes'].get('chosen_by')}] "
                f"checked {row['checked']}")
            save()


def probe(task, ctx, res, save, cap_seconds: float, tolerance: float) -> None:
    from tvm_mp import Precision

    space, energy = ctx.space, ctx.costs.energy_uj
    names = space.names
    w8 = space.uniform_index(Precision(8, 8))
    ref = w8a8_energy(ctx)
    base = ctx.scorer.score(space.plan(w8))
    res["w8a8_search"] = base
    order = {"w4a4": 0, "w2a2": 1, "w4a8": 2}
    entries = []
    for i, opts in enumerate(space.options):
        for j, o in enumerate(opts):
            s = float(energy[i, w8[i]] - energy[i, j])
            if str(o) in order and s > 0:
                entries.append((order[str(o)], -s, i, j, s))
    entries.sort()
    t0 = time.perf_counter()
    single = res.setdefault("single", [])
    done = {(r["layer"], r["option"]) for r in single}
    for _, _, i, j, s in entries:
        if time.perf_counter() - t0 > cap_seconds:
            break
        if (names[i], str(space.options[i][j])) in done:
            continue
        plan = w8.copy()
        plan[i] = j
        single.append({"layer": names[i], "option": str(space.options[i][j]), "search": ctx.scorer.score(
            space.plan(plan)), "saving_fraction": s / ref})
        if len(single) % 10 == 0:
            log(f"  probes: {len(single)} in {time.perf_counter() - t0:.0f} s")
            save()
    res["probe_seconds"] = time.perf_counter() - t0
    by_opt: dict = {}
    for r in single:
        by_opt.setdefault(r["option"], []).append(r["search"])
    res["probe_by_option"] = {o: {"layers": len(v), "min": min(v), "median": float(np.median(v)),
                                  "within_tolerance": int(sum(x >= base - tolerance for x in v)),
                                  "below_half": int(sum(x < base / 2 for x in v))}
                              for o, v in sorted(by_opt.items())}
    log(f"  probes: {res['probe_by_option']}")
    save()
    # greedy by real score per energy saved
    idx = {(n, str(o)): (i, j) for i, (n, opts) in enumerate(zip(names, space.options)) for j, o in enumerate(opts)}
    moves = sorted(single, key=lambda r: (-min(r["search"], base), -r["saving_fraction"]))
    cur = w8.copy()
    targets = sorted(BUDGETS, reverse=True)
    greedy, tried = [], 0
    t0 = time.perf_counter()
    frac = 1.0
    for r in moves:
        if not targets or time.perf_counter() - t0 > cap_seconds:
            break
        if r["search"] < base - 2 * tolerance - 1e-9:
            continue
        i, j = idx[(r["layer"], r["option"])]
        if energy[i, j] >= energy[i, cur[i]]:
            continue
        trial = cur.copy()
        trial[i] = j
        score = ctx.scorer.score(space.plan(trial))
        tried += 1
        if score >= base - tolerance - 1e-9:
            cur = trial
            frac = float(ctx.costs.totals(cur)["energy_uj"]) / ref
            while targets and frac <= targets[0] + 1e-12:
                b = targets.pop(0)
                plan = space.plan(cur)
                greedy.append({"budget": b, "fraction": frac, "search": score, "held_out": held(task, ctx, plan),
                               "plan_mix": plan_mix(plan), "moves_tried": tried, "plan": {k: str(v) for k, v in
                                                                                         plan.items()},
                               "seconds": time.perf_counter() - t0})
                log(f"  greedy {b}x: {frac:.3f}x, {score:.1f} / held-out {greedy[-1]['held_out']:.1f} ({tried})")
                save()
    final = space.plan(cur)
    res["greedy"] = greedy
    res["greedy_end"] = {"fraction": frac, "search": ctx.scorer.score(final), "moves_tried": tried,
                         "plan_mix": plan_mix(final), "held_out": held(task, ctx, final),
                         "plan": {k: str(v) for k, v in final.items()}, "seconds": time.perf_counter() - t0}
    log(f"  greedy end: {res['greedy_end']['fraction']:.3f}x {res['greedy_end']['search']:.1f} / "
        f"{res['greedy_end']['held_out']:.1f} ({tried} tried) {res['greedy_end']['plan_mix']}")
    save()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="rec")
    p.add_argument("--samples", type=int, default=40)
    p.add_argument("--parts", default="search,uniform,probe")
    p.add_argument("--variants", default="current")
    p.add_argument("--budgets", default=",".join(map(str, BUDGETS)))
    p.add_argument("--shared-scorer", action="store_true")
    p.add_argument("--cap-seconds", type=float, default=600.0)
    p.add_argument("--tolerance", type=float, default=2.5)
    p.add_argument("--json", default=str(DOCS / "accel_mixed.json"))
    p.add_argument("--render", nargs="*")
    p.add_argument("--notes", default="")
    args = p.parse_args(argv)
    if args.render:
        render(args.render, DOCS / "accel_mixed.md", Path(args.notes).read_text() if args.notes else "")
        return 0
    parts = args.parts.split(",")
    result = {"command": f"{COMMAND} {' '.join(sys.argv[1:] if argv is None else argv)}",
              "machine": describe_machine(), "load_at_start": load_average(), "models": {}}
    path = Path(args.json)

    def save():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1, default=str))

    for name in args.models.split(","):
        res = result["models"].setdefault(name, {})
        t0 = time.perf_counter()
        task = TASKS[name](name, args.samples)
        res["load_seconds"] = task.load_seconds
        ctx = accel_context(task)
        res["context_seconds"] = time.perf_counter() - t0 - task.load_seconds
        res["w8a8_energy_uj"] = w8a8_energy(ctx)
        res["layers"] = ctx.space.n_layers
        log(f"== {name}: load {task.load_seconds:.0f} s, context {res['context_seconds']:.0f} s")
        save()
        if "search" in parts:
            search(task, ctx, res, save, args.variants.split(","), args.budgets.split(","), args.shared_scorer)
        if "uniform" in parts:
            uniform(task, ctx, res, save)
        if "probe" in parts:
            probe(task, ctx, res, save, args.cap_seconds, args.tolerance)
    result["load_at_end"] = load_average()
    save()
    return 0


# ---- report --------------------------------------------------------------------------------------------------------
def _f(v, spec=".1f") -> str:
    return "-" if v is None else format(v, spec)


def _mix(mix: dict, top: int = 5) -> str:
    items = list(mix.items())
    return ", ".join(f"{n} {k}" for k, n in items[:top]) + (", ..." if len(items) > top else "")


def render(paths, md_path: Path, notes: str = "") -> None:
    runs = [json.loads(Path(p).read_text()) for p in paths]
    lines = ["# Mixed plans on the accelerator energy model (cls, rec)", "",
             "Commands: " + "; ".join(f"`{r['command']}` (load {r['load_at_start']} -> {r.get('load_at_end')})"
                                      for r in runs) + ". " + machine_line(runs[0]["machine"]), "",
             "Costs: `AccelCostModel` energy (default hardware), options w8a8, w4a8, w4a4, w2a2 (as the accelerator "
             "column of `docs/corpus_table.md`), as a fraction of uniform w8a8. Metrics on the search split (the "
             "searches' `accuracy_fn`) / the held-out split, 40 samples each (one sample = 2.5 points), on the "
             "NumPy reference (bit-exact with the built model for integer layers).", ""]
    if notes:
        lines += ["## Findings", "", notes.strip(), ""]
    models: dict = {}
    for r in runs:
        for name, m in r["models"].items():
            d = models.setdefault(name, {})
            for k, v in m.items():
                if k == "search":
                    d.setdefault("search", []).extend(v)
                else:
                    d[k] = v
    for name, m in models.items():
        lines += [f"## {name} ({m.get('layers')} layers)", ""]
        if m.get("uniform"):
            lines += ["**Uniform plans**", "", "| plan | energy | search | held-out |", "|---|---:|---:|---:|"]
            for u in m["uniform"]:
                lines.append(f"| {u['plan']} | {_f(u['fraction'], '.3f')}x | {u['search']:.1f} | "
                             f"{u['held_out']:.1f} |")
            lines.append("")
        if m.get("probe_by_option"):
            lines += [f"**Single-layer probes** (w8a8 with one layer at the option; w8a8 scores "
                      f"{m['w8a8_search']:.1f}; {len(m['single'])} plans in {m['probe_seconds']:.0f} s):", "",
                      "| option | layers scored | min | median | within tolerance | below half |",
                      "|---|---:|---:|---:|---:|---:|"]
            for o, s in m["probe_by_option"].items():
                lines.append(f"| {o} | {s['layers']} | {s['min']:.1f} | {s['median']:.1f} | {s['within_tolerance']} "
                             f"| {s['below_half']} |")
            worst = sorted(m["single"], key=lambda r: r["search"])[:8]
            lines += ["", "Worst single entries: " + ", ".join(f"{r['layer']} {r['option']} {r['search']:.1f}"
                                                              for r in worst), ""]
        if "greedy_end" in m:
            lines += ["**Greedy by real score per energy saved** (kept while the search-split score stays within "
                      "the tolerance of w8a8):", ""]
            for g in m.get("greedy", []):
                lines.append(f"* {g['budget']}x: {g['fraction']:.3f}x, search {g['search']:.1f}, held-out "
                             f"{g['held_out']:.1f} after {g['moves_tried']} plans: {_mix(g['plan_mix'])}")
            e = m["greedy_end"]
            lines += [f"* end: {e['fraction']:.3f}x, search {e['search']:.1f}, held-out {e['held_out']:.1f} after "
                      f"{e['moves_tried']} plans: {_mix(e['plan_mix'])}", ""]
        if m.get("search"):
            lines += ["**The search** (a fresh scorer per search, or one scorer per model shared by the budgets: see "
                      "the runs' `shared_scorer`):", "",
                      "| budget | variant | energy | search | held-out | time (s) | evaluations (screening) | "
                      "excluded | chosen by | load before / after | plan |",
                      "|---|---|---:|---:|---:|---:|---:|---:|---|---|---|"]
            for s in sorted(m["search"], key=lambda s: (-s["budget"], s["variant"])):
                if "infeasible" in s:
                    lines.append(f"| {s['budget']:.4g}x | {s['variant']} | infeasible: {s['infeasible']} |" + " |" * 8)
                    continue
                n = s["notes"]
                lines.append(f"| {s['budget']:.4g}x | {s['variant']} | {s['fraction']:.3f}x | {s['search']:.1f} | "
                             f"{s['held_out']:.1f} | {s['seconds']:.0f} | {s['evaluations']} "
                             f"({n.get('screen_evaluations', 0)}) | {n.get('excluded', 0)} | {n.get('chosen_by')} | "
                             f"{s['load_before'][0]} / {s['load_after'][0]} | {_mix(s['plan_mix'])} |")
            lines.append("")
        if m.get("uniform") and m.get("search"):
            lines += front_checks(m)
    md_path.write_text("\n".join(lines) + "\n")


def front_checks(m: dict) -> list[str]:
    """Per variant and uniform plan below w8a8: the best mixed plan of the searches at no more cost, on both splits."""
    out = ["**Mixed vs uniform on the front** (per uniform plan: the best search plan at no more energy, held-out; "
           "search split in brackets):", ""]
    for variant in sorted({s["variant"] for s in m["search"]}):
        mixed = [s for s in m["search"] if s["variant"] == variant and "infeasible" not in s]
        cells = []
        for u in m["uniform"]:
            if u["fraction"] is None or u["plan"] == "w8a8":
                continue
            cand = [s for s in mixed if s["fraction"] <= u["fraction"] + 1e-9]
            if not cand:
                cells.append(f"{u['plan']} ({u['fraction']:.3f}x, {u['held_out']:.1f}): no search at or below its cost")
                continue
            best = max(cand, key=lambda s: (s["held_out"], s["search"]))
            ok = best["held_out"] >= u["held_out"]
            ok_s = max(s["search"] for s in cand) >= u["search"]
            cells.append(f"{u['plan']} ({u['fraction']:.3f}x, {u['held_out']:.1f} [{u['search']:.1f}]) vs mixed "
                         f"{best['budget']:.4g}x ({best['held_out']:.1f} [{best['search']:.1f}]): "
                         f"{'dominated' if ok else 'NOT dominated'} held-out, "
                         f"{'dominated' if ok_s else 'NOT dominated'} search split")
        out.append(f"* {variant}: " + "; ".join(cells))
    return out + [""]


if __name__ == "__main__":
    raise SystemExit(main())
