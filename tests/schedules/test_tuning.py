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


DENSE = kernels.dense_workload("packed", 4, 4, (1, 64), (10, 64))


def test_dense_layers_are_tuned_and_reused(tmp_path):
    db = tuning.TuningDatabase(tmp_path / "db.json")
    best, latency_us = tuning.tune_conv(DENSE, HOST, db, max_trials=2, rng=np.random.default_rng(0))
    assert best.algorithm == "dense" and latency_us > 0
    assert kernels.config_for(DENSE, HOST, tuning.TuningDatabase.load(db.save())) == (best, "tuned (db.json)")


def test_keys_written_by_older_versions_are_read(tmp_path):
    """A database keyed the old way (no triple for the host, or the full triple) is found under the target's key."""
    cfg = registry.KernelConfig("im2col", lanes=8, oc_block=2, p_unroll=1, parallel=False)
    entry = {WORK.key(): {"config": cfg.to_dict(), "latency_us": 1.0}}
    target = parse("host")
    old = {"records": {f"llvm||{target.mcpu}|": entry,
                       f"llvm|{tuning.parse('llvm').triple}||": {DENSE.key(): entry[WORK.key()]}}}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    db = tuning.TuningDatabase.load(path)
    assert db.get(WORK, HOST) == cfg
    assert set(db.records) == {target.key, parse("llvm").key}


def test_stack_reads_in_order_and_names_the_source(tmp_path):
    a, b = registry.KernelConfig("im2col", lanes=8), registry.KernelConfig("direct", lanes=8)
    user = tuning.TuningDatabase(tmp_path / "u.json", label=tuning.USER)
    shipped = tuning.TuningDatabase(tmp_path / "s.json", label=tuning.SHIPPED)
    shipped.put(WORK, HOST, b, 2.0)
    stack = tuning.DatabaseStack((user, shipped))
    assert kernels.config_for(WORK, HOST, stack) == (b, tuning.SHIPPED)
    user.put(WORK, HOST, a, 1.0)
    assert kernels.config_for(WORK, HOST, stack) == (a, tuning.USER)
    default = registry.lookup(WORK.op, WORK.kind, HOST).default(WORK, HOST)
    assert kernels.config_for(WORK, HOST, False) == (default, tuning.DEFAULT)
    assert kernels.config_for(DENSE, HOST, stack)[1] == tuning.DEFAULT
    # an entry whose algorithm cannot compute the workload is not used
    user.put(DENSE, HOST, a, 1.0)
    assert kernels.config_for(DENSE, HOST, stack)[1] == tuning.DEFAULT


def test_default_databases_are_the_user_one_then_the_shipped_one(tmp_path, monkeypatch):
    monkeypatch.setenv("TVM_MP_HOME", str(tmp_path))
    stack = tuning.resolve(None)
    assert [db.path for db in stack.databases] == [tmp_path / "tuning.json", tuning.DEFAULT_DATABASE]
    assert [db.source for db in stack.databases] == [tuning.USER, tuning.SHIPPED]


@pytest.mark.parametrize("database,needle", [("missing.json", "not found"), (3, "TuningDatabase, a path or False")])
def test_bad_database_arguments_are_one_line(database, needle, tmp_path):
    if isinstance(database, str):
        database = tmp_path / database
    with pytest.raises(Error, match=needle):
        tuning.resolve(database)


@pytest.mark.parametrize("text,needle", [
    ('{"records": []}', "not a tuning database"),
    ('{"records": {"k": {"w": {"config": {"bogus": 1}}}}}', "damaged"),  # no latency_us
    ('{"records": {"k": {"w": {"config": {"bogus": 1}, "latency_us": 1.0}}}}', None)])
def test_foreign_or_damaged_database_is_one_line(text, needle, tmp_path):
    path = tmp_path / "db.json"
    path.write_text(text)
    if needle:
        with pytest.raises(Error, match=needle):
            tuning.TuningDatabase.load(path)
        return
    db = tuning.TuningDatabase.load(path)
    db.records = {tuning.target_key(HOST): {WORK.key(): {"config": {"bogus": 1}, "latency_us": 1.0}}}
    with pytest.raises(Error, match="bad entry"):
        db.get(WORK, HOST)
