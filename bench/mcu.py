"""Virtual quantization on an emulated Cortex-M: code size, weight memory and instructions per inference, 8-bit vs n.

For each weight width n (8 = the int8 baseline, then 7..1; activations stay 8-bit codes, every layer in the same
format) the digits CNN is quantized (calibration on training images), emitted as C (:mod:`tvm_mp.mcu`), built with
``arm-none-eabi-gcc -O2`` for the MPS2 AN385 board (Cortex-M3, software float) and run under ``qemu-system-arm``:

* once on the whole test split (360 images, no tracing): every output is checked bit for bit against the NumPy
  reference of the plan on the device and again in Python; top-1 accuracy is that of the device's outputs;
* once on ``--samples`` test images with instruction counting (QEMU ``-d in_asm,exec,nochain``, see
  ``tvm_mp/mcu/runner.py``): instructions per inference, per network step (kernel functions plus the library
  helpers they call), divided by the number of samples.

Code size is from the ELF: ``arm-none-eabi-size -A`` (sections) and ``arm-none-eabi-nm -S`` (bytes per step
function). Weight memory is the packed weight arrays (32-bit words unless said); per-channel constants
(bias correction, multiplier, shift or scale) are given apart. A word-size sweep (8/16/32-bit words), the DS-CNN
keyword-spotting model (untrained weights, random inputs, so no accuracy) and a Cortex-M4 (AN386, FPU) row follow.

    python bench/mcu.py [--samples 3] [--quick]

Writes ``docs/data/mcu.json`` and the results section of ``docs/mcu.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from tvm_mp.testing.machine import describe_machine, machine_line

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "mcu.md"
DATA = ROOT / "docs" / "data" / "mcu.json"
START, END = "<!-- results:start -->", "<!-- results:end -->"
WIDTHS = (8, 7, 6, 5, 4, 3, 2, 1)


def machine() -> dict:
    return describe_machine(packages=("numpy",), tools={"arm-none-eabi-gcc": ["arm-none-eabi-gcc", "--version"],
                                                        "qemu-system-arm": ["qemu-system-arm", "--version"]},
                            tvm_runtime=False)


def load(name):
    import tvm_mp
    from tvm_mp.models.builders import BUILDERS

    b = BUILDERS[name]
    return tvm_mp.load_onnx(b.build(0), shapes={b.input_name: b.input_shape})


def quantize(mod, w_bits: int, calib):
    from tvm_mp import Precision, PrecisionPlan
    from tvm_mp.driver import quantize as quantize_plan

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_plan(mod, PrecisionPlan.uniform(mod, Precision(w_bits, 8)), calibration=calib)


def measure(q, xs, word_bits: int = 32, target: str = "cortex-m3", workdir: Path | None = None) -> dict:
    """Counted run on ``xs``: sizes, per-step instructions per inference, exactness."""
    from tvm_mp.mcu import run_network

    t0 = time.perf_counter()
    res = run_network(q, xs, word_bits=word_bits, target=target, workdir=workdir, timeout_s=1800,
                      count_instructions=True)
    wall = time.perf_counter() - t0
    if not res.ok:
        raise SystemExit(f"not bit-exact: {res.failures()}")
    net, fw = res.network, res.firmware
    fns = [s.fn for s in net.steps]
    regions = res.run.region_instructions(fns, parents=("net_run", "main"))
    per = len(xs)
    steps = []
    for s in net.steps:
        row = {"fn": s.fn, "kind": s.kind, "insns": regions[s.fn] / per, "code_bytes": fw.symbols.get(s.fn, 0)}
        if s.layer is not None:
            lay = s.layer
            row.update(layer=lay.name, macs=lay.macs, weight_bytes=lay.weight_bytes, param_bytes=lay.param_bytes,
                       w_bits=lay.fmt.w_bits, word_bits=lay.fmt.word_bits)
        steps.append(row)
    net_insns = (sum(regions[f] for f in fns) + regions.get("net_run", 0)) / per
    return {"exact": True, "samples": per, "insns_per_inference": net_insns,
            "insns_total_run": res.run.instructions, "sections": {k: v for k, v in fw.sections.items()
                                                                  if k in (".text", ".rodata", ".data", ".bss")},
            "net_code_bytes": sum(fw.symbols.get(f, 0) for f in fns) + fw.symbols.get("net_run", 0),
            "weight_bytes": net.weight_bytes, "param_bytes": sum(lay.param_bytes for lay in net.layers),
            "arena_bytes": net.arena_bytes, "steps": steps, "wall_s": wall}


def device_accuracy(q, xs, ys, workdir: Path | None = None) -> dict:
    """All test images on the device (no tracing): bit-exact check and top-1 of the device's outputs."""
    from tvm_mp.mcu import run_network

    res = run_network(q, xs, workdir=workdir, timeout_s=600)
    if not res.ok:
        raise SystemExit(f"not bit-exact on the test split: {res.failures()[:3]}")
    preds = np.array([o.reshape(-1).argmax() for o in res.outputs])
    return {"top1": float((preds == ys).mean()), "exact_images": len(xs)}


