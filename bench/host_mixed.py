"""Mixed plans on the HOST latency model for the real corpus models: what is possible, and what the search finds.

For ``rec`` and ``cls`` of the corpus (tasks, splits and metrics of ``bench/corpus_table.py``; host context with
the ``"whole-model"`` latency predictor, as in that table):

1. **Host-cheap options.** Per layer, the options of the latency-pruned space (no option with at least as many bits
   is as fast) that cost less latency than w8a8 on that layer; per option, the latency it saves summed over the
   layers where it is cheap, and the uniform plans' latency as a fraction of w8a8.
2. **Single-layer real sensitivity.** For each layer and each of its host-cheap options: the search-split metric of
   uniform w8a8 with that one layer moved to that option, and the latency it saves (real ``accuracy_fn`` on the
   NumPy reference). Options are tried from the most saving down, round-robin over layers, within a time cap.
3. **Greedy by real accuracy per latency saved.** Moves (layer -> option) ranked by single-layer loss, then saving;
   each move is applied if the whole plan's real search-split metric stays within ``--tolerance`` points of w8a8
   (else undone), until the plan is at or below each budget (0.95x, 0.9x, 0.85x, 0.7x of w8a8 latency): the plan
   found at each budget, with its held-out metric.
4. **The search** (``tvm_mp.search.pareto.optimize``, guided) at the same budgets, each on a fresh scorer (the
   calibration ranges and the cost table shared, nothing scored before), ``--variants`` of the guided search's
   knobs interleaved per budget: search time, evaluations, search-split and held-out metric, plan mix.
5. Uniform plans at or below 1.0x (every one, on the search and held-out splits) against the mixed plans.

    python bench/host_mixed.py [--models rec,cls] [--samples 40] [--parts explore,uniform,search] [--budgets ...]
        [--variants before,after] [--shared-scorer] [--cap-seconds 600]; --render A.json [B.json ...]

Writes ``--json`` (default ``docs/host_mixed.json``) after every step; ``--render`` writes ``docs/host_mixed.md``
from runs (the ones behind it are in ``docs/host_mixed/``; its findings, written by hand from them, in
``docs/host_mixed/findings.md``):

    python bench/host_mixed.py --render docs/host_mixed/explore_cls.json docs/host_mixed/explore_rec.json \
        docs/host_mixed/search_cls_before.json docs/host_mixed/search_cls_after_x.json \
        docs/host_mixed/search_cls_after.json docs/host_mixed/search_rec_after_x.json \
        --notes docs/host_mixed/findings.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus_table import TASKS, load_average, log, plan_mix  # noqa: E402

from tvm_mp.testing.machine import describe_machine, machine_line  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
COMMAND = "python bench/host_mixed.py"
BUDGETS = (0.95, 0.9, 0.85, 0.7)


def host_context(task):
    from tvm_mp.canonical import canonicalize
    from tvm_mp.search.pareto import search_context

    return search_context(canonicalize(task.mod), task.calibration, accuracy_fn=task.accuracy_fn,
                          cost_model="whole-model", progress=False)


def fresh(ctx, task):
    """The same space and costs on a new scorer (same calibration ranges): nothing scored, nothing cached."""
    from tvm_mp.search.accuracy import Scorer
    from tvm_mp.search.pareto import SearchContext

    scorer = Scorer(ctx.scorer.mod, task.calibration, accuracy_fn=task.accuracy_fn, ranges=ctx.scorer.ranges)
    return SearchContext(scorer, ctx.space, ctx.costs, progress=False)


def cheap_options(ctx):
    """Per layer of the latency-pruned space: [(option index in ctx.space, saving ms)] cheaper than w8a8."""
    from tvm_mp import Precision
    from tvm_mp.search.costs import prune_dominated

    space, costs = prune_dominated(ctx.space, ctx.costs, ["latency_ms"])
    lat = ctx.costs.latency_ms
    w8 = ctx.space.uniform_index(Precision(8, 8))
    out = []
    for i, opts in enumerate(space.options):
        base = lat[i, w8[i]]
        row = []
        for o in opts:
            j = list(ctx.space.options[i]).index(o)
            if lat[i, j] < base * (1 - 1e-6):
                row.append((j, float(base - lat[i, j])))
        out.append(sorted(row, key=lambda t: -t[1]))
    return out, w8


def explore(task, ctx, res, save, cap_seconds: float, tolerance: float) -> None:
    from tvm_mp import PrecisionPlan

    space, lat = ctx.space, ctx.costs.latency_ms
    names = space.names
    cheap, w8 = cheap_options(ctx)
    ref = float(ctx.costs.totals(w8)["latency_ms"])
    res["w8a8_latency_ms"] = ref
    per_option: dict = {}
    for i, row in enumerate(cheap):
        for j, s in row:
            d = per_option.setdefault(str(space.options[i][j]), {"layers": 0, "saving_ms": 0.0})
            d["layers"] += 1
            d["saving_ms"] += s
    res["cheap_options"] = dict(sorted(per_option.items(), key=lambda kv: -kv[1]["saving_ms"]))
    res["max_saving_fraction"] = float(sum(max((s for _, s in r), default=0.0) for r in cheap) / ref)
    res["cheap_per_layer"] = {names[i]: len(r) for i, r in enumerate(cheap)}
    log(f"  w8a8 latency {ref:.4g} ms; {sum(len(r) for r in cheap)} cheap (layer, option) pairs; the cheapest "
        f"plan saves {100 * res['max_saving_fraction']:.1f} %")
    w8plan = {n: space.options[i][w8[i]] for i, n in enumerate(names)}
    base = ctx.scorer.score(PrecisionPlan(w8plan))
    res["w8a8_search"] = base
    # 2. single-layer real sensitivity, round-robin over layers from the most saving option down
    t0 = time.perf_counter()
    single = {}
    depth = max((len(r) for r in cheap), default=0)
    stopped = False
    for k in range(depth):
        for i, row in enumerate(cheap):
            if k >= len(row):
                continue
            if time.perf_counter() - t0 > cap_seconds:
                stopped = True
                break
            j, s = row[k]
            plan = dict(w8plan)
            plan[names[i]] = space.options[i][j]
            single[(i, j)] = (ctx.scorer.score(PrecisionPlan(plan)), s)
        if stopped:
            break
        log(f"  single-layer round {k + 1}/{depth}: {len(single)} scored, {time.perf_counter() - t0:.0f} s")
    res["single_seconds"] = time.perf_counter() - t0
    res["single_complete"] = not stopped
    res["single"] = [{"layer": names[i], "option": str(space.options[i][j]), "search": sc, "saving_ms": s,
                      "saving_fraction": s / ref} for (i, j), (sc, s) in single.items()]
    scores = np.array([v[0] for v in single.values()])
    res["single_summary"] = {"scored": len(single), "collapsed_below_half": int((scores < base / 2).sum()),
                             "within_tolerance": int((scores >= base - tolerance).sum()),
                             "seconds_per_plan": res["single_seconds"] / max(1, len(single))}
    by_opt: dict = {}
    for (i, j), (sc, _s) in single.items():
        d = by_opt.setdefault(str(space.options[i][j]), [])
        d.append(sc)
    res["single_by_option"] = {o: {"layers": len(v), "min": min(v), "median": float(np.median(v)),
                                   "within_tolerance": int(sum(x >= base - tolerance for x in v))}
                               for o, v in sorted(by_opt.items())}
    log(f"  single-layer: {res['single_summary']}")
    save()
    # 3. greedy by real accuracy per latency saved
    moves = sorted(single.items(), key=lambda kv: (-min(kv[1][0], base), -kv[1][1]))
    cur = np.array(w8)
    cur_lat = ref
    greedy = []
    targets = sorted(BUDGETS, reverse=True)
    t0 = time.perf_counter()
    tried = 0
    for (i, j), (sc, _s) in moves:
        if not targets:
            break
        if sc < base - 2 * tolerance - 1e-9:  # single-layer loss alone already beyond the tolerance
            continue
        if lat[i, j] >= lat[i, cur[i]]:
            continue
        trial = cur.copy()
        trial[i] = j
        score = ctx.scorer.score(space.plan(trial))
        tried += 1
        if score >= base - tolerance - 1e-9:
            cur = trial
            cur_lat = float(ctx.costs.totals(cur)["latency_ms"])
            while targets and cur_lat <= targets[0] * ref + 1e-12:
                frac = targets.pop(0)
                plan = space.plan(cur)
                held = task.held_out(lambda x, p=plan: ctx.scorer.evaluator.run(p, [x]))
                greedy.append({"budget": frac, "fraction": cur_lat / ref, "search": score, "held_out": held,
                               "plan_mix": plan_mix(plan), "moves_tried": tried,
                               "seconds": time.perf_counter() - t0})
                log(f"  greedy {frac}x: {cur_lat / ref:.3f}x, {score:.1f} / held-out {held:.1f} "
                    f"({tried} plans)")
    final = space.plan(cur)
    res["greedy"] = greedy
    res["greedy_end"] = {"fraction": cur_lat / ref, "search": ctx.scorer.score(final), "moves_tried": tried,
                         "plan_mix": plan_mix(final),
                         "held_out": task.held_out(lambda x: ctx.scorer.evaluator.run(final, [x])),
                         "seconds": time.perf_counter() - t0}
    log(f"  greedy end: {res['greedy_end']}")
    save()


def uniform(task, ctx, res, save) -> None:
    """w8a8, w4a8 and, per interval between budgets (1.0, 0.95, 0.9, 0.85, 0.7, 0), the two dearest uniform plans
    in it: search and held-out metric."""
    from tvm_mp import Precision, PrecisionPlan

    ref = float(ctx.costs.totals(ctx.space.uniform_index(Precision(8, 8)))["latency_ms"])
    edges = (1.0 + 1e-9,) + BUDGETS + (0.0,)
    fracs = [(ctx.costs.totals(ctx.space.uniform_index(p))["latency_ms"] / ref, p)
             for p in ctx.space.uniform_precisions()]
    pick = [p for f, p in fracs if str(p) in ("w8a8", "w4a8")]
    for hi, lo in zip(edges, edges[1:]):
        inside = sorted(((f, str(p), p) for f, p in fracs if lo < f <= hi and str(p) not in ("w8a8", "w4a8")),
                        key=lambda t: (-t[0], t[1]))
        pick += [p for _, _, p in inside[:2]]
    rows = []
    for prec in pick:
        frac = ctx.costs.totals(ctx.space.uniform_index(prec))["latency_ms"] / ref
        plan = PrecisionPlan({n: prec for n in ctx.space.names})
        rows.append({"plan": str(prec), "fraction": frac, "search": ctx.scorer.score(plan),
                     "held_out": task.held_out(lambda x, p=plan: ctx.scorer.evaluator.run(p, [x]))})
        log(f"  uniform {prec}: {frac:.3f}x, {rows[-1]['search']:.1f} / held-out {rows[-1]['held_out']:.1f}")
    res["uniform"] = sorted(rows, key=lambda r: r["fraction"])
    save()


VARIANTS = {
    "current": {},  # the default GuidedConfig of the code being run
    "before": {"screen": False},
    "after-a4": {"screen_below": (2, 4), "screen_loss": 0.05, "screen_evaluations": 24},  # as first run (the
    # repair then replaced the candidate; this code checks both)
    "after": {},
}


def search(task, ctx, res, save, variants, budgets=BUDGETS, shared: bool = False) -> None:
    from tvm_mp import Budget, Precision
    from tvm_mp.search.guided import GuidedConfig
    from tvm_mp.search.pareto import optimize

    ref = float(ctx.costs.totals(ctx.space.uniform_index(Precision(8, 8)))["latency_ms"])
    rows = res.setdefault("search", [])
    for frac in budgets:
        for name in variants:
            try:
                config = GuidedConfig(progress=False, **VARIANTS[name])
            except TypeError as err:
                log(f"  variant {name}: {err}")
                continue
            c = ctx if shared else fresh(ctx, task)
            before = load_average()
            t0 = time.perf_counter()
            out, _ = optimize(c, Budget(latency_ms=frac * ref), np.random.default_rng(0), config)
            seconds = time.perf_counter() - t0
            plan = out.plan
            row = {"variant": name, "budget": frac, "shared_scorer": shared, "seconds": seconds,
                   "evaluations": out.evaluations,
                   "fraction": c.costs.totals(c.space.index_of(plan))["latency_ms"] / ref,
                   "search": c.scorer.score(plan),
                   "held_out": task.held_out(lambda x, p=plan, c=c: c.scorer.evaluator.run(p, [x])),
                   "plan_mix": plan_mix(plan), "load_before": before, "load_after": load_average(),
                   "notes": {k: v for k, v in out.notes.items() if k != "checked"},
                   "checked": [list(x[:2]) for x in out.notes.get("checked", [])]}
            rows.append(row)
            log(f"  search {name} {frac}x: {seconds:.0f} s, {out.evaluations} evaluations, {row['fraction']:.3f}x, "
                f"{row['search']:.1f} / held-out {row['held_out']:.1f}  [{row['notes'].get('chosen_by')}]")
            save()


# ---- report --------------------------------------------------------------------------------------------------------
def _f(v, spec=".1f") -> str:
    return "-" if v is None else format(v, spec)


def _mix(mix: dict, top: int = 6) -> str:
    items = list(mix.items())
    return ", ".join(f"{n} {k}" for k, n in items[:top]) + (", ..." if len(items) > top else "")


def markdown(result: dict) -> str:
    out = ["# Mixed plans on the host latency model (cls, rec)", "",
           f"Commands: {'; '.join(result.get('commands', []))}. {result.get('machine_line', '')} Load averages per "
           f"search in the tables.", "",
           "Costs are the `whole-model` host latency predictor's (as in `docs/corpus_table.md`); metrics on the "
           "search split (the `accuracy_fn` of the searches) and the held-out split, 40 samples each (one sample "
           "moves a metric by 2.5 points). Plans are scored on the NumPy reference (bit-exact with the built model "
           "for integer layers).", ""]
    if result.get("notes"):
        out += [result["notes"].strip(), ""]
    for name, r in result.get("models", {}).items():
        out += [f"## {name} ({r.get('layers', '?')} layers, {r.get('metric', '')})", ""]
        if "cheap_options" in r:
            out += [f"**Host-cheap options** (cheaper than w8a8 on a layer, latency-pruned space): "
                    f"uniform w8a8 is {r['w8a8_latency_ms']:.4g} ms; the cheapest plan saves "
                    f"{100 * r['max_saving_fraction']:.1f} %. Saving summed over the layers where each option is "
                    f"cheap (fraction of w8a8), the top 12:", "",
                    "| option | layers | saving |", "|---|---:|---:|"]
            for k, v in list(r["cheap_options"].items())[:12]:
                out.append(f"| {k} | {v['layers']} | {v['saving_ms'] / r['w8a8_latency_ms']:.3f} |")
            out.append("")
        if "single_summary" in r:
            ss = r["single_summary"]
            out += [f"**Single-layer real sensitivity** (w8a8 with one layer at one host-cheap option, the most "
                    f"saving options first, round-robin over layers; {ss['scored']} plans in "
                    f"{r['single_seconds']:.0f} s, {ss['seconds_per_plan']:.1f} s per plan, "
                    f"{'complete' if r['single_complete'] else 'cut by the time cap'}): w8a8 scores "
                    f"{r['w8a8_search']:.1f}; {ss['within_tolerance']} within 1 point, "
                    f"{ss['collapsed_below_half']} below half of it.", "",
                    "| option | layers scored | min | median | within 1 point |", "|---|---:|---:|---:|---:|"]
            for k, v in r["single_by_option"].items():
                out.append(f"| {k} | {v['layers']} | {v['min']:.1f} | {v['median']:.1f} | "
                           f"{v['within_tolerance']} |")
            out.append("")
        if "greedy_end" in r:
            g = r["greedy_end"]
            out += ["**Greedy by real accuracy per latency saved** (moves from the single-layer table, least loss "
                    "then most saving first; a move is kept when the whole plan's search-split score stays within "
                    "1 point of w8a8):", ""]
            for row in r.get("greedy", []):
                out.append(f"* reached {row['budget']}x: {row['fraction']:.3f}x, search {row['search']:.1f}, "
                           f"held-out {row['held_out']:.1f} ({row['moves_tried']} plans)")
            out += [f"* end: {g['fraction']:.3f}x, search {g['search']:.1f}, held-out {g['held_out']:.1f} after "
                    f"{g['moves_tried']} plans ({g['seconds']:.0f} s): {_mix(g['plan_mix'])}", ""]
        if r.get("uniform"):
            out += ["**Uniform plans** (latency fraction of w8a8, search / held-out):", "",
                    "| plan | latency | search | held-out |", "|---|---:|---:|---:|"]
            for u in r["uniform"]:
                out.append(f"| {u['plan']} | {u['fraction']:.3f}x | {u['search']:.1f} | {u['held_out']:.1f} |")
            out.append("")
        rows = r.get("search", [])
        if rows:
            shared = any(x.get("shared_scorer") for x in rows)
            how = (" -- all budgets and variants on one scorer (memoized scores reused: the times are not "
                   "comparable)" if shared else " -- each on a fresh scorer (nothing scored before)")
            out += ["**The search** (`optimize`, guided). Variants: `before` -- screening off, as on main; "
                    "`after` -- the default of this branch: 1-bit options screened, excluded below 10 % of the "
                    "reference score, at most 8 group tests, each screened repair checked *in addition to* the "
                    "candidate it repairs; `after-x` -- the same screening (16 group tests at most) with the "
                    "repair checked *instead of* the candidate (an intermediate version); `after-a4` -- the "
                    "first setting tried: options below w2 or a4 screened, 5 %, 24 tests, repair instead of the "
                    "candidate" + how + ":", "",
                    "| budget | variant | latency | search | held-out | time (s) | evaluations (screening) | "
                    "excluded | chosen by | load before / after | plan |",
                    "|---|---|---:|---:|---:|---:|---:|---:|---|---|---|"]
            for x in sorted(rows, key=lambda x: (-x["budget"], x["variant"])):
                n = x["notes"]
                out.append(f"| {x['budget']}x | {x['variant']} | {x['fraction']:.3f}x | {x['search']:.1f} | "
                           f"{x['held_out']:.1f} | {x['seconds']:.0f} | {x['evaluations']} "
                           f"({n.get('screen_evaluations', 0)}) | {n.get('excluded', '-')} | {n.get('chosen_by')} | "
                           f"{x['load_before'][0]} / {x['load_after'][0]} | {_mix(x['plan_mix'], 5)} |")
            out.append("")
            after = [x for x in rows if x["variant"] == "after"]
            if r.get("uniform") and after:
                out += ["**Uniform vs mixed** (held-out; the best `after` plan at no more latency):", ""]
                for u in r["uniform"]:
                    fits = [x for x in after if x["fraction"] <= u["fraction"] + 1e-9]
                    best = max(fits, key=lambda x: x["held_out"]) if fits else None
                    verdict = ("no mixed plan searched at or below its latency" if best is None else
                               f"mixed {best['budget']}x ({best['fraction']:.3f}x) {best['held_out']:.1f}: "
                               + ("dominated" if best["held_out"] >= u["held_out"] else "NOT dominated"))
                    out.append(f"* {u['plan']} ({u['fraction']:.3f}x, {u['held_out']:.1f}): {verdict}")
                out.append("")
    return "\n".join(out)


def render(paths, md_path, notes: str = "") -> None:
    merged: dict = {"commands": [], "models": {}, "notes": notes}
    for p in paths:
        data = json.loads(Path(p).read_text())
        merged["commands"].append(f"`{data.get('command', COMMAND)}` (load {data.get('load_start')} -> "
                                  f"{data.get('load_end')})")
        merged["machine_line"] = data.get("machine_line", "")
        for name, r in data.get("models", {}).items():
            merged["models"].setdefault(name, {}).update({k: v for k, v in r.items() if k != "search"})
            merged["models"][name].setdefault("search", []).extend(r.get("search", []))
    Path(md_path).write_text(markdown(merged) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="rec,cls")
    ap.add_argument("--samples", type=int, default=40)
    ap.add_argument("--parts", default="explore,uniform,search")
    ap.add_argument("--variants", default="before,after")
    ap.add_argument("--budgets", default=",".join(str(b) for b in BUDGETS), help="search budgets (x w8a8 latency)")
    ap.add_argument("--shared-scorer", action="store_true",
                    help="search every budget and variant on one scorer (its memoized scores reused: times not "
                    "comparable between variants)")
    ap.add_argument("--cap-seconds", type=float, default=600.0)
    ap.add_argument("--tolerance", type=float, default=1.0, help="points below w8a8 the greedy plan may lose")
    ap.add_argument("--json", default=str(DOCS / "host_mixed.json"))
    ap.add_argument("--render", nargs="+", metavar="JSON", help="write docs/host_mixed.md from these runs, exit")
    ap.add_argument("--notes", metavar="MD", help="with --render: findings (markdown) put before the tables")
    args = ap.parse_args(argv)
    if args.render:
        render(args.render, DOCS / "host_mixed.md", Path(args.notes).read_text() if args.notes else "")
        return 0
    parts = args.parts.split(",")
    path = Path(args.json)
    result = json.loads(path.read_text()) if path.is_file() else {}
    result.update({"command": COMMAND + " " + " ".join(argv if argv is not None else sys.argv[1:]),
                   "machine_line": machine_line(describe_machine())})
    result.setdefault("load_start", load_average())

    def save():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1, default=str))

    for name in args.models.split(","):
        res = result.setdefault("models", {}).setdefault(name, {})
        log(f"== {name}")
        t0 = time.perf_counter()
        task = TASKS[name](name, args.samples)
        ctx = host_context(task)
        res["setup_seconds"] = time.perf_counter() - t0
        res["metric"] = task.metric_name
        res["layers"] = ctx.space.n_layers
        log(f"  setup {res['setup_seconds']:.0f} s, {ctx.space.n_layers} layers, {ctx.costs.model_name}")
        budgets = [float(b) for b in args.budgets.split(",")]
        for part in parts:  # in the order given
            if part == "explore":
                explore(task, ctx, res, save, args.cap_seconds, args.tolerance)
            elif part == "uniform":
                uniform(task, ctx, res, save)
            elif part == "search":
                search(task, ctx, res, save, args.variants.split(","), budgets, args.shared_scorer)
    result["load_end"] = load_average()
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
