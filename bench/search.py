"""Precision-search benchmark: annealing against greedy, random search and the exact ILP; the digits Pareto front;
budget-driven compiles; an adaptive artifact.

Parts (all on this host, batch 1):

A. **Additive objective, SA vs ILP.** ResNet-8 and MobileNetV1-0.25 (``tvm_mp.models.builders``, untrained weights),
   every layer with the 90 default options (all w/a in 1..8 plus forced bit-serial kernels), costs from the
   analytical cost model, objective = sum of per-layer output-noise sensitivities measured with the NumPy reference
   on seeded random inputs. Budgets: energy at 30/50/80 % of the way from the cheapest plan to uniform w8a8, memory
   at 50 %, and energy+latency+memory at 50 % together. Annealing (5 seeds, started from the greedy plan and from
   a random plan), greedy (HAQ style), random search
   (2,000 repaired samples) and the ILP (``scipy.optimize.milp``, proven optimum) side by side: objective, gap to
   the ILP, budget use, time.
B. **Digits CNN Pareto front** with real top-1 on the held-out split as the score (``tvm_mp.explore``): fronts in
   energy/latency/memory, which uniform plans mixed plans dominate, energy saved against uniform w8a8 at <= 0.5 /
   1 / 2 points of top-1 loss. Also a variant that searches on fidelity to fp32 over training images and reports
   test top-1 (no test data in the loop).
C. **Budget-driven compile** of the digits CNN at three budgets: the plan, predicted vs budget, measured latency on
   this host (median of 15 runs), top-1 of the built model.
D. **Adaptive artifact**: four points of the digits energy front in one artifact; shared vs separate constant bytes;
   every point checked bit-exact against its own stand-alone compile.

    python bench/search.py [--quick] [--seed 0]

Writes ``docs/data/search_bench.json``, ``docs/data/pareto_digits.json``, ``docs/search_pareto_digits.png`` and
``docs/search_bench.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tvm_mp.testing.machine import describe_machine, machine_line

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
COMMAND = "python bench/search.py"


def machine_description() -> dict:
    return describe_machine(packages=("apache-tvm", "numpy", "scipy"))

def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


# ---- A: additive objective ---------------------------------------------------------------------------------------
def additive_part(names: list[str], seeds: int, quick: bool) -> dict:
    import tvm_mp
    from tvm_mp import Budget, Precision
    from tvm_mp.models.builders import BUILDERS
    from tvm_mp.search.accuracy import Scorer
    from tvm_mp.search.annealing import AnnealConfig, anneal
    from tvm_mp.search.costs import CostTable
    from tvm_mp.search.greedy import greedy
    from tvm_mp.search.ilp import solve_ilp
    from tvm_mp.search.problem import AdditiveObjective, Problem
    from tvm_mp.search.random_search import random_search
    from tvm_mp.search.sensitivity import measure_sensitivity
    from tvm_mp.search.space import SearchSpace

    out = {}
    cache = Path(tempfile.gettempdir()) / "tvm_mp_search_bench"
    for name in names:
        b = BUILDERS[name]
        mod = tvm_mp.load_onnx(b.build(0), shapes={b.input_name: b.input_shape})
        rng = np.random.default_rng(0)
        data = [rng.normal(0.0, 1.0, (8,) + tuple(b.input_shape[1:])).astype(np.float32) for _ in range(2)]
        scorer = Scorer(mod, data, noise_samples=8)
        space = SearchSpace.build(tvm_mp.list_layers(mod))
        if quick:
            keep = sorted(set(range(0, space.max_options, 5)) | {int(space.uniform_index(Precision(8, 8))[0])})
            space = space.restricted([keep] * space.n_layers)
        costs = CostTable.from_model(space, None, "llvm", scorer.evaluator.epilogues(space.names))
        t0 = time.perf_counter()
        sens = measure_sensitivity(scorer, space, cache_path=cache / f"{name}_{space.max_options}.json", progress=True)
        sens_s = time.perf_counter() - t0
        table = sens.noise
        lo = costs.minimum()
        w8 = costs.totals(space.uniform_index(Precision(8, 8)))
        budgets = {f"energy {int(f * 100)}%":
                   Budget(energy_uj=lo["energy_uj"] + f * (w8["energy_uj"] - lo["energy_uj"]))
                   for f in (0.3, 0.5, 0.8)}
        budgets["memory 50%"] = Budget(memory_kb=lo["memory_kb"] + 0.5 * (w8["memory_kb"] - lo["memory_kb"]))
        budgets["energy+latency+memory 50%"] = Budget(
            **{m: lo[m] + 0.5 * (w8[m] - lo[m]) for m in ("energy_uj", "latency_ms", "memory_kb")})
        rows = []
        for label, budget in budgets.items():
            problem = Problem(space, costs, budget, AdditiveObjective(table))
            ilp = solve_ilp(problem)
            sa = [anneal(problem, np.random.default_rng(s), AnnealConfig()) for s in range(seeds)]
            sa_random = [anneal(problem, np.random.default_rng(s), AnnealConfig(),
                                init=problem.repair(np.random.default_rng(100 + s).integers(0, space.sizes),
                                                    cost_only=True)) for s in range(seeds)]
            gr = greedy(problem)
            rs = random_search(problem, np.random.default_rng(0), samples=2000)
            opt = ilp.objective

            # row() is called only within this iteration, so it sees this iteration's opt and label
            def row(method, res, extra=None):
                gap = res.objective / opt - 1.0 if opt > 0 else 0.0  # noqa: B023
                r = {"budget": label, "method": method, "objective": res.objective, "gap_to_ilp": gap,  # noqa: B023
                     "feasible": res.feasible, "budget_use": max(res.budget_use.values()), "seconds": res.seconds,
                     "evaluations": res.evaluations}
                r.update(extra or {})
                return r

            rows.append(row("ilp", ilp, {"optimal": bool(ilp.notes.get("optimal"))}))
            for label_sa, runs in ((f"annealing, greedy start (worst of {seeds} seeds)", sa),
                                   (f"annealing, random start (worst of {seeds} seeds)", sa_random)):
                worst_run = max(runs, key=lambda r: r.objective)
                rows.append(row(label_sa, worst_run, {
                    "seconds": statistics.median(r.seconds for r in runs), "max_seconds": max(r.seconds for r in runs),
                    "median_gap": statistics.median(r.objective / opt - 1.0 for r in runs),
                    "same_plan_all_seeds": len({r.plan.to_json() for r in runs}) == 1}))
            worst = max(sa + sa_random, key=lambda r: r.objective)
            rows.append(row("greedy", gr))
            rows.append(row("random (2000)", rs))
            log(f"{name} {label}: ilp {opt:.5g} ({ilp.seconds:.2f}s) sa worst gap "
                f"{worst.objective / opt - 1:.3%} ({max(r.seconds for r in sa + sa_random):.1f}s) "
                f"greedy {gr.objective / opt - 1:.2%} "
                f"random {rs.objective / opt - 1:.2%}")
        # determinism: the same seed twice
        problem = Problem(space, costs, budgets["energy 50%"], AdditiveObjective(table))
        a = anneal(problem, np.random.default_rng(123), AnnealConfig())
        b2 = anneal(problem, np.random.default_rng(123), AnnealConfig())
        out[name] = {"layers": space.n_layers, "options_per_layer": int(space.max_options),
                     "sensitivity_runs": int(space.sizes.sum()), "sensitivity_seconds": sens_s, "rows": rows,
                     "same_seed_same_plan": a.plan == b2.plan}
    return out


# ---- B: digits Pareto --------------------------------------------------------------------------------------------
def digits_context(seed: int):
    import tvm_mp
    from tvm_mp.datasets import calibration_batches, load_digits_split
    from tvm_mp.models import digits_cnn_path

    mod = tvm_mp.load_onnx(digits_cnn_path(), shapes={"input": (1, 1, 8, 8)})
    digits = load_digits_split()

    def top1(model) -> float:
        return float((model.run(digits.x_test).argmax(axis=1) == digits.y_test).mean())

    return mod, digits, calibration_batches(8, 32, seed=seed), top1


def pareto_part(seed: int, quick: bool) -> tuple[dict, object]:
    import tvm_mp
    from tvm_mp.search.accuracy import Scorer

    mod, digits, calib, top1 = digits_context(seed)
    budgets = 4 if quick else 10
    t0 = time.perf_counter()
    front = tvm_mp.explore(mod, calib, accuracy_fn=top1, budgets=budgets, seed=seed, progress=True)
    seconds = time.perf_counter() - t0
    front.to_json(DOCS / "data" / "pareto_digits.json")
    front.plot(DOCS / "search_pareto_digits.png")
    savings = {f"{loss}": front.saving("w8a8", max_loss=loss / 100) for loss in (0.5, 1.0, 2.0)}
    dom_all = front.dominance()
    dom_front = front.dominance(uniform_front_only=True)
    res = {"seconds": seconds, "candidates": front.notes["candidates"], "fp32_top1": front.fp32_score,
           "savings_vs_w8a8": savings, "dominance_uniform_front": dom_front,
           "dominated_uniform_plans": sum(d["dominates"] for d in dom_all), "uniform_plans": len(dom_all),
           "energy_front": [{"energy_uj": p.energy_uj, "top1": p.score, "kind": p.kind, "label": p.label,
                             "plan": {n: str(q) for n, q in p.plan.items()}} for p in front.front("energy_uj")]}
    # no test data in the loop: search on fidelity to fp32 over training images, then report test top-1
    rng = np.random.default_rng(seed + 1)
    pick = rng.choice(len(digits.x_train), 256, replace=False)
    t0 = time.perf_counter()
    proxy = tvm_mp.explore(mod, calib, data=[digits.x_train[pick]], metric="neg_kl", budgets=budgets, seed=seed,
                           progress=True)
    tester = Scorer(mod, calib, accuracy_fn=top1)
    pts = [(p.energy_uj, tester.score(p.plan), p.plan) for p in proxy.front("energy_uj")]
    ref = tester.score(tvm_mp.PrecisionPlan.uniform(mod, tvm_mp.Precision(8, 8)))
    ref_e = next(p.energy_uj for p in proxy.uniform() if p.label == "w8a8")
    proxy_savings = {}
    for loss in (0.5, 1.0, 2.0):
        ok = [(e, s, plan) for e, s, plan in pts if s >= ref - loss / 100 - 1e-12]
        e, s, plan = min(ok, key=lambda t: t[0])
        proxy_savings[f"{loss}"] = {"energy_uj": e, "top1": s, "saving": 1 - e / ref_e,
                                    "plan": {n: str(q) for n, q in plan.items()}}
    res["proxy_search"] = {"seconds": time.perf_counter() - t0, "metric": "neg_kl on 256 training images",
                           "w8a8_top1": ref, "savings_vs_w8a8": proxy_savings}
    log(f"digits pareto: {seconds:.0f}s, savings {json.dumps({k: round(v['saving'], 3) for k, v in savings.items()})}")
    return res, front


# ---- C: budget-driven compile ------------------------------------------------------------------------------------
def budget_part(seed: int) -> list[dict]:
    import tvm_mp

    mod, digits, calib, top1 = digits_context(seed)
    rows = []
    for budget in (tvm_mp.Budget(energy_uj=16.0), tvm_mp.Budget(latency_ms=0.15),
                   tvm_mp.Budget(energy_uj=20.0, memory_kb=4.0)):
        t0 = time.perf_counter()
        cm = tvm_mp.compile(mod, budget=budget, calibration=calib, accuracy_fn=top1)
        s = cm.search
        rows.append({"budget": {k: v for k, v in vars(budget).items() if v is not None},
                     "plan": {n: str(p) for n, p in cm.plan.items()}, "predicted": dict(s.predicted),
                     "meets_budget_by_model": s.meets_budget(), "measured_latency_ms": s.measured_latency_ms,
                     "top1_compiled": cm.report.accuracy, "top1_search": s.search_score,
                     "seconds": time.perf_counter() - t0})
        log(f"budget {rows[-1]['budget']}: {rows[-1]['plan']} top1 {cm.report.accuracy:.4f}")
    return rows


# ---- D: adaptive -------------------------------------------------------------------------------------------------
def adaptive_part(seed: int, front) -> dict:
    import tvm_mp

    mod, digits, calib, top1 = digits_context(seed)
    picks = []
    for limit in (10.0, 15.0, 22.0, 40.0):
        p = front.best_within("energy_uj", limit)
        if p is not None and p not in picks:
            picks.append(p)
    t0 = time.perf_counter()
    am = tvm_mp.compile_adaptive(mod, picks, calibration=calib)
    build_s = time.perf_counter() - t0
    x = digits.x_test[:64]
    exact = []
    for point in am.points:
        alone = tvm_mp.compile(mod, plan=point.plan, calibration=calib)
        exact.append(bool(np.array_equal(alone.run(x), am.run(x, point=point))))
    selections = {}
    for limit in (12.0, 18.0, 30.0):
        try:
            selections[str(limit)] = am.select(energy_uj=limit).function
        except tvm_mp.Error as err:
            selections[str(limit)] = str(err)
    return {"points": [p.to_dict() for p in am.points], "store": am.store.to_dict(), "build_seconds": build_s,
            "each_point_equals_standalone": exact, "select_energy_uj": selections}


# ---- report ------------------------------------------------------------------------------------------------------
def markdown(result: dict) -> str:
    m = result["machine"]
    lines = ["# Precision search benchmark", "",
             f"Command: `{result['command']}` ({result['seconds']:.0f} s). {machine_line(m)} "
             "Energy is *modelled* (analytical cost model: CPU event counts x energy table), never "
             "measured.", ""]
    lines += ["## A. Additive objective: annealing vs greedy vs random vs ILP", ""]
    for name, part in result.get("additive", {}).items():
        lines += [f"**{name}**: {part['layers']} layers x {part['options_per_layer']} options; sensitivity "
                  f"{part['sensitivity_runs']} reference runs ({part['sensitivity_seconds']:.0f} s); same seed -> "
                  f"same plan: {part['same_seed_same_plan']}.", "",
                  "| budget | method | objective | gap to ILP | budget use | time (s) |",
                  "|---|---|---:|---:|---:|---:|"]
        for r in part["rows"]:
            t = f"{r['seconds']:.2f}" + (f" (max {r['max_seconds']:.2f})" if "max_seconds" in r else "")
            lines.append(f"| {r['budget']} | {r['method']} | {r['objective']:.5g} | {r['gap_to_ilp']:.3%} | "
                         f"{r['budget_use']:.3f} | {t} |")
        lines.append("")
    if "pareto" in result:
        p = result["pareto"]
        lines += ["## B. Digits CNN: Pareto front (score = top-1 on the 360 held-out images)", "",
                  f"fp32 top-1 {p['fp32_top1']:.4f}; {p['candidates']} plans scored in {p['seconds']:.0f} s. "
                  f"Mixed plans dominate {p['dominated_uniform_plans']} of the {p['uniform_plans']} uniform plans. "
                  "Plot: `docs/search_pareto_digits.png`.", "",
                  "| uniform plan (uniform front) | energy (uJ) | top-1 | best mixed at <= that energy | top-1 "
                  "| dominates |",
                  "|---|---:|---:|---:|---:|---|"]
        for d in p["dominance_uniform_front"]:
            lines.append(f"| {d['uniform']} | {d['uniform_cost']:.2f} | {d['uniform_score']:.4f} | "
                         f"{d['mixed_cost']:.2f} | {d['mixed_score']:.4f} | {d['dominates']} |")
        lines += ["", "| max top-1 loss vs w8a8 | energy (uJ) | top-1 | energy saved | plan |",
                  "|---|---:|---:|---:|---|"]
        for loss, s in p["savings_vs_w8a8"].items():
            lines.append(f"| {loss} pt | {s['cost']:.2f} | {s['score']:.4f} | {s['saving']:.1%} | "
                         f"{', '.join(f'{k}={v}' for k, v in s['plan'].items())} |")
        ps = p["proxy_search"]
        lines += ["", f"Searched on {ps['metric']} (no test data in the loop), test top-1 afterwards "
                      f"(w8a8: {ps['w8a8_top1']:.4f}):", "",
                  "| max top-1 loss vs w8a8 | energy (uJ) | test top-1 | energy saved |", "|---|---:|---:|---:|"]
        for loss, s in ps["savings_vs_w8a8"].items():
            lines.append(f"| {loss} pt | {s['energy_uj']:.2f} | {s['top1']:.4f} | {s['saving']:.1%} |")
        lines.append("")
    if "budget" in result:
        lines += ["## C. Budget-driven compile (digits CNN, host)", "",
                  "| budget | plan | predicted energy (uJ) | predicted latency (ms) | memory (kB) "
                  "| measured latency (ms) "
                  "| top-1 | meets (model) | time (s) |", "|---|---|---:|---:|---:|---:|---:|---|---:|"]
        for r in result["budget"]:
            b = ", ".join(f"{k}={v}" for k, v in r["budget"].items())
            plan = ", ".join(f"{v}" for v in r["plan"].values())
            pr = r["predicted"]
            lines.append(f"| {b} | {plan} | {pr['energy_uj']:.2f} | {pr['latency_ms']:.4f} | {pr['memory_kb']:.2f} | "
                         f"{r['measured_latency_ms']:.4f} | {r['top1_compiled']:.4f} | {r['meets_budget_by_model']} | "
                         f"{r['seconds']:.0f} |")
        lines.append("")
    if "adaptive" in result:
        a = result["adaptive"]
        st = a["store"]
        lines += ["## D. Adaptive artifact (digits CNN)", "",
                  f"{len(a['points'])} points in one artifact (built in {a['build_seconds']:.1f} s); constants "
                  f"{st['shared_bytes']} B shared vs {st['separate_bytes']} B separate ({st['saved_fraction']:.1%} "
                  f"saved); each point bit-exact with its stand-alone compile: {a['each_point_equals_standalone']}; "
                  f"select(energy_uj=...) -> {a['select_energy_uj']}.", "",
                  "| function | energy (uJ) | latency (ms) | memory (kB) | top-1 | plan |",
                  "|---|---:|---:|---:|---:|---|"]
        for p in a["points"]:
            lines.append(f"| {p['function']} | {p['energy_uj']:.2f} | {p['latency_ms']:.4f} | {p['memory_kb']:.2f} | "
                         f"{p['score']:.4f} | {', '.join(p['plan'].values())} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer options, budgets and seeds (a smoke run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parts", default="additive,pareto,budget,adaptive")
    args = parser.parse_args(argv)
    parts = args.parts.split(",")
    start = time.perf_counter()
    result = {"command": COMMAND + (" --quick" if args.quick else "") + (f" --seed {args.seed}" if args.seed else ""),
              "machine": machine_description()}
    if "additive" in parts:
        result["additive"] = additive_part(["resnet8", "mobilenet_v1_025"], 2 if args.quick else 5, args.quick)
    front = None
    if "pareto" in parts or "adaptive" in parts:
        result["pareto"], front = pareto_part(args.seed, args.quick)
    if "budget" in parts:
        result["budget"] = budget_part(args.seed)
    if "adaptive" in parts:
        result["adaptive"] = adaptive_part(args.seed, front)
    result["seconds"] = time.perf_counter() - start
    (DOCS / "data").mkdir(parents=True, exist_ok=True)
    (DOCS / "data" / "search_bench.json").write_text(json.dumps(result, indent=1, default=str))
    (DOCS / "search_bench.md").write_text(markdown(result) + "\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
