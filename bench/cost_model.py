"""Cost model throughput: batch predictions per second vs the time one real measurement takes.

Run from the repository root:

    python bench/cost_model.py [--n 10000] [--out docs/bench_cost_model]

Predicts latency and energy for ``n`` layer configurations (every layer of the five benchmark models and random
layers, at every bit-width pair and both kernel kinds) with the shipped XGBoost model and the analytical model,
in one batch (best of several runs; the first run, which also reads the kernels' per-structure templates from
their TIR, is reported separately). Then measures a few real layer configurations on this host (build + time
with the default timing settings). Writes ``<out>.json`` and ``<out>.md`` with the machine description.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from tvm_mp.testing.machine import describe_machine, machine_line

COMMAND = "python bench/cost_model.py --n 10000"


def configurations(n: int, seed: int = 0):
    from tvm_mp.measure.collect import layer_workload, model_layer_shapes, random_layer_shapes

    rng = np.random.default_rng(seed)
    shapes = model_layer_shapes() + random_layer_shapes(rng, 200)
    out = []
    while len(out) < n:
        for shape in shapes:
            for w_bits in range(1, 9):
                for a_bits in range(1, 9):
                    for kind in ("bitserial", "packed"):
                        out.append(layer_workload(shape, w_bits, a_bits, kind, "requant"))
                        if len(out) == n:
                            return out
    return out


def time_predict(model, workloads, runs: int = 5) -> tuple[float, float]:
    start = time.perf_counter()
    model.predict(workloads)
    first = time.perf_counter() - start
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        est = model.predict(workloads)
        best = min(best, time.perf_counter() - start)
    assert len(est) == len(workloads)
    return first, best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=Path("docs/bench_cost_model"))
    args = parser.parse_args(argv)

    from tvm_mp.cost_models.analytical import AnalyticalModel
    from tvm_mp.cost_models.xgb import XGBCostModel
    from tvm_mp.measure.local import LocalSource

    workloads = configurations(args.n)
    xgb_model = XGBCostModel.default()
    analytical = AnalyticalModel.from_dict(xgb_model.prior.to_dict())
    results = {"n": len(workloads)}
    for name, model in (("xgboost (default model)", xgb_model), ("analytical (calibrated)", analytical)):
        first, best = time_predict(model, workloads)
        results[name] = {"first_batch_s": first, "best_batch_s": best, "configs_per_s": len(workloads) / best}
        print(f"{name}: {len(workloads)} configurations in {best * 1e3:.1f} ms "
              f"({len(workloads) / best:,.0f}/s; first batch {first:.2f} s)")

    samples = [w for w in workloads if w.op == "conv2d" and w.w_bits in (2, 4) and w.a_bits == w.w_bits][:4]
    source = LocalSource()
    times = []
    for wl in samples:
        start = time.perf_counter()
        rec = source.measure([wl])[0]
        times.append({"workload": str(wl), "seconds": time.perf_counter() - start, "latency_ms": rec.latency_ms})
        print(f"measured {wl}: {times[-1]['seconds']:.2f} s for a {rec.latency_ms:.3f} ms kernel")
    results["one_measurement_s"] = {"median": float(np.median([t["seconds"] for t in times])), "samples": times}
    speedup = results["one_measurement_s"]["median"] * results["xgboost (default model)"]["configs_per_s"]
    results["predictions_per_measurement"] = speedup
    results["machine"] = describe_machine(packages=("apache-tvm", "numpy", "xgboost-cpu"))
    results["command"] = COMMAND

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    m = results["machine"]
    lines = [
        "# Cost model throughput",
        "",
        f"Command: `{COMMAND}` (from the repository root).",
        "",
        machine_line(m),
        "",
        "| what | batch of %d | per second | first batch (incl. reading kernel templates) |" % len(workloads),
        "|---|---|---|---|",
    ]
    for name in ("xgboost (default model)", "analytical (calibrated)"):
        r = results[name]
        lines.append(f"| {name} predict | {r['best_batch_s'] * 1e3:.1f} ms | {r['configs_per_s']:,.0f} | "
                     f"{r['first_batch_s']:.2f} s |")
    lines.append(f"| one real measurement (build + time, median of {len(times)}) | "
                 f"{results['one_measurement_s']['median']:.2f} s | "
                 f"{1 / results['one_measurement_s']['median']:.2f} | |")
    lines += ["", f"One real measurement costs as much time as about {speedup:,.0f} XGBoost predictions.", ""]
    args.out.with_suffix(".md").write_text("\n".join(lines))
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
