"""Number formats on the digits CNN: accuracy and modelled energy of float-format, clustered and integer plans.

Plans (every layer in the same format unless said): fp32; w8a8; "VQ 4-bit" = w4a8 with packed 4-bit weight storage;
fp16, bf16, fp8 e4m3, fp8 e5m2; a sweep of narrower IEEE-style formats (the "model-specific reduced types"); clustered
weights with K = 4..64 shared values and 8-bit activation codes; and the best mixed integer plan that
``tvm_mp.search`` finds within the weight memory of the clustered K=16 plan. Every plan is compiled for the host,
run on the whole test split, and checked bit-exact against its NumPy reference; accuracy is top-1 of the compiled
model. Energy is *modelled* (:mod:`tvm_mp.formats.energy`: MACs x energy per MAC of the format + stored weight bits
and input-activation bits read once from an 8 KB-class SRAM), never measured. For the clustered plans, hit rates of
an associative memory beside each PE are measured: its S entries are the S most frequent (cluster, code) pairs on
the calibration batches, the hit rate is counted on the test split.

    python bench/formats.py [--entries 16,64] [--top-bits 4] [--search-evaluations 300] [--seed 0]

Writes ``docs/data/formats.json`` and the results section of ``docs/formats.md``.

``--search`` runs instead the precision search with number formats mixed into integer layers: ``tvm_mp.explore`` on
the digits CNN with integer options only (``default_options()``) and with integer + format options
(``default_options() + format_options()``: fp16, bf16, fp8 e4m3 / e5m2, clustered K = 4..64 with 8-bit codes),
side by side at the same seed, the same budgets (energy and weight memory swept) and the same cost model -- the
format-aware :class:`~tvm_mp.cost_models.analytical.DatapathModel`, so both spaces sit on one modelled scale. The
score is top-1 on the held-out split (as in ``bench/search.py``).

    python bench/formats.py --search [--budgets 8] [--seed 0]

Writes ``docs/data/formats_search.json``, ``docs/data/pareto_digits_formats.json``,
``docs/data/pareto_digits_integer_datapath.json``, ``docs/search_pareto_digits_formats.png`` and the search sections
of ``docs/formats.md`` and ``docs/search.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from tvm_mp.testing.machine import describe_machine, machine_line

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "formats.md"
DATA = ROOT / "docs" / "data" / "formats.json"
START, END = "<!-- results:start -->", "<!-- results:end -->"
#: Narrow IEEE-style formats tried uniformly (total bits <= 8).
NARROW = ((2, 1), (2, 2), (3, 1), (2, 3), (3, 2), (4, 1), (3, 3), (4, 2), (2, 5), (3, 4), (4, 3))
CLUSTERS = (4, 8, 16, 32, 64)


def machine() -> dict:
    return describe_machine(packages=("apache-tvm", "numpy", "scikit-learn"), tvm_runtime=False)

def evaluate(mod, layers, plan, calib, digits, figures, mac_pj=None) -> dict:
    """Compile, check bit-exactness on the test split, top-1, weight memory and modelled energy."""
    import tvm_mp
    from tvm_mp.formats.analysis import plan_energy

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cm = tvm_mp.compile(mod, plan=plan, calibration=calib)
    compile_s = time.perf_counter() - t0
    out = cm.run(digits.x_test)
    exact = bool(np.array_equal(out.view(np.uint32), cm.reference(digits.x_test).view(np.uint32)))
    energy = plan_energy(layers, plan, figures, mac_pj)
    return {"top1": float((out.argmax(axis=1) == digits.y_test).mean()), "exact_vs_reference": exact,
            "weight_kb": cm.report.memory_kb, "compile_s": compile_s,
            "energy_uj": sum(e.energy_uj for e in energy),
            "compute_uj": sum(e.compute_pj for e in energy) / 1e6, "memory_uj": sum(e.memory_pj for e in energy) / 1e6,
            "kernels": {r.name: r.kernel for r in cm.report.layers},
            "arithmetic": sorted({r.arithmetic for r in cm.report.layers}), "model": cm}


def fp32_row(mod, layers, digits, figures) -> dict:
    import tvm_mp
    from tvm_mp import PrecisionPlan, _tvm
    from tvm_mp.formats.analysis import plan_energy

    vm = _tvm.vm(_tvm.build(mod))
    preds = np.array([_tvm.run_relax(vm, [x[None]]).argmax() for x in digits.x_test])
    energy = plan_energy(layers, PrecisionPlan({}), figures)
    return {"top1": float((preds == digits.y_test).mean()), "exact_vs_reference": None,
            "weight_kb": sum(i.weight_count for i in tvm_mp.list_layers(mod)) * 4 / 1024.0,
            "energy_uj": sum(e.energy_uj for e in energy), "compute_uj": sum(e.compute_pj for e in energy) / 1e6,
            "memory_uj": sum(e.memory_pj for e in energy) / 1e6, "kernels": {}, "arithmetic": ["fp32"]}


def best_mixed_integer(mod, layers, calib, memory_kb: float, evaluations: int, seed: int):
    """The best uniform-or-mixed integer plan (w, a in 2..8) ``tvm_mp.search`` finds within ``memory_kb``:
    simulated annealing on output SQNR vs fp32 over the calibration batches, started from uniform w4a8."""
    from tvm_mp import Budget, Precision
    from tvm_mp.search.accuracy import Scorer
    from tvm_mp.search.annealing import AnnealConfig, anneal
    from tvm_mp.search.costs import CostTable
    from tvm_mp.search.problem import Problem, ScoreObjective
    from tvm_mp.search.space import SearchSpace

    options = [Precision(w, a) for w in range(2, 9) for a in range(2, 9)]
    space = SearchSpace.build(layers, options)
    scorer = Scorer(mod, calib, metric="sqnr_db")
    problem = Problem(space, CostTable.from_model(space), Budget(memory_kb=memory_kb), ScoreObjective(scorer, space))
    start = np.array([options.index(Precision(4, 8))] * len(layers))
    result = anneal(problem, np.random.default_rng(seed),
                    AnnealConfig(steps=4000, max_evaluations=evaluations, restarts=1, progress=False), init=start)
    return result.plan, {"method": "tvm_mp.search.anneal", "objective": "output SQNR vs fp32 (dB), calibration data",
                         "sqnr_db": -float(result.objective), "evaluations": int(result.evaluations),
                         "memory_budget_kb": memory_kb, "feasible": bool(result.feasible)}


#: Associative-memory energy scenarios: name -> EnergyFigures overrides (see tvm_mp.formats.energy).
CAM_SCENARIOS = {"derived CAM (scaled SRAM)": {}, "literature CAM (1 fJ/bit/search)": {"cam_pj_per_bit": 0.001}}


def clustered_analysis(row, plan, calib, digits, entries, top_bits) -> dict:
    """Per-layer hit rates of a clustered plan and the compute energy saved by an associative memory beside each
    PE, per memory size, CAM energy scenario and PE multiplier (the clustered kernels' 8-bit integer one, or fp32)."""
    from tvm_mp.formats import analysis
    from tvm_mp.formats.energy import EnergyFigures
    from tvm_mp.layers import annotated_layer_functions
    from tvm_mp.quantize.qlayer import read_layer

    q = row["model"].quantized_module
    fit = analysis.clustered_pair_counts(q, calib)
    test = analysis.clustered_pair_counts(q, [digits.x_test])
    zps = {n: read_layer(f).require_act().zero_point for n, (_, f) in annotated_layer_functions(q).items()}
    out = {}
    for s in entries:
        block = {"layers": {}, "scenarios": {}}
        for cam, overrides in CAM_SCENARIOS.items():
            figures = EnergyFigures(**overrides)
            for multiplier in ("integer", "fp32"):
                stats = analysis.clustered_stats(plan, fit, test, s, top_bits, figures, zps, multiplier)
                macs = {n: st.hits.macs for n, st in stats.items()}
                with_am = sum(st.mac_pj * macs[n] for n, st in stats.items())
                without = sum(st.multiply_mac_pj * macs[n] for n, st in stats.items())
                block["scenarios"][f"{cam}, {multiplier} PE"] = {
                    "compute_saved": 1.0 - with_am / without, "mac_pj": {n: st.mac_pj for n, st in stats.items()},
                    "hit_pj": next(iter(stats.values())).hit_pj, "miss_pj": next(iter(stats.values())).miss_pj,
                    "multiply_mac_pj": next(iter(stats.values())).multiply_mac_pj}
                for n, st in stats.items():
                    block["layers"][n] = {"exact_hit_rate": st.hits.exact_hit_rate,
                                          "approx_hit_rate": st.hits.approx_hit_rate,
                                          "zero_code_rate": st.hits.zero_code_rate, "macs_test": st.hits.macs}
        total = sum(v["macs_test"] for v in block["layers"].values())
        block["exact_hit_rate"] = sum(v["exact_hit_rate"] * v["macs_test"] for v in block["layers"].values()) / total
        block["approx_hit_rate"] = sum(v["approx_hit_rate"] * v["macs_test"] for v in block["layers"].values()) / total
        out[str(s)] = block
    return out


def fmt_pct(x):
    return "n/a" if x is None else f"{100 * x:.2f} %"


def markdown(res: dict) -> str:
    rows = res["plans"]
    base = rows["fp32"]["energy_uj"]
    w8 = rows["w8a8"]["energy_uj"]
    lines = [START, "", "## Results on the digits CNN", "",
             f"Command: `{res['command']}` ({res['date']}, {res['seconds']:.0f} s). {machine_line(res['machine'])} "
             f"Test split: {res['test_samples']} images; calibration: "
             f"{res['calibration']}. Energy is modelled (see above), per inference.", "",
             "| plan | top-1 | Δ vs fp32 | weight kB | energy µJ (compute + memory) | vs fp32 | vs w8a8 "
             "| exact vs reference |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        if name.startswith("_"):
            continue
        delta = 100 * (r["top1"] - rows["fp32"]["top1"])
        exact = "—" if r["exact_vs_reference"] is None else ("yes" if r["exact_vs_reference"] else "**no**")
        lines.append(f"| {name} | {100 * r['top1']:.2f} % | {delta:+.2f} | {r['weight_kb']:.2f} | "
                     f"{r['energy_uj']:.3f} ({r['compute_uj']:.3f} + {r['memory_uj']:.3f}) | "
                     f"{r['energy_uj'] / base:.3f} | {r['energy_uj'] / w8:.2f} | {exact} |")
    mixed = res.get("best_mixed_integer")
    lines += [""]
    if mixed:
        lines.append(f"Best mixed integer plan (`{mixed['plan']}`): found by {mixed['method']} maximizing "
                     f"{mixed['objective']} ({mixed['sqnr_db']:.1f} dB, {mixed['evaluations']} plans scored) within "
                     f"the weight memory of the clustered K=16 plan ({mixed['memory_budget_kb']:.2f} kB).")
    else:
        lines.append("Best mixed integer plan: not reported (tvm_mp.search not available).")
    k16 = res["clustered_k16"]
    lines += ["", "### Clustered K=16: an associative memory beside each PE", "",
              "Static memory: the S most frequent (cluster, code) pairs on the calibration batches; hit rates counted "
              "on "
              f"the test split; the approximate rule matches the top {res['top_bits']} of the 8 activation bits. "
              "'zero code' is the share of MACs whose activation is real zero (a zero-skipping PE saves those anyway).",
              "", "| S entries | layer | MACs (test) | exact hit | approx hit | zero code |",
              "|---|---|---|---|---|---|"]
    for s, block in k16.items():
        for n, st in block["layers"].items():
            lines.append(f"| {s} | {n} | {st['macs_test']} | {fmt_pct(st['exact_hit_rate'])} | "
                         f"{fmt_pct(st['approx_hit_rate'])} | {fmt_pct(st['zero_code_rate'])} |")
        lines.append(f"| {s} | **all (MAC-weighted)** | | {fmt_pct(block['exact_hit_rate'])} | "
                     f"{fmt_pct(block['approx_hit_rate'])} | |")
    lines += ["", "Compute energy per MAC with the memory (exact matches) against the same PE without it:", "",
              "| S entries | scenario | hit pJ | miss pJ | multiply-add pJ (no memory) | compute energy saved |",
              "|---|---|---|---|---|---|"]
    for s, block in k16.items():
        for name, sc in block["scenarios"].items():
            lines.append(f"| {s} | {name} | {sc['hit_pj']:.3f} | {sc['miss_pj']:.3f} | {sc['multiply_mac_pj']:.3f} | "
                         f"{fmt_pct(sc['compute_saved'])} |")
    lines += ["", res["discussion"], "", END]
    return "\n".join(lines)


def discussion(res: dict) -> str:
    p = res["plans"]
    fp32 = p["fp32"]["top1"]
    narrow = {k: v for k, v in p.items() if k.startswith("e") and "m" in k}
    ok = [k for k, v in narrow.items() if v["top1"] >= fp32 - 0.01]
    bits = {k: 1 + int(k[1]) + int(k.split("m")[1].rstrip("fn")) for k in narrow}
    smallest = min(ok, key=lambda k: (bits[k], -narrow[k]["top1"])) if ok else None
    k16 = res["clustered_k16"]
    first = next(iter(k16))
    best_int = max(sc["compute_saved"] for b in k16.values() for n, sc in b["scenarios"].items() if "integer" in n)
    best_fp32 = max(sc["compute_saved"] for b in k16.values() for n, sc in b["scenarios"].items() if "fp32" in n)
    lines = ["### Reading the numbers against the research results", "",
             f"* Float formats: fp16 {100 * p['fp16']['top1']:.2f} %, bf16 {100 * p['bf16']['top1']:.2f} %, fp8 e4m3 "
             f"{100 * p['fp8-e4m3']['top1']:.2f} % against fp32 {100 * fp32:.2f} %. The digits CNN is small and "
             "trained to saturation, so every 16-bit and 8-bit float format keeps fp32 accuracy: the effect the "
             "research reports for CIFAR-10 (best accuracy 74.87 % -> 82.07 % with half types, 83.45 % with "
             "model-specific reduced IEEE types) comes from a *fixed memory budget*: narrower types let a larger "
             "model fit. Here the model is fixed, so the comparable observation is how narrow a format can get "
             "before accuracy drops: " + (f"the smallest uniform format within 1 point of fp32 is {smallest} "
                                          f"({bits[smallest]} bits, "
                                          f"{100 * narrow[smallest]['top1']:.2f} %)." if smallest else
                                          "no narrow format stays within 1 point."),
             "* Modelled energy: float formats still accumulate in fp32 (0.9 pJ per add), so fp16 / fp8 MACs cost "
             f"{p['fp16']['compute_uj'] / p['fp32']['compute_uj']:.2f} / "
             f"{p['fp8-e4m3']['compute_uj'] / p['fp32']['compute_uj']:.2f} of fp32's, far above 8-bit integer MACs "
             f"({p['w8a8']['compute_uj'] / p['fp32']['compute_uj']:.2f}).",
             f"* Clustering: K=16 keeps {100 * p['clustered K16']['top1']:.2f} % (fp32 {100 * fp32:.2f} %; one test "
             f"image is {100 / res['test_samples']:.2f} points) with 4-bit indices, K=8 "
             f"{100 * p['clustered K8']['top1']:.2f} %, K=4 {100 * p['clustered K4']['top1']:.2f} %. A {first}-entry "
             f"memory hits on {100 * k16[first]['exact_hit_rate']:.0f} % of the MACs (mostly zero activations), "
             f"{100 * k16[first]['approx_hit_rate']:.0f} % with the approximate rule. Whether that saves energy "
             "depends "
             f"on what a hit replaces: next to the kernels' 8x8-bit integer multiplier (0.2 pJ) a hit saves at most "
             f"0.2 - 0.16 = 0.04 pJ (reading a 16-bit product from a 32-byte table costs ~0.16 pJ), less than the "
             f"search itself costs, so the memory adds {-100 * best_int:.0f} % compute energy at best; next to an "
             f"fp32 multiply-add PE (3.7 + 0.9 pJ) -- the setting of the research's 'up to 77 % energy saved' -- "
             "it saves up to "
             f"{100 * best_fp32:.0f} % with literature CAM figures. Our numbers support the research's claim only for "
             "wide (float) multipliers, and hit rates here come largely from zero activations.",
             ]
    return "\n".join(lines)


SEARCH_START, SEARCH_END = "<!-- formats-search:start -->", "<!-- formats-search:end -->"
SEARCH_DATA = ROOT / "docs" / "data" / "formats_search.json"
SEARCH_PNG = ROOT / "docs" / "search_pareto_digits_formats.png"
SEARCH_DOC = ROOT / "docs" / "search.md"
SEARCH_TITLE = ("digits CNN: integer + format options vs integer only (DatapathModel, energy modelled; "
                "score = test top-1)")


def _replace_section(path: Path, text: str, title: str) -> None:
    doc = path.read_text() if path.exists() else f"# {title}\n"
    if SEARCH_START not in doc:
        doc = doc.rstrip("\n") + f"\n\n{SEARCH_START}\n{SEARCH_END}\n"
    head, _, rest = doc.partition(SEARCH_START)
    _, _, tail = rest.partition(SEARCH_END)
    path.write_text(head + SEARCH_START + "\n" + text + "\n" + SEARCH_END + tail)


def _plan_text(plan) -> str:
    return ", ".join(f"{n}: {p}" for n, p in plan.items())


def search_comparison(budgets: int, seed: int, argv) -> dict:
    """Integer-only vs integer + format options: explore both at the same seed, budgets and cost model."""
    import tvm_mp
    from tvm_mp.cost_models.analytical import DatapathModel
    from tvm_mp.datasets import calibration_batches, load_digits_split
    from tvm_mp.models import digits_cnn_path
    from tvm_mp.search.accuracy import Scorer
    from tvm_mp.search.annealing import AnnealConfig
    from tvm_mp.search.pareto import search_context
    from tvm_mp.search.space import default_options, format_options

    t_start = time.perf_counter()
    mod = tvm_mp.load_onnx(digits_cnn_path(), shapes={"input": (1, 1, 8, 8)})
    digits = load_digits_split()
    calib = calibration_batches(8, 32, seed=seed)

    def top1(model) -> float:
        return float((model.run(digits.x_test).argmax(axis=1) == digits.y_test).mean())

    scorer = Scorer(mod, calib, accuracy_fn=top1)  # shared: a plan scored once counts for both searches
    model = DatapathModel()
    spaces = {"integer": default_options(), "integer+formats": default_options() + format_options()}
    contexts = {name: search_context(mod, scorer=scorer, options=opts, cost_model=model)
                for name, opts in spaces.items()}
    ints = contexts["integer"]
    w8 = ints.costs.totals(ints.space.uniform_index(tvm_mp.Precision(8, 8)))
    mins = ints.costs.minimum()
    axes = ("energy_uj", "memory_kb")
    limits = {a: [float(v) for v in np.geomspace(mins[a] * (1 + 1e-6), w8[a], budgets)] for a in axes}
    config = AnnealConfig(steps=1500, restarts=1, reheat_after=400, max_evaluations=250, progress=False)
    fronts, seconds = {}, {}
    for name, ctx in contexts.items():
        t0 = time.perf_counter()
        fronts[name] = tvm_mp.explore(mod, context=ctx, budgets=limits, axes=axes, seed=seed, config=config,
                                      progress=False)
        seconds[name] = time.perf_counter() - t0
        print(f"{name}: {seconds[name]:.0f} s, {fronts[name].notes['candidates']} plans", file=sys.stderr, flush=True)
    fronts["integer+formats"].to_json(ROOT / "docs" / "data" / "pareto_digits_formats.json")
    fronts["integer"].to_json(ROOT / "docs" / "data" / "pareto_digits_integer_datapath.json")
    fronts["integer+formats"].plot(SEARCH_PNG, axes=axes, compare=fronts["integer"],
                                   compare_label="integer-only front (same seed)",
                                   title=SEARCH_TITLE)
    per_budget = []
    for axis in axes:
        for limit in limits[axis]:
            row = {"axis": axis, "limit": limit}
            for name, front in fronts.items():
                best = front.best_within(axis, limit)
                row[name] = None if best is None else {"top1": best.score, "cost": best.cost(axis), "mix": best.mix,
                                                       "plan": _plan_text(best.plan)}
            per_budget.append(row)
    savings = {name: {axis: front.saving("w8a8", max_loss=0.005, axis=axis) for axis in axes}
               for name, front in fronts.items()}
    mixed = fronts["integer+formats"]
    with_formats = {axis: [{"cost": p.cost(axis), "top1": p.score, "kind": p.kind, "label": p.label, "mix": p.mix,
                            "plan": _plan_text(p.plan)} for p in mixed.front(axis) if p.mix != "integer"]
                    for axis in axes}
    uniform_formats = [{"label": p.label, "mix": p.mix, "top1": p.score, "energy_uj": p.energy_uj,
                        "memory_kb": p.memory_kb} for p in mixed.uniform() if p.mix != "integer"]
    same_seed = tvm_mp.explore(mod, context=contexts["integer+formats"], budgets={"energy_uj": limits["energy_uj"][:2]},
                               seed=seed, config=config, progress=False)
    first = tvm_mp.explore(mod, context=contexts["integer+formats"], budgets={"energy_uj": limits["energy_uj"][:2]},
                           seed=seed, config=config, progress=False)
    res = {"command": " ".join(["python bench/formats.py", *(argv if argv is not None else sys.argv[1:])]),
           "date": time.strftime("%Y-%m-%d"), "machine": machine(), "seed": seed, "budgets_per_axis": budgets,
           "score": "top-1 on the held-out digits split (accuracy_fn on the plan's NumPy reference)",
           "cost_model": "DatapathModel (energy modelled: MACs x per-MAC energy of the layer's format + SRAM reads of "
                         "stored weight bits and input activation bits; 45 nm figures)",
           "fp32_top1": mixed.fp32_score, "test_samples": int(len(digits.y_test)),
           "options_per_layer": {n: len(o) for n, o in spaces.items()},
           "seconds": seconds, "candidates": {n: f.notes["candidates"] for n, f in fronts.items()},
           "per_budget": per_budget, "savings_at_0.5pt_vs_w8a8": savings, "mixed_front_with_formats": with_formats,
           "uniform_format_plans": uniform_formats,
           "same_seed_same_front": [p.plan for p in same_seed.front("energy_uj")]
           == [p.plan for p in first.front("energy_uj")]}
    res["total_seconds"] = time.perf_counter() - t_start
    return res


def search_markdown(res: dict) -> str:
    m = res["machine"]
    lines = ["## Mixing formats with integer layers in the search", "",
             f"Command: `{res['command']}` ({res['date']}; total {res['total_seconds']:.0f} s). {machine_line(m)} "
             f"Digits CNN, score = {res['score']}; fp32 "
             f"{100 * res['fp32_top1']:.2f} %. Both searches: `tvm_mp.explore`, seed {res['seed']}, the same "
             f"{res['budgets_per_axis']} budgets per axis (energy and weight memory, geometric from the cheapest plan "
             "to uniform w8a8), one shared scorer, the same cost model: "
             f"{res['cost_model']}. Options per layer: "
             + ", ".join(f"{n} {k}" for n, k in res["options_per_layer"].items())
             + "; plans scored: " + ", ".join(f"{n} {k}" for n, k in res["candidates"].items())
             + "; explore time: " + ", ".join(f"{n} {s:.0f} s" for n, s in res["seconds"].items()) + ".", "",
             "![integer + formats front against the integer-only front](search_pareto_digits_formats.png)", "",
             "Best top-1 within each budget (best plan of each front costing at most the limit):", "",
             "| axis | limit | integer only | integer + formats | mix of the integer + formats plan |",
             "|---|---|---|---|---|"]
    for row in res["per_budget"]:
        a, b = row["integer"], row["integer+formats"]
        cell = lambda r: "none fits" if r is None else f"{100 * r['top1']:.2f} %"  # noqa: E731
        unit = "uJ" if row["axis"] == "energy_uj" else "kB"
        lines.append(f"| {row['axis']} | {row['limit']:.4g} {unit} | {cell(a)} | {cell(b)} | "
                     f"{'' if b is None else b['mix']} |")
    lines += ["", "Cheapest front plan within 0.5 point of uniform w8a8's top-1, and what it saves against w8a8:", "",
              "| axis | search | cost | top-1 | saving | plan |", "|---|---|---|---|---|---|"]
    for name, by_axis in res["savings_at_0.5pt_vs_w8a8"].items():
        for axis, s in by_axis.items():
            plan = ", ".join(f"{k}: {v}" for k, v in s["plan"].items())
            lines.append(f"| {axis} | {name} | {s['cost']:.4g} | {100 * s['score']:.2f} % | "
                         f"{100 * s['saving']:.1f} % | {plan} |")
    lines += ["", "Plans on the integer + formats fronts that use a format:", ""]
    for axis, pts in res["mixed_front_with_formats"].items():
        if not pts:
            lines.append(f"* {axis}: none -- integer plans are cheaper at every score on this axis.")
        for p in pts:
            lines.append(f"* {axis}: {p['cost']:.4g}, top-1 {100 * p['top1']:.2f} %, {p['mix']} "
                         f"({p['label'] or p['kind']}): {p['plan']}")
    lines += ["", "Uniform format plans (reference points on the plot):", "",
              "| plan | top-1 | energy (uJ, modelled) | weight memory (kB) |", "|---|---|---|---|"]
    for u in res["uniform_format_plans"]:
        lines.append(f"| {u['label']} | {100 * u['top1']:.2f} % | {u['energy_uj']:.4f} | {u['memory_kb']:.2f} |")
    lines += ["", f"Same seed, same front (a repeated two-budget explore of the mixed space): "
              f"{res['same_seed_same_front']}.", "", "### Reading the numbers", ""]
    lines += search_reading(res)
    return "\n".join(lines)


def search_reading(res: dict) -> list[str]:
    """Statements derived from the figures (no number typed in by hand)."""
    out = []
    w8 = res["savings_at_0.5pt_vs_w8a8"]["integer"]
    for axis in ("energy_uj", "memory_kb"):
        rows = [r for r in res["per_budget"] if r["axis"] == axis and r["integer"] and r["integer+formats"]]
        win = [r for r in rows if r["integer+formats"]["top1"] > r["integer"]["top1"] + 1e-12
               and r["integer+formats"]["mix"] != "integer"]
        noise = [r for r in rows if abs(r["integer+formats"]["top1"] - r["integer"]["top1"]) > 1e-12
                 and r not in win]
        fmt_front = res["mixed_front_with_formats"][axis]
        unit = "uJ" if axis == "energy_uj" else "kB"
        text = f"* **{axis}**: "
        if win:
            text += ("a plan with formats beats the best integer-only plan at " + ", ".join(
                f"{r['limit']:.4g} {unit} ({100 * r['integer']['top1']:.2f} -> "
                f"{100 * r['integer+formats']['top1']:.2f} %, {r['integer+formats']['mix']})" for r in win) + "; ")
        else:
            text += "no budget where a plan with formats beats the integer-only search; "
        text += f"{len(fmt_front)} plan(s) on the mixed front use a format"
        if fmt_front:
            text += " (" + ", ".join(sorted({p["mix"] for p in fmt_front})) + ")"
        if noise:
            text += ("; at " + ", ".join(
                f"{r['limit']:.4g} {unit} ({100 * r['integer']['top1']:.2f} vs "
                f"{100 * r['integer+formats']['top1']:.2f} %)" for r in noise)
                + " the two searches return different *integer* plans (integer only vs mixed space): the mixed space "
                "contains every integer plan, so such gaps are the search's -- the same number of scored plans per "
                "budget over a larger space, another random stream -- not the formats'")
        out.append(text + ".")
    s = res["savings_at_0.5pt_vs_w8a8"]
    out.append("* Within 0.5 point of uniform w8a8: energy saved " + ", ".join(
        f"{n} {100 * v['energy_uj']['saving']:.1f} %" for n, v in s.items()) + "; weight memory saved " + ", ".join(
        f"{n} {100 * v['memory_kb']['saving']:.1f} %" for n, v in s.items()) + ".")
    uni = res["uniform_format_plans"]
    floats = [u for u in uni if u["mix"] == "float"]
    clustered = [u for u in uni if u["mix"] == "clustered"]
    w8_energy = w8["energy_uj"]["reference_cost"]
    if floats and not any("float" in p["mix"] for p in res["mixed_front_with_formats"]["energy_uj"]):
        cheapest = min(floats, key=lambda u: u["energy_uj"])
        out.append(f"* Float formats do not enter the energy front: a float MAC accumulates in fp32 (0.9 pJ per add) "
                   f"on 8- or 16-bit operands, so the cheapest uniform float plan ({cheapest['label']}, "
                   f"{cheapest['energy_uj']:.4f} uJ) costs {cheapest['energy_uj'] / w8_energy:.1f}x uniform w8a8 "
                   f"({w8_energy:.4f} uJ) and scores {100 * cheapest['top1']:.2f} %.")
    if clustered:
        lo = min(u["energy_uj"] for u in clustered) / w8_energy
        hi = max(u["energy_uj"] for u in clustered) / w8_energy
        out.append(f"* Clustered layers keep an 8-bit multiply (int8 centroid x 8-bit code): uniform clustered plans "
                   f"cost {lo:.2f}-{hi:.2f}x uniform w8a8's energy; their use is weight memory -- "
                   "ceil(log2 K)-bit indices -- which is where they appear on the front.")
    n = res.get("test_samples")
    out.append("* Energy is modelled (45 nm figures, a datapath computing in each layer's format; "
               "`tvm_mp.cost_models.analytical.DatapathModel`), not measured, and not comparable with the CPU "
               "figures of `bench/search.py` (AnalyticalModel). The score is top-1 on the test split used in the loop"
               + (f" ({n} images, one image = {100 / n:.2f} point)" if n else "")
               + ": the fronts are optimistic about unseen data.")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", default="16,64", help="associative-memory sizes S (comma separated)")
    parser.add_argument("--top-bits", type=int, default=4, help="activation bits the approximate rule matches")
    parser.add_argument("--search-evaluations", type=int, default=300, help="plans the mixed-integer search scores")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--search", action="store_true",
                        help="run the integer-only vs integer + format options search comparison instead")
    parser.add_argument("--budgets", type=int, default=8, help="budgets per swept axis (--search)")
    parser.add_argument("--markdown-only", action="store_true",
                        help="with --search: rewrite the sections and the plot from the saved JSON, no search")
    args = parser.parse_args(argv)
    t_start = time.perf_counter()
    if args.search:
        if args.markdown_only:
            from tvm_mp.search.pareto import ParetoFront

            res = json.loads(SEARCH_DATA.read_text())
            read = lambda name: ParetoFront.from_json((ROOT / "docs" / "data" / name).read_text())  # noqa: E731
            read("pareto_digits_formats.json").plot(
                SEARCH_PNG, axes=("energy_uj", "memory_kb"), compare=read("pareto_digits_integer_datapath.json"),
                compare_label="integer-only front (same seed)", title=SEARCH_TITLE)
        else:
            res = search_comparison(args.budgets, args.seed, argv)
            SEARCH_DATA.parent.mkdir(parents=True, exist_ok=True)
            SEARCH_DATA.write_text(json.dumps(res, indent=2) + "\n")
        text = search_markdown(res)
        _replace_section(DOC, text, "Number formats")
        _replace_section(SEARCH_DOC, text, "Precision search")
        print(f"wrote {SEARCH_DATA.relative_to(ROOT)}, {SEARCH_PNG.relative_to(ROOT)} and the search sections of "
              f"{DOC.relative_to(ROOT)} and {SEARCH_DOC.relative_to(ROOT)}", file=sys.stderr)
        return 0
    if args.markdown_only:
        _write_results(json.loads(DATA.read_text()))
        print(f"wrote {DOC.relative_to(ROOT)} from {DATA.relative_to(ROOT)}", file=sys.stderr)
        return 0

    import tvm_mp
    from tvm_mp import Precision, PrecisionPlan
    from tvm_mp.datasets import calibration_batches, load_digits_split
    from tvm_mp.formats.energy import EnergyFigures
    from tvm_mp.models import digits_cnn_path

    mod = tvm_mp.load_onnx(digits_cnn_path(), shapes={"input": (1, 1, 8, 8)})
    layers = tvm_mp.list_layers(mod)
    digits = load_digits_split()
    calib = calibration_batches(8, 32)
    figures = EnergyFigures()
    uniform = lambda p: PrecisionPlan.uniform(mod, p)  # noqa: E731
    plans = {"w8a8": uniform(Precision(8, 8)), "VQ 4-bit (w4a8 packed)": uniform(Precision(4, 8, "packed")),
             "fp16": uniform(Precision.fp16()), "bf16": uniform(Precision.bf16()),
             "fp8-e4m3": uniform(Precision.fp8_e4m3()), "fp8-e5m2": uniform(Precision.fp8_e5m2())}
    for e, m in NARROW:
        plans[f"e{e}m{m}"] = uniform(Precision.float(e, m))
    for k in CLUSTERS:
        plans[f"clustered K{k}"] = uniform(Precision.clustered(k, 8))

    rows = {"fp32": fp32_row(mod, layers, digits, figures)}
    for name, plan in plans.items():
        rows[name] = evaluate(mod, layers, plan, calib, digits, figures)
        print(f"{name}: top-1 {rows[name]['top1']:.4f} exact {rows[name]['exact_vs_reference']} "
              f"energy {rows[name]['energy_uj']:.3f} uJ", file=sys.stderr, flush=True)
    entries = [int(s) for s in args.entries.split(",")]
    k16 = clustered_analysis(rows["clustered K16"], plans["clustered K16"], calib, digits, entries, args.top_bits)
    first = str(entries[0])
    scenario = k16[first]["scenarios"]["literature CAM (1 fJ/bit/search), integer PE"]
    rows[f"clustered K16 + {first}-entry memory (literature CAM)"] = evaluate(
        mod, layers, plans["clustered K16"], calib, digits, figures, scenario["mac_pj"])
    mixed = None
    try:
        import tvm_mp.search.annealing  # noqa: F401

        have_search = True
    except ImportError:
        have_search = False
    if have_search:
        plan, mixed = best_mixed_integer(mod, layers, calib, rows["clustered K16"]["weight_kb"],
                                         args.search_evaluations, args.seed)
        mixed["plan"] = ", ".join(f"{n}: {p}" for n, p in plan.items())
        rows["best mixed integer"] = evaluate(mod, layers, plan, calib, digits, figures)
    for r in rows.values():
        r.pop("model", None)
    res = {"command": " ".join(["python bench/formats.py", *(argv if argv is not None else sys.argv[1:])]),
           "date": time.strftime("%Y-%m-%d"), "machine": machine(), "test_samples": int(len(digits.y_test)),
           "calibration": "calibration_batches(8, 32) from the training split", "top_bits": args.top_bits,
           "energy_figures": figures.to_dict(), "plans": rows, "clustered_k16": k16, "best_mixed_integer": mixed}
    res["discussion"] = discussion(res)
    res["seconds"] = time.perf_counter() - t_start
    DATA.parent.mkdir(parents=True, exist_ok=True)
    DATA.write_text(json.dumps(res, indent=2) + "\n")
    _write_results(res)
    print(f"wrote {DATA.relative_to(ROOT)} and {DOC.relative_to(ROOT)}", file=sys.stderr)
    return 0


def _write_results(res: dict) -> None:
    """The results section of docs/formats.md (between its markers) from ``res``."""
    text = DOC.read_text() if DOC.exists() else f"# Number formats\n\n{START}\n{END}\n"
    if START not in text:
        text += f"\n{START}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    DOC.write_text(head + markdown(res) + tail)


if __name__ == "__main__":
    sys.exit(main())
