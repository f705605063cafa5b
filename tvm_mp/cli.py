"""The ``tvm-mp`` command line.

    tvm-mp demo                               the bundled digits CNN under an energy budget and uniform plans:
                                              accuracy, latency (modelled, measured), energy, memory; Pareto front
    tvm-mp layers MODEL.onnx [--shape ...]    list the quantizable layers (and the conv / matmul ops that are not,
                                              with the reason)
    tvm-mp compile MODEL.onnx --plan w4a4 --calibration data.npy -o out/
                                              compile a plan (a short form like w4a4, or a plan JSON file)
    tvm-mp compile MODEL.onnx --budget-energy-uj 20 --calibration data.npy -o out/
                                              search the plan that fits the budget, then compile it
    tvm-mp explore MODEL.onnx --calibration data.npy -o out/
                                              the energy-accuracy Pareto front (pareto.json, pareto.png)
    tvm-mp tune MODEL.onnx --plan w2a2 [--rpc-tracker 127.0.0.1:9190 --key KEY]
                                              tune the kernels on this machine or on devices over TVM RPC
                                              (resumable); the next compile of the target uses the result
    tvm-mp report out/                        write out/report.md with the per-layer table and plots
A mistake in the inputs is one ``tvm-mp: error: ...`` line on stderr and exit code 2; a bug is one
``tvm-mp: internal error: ...`` line and exit code 1; ``--debug`` prints the full traceback instead (see
docs/errors.md). ``-v``/``-vv`` log what tvm-mp does (the library logs
through ``logging.getLogger("tvm_mp...")``), ``-q`` leaves only errors and no progress bars; ``--version``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from .kinds import CALIBRATION_METHODS, DEFAULT_CALIBRATION_METHOD


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


def _plan(text: str, mod=None):
    """``--plan``: a plan JSON file (a ``.json`` name or any existing path), else a short uniform form like
    ``w4a4``. Without ``mod``: the file's plan or the short form's :class:`Precision`, read before any work (a bad
    one fails first); with ``mod``: the plan for ``mod``."""
    from .precision import Precision, PrecisionPlan

    path = Path(text)
    plan = PrecisionPlan.load(path) if path.suffix == ".json" or path.exists() else Precision.parse(text)
    if mod is None or isinstance(plan, PrecisionPlan):
        return plan
    return PrecisionPlan.uniform(mod, plan)


def _read_samples(text: str | None, command: str = "compile"):
    """``--calibration`` read before any work: ``"digits"``, an array, or the arrays of an ``.npz`` by name. A
    missing, unreadable or unusable file fails here, before the model is imported."""
    from .errors import CalibrationError

    if text is None:
        raise CalibrationError(f"{command} needs --calibration: a .npy file of input samples (N, ...) or 'digits'")
    if text == "digits":
        return text
    path = Path(text)
    if path.is_dir():
        raise CalibrationError(f"--calibration {text!r} is a directory: give a .npy array of input samples")
    if not path.is_file():
        raise CalibrationError(f"calibration file {text!r} not found: give a .npy array of input samples")
    try:
        data = np.load(path, allow_pickle=False)
    except OSError as err:
        raise CalibrationError(f"cannot read --calibration {text!r}: {err.strerror or _one_line(err)}") from None
    except (ValueError, EOFError) as err:  # not .npy / .npz, truncated, or pickled objects
        raise CalibrationError(f"cannot read {text!r} as a .npy array ({_one_line(err)}): save the samples with "
                               "numpy.save(path, samples)") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        try:
            with data:
                arrays = {key: data[key] for key in data.files}
        except (ValueError, OSError, EOFError) as err:
            raise CalibrationError(f"cannot read the arrays of {text!r} ({_one_line(err)}): save plain numeric "
                                   "arrays with numpy.savez") from None
        if not arrays:
            raise CalibrationError(f"--calibration {text!r} is an .npz archive with no arrays")
    else:
        arrays = {None: data}
    for name, array in arrays.items():
        label = f"--calibration {text!r}" + (f" array {name!r}" if name is not None else "")
        if array.ndim == 0:
            raise CalibrationError(f"{label} holds one number (a 0-d array): give samples of shape (N, ...) with "
                                   "N >= 1")
        if array.dtype.kind not in "biuf":
            raise CalibrationError(f"{label} holds {array.dtype} values: give real numbers (float32)")
        if len(array) == 0:
            raise CalibrationError(f"{label} holds no samples (shape {array.shape}): give at least one")
    return arrays[None] if None in arrays else arrays


def _calibration(text: str | None, mod, command: str = "compile", samples=None):
    """``--calibration`` as batches for ``mod``: ``digits``, a ``.npy`` array of samples ``(N, ...)``, or an
    ``.npz`` archive (one array, or one array per model input named like the input), checked against the model's
    inputs before any work. ``samples``: what :func:`_read_samples` already returned for ``text``."""
    from .errors import CalibrationError

    data = _read_samples(text, command) if samples is None else samples
    if isinstance(data, str):  # "digits"
        from .datasets import calibration_batches

        return calibration_batches(8, 32)
    label = f"--calibration {text!r}"
    names = [p.name for p in mod["main"].params]
    if isinstance(data, dict):
        if set(data) == set(names):
            sizes = {len(a) for a in data.values()}
            if len(sizes) != 1:
                raise CalibrationError(f"{label}: the arrays of the model's inputs must hold the same number of "
                                       f"samples, got {[a.shape for a in data.values()]}")
            count = sizes.pop()
            return _check_calibration(label, mod, [{n: a[i : i + 32] for n, a in data.items()}
                                                   for i in range(0, count, 32)])
        if len(data) != 1 or len(names) != 1:
            raise CalibrationError(f"{label} is an .npz archive with arrays {sorted(data)}; give one array "
                                   f"(numpy.save) or one per model input named {names}")
        data = next(iter(data.values()))
    return _check_calibration(label, mod, [data[i : i + 32] for i in range(0, len(data), 32)])


def _check_calibration(label: str, mod, batches: list):
    from .errors import CalibrationError
    from .quantize.calibrate import normalize_batches

    try:
        normalize_batches(mod, batches)
    except CalibrationError as err:
        raise CalibrationError(f"{label}: {err}") from None
    return batches


def _one_line(err) -> str:
    return " ".join(str(err).split())[:300]


def _target(text: str):
    """``--target``, parsed before any work (a bad one fails first)."""
    from .targets import parse

    return parse(text)


def cmd_demo(args) -> int:
    import tempfile

    from .demo import format_table, run_demo

    budget = None
    if args.budget_energy_uj is not None:
        budget = _positive("--budget-energy-uj", args.budget_energy_uj)
    _target(args.target)
    output = _output_dir(args.output) if args.output else Path(tempfile.mkdtemp(prefix="tvm-mp-demo-"))
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
    layers, others = tvm_mp.list_layers(mod), tvm_mp.unquantizable_layers(mod)
    for layer in layers:
        print(layer)
    for layer in others:  # conv / matmul ops tvm-mp cannot quantize, with the reason
        print(layer)
    if not layers:
        print("no layer tvm-mp can quantize (conv2d, dense): compiled, the model runs unquantized")
    return 0


def _budget(args):
    from .budget import Budget

    limits = {"energy_uj": args.budget_energy_uj, "latency_ms": args.budget_latency_ms,
              "memory_kb": args.budget_memory_kb}
    if all(v is None for v in limits.values()):
        return None
    return Budget(**{name: _positive(f"--budget-{name.replace('_', '-')}", text)
                     for name, text in limits.items() if text is not None})


def cmd_compile(args) -> int:
    import tvm_mp

    from .driver import check_plan
    from .errors import PlanError
    from .model import check_export_dir

    check_export_dir(args.output)  # refuse a bad -o before the compile, not after it
    budget = _budget(args)
    if (budget is None) == (args.plan is None):
        raise PlanError("give exactly one of --plan or a budget (--budget-energy-uj / --budget-latency-ms / "
                        "--budget-memory-kb)")
    target = _target(args.target)
    if args.plan is not None:
        _plan(args.plan)
    samples = _read_samples(args.calibration)
    mod = tvm_mp.load_onnx(args.model, shapes=_shapes(args.shape))
    plan = None if args.plan is None else check_plan(mod, _plan(args.plan, mod))
    calibration = _calibration(args.calibration, mod, samples=samples)
    choices = {"cost_model": args.cost_model, "database": _database(args)}
    if budget is not None:
        cm = tvm_mp.compile(mod, budget=budget, target=target, calibration=calibration,
                            calibration_method=args.calibration_method, **choices)
    else:
        cm = tvm_mp.compile(mod, plan=plan, target=target, calibration=calibration,
                            calibration_method=args.calibration_method, **choices)
    if args.emulate:
        cm = _emulate(cm, calibration)
    print(cm.report)
    verified = getattr(cm, "search", None)
    if verified is not None and verified.meets_budget_measured() is not None:
        searches = sum(1 for r in verified.rounds if r.kind == "search")
        floor = " and the fastest plan measured" if len(verified.rounds) > searches else ""
        returned = " (the fastest plan returned)" if verified.result.method == "fastest" else ""
        print(f"latency budget {budget.latency_ms:.4g} ms: predicted {verified.predicted['latency_ms']:.4g} ms, "
              f"measured {verified.measured_latency_ms:.4g} ms +/- {verified.measurement_noise_ms:.2g} "
              f"({'met' if verified.meets_budget_measured() else 'not met'} by measurement; {searches} search "
              f"round{'s' if searches != 1 else ''}{floor}){returned}")
    out = cm.export(args.output)
    print(f"artifact: {out}")
    return 0


def _database(args):
    """``--database FILE`` (that file only), ``--no-database`` (default knobs), else None (the user database, then
    the shipped one)."""
    if getattr(args, "no_database", False):
        if args.database is not None:
            from .errors import Error

            raise Error("give --database FILE or --no-database, not both")
        return False
    return args.database


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

    from .tune import RPCConfig, TuneError, tune

    if args.key is None and args.rpc_tracker is not None:
        raise TuneError("--rpc-tracker needs --key (the device key the rpc_server registered with)")
    tracker = "127.0.0.1:9190" if args.rpc_tracker is None else args.rpc_tracker
    rpc = None if args.key is None else RPCConfig.parse(tracker, args.key, retries=args.retries,
                                                         connect_timeout_s=args.connect_timeout,
                                                         session_timeout_s=args.session_timeout)
    _target(args.target)
    _plan(args.plan)
    mod = tvm_mp.load_onnx(args.model, shapes=_shapes(args.shape))
    plan = _plan(args.plan, mod)
    result = tune(mod, plan, target=args.target, rpc=rpc, trials=args.trials, records=args.records,
                  database=args.database, seed=args.seed, progress=_progress(args) is not False)
    print(f"tasks {result.tasks}, jobs {result.jobs}: measured {result.measured}, already measured "
          f"{result.skipped}, failed {result.failed}; records: {result.records_path}; "
          f"tuning database: {result.database_path}")
    if args.database is None:
        print(f"the next `tvm-mp compile --target {args.target}` uses these configs (the user database)")
    for key, (config, cost) in sorted(result.best.items()):
        if result.unit == "us":
            print(f"  {cost:10.2f} us  {config['algorithm']:<9} {key}")
        else:  # emulated instruction counts (aarch64 without a device): a count, not a time
            print(f"  {cost:10,d} {result.unit}  {config['algorithm']:<9} {key}")
    if result.all_failed:  # nothing measured: an error (exit 2); the failed jobs' records are kept
        raise TuneError(f"all {result.failed} tuning jobs failed ({result.failure_summary()}); their records are "
                        f"kept in {result.records_path} and a rerun retries them; nothing was added to the tuning "
                        "database: fix the cause and run tvm-mp tune again")
    if result.failed:
        print(f"tvm-mp: warning: {result.failed} of {result.jobs - result.skipped} tuning jobs failed "
              f"({result.failure_summary()}); the database holds the best of the jobs measured; their records are "
              f"in {result.records_path} (a rerun retries the failed ones)", file=sys.stderr)
    return 0


def cmd_explore(args) -> int:
    import tvm_mp

    from .search.pareto import check_explore_args
    from .search.space import default_options, format_options

    check_explore_args(args.budgets, args.axes, args.seed)
    samples = _read_samples(args.calibration, "explore")
    out = _output_dir(args.output)
    mod = tvm_mp.load_onnx(args.model, shapes=_shapes(args.shape))
    options = default_options() + format_options() if args.formats else None
    front = tvm_mp.explore(mod, _calibration(args.calibration, mod, samples=samples), budgets=args.budgets,
                           seed=args.seed, axes=tuple(args.axes), options=options, cost_model=args.cost_model,
                           target=args.target)
    front.to_json(out / "pareto.json")
    png = front.plot(out / "pareto.png")
    for point in front.front(args.axes[0]):
        print(f"{point.cost(args.axes[0]):12.4f} {args.axes[0]}  score {point.score:.4f}  {point.kind}  {point.mix}")
    print(f"costs from {front.notes.get('cost_model') or 'the default cost model'} (energy {front.energy_basis}); "
          f"front: {out / 'pareto.json'}; plot: {png}")
    return 0


def _output_dir(text: str) -> Path:
    """``-o DIR`` of a command that writes several files: created if missing; one line if it cannot be."""
    from .errors import Error

    out = Path(text)
    if out.exists() and not out.is_dir():
        raise Error(f"-o {text!r} is a file: give a directory (it is created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise Error(f"cannot create the output directory {text!r}: {err.strerror or err}") from None
    return out


def cmd_report(args) -> int:
    from .reporting import render

    path = render(args.directory)
    print(f"report: {path}")
    return 0


def cmd_cost_model(args) -> int:
    from .measure import cost_model_cli

    return cost_model_cli.run(args)


TARGET_HELP = "host (this machine, the default), llvm (generic CPU), aarch64, or a target JSON"
COST_MODEL_HELP = ("what costs plans (default: the target's model): a model file written by `tvm-mp cost-model "
                   "train --out FILE` (e.g. trained on a device's tuning records), or analytical, datapath, xgboost "
                   "(the shipped model)")
DATABASE_HELP = ("tuning database the kernels' knobs come from (default: the user database that `tvm-mp tune` "
                 "writes, $TVM_MP_HOME/tuning.json, then the one shipped with tvm-mp)")
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
    common.add_argument("--debug", action="store_true", default=default,
                        help="on an error, print the full Python traceback (for bug reports)")
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
    layers = _subparser(sub, "layers", "list the quantizable layers of an ONNX model (and the conv / matmul ops "
                        "tvm-mp cannot quantize, each with the reason)",
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
    comp.add_argument("--calibration-method", default=DEFAULT_CALIBRATION_METHOD, choices=list(CALIBRATION_METHODS),
                      help="how activation ranges are chosen from the calibration data (default mse)")
    comp.add_argument("--shape", action="append", help=SHAPE_HELP)
    comp.add_argument("--target", default="host",
                      help="host (this machine, the default), llvm (generic CPU), aarch64 (also writes bundle/: "
                           "C with no TVM runtime), cortex-m4 / cortex-m7 (C for a micro-controller), accel (the "
                           "simulated accelerator; '{\"kind\": \"accel\", \"config\": \"my_accel.json\"}' for "
                           "your hardware description), or a target JSON")
    comp.add_argument("--cost-model", metavar="FILE", help=COST_MODEL_HELP)
    comp.add_argument("--database", metavar="FILE", help=DATABASE_HELP)
    comp.add_argument("--no-database", action="store_true", help="build with the schedules' default knobs")
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
    exp.add_argument("--cost-model", metavar="FILE", help=COST_MODEL_HELP)
    exp.add_argument("--target", default="host", help=TARGET_HELP)
    exp.add_argument("--shape", action="append", help=SHAPE_HELP)
    exp.add_argument("-o", "--output", required=True, help="directory for pareto.json and pareto.png")
    exp.set_defaults(func=cmd_explore)
    tun = _subparser(sub, "tune", "tune the plan's kernels on this machine, or on devices behind a TVM RPC "
                     "tracker; the next compile of the target uses the tuned configs",
                     ("tvm-mp tune model.onnx --plan w2a2 --trials 8",
                      "tvm-mp tune model.onnx --plan w2a2 --target aarch64 --trials 4  # counted under qemu",
                      "tvm-mp tune model.onnx --plan w2a2 --target aarch64 --rpc-tracker 127.0.0.1:9190 --key board"),
                     common)
    tun.add_argument("model", help=MODEL_HELP)
    tun.add_argument("--plan", required=True, help="a short uniform plan like w2a2, or a plan .json file")
    tun.add_argument("--rpc-tracker", default=None, help="HOST:PORT of the TVM RPC tracker (default "
                     "127.0.0.1:9190 when --key is given)")
    tun.add_argument("--key", default=None, help="the device key the rpc_server(s) registered with (without it: "
                     "time on this machine, or for --target aarch64 count emulated instructions under qemu-aarch64)")
    tun.add_argument("--trials", type=int, default=8, help="schedule configs tried per kernel")
    tun.add_argument("--records", default="tvm_mp_records.jsonl", help="record store (appended; resumable; "
                     "`tvm-mp cost-model train --records` takes it)")
    tun.add_argument("--database", help="tuning database to update (default: the user database, "
                     "$TVM_MP_HOME/tuning.json, which the next compile reads)")
    tun.add_argument("--retries", type=int, default=2, help="other devices tried before a job counts as failed")
    tun.add_argument("--connect-timeout", type=float, default=10.0, metavar="S",
                     help="seconds for each exchange with the tracker and each device handshake (default 10)")
    tun.add_argument("--session-timeout", type=float, default=120.0, metavar="S",
                     help="seconds for one job on a device: upload, load and timed run (default 120)")
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
    """Run one command. A mistake in the inputs (:class:`tvm_mp.errors.Error`, or the file system refusing a
    path) prints one ``tvm-mp: error: ...`` line and returns 2; any other exception is a bug in tvm-mp: one
    ``tvm-mp: internal error: ...`` line, return 1. ``--debug`` re-raises instead, so Python prints the traceback.
    """
    args = build_parser().parse_args(argv)
    quiet = bool(getattr(args, "quiet", False))
    configure_logging(getattr(args, "verbose", 0) or 0, quiet)
    if quiet:
        import warnings

        warnings.simplefilter("ignore")  # -q: errors only
    from .errors import Error

    debug = bool(getattr(args, "debug", False))
    try:
        return args.func(args)
    except Error as err:
        if debug:
            raise
        print(f"tvm-mp: error: {' '.join(str(err).split()) or type(err).__name__}", file=sys.stderr)
        return 2
    except OSError as err:  # the file system refused a path (permission, full disk, a file where a directory goes)
        if debug:
            raise
        where = f": {err.filename}" if getattr(err, "filename", None) else ""
        print(f"tvm-mp: error: {err.strerror or _one_line(err)}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print("tvm-mp: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug: one line, the traceback behind --debug
        if debug:
            raise
        print(f"tvm-mp: internal error: {type(err).__name__}: {_one_line(err)} (rerun with --debug for the "
              "traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
