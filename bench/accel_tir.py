"""TIR-driven lowering of the accelerator target vs the Python generator, per model.

Run from the repository root:

    python bench/accel_tir.py [--models resnet8 mobilenet_v1_025] [--precisions w8a8 w4a4]

For each model and uniform precision, in a fresh process (so the intrinsic-description memo starts empty, as in a
real first compile): ``tvm_mp.compile(mod, plan, target="accel")`` (the searched mappings), then per accelerator
layer the instruction stream of :func:`tvm_mp.accel.tir_lower.tir_program` (scheduled, tensorized, built and run
TIR) and of :func:`tvm_mp.accel.lower.lower` (the generator): whether they are equal, the simulator's cycles and
energy of each (zero-point input: the figures do not depend on the data), and the wall time of each lowering
(``tir_lowering_warm_s``: after the compile, so the intrinsic descriptions are already parsed). The compile's wall
time (it includes the TIR lowering: the report simulates every layer) is measured ``--repeat`` times, each in a
fresh process, interleaved with the same compile whose layers use the generator (``compile_gen_s``): the
difference of the medians is the compile time the TIR lowering adds. Prints one JSON line per (model, precision)
and the load average at start and end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np


def one(model: str, precision: str, lowering: str) -> dict:
    import tvm_mp
    import tvm_mp.accel.target
    from tvm_mp import Precision, PrecisionPlan
    from tvm_mp.accel.lower import lower, pack_input
    from tvm_mp.accel.simulator import Simulator
    from tvm_mp.accel.tir_lower import tir_program
    from tvm_mp.models.builders import BUILDERS

    b = BUILDERS[model]
    mod = tvm_mp.load_onnx(b.build(0), shapes={b.input_name: b.input_shape})
    w, a = int(precision[1]), int(precision[3])
    rng = np.random.default_rng(0)
    calib = [rng.random((2,) + tuple(b.input_shape[1:]), dtype=np.float32) for _ in range(2)]
    plan = PrecisionPlan.uniform(mod, Precision(w, a))
    if lowering == "generator":  # this process only: the compile target's layers take lower.lower's stream
        tvm_mp.accel.target.tir_program = lambda plan: lower(plan)
    t0 = time.perf_counter()
    compiled = tvm_mp.compile(mod, plan=plan, target="accel", calibration=calib)
    compile_s = time.perf_counter() - t0
    if lowering == "generator":
        return {"compile_s": compile_s}
    rows, tir_s, gen_s = [], 0.0, 0.0
    for name, k in compiled.accel.kernels.items():
        t = time.perf_counter()
        prog = tir_program(k.plan)
        tir_s += time.perf_counter() - t
        t = time.perf_counter()
        ref = lower(k.plan)
        gen_s += time.perf_counter() - t
        dram, valid = k._image
        dram = dict(dram)
        dram["inp"] = pack_input(k.plan, np.full(k._in_shape, k.spec.zero_point, np.uint8))
        figures = []
        for p in (prog, ref):
            _, res = Simulator(k.hw).run(p, dram, valid)
            figures.append((res.cycles, res.energy_uj))
        rows.append({"layer": name, "mapping": str(k.spec.mapping),
                     "same_stream": prog.instructions == ref.instructions, "tir": figures[0], "generator": figures[1]})
    return {"model": model, "precision": precision, "layers": len(rows),
            "all_same": all(r["same_stream"] for r in rows),
            "cycles_tir": sum(r["tir"][0] for r in rows), "cycles_gen": sum(r["generator"][0] for r in rows),
            "energy_uj_tir": sum(r["tir"][1] for r in rows), "energy_uj_gen": sum(r["generator"][1] for r in rows),
            "tir_lowering_warm_s": round(tir_s, 2), "generator_s": round(gen_s, 3), "compile_s": compile_s,
            "differing": [r for r in rows if not r["same_stream"] or r["tir"] != r["generator"]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["resnet8", "mobilenet_v1_025"])
    ap.add_argument("--precisions", nargs="+", default=["w8a8", "w4a4"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(*args.one)))
        return
    print(f"load average at start: {os.getloadavg()}")
    for model in args.models:
        for precision in args.precisions:
            runs = {"tir": [], "generator": []}
            for _ in range(args.repeat):
                for lowering in runs:  # interleaved
                    out = subprocess.run([sys.executable, __file__, "--one", model, precision, lowering],
                                         capture_output=True, text=True, check=True)
                    runs[lowering].append(json.loads(out.stdout.strip().splitlines()[-1]))
            row = runs["tir"][0]
            row["compile_s"] = round(float(np.median([r["compile_s"] for r in runs["tir"]])), 2)
            row["compile_gen_s"] = round(float(np.median([r["compile_s"] for r in runs["generator"]])), 2)
            row["tir_added_s"] = round(row["compile_s"] - row["compile_gen_s"], 2)
            print(json.dumps(row), flush=True)
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
