"""Tuning on this machine feeds the next compile: ``tvm-mp tune`` writes the user tuning database (keyed by the
target) and records that ``tvm-mp cost-model train`` takes; ``tvm-mp compile`` then builds the tuned configs and
costs with the model trained on them. (RPC tuning: test_tune_rpc.py.)"""

from __future__ import annotations

import json

import pytest

import tvm_mp
from tvm_mp import Precision, PrecisionPlan
from tvm_mp.errors import Error
from tvm_mp.models import digits_cnn_path
from tvm_mp.targets import parse
from tvm_mp.tune import TuneError, plan_tasks, tune

PLAN = PrecisionPlan({"conv2d_1": Precision(2, 2), "dense_0": Precision(2, 2)})


def cli(*args, cwd, monkeypatch, capsys):
    """``tvm-mp ARGS`` in this process (the command line without a fresh interpreter's imports)."""
    from tvm_mp.cli import main

    monkeypatch.chdir(cwd)
    assert main(list(args)) == 0, capsys.readouterr().err
    return capsys.readouterr().out


@pytest.fixture(scope="module")
def digits():
    return tvm_mp.load_onnx(digits_cnn_path(), shapes={"input": (1, 1, 8, 8)})


def test_plan_tasks_cover_conv_and_dense(digits):
    tasks = plan_tasks(digits, PLAN)
    assert [t.op for t in tasks] == ["conv2d", "dense"]
    assert tasks[1].key() == "dense|bitserial|w2a2|in(1,128)|w(10,128)"


def test_tuning_another_architecture_needs_the_device(digits, tmp_path):
    # (aarch64 without a device is counted under qemu: tests/arm/test_tune_emulated.py)
    with pytest.raises(TuneError, match="needs the device"):
        tune(digits, PLAN, target={"kind": "llvm", "mtriple": "riscv64-linux-gnu"}, records=tmp_path / "r.jsonl",
             progress=False)
    assert not (tmp_path / "r.jsonl").exists()


