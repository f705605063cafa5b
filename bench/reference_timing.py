"""How much the reference kernel steadies host timings.

Times ``--workloads`` random stored host workloads ``--rounds`` times each, minutes apart in total (one round is
every workload once, then a pause), with the reference kernel timed just before and after each timing, and reports
the spread between rounds of each workload's median: raw, and put on one CPU-speed scale
(:func:`tvm_mp.measure.records.normalize_latency`'s rule: time x nominal reference / reference around it).
Writes ``docs/bench_reference_timing.json`` and ``.md``.

    python bench/reference_timing.py [--workloads 30] [--rounds 5] [--pause-s 5]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from tvm_mp.testing.machine import describe_machine, machine_line

ROOT = Path(__file__).resolve().parent.parent
RECORDS = ROOT / "docs" / "data" / "host_kernels.jsonl"
OUT = ROOT / "docs" / "bench_reference_timing"


def main(argv=None) -> int:
    import tvm

    from tvm_mp import _tvm
    from tvm_mp.measure import local
    from tvm_mp.measure.records import NOMINAL_PERCENTILE, load_records
    from tvm_mp.measure.source import TimingConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--pause-s", type=float, default=5.0)
    ap.add_argument("--max-ms", type=float, default=20.0, help="skip stored workloads slower than this")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    machine = describe_machine()
    records = [r for r in load_records(RECORDS, device="host", normalize=False)
               if r.error is None and r.latency_ms < args.max_ms]
    rng = np.random.default_rng(args.seed)
    picked = [records[i] for i in rng.choice(len(records), min(args.workloads, len(records)), replace=False)]
    dev = tvm.cpu()
    timing = TimingConfig(reference=False, max_attempts=1)
    ref = local._Reference(timing, dev)
    kernels = [(local.build(r.workload),
                [_tvm.to_device(a, dev) for a in local.kernel_arguments(r.workload, np.random.default_rng(0))])
               for r in picked]
    raw = np.zeros((len(picked), args.rounds))
    refs = np.zeros_like(raw)
    start = time.monotonic()
    for rnd in range(args.rounds):
        for i, (module, arrays) in enumerate(kernels):
            before = ref.time_ms()
            samples, _ = local.time_function(module, dev, arrays, timing)
            refs[i, rnd] = np.sqrt(before * ref.time_ms())
            raw[i, rnd] = np.median(samples)
        time.sleep(args.pause_s)
    nominal = float(np.percentile(refs, NOMINAL_PERCENTILE))  # the rule of normalize_latency
    scaled = raw * nominal / refs

    def spread(x):
        return {"cv_mean": float((x.std(1) / x.mean(1)).mean()),
                "max_over_min_mean": float((x.max(1) / x.min(1)).mean())}

    result = {"command": "python bench/reference_timing.py " + " ".join(argv or []), "machine": machine,
              "workloads": len(picked), "rounds": args.rounds, "seconds": time.monotonic() - start,
              "reference_over_fastest": {"median": float(np.median(refs / refs.min())),
                                         "share_above_5pct": float((refs > 1.05 * refs.min()).mean()),
                                         "max": float((refs / refs.min()).max())},
              "raw": spread(raw), "normalized": spread(scaled)}
    OUT.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    r, n, ro = result["raw"], result["normalized"], result["reference_over_fastest"]
    lines = ["# Host timing: raw vs reference-normalized", "",
             f"Command: `{result['command'].strip()}` ({result['seconds']:.0f} s). {machine_line(machine)}", "",
             f"{result['workloads']} stored workloads, {result['rounds']} rounds each (every workload once per round, "
             f"{args.pause_s:.0f} s pause between rounds), thread CPU clock.", "",
             "| timings | mean coefficient of variation between rounds | mean max / min between rounds |",
             "|---|---|---|",
             f"| raw | {100 * r['cv_mean']:.1f} % | {r['max_over_min_mean']:.3f} |",
             f"| normalized by the reference kernel | {100 * n['cv_mean']:.1f} % | {n['max_over_min_mean']:.3f} |", "",
             f"The reference kernel ran a median {ro['median']:.2f}x its fastest time (above 1.05x in "
             f"{100 * ro['share_above_5pct']:.0f} % of the timings, at most {ro['max']:.2f}x).", ""]
    OUT.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
