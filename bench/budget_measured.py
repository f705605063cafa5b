"""Latency budgets on the host, verified by measurement: does ``compile(budget=Budget(latency_ms=...))`` return a
model that runs within its budget?

Run from the repository root:

    python bench/budget_measured.py [--budget-s 3300] [--no-cls] [--write-only]

For each model (the five benchmark models of ``tvm_mp.models.builders``, then ``cls`` of the real-model corpus
``tvm_mp.testing.corpus`` while time is left):

1. the uniform w8a8 build is measured (``tvm_mp.search.budget.measure_in_model``: one inference of ``main``, the
   VM's time evaluator, the thread's CPU clock with one TVM thread; median of rounds, half the IQR as noise);
2. for each fraction in :data:`FRACTIONS` of that measured latency, and then at :data:`WINDOW` points between the
   space's fastest plan as measured (see below) and w8a8, ``compile_with_budget(mod,
   Budget(latency_ms=limit), target="host")`` with the host's default cost model (the whole-model
   predictor) on one search context per model (``context=``: calibration and cost table once; every budget is a
   fresh search, build and measured verification with re-search);
   (each model gets an equal share of the time left; budgets beyond it are not run);
3. the returned model is measured **again**, on its own (:data:`CHECK_ROUNDS` rounds, after the compile's own
   measurement): the budget is met by measurement when its median is within the limit plus the noise this check
   reports; a check that misses is timed once more and the faster session counts
   (``tvm_mp.search.budget.measure_confirmed``, the compile's own rule for a miss). A compile that raises
   ``BudgetError`` returned no model: a miss when the budget is feasible.

The floor: the space's fastest plan by the costs (``tvm_mp.search.budget.fastest_index``) is built and measured
once per model (two sessions, the faster counts); a budget it misses by more than its noise is *infeasible by
measurement* (no compiler meets it with these options) and reported apart; the >= 95 % goal is over the feasible
budgets.

Writes ``docs/bench_budget_measured.md`` and ``docs/data/bench_budget_measured.json`` (rows appended as they come,
so a stopped run keeps them; ``--write-only`` rewrites the page from the rows).
"""

from __future__ import annotations

import os

os.environ.setdefault("TVM_NUM_THREADS", "1")  # before TVM starts its thread pool: the CPU clock needs one thread

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT_MD = ROOT / "docs" / "bench_budget_measured.md"
OUT_JSON = ROOT / "docs" / "data" / "bench_budget_measured.json"
COMMAND = "python bench/budget_measured.py"

BENCHMARK_MODELS = ("digits_cnn", "ds_cnn", "resnet8", "mobilenet_v1_025", "fer_cnn")
FRACTIONS = (0.6, 0.8, 0.95, 0.7, 0.9)  # in this order, so a model cut short by its time slice has spread budgets
CLS_FRACTIONS = (0.7, 0.9)
#: Budgets inside each model's feasible window, after the fractions: the space's fastest plan as measured plus
#: this share of the way to w8a8 as measured. Where low bit-widths save little (on an AVX-512 VNNI host the w8a8
#: kernels are fast: DS-CNN's fastest plan is 0.95x of w8a8), most fractions of w8a8 lie below the floor and
#: test nothing but the refusal.
WINDOW = (0.25, 0.5, 0.75)
CLS_WINDOW = (0.5,)
CALIBRATION_SAMPLES = 6
CHECK_ROUNDS = 15
GOAL = 0.95


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def task(name: str):
    """(module, calibration, accuracy_fn or None) of a model."""
    from tvm_mp.canonical import canonicalize

    if name == "cls":
        from tvm_mp.testing import corpus

        mod, model = corpus.load("cls")
        images, _ = corpus.text_images(16, model.shapes["x"], seed=1, rotate=True)
        return canonicalize(mod), [images[:8], images[8:]]
    from tvm_mp.frontend import load_onnx
    from tvm_mp.models.builders import BUILDERS

    builder = BUILDERS[name]
    shape = tuple(builder.input_shape)
    mod = canonicalize(load_onnx(builder.build(0), shapes={"input": shape}))
    rng = np.random.default_rng(1)
    return mod, [rng.normal(0, 1, shape).astype(np.float32) for _ in range(CALIBRATION_SAMPLES)]