def test_a_damaged_database_stops_tuning_before_it_measures(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("TVM_MP_HOME", str(tmp_path))
    (tmp_path / "tuning.json").write_text("{not json")
    with pytest.raises(Error, match="delete it to re-tune"):
        tune(digits, PLAN, records=tmp_path / "r.jsonl", progress=False)
    assert not (tmp_path / "r.jsonl").exists()


@pytest.mark.slow
def test_tune_then_compile_uses_the_tuned_configs_and_the_model_trained_on_them(tmp_path, monkeypatch, capsys):
    from tests.cost_models._synthetic import synthetic_records
    from tvm_mp.measure.records import RecordStore

    home = tmp_path / "home"
    monkeypatch.setenv("TVM_MP_HOME", str(home))
    model = str(digits_cnn_path())
    (tmp_path / "plan.json").write_text(PLAN.to_json())
    run = dict(cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    out = cli("tune", model, "--shape", "input=1,1,8,8", "--plan", "plan.json", "--trials", "2", "--records",
              "tuned.jsonl", **run)
    assert "measured 4," in out and "user database" in out
    db = json.loads((home / "tuning.json").read_text())["records"]
    assert list(db) == [parse("host").key]  # keyed by the target: the key every build looks up
    tuned = db[parse("host").key]
    assert len(tuned) == 2

    # the tuning records join a training set; the model trained on them is what compile --cost-model uses
    RecordStore(tmp_path / "lab.jsonl").extend(synthetic_records(seed=3, n_layers=12, configs=3, device="lab"))
    cli("cost-model", "train", "--records", "lab.jsonl", "--records", "tuned.jsonl", "--out", "device.json",
        "--rounds", "10", "--quantile-rounds", "5", **run)
    with pytest.warns(UserWarning, match="stay fp32: conv2d_0, conv2d_2"):
        cli("compile", model, "--shape", "input=1,1,8,8", "--plan", "plan.json", "--calibration", "digits",
            "--cost-model", "device.json", "-o", "out", **run)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert "device.json" in report["cost_model"] and "host" in report["cost_model"]
    assert report["latency_basis"] == "modelled" and report["energy_basis"] == "modelled"
    rows = {r["name"]: r for r in report["layers"]}
    keys = [w.key() for w in plan_tasks(tvm_mp.load_onnx(model, shapes={"input": (1, 1, 8, 8)}), PLAN)]
    for name, key in zip(("conv2d_1", "dense_0"), keys):
        assert rows[name]["schedule"] == tuned[key]["config"]  # the built kernel's knobs are the database's
        assert rows[name]["schedule_source"] == "tuned (user database)"
        assert rows[name]["latency_ms"] > 0
    assert rows["conv2d_0"]["schedule"] is None  # left in fp32: no tunable kernel


def test_rpc_tuning_for_aarch64_uploads_aarch64_libraries(digits, tmp_path, monkeypatch):
    # the host cross-links each job with aarch64-linux-gnu-gcc before upload (no network: tracker and session faked)
    import shutil

    import tvm_mp._rpc as rpc_mod
    import tvm_mp.tune as tune_mod
    from tvm_mp.measure.records import RecordStore
    from tvm_mp.tune import RPCConfig

    if shutil.which("aarch64-linux-gnu-gcc") is None:
        pytest.skip("needs gcc-aarch64-linux-gnu")
    uploaded = []

    class Tracker:
        def __init__(self, *a):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        def request(self, key, timeout):
            return "127.0.0.1", 1, key

    class Remote:
        def upload(self, path):
            uploaded.append(open(path, "rb").read(20))

    class Session:
        def call(self, step, fn, timeout, budget):
            return fn(Remote()) if step == "upload" else [0.01, 0.012, 0.011]

        def close(self):
            pass

    monkeypatch.setattr(tune_mod, "_tracker", lambda config: 1)
    monkeypatch.setattr(rpc_mod, "Tracker", Tracker)
    monkeypatch.setattr(rpc_mod, "connect", lambda *a: Session())
    result = tune(digits, PrecisionPlan({"dense_0": Precision(2, 2)}), target="aarch64", rpc=RPCConfig("board"),
                  trials=1, records=tmp_path / "r.jsonl", database=tmp_path / "db.json", progress=False)
    assert result.measured == 1 and len(uploaded) == 1
    assert uploaded[0][:4] == b"\x7fELF" and int.from_bytes(uploaded[0][18:20], "little") == 183  # EM_AARCH64
    (record,) = RecordStore(tmp_path / "r.jsonl").load()
    assert record.source == "rpc" and record.workload.target == "aarch64" and record.unit == "ms"


def test_emulated_tuning_without_qemu_or_its_plugin_is_one_line(digits, tmp_path, monkeypatch):
    import shutil

    from tvm_mp.deploy import emulate
    from tvm_mp.errors import ToolchainError

    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool == "qemu-aarch64" else real_which(tool))
    with pytest.raises(ToolchainError, match=r"^\S+ not found on PATH: apt-get install \S+$") as err:
        tune(digits, PLAN, target="aarch64", records=tmp_path / "r.jsonl", database=tmp_path / "db.json",
             progress=False)
    assert "\n" not in str(err.value) and ("qemu-user" in str(err.value) or "gcc-aarch64" in str(err.value))
    assert not (tmp_path / "r.jsonl").exists()
    # a qemu that cannot load the counting plugin: one line naming the package
    monkeypatch.setattr(shutil, "which", real_which)
    monkeypatch.setattr(emulate, "require", lambda *tools: None)
    monkeypatch.setattr(emulate, "build_plugin", lambda directory: directory / "p.so")

    def fail(cmd, what, **kw):
        raise ToolchainError(f"{what} failed (1): qemu-aarch64: -plugin: unknown option")

    monkeypatch.setattr(emulate, "run_tool", fail)
    with pytest.raises(ToolchainError, match="cannot load tvm-mp's instruction-count plugin.*apt-get install "
                                             "qemu-user") as err:
        emulate.counted(["prog"], lambda reps: [str(reps)], tmp_path)
    assert "\n" not in str(err.value)


def _fake_measure(fail):
    """A stand-in for measure_kernel (no build): fails the configs ``fail(config)`` picks, times the others."""
    import numpy as np

    def measure_kernel(work, config, target, repeat, number, rng):
        if fail(config):
            raise RuntimeError("Traceback (most recent call last):\n  ...\nTVMError: knob out of range")
        return [10.0 + config.oc_block, 11.0], np.zeros(4, np.int32)

    return measure_kernel


@pytest.mark.parametrize("every", [True, False], ids=["all-fail", "some-fail"])
def test_tune_exits_2_when_every_job_fails_and_warns_when_some_do(every, tmp_path, monkeypatch, capsys):
    """Every job failed: one ``tvm-mp: error:`` line with the count and the reason, exit 2, the records kept; some
    failed: exit 0 and one warning line."""
    from tvm_mp.cli import main
    from tvm_mp.schedules import tuning

    monkeypatch.setenv("TVM_MP_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    first: list = []

    def fail(config):
        first.append(config)
        return every or config != first[0]  # the first job of the task (its default config) succeeds

    monkeypatch.setattr(tuning, "measure_kernel", _fake_measure(fail))
    args = ["tune", str(digits_cnn_path()), "--plan", "w2a2", "--shape", "input=1,1,8,8", "--trials", "3",
            "--records", "r.jsonl", "--database", "db.json", "-q"]
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    records = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    failed = [r for r in records if r.get("error")]
    assert failed and all("knob out of range" in r["error"] for r in failed)
    assert len(err) == 1, err
    if every:
        assert code == 2 and len(failed) == len(records)
        assert err[0].startswith(f"tvm-mp: error: all {len(records)} tuning jobs failed ({len(records)} x ")
        assert "knob out of range" in err[0] and "r.jsonl" in err[0]
    else:
        assert code == 0 and len(failed) < len(records)
        assert err[0].startswith(f"tvm-mp: warning: {len(failed)} of {len(records)} tuning jobs failed")
        assert (tmp_path / "db.json").is_file()


def test_a_library_the_device_cannot_load_is_explained():
    from tvm_mp.targets import parse
    from tvm_mp.tune import _device_reason

    raw = ("run on the device at 127.0.0.1:9390 failed: Check failed: (lib_handle_ != nullptr) is false: Failed to "
           "load dynamic shared library /tmp/x/k.so /tmp/x/k.so: cannot open shared object file: No such file")
    why = _device_reason(raw, parse("aarch64"), "localx86")
    assert why.startswith("the device at 127.0.0.1:9390 could not load the aarch64 kernel library")
    assert "'localx86'" in why and "without --key" in why and "\n" not in why
    assert _device_reason("the device froze", parse("aarch64"), "k") == "the device froze"
