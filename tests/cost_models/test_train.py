"""Training and evaluation: metrics, splits that never share a layer, the command line end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tvm_mp.cost_models import train as T
from tvm_mp.measure import collect as C
from tvm_mp.measure.cost_model_cli import main
from tvm_mp.measure.records import RecordStore

from ._synthetic import synthetic_records


def test_metrics_exact_values():
    measured = np.array([1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0])
    predicted = np.array([1.1, 1.8, 3.3, 4.0, 40.0, 30.0, 20.0, 10.0])
    groups = ["a"] * 4 + ["b"] * 4
    m = T.metrics(predicted, measured, groups, k=2)
    assert m.mape_pct == pytest.approx(100 * np.mean(np.abs(predicted - measured) / measured))
    assert m.topk_recall == pytest.approx(0.5)  # group a: both of the 2 fastest found; group b: none
    assert m.layers == 2 and m.count == 8
    perfect = T.metrics(measured * 2, measured, groups, k=2)
    assert perfect.spearman == pytest.approx(1.0) and perfect.mape_pct == pytest.approx(100.0)
    assert perfect.topk_recall == 1.0
    with pytest.raises(T.CostModelError):
        T.metrics(np.ones(3), np.ones(2), ["a"] * 3)


def test_splits_hold_out_whole_layers_and_whole_models():
    records = synthetic_records(seed=3, n_layers=30, configs=4)
    keys = np.array([r.workload.layer_key for r in records])
    folds = T.shape_folds(records, 5, seed=0)
    covered = np.concatenate([te for _, te in folds])
    assert sorted(covered) == list(range(len(records)))
    for train, test in folds:
        assert not set(keys[train]) & set(keys[test])
    by_model = T.model_folds(records)
    assert set(by_model) == {"model0", "model1", "model2"}
    for name, (train, test) in by_model.items():
        assert not set(keys[train]) & set(keys[test])
        model_shapes = {r.workload.layer_key for r in records
                        if any(o.startswith(name + "/") for o in r.meta["origins"])}
        assert set(keys[test]) == model_shapes


def test_collection_plan_is_deterministic_and_distinct():
    rng = np.random.default_rng(0)
    shapes = C.random_layer_shapes(rng, 20, min_macs=1e3, max_macs=1e6)
    for s in shapes:
        wl = C.layer_workload(s, 4, 4, "packed", "acc")
        assert wl.macs == s.macs
        assert 1e3 <= wl.macs <= 1e6
    plan_a = C.collection_plan(np.random.default_rng(1), [], shapes, configs_per_random_layer=4)
    plan_b = C.collection_plan(np.random.default_rng(1), [], shapes, configs_per_random_layer=4)
    assert [w.key for w, _ in plan_a] == [w.key for w, _ in plan_b]
    assert len({w.key for w, _ in plan_a}) == len(plan_a)


def test_command_line_train_and_eval(tmp_path, capsys):
    path = tmp_path / "records.jsonl"
    RecordStore(path).extend(synthetic_records(seed=4, n_layers=30, configs=6))
    out = tmp_path / "model.json"
    assert main(["train", "--records", str(path), "--out", str(out), "--rounds", "30",
                   "--quantile-rounds", "10"]) == 0
    assert out.exists()
    report = tmp_path / "report"
    assert main(["eval", "--records", str(path), "--rounds", "30", "--quantile-rounds", "10",
                   "--report-dir", str(report)]) == 0
    table = (report / "table.md").read_text()
    assert "held-out layer shapes" in table and "held-out models" in table and "analytical" in table
    data = json.loads((report / "metrics.json").read_text())
    assert data["held-out layer shapes"]["latency"]["xgboost"]["count"] > 0
    assert "analytical (calibrated, relative error)" in data["held-out layer shapes"]["latency"]
    assert (report / "scatter.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["eval", "--records", str(path), "--model", str(out)]) == 0
    assert "xgboost" in capsys.readouterr().out
    assert main(["train", "--records", str(tmp_path / "none.jsonl"), "--out", str(out)]) == 2
