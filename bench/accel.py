"""Accelerator benchmark: joint precision + mapping search, analytical model vs simulator, end-to-end simulation.

Run from the repository root:

    python bench/accel.py [--random 3] [--out docs/bench_accel]

For ResNet-8 and MobileNetV1-0.25 (layer shapes from ``tvm_mp.list_layers(tvm_mp.load_onnx(...))``) on the
default hardware description (``tvm_mp/accel/default.json``, 45 nm figures):

1. energy of the best uniform-w8a8 mapping (and of the unsearched default mapping) vs the best joint precision +
   mapping at each precision (every layer at that precision, each with its best mapping; output codes stored at
   the next layer's activation width), and two mixed plans chosen per layer by dynamic programming: among w8a8,
   w4a8, w4a4, w2a2 with the first and last layers kept at w8a8, and among the precisions that keep the output
   fidelity (see below) within 3 dB of uniform w8a8 when applied to that layer alone. The models are untrained,
   so accuracy means nothing; output fidelity is measured instead: SQNR of the quantized network's logits (NumPy
   reference) against fp32, and agreement of their arg-max, on seeded random inputs;
2. agreement of the analytical model with the simulator on every layer: the best mapping at w8a8, w4a4 and w2a2,
   plus ``--random`` random feasible mappings per layer and precision (all counts and cycles);
3. per-layer reports (cycles, energy, breakdown) and stacked-bar plots of both models at w8a8 and w4a4 (analytical,
   best mappings);
4. an end-to-end ResNet-8 inference with every layer on the simulated accelerator through the Relax VM: wall time,
   bit-exactness against the NumPy reference, and the per-layer report and stacked-bar plot.

Writes ``<out>.json``, ``<out>.md`` and ``<out>_<model>_<plan>.png`` with the machine description.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from tvm_mp.testing.machine import describe_machine, machine_line

COMMAND = "python bench/accel.py --random 3"
MODELS = {"resnet8": (1, 3, 32, 32), "mobilenet_v1_025": (1, 3, 96, 96)}
PRECISIONS = [(8, 8), (8, 4), (4, 8), (4, 4), (4, 2), (2, 2), (1, 1)]
MIXED = [(8, 8), (4, 8), (4, 4), (2, 2)]
FIDELITY_CANDIDATES = [(8, 4), (4, 8), (4, 4), (2, 2)]
FIDELITY_MARGIN_DB = 3.0


def load_layers(name: str):
    import tvm_mp
    from tvm_mp.models.builders import BUILDERS

    builder = BUILDERS[name]
    mod = tvm_mp.load_onnx(builder.build(0), shapes={builder.input_name: MODELS[name]})
    return mod, tvm_mp.list_layers(mod)


class Fidelity:
    """Output SQNR (dB) and arg-max agreement of a precision plan against fp32, with the NumPy reference."""

    def __init__(self, mod, batch: int = 6, seed: int = 0):
        from tvm_mp.quantize.calibrate import calibrate
        from tvm_mp.quantize.interpreter import Interpreter

        rng = np.random.default_rng(seed)
        shape = tuple(int(v) for v in mod["main"].params[0].ty.shape.values)
        self.mod = mod
        self.ranges = calibrate(mod, [rng.normal(0, 1, (8,) + shape[1:]).astype(np.float32)])
        self.x = rng.normal(0, 1, (batch,) + shape[1:]).astype(np.float32)
        self.ref = Interpreter(mod).run([self.x])

    def __call__(self, precisions: dict) -> tuple[float, float]:
        import warnings

        import tvm

        from tvm_mp import Precision, PrecisionPlan
        from tvm_mp.passes.pipeline import annotate_phase, quantize_phase
        from tvm_mp.quantize.interpreter import Interpreter

        plan = PrecisionPlan({n: Precision(*p) for n, p in precisions.items()})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = tvm.transform.Sequential(annotate_phase(plan, self.ranges) + quantize_phase())(self.mod)
        y = Interpreter(q, quantized=True).run([self.x])
        noise = float(((y - self.ref) ** 2).sum())
        sqnr = float("inf") if noise == 0 else 10 * np.log10(float((self.ref ** 2).sum()) / noise)
        return sqnr, float((y.argmax(1) == self.ref.argmax(1)).mean())


def precision_study(mod, layers, hw, reports: dict | None = None) -> dict:
    from tvm_mp import Precision
    from tvm_mp.accel.lower import ConvShape, OutputSpec, default_mapping
    from tvm_mp.accel.mapping import AnalyticalModel, candidate_mappings, search_model

    model = AnalyticalModel(hw)
    fidelity = Fidelity(mod)
    names = [layer.name for layer in layers]
    rows = {}
    # unsearched baseline: the greedy default mapping at w8a8
    total = 0.0
    cycles = 0
    for i, layer in enumerate(layers):
        shape = ConvShape.from_layer(layer)
        out = OutputSpec() if i == len(layers) - 1 else OutputSpec.codes(8)
        est = model.estimate(shape, 8, 8, default_mapping(shape, 8, 8, hw, out), out)
        total += est.energy_uj
        cycles += est.cycles
    rows["w8a8 default mapping"] = {"energy_uj": total, "cycles": cycles}

    def summarize(res, start, plan) -> dict:
        sqnr, agree = fidelity(plan)
        return {"energy_uj": res.energy_uj, "cycles": res.cycles, "search_s": time.perf_counter() - start,
                "sqnr_db": sqnr, "argmax_agreement": agree, "precisions": res.precisions(),
                "layers": {n: {"mapping": str(e.mapping), "energy_uj": e.energy_uj, "cycles": e.cycles}
                           for n, e in res.layers.items()}}

    for w, a in PRECISIONS:
        start = time.perf_counter()
        res = search_model(layers, hw, [Precision(w, a)])
        if reports is not None:
            reports[f"w{w}a{a}"] = res
        rows[f"w{w}a{a}"] = summarize(res, start, {n: (w, a) for n in names})
        rows[f"w{w}a{a}"]["feasible_mappings"] = sum(
            len(candidate_mappings(ConvShape.from_layer(layer), w, a, hw, OutputSpec.codes(a))) for layer in layers)
    allowed = {layer.name: [Precision(*p) for p in MIXED] for layer in layers}
    allowed[layers[0].name] = allowed[layers[-1].name] = [Precision(8, 8)]
    start = time.perf_counter()
    res = search_model(layers, hw, allowed)
    rows["mixed: first/last w8a8 (DP)"] = summarize(res, start, {n: (int(p[1]), int(p[3])) for n, p in
                                                                  res.precisions().items()})
    # fidelity-constrained: a layer may use a lower precision if that alone keeps the output within the margin
    start = time.perf_counter()
    floor = rows["w8a8"]["sqnr_db"] - FIDELITY_MARGIN_DB
    allowed = {}
    for name in names:
        ok = [Precision(8, 8)]
        for p in FIDELITY_CANDIDATES:
            plan = {n: (8, 8) for n in names}
            plan[name] = p
            if fidelity(plan)[0] >= floor:
                ok.append(Precision(*p))
        allowed[name] = ok
    res = search_model(layers, hw, allowed)
    rows[f"mixed: fidelity within {FIDELITY_MARGIN_DB:g} dB per layer (DP)"] = summarize(
        res, start, {n: (int(p[1]), int(p[3])) for n, p in res.precisions().items()})
    base = rows["w8a8"]["energy_uj"]
    for row in rows.values():
        row["saving_vs_w8a8"] = 1.0 - row["energy_uj"] / base
    return rows


def _compare(shape, w, a, mapping, output, hw, model, rng) -> dict:
    from tvm_mp.accel.simulator import run_layer
    from tvm_mp.quantize.scheme import weight_qrange

    codes = rng.integers(0, 1 << a, size=(shape.n, shape.c, shape.h, shape.w)).astype(np.uint8)
    lo, hi = weight_qrange(w)
    wq = rng.integers(lo, hi + 1, size=(shape.oc, shape.cg, shape.kh, shape.kw)).astype(np.int8)
    mult = np.full(shape.oc, 1 << 30, dtype=np.int64)
    shift = np.full(shape.oc, 62, dtype=np.int64)
    _, sim = run_layer(shape, w, a, codes, wq, np.zeros(shape.oc, np.int32), hw, mapping, output, 0, mult, shift)
    est = model.estimate(shape, w, a, mapping, output)
    sc, ec = sim.events.counts(), est.events.counts()
    errors = {k: abs(ec[k] - sc[k]) / max(sc[k], 1) for k in sc}
    errors["cycles"] = abs(est.cycles - sim.cycles) / sim.cycles
    return {"max_count_error": max(v for k, v in errors.items() if k != "cycles"), "cycle_error": errors["cycles"],
            "sim_cycles": sim.cycles, "model_cycles": est.cycles, "sim_energy_uj": sim.energy_uj,
            "model_energy_uj": est.energy_uj}


def agreement_study(layers, hw, n_random: int, rng) -> dict:
    from tvm_mp.accel.lower import ConvShape, OutputSpec
    from tvm_mp.accel.mapping import AnalyticalModel, candidate_mappings, search_mappings

    model = AnalyticalModel(hw)
    best_rows = []
    random_errors = []
    start = time.perf_counter()
    for layer in layers:
        shape = ConvShape.from_layer(layer)
        for w, a in ((8, 8), (4, 4), (2, 2)):
            out = OutputSpec.codes(a)
            best = search_mappings(shape, w, a, hw, out, model=model).best
            row = _compare(shape, w, a, best.mapping, out, hw, model, rng)
            best_rows.append({"layer": layer.name, "precision": f"w{w}a{a}", "mapping": str(best.mapping), **row})
            cands = candidate_mappings(shape, w, a, hw, out, double_buffer=(True, False))
            for i in rng.choice(len(cands), size=min(n_random, len(cands)), replace=False):
                r = _compare(shape, w, a, cands[i], out, hw, model, rng)
                random_errors.append((r["max_count_error"], r["cycle_error"]))
    errs = np.array(random_errors) if random_errors else np.zeros((0, 2))
    return {
        "best": best_rows,
        "best_max_count_error": max(r["max_count_error"] for r in best_rows),
        "best_max_cycle_error": max(r["cycle_error"] for r in best_rows),
        "random_mappings": len(errs),
        "random_max_count_error": float(errs[:, 0].max()) if len(errs) else None,
        "random_max_cycle_error": float(errs[:, 1].max()) if len(errs) else None,
        "random_cycle_error_over_5pct": int((errs[:, 1] > 0.05).sum()) if len(errs) else None,
        "random_cycle_error_over_10pct": int((errs[:, 1] > 0.10).sum()) if len(errs) else None,
        "seconds": time.perf_counter() - start,
    }


def end_to_end(mod, hw, out_prefix: Path) -> dict:
    import tvm_mp
    from tvm_mp import Precision, PrecisionPlan

    rng = np.random.default_rng(0)
    calib = [rng.normal(0, 1, (4,) + MODELS["resnet8"][1:]).astype(np.float32)]
    x = rng.normal(0, 1, MODELS["resnet8"]).astype(np.float32)
    result = {}
    for w, a in ((8, 8), (4, 4), (2, 2)):
        start = time.perf_counter()
        model = tvm_mp.compile(mod, plan=PrecisionPlan.uniform(mod, Precision(w, a)), calibration=calib,
                               target={"kind": "accel", "config": hw})
        build_s = time.perf_counter() - start
        times = []
        for _ in range(3):
            start = time.perf_counter()
            y = model.run(x)
            times.append(time.perf_counter() - start)
        exact = bool(np.array_equal(y, model.reference(x)))
        report = model.accel.report(f"resnet8 w{w}a{a} (simulated)", model.report.layers)
        png = report.plot(f"{out_prefix}_resnet8_w{w}a{a}.png")
        result[f"w{w}a{a}"] = {"build_s": build_s, "run_s_median": float(np.median(times)), "bit_exact": exact,
                              "energy_uj": report.energy_uj, "cycles": report.cycles, "plot": png.name,
                              "table": str(report)}
    return result


def markdown(data: dict) -> str:
    m = data["machine"]
    lines = ["# Accelerator benchmark", "",
             f"Command: `{data['command']}` (from the repository root). Hardware description: "
             f"`{data['hardware']}` (`tvm_mp/accel/default.json`).", "",
             f"{machine_line(m)} Total run time {data['seconds']:.0f} s.", "",
             "## Energy per inference: best uniform-w8a8 mapping vs joint precision + mapping", "",
             "Analytical model, best mapping per layer (energy objective). Output codes are stored at the next "
             "layer's activation width; the last layer stores int32 accumulators.", ""]
    for name, rows in data["precision"].items():
        lines += [f"### {name}", "", "| precision | energy (µJ) | saving vs best w8a8 | cycles | feasible mappings | "
                  "output SQNR vs fp32 (dB) | arg-max agreement |", "|---|---|---|---|---|---|---|"]
        for key, row in rows.items():
            sqnr = f"{row['sqnr_db']:.1f}" if "sqnr_db" in row else "-"
            agree = f"{row['argmax_agreement']:.2f}" if "argmax_agreement" in row else "-"
            lines.append(f"| {key} | {row['energy_uj']:.2f} | {100 * row['saving_vs_w8a8']:.1f} % | {row['cycles']} | "
                         f"{row.get('feasible_mappings', '-')} | {sqnr} | {agree} |")
        for key, row in rows.items():
            if key.startswith("mixed"):
                plan = row["precisions"]
                lines += ["", f"{key}: " + ", ".join(f"{k}={v}" for k, v in plan.items())]
        lines.append("")
    lines += ["## Per-layer reports (analytical, best mappings)", ""]
    for name, reps in data["reports"].items():
        for key, rep in reps.items():
            lines += [f"![{name} {key}]({rep['plot']})", "", "```", rep["table"], "```", ""]
    lines += ["## Analytical model vs simulator", ""]
    lines += ["| model | layers x precisions | max count error (best mappings) | max cycle error (best mappings) | "
              "random mappings | max count error | max cycle error | > 5 % | > 10 % |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, ag in data["agreement"].items():
        lines.append(f"| {name} | {len(ag['best'])} | {100 * ag['best_max_count_error']:.2f} % | "
                     f"{100 * ag['best_max_cycle_error']:.2f} % | {ag['random_mappings']} | "
                     f"{100 * (ag['random_max_count_error'] or 0):.2f} % | "
                     f"{100 * (ag['random_max_cycle_error'] or 0):.2f} % | "
                     f"{ag['random_cycle_error_over_5pct']} | {ag['random_cycle_error_over_10pct']} |")
    lines += ["", "Per layer (best mapping at w8a8):", "", "| model | layer | mapping | sim cycles | model cycles | "
              "cycle error | sim energy (µJ) | model energy (µJ) |", "|---|---|---|---|---|---|---|---|"]
    for name, ag in data["agreement"].items():
        for r in ag["best"]:
            if r["precision"] != "w8a8":
                continue
            lines.append(f"| {name} | {r['layer']} | {r['mapping']} | {r['sim_cycles']} | {r['model_cycles']} | "
                         f"{100 * r['cycle_error']:.2f} % | {r['sim_energy_uj']:.3f} | {r['model_energy_uj']:.3f} |")
    lines += ["", "## End to end: ResNet-8 with every layer on the simulated accelerator", "",
              "Through `tvm_mp.compile(target={\"kind\": \"accel\", ...})` and the Relax VM: integer edges "
              "between layers, consecutive accelerator layers chained on chip where the buffers allow.", "",
              "| plan | build (s) | inference incl. simulation (s, median of 3) | bit-exact vs NumPy reference | "
              "energy (µJ) | cycles |", "|---|---|---|---|---|---|"]
    for key, row in data["end_to_end"].items():
        lines.append(f"| {key} | {row['build_s']:.2f} | {row['run_s_median']:.3f} | {row['bit_exact']} | "
                     f"{row['energy_uj']:.2f} | {row['cycles']} |")
    for key, row in data["end_to_end"].items():
        lines += ["", f"![{key}]({row['plot']})", "", "```", row["table"], "```"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--random", type=int, default=3, help="random mappings per layer and precision to check")
    parser.add_argument("--out", default="docs/bench_accel", help="output prefix (writes .json, .md, .png)")
    args = parser.parse_args(argv)
    from tvm_mp.accel.hardware import HardwareConfig
    from tvm_mp.accel.report import report_from_estimates

    hw = HardwareConfig.default()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    data = {"command": COMMAND, "hardware": hw.name, "machine": describe_machine(tvm_runtime=False), "precision": {},
            "agreement": {}}
    resnet_mod = None
    for name in MODELS:
        mod, layers = load_layers(name)
        if name == "resnet8":
            resnet_mod = mod
        print(f"[{name}] {len(layers)} layers: precision + mapping search", file=sys.stderr)
        searched: dict = {}
        data["precision"][name] = precision_study(mod, layers, hw, searched)
        data.setdefault("reports", {})[name] = {}
        for key in ("w8a8", "w4a4"):
            report = report_from_estimates(f"{name} {key} (analytical, best mappings)", hw.name, layers,
                                           dict(searched[key].layers))
            png = report.plot(f"{out}_{name}_{key}_analytical.png")
            data["reports"][name][key] = {"table": str(report), "plot": png.name, "report": report.to_dict()}
        print(f"[{name}] analytical model vs simulator", file=sys.stderr)
        data["agreement"][name] = agreement_study(layers, hw, args.random, rng)
    print("[resnet8] end to end through the Relax VM", file=sys.stderr)
    data["end_to_end"] = end_to_end(resnet_mod, hw, out)
    data["seconds"] = time.perf_counter() - start
    Path(f"{out}.json").write_text(json.dumps(data, indent=2, default=float))
    text = markdown(data)
    Path(f"{out}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
