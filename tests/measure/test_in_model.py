"""Model records (a built model timed whole and call by call) and in-model timing of a real built model."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from tvm_mp.cost_models.base import Workload
from tvm_mp.cost_models.whole_model import ModelCall, RuntimeCalls
from tvm_mp.measure.records import (
    ModelRecord,
    PartialRecordWarning,
    Record,
    RecordError,
    RecordStore,
    normalize_models,
)

DENSE = Workload("dense", (1, 64), (10, 64), 4, 4, "packed", None, "float")
CALLS = RuntimeCalls((
    ModelCall("tvm_mp_dense_0_quantize", "quantize", [(1, 64), (1, 64)], ["float32", "uint8"], "dense_0"),
    ModelCall("tvm_mp_dense_0_kernel", "layer", [(1, 64), (10, 32), (1, 10)], ["uint8", "uint8", "float32"],
              "dense_0", DENSE),
), 1)


def model_record(name="net", plan=None, whole=(0.02, 0.021, 0.019), ref=(0.1, 0.1)):
    return ModelRecord(name, plan or {"dense_0": "w4a4"}, CALLS, (0.001, 0.015), whole, call_spread_ms=(1e-4, 1e-3),
                       meta={"reference_ms": list(ref), "group": "random"})


def test_model_record_checks_key_and_layer_records():
    rec = model_record()
    assert rec.key == "model;net;dense_0=w4a4;llvm;host"
    assert rec.latency_ms == pytest.approx(0.02) and rec.reference_ms == pytest.approx(0.1)
    (layer,) = rec.layer_records()
    assert layer.workload == DENSE and layer.latency_ms == pytest.approx(0.015)
    assert layer.meta["context"] == "model" and layer.meta["origins"] == ["net/dense_0"]
    with pytest.raises(RecordError, match="2 calls but 1 call times"):
        ModelRecord("net", {"dense_0": "w4a4"}, CALLS, (0.001,), (0.02,))
    with pytest.raises(RecordError, match="whole-model sample"):
        ModelRecord("net", {"dense_0": "w4a4"}, CALLS, (0.001, 0.01), ())
    with pytest.raises(RecordError, match="plan"):
        ModelRecord("net", {}, CALLS, (0.001, 0.01), (0.02,))


def test_model_records_round_trip_and_stay_out_of_layer_stores(tmp_path):
    path = tmp_path / "models.jsonl"
    store = RecordStore(path, record_type=ModelRecord)
    store.extend([model_record(), model_record(plan={"dense_0": "w8a8"}), model_record(whole=(0.03,))])
    loaded = store.load()
    assert len(loaded) == 2  # the same model and plan twice: the newest kept
    assert {r.plan_text for r in loaded} == {"dense_0=w4a4", "dense_0=w8a8"}
    assert next(r for r in loaded if r.plan_text == "dense_0=w4a4").latency_ms == pytest.approx(0.03)
    assert loaded[0].calls == CALLS
    with pytest.raises(RecordError, match="stores ModelRecord"):
        store.append(Record(DENSE, (1.0,), "local"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert RecordStore(path).load() == []  # a layer store skips model lines, with a warning
    assert any(issubclass(w.category, PartialRecordWarning) for w in caught)
    with pytest.raises(RecordError, match="not a model record"):
        ModelRecord.from_dict(json.loads(Record(DENSE, (1.0,), "local").to_line()))


def test_normalize_models_puts_records_on_one_speed_scale():
    fast, slow = model_record(ref=(0.1, 0.1)), model_record("other", ref=(0.2, 0.2))
    a, b = normalize_models([fast, slow], nominal_ms=0.1)
    assert a.latency_ms == pytest.approx(fast.latency_ms)
    assert b.latency_ms == pytest.approx(slow.latency_ms / 2) and b.call_ms[1] == pytest.approx(0.0075)
    assert b.meta["speed_factor"] == 0.5


@pytest.mark.slow
def test_digits_model_timed_inside_and_predicted():
    """End to end on the digits CNN: the calls listed from the lowered module are the ones the executable makes
    (checked by the timing itself), the record adds up, and the shipped predictor is within a loose factor."""
    import tvm_mp
    from tvm_mp.cost_models.whole_model import WholeModel
    from tvm_mp.measure.in_model import InModelSource, InModelTiming, model_calls
    from tvm_mp.models import digits_cnn_path

    mod = tvm_mp.load_onnx(str(digits_cnn_path()), shapes={"input": (1, 1, 8, 8)})
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (1, 1, 8, 8)).astype(np.float32)
    plan = tvm_mp.PrecisionPlan({"conv2d_0": "w8a8", "conv2d_1": "w2a2", "conv2d_2": "w4a4", "dense_0": "w4a8"})
    model = tvm_mp.compile(mod, plan, calibration=[x])
    calls = model_calls(model)
    assert [c.role for c in calls.calls] == ["quantize", "layer", "layer", "op", "layer", "op", "layer"]
    assert [c.workload.epilogue for c in calls.calls if c.role == "layer"] == ["requant"] * 3 + ["float"]
    record = InModelSource(InModelTiming(rounds=2, runs_per_round=3, reference=False)).measure(model, [x], "digits")
    assert record.calls == calls and len(record.call_ms) == 7 and len(record.whole_samples_ms) == 2
    assert 0.3 < sum(record.call_ms) / record.latency_ms < 3
    predicted = WholeModel.default().predict_calls(calls).total_ms
    assert 0.25 < predicted / record.latency_ms < 4, (predicted, record.latency_ms)