def run(samples: int, quick: bool) -> dict:
    from tvm_mp.datasets import calibration_batches, load_digits_split
    from tvm_mp.quantize.interpreter import Interpreter

    digits = load_digits_split()
    calib = calibration_batches(4, 32)
    mod = load("digits_cnn")
    fp32 = np.concatenate([Interpreter(mod).run([digits.x_test[i: i + 60]]) for i in range(0, 360, 60)])
    res = {"machine": machine(), "command": "python bench/mcu.py" + (" --quick" if quick else "")
           + (f" --samples {samples}" if samples != 3 else ""),
           "fp32_top1_numpy": float((fp32.argmax(axis=1) == digits.y_test).mean()), "digits": {}, "words": [],
           "ds_cnn": {}, "cortex_m4": {}}
    xs_all = [x[None] for x in digits.x_test]
    xs = xs_all[:samples]
    with tempfile.TemporaryDirectory(prefix="bench_mcu_") as tmp:
        tmpdir = Path(tmp)
        quantized = {}
        for n in WIDTHS:
            t0 = time.perf_counter()
            q = quantized[n] = quantize(mod, n, calib)
            row = measure(q, xs, workdir=tmpdir / f"d{n}")
            row.update(device_accuracy(q, xs_all, digits.y_test, workdir=tmpdir / f"a{n}"))
            res["digits"][n] = row
            print(f"digits w{n}a8: {row['insns_per_inference']:.0f} insns/inference, {row['weight_bytes']} B "
                  f"weights, top-1 {row['top1']:.4f} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
        for n in ((4, 2) if quick else (7, 6, 5, 4, 3, 2, 1)):
            for word in (8, 16, 32):
                m = measure(quantized[n], xs[:1], word_bits=word, workdir=tmpdir / f"w{n}_{word}")
                res["words"].append({"w_bits": n, "word_bits": word, "weight_bytes": m["weight_bytes"],
                                     "insns_per_inference": m["insns_per_inference"],
                                     "net_code_bytes": m["net_code_bytes"]})
        for n in (8, 4):
            res["cortex_m4"][n] = measure(quantized[n], xs[:1], target="cortex-m4", workdir=tmpdir / f"m4_{n}")
        ds = load("ds_cnn")
        rng = np.random.default_rng(0)
        ds_calib = [rng.normal(size=(1, 1, 49, 10)).astype(np.float32) for _ in range(4)]
        ds_x = [rng.normal(size=(1, 1, 49, 10)).astype(np.float32)]
        for n in ((8, 4, 2) if quick else WIDTHS):
            t0 = time.perf_counter()
            res["ds_cnn"][n] = measure(quantize(ds, n, ds_calib), ds_x, workdir=tmpdir / f"ds{n}")
            print(f"ds_cnn w{n}a8: {res['ds_cnn'][n]['insns_per_inference']:.0f} insns/inference "
                  f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return res


def _ratio(a, b) -> str:
    return f"{a / b:.3f}" if b else "n/a"


def markdown(res: dict) -> str:
    d = res["digits"]
    base = d[8]
    m = res["machine"]
    lines = [START, "", "## Results", "",
             f"Measured with `{res['command']}`. {machine_line(m)} "
             "Instruction counts are exact dynamic counts of the emulated Cortex-M3 (deterministic; not cycles, "
             "not time). Every configuration below was checked bit-exact against the NumPy reference.", "",
             "### Digits CNN on Cortex-M3 (MPS2 AN385), weights n bits in 32-bit words, 8-bit activations", "",
             f"fp32 top-1 (NumPy): {res['fp32_top1_numpy']:.4f}. Top-1 below is of the device's own outputs on the "
             f"360 test images (all bit-exact).", "",
             "| n | weight bytes | vs 8-bit | per-channel bytes | net code bytes | firmware .text | "
             "instructions / inference | vs 8-bit | top-1 (device) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for n, r in d.items():
        lines.append(f"| {n} | {r['weight_bytes']} | {_ratio(r['weight_bytes'], base['weight_bytes'])} | "
                     f"{r['param_bytes']} | {r['net_code_bytes']} | {r['sections'].get('.text', 0)} | "
                     f"{r['insns_per_inference']:.0f} | {_ratio(r['insns_per_inference'], base['insns_per_inference'])}"
                     f" | {r['top1']:.4f} |")
    four, one = d.get(4), d.get(1)
    if four is not None and one is not None:
        spread = [r["insns_per_inference"] / base["insns_per_inference"] for r in d.values()]

        def rel(r, key):
            return f"{r[key] / base[key]:.1%}"
        lines += ["", f"Reading: at 4 bits the packed weights take {rel(four, 'weight_bytes')} of the 8-bit bytes and "
                  f"an inference runs {rel(four, 'insns_per_inference')} of the 8-bit instructions; at 1 bit "
                  f"{rel(one, 'weight_bytes')} and {rel(one, 'insns_per_inference')}. Over all n the instructions per "
                  f"inference stay within {min(spread):.1%}..{max(spread):.1%} of 8-bit: in the dot product one "
                  "`SBFX` per weight replaces the 8-bit kernel's `LDRSB`, plus one word load per word of weights."]
    widths = list(d)
    names = [s.get("layer", s["kind"]) for s in base["steps"]]
    for title, key in (("Instructions per inference, per step", "insns"), ("Code bytes per step function",
                                                                            "code_bytes"),
                       ("Weight bytes per layer", "weight_bytes")):
        lines += ["", f"#### {title} (digits CNN)", "",
                  "| step | op | MACs | " + " | ".join(f"n={n}" for n in widths) + " |",
                  "|---|---|---|" + "---|" * len(widths)]
        for i, name in enumerate(names):
            if key == "weight_bytes" and "layer" not in base["steps"][i]:
                continue
            vals = [d[n]["steps"][i].get(key, 0) for n in widths]
            cells = " | ".join(f"{v:.0f}" for v in vals)
            lines.append(f"| {name} | {base['steps'][i]['kind']} | {base['steps'][i].get('macs', '')} | {cells} |")
    lines += ["", "### Word size (digits CNN, one inference)", "",
              "| n | word bits | weights per word | weight bytes | instructions / inference | net code bytes |",
              "|---|---|---|---|---|---|"]
    for r in res["words"]:
        lines.append(f"| {r['w_bits']} | {r['word_bits']} | {r['word_bits'] // r['w_bits']} | {r['weight_bytes']} | "
                     f"{r['insns_per_inference']:.0f} | {r['net_code_bytes']} |")
    lines += ["", "### DS-CNN (keyword spotting, 49x10 input, untrained weights) on Cortex-M3", "",
              "| n | weight bytes | vs 8-bit | net code bytes | firmware .text | instructions / inference | "
              "vs 8-bit | arena bytes |", "|---|---|---|---|---|---|---|---|"]
    ds = res["ds_cnn"]
    for n, r in ds.items():
        lines.append(f"| {n} | {r['weight_bytes']} | {_ratio(r['weight_bytes'], ds[8]['weight_bytes'])} | "
                     f"{r['net_code_bytes']} | {r['sections'].get('.text', 0)} | {r['insns_per_inference']:.0f} | "
                     f"{_ratio(r['insns_per_inference'], ds[8]['insns_per_inference'])} | {r['arena_bytes']} |")
    lines += ["", "### Cortex-M4 with FPU (MPS2 AN386), digits CNN", "",
              "| n | instructions / inference | Cortex-M3 (soft float) | net code bytes |", "|---|---|---|---|"]
    for n, r in res["cortex_m4"].items():
        lines.append(f"| {n} | {r['insns_per_inference']:.0f} | {d[n]['insns_per_inference']:.0f} | "
                     f"{r['net_code_bytes']} |")
    lines += ["", END]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=3, help="test images in the counted run (default 3)")
    ap.add_argument("--quick", action="store_true", help="fewer word-size and DS-CNN points")
    ap.add_argument("--render", action="store_true", help="only rewrite docs/mcu.md from docs/data/mcu.json")
    args = ap.parse_args(argv)
    if args.render:
        res = json.loads(DATA.read_text())
        for key in ("digits", "ds_cnn", "cortex_m4"):
            res[key] = {int(k): v for k, v in res[key].items()}
    else:
        res = run(args.samples, args.quick)
        DATA.parent.mkdir(parents=True, exist_ok=True)
        DATA.write_text(json.dumps(res, indent=2, default=str) + "\n")
    text = DOC.read_text() if DOC.exists() else f"# Virtual quantization on Cortex-M\n\n{START}\n{END}\n"
    if START not in text:
        text += f"\n{START}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    DOC.write_text(head + markdown(res) + tail)
    print(f"wrote {DATA} and {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
