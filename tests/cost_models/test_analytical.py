"""Roofline model: first-principles form, calibration recovers known parameters, predict interface."""

from __future__ import annotations

import numpy as np
import pytest

from tvm_mp.cost_models.analytical import AnalyticalModel, RooflineParams
from tvm_mp.cost_models.base import CostModelError, Estimate, Workload
from tvm_mp.cost_models.features import BLOCK_CLASSES, OP_CLASSES, KernelCounter
from tvm_mp.measure.records import Record
from tvm_mp.workload import ConvParams

COUNTER = KernelCounter()


def workloads(rng, n):
    out = []
    for _ in range(n):
        c, oc, h = int(rng.integers(1, 64)), int(rng.integers(1, 64)), int(rng.integers(3, 30))
        out.append(Workload("conv2d", (1, c, h, h), (oc, c, 3, 3), int(rng.integers(1, 9)), int(rng.integers(1, 9)),
                            str(rng.choice(["bitserial", "packed"])), ConvParams((1, 1), (1, 1, 1, 1)),
                            str(rng.choice(["acc", "float", "requant"]))))
    return out


def test_first_principles_latency():
    params = RooflineParams.first_principles("x", clock_ghz=2.0, ops_per_cycle=1.0, overhead_us=1.0,
                                             l2_gbps=1e9, dram_gbps=1e9)
    wl = Workload("dense", (1, 64), (10, 64), 8, 8, "packed", None, "acc")
    ev = COUNTER.events([wl])
    ops = sum(int(ev[op][0]) for op in OP_CLASSES)
    model = AnalyticalModel({"x86_64": params}, counter=COUNTER)
    assert model.latency_ms([wl])[0] == pytest.approx((1000 + ops * 0.5) / 1e6)


def test_calibration_recovers_known_parameters():
    rng = np.random.default_rng(0)
    truth = RooflineParams("x86_64", 3.0, {c: 0.1 * (i + 1) for i, c in enumerate(BLOCK_CLASSES)}, 0.0, 1e9, 1e9)
    wls = workloads(rng, 200)
    lat = truth.latency_ns(COUNTER.events(wls)) / 1e6
    records = [Record(w, (t,), "local") for w, t in zip(wls, lat)]
    fitted = AnalyticalModel.calibrated(records, AnalyticalModel({"x86_64": truth}, counter=COUNTER))
    params = fitted.roofline["x86_64"]
    assert params.overhead_us == pytest.approx(3.0, rel=1e-3)
    for c in ("bitpack", "popcount_acc", "packed_acc", "epilogue"):
        assert params.ns_per_point[c] == pytest.approx(truth.ns_per_point[c], rel=1e-3)
    assert np.allclose(fitted.latency_ms(wls), lat, rtol=1e-3)


def test_predict_gives_modelled_energy_and_refuses_unknown_targets():
    model = AnalyticalModel(counter=COUNTER)
    est = model.predict(workloads(np.random.default_rng(1), 5))
    assert isinstance(est, Estimate) and est.energy_basis == "modelled" and len(est) == 5
    assert np.all(est.latency_ms > 0) and np.all(est.energy_uj > 0)
    with pytest.raises(CostModelError, match="no roofline parameters"):
        model.latency_ms([Workload("dense", (1, 64), (10, 64), 4, 4, target="accel")])
    with pytest.raises(CostModelError, match="positive bandwidth"):
        RooflineParams("x", 1.0, dram_gbps=0.0)
    assert AnalyticalModel.from_dict(model.to_dict()).to_dict() == model.to_dict()
