"""``tvm-mp tune --target aarch64`` without a device: jobs cross-compiled and counted under qemu-aarch64
("emulated instructions", never a time); the records train a cost model whose predictions are counts."""

from __future__ import annotations

import json

import pytest

from tvm_mp import Precision, PrecisionPlan
from tvm_mp.measure.records import EMULATED_UNIT, RecordStore
from tvm_mp.models import digits_cnn_path
from tvm_mp.targets import parse

pytestmark = pytest.mark.external


def test_tune_aarch64_counts_emulated_instructions(arm_tools, tmp_path, monkeypatch, capsys):
    from tvm_mp.cli import main

    home = tmp_path / "home"
    monkeypatch.setenv("TVM_MP_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plan.json").write_text(PrecisionPlan({"dense_0": Precision(2, 2)}).to_json())
    assert main(["tune", str(digits_cnn_path()), "--shape", "input=1,1,8,8", "--plan", "plan.json", "--target",
                 "aarch64", "--trials", "2", "--records", "r.jsonl", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "measured 2," in out and "emulated instructions" in out and " us " not in out
    records = RecordStore(tmp_path / "r.jsonl").load()
    assert len(records) == 2 and all(r.unit == EMULATED_UNIT and r.instructions > 100 for r in records)
    assert all(r.source == "emulator" and r.workload.target == "aarch64" for r in records)
    line = json.loads((tmp_path / "r.jsonl").read_text().splitlines()[0])
    assert line["unit"] == EMULATED_UNIT and line["latency_samples_ms"] == []
    (entry,) = json.loads((home / "tuning.json").read_text())["records"][parse("aarch64").key].values()
    assert entry["emulated_instructions"] == min(r.instructions for r in records) and "latency_us" not in entry


def test_a_whole_model_emulated_gives_per_layer_records(arm_tools, tmp_path):
    import numpy as np

    import tvm_mp
    from tvm_mp.measure.emulated import model_records

    mod = tvm_mp.load_onnx(digits_cnn_path(), shapes={"input": (1, 1, 8, 8)})
    calib = [np.random.default_rng(0).normal(0, 1, (1, 1, 8, 8)).astype(np.float32)]
    cm = tvm_mp.compile(mod, plan=PrecisionPlan.uniform(mod, Precision(4, 4)), calibration=calib, target="aarch64")
    figures, records = model_records(cm, calib[0], name="digits")
    assert figures["equals_reference"] and figures["instructions_basis"].startswith("emulated instructions")
    assert sorted(r.meta["origins"][0] for r in records) == [f"digits/{n}" for n in
                                                             ("conv2d_0", "conv2d_1", "conv2d_2", "dense_0")]
    assert all(r.unit == EMULATED_UNIT and r.workload.target == "aarch64" for r in records)
    assert 0 < sum(r.instructions for r in records) < figures["instructions"]
    RecordStore(tmp_path / "m.jsonl").extend(records)  # the file cost-model train --records takes
    assert len(RecordStore(tmp_path / "m.jsonl").load()) == 4
