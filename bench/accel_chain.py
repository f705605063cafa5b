"""On-chip chaining benchmark: energy and cycles of ResNet-8 and MobileNetV1-0.25 on the accelerator with and
without keeping consecutive layers' codes on chip, bit-exactness, and the analytical model on chained layers.

Run from the repository root:

    python bench/accel_chain.py [--out docs/bench_accel_chain]

For each model (``tvm_mp.models`` builders, seed 0) at uniform w8a8 and w4a4: ``tvm_mp.compile(target="accel")``
(chaining on, as built) and the same model's accelerator layers without chaining -- every layer at the mapping the
build searches when nothing is chained (the analytical model's best for energy), storing to and loading from DRAM
-- both simulated (cycles and energy do not depend on the data). Also: the output equals the CPU compile of the same
plan on a seeded random input, the number of edges kept on chip (and why the others are not), and per chained
layer the analytical model (:meth:`AnalyticalModel.estimate_plan`) against the simulator (access counts, cycles).
Writes ``<out>.json`` and ``<out>.md`` with the machine description and the load average at start and end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from tvm_mp.testing.machine import describe_machine, machine_line

COMMAND = "python bench/accel_chain.py"
MODELS = ("resnet8", "mobilenet_v1_025")
BITS = (8, 4)


def study(name: str, bits: int) -> dict:
    import tvm_mp
    from tvm_mp import Precision, PrecisionPlan
    from tvm_mp.accel.mapping import AnalyticalModel, search_mappings
    from tvm_mp.accel.target import AccelKernel
    from tvm_mp.models.builders import BUILDERS

    b = BUILDERS[name]
    mod = tvm_mp.load_onnx(b.build(0), shapes={b.input_name: b.input_shape})
    rng = np.random.default_rng(0)
    calib = [rng.random((2,) + tuple(b.input_shape[1:]), dtype=np.float32)]
    x = rng.random(b.input_shape, dtype=np.float32)
    plan = PrecisionPlan.uniform(mod, Precision(bits, bits))
    start = time.perf_counter()
    accel = tvm_mp.compile(mod, plan=plan, target="accel", calibration=calib)
    build_s = time.perf_counter() - start
    cpu = tvm_mp.compile(mod, plan=plan, target="host", calibration=calib)
    exact = bool(np.array_equal(accel.run(x), cpu.run(x)))
    rt = accel.accel
    chained = rt.profile()
    hw = rt.hw
    unchained = {}
    for n, k in rt.kernels.items():
        s = k.spec
        mapping = search_mappings(s.shape, s.w_bits, s.a_bits, hw, s.output, "energy").best.mapping
        unchained[n] = AccelKernel(replace(s, chain_in=None, mapping=mapping), hw, k.arrays).profile()

    def total(figs):
        return {"cycles": int(sum(r.cycles for r in figs.values())),
                "energy_uj": float(sum(r.energy_uj for r in figs.values())),
                "dram_bytes": float(sum(r.events.dram_bytes for r in figs.values())),
                "dram_uj": float(sum(r.energy.components_uj["dram"] for r in figs.values()))}

    model = AnalyticalModel(hw)
    agreement = []
    for n, k in rt.kernels.items():
        if not k.chained:
            continue
        est, sim = model.estimate_plan(k.plan), chained[n]
        agreement.append({"layer": n, "chain_in": k.spec.chain_in is not None, "chain_out": k.onchip_out is not None,
                          "counts_exact": est.events.counts() == sim.events.counts(),
                          "cycles_model": int(est.cycles), "cycles_sim": int(sim.cycles),
                          "cycle_error": (est.cycles - sim.cycles) / sim.cycles})
    edges = [e.to_dict() for e in rt.edges]
    return {"model": name, "plan": f"w{bits}a{bits}", "bit_exact_vs_cpu": exact, "build_s": build_s,
            "layers": len(rt.kernels), "edges": len(edges), "onchip_edges": sum(e["onchip"] for e in edges),
            "chains": [list(c) for c in rt.chains], "edge_list": edges,
            "chained": total(chained), "unchained": total(unchained), "agreement": agreement}


def markdown(data: dict) -> str:
    lines = [f"# On-chip chaining on the accelerator ({data['hardware']})", "",
             f"`{COMMAND}`. {data['machine'].replace(' (a shared machine: figures are medians of repeats)', '')} "
             "Load average (1 / 5 / 15 min) when the benchmark started: "
             f"{data['load_start']}; when it ended: {data['load_end']}.",
             "Simulated figures (deterministic: cycles and energy do not depend on the data). Without chaining: every "
             "layer at the mapping the build searches when nothing is chained, through DRAM.", "",
             "| model | plan | edges on chip | cycles (no chain) | cycles (chain) | Δ cycles | energy µJ (no chain) | "
             "energy µJ (chain) | Δ energy | DRAM bytes saved | bit-exact vs CPU |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in data["results"]:
        u, c = r["unchained"], r["chained"]
        lines.append(f"| {r['model']} | {r['plan']} | {r['onchip_edges']} of {r['edges']} | {u['cycles']} | "
                     f"{c['cycles']} | {100 * (c['cycles'] / u['cycles'] - 1):+.1f} % | {u['energy_uj']:.2f} | "
                     f"{c['energy_uj']:.2f} | {100 * (c['energy_uj'] / u['energy_uj'] - 1):+.1f} % | "
                     f"{u['dram_bytes'] - c['dram_bytes']:.0f} | {r['bit_exact_vs_cpu']} |")
    lines += ["", "Analytical model vs simulator on the chained layers (access counts exact; cycle error):", "",
              "| model | plan | chained layers | counts exact | max abs cycle error |", "|---|---|---|---|---|"]
    for r in data["results"]:
        a = r["agreement"]
        worst = max((abs(x["cycle_error"]) for x in a), default=0.0)
        lines.append(f"| {r['model']} | {r['plan']} | {len(a)} | {all(x['counts_exact'] for x in a)} | "
                     f"{100 * worst:.1f} % |")
    lines += ["", "Edges not on chip:", ""]
    for r in data["results"]:
        for e in r["edge_list"]:
            if not e["onchip"] and not e["reason"].startswith("CPU ops"):
                lines.append(f"- {r['model']} {r['plan']}: {e['producer']} -> {e['consumer']}: {e['reason']}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/bench_accel_chain", help="output prefix (writes .json, .md)")
    parser.add_argument("--render", action="store_true", help="only rewrite <out>.md from <out>.json")
    args = parser.parse_args(argv)
    if args.render:
        out = Path(args.out)
        out.with_suffix(".md").write_text(markdown(json.loads(out.with_suffix(".json").read_text())))
        return 0
    from tvm_mp.accel.hardware import HardwareConfig

    load_start = " ".join(f"{v:.2f}" for v in os.getloadavg())
    machine = describe_machine()
    results = [study(name, bits) for name in MODELS for bits in BITS]
    data = {"command": COMMAND, "machine": machine_line(machine), "machine_detail": machine,
            "hardware": HardwareConfig.default().name, "load_start": load_start,
            "load_end": " ".join(f"{v:.2f}" for v in os.getloadavg()), "results": results}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(data, indent=1))
    out.with_suffix(".md").write_text(markdown(data))
    print(markdown(data))
    return 0 if all(r["bit_exact_vs_cpu"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
