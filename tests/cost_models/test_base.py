"""Workload and Estimate: validation with messages that say the fix, keys, conversions."""

from __future__ import annotations

import numpy as np
import pytest

from tvm_mp.cost_models.base import CostModel, CostModelError, Estimate, MeasuredModel, Workload, target_family
from tvm_mp.layers import LayerInfo
from tvm_mp.precision import Precision
from tvm_mp.workload import ConvParams

P = ConvParams((1, 1), (1, 1, 1, 1))


def test_auto_kind_resolves_like_precision():
    assert Workload("dense", (1, 64), (10, 64), 2, 2).kind == "bitserial"
    assert Workload("dense", (1, 64), (10, 64), 4, 4).kind == "packed"
    assert Workload("dense", (1, 64), (10, 64), 4, 4, "bitserial").kind == "bitserial"


@pytest.mark.parametrize("kwargs, message", [
    (dict(op="pool"), "unknown"),
    (dict(w_bits=9), "out of range"),
    (dict(kind="fast"), "kind"),
    (dict(epilogue="relu"), "epilogue"),
    (dict(input_shape=(1, 7, 10, 10)), "input channels"),
    (dict(params=None), "needs params"),
    (dict(input_shape=(1, 8, 1, 1), params=ConvParams((1, 1), (0, 0, 0, 0))), "empty output"),
    (dict(knobs={"tile": [1, 2]}), "knob"),
    (dict(device=""), "device key"),
    (dict(input_shape=(1, 8, 0, 10)), "non-positive"),
])
def test_invalid_workloads_are_refused(kwargs, message):
    base = dict(op="conv2d", input_shape=(1, 8, 10, 10), weight_shape=(16, 8, 3, 3), w_bits=4, a_bits=4,
                params=P)
    base.update(kwargs)
    with pytest.raises(CostModelError, match=message):
        Workload(**base)


def test_dense_and_depthwise_checks():
    with pytest.raises(CostModelError, match="same K"):
        Workload("dense", (1, 64), (10, 32), 4, 4)
    with pytest.raises(CostModelError, match="no conv params"):
        Workload("dense", (1, 64), (10, 64), 4, 4, params=P)
    with pytest.raises(CostModelError, match="depthwise"):
        Workload("depthwise_conv2d", (1, 8, 10, 10), (8, 8, 3, 3), 4, 4, params=P)
    dw = Workload("depthwise_conv2d", (1, 8, 10, 10), (8, 1, 3, 3), 4, 4,
                  params=ConvParams((2, 2), (0, 0, 1, 1), (1, 1), 8))
    assert dw.output_shape == (1, 8, 5, 5)
    assert dw.macs == 8 * 25 * 9


def test_keys_are_deterministic_and_layer_key_ignores_precision():
    a = Workload("conv2d", (1, 8, 10, 10), (16, 8, 3, 3), 4, 4, params=P, knobs={"b": 1, "a": 2})
    b = Workload("conv2d", (1, 8, 10, 10), (16, 8, 3, 3), 4, 4, params=P, knobs={"a": 2, "b": 1})
    c = a.replace(w_bits=2, kind="bitserial", epilogue="acc")
    assert a.key == b.key and a == b and hash(a) == hash(b)
    assert a.key != c.key and a.layer_key == c.layer_key
    assert Workload.from_dict(a.to_dict()) == a


def test_from_layer():
    layer = LayerInfo("conv2d_3", "conv2d", (1, 16, 32, 32), (32, 16, 3, 3), (1, 32, 16, 16),
                      ConvParams((2, 2), (1, 1, 1, 1)), True, 1179648, 4608)
    wl = Workload.from_layer(layer, Precision(2, 2))
    assert wl.output_shape == layer.output_shape and wl.macs == layer.macs and wl.kind == "bitserial"
    with pytest.raises(CostModelError, match="Precision"):
        Workload.from_layer(layer, "w2a2")


def test_target_family():
    assert target_family("llvm") == "x86_64"
    assert target_family('{"kind": "llvm", "mtriple": "aarch64-linux-gnu"}') == "aarch64"
    assert target_family("accel") == "accel"


def test_estimate_validation():
    est = Estimate([1.0, 2.0], [3.0, 4.0], "modelled", [[0.5, 1.5], [1.0, 3.0]])
    assert len(est) == 2 and est.total_latency_ms == 3.0 and est.total_energy_uj == 7.0
    assert est.energy_label == "energy (modelled)"
    assert not est.latency_ms.flags.writeable
    with pytest.raises(CostModelError, match="2 workloads"):
        Estimate([1.0, 2.0], [3.0])
    with pytest.raises(CostModelError, match="non-negative"):
        Estimate([-1.0], [3.0])
    with pytest.raises(CostModelError, match="energy_basis"):
        Estimate([1.0], [3.0], "guessed")
    with pytest.raises(CostModelError, match="low <= high"):
        Estimate([1.0], [3.0], "modelled", [[2.0, 1.0]])


