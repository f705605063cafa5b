"""The analytical model against the simulator, and the mapping / joint precision search."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tvm_mp
from tvm_mp import Precision
from tvm_mp.accel.hardware import HardwareConfig
from tvm_mp.accel.lower import ConvShape, LayerMapping, LayerPlan, MappingError, OutputSpec
from tvm_mp.accel.mapping import (
    AnalyticalModel,
    candidate_mappings,
    joint_search,
    mapping_knobs,
    search_mappings,
    search_model,
)
from tvm_mp.accel.simulator import run_layer
from tvm_mp.cost_models.accel import AccelCostModel
from tvm_mp.cost_models.base import Estimate, Workload
from tvm_mp.layers import LayerInfo
from tvm_mp.models.builders import BUILDERS
from tvm_mp.workload import ConvParams

HW = HardwareConfig.default()
MODEL = AnalyticalModel(HW)


def simulate(shape, w_bits, a_bits, mapping, output, seed=0):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 1 << a_bits, (shape.n, shape.c, shape.h, shape.w)).astype(np.uint8)
    w = rng.integers(-1, 2, (shape.oc, shape.cg, shape.kh, shape.kw)).astype(np.int8)
    mult = np.full(shape.oc, 1 << 30)
    shift = np.full(shape.oc, 62)
    return run_layer(shape, w_bits, a_bits, codes, w, np.zeros(shape.oc, np.int32), HW, mapping, output, 0, mult,
                     shift)[1]


def agree(shape, w_bits, a_bits, mapping, output, tolerance=0.10):
    sim = simulate(shape, w_bits, a_bits, mapping, output)
    est = MODEL.estimate(shape, w_bits, a_bits, mapping, output)
    assert est.events.counts() == sim.events.counts()  # every access count exactly
    assert est.events.macs == sim.events.macs and est.events.alu_lane_ops == sim.events.alu_lane_ops
    assert est.energy_uj == pytest.approx(sim.energy_uj, rel=1e-12)
    assert abs(est.cycles - sim.cycles) <= tolerance * sim.cycles, (str(mapping), est.cycles, sim.cycles)
    return est, sim


@settings(max_examples=30)
@given(data=st.data(), bits=st.sampled_from([(8, 8), (4, 4), (2, 2), (8, 4), (1, 1)]),
       groups=st.sampled_from([1, 1, "dw"]), k=st.sampled_from([1, 3]), stride=st.integers(1, 2))
def test_model_matches_simulator_on_random_mappings(data, bits, groups, k, stride):
    c = data.draw(st.integers(1, 48))
    oc = c if groups == "dw" else data.draw(st.integers(1, 48))
    g = c if groups == "dw" else 1
    h = data.draw(st.integers(k, 14))
    shape = ConvShape(data.draw(st.integers(1, 2)), c, h, h, oc, k, k,
                      ConvParams((stride, stride), (k // 2,) * 4, (1, 1), g))
    output = data.draw(st.sampled_from([OutputSpec(), OutputSpec.codes(bits[1])]))
    cands = candidate_mappings(shape, *bits, HW, output, double_buffer=(True, False))
    mapping = cands[data.draw(st.integers(0, len(cands) - 1))]
    # Arbitrary (unsearched) mappings on arbitrary shapes: access counts still exact; the closed-form overlap of
    # double-buffered phases is looser here (10.1 % seen on a 7x7 weight-stationary tile) than on the model layers'
    # searched mappings, which test_model_matches_simulator_on_every_layer holds to the 10 %.
    agree(shape, *bits, mapping, output, tolerance=0.15)


@pytest.fixture(scope="module")
def model_layers():
    out = {}
    for name, shape in (("resnet8", (1, 3, 32, 32)), ("mobilenet_v1_025", (1, 3, 96, 96))):
        builder = BUILDERS[name]
        out[name] = tvm_mp.list_layers(tvm_mp.load_onnx(builder.build(0), shapes={builder.input_name: shape}))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("model", ["resnet8", "mobilenet_v1_025"])
def test_model_matches_simulator_on_every_layer(model_layers, model):
    """Acceptance: accesses per buffer and cycles within 10 % on every layer, at the searched mapping."""
    layers = model_layers[model]
    assert len(layers) == {"resnet8": 10, "mobilenet_v1_025": 28}[model]
    for i, layer in enumerate(layers):
        shape = ConvShape.from_layer(layer)
        bits = [(8, 8), (4, 4), (2, 2)][i % 3]
        output = OutputSpec.codes(bits[1])
        best = search_mappings(shape, *bits, HW, output, model=MODEL).best
        agree(shape, *bits, best.mapping, output)


def test_reload_counts():
    r = AnalyticalModel.reloads
    # oc tiles outer: weights resident across spatial tiles when the reduction fits one tile, inputs reloaded
    assert r("oc_sp", noc=4, nsp=9, nic=1) == (4, 1)
    assert r("oc_sp", noc=4, nsp=9, nic=2) == (4, 9)
    assert r("oc_sp", noc=4, nsp=1, nic=1) == (1, 1)
    # spatial tiles outer: inputs resident across oc tiles
    assert r("sp_oc", noc=4, nsp=9, nic=1) == (1, 9)
    assert r("sp_oc", noc=1, nsp=9, nic=1) == (1, 1)
    assert r("sp_oc", noc=4, nsp=9, nic=3) == (4, 9)


def test_lower_precision_opens_mappings():
    """All weights of a 256x256 1x1 layer stay on chip at 2 bits (loaded once), not at 8 bits."""
    shape = ConvShape(1, 256, 3, 3, 256, 1, 1)
    out = OutputSpec.codes(8)

    def whole_weights(bits):
        plan_blocks = LayerPlan(shape, *bits, HW, LayerMapping(1, 1, 1, 1), check=False)
        return [m for m in candidate_mappings(shape, *bits, HW, out, double_buffer=(True, False))
                if m.toc == plan_blocks.ocb_max and m.tic == plan_blocks.icb_max]

    assert not whole_weights((8, 8))
    opened = whole_weights((2, 2))
    assert opened
    est = MODEL.estimate(shape, 2, 2, opened[0], out)
    assert est.events.dram_read_bits >= 256 * 256 * 2  # weights read exactly once ...
    assert est.events.dram_read_bits < 2 * 256 * 256 * 2  # ... not twice
    results = joint_search(shape, [Precision(8, 8), Precision(4, 4), (2, 2)], HW)
    energies = [results[k].best.energy_uj for k in ("w8a8", "w4a4", "w2a2")]
    assert energies[0] > energies[1] > energies[2]


def _layer(name, c, oc, hw_, k):
    shape = ConvShape(1, c, hw_, hw_, oc, k, k, ConvParams(padding=(k // 2,) * 4))
    return LayerInfo(name, "conv2d", (1, c, hw_, hw_), (oc, c, k, k), (1, oc, hw_, hw_), shape.params, True,
                     shape.macs, oc * c * k * k)


def test_model_search_equals_brute_force():
    layers = [_layer("conv2d_0", 8, 16, 6, 3), _layer("conv2d_1", 16, 32, 6, 3), _layer("conv2d_2", 32, 8, 6, 1)]
    cands = [Precision(8, 8), Precision(2, 4)]
    found = search_model(layers, HW, cands)
    cache = {}

    def energy(i, p, out):
        key = (i, p, out)
        if key not in cache:
            cache[key] = search_mappings(ConvShape.from_layer(layers[i]), p.w_bits, p.a_bits, HW, out,
                                         model=MODEL).best.energy_uj
        return cache[key]

    totals = []
    for combo in itertools.product(cands, repeat=3):
        totals.append(sum(energy(i, p, OutputSpec() if i == 2 else OutputSpec.codes(combo[i + 1].a_bits))
                          for i, p in enumerate(combo)))
    best = min(totals)
    assert max(totals) > best  # the choice matters
    assert found.energy_uj == pytest.approx(best)
    assert set(found.precisions()) == {"conv2d_0", "conv2d_1", "conv2d_2"}


def test_cost_model_interface():
    wl = Workload("conv2d", (1, 16, 16, 16), (32, 16, 3, 3), 4, 4, params=ConvParams(padding=(1, 1, 1, 1)),
                  target="accel", device="accel-sim")
    cm = AccelCostModel(HW)
    est = cm.predict([wl, wl.replace(w_bits=8, a_bits=8)])
    assert isinstance(est, Estimate) and len(est) == 2 and est.energy_basis == "modelled"
    assert est.energy_uj[0] < est.energy_uj[1]
    mapping = LayerMapping(4, 16, 1, 1, "sp_oc", "output", False)
    fixed = cm.predict([wl.replace(knobs=mapping_knobs(mapping))])
    sim = simulate(ConvShape(1, 16, 16, 16, 32, 3, 3, ConvParams(padding=(1, 1, 1, 1))), 4, 4, mapping,
                   OutputSpec.codes(4))
    assert fixed.energy_uj[0] == pytest.approx(sim.energy_uj)
    assert fixed.latency_ms[0] == pytest.approx(sim.latency_us / 1000)  # single buffering: exact cycles
    with pytest.raises(MappingError, match="'tic' is missing"):
        cm.predict([wl.replace(knobs={"th": 1, "tw": 1, "toc": 1})])
