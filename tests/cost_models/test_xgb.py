"""XGBoost model: learns a known law on held-out layers, files round-trip in XGBoost JSON, intervals, energy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tvm_mp.cost_models.base import CostModelError, Workload
from tvm_mp.cost_models.train import metrics
from tvm_mp.cost_models.xgb import XGBCostModel

from ._synthetic import synthetic_records

RECORDS = Path(__file__).resolve().parents[2] / "docs" / "data" / "host_kernels.jsonl"
ACCEL_RECORDS = RECORDS.with_name("accel_sim.jsonl")


@pytest.fixture(scope="module")
def split():
    records = synthetic_records(seed=1, n_layers=50, configs=8)
    layers = sorted({r.workload.layer_key for r in records})
    test_layers = set(layers[::5])
    train = [r for r in records if r.workload.layer_key not in test_layers]
    test = [r for r in records if r.workload.layer_key in test_layers]
    return train, test


@pytest.fixture(scope="module")
def model(split):
    return XGBCostModel.fit(split[0], seed=0, rounds=120, quantile_rounds=60)


def test_learns_the_law_on_held_out_layers(model, split):
    test = split[1]
    est = model.predict([r.workload for r in test])
    measured = np.array([r.latency_ms for r in test])
    m = metrics(est.latency_ms, measured, [r.workload.layer_key for r in test])
    assert m.spearman > 0.97 and m.mape_pct < 12
    assert est.energy_basis == "modelled" and np.all(est.energy_uj > 0)
    lo, hi = est.latency_interval_ms[:, 0], est.latency_interval_ms[:, 1]
    assert np.all(lo <= est.latency_ms) and np.all(est.latency_ms <= hi)


def test_save_load_round_trip_in_xgboost_json(model, split, tmp_path):
    import xgboost

    path = model.save(tmp_path / "m.json")
    data = json.loads(path.read_text())
    assert data["format"] == "tvm-mp-xgb-cost-model" and set(data["boosters"]) == {"latency", "latency_q"}
    raw = xgboost.Booster()
    raw.load_model(bytearray(json.dumps(data["boosters"]["latency"]).encode()))  # plain XGBoost reads it
    wls = [r.workload for r in split[1]]
    again = XGBCostModel.load(path)
    np.testing.assert_allclose(again.predict(wls).latency_ms, model.predict(wls).latency_ms, rtol=1e-6)
    data["feature_names"] = data["feature_names"][:-1]
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(CostModelError, match="retrain"):
        XGBCostModel.load(tmp_path / "bad.json")
    with pytest.raises(CostModelError, match="not a tvm-mp"):
        XGBCostModel.from_dict({"format": "other"})


def test_schedule_features_and_weights_round_trip(model, split, tmp_path):
    train, test = split[0][:40], split[1][:10]  # few: the schedule look-ups take milliseconds per layer shape
    weights = np.where(np.arange(len(train)) % 2 == 0, 1.0, 0.25)
    sets = ("schedule", "built")
    m = XGBCostModel.fit(train, seed=0, rounds=20, quantile_rounds=10, feature_sets=sets, weights=weights,
                         counter=model.counter)  # its kernel templates are read already
    wls = [r.workload for r in test]
    again = XGBCostModel.load(m.save(tmp_path / "s.json"))
    assert again.feature_sets == sets and {"algo=direct", "built_pixel_fill"} <= set(again.feature_names)
    np.testing.assert_allclose(again.predict(wls).latency_ms, m.predict(wls).latency_ms, rtol=1e-6)
    with pytest.raises(CostModelError, match="weight"):
        XGBCostModel.fit(train, rounds=2, quantile_rounds=2, weights=weights[:-1], counter=model.counter)


def test_energy_is_learned_from_metered_records():
    records = synthetic_records(seed=2, n_layers=30, configs=6, energy=True, target="llvm", device="board")
    model = XGBCostModel.fit(records[:-20], seed=0, rounds=150, quantile_rounds=40)
    est = model.predict([r.workload for r in records[-20:]])
    assert est.energy_basis == "learned" and est.energy_interval_uj is not None
    measured = np.array([r.energy_uj for r in records[-20:]])
    assert np.median(np.abs(est.energy_uj - measured) / measured) < 0.15
    with pytest.raises(CostModelError, match="at least 10"):
        XGBCostModel.fit(records[:5])


def test_accelerator_records_learn_over_the_mapping_model(tmp_path):
    from tvm_mp.cost_models.train import metrics, shape_folds
    from tvm_mp.measure.records import RecordStore

    # records at an explicit mapping (knobs): the prior needs no mapping search, which keeps the test fast
    records = [r for r in RecordStore(ACCEL_RECORDS).load() if r.workload.knobs]
    train, test = shape_folds(records, 5, seed=0)[0]
    model = XGBCostModel.fit([records[i] for i in train], seed=0, rounds=60, quantile_rounds=10)
    assert model.info["accel_prior"]["hardware"]["name"]
    wls = [records[i].workload for i in test]
    est = XGBCostModel.load(model.save(tmp_path / "accel.json")).predict(wls)
    assert est.energy_basis == "learned"
    groups = [w.layer_key for w in wls]
    energy = metrics(est.energy_uj, np.array([records[i].energy_uj for i in test]), groups)
    latency = metrics(est.latency_ms, np.array([records[i].latency_ms for i in test]), groups)
    assert energy.spearman >= 0.98 and energy.mape_pct <= 5.0, energy
    assert latency.spearman >= 0.98 and latency.mape_pct <= 5.0, latency
    host_only = XGBCostModel.fit(synthetic_records(seed=1, n_layers=12, configs=4), rounds=10, quantile_rounds=5)
    with pytest.raises(CostModelError, match="without accelerator records"):
        host_only.predict(wls[:1])


def test_default_model_is_small_and_ranks_the_shipped_measurements():
    from tvm_mp.measure.records import RecordStore

    path = Path(__file__).resolve().parents[2] / "tvm_mp" / "cost_models" / "default_model.json"
    assert path.stat().st_size < 2_000_000  # 250 trees of depth 7 + the quantile booster, compact JSON
    model = XGBCostModel.default()
    assert "command" in model.info and model.info["records"] >= 500
    records = RecordStore(RECORDS).load()
    est = model.predict([r.workload for r in records])
    measured = np.array([r.latency_ms for r in records])
    assert metrics(est.latency_ms, measured, [r.workload.layer_key for r in records]).spearman > 0.95
    assert model.predict([]).latency_ms.shape == (0,)
    wl = Workload("dense", (1, 9216), (128, 9216), 4, 4)  # fer_cnn's dense_0
    assert 0 < model.predict([wl]).latency_ms[0] < 1e3
    fp16 = Workload("dense", (1, 64), (10, 64), 16, 16, "float", None, exp_bits=5, man_bits=10)
    with pytest.raises(CostModelError, match="XGBCostModel cannot cost kind 'float'"):
        model.predict([wl, fp16])