class _FakeSource:
    name, device = "simulator", "host"

    def __init__(self, energy):
        self.energy = energy

    def measure(self, workloads):
        from tvm_mp.measure.records import Record

        return [Record(w, (float(i + 1),), "simulator", self.energy, "simulated" if self.energy is not None else None)
                for i, w in enumerate(workloads)]


def test_measured_model_uses_record_energy_or_the_modelled_one():
    wls = [Workload("dense", (1, 64), (10, 64), b, b) for b in (1, 8)]
    est = MeasuredModel(_FakeSource(2.5)).predict(wls)
    assert isinstance(MeasuredModel(_FakeSource(2.5)), CostModel)
    assert est.energy_basis == "simulated" and list(est.latency_ms) == [1.0, 2.0]
    assert np.all(est.energy_uj == 2.5)
    est = MeasuredModel(_FakeSource(None)).predict(wls)
    assert est.energy_basis == "modelled" and np.all(est.energy_uj > 0)


class _Constant:
    def __init__(self, value, basis):
        self.value, self.basis = value, basis

    def predict(self, workloads):
        n = len(workloads)
        return Estimate(np.full(n, self.value), np.full(n, 2 * self.value), self.basis)


def test_per_target_model_dispatches_by_family():
    from tvm_mp.cost_models.base import PerTargetModel

    wls = [Workload("dense", (1, 64), (10, 64), 4, 4), Workload("dense", (1, 64), (10, 64), 4, 4, target="accel"),
           Workload("dense", (1, 64), (10, 64), 2, 2)]
    model = PerTargetModel({"x86_64": _Constant(1.0, "modelled"), "accel": _Constant(5.0, "simulated")})
    est = model.predict(wls)
    assert list(est.latency_ms) == [1.0, 5.0, 1.0] and list(est.energy_uj) == [2.0, 10.0, 2.0]
    assert est.energy_basis == "mixed"
    with pytest.raises(CostModelError, match="no cost model for target family 'aarch64'"):
        model.predict([wls[0].replace(target="aarch64")])


# ---- number-format workloads (float formats, clustered weights) ---------------------------------------------------
FORMAT_PRECISIONS = [Precision.fp16(), Precision.bf16(), Precision.fp8_e4m3(), Precision.fp8_e5m2(),
                     Precision.float(3, 4), Precision.clustered(16, 8), Precision.clustered(5, 4)]


@pytest.mark.parametrize("prec", FORMAT_PRECISIONS, ids=str)
def test_format_workloads_round_trip_and_keep_their_format(prec):
    layer = LayerInfo("c", "conv2d", (1, 4, 8, 8), (8, 4, 3, 3), (1, 8, 8, 8), P, False, 8 * 64 * 36, 8 * 36)
    wl = Workload.from_layer(layer, prec)
    assert wl.kind == prec.kind and wl.precision == prec and wl.weight_count == 8 * 36
    again = Workload.from_dict(wl.to_dict())
    assert again == wl and again.key == wl.key and prec.format_name in wl.key and str(prec) in str(wl)


def test_format_keys_differ_and_integer_keys_are_unchanged():
    a = Workload("dense", (1, 64), (10, 64), 16, 16, "float", None, exp_bits=5, man_bits=10)
    b = Workload("dense", (1, 64), (10, 64), 16, 16, "float", None, exp_bits=8, man_bits=7)
    assert a.key != b.key  # fp16 and bf16 have the same total bits
    wl = Workload("dense", (1, 64), (10, 64), 4, 4, "packed")
    assert wl.key == "dense;(1, 64);(10, 64);w4a4;packed;requant;;llvm;host"
    assert "exp_bits" not in wl.to_dict() and "clusters" not in wl.to_dict()


def test_format_workloads_are_validated():
    with pytest.raises(CostModelError, match="exp_bits"):
        Workload("dense", (1, 64), (10, 64), 16, 16, "float", None)
    with pytest.raises(CostModelError, match="clusters"):
        Workload("dense", (1, 64), (10, 64), 4, 8, "clustered", None)
    with pytest.raises(CostModelError, match="belong"):
        Workload("dense", (1, 64), (10, 64), 4, 8, "packed", None, clusters=16)


def test_require_kinds_names_the_kind():
    from tvm_mp.cost_models.base import KERNEL_KINDS, require_kinds

    ok = Workload("dense", (1, 64), (10, 64), 4, 4)
    require_kinds([ok], KERNEL_KINDS, "M")
    bad = Workload("dense", (1, 64), (10, 64), 4, 8, "clustered", None, clusters=16)
    with pytest.raises(CostModelError, match=r"M cannot cost kind 'clustered' \(K16\).*DatapathModel"):
        require_kinds([ok, bad], KERNEL_KINDS, "M")


def test_measured_model_refuses_format_kinds_before_measuring():
    class Source:
        def measure(self, workloads):
            raise AssertionError("must not be measured")

    wl = Workload("dense", (1, 64), (10, 64), 16, 16, "float", None, exp_bits=5, man_bits=10)
    with pytest.raises(CostModelError, match="kind 'float'"):
        MeasuredModel(Source()).predict([wl])
