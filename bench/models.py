"""Whole-model benchmark: tvm-mp uniform plans vs onnxruntime (fp32, static QDQ int8) and TVM's fp32 default pipeline.

Models: ResNet-8, DS-CNN, MobileNetV1-0.25 and the digits CNN (``tvm_mp.models.builders``), batch 1, latency per
inference, with one and with two threads (onnxruntime ``intra_op_num_threads``; TVM ``TVM_NUM_THREADS``, set per
worker process before TVM starts its thread pool). Both runtimes' pools are set not to spin between calls
(``session.intra_op.allow_spinning=0``, ``TVM_THREAD_POOL_SPIN_COUNT=0``): with spinning, the two pools in one
process steal the two cores from each other and the 2-thread figures mostly measure that. Within a worker all variants
are timed round-robin in the same
Python loop (see ``bench/kernels.py``); the figure is the median round. tvm-mp variants are compiled for
``target="host"`` and checked bit-exact against the NumPy reference before timing.

    python bench/models.py [--models resnet8,...] [--repeats 11] [--threads 1,2] [--variants ...] [--cache DIR]
        [--out bench_models_<name>.json]

``--cache DIR`` keeps each tvm-mp build (exported) so the 2-thread worker loads what the 1-thread worker compiled
(ImageNet-scale models take minutes to compile). The 224x224 builders (``resnet18``, ``mobilenet_v2_10``) are
rendered from ``--out bench_models_<name>.json``.

Writes ``docs/data/bench_models.json`` and regenerates ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _kernels_bench():
    spec = importlib.util.spec_from_file_location("tvm_mp_bench_kernels", HERE / "kernels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def times_ms(result: dict) -> dict:
    """The wall times (ms) of one model's result, without its CPU times."""
    return {k: v for k, v in result.items() if k != "cpu_ms"}


def _tvm_mp_runner(kb, mod, calib, bits, name: str, variant: str, cache: str):
    """The VM of one tvm-mp variant: compiled (and checked bit-exact by ``kb.tvm_mp_vm``), or with ``cache`` read
    back from the export the first worker wrote there (the 2-thread worker reuses the 1-thread worker's build:
    ImageNet-scale models take minutes to compile)."""
    import tvm_mp
    from tvm_mp import _tvm

    path = Path(cache) / f"{name}_{variant}" if cache else None
    if path is not None and (path / "model.so").exists():
        return _tvm.vm(tvm_mp.load(path).executable)
    vm, cm = kb.tvm_mp_vm(mod, calib, *bits, "host")
    if path is not None:
        cm.export(path)
    return vm


def worker(models: list[str], threads: int, repeats: int, variants: str = "", cache: str = "") -> dict:
    """Time every variant of every model in this process (``TVM_NUM_THREADS`` already set)."""
    import tvm_mp
    from tvm_mp.models.builders import BUILDERS

    kb = _kernels_bench()
    results = {}
    for name in models:
        b = BUILDERS[name]
        model = b.build(0)
        shape = tuple(b.input_shape)
        calib = kb.calibration_inputs(shape, n=4, seed=1)
        x = calib[0]
        mod = tvm_mp.load_onnx(model, shapes={b.input_name: shape})
        runners = dict(kb.ort_sessions(model, calib, threads=threads,
                                       reduce_range="ort_int8_rr" in variants.split(",")))
        if not variants or "tvm_fp32" in variants.split(","):
            runners["tvm_fp32"] = kb.tvm_fp32_vm(mod, kb.parse("host").tvm_target)  # (a Target: "host" is no TVM kind)
        for variant, (w, a, kind) in kb.ALL_VARIANTS.items():
            if (variants and variant not in variants.split(",")) or (not variants and variant not in
                                                                     kb.TVM_MP_VARIANTS):
                continue
            runners[variant] = _tvm_mp_runner(kb, mod, calib, (w, a, kind), name, variant, cache)
        cpu: dict = {}
        times = kb.interleaved_median_us({k: kb.make_callable(k, r, x) for k, r in runners.items()}, repeats,
                                         target_s=0.02, cpu_out=cpu)
        results[name] = {k: v / 1e3 for k, v in times.items()}  # ms
        if variants:  # (the default run keeps its JSON layout)
            results[name]["cpu_ms"] = {k: v / 1e3 for k, v in cpu.items()}
        print(f"{threads} thread(s) {name}: " + " ".join(f"{k}={v:.3f}" for k, v in times_ms(results[name]).items()),
              file=sys.stderr, flush=True)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet8,ds_cnn,mobilenet_v1_025,digits_cnn")
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--variants", default="",
                        help="tvm-mp variants (names of bench/kernels.py; tvm_fp32 too) instead of all")
    parser.add_argument("--out", default="bench_models.json", help="JSON file under docs/data")
    parser.add_argument("--cache", default="", help="directory keeping the tvm-mp builds between the thread counts")
    parser.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    models = args.models.split(",")
    if args.worker:
        print(json.dumps(worker(models, args.worker, args.repeats, args.variants, args.cache)))
        return 0
    kb = _kernels_bench()
    load_start = os.getloadavg()
    threads = [int(t) for t in args.threads.split(",")]
    per_thread = {}
    for t in threads:
        # no spinning thread pools: onnxruntime's and TVM's pools share this process and the two cores
        env = dict(os.environ, TVM_NUM_THREADS=str(t), TVM_THREAD_POOL_SPIN_COUNT="0")
        proc = subprocess.run([sys.executable, __file__, "--models", args.models, "--repeats", str(args.repeats),
                               "--worker", str(t), "--variants", args.variants, "--cache", args.cache], env=env,
                              capture_output=True, text=True)
        sys.stderr.write(proc.stderr)
        if proc.returncode:
            return proc.returncode
        per_thread[t] = json.loads(proc.stdout.strip().splitlines()[-1])
    variants = [k for k in next(iter(per_thread[threads[0]].values())) if k != "cpu_ms"]
    results = {m: {str(t): per_thread[t][m] for t in threads} for m in models}
    out = {"command": "python bench/models.py " + " ".join(a for a in (argv or sys.argv[1:])),
           "date": time.strftime("%Y-%m-%d"), "machine": kb.machine_description(), "repeats": args.repeats,
           "threads": threads, "variants": variants, "results": results, "load_start": load_start,
           "load_end": os.getloadavg()}
    kb.DATA.mkdir(parents=True, exist_ok=True)
    (kb.DATA / args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {kb.write_markdown()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
