"""The source interface: the simulator as a source, measure_into (flushed per record, resumable)."""

from __future__ import annotations

import pytest

from tvm_mp.cost_models.base import CostModelError, MeasuredModel, Workload
from tvm_mp.errors import UnsupportedError
from tvm_mp.measure.records import RecordStore
from tvm_mp.measure.source import (
    LayerSimulator,
    MeasureSource,
    SimulatedLayer,
    SimulatorSource,
    accel_simulator,
    measure_into,
)


class FakeSimulator:
    """Cycles = MACs / 64 at 100 MHz; energy = 0.5 pJ per MAC; fails on 1-bit activations."""

    def __init__(self):
        self.calls = 0

    def simulate_layer(self, workload):
        self.calls += 1
        if workload.a_bits == 1:
            raise ValueError("unsupported precision")
        return SimulatedLayer(max(1, workload.macs // 64), 100.0, workload.macs * 0.5e-6, {"macs": workload.macs})


def wl(a_bits=8, k=256):
    return Workload("dense", (1, k), (16, k), 8, a_bits, "packed", None, "acc", target="accel", device="accel-sim")


def test_simulator_source_turns_cycles_and_events_into_records():
    source = SimulatorSource(FakeSimulator())
    assert isinstance(source, MeasureSource) and isinstance(FakeSimulator(), LayerSimulator)
    good, bad = source.measure([wl(), wl(a_bits=1)])
    assert good.latency_ms == pytest.approx((16 * 256 // 64) / 100e3)
    assert good.energy_uj == pytest.approx(16 * 256 * 0.5e-6) and good.energy_basis == "simulated"
    assert good.events == {"macs": 16 * 256.0} and good.meta["cycles"] == 64
    assert bad.error is not None and "unsupported precision" in bad.error
    est = MeasuredModel(SimulatorSource(FakeSimulator())).predict([wl(), wl(k=512)])
    assert est.energy_basis == "simulated" and est.energy_uj[1] == pytest.approx(2 * est.energy_uj[0])
    with pytest.raises(CostModelError, match="failed"):
        MeasuredModel(source).predict([wl(a_bits=1)])


def test_measure_into_appends_each_record_and_resumes(tmp_path):
    store = RecordStore(tmp_path / "sim.jsonl")
    sim = FakeSimulator()
    seen = []
    measure_into(SimulatorSource(sim), [wl(k=k) for k in (32, 64)], store, progress=lambda r: seen.append(
        len(store.load())))
    assert seen == [1, 2]  # each record is in the file before the next is measured
    measure_into(SimulatorSource(sim), [wl(k=k) for k in (32, 64, 128)], store)
    assert sim.calls == 3 and len(store.load()) == 3


def test_simulated_layer_validation_and_accel_adapter():
    with pytest.raises(CostModelError, match="cycles"):
        SimulatedLayer(0, 100.0, 1.0)
    with pytest.raises(CostModelError, match="simulate_layer"):
        SimulatorSource(object())
    try:
        sim = accel_simulator()
    except UnsupportedError as err:
        assert "tvm_mp.accel" in str(err)
        return
    # the accelerator package is there: a planned workload (a mapping named by knobs) simulates
    import numpy as np

    from tvm_mp.layers import LayerInfo
    from tvm_mp.measure.collect import accel_plan

    shape = LayerInfo.from_shapes("test/dense_0", "dense", (1, 64), (16, 64))
    plan = accel_plan(np.random.default_rng(0), [shape], configs_per_layer=1, mappings_per_config=1)
    assert len(plan) == 2 and plan[0][1] == ["test/dense_0"]
    records = SimulatorSource(sim).measure([w for w, _ in plan])
    for rec in records:
        assert rec.error is None, rec.error
        assert rec.energy_basis == "simulated" and rec.energy_uj > 0 and rec.latency_ms > 0
