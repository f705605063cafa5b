"""The ``tvm-mp`` command line.

    tvm-mp demo                               the bundled digits CNN under an energy budget and uniform plans:
                                              accuracy, latency (modelled, measured), energy, memory; Pareto front
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
Errors are one line on stderr and a non-zero exit code. ``-v``/``-vv`` log what tvm-mp does (the library logs
through ``logging.getLogger("tvm_mp...")``), ``-q`` leaves only errors and no progress bars; ``--version``.
"""

from __future__ import annotations

import argparse
import sys
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
    import tempfile

    from .demo import format_table, run_demo

    output = Path(args.output) if args.output else Path(tempfile.mkdtemp(prefix="tvm-mp-demo-"))
    budget = None
    if args.budget_energy_uj is not None:
        budget = _positive("--budget-energy-uj", args.budget_energy_uj)
    result = run_demo(plans=args.plans, budget_energy_uj=budget, target=args.target, output=output,
                      front_budgets=args.front_budgets, seed=args.seed, progress=_progress(args))
    print(f"tvm-mp demo: the bundled digits CNN ({len(result.layers)} layers) compiled for {args.target} under an "
          f"energy budget ({result.budget.energy_uj:.1f} uJ, {result.budget_note}) and under uniform plans")
    print()
    print(format_table(result))
    chosen = result.chosen
    print()
    print(f"== the plan the search chose within {result.budget.energy_uj:.1f} uJ (outputs equal the NumPy "
          f"reference: {chosen.exact})")
    print(chosen.model.report)
    exact = all(r.exact for r in result.rows)
    print()
    mixed = sum(1 for p in result.front.front("energy_uj") if p.kind == "mixed")
    print(f"Pareto front (energy against top-1 on the held-out split): {len(result.front.front('energy_uj'))} "
          f"points, {mixed} of them mixed plans")
    print(f"every plan's outputs equal the NumPy reference: {exact}")
    print(f"output: {result.output} (pareto.png, pareto.json, budget/: the chosen plan's artifact); "
          f"{result.seconds:.0f} s")
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
    from .model import check_export_dir

    check_export_dir(args.output)  # refuse a bad -o before the compile, not after it
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
                  database=args.database, seed=args.seed, progress=_progress(args) is not False)
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


TARGET_HELP = "host (this machine, the default), llvm (generic CPU), aarch64, or a target JSON"
SHAPE_HELP = "NAME=D0,D1,... fixes an input's shape (repeat for several inputs), e.g. input=1,1,8,8"
MODEL_HELP = "an ONNX model file"


def _example(*lines: str) -> str:
    return "example:\n" + "\n".join(f"  {line}" for line in lines)


def _subparser(sub, name: str, help: str, example: tuple[str, ...], common) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".", epilog=_example(*example),
                          formatter_class=argparse.RawDescriptionHelpFormatter, parents=[common])


