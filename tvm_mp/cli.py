"""The ``tvm-mp`` command line.

    tvm-mp demo                               compile the bundled digits CNN under uniform plans, print reports
    tvm-mp layers MODEL.onnx [--shape ...]    list the quantizable layers
    tvm-mp compile MODEL.onnx --plan w4a4 --calibration data.npy -o out/
                                              compile a plan (a short form like w4a4, or a plan JSON file)
    tvm-mp compile MODEL.onnx --budget-energy-uj 20 --calibration data.npy -o out/
                                              search the plan that fits the budget, then compile it
    tvm-mp explore MODEL.onnx --calibration data.npy -o out/
                                              the energy-accuracy Pareto front (pareto.json, pareto.png)
    tvm-mp tune MODEL.onnx --plan w2a2 --rpc-tracker 127.0.0.1:9190 --key KEY
                                              tune the kernels on devices over TVM RPC (resumable)
    tvm-mp report out/                        write out/report.md with the per-layer table and plots
Errors are one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from .kinds import CALIBRATION_METHODS


def _shapes(items: list[str] | None) -> dict | None:
    if not items:
        return None
    from .errors import InputShapeError

    shapes = {}
    for item in items:
        name, sep, dims = item.partition("=")
        try:
            if not sep:
                raise ValueError
            shapes[name] = tuple(int(d) for d in dims.split(","))
        except ValueError:
            raise InputShapeError(f"cannot read --shape {item!r}: "
                                  "write it as NAME=D0,D1,... e.g. input=1,1,8,8") from None
    return shapes


def _plan(text: str, mod):
    from .precision import Precision, PrecisionPlan

    path = Path(text)
    if path.suffix == ".json" or path.exists():
        from .errors import PlanError

        if not path.is_file():
            raise PlanError(f"plan file {text!r} not found")
        return PrecisionPlan.from_json(path.read_text())
    return PrecisionPlan.uniform(mod, Precision.parse(text))


def _calibration(text: str | None, mod):
    from .errors import CalibrationError

    if text is None:
        raise CalibrationError("compile needs --calibration: a .npy file of input samples (N, ...) or 'digits'")
    if text == "digits":
        from .datasets import calibration_batches

        return calibration_batches(8, 32)
    path = Path(text)
    if not path.is_file():
        raise CalibrationError(f"calibration file {text!r} not found: give a .npy array of input samples")
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise CalibrationError(f"cannot read {text!r} as a .npy array: {err}") from None
    return [data[i : i + 32] for i in range(0, len(data), 32)]


def cmd_demo(args) -> int:
    import tvm_mp
    from tvm_mp import Precision, PrecisionPlan
    from tvm_mp.datasets import calibration_batches, load_digits_split
    from tvm_mp.models import digits_cnn_path

    digits = load_digits_split()
    mod = tvm_mp.load_onnx(digits_cnn_path(), shapes={"input": (1, 1, 8, 8)})
    print(f"model: bundled digits CNN ({digits_cnn_path().name}); test split: {len(digits.y_test)} images")
    for layer in tvm_mp.list_layers(mod):
        print(" ", layer)
    calib = calibration_batches(8, 32)
    for text in args.plans:
        plan = PrecisionPlan.uniform(mod, Precision.parse(text))
        start = time.perf_counter()
        cm = tvm_mp.compile(mod, plan=plan, target=args.target, calibration=calib,
                            accuracy_fn=lambda m: float((m.run(digits.x_test).argmax(1) == digits.y_test).mean()))
        elapsed = time.perf_counter() - start
        exact = np.array_equal(cm.run(digits.x_test[:64]), cm.reference(digits.x_test[:64]))
        print(f"\n== uniform {text}: top-1 {cm.report.accuracy:.4f} on the held-out split; "
              f"compiled in {elapsed:.1f} s; "
              f"equals the NumPy reference: {exact}")
        print(cm.report)
        if args.output:
            out = cm.export(Path(args.output) / text)
            print(f"artifact: {out}")
    return 0


def cmd_layers(args) -> int:
    import tvm_mp

    mod = tvm_mp.load_onnx(args.model, shapes=_shapes(args.shape))
    for layer in tvm_mp.list_layers(mod):
        print(layer)
    return 0


def _budget(args):
    from .budget import Budget
    from .errors import PlanError

    limits = {"energy_uj": args.budget_energy_uj, "latency_ms": args.budget_latency_ms,
              "memory_kb": args.budget_memory_kb}
    if all(v is None for v in limits.values()):
        return None
    parsed = {}
    for name, text in limits.items():
        if text is None:
            continue
        try:
            parsed[name] = float(text)
        except ValueError:
            raise PlanError(f"cannot read --budget-{name.replace('_', '-')} {text!r}: give a positive number") from None
    return Budget(**parsed)


def cmd_compile(args) -> int:
    import tvm_mp

    from .errors import PlanError

    mod = tvm_mp.load_onnx(args.model, shapes=_shapes(args.shape))
    budget = _budget(args)
    if (budget is None) == (args.plan is None):
        raise PlanError("give exactly one of --plan or a budget (--budget-energy-uj / --budget-latency-ms / "
                        "--budget-memory-kb)")
    calibration = _calibration(args.calibration, mod)
    if budget is not None:
        cm = tvm_mp.compile(mod, budget=budget, target=args.target, calibration=calibration,
                            calibration_method=args.calibration_method)
    else:
        cm = tvm_mp.compile(mod, plan=_plan(args.plan, mod), target=args.target, calibration=calibration,
                            calibration_method=args.calibration_method)
    if args.emulate:
        cm = _emulate(cm, calibration)
    print(cm.report)
    out = cm.export(args.output)
    print(f"artifact: {out}")
    return 0


def _emulate(cm, calibration):
    """``cm`` with ``report.deployment`` from one counted inference of its standalone bundle under qemu-aarch64."""
    from dataclasses import replace

    from .deploy.aarch64 import measure
    from .errors import Error

    if cm.target.arch != "aarch64":
        raise Error(f"--emulate counts instructions under qemu-aarch64: give --target aarch64, not {cm.target.name}")
    x = np.asarray(calibration[0], dtype=np.float32)[:1]
    figures, output = measure(cm, x)
    exact = np.array_equal(output, cm.reference(x.reshape(cm.input_shapes[0])))
    cm.report = replace(cm.report, deployment={**figures, "equals_reference": bool(exact)})
    return cm


def cmd_tune(args) -> int:
    import tvm_mp

    from .tune import RPCConfig, tune

    rpc = RPCConfig.parse(args.rpc_tracker, args.key, retries=args.retries)
    mod = tvm_mp.load_onnx(args.model, shapes=_shapes(args.shape))
    plan = _plan(args.plan, mod)
    result = tune(mod, plan, target=args.target, rpc=rpc, trials=args.trials, records=args.records,
                  database=args.database, seed=args.seed, progress=not args.quiet)
    print(f"tasks {result.tasks}, jobs {result.jobs}: measured {result.measured}, already measured "
          f"{result.skipped}, failed {result.failed}; records: {result.records_path}; "
          f"tuning database: {result.database_path}")
    for key, (config, latency_us) in sorted(result.best.items()):
        print(f"  {latency_us:10.2f} us  {config['algorithm']:<9} {key}")
    return 0


def cmd_explore(args) -> int:
    import tvm_mp

    from .search.space import default_options, format_options

    mod = tvm_mp.load_onnx(args.model, shapes=_shapes(args.shape))
    options = default_options() + format_options() if args.formats else None
    front = tvm_mp.explore(mod, _calibration(args.calibration, mod), budgets=args.budgets, seed=args.seed,
                           axes=tuple(args.axes), options=options)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    front.to_json(out / "pareto.json")
    png = front.plot(out / "pareto.png")
    for point in front.front(args.axes[0]):
        print(f"{point.cost(args.axes[0]):12.4f} {args.axes[0]}  score {point.score:.4f}  {point.kind}  {point.mix}")
    print(f"front: {out / 'pareto.json'}; plot: {png}")
    return 0


def cmd_report(args) -> int:
    from .reporting import render

    path = render(args.directory)
    print(f"report: {path}")
    return 0


def cmd_cost_model(args) -> int:
    from .measure import cost_model_cli

    return cost_model_cli.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tvm-mp", description="Mixed-precision compilation of CNNs with TVM")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="compile the bundled digits CNN under uniform plans and print the reports")
    demo.add_argument("--plans", nargs="+", default=["w8a8", "w4a4", "w2a2"], help="short plans, e.g. w4a4")
    demo.add_argument("--target", default="host",
                      help="host (this machine, the default), llvm (generic CPU), aarch64, or a target JSON")
    demo.add_argument("-o", "--output", help="also export each compiled artifact under this directory")
    demo.set_defaults(func=cmd_demo)
    layers = sub.add_parser("layers", help="list the quantizable layers of an ONNX model")
    layers.add_argument("model")
    layers.add_argument("--shape", action="append", help="NAME=D0,D1,... for inputs with dynamic dims")
    layers.set_defaults(func=cmd_layers)
    comp = sub.add_parser("compile", help="compile an ONNX model under a precision plan")
    comp.add_argument("model")
    comp.add_argument("--plan", help="a short uniform plan like w4a4, or a plan .json file")
    comp.add_argument("--budget-energy-uj", help="search a plan within this energy per inference (uJ)")
    comp.add_argument("--budget-latency-ms", help="search a plan within this latency per inference (ms)")
    comp.add_argument("--budget-memory-kb", help="search a plan within this weight memory (kB)")
    comp.add_argument("--calibration", help="a .npy array of input samples, or 'digits' for the bundled data")
    comp.add_argument("--calibration-method", default="mse", choices=list(CALIBRATION_METHODS))
    comp.add_argument("--shape", action="append", help="NAME=D0,D1,... for inputs with dynamic dims")
    comp.add_argument("--target", default="host",
                      help="host (this machine, the default), llvm (generic CPU), aarch64 (also writes bundle/: "
                           "C with no TVM runtime), cortex-m4 / cortex-m7 (C for a micro-controller), or a target "
                           "JSON")
    comp.add_argument("--emulate", action="store_true",
                      help="aarch64: run the bundle once under qemu-aarch64 and put its emulated instruction "
                           "counts (per model and kernel; not a time) in the report")
    comp.add_argument("-o", "--output", required=True, help="artifact directory")
    comp.set_defaults(func=cmd_compile)
    exp = sub.add_parser("explore", help="sweep budgets and write the Pareto front (JSON + plot)")
    exp.add_argument("model")
    exp.add_argument("--calibration", help="a .npy array of input samples, or 'digits' for the bundled data")
    exp.add_argument("--budgets", type=int, default=8, help="budgets per axis")
    exp.add_argument("--axes", nargs="+", default=["energy_uj"], choices=["energy_uj", "latency_ms", "memory_kb"])
    exp.add_argument("--seed", type=int, default=0)
    exp.add_argument("--formats", action="store_true",
                     help="also let layers use fp16/bf16/fp8 and clustered weights (costed by the datapath model)")
    exp.add_argument("--shape", action="append", help="NAME=D0,D1,... for inputs with dynamic dims")
    exp.add_argument("-o", "--output", required=True, help="directory for pareto.json and pareto.png")
    exp.set_defaults(func=cmd_explore)
    tun = sub.add_parser("tune", help="tune the plan's kernels on devices behind a TVM RPC tracker")
    tun.add_argument("model")
    tun.add_argument("--plan", required=True, help="a short uniform plan like w2a2, or a plan .json file")
    tun.add_argument("--rpc-tracker", default="127.0.0.1:9190", help="HOST:PORT of the TVM RPC tracker")
    tun.add_argument("--key", required=True, help="the device key the rpc_server(s) registered with")
    tun.add_argument("--trials", type=int, default=8, help="schedule configs tried per kernel")
    tun.add_argument("--records", default="tvm_mp_records.jsonl", help="record store (appended; resumable)")
    tun.add_argument("--database", help="tuning database to update (default: beside the records)")
    tun.add_argument("--retries", type=int, default=2, help="other devices tried before a job counts as failed")
    tun.add_argument("--seed", type=int, default=0)
    tun.add_argument("--target", default="host",
                     help="host (this machine, the default), llvm (generic CPU), aarch64, or a target JSON")
    tun.add_argument("--shape", action="append", help="NAME=D0,D1,... for inputs with dynamic dims")
    tun.add_argument("--quiet", action="store_true", help="no progress bar")
    tun.set_defaults(func=cmd_tune)
    rep = sub.add_parser("report", help="write report.md (table and plots) for an artifact directory")
    rep.add_argument("directory")
    rep.set_defaults(func=cmd_report)
    cm = sub.add_parser("cost-model", help="collect kernel measurements, train and evaluate cost models")
    from .measure.cost_model_cli import add_commands

    add_commands(cm.add_subparsers(dest="command", required=True))
    cm.set_defaults(func=cmd_cost_model)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .errors import Error

    try:
        return args.func(args)
    except Error as err:
        print(f"tvm-mp: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
