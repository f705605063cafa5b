"""Whole models for aarch64 under qemu: one inference's emulated instructions and its bit-exactness, now and (with
``--before DIR``, an older tvm_mp checkout) before.

Each model of ``tvm_mp.models.builders`` is compiled at a uniform plan for an aarch64 target (default
``+neon,+dotprod``), its lowered module exported with the cross compiler and run by the bare harness under
``qemu-aarch64 -cpu max`` with tvm-mp's counting plugin (:mod:`tvm_mp.testing.qemu`); the output is compared with
the NumPy reference of the same plan.

    python bench/qemu_models.py [--models digits_cnn,resnet8] [--bits 8,8] [--before /path/to/old/checkout]

Writes ``docs/data/bench_qemu_models.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1] / "docs" / "data"
DOTPROD = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon", "+dotprod"]}


def count(models: list[str], bits: tuple[int, int], target: dict) -> dict:
    import tvm

    import tvm_mp
    from tvm_mp import Precision, PrecisionPlan
    from tvm_mp.models.builders import BUILDERS
    from tvm_mp.targets import parse
    from tvm_mp.testing import qemu

    out = {}
    for name in models:
        b = BUILDERS[name]
        mod = tvm_mp.load_onnx(b.build(0), shapes={b.input_name: b.input_shape})
        rng = np.random.default_rng(0)
        calib = [rng.normal(0, 1, b.input_shape).astype(np.float32) for _ in range(2)]
        cm = tvm_mp.compile(mod, plan=PrecisionPlan.uniform(mod, Precision(*bits)), calibration=calib, target=target)
        tir_mod, program = qemu.model_program(cm.lowered, calib[1])
        with tempfile.TemporaryDirectory() as tmp:
            lib = qemu.export_aarch64(tvm.compile(tir_mod, parse(target).tvm_target), Path(tmp) / "m.so")
            run = qemu.run_program(program, lib, Path(tmp) / "run", count=True)
        out[name] = {"instructions": int(run.instructions),
                     "exact": bool(np.array_equal(run.outputs[0], cm.reference(calib[1]))),
                     "top_mnemonics": dict(list(run.mix.items())[:8])}
        print(f"{name}: {out[name]['instructions']} instructions, exact {out[name]['exact']}", file=sys.stderr,
              flush=True)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="digits_cnn,resnet8")
    parser.add_argument("--bits", default="8,8", help="uniform w_bits,a_bits")
    parser.add_argument("--target", default=json.dumps(DOTPROD), help="aarch64 target (JSON)")
    parser.add_argument("--before", default="", help="an older tvm_mp checkout to count beside (its parent dir)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    models = args.models.split(",")
    bits = tuple(int(b) for b in args.bits.split(","))
    target = json.loads(args.target)
    if args.worker:
        print(json.dumps(count(models, bits, target)))
        return 0
    result = {"command": "python bench/qemu_models.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "date": time.strftime("%Y-%m-%d %H:%M"), "bits": bits, "target": target,
              "now": count(models, bits, target)}
    if args.before:
        env = dict(os.environ, PYTHONPATH=str(Path(args.before).resolve()))
        proc = subprocess.run([sys.executable, __file__, "--worker", "--models", args.models, "--bits", args.bits,
                               "--target", args.target], env=env, capture_output=True, text=True)
        if proc.returncode == 0:
            result["before"] = json.loads(proc.stdout.strip().splitlines()[-1])
        else:
            sys.stderr.write(proc.stderr[-2000:])
    DATA.mkdir(parents=True, exist_ok=True)
    (DATA / "bench_qemu_models.json").write_text(json.dumps(result, indent=1) + "\n")
    for name in models:
        b = result.get("before", {}).get(name, {}).get("instructions")
        n = result["now"][name]["instructions"]
        print(f"{name}: {n} instructions" + (f" (before {b}: {b / n:.2f}x fewer now)" if b else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
