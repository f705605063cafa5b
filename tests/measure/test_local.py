"""Host measurement: the kernel measured is the real one (exact result), records carry samples and meta."""

from __future__ import annotations

import numpy as np
import pytest

from tvm_mp import _tvm
from tvm_mp.cost_models.base import CostModelError, Workload
from tvm_mp.measure.local import LocalSource, build, kernel_arguments, weight_storage_shape
from tvm_mp.measure.source import TimingConfig
from tvm_mp.quantize import packing, reference
from tvm_mp.workload import ConvParams

FAST = TimingConfig(repeat=3, min_repeat_ms=1.0, max_attempts=1, reference=False)


@pytest.mark.parametrize("kind, w_bits", [("bitserial", 1), ("bitserial", 3), ("packed", 2), ("packed", 8)])
def test_measured_kernel_computes_the_reference_exactly(kind, w_bits):
    wl = Workload("conv2d", (1, 6, 7, 7), (4, 3, 3, 3), w_bits, 3, kind, ConvParams((1, 2), (1, 0, 1, 1), (1, 1), 2),
                  "acc")
    args = kernel_arguments(wl, np.random.default_rng(0))
    assert args[1].shape == weight_storage_shape(wl)
    if kind == "bitserial":
        w_q = packing.unpack_bitplanes(args[1], w_bits, wl.reduction)
    else:
        w_q = packing.unpack_dense(args[1], w_bits, wl.reduction)
    w_q = w_q.reshape(wl.weight_shape)
    module = build(wl)
    out = _tvm.to_device(args[-1])
    module["tvm_mp_measured"](*[_tvm.to_device(a) for a in args[:-1]], out)
    expected = reference.conv2d_acc(args[0], w_q, wl.params, (1 << wl.a_bits) // 2)
    np.testing.assert_array_equal(out.numpy(), expected)


def test_local_source_records():
    wls = [Workload("dense", (1, 64), (10, 64), 2, 2, "bitserial", None, "float"),
           Workload("depthwise_conv2d", (1, 8, 9, 9), (8, 1, 3, 3), 4, 8, "packed", ConvParams((1, 1), (1, 1, 1, 1),
                                                                                                 (1, 1), 8), "requant"),
           Workload("dense", (1, 64), (10, 64), 4, 4, target="aarch64")]
    records = LocalSource(FAST).measure(wls)
    assert [r.workload for r in records] == wls
    ok, arm = records[:2], records[2]
    for rec in ok:
        assert rec.error is None and rec.source == "local" and len(rec.latency_samples_ms) == 3
        assert 0 < rec.latency_ms < 1000 and rec.meta["repeat"] == 3 and rec.meta["number"] >= 1
        assert rec.meta["threads"] >= 1 and len(rec.meta["kernel"]) == 16
    assert arm.error is not None and "RPC" in arm.error
    with pytest.raises(CostModelError, match="device"):
        LocalSource(FAST).measure([wls[0].replace(device="board")])
    with pytest.raises(CostModelError, match="max_attempts"):
        TimingConfig(max_attempts=0)


def test_reference_kernel_times_are_recorded_and_normalize(monkeypatch):
    from tvm_mp.measure import local
    from tvm_mp.measure.records import nominal_reference_ms, normalize_latency

    warm_up = local._Reference.warm_up
    monkeypatch.setattr(local._Reference, "warm_up", lambda self: warm_up(self, max_s=0.5, settled=2))
    timing = TimingConfig(repeat=3, min_repeat_ms=1.0, max_attempts=1, reference_waits=1)
    wls = [Workload("dense", (1, 64), (10, 64), 2, 2, "bitserial", None, "acc"),
           Workload("dense", (1, 128), (16, 128), 4, 4, "packed", None, "acc")]
    recs = LocalSource(timing).measure(wls)
    for rec in recs:
        before, after = rec.meta["reference_ms"]
        assert rec.error is None and before > 0 and after > 0
        assert rec.reference_ms == pytest.approx((before * after) ** 0.5)
    nominal = nominal_reference_ms(recs)
    assert min(r.reference_ms for r in recs) <= nominal <= max(r.reference_ms for r in recs)
    scaled = normalize_latency(recs, nominal_ms=2 * recs[0].reference_ms)
    assert scaled[0].latency_ms == pytest.approx(2 * recs[0].latency_ms) and scaled[0].meta["speed_factor"] == 2.0
    unreferenced = LocalSource(FAST).measure(wls[:1])
    assert "reference_ms" not in unreferenced[0].meta and normalize_latency(unreferenced) == unreferenced
    with pytest.raises(CostModelError, match="reference"):
        TimingConfig(reference_tolerance=-1.0)
