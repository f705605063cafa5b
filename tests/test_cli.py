"""The tvm-mp command line on the bundled model: quick commands in a fork of a server that imported tvm_mp once
(``isolator``), whole compiles as real subprocesses."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tvm_mp.models import digits_cnn_path
from tvm_mp.testing.isolate import cli


def tvm_mp_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tvm_mp.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def forked_cli(isolator, *args, cwd=None) -> subprocess.CompletedProcess:
    """``tvm-mp ARGS`` in a forked child of the test session's fork server (same result as a subprocess)."""
    outcome = isolator.run(cli(*args, cwd=cwd), timeout_s=300)
    assert outcome.kind == "ok", outcome.describe()
    result = outcome.value
    return subprocess.CompletedProcess(list(args), result.code, result.stdout, result.stderr)


def test_layers(isolator):
    proc = forked_cli(isolator, "layers", str(digits_cnn_path()), "--shape", "input=1,1,8,8")
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[0] for line in proc.stdout.splitlines()]
    assert names == ["conv2d_0", "conv2d_1", "conv2d_2", "dense_0"]


@pytest.mark.slow
def test_compile_then_report(tmp_path):
    samples = tmp_path / "calib.npy"
    from tvm_mp.datasets import calibration_batches

    np.save(samples, np.concatenate(calibration_batches(2, 16)))
    out = tmp_path / "art"
    proc = tvm_mp_cli("compile", str(digits_cnn_path()), "--shape", "input=1,1,8,8", "--plan", "w4a4",
                      "--calibration", str(samples), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert {"model.so", "plan.json", "report.json", "report.txt"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "plan.json").read_text())["layers"]["dense_0"] == {"w_bits": 4, "a_bits": 4,
                                                                                 "kind": "auto"}
    proc = tvm_mp_cli("report", str(out))
    assert proc.returncode == 0, proc.stderr
    text = (out / "report.md").read_text()
    assert "| conv2d_1 | conv2d | w4a4 | packed |" in text and (out / "weights.png").stat().st_size > 1000
    # the rendered report belongs to the export: compiling into the same directory again replaces both
    proc = tvm_mp_cli("compile", str(digits_cnn_path()), "--shape", "input=1,1,8,8", "--plan", "w8a8",
                      "--calibration", str(samples), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert not (out / "report.md").exists() and json.loads((out / "plan.json").read_text())["layers"]["dense_0"][
        "w_bits"] == 8


@pytest.mark.parametrize("args,needle", [
    (["layers", "no/such/model.onnx"], "not found"),
    (["compile", "MODEL", "--shape", "input=1,1,8,8", "--plan", "w9a4", "--calibration", "digits", "-o", "x"],
     "1 to 8"),
    (["compile", "MODEL", "--plan", "w4a4", "--calibration", "digits", "-o", "x"], "shapes="),
    (["compile", "MODEL", "--shape", "input=1,1,8,8", "--plan", "w4a4", "-o", "x"], "--calibration"),
    (["layers", "MODEL", "--shape", "input=1,x"], "NAME=D0,D1"),
    (["report", "no_such_dir"], "artifact directory"),
    (["compile", "MODEL", "--shape", "input=1,1,8,8", "--budget-energy-uj", "lots", "--calibration", "digits",
      "-o", "x"], "positive number"),
    (["compile", "MODEL", "--shape", "input=1,1,8,8", "--budget-energy-uj", "-3", "--calibration", "digits",
      "-o", "x"], "positive finite"),
    (["compile", "MODEL", "--shape", "input=1,1,8,8", "--calibration", "digits", "-o", "x"], "exactly one of"),
    (["tune", "MODEL", "--shape", "input=1,1,8,8", "--plan", "w2a2", "--rpc-tracker", "localhost", "--key", "k"],
     "HOST:PORT"),
    (["cost-model", "eval", "--records", "none.jsonl"], "collect some first"),
    (["compile", "MODEL", "--shape", "input=1,1,8,8", "--plan", "w4a4", "--calibration", "digits", "--cost-model",
      "none.json", "-o", "x"], "cost-model train"),
    (["cost-model", "eval", "--records", "MODEL", "--default-model"], "not a records file"),
])
def test_errors_are_one_line_and_nonzero(args, needle, tmp_path, isolator):
    args = [str(digits_cnn_path()) if a == "MODEL" else a for a in args]
    proc = forked_cli(isolator, *args, cwd=tmp_path)
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("tvm-mp: error:") and needle in err, err


@pytest.mark.slow
def test_compile_under_budget_and_explore(tmp_path):
    out = tmp_path / "art"
    proc = tvm_mp_cli("compile", str(digits_cnn_path()), "--shape", "input=1,1,8,8", "--budget-energy-uj", "20",
                      "--calibration", "digits", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["energy_uj"] <= 20.0 and len(report["layers"]) == 4
    # the report explains the plan: per-layer sensitivity rank and reason, in the output, report.json and report.md
    assert "why each layer got its bits (budget search, energy_uj <= 20)" in proc.stdout
    assert [r["rank"] for r in sorted(report["explanation"]["layers"], key=lambda r: r["rank"])] == [1, 2, 3, 4]
    assert tvm_mp_cli("report", str(out)).returncode == 0
    assert "Energy by layer" in (out / "report.md").read_text() and (out / "energy_by_layer.png").exists()
    assert "## Why each layer got its bits" in (out / "report.md").read_text()
    front_dir = tmp_path / "front"
    proc = tvm_mp_cli("explore", str(digits_cnn_path()), "--shape", "input=1,1,8,8", "--calibration", "digits",
                      "--budgets", "2", "-o", str(front_dir))
    assert proc.returncode == 0, proc.stderr
    front = json.loads((front_dir / "pareto.json").read_text())
    assert front and (front_dir / "pareto.png").stat().st_size > 1000


def test_help_for_every_command(isolator):
    for cmd in ("demo", "layers", "compile", "explore", "tune", "report", "cost-model"):
        proc = forked_cli(isolator, cmd, "--help")
        assert proc.returncode == 0 and "usage: tvm-mp " + cmd in proc.stdout


def test_cost_model_train_then_eval(tmp_path, isolator):
    from tests.cost_models._synthetic import synthetic_records
    from tvm_mp.measure.records import RecordStore

    records = tmp_path / "records.jsonl"
    RecordStore(records).extend(synthetic_records(seed=5, n_layers=24, configs=5))
    model = tmp_path / "model.json"
    proc = forked_cli(isolator, "cost-model", "train", "--records", str(records), "--out", str(model),
                      "--rounds", "20", "--quantile-rounds", "5")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(model.read_text())["format"] == "tvm-mp-xgb-cost-model"
    proc = forked_cli(isolator, "cost-model", "eval", "--records", str(records), "--model", str(model))
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if "| xgboost |" in line]
    assert rows and all(float(row.split("|")[4]) > 0 for row in rows)  # Spearman rho of the trained model


@pytest.mark.slow
def test_compile_under_a_latency_budget_says_predicted_and_measured(tmp_path, isolator):
    """On the host the learned whole-model predictor costs the plans (named in the report, energy modelled by the
    analytical CPU model) and the built model is measured against the budget."""
    samples = tmp_path / "calib.npy"
    from tvm_mp.datasets import calibration_batches

    np.save(samples, np.concatenate(calibration_batches(1, 16)))
    proc = forked_cli(isolator, "compile", str(digits_cnn_path()), "--shape", "input=1,1,8,8",
                      "--budget-latency-ms", "50", "--calibration", str(samples), "-o", str(tmp_path / "art"))
    assert proc.returncode == 0, proc.stderr
    assert "costs from WholeModel (latency:" in proc.stdout and "energy: analytical CPU model" in proc.stdout
    assert "+ fixed" in proc.stdout and "energy" in proc.stdout and "(modelled)" in proc.stdout
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("latency budget 50 ms: predicted"))
    assert "met by measurement; 1 search round)" in line, line