def _common_options(suppress: bool) -> argparse.ArgumentParser:
    """-v/-q, accepted before or after the command (the sub-command's copy must not reset the main one's)."""
    common = argparse.ArgumentParser(add_help=False)
    default = argparse.SUPPRESS if suppress else None
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS if suppress else 0,
                        help="log what tvm-mp does (-vv: debug detail)")
    common.add_argument("-q", "--quiet", action="store_true", default=default,
                        help="only errors on stderr; no progress bars")
    return common


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    common = _common_options(suppress=True)
    parser = argparse.ArgumentParser(
        prog="tvm-mp", description="Mixed-precision compilation of CNNs with TVM: a precision per layer, chosen "
        "under an energy, latency or memory budget, compiled into integer kernels.",
        epilog=_example("tvm-mp demo", "tvm-mp compile model.onnx --budget-energy-uj 20 --calibration samples.npy "
                        "-o out/", "tvm-mp COMMAND --help"),
        formatter_class=argparse.RawDescriptionHelpFormatter, parents=[_common_options(suppress=False)])
    parser.add_argument("--version", action="version", version=f"tvm-mp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="one of:")
    demo = _subparser(sub, "demo", "compile the bundled digits CNN under an energy budget and under uniform plans; "
                      "compare accuracy, latency, energy and memory", ("tvm-mp demo",
                      "tvm-mp demo --plans w8a8 w2a2 --budget-energy-uj 20 -o demo/"), common)
    demo.add_argument("--plans", nargs="+", default=["w8a8", "w4a4", "w2a2"],
                      help="uniform plans to compare with the budget's plan (default: w8a8 w4a4 w2a2)")
    demo.add_argument("--budget-energy-uj", help="energy budget per inference in uJ (default: between the two "
                      "cheapest uniform plans)")
    demo.add_argument("--front-budgets", type=int, default=3, help="budgets swept for the Pareto front (default 3)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the search (same seed, same plans)")
    demo.add_argument("--target", default="host", help=TARGET_HELP)
    demo.add_argument("-o", "--output", help="directory for pareto.png, pareto.json and the artifacts "
                      "(default: a new temporary directory, printed at the end)")
    demo.set_defaults(func=cmd_demo)
    layers = _subparser(sub, "layers", "list the quantizable layers of an ONNX model",
                        ("tvm-mp layers model.onnx --shape input=1,1,8,8",), common)
    layers.add_argument("model", help=MODEL_HELP)
    layers.add_argument("--shape", action="append", help=SHAPE_HELP)
    layers.set_defaults(func=cmd_layers)
    comp = _subparser(sub, "compile", "compile an ONNX model under a precision plan or a budget",
                      ("tvm-mp compile model.onnx --plan w4a4 --calibration samples.npy -o out/",
                       "tvm-mp compile model.onnx --budget-energy-uj 20 --calibration samples.npy -o out/"), common)
    comp.add_argument("model", help=MODEL_HELP)
    comp.add_argument("--plan", help="a short uniform plan like w4a4, or a plan .json file")
    comp.add_argument("--budget-energy-uj", help="search a plan within this energy per inference (uJ)")
    comp.add_argument("--budget-latency-ms", help="search a plan within this latency per inference (ms)")
    comp.add_argument("--budget-memory-kb", help="search a plan within this weight memory (kB)")
    comp.add_argument("--calibration", help="a .npy array of input samples, or 'digits' for the bundled data")
    comp.add_argument("--calibration-method", default="mse", choices=list(CALIBRATION_METHODS),
                      help="how activation ranges are chosen from the calibration data (default mse)")
    comp.add_argument("--shape", action="append", help=SHAPE_HELP)
    comp.add_argument("--target", default="host",
                      help="host (this machine, the default), llvm (generic CPU), aarch64 (also writes bundle/: "
                           "C with no TVM runtime), cortex-m4 / cortex-m7 (C for a micro-controller), or a target "
                           "JSON")
    comp.add_argument("--emulate", action="store_true",
                      help="aarch64: run the bundle once under qemu-aarch64 and put its emulated instruction "
                           "counts (per model and kernel; not a time) in the report")
    comp.add_argument("-o", "--output", required=True, help="artifact directory")
    comp.set_defaults(func=cmd_compile)
    exp = _subparser(sub, "explore", "sweep budgets and write the Pareto front (JSON + plot)",
                     ("tvm-mp explore model.onnx --calibration samples.npy --budgets 6 -o front/",), common)
    exp.add_argument("model", help=MODEL_HELP)
    exp.add_argument("--calibration", help="a .npy array of input samples, or 'digits' for the bundled data")
    exp.add_argument("--budgets", type=int, default=8, help="budgets per axis (default 8)")
    exp.add_argument("--axes", nargs="+", default=["energy_uj"], choices=["energy_uj", "latency_ms", "memory_kb"],
                     help="costs to sweep budgets on (default energy_uj)")
    exp.add_argument("--seed", type=int, default=0, help="seed of the search (same seed, same front)")
    exp.add_argument("--formats", action="store_true",
                     help="also let layers use fp16/bf16/fp8 and clustered weights (costed by the datapath model)")
    exp.add_argument("--shape", action="append", help=SHAPE_HELP)
    exp.add_argument("-o", "--output", required=True, help="directory for pareto.json and pareto.png")
    exp.set_defaults(func=cmd_explore)
    tun = _subparser(sub, "tune", "tune the plan's kernels on devices behind a TVM RPC tracker",
                     ("tvm-mp tune model.onnx --plan w2a2 --rpc-tracker 127.0.0.1:9190 --key my-board",), common)
    tun.add_argument("model", help=MODEL_HELP)
    tun.add_argument("--plan", required=True, help="a short uniform plan like w2a2, or a plan .json file")
    tun.add_argument("--rpc-tracker", default="127.0.0.1:9190", help="HOST:PORT of the TVM RPC tracker")
    tun.add_argument("--key", required=True, help="the device key the rpc_server(s) registered with")
    tun.add_argument("--trials", type=int, default=8, help="schedule configs tried per kernel")
    tun.add_argument("--records", default="tvm_mp_records.jsonl", help="record store (appended; resumable)")
    tun.add_argument("--database", help="tuning database to update (default: beside the records)")
    tun.add_argument("--retries", type=int, default=2, help="other devices tried before a job counts as failed")
    tun.add_argument("--seed", type=int, default=0, help="seed of the configurations tried")
    tun.add_argument("--target", default="host", help=TARGET_HELP)
    tun.add_argument("--shape", action="append", help=SHAPE_HELP)
    tun.set_defaults(func=cmd_tune)
    rep = _subparser(sub, "report", "write report.md (table and plots) for an artifact directory",
                     ("tvm-mp report out/",), common)
    rep.add_argument("directory", help="an artifact directory written by tvm-mp compile -o (or CompiledModel.export)")
    rep.set_defaults(func=cmd_report)
    cm = _subparser(sub, "cost-model", "collect kernel measurements, train and evaluate cost models",
                    ("tvm-mp cost-model eval --records docs/data/host_kernels.jsonl --default-model",), common)
    from .measure.cost_model_cli import add_commands

    add_commands(cm.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                   help="collect, train, eval or default (COMMAND --help for each)"), parents=[common])
    cm.set_defaults(func=cmd_cost_model)
    return parser


