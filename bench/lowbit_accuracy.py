"""Low-bit post-training quantization on the real-model corpus: which training-free method helps, measured.

Models: ``cls`` (PP-OCR text-orientation classifier, 54 layers; top-1 on rendered digit strings, every second
one turned by 180 degrees) and ``rec`` (PP-OCRv4 recognizer at 3x48x64; exact-string accuracy of greedy CTC
decoding of rendered 2-digit strings), optionally ``digits`` (the bundled 4-layer digits CNN, top-1 on its
held-out split of 360 images, calibrated on ``calibration_batches(8, 32)`` as the tests do; plans w4a4 down to
w2a2). 16 images calibrate (seed 1); the metric is taken on
``--samples`` held-out images (seed 11) never seen by calibration.

Besides the task metric (which moves in steps of 1 point per 100 samples: a few points are sampling noise), each
plan's output fidelity to fp32 on the same samples is given as SQNR in dB (the network's output probabilities),
a far less noisy ranking. Each *variant* is one calibration configuration (activation-range method, bias
correction, cross-layer equalization of the fp32 graph before calibration); for each, uniform w8a8, w4a8 and
w4a4 plans are scored on the NumPy reference (``PlanEvaluator``, bit-exact with the compiled integer kernels).
Calibration time (including equalization) is reported per variant; variants run in the order listed, one
model after another.

    python bench/lowbit_accuracy.py [--models cls,rec] [--samples 100] [--variants base,bc_full,...]

Writes ``docs/lowbit_accuracy.json`` and the tables of ``docs/lowbit_accuracy.md`` (between the markers).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from tvm_mp.testing.machine import describe_machine, machine_line

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
COMMAND = "python bench/lowbit_accuracy.py"
PLANS = ("w8a8", "w4a8", "w4a4")
#: The digits CNN (4 layers, 360 held-out images) holds up to lower bit-widths: its plans go further down.
DIGITS_PLANS = ("w4a4", "w3a3", "w2a4", "w2a2")
#: name -> (activation-range method, bias correction, equalize, GPTQ statistics), what the variant switches on.
VARIANTS = {
    "minmax": ("minmax", "off", False, True),
    "percentile": ("percentile", "off", False, True),
    "base": ("mse", "off", False, True),
    "no_gptq": ("mse", "off", False, False),
    "bc_weights": ("mse", "weights", False, True),
    "bc_full": ("mse", "full", False, True),
    "cle": ("mse", "off", True, True),
    "cle_bc_full": ("mse", "full", True, True),
    "minmax_bc_full": ("minmax", "full", False, True),
}
DESCRIBE = {
    "minmax": "activation ranges min/max (no range search), GPTQ, no bias correction",
    "percentile": "activation ranges at the 99.99th percentile (no range search), GPTQ, no bias correction",
    "base": "activation-range search (clipped-MSE per layer and bit-width), GPTQ rounding, no bias correction",
    "no_gptq": "as base, weights rounded to nearest (no GPTQ)",
    "bc_weights": "base + bias correction of the weights' rounding shift",
    "bc_full": "base + bias correction of the weights' and the input quantizer's shift (default)",
    "cle": "base on the cross-layer-equalized graph",
    "cle_bc_full": "bc_full on the cross-layer-equalized graph",
    "minmax_bc_full": "min/max activation ranges + bias correction (full)",
}


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def rec_characters() -> list[str]:
    """The recognizer's character list (stored in the ONNX file's metadata; index 0 of the output is the blank)."""
    import onnx

    from tvm_mp.testing import corpus

    m = onnx.load(str(corpus.model("rec").path), load_external_data=False)
    chars = next(p.value for p in m.metadata_props if p.key == "character").splitlines()
    return ["<blank>"] + chars + [" "]


def ctc_greedy(probs: np.ndarray, chars: list[str]) -> list[str]:
    out = []
    for seq in np.asarray(probs).argmax(axis=-1):
        text, prev = [], -1
        for i in seq:
            if i != prev and i != 0:
                text.append(chars[i])
            prev = i
        out.append("".join(text))
    return out


class Task:
    def __init__(self, name: str, samples: int):
        from tvm_mp.frontend import canonicalize

        self.name = name
        self.plans = DIGITS_PLANS if name == "digits" else PLANS
        start = time.perf_counter()
        if name == "digits":
            import tvm_mp
            from tvm_mp.datasets import calibration_batches, load_digits_split
            from tvm_mp.models import digits_cnn_path

            self.mod = canonicalize(tvm_mp.load_onnx(digits_cnn_path(), shapes={"input": (1, 1, 8, 8)}))
            split = load_digits_split()
            self.calibration = calibration_batches(8, 32)
            self.x, self.labels = split.x_test, split.y_test
        else:
            from tvm_mp.testing import corpus

            mod, model = corpus.load(name)
            self.mod = canonicalize(mod)
            shape = model.shapes["x"]
            rotate = name == "cls"
            images, _ = corpus.text_images(16, shape, seed=1, rotate=rotate)
            self.calibration = [images[:8], images[8:]]
            self.x, self.strings = corpus.text_images(samples, shape, seed=11, rotate=rotate)
            self.labels = np.arange(len(self.x)) % 2
        self.load_seconds = time.perf_counter() - start
        self.chars = rec_characters() if name == "rec" else None
        self.fp32_out = None
        self.metric = {"cls": "top-1", "digits": "top-1", "rec": "exact string",
                       "det": "pixel agreement with fp32 (p > 0.3)"}[name]

    def score(self, out: np.ndarray) -> float:
        if self.name in ("cls", "digits"):
            return float(np.mean(np.asarray(out).reshape(len(self.x), -1).argmax(axis=1) == self.labels))
        if self.name == "rec":
            return float(np.mean([a == b for a, b in zip(ctc_greedy(out, self.chars), self.strings)]))
        return float(np.mean((np.asarray(out) > 0.3) == (self.fp32_out > 0.3)))


def run_variant(task: Task, variant: str) -> dict:
    from tvm_mp import Precision, PrecisionPlan
    from tvm_mp.quantize.calibrate import calibrate
    from tvm_mp.quantize.equalize import equalize
    from tvm_mp.search.accuracy import PlanEvaluator

    method, bc, cle, stats = VARIANTS[variant]
    load = load_average()
    start = time.perf_counter()
    mod, pairs = equalize(task.mod) if cle else (task.mod, 0)
    ranges = calibrate(mod, task.calibration, method, statistics=stats, bias_correction=bc)
    calib_s = time.perf_counter() - start
    ev = PlanEvaluator(mod, ranges)
    row = {"variant": variant, "calibration_s": round(calib_s, 1), "load_before": load, "pairs_equalized": pairs}
    if cle:  # the equalized fp32 network computes the same function
        from tvm_mp.quantize.interpreter import Interpreter

        diff = np.abs(np.asarray(Interpreter(mod).run([task.x]), np.float64) - task.fp32_out).max()
        row["cle_fp32_max_abs_diff"] = float(diff)
        log(f"  equalized fp32 vs original: max |diff| {diff:.2e} (output max {np.abs(task.fp32_out).max():.2e})")
    for name in task.plans:
        t = time.perf_counter()
        plan = PrecisionPlan.uniform(mod, Precision.parse(name))
        out = ev.run(plan, [task.x])
        row[name] = task.score(out)
        noise = float(np.sum((np.asarray(out, np.float64) - task.fp32_out) ** 2))
        row[name + "_sqnr_db"] = round(10 * np.log10(float(np.sum(task.fp32_out ** 2)) / max(noise, 1e-30)), 2)
        row[name + "_eval_s"] = round(time.perf_counter() - t, 1)
    row["load_after"] = load_average()
    log(f"  {task.name} {variant}: calib {calib_s:.1f} s" + "".join(f", {p} {row[p]:.2f} ({row[p + '_sqnr_db']} dB)"
                                                                   for p in task.plans))
    return row


def markdown(results: dict, meta: dict) -> str:
    lines = []
    for name, res in results.items():
        runs = res.get("runs", [res.get("meta", meta)])
        plans = res.get("plans", PLANS)
        lines += [f"### {name} ({res['metric']}; fp32 {res['fp32']:.3f}; model loaded and canonicalized in "
                  f"{res['load_s']:.0f} s)", "", f"{runs[0]['machine'].rstrip('.')}. Held-out samples: "
                  f"{res.get('samples', '?')}. "
                  + " ".join(f"Run: `{m['command']}` (load average at start {m['load_start']}, at end "
                             f"{m.get('load_end')})." for m in runs), "",
                  "| variant | " + " | ".join(plans) + " | SQNR dB " + " / ".join(plans)
                  + " | calibration s | what it is |", "|---" * (len(plans) + 4) + "|"]
        for row in res["rows"]:
            extra = (f" ({row['pairs_equalized']} conv pairs; fp32 output max abs change "
                     f"{row['cle_fp32_max_abs_diff']:.1e})") if row["pairs_equalized"] else ""
            sqnr = " / ".join(f"{row[p + '_sqnr_db']:.1f}" for p in plans)
            lines.append(f"| {row['variant']} | " + " | ".join(f"{row[p]:.3f}" for p in plans) + f" | {sqnr} | "
                         f"{row['calibration_s']:.1f} | {DESCRIBE[row['variant']]}{extra} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="cls,rec")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    from tvm_mp.quantize.interpreter import Interpreter

    meta = {"machine": machine_line(describe_machine()),
            "command": COMMAND + (" " + " ".join(argv or sys.argv[1:])).rstrip(),
            "samples": args.samples, "load_start": load_average()}
    results = {}
    for name in args.models.split(","):
        task = Task(name, args.samples)
        log(f"{name}: loaded in {task.load_seconds:.0f} s")
        task.fp32_out = np.asarray(Interpreter(task.mod).run([task.x]), np.float64)
        res = {"metric": task.metric, "fp32": task.score(task.fp32_out), "load_s": task.load_seconds, "rows": [],
               "plans": list(task.plans), "samples": len(task.x), "meta": meta}
        results[name] = res
        for variant in args.variants.split(","):
            res["rows"].append(run_variant(task, variant))
            meta["load_end"] = load_average()
            if not args.no_write:  # after every variant: a stopped run keeps what it measured
                write(results, meta)
    print(markdown(results, meta))


def write(results: dict, meta: dict) -> None:
    """Merge ``results`` into ``docs/lowbit_accuracy.json`` (other models' earlier results stay) and rewrite the
    tables of ``docs/lowbit_accuracy.md`` from it."""
    path = DOCS / "lowbit_accuracy.json"
    old = json.loads(path.read_text()) if path.exists() else {"results": {}}
    merged = dict(old["results"])
    for name, res in results.items():  # rows merge by variant: a later run adds variants or measures one again
        prev = merged.get(name)
        if prev is None:
            merged[name] = res
            continue
        rows = {r["variant"]: r for r in prev["rows"]}
        rows.update({r["variant"]: r for r in res["rows"]})
        runs = prev.get("runs", [prev["meta"]])
        runs = runs if any(r["command"] == res["meta"]["command"] and r["load_start"] == res["meta"]["load_start"]
                           for r in runs) else runs + [res["meta"]]
        merged[name] = {**res, "rows": list(rows.values()), "runs": runs}
    path.write_text(json.dumps({"results": merged}, indent=1) + "\n")
    text = markdown(merged, meta)
    doc = DOCS / "lowbit_accuracy.md"
    begin, end = "<!-- results begin -->", "<!-- results end -->"
    old_doc = doc.read_text() if doc.exists() else f"# Low-bit accuracy\n\n{begin}\n{end}\n"
    head, rest = old_doc.split(begin, 1)
    doc.write_text(head + begin + "\n" + text + "\n" + end + rest.split(end, 1)[1])

if __name__ == "__main__":
    main()