@pytest.mark.slow
def test_demo_budget_plan_next_to_uniform_plans(tmp_path):
    out = tmp_path / "demo"
    proc = tvm_mp_cli("demo", "--plans", "w8a8", "w2a2", "-o", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    # the comparison table comes first: the budget's row, then one per uniform plan, each with every figure
    rows = [line for line in lines[:10] if line.startswith(("budget ", "uniform "))]
    figures = {row[:18].strip(): [float(v) for v in row[18:].split()[:5]] for row in rows}
    assert [name.split()[0] for name in figures] == ["budget", "uniform", "uniform"], proc.stdout
    budget_row = next(iter(figures))
    limit = float(budget_row.split()[1])
    top1, predicted, measured, energy, memory = figures[budget_row]
    assert 14.0 < limit < 33.0  # between uniform w2a2 and w8a8 by the cost model
    assert energy <= limit * (1 + 1e-6) and measured > 0 and predicted > 0 and memory > 0
    assert top1 > figures["uniform w2a2"][0]  # the budget buys accuracy over the cheapest uniform plan
    assert "every plan's outputs equal the NumPy reference: True" in proc.stdout
    front = json.loads((out / "pareto.json").read_text())
    assert front["points"] and (out / "pareto.png").stat().st_size > 1000
    assert (out / "budget" / "model.so").stat().st_size > 0
    assert json.loads((out / "budget" / "report.json").read_text())["energy_uj"] <= limit * (1 + 1e-6)
    assert "\r" not in proc.stderr and "it/s" not in proc.stderr  # no progress bars when stderr is not a terminal


def test_version(isolator):
    from tvm_mp import __version__

    proc = forked_cli(isolator, "--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"tvm-mp {__version__}"


def _commands(parser, prefix=()):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,), sub
                yield from _commands(sub, prefix + (name,))


def test_every_command_has_an_example_and_every_option_help():
    from tvm_mp.cli import build_parser

    commands = list(_commands(build_parser()))
    assert len(commands) >= 11  # 7 commands and cost-model's 4
    missing = []
    for path, sub in commands:
        if "example:" not in (sub.epilog or "") or "tvm-mp " + path[0] not in sub.epilog:
            missing.append(f"{' '.join(path)}: no example")
        for action in sub._actions:
            if not action.help:
                missing.append(f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}: no help")
    assert not missing, missing


@pytest.mark.parametrize("flags", [["-q"], ["-v"], ["layers", "-q"]])
def test_verbose_and_quiet_before_or_after_the_command(flags):
    from tvm_mp.cli import build_parser

    argv = flags + ["layers", "m.onnx"] if flags[0] != "layers" else ["layers", "m.onnx", "-q"]
    args = build_parser().parse_args(argv)
    assert args.command == "layers"
    assert getattr(args, "quiet", None) or getattr(args, "verbose", 0) == 1


def test_verbose_logs_the_library_and_quiet_silences_it():
    import logging

    from tvm_mp.cli import configure_logging

    log = logging.getLogger("tvm_mp")
    try:
        configure_logging(verbose=1)
        assert logging.getLogger("tvm_mp.search.budget").isEnabledFor(logging.INFO)
        configure_logging(quiet=True)
        assert not logging.getLogger("tvm_mp.search.budget").isEnabledFor(logging.WARNING)
        assert len([h for h in log.handlers if getattr(h, "_tvm_mp_cli", False)]) == 1
    finally:
        for handler in list(log.handlers):
            log.removeHandler(handler)
        log.setLevel(logging.NOTSET)
        log.propagate = True
