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


# ---- number formats: AnalyticalModel refuses them, DatapathModel costs every kind on one scale --------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tvm_mp.cost_models.analytical import DatapathModel, DatapathParams  # noqa: E402
from tvm_mp.formats.energy import EnergyFigures, layer_energy  # noqa: E402
from tvm_mp.layers import LayerInfo  # noqa: E402
from tvm_mp.precision import Precision  # noqa: E402

_PRECISIONS = st.one_of(
    st.builds(Precision, st.integers(1, 8), st.integers(1, 8), st.sampled_from(["auto", "bitserial", "packed"])),
    st.builds(Precision.float, st.integers(2, 8), st.integers(0, 11)),
    st.builds(Precision.clustered, st.integers(2, 64), st.integers(1, 8)))


def test_analytical_model_refuses_format_kinds():
    wl = Workload("dense", (1, 64), (10, 64), 8, 8, "float", None, exp_bits=4, man_bits=3, finite=True)
    ok = Workload("dense", (1, 64), (10, 64), 8, 8)
    with pytest.raises(CostModelError, match="AnalyticalModel cannot cost kind 'float'"):
        AnalyticalModel(counter=COUNTER).predict([ok, wl])


@settings(max_examples=40, deadline=None)
@given(prec=_PRECISIONS, c=st.integers(1, 24), oc=st.integers(1, 24), h=st.integers(3, 12), dense=st.booleans())
def test_datapath_energy_is_the_formats_layer_energy_for_every_kind(prec, c, oc, h, dense):
    if dense:
        layer = LayerInfo("l", "dense", (1, c * h), (oc, c * h), (1, oc), None, False, oc * c * h, oc * c * h)
    else:
        p = ConvParams((1, 1), (1, 1, 1, 1))
        layer = LayerInfo("l", "conv2d", (1, c, h, h), (oc, c, 3, 3), (1, oc, h, h), p, False, oc * h * h * c * 9,
                          oc * c * 9)
    wl = Workload.from_layer(layer, prec)
    est = DatapathModel().predict([wl])
    assert est.energy_basis == "modelled"
    assert est.energy_uj[0] == pytest.approx(layer_energy(layer, prec, EnergyFigures()).energy_uj, rel=1e-12)
    params = DatapathParams()
    bits = DatapathModel().bits_moved([wl])[0]
    expect_ns = max(layer.macs / (params.macs_per_cycle * params.clock_ghz), bits / 8 / params.sram_gbps)
    assert est.latency_ms[0] == pytest.approx(expect_ns / 1e6, rel=1e-12)


def test_datapath_orders_formats_by_their_datapath_cost():
    wl = Workload("dense", (1, 256), (64, 256), 8, 8)
    est = DatapathModel().predict([wl.replace(w_bits=w, a_bits=a, kind=k, **f) for w, a, k, f in [
        (16, 16, "float", dict(exp_bits=5, man_bits=10)), (8, 8, "float", dict(exp_bits=4, man_bits=3, finite=True)),
        (8, 8, "packed", {}), (4, 4, "packed", {}), (4, 8, "clustered", dict(clusters=16))]])
    fp16, fp8, w8a8, w4a4, k16 = est.energy_uj
    assert fp16 > fp8 > w8a8 > w4a4 and w8a8 > k16 > w4a4
    with pytest.raises(CostModelError, match="macs_per_cycle"):
        DatapathParams(macs_per_cycle=0)
