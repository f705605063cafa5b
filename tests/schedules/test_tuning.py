"""Tuning: the search keeps the fastest exact config, and builds reuse the database without re-tuning."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tvm_mp.errors import Error
from tvm_mp.schedules import kernels, registry, tuning
from tvm_mp.targets import parse
from tvm_mp.workload import ConvParams

HOST = parse("host").tvm_target
WORK = registry.ConvWorkload("conv2d", "bitserial", 2, 2, (1, 8, 6, 6), (8, 8, 3, 3),
                             ConvParams((1, 1), (1, 1, 1, 1), (1, 1), 1))


def test_tune_stores_and_builds_reuse(tmp_path):
    db = tuning.TuningDatabase(tmp_path / "db.json")
    best, latency_us = tuning.tune_conv(WORK, HOST, db, max_trials=3, rng=np.random.default_rng(0))
    assert latency_us > 0 and registry.legal(best, WORK)
    path = db.save()
    reloaded = tuning.TuningDatabase.load(path)
    assert reloaded.get(WORK, HOST) == best
    assert reloaded.latency_us(WORK, HOST) == pytest.approx(latency_us, rel=1e-3)
    # a build with this database uses the stored config (no tuning), whatever the defaults are
    forced = registry.KernelConfig("im2col", lanes=8, oc_block=2, p_unroll=1, parallel=False)
    reloaded.put(WORK, HOST, forced, 1.0)
    assert kernels.conv2d_config(WORK, HOST, reloaded) == forced
    # another target is a different record
    assert reloaded.get(WORK, parse("aarch64").tvm_target) is None


def test_database_keys_by_target_and_workload(tmp_path):
    db = tuning.TuningDatabase(tmp_path / "db.json")
    cfg = registry.KernelConfig("direct", lanes=16)
    db.put(WORK, HOST, cfg, 3.0)
    data = json.loads(db.save().read_text())
    assert data["format"] == 1
    (key,) = data["records"]
    assert key == tuning.target_key(HOST) and WORK.key() in data["records"][key]


def test_broken_database_is_a_one_line_error(tmp_path):
    bad = tmp_path / "db.json"
    bad.write_text("{not json")
    with pytest.raises(Error, match="delete it to re-tune"):
        tuning.TuningDatabase.load(bad)


def test_missing_database_is_empty(tmp_path):
    assert tuning.TuningDatabase.load(tmp_path / "none.json").get(WORK, HOST) is None