def _positive(option: str, text: str) -> float:
    from .errors import PlanError

    try:
        value = float(text)
    except ValueError:
        raise PlanError(f"cannot read {option} {text!r}: give a positive number") from None
    if not (value > 0 and np.isfinite(value)):
        raise PlanError(f"{option} {text!r}: give a positive finite number")
    return value


def _progress(args) -> bool | None:
    """Progress bars: off with --quiet; otherwise the library's rule (long runs, stderr a terminal)."""
    return False if getattr(args, "quiet", False) else None


def configure_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Messages of tvm-mp's loggers on stderr: warnings by default, info with -v, debug with -vv, errors only
    with -q. Only the ``tvm_mp`` logger is configured (not the root logger or TVM's)."""
    import logging

    if quiet:
        level = logging.ERROR
    else:
        level = logging.DEBUG if verbose >= 2 else logging.INFO if verbose == 1 else logging.WARNING
    log = logging.getLogger("tvm_mp")
    for handler in list(log.handlers):
        if getattr(handler, "_tvm_mp_cli", False):
            log.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("tvm-mp: %(message)s" if verbose < 2 else
                                           "tvm-mp: %(name)s: %(message)s"))
    handler._tvm_mp_cli = True
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet = bool(getattr(args, "quiet", False))
    configure_logging(getattr(args, "verbose", 0) or 0, quiet)
    if quiet:
        import warnings

        warnings.simplefilter("ignore")  # -q: errors only
    from .errors import Error

    try:
        return args.func(args)
    except Error as err:
        print(f"tvm-mp: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
