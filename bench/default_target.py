"""The default target against TVM's generic ``"llvm"``: whole models, one thread, interleaved rounds.

Before the compile driver, ``tvm_mp.compile`` defaulted to ``target="llvm"`` (a generic CPU: no AVX2/AVX-512
codegen); now the default is this machine with its CPU named. For each builder model and plan this compiles both,
checks both bit-exact against the NumPy reference, and times them round-robin (the figure is the median round).

    python bench/default_target.py [--models resnet8,mobilenet_v1_025] [--plans w8a8,w2a2] [--rounds 7]

Writes ``docs/data/bench_default_target.json`` and ``docs/bench_default_target.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def run(models: list[str], plans: list[str], rounds: int, number: int) -> dict:
    import tvm_mp
    from tvm_mp import Precision, PrecisionPlan
    from tvm_mp.models.builders import BUILDERS
    from tvm_mp.testing.machine import describe_machine

    rows = []
    for name in models:
        b = BUILDERS[name]
        mod = tvm_mp.load_onnx(b.build(0), shapes={b.input_name: tuple(b.input_shape)})
        rng = np.random.default_rng(0)
        calib = [rng.normal(0, 1, b.input_shape).astype(np.float32) for _ in range(4)]
        x = calib[0]
        for text in plans:
            plan = PrecisionPlan.uniform(mod, Precision.parse(text))
            built = {}
            for label, target in (("llvm (generic)", "llvm"), ("default (host)", None)):
                cm = tvm_mp.compile(mod, plan=plan, target=target, calibration=calib)
                if not np.array_equal(cm.run(x), cm.reference(x)):
                    raise SystemExit(f"{name} {text} {label}: differs from the NumPy reference")
                built[label] = cm
            times = {label: [] for label in built}
            for _ in range(rounds):
                for label, cm in built.items():
                    start = time.perf_counter()
                    for _ in range(number):
                        cm.run(x)
                    times[label].append((time.perf_counter() - start) * 1e3 / number)
            med = {label: statistics.median(v) for label, v in times.items()}
            rows.append({"model": name, "plan": text, "llvm_ms": med["llvm (generic)"],
                         "default_ms": med["default (host)"],
                         "speedup": med["llvm (generic)"] / med["default (host)"]})
            print(f"{name:<18} {text:<5} llvm {rows[-1]['llvm_ms']:.3f} ms  default {rows[-1]['default_ms']:.3f} ms  "
                  f"x{rows[-1]['speedup']:.1f}", flush=True)
    return {"machine": describe_machine(), "rounds": rounds, "number": number, "rows": rows}


def markdown(result: dict) -> str:
    from tvm_mp.testing.machine import machine_line

    lines = ["# Default target vs generic `llvm`", "",
             "Command: `python bench/default_target.py`. One TVM thread, batch 1, median of interleaved rounds; "
             "both builds bit-exact against the NumPy reference.", "", machine_line(result["machine"]), "",
             "| model | plan | `llvm` (ms) | default (ms) | speed-up |", "| --- | --- | ---: | ---: | ---: |"]
    for r in result["rows"]:
        lines.append(f"| {r['model']} | {r['plan']} | {r['llvm_ms']:.3f} | {r['default_ms']:.3f} | "
                     f"{r['speedup']:.1f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet8,mobilenet_v1_025,ds_cnn")
    parser.add_argument("--plans", default="w8a8,w2a2")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("TVM_NUM_THREADS", "1")
    result = run(args.models.split(","), args.plans.split(","), args.rounds, args.number)
    (ROOT / "docs" / "data").mkdir(parents=True, exist_ok=True)
    (ROOT / "docs" / "data" / "bench_default_target.json").write_text(json.dumps(result, indent=1))
    (ROOT / "docs" / "bench_default_target.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