def load_rows() -> list[dict]:
    if not OUT_JSON.is_file():
        return []
    return json.loads(OUT_JSON.read_text()).get("rows", [])


def save(rows: list[dict], meta: dict) -> None:
    OUT_JSON.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT_JSON.with_suffix(".tmp")
    tmp.write_text(json.dumps({**meta, "command": COMMAND, "rows": rows}, indent=1) + "\n")
    tmp.replace(OUT_JSON)


def budget_key(row: dict) -> str:
    return f"window {row['window']}" if row.get("window") is not None else f"fraction {row['fraction']}"


def run_model(name: str, fractions, windows, rows: list[dict], meta: dict, deadline: float) -> None:
    from tvm_mp import Budget, Precision, PrecisionPlan
    from tvm_mp.driver import build
    from tvm_mp.search.budget import (
        compile_with_budget,
        faster_session,
        fastest_index,
        measure_confirmed,
        measure_in_model,
    )
    from tvm_mp.search.costs import BudgetError
    from tvm_mp.search.pareto import search_context

    t0 = time.perf_counter()
    mod, calibration = task(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ctx = search_context(mod, calibration, target="host", progress=False)
        uniform = build(mod, PrecisionPlan.uniform(mod, Precision(8, 8)), "host", ranges=ctx.scorer.ranges)
        # the floor: the space's fastest plan by the costs, built as the budget compile builds its plans
        fastest = build(mod, ctx.space.plan(fastest_index(ctx.costs)), "host", ranges=ctx.scorer.ranges,
                        weights=ctx.scorer.evaluator.bank.rounded_weights(), cost_model=ctx.costs.model)
    def timed(model):
        return measure_in_model(model, rounds=CHECK_ROUNDS)

    w8a8 = timed(uniform)
    # the floor decides which budgets are feasible: two sessions, the faster counts (as for a miss below)
    floor = faster_session(timed(fastest), timed(fastest))
    w8a8_pred = uniform.report.latency_ms
    floor_mix = _mix(fastest.plan)
    log(f"{name}: context {time.perf_counter() - t0:.0f} s ({ctx.costs.model_name}); w8a8 measured "
        f"{w8a8.latency_ms:.4g} ms +/- {w8a8.noise_ms:.2g}, predicted {w8a8_pred:.4g} ms; fastest plan measured "
        f"{floor.latency_ms:.4g} ms +/- {floor.noise_ms:.2g}, predicted {fastest.report.latency_ms:.4g} ms")
    done = {budget_key(r) for r in rows if r["model"] == name}
    budgets = [(None, frac, float(f"{frac * w8a8.latency_ms:.6g}")) for frac in fractions]
    for q in windows:
        limit = float(f"{floor.latency_ms + q * (w8a8.latency_ms - floor.latency_ms):.6g}")
        budgets.append((q, round(limit / w8a8.latency_ms, 3), limit))
    for window, frac, limit in budgets:
        if budget_key({"window": window, "fraction": frac}) in done:
            continue
        if time.monotonic() > deadline:
            log(f"{name}: time budget reached, {frac}x and later budgets not run")
            return
        row = {"model": name, "fraction": frac, "window": window, "budget_ms": limit,
               "w8a8_measured_ms": w8a8.latency_ms,
               "w8a8_noise_ms": w8a8.noise_ms, "w8a8_predicted_ms": w8a8_pred, "cost_model": ctx.costs.model_name,
               "floor_ms": floor.latency_ms, "floor_noise_ms": floor.noise_ms,
               "floor_sessions_ms": list(floor.sessions_ms),
               "floor_predicted_ms": fastest.report.latency_ms, "floor_plan_mix": floor_mix,
               # no compiler can meet a budget the space's fastest plan misses by more than its noise
               "feasible": bool(floor.meets(limit)), "load_before": os.getloadavg()[0]}
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cm = compile_with_budget(mod, Budget(latency_ms=limit), target="host", calibration=calibration,
                                         context=ctx)
        except BudgetError as err:
            row.update(outcome="budget_error", error=str(err), compile_s=time.perf_counter() - start)
            rows.append(row)
            save(rows, meta)
            log(f"{name} {frac}x ({limit:.4g} ms): BudgetError after {row['compile_s']:.0f} s: {str(err)[:160]}")
            continue
        compile_s = time.perf_counter() - start
        outcome = cm.search
        check = measure_confirmed(timed, cm, limit, strict=False)
        mix = _mix(cm.plan)
        row.update(outcome="model", compile_s=compile_s, rounds=len(outcome.rounds),
                   searches=sum(1 for r in outcome.rounds if r.kind == "search"),
                   round_kinds=[r.kind for r in outcome.rounds],
                   round_correction=[r.correction for r in outcome.rounds],
                   round_offset_ms=[r.offset_ms for r in outcome.rounds],
                   returned_fastest=outcome.result.method == "fastest",
                   round_predicted_ms=[r.predicted_latency_ms for r in outcome.rounds],
                   round_measured_ms=[None if r.measured is None else r.measured.latency_ms for r in outcome.rounds],
                   round_noise_ms=[None if r.measured is None else r.measured.noise_ms for r in outcome.rounds],
                   round_search_limit_ms=[getattr(r, "search_limit_ms", None) for r in outcome.rounds],
                   predicted_ms=outcome.predicted["latency_ms"], report_ms=cm.report.latency_ms,
                   compile_measured_ms=outcome.measured_latency_ms, compile_noise_ms=outcome.measurement_noise_ms,
                   round_sessions_ms=[None if r.measured is None else list(r.measured.sessions_ms)
                                      for r in outcome.rounds],
                   check_ms=check.latency_ms, check_noise_ms=check.noise_ms, check_source=check.source,
                   check_sessions_ms=list(check.sessions_ms),
                   met=bool(check.meets(limit)), plan_mix=mix, load_after=os.getloadavg()[0])
        rows.append(row)
        save(rows, meta)
        log(f"{name} {frac}x ({limit:.4g} ms): rounds {row['rounds']}, predicted {row['predicted_ms']:.4g}, "
            f"measured in compile {row['compile_measured_ms']:.4g}, check {check.latency_ms:.4g} +/- "
            f"{check.noise_ms:.2g} -> {'met' if row['met'] else 'MISSED'} ({compile_s:.0f} s) {mix}")


def _mix(plan) -> dict:
    mix: dict = {}
    for _, p in plan.items():
        mix[str(p)] = mix.get(str(p), 0) + 1
    return mix


def pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def _held_out_worst_pct() -> str:
    """The whole-model predictor's worst held-out |error| on this CPU (``docs/data/bench_predict_model_<cpu>.json``),
    as text."""
    from tvm_mp.targets import host_cpu

    path = ROOT / "docs" / "data" / f"bench_predict_model_{host_cpu()}.json"
    try:
        summary = json.loads(path.read_text())["summary"]
        worst = max(entry["raw"][p]["worst_abs_pct"] for group in summary.values() for entry in group.values()
                    for p in entry["raw"] if p.startswith("whole-model (XGBoost"))
    except (OSError, KeyError, ValueError):
        return "an unknown amount (run bench/predict_model.py)"
    return f"{worst:.0f} %"


def write(data: dict) -> None:
    from tvm_mp.testing.machine import machine_line

    rows = data["rows"]
    feasible = [r for r in rows if r.get("feasible", True)]
    infeasible = [r for r in rows if not r.get("feasible", True)]
    models = [r for r in rows if r["outcome"] == "model"]
    met_feasible = [r for r in feasible if r["outcome"] == "model" and r["met"]]
    errors_feasible = [r for r in feasible if r["outcome"] != "model"]
    met = [r for r in models if r["met"]]
    strict = [r for r in rows if r.get("floor_ms", 0.0) <= r["budget_ms"]]
    strict_met = [r for r in strict if r["outcome"] == "model" and r["met"]]
    extra = [r for r in models if r.get("searches", r["rounds"]) > 1]
    probed = [r for r in models if "fastest" in r.get("round_kinds", [])]
    returned_floor = [r for r in models if r.get("returned_fastest")]
    first_err = [abs(r["round_predicted_ms"][0] / r["round_measured_ms"][0] - 1) for r in rows
                 if r.get("round_measured_ms") and r["round_measured_ms"][0]
                 and r.get("round_kinds", ["search"])[0] == "search"]
    searches_used = ", ".join(f"{k}: {sum(1 for r in models if r.get('searches', r['rounds']) == k)}"
                              for k in (0, 1, 2, 3))
    lines = ["# Latency budgets on the host, verified by measurement", "",
             f"Command: `{data['command']}` (from the repository root; `TVM_NUM_THREADS=1` is set by the script). "
             f"Started {data.get('started', '?')}, {data.get('elapsed_s', 0) / 60:.0f} min.", "",
             machine_line(data["machine"]).rstrip(".") + f"; load average at the end {data.get('load_end', '?')}.", "",
             "What is measured: for each model, the uniform w8a8 build and the **fastest plan of the search space** "
             "(each layer at its fastest option by the costs, built as the budget compile builds) are timed "
             f"({CHECK_ROUNDS} rounds; the fastest plan in two sessions, the faster counts); a budget the fastest "
             "plan misses by more than its noise is *infeasible by "
             "measurement* (no compiler can meet it with these options) and counted apart. Then "
             f"`compile(budget=Budget(latency_ms=...))` runs on the host, at fractions f x w8a8 (f in {FRACTIONS}) "
             "and at budgets inside the feasible window, *fastest plan + q x (w8a8 - fastest plan)* as measured (q in "
             f"{WINDOW}; `cls`: f in {CLS_FRACTIONS}, q in {CLS_WINDOW}; marked *window q*), with its default cost "
             "model "
             f"(`{models[0]['cost_model'] if models else '?'}`): search on the predicted whole-inference latency, "
             "build, measured verification (one inference of `main`, VM time evaluator, CPU clock of the one TVM "
             "thread, median of 9 rounds; a plan that misses is timed in a second session and the faster session "
             "counts) and, while that median plus its noise (half the IQR) is over the budget, "
             "costs corrected and a new search (at most 3 searches). The correction is fitted on every plan the "
             "compile measured: the line through the plan measured closest under the limit and the one closest over "
             "it (predicted -> measured), else the ratio measured / predicted of the plan closest to the limit. "
             "When the costs put the budget below every plan, or every plan measured so far is over, the compile "
             "builds and measures the space's fastest plan (round kind *fastest*) before refusing or searching "
             "again; it refuses (`BudgetError`) only when that plan misses the budget by more than its noise, and "
             "returns it when no searched plan gets under by median + noise. Each search runs under the limit minus "
             "a safety margin (`tvm_mp.search.budget`: 3 % in round 1, twice the last measurement's relative noise "
             "and at least 1.5 % after; less when the costs cannot reach it). The returned model is then "
             f"timed **again** on its own ({CHECK_ROUNDS} rounds): *met* means that median is within the budget "
             "plus the noise this check reports (half its interquartile range); a check that misses is timed in a "
             "second session and the faster counts, as inside the compile. One search context per model "
             "(calibration and cost table once), a fresh search per budget. Calibration: 6 random inputs "
             "(benchmark models), 16 rendered text images (cls); the search's score is top-1 agreement with fp32.",
             "", "## Summary", "",
             f"- Load average (1 min) before each budget: {min(r['load_before'] for r in rows):.1f} to "
             f"{max(r['load_before'] for r in rows):.1f} (median {np.median([r['load_before'] for r in rows]):.1f}) "
             "on 2 cores.",
             f"- Budgets run: {len(rows)} on {len({r['model'] for r in rows})} models: **{len(feasible)} feasible** "
             f"by measurement (the space's fastest plan meets them), **{len(infeasible)} infeasible by "
             "measurement** (below the fastest plan's measured latency minus its noise; listed apart below).",
             f"- **Feasible budgets met by the independent measurement: {len(met_feasible)} / {len(feasible)} "
             f"({pct(len(met_feasible) / max(len(feasible), 1))}; goal >= {pct(GOAL)})**, a `BudgetError` counted "
             f"as a miss ({len(errors_feasible)} of them).",
             f"- Counting a budget below the fastest plan's measured median as infeasible (no noise allowed): "
             f"{len(strict_met)} / {len(strict)} ({pct(len(strict_met) / max(len(strict), 1))}) feasible budgets met.",
             f"- All budgets: a model returned for {len(models)} of {len(rows)}, met by the check for {len(met)} of "
             f"those; `BudgetError` for {len(rows) - len(models)}.",
             f"- Searches per returned model: {searches_used} ({len(extra)} needed more than one); the fastest plan "
             f"was built and measured inside {len(probed)} compile(s) and returned by {len(returned_floor)}.",
             ]
    if first_err:
        lines.append(f"- |predicted / measured - 1| of the first search's plan: median "
                     f"{pct(float(np.median(first_err)))}, worst {pct(float(np.max(first_err)))} "
                     f"(n = {len(first_err)}).")
    floors = {}
    for r in rows:
        if "floor_ms" in r:
            floors.setdefault(r["model"], r)
    if floors:
        lines += ["", "## The floor: the fastest plan of each model's space", "",
                  "| model | w8a8 measured ms | fastest plan measured ms (± noise) | predicted ms | fastest / w8a8 | "
                  "plan |", "|---|---|---|---|---|---|"]
        for name, r in floors.items():
            mix = ", ".join(f"{k} x{v}" for k, v in sorted(r["floor_plan_mix"].items(), key=lambda kv: -kv[1]))
            lines.append(f"| {name} | {r['w8a8_measured_ms']:.4g} | {r['floor_ms']:.4g} ± {r['floor_noise_ms']:.2g} "
                         f"| {r['floor_predicted_ms']:.4g} | {r['floor_ms'] / r['w8a8_measured_ms']:.2f} | {mix} |")

    def table(title: str, subset: list[dict]) -> None:
        lines.extend(["", title, "",
                      "| model | w8a8 measured ms | budget | rounds (kinds) | search limit ms per round | predicted ms "
                      "per round | measured ms per round | check ms (± noise) | met | compile s | plan |",
                      "|---|---|---|---|---|---|---|---|---|---|---|"])
        for r in subset:
            where = "" if r.get("window") is None else f" (window {r['window']})"
            head = (f"| {r['model']} | {r['w8a8_measured_ms']:.4g} | {r['fraction']}x{where} = {r['budget_ms']:.4g} "
                    "ms ")
            if r["outcome"] != "model":
                lines.append(head + f"| - | - | - | - | - | BudgetError | {r['compile_s']:.0f} | {r['error']} |")
                continue
            pred = " / ".join(f"{v:.4g}" for v in r["round_predicted_ms"])
            meas = " / ".join("-" if v is None else f"{v:.4g}" for v in r["round_measured_ms"])
            mix = ", ".join(f"{k} x{v}" for k, v in sorted(r["plan_mix"].items(), key=lambda kv: -kv[1]))
            if r.get("returned_fastest"):
                mix = "(the fastest plan) " + mix
            lim = " / ".join("-" if v is None else f"{v:.4g}"
                             for v in r.get("round_search_limit_ms", [None] * r["rounds"]))
            kinds = ", ".join("F" if k == "fastest" else "S" for k in r.get("round_kinds", ["search"] * r["rounds"]))
            lines.append(head + f"| {r['rounds']} ({kinds}) | {lim} | {pred} | {meas} | {r['check_ms']:.4g} ± "
                         f"{r['check_noise_ms']:.2g} "
                         f"| {'yes' if r['met'] else '**no**'} | {r['compile_s']:.0f} | {mix} |")

    table("## Feasible budgets", feasible)
    if infeasible:
        table("## Infeasible by measurement (below the fastest plan of the space)", infeasible)
        for r in infeasible:
            lines.append(f"- {r['model']} {r['fraction']}x = {r['budget_ms']:.4g} ms: infeasible by measurement: "
                         f"fastest plan {r['floor_ms']:.4g} ms ± {r['floor_noise_ms']:.2g}.")
    misses = [r for r in feasible if r["outcome"] != "model" or not r["met"]]
    if misses:
        lines += ["", "## The feasible budgets missed", ""]
        for r in misses:
            where = (f"budget {r['budget_ms']:.4g} ms, {100 * (r['budget_ms'] / r['floor_ms'] - 1):+.1f} % from the "
                     f"fastest plan's {r['floor_ms']:.4g} ± {r['floor_noise_ms']:.2g} ms (load {r['load_before']:.1f})")
            if r["outcome"] != "model":
                lines.append(f"- {r['model']} {r['fraction']}x: `BudgetError`; {where}: {r['error']}")
            else:
                which = "the fastest plan" if r.get("returned_fastest") else "a searched plan"
                lines.append(f"- {r['model']} {r['fraction']}x: returned {which}, measured in the compile "
                             f"{r['compile_measured_ms']:.4g} ± {r['compile_noise_ms']:.2g} ms, in the check "
                             f"{r['check_ms']:.4g} ± {r['check_noise_ms']:.2g} ms "
                             f"({100 * (r['check_ms'] / r['compile_measured_ms'] - 1):+.0f} %); {where}.")
    lines += ["", "Rounds (kinds): S a search's plan, F the space's fastest plan (by the costs) built and measured "
              "inside the compile; search limit '-' for F. Predicted per round: the search's total (layers + the "
              "whole-model predictor's fixed terms, through that round's correction).", "",
              "## What is weak", "",
              "- *Infeasible by measurement* is judged on the fastest plan **by the costs**; a plan the costs rank "
              "slower could run faster on this host, so the floor is an upper bound of the true floor (the costs' "
              "ranking of the fastest options is what the compile uses too).",
              "- The floor and the compile measure the same plans minutes apart: on a loaded 2-core machine the "
              "timings of one model differ by more than the noise either reports, so a budget just above the floor "
              "may be met by one measurement and missed by the next.",
              "- The safety margin is fixed (3 % in round 1) rather than fitted per model: a plan's prediction error "
              f"on a held-out model reaches {_held_out_worst_pct()} in the worst case (bench_predict_model_<cpu>.md), "
              "which the re-search "
              "catches only within the rounds allowed; the fallback to the fastest plan gives up accuracy to meet the "
              "budget.",
              "- The benchmark models are in the whole-model predictor's training data (it is the shipped one); "
              "held-out prediction errors are in bench_predict_model_<cpu>.md.", ""]
    OUT_MD.write_text("\n".join(lines))
    log(f"wrote {OUT_MD}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=3300.0, help="no new budget compile after this many seconds")
    parser.add_argument("--no-cls", action="store_true", help="the five benchmark models only")
    parser.add_argument("--models", nargs="*", help="only these models")
    parser.add_argument("--write-only", action="store_true", help="rewrite the page from the rows stored")
    parser.add_argument("--append", action="store_true", help="keep the rows stored and run only the budgets they "
                        "lack (e.g. to finish models a run's time slices cut short)")
    args = parser.parse_args(argv)
    if args.write_only:
        write(json.loads(OUT_JSON.read_text()))
        return 0
    if os.environ.get("TVM_NUM_THREADS") != "1":
        log("run with TVM_NUM_THREADS=1 (the CPU clock of one thread)")
        return 2
    from tvm_mp.testing.machine import describe_machine

    start = time.monotonic()
    meta = {"machine": describe_machine(packages=("apache-tvm", "numpy", "xgboost-cpu")),
            "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    log(f"load average at the start {os.getloadavg()}")
    rows: list[dict] = []
    if args.append and OUT_JSON.is_file():
        stored = json.loads(OUT_JSON.read_text())
        rows = stored.get("rows", [])
        meta["started"] = stored.get("started", meta["started"]) + f"; continued {meta['started']}"
        start -= float(stored.get("elapsed_s", 0.0))
        args.budget_s += float(stored.get("elapsed_s", 0.0))
    names = args.models or list(BENCHMARK_MODELS) + ([] if args.no_cls else ["cls"])
    for k, name in enumerate(names):
        if time.monotonic() - start > args.budget_s:
            log(f"time budget reached: {name} and later models not run")
            break
        # each model gets its share of the time left, so every model has budgets when time runs short
        share = (start + args.budget_s - time.monotonic()) / (len(names) - k)
        run_model(name, CLS_FRACTIONS if name == "cls" else FRACTIONS, CLS_WINDOW if name == "cls" else WINDOW,
                  rows, meta, time.monotonic() + share)
    meta.update(elapsed_s=time.monotonic() - start, load_end=" / ".join(f"{v:.2f}" for v in os.getloadavg()))
    save(rows, meta)
    write({**meta, "command": COMMAND, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
