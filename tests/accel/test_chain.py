"""On-chip chaining of consecutive accelerator layers (:mod:`tvm_mp.accel.chain`): bit-exact, counted, reported."""

import json

import numpy as np
import pytest
from tvm import relax

import tvm_mp
from tvm_mp import Precision as P
from tvm_mp import PrecisionPlan, _tvm
from tvm_mp.accel.chain import Edge, plan_chain
from tvm_mp.accel.energy import energy_of
from tvm_mp.accel.hardware import HardwareConfig
from tvm_mp.accel.lower import ConvShape, LayerPlan, OutputSpec, default_mapping, lower, pack_layer, unpack_output
from tvm_mp.accel.mapping import AnalyticalModel
from tvm_mp.accel.simulator import Simulator
from tvm_mp.cost_models.accel import AccelCostModel
from tvm_mp.cost_models.base import Workload
from tvm_mp.errors import Error
from tvm_mp.workload import ConvParams

HW = HardwareConfig.default()


def _plan(shape, bits, out_bits, zp_in, zp_out):
    output = OutputSpec.codes(out_bits, zp_out)
    return LayerPlan(shape, bits, bits, HW, default_mapping(shape, bits, bits, HW, output), output, zp_in)


def _run(plan, codes, consts, image=None):
    dram, valid = pack_layer(plan, codes, *consts)
    mem, res, nxt = Simulator(HW).run_chained(lower(plan), dram, valid, image)
    return unpack_output(plan, mem["out"]).astype(np.uint8), res, nxt


@pytest.mark.parametrize("bits,groups", [(8, 1), (4, 1), (8, 32)])
def test_chained_pair_equals_the_pair_through_dram(bits, groups):
    """A 3x3 conv whose codes feed a strided 3x3 conv (or a depthwise one): same output on chip, no DRAM bytes for
    the edge, and the saving is exactly what the edge's DRAM traffic cost minus the on-chip moves and fills."""
    rng = np.random.default_rng(bits + groups)
    s1 = ConvShape(1, 16, 8, 8, 32, 3, 3, ConvParams((1, 1), (1, 1, 1, 1)))
    s2 = ConvShape(1, 32, 8, 8, 32, 3, 3, ConvParams((2, 2), (1, 1, 1, 1), (1, 1), groups))
    p1, p2 = _plan(s1, bits, bits, 5, 3), _plan(s2, bits, bits, 3, 1)
    consts = [(rng.integers(-3, 4, (s.oc, s.cg, 3, 3)).astype(np.int8), rng.integers(-50, 50, s.oc).astype(np.int32),
               np.full(s.oc, (1 << 30) // 7), np.full(s.oc, 33)) for s in (s1, s2)]
    x = rng.integers(0, 1 << bits, (1, 16, 8, 8)).astype(np.uint8)
    y1, a1, _ = _run(p1, x, consts[0])
    y2, a2, _ = _run(p2, y1, consts[1])
    (q1, q2), edges = plan_chain(["a", "b"], [p1, p2], [""])
    assert edges == [Edge("a", "b", True)] and q2.onchip_in is not None and q1.onchip_out is not None
    _, b1, image = _run(q1, x, consts[0])
    z2, b2, _ = _run(q2, np.zeros_like(y1), consts[1], image)  # the DRAM input is never read
    np.testing.assert_array_equal(z2, y2)
    assert 0 < y2.std()
    edge_bits = 32 * 8 * 8 * bits  # the producer's output = the consumer's input (no halo in DRAM)
    assert a1.events.dram_write_bits - b1.events.dram_write_bits == edge_bits
    assert a2.events.dram_read_bits - b2.events.dram_read_bits == edge_bits
    off, on = a1.events + a2.events, b1.events + b2.events
    assert on.dram_bytes == off.dram_bytes - 2 * edge_bits / 8
    # the energy saved is the priced difference of the counted events: DRAM, minus FORWARD / FILL SRAM writes
    saved = energy_of(off, HW).total_uj - energy_of(on, HW).total_uj
    assert (a1.energy_uj + a2.energy_uj) - (b1.energy_uj + b2.energy_uj) == pytest.approx(saved, rel=1e-9)
    assert energy_of(off, HW).components_uj["dram"] - energy_of(on, HW).components_uj["dram"] == pytest.approx(
        2 * edge_bits / 8 * 160e-6)
    assert on.sram_write_bits["inp"] > 0 and b1.cycles + b2.cycles < a1.cycles + a2.cycles
    assert b1.instructions["FORWARD"] == a1.instructions["STORE"] and "FILL" in b2.instructions
    # the analytical model counts the chained layers exactly as the simulator does
    model = AnalyticalModel(HW)
    for plan, res in ((q1, b1), (q2, b2)):
        est = model.estimate_plan(plan)
        assert est.events.counts() == res.events.counts()
        assert abs(est.cycles - res.cycles) <= 0.10 * res.cycles


def test_edge_that_does_not_fit_goes_through_dram():
    s1 = ConvShape(1, 16, 32, 32, 32, 3, 3, ConvParams((1, 1), (1, 1, 1, 1)))
    s2 = ConvShape(1, 32, 32, 32, 16, 3, 3, ConvParams((1, 1), (1, 1, 1, 1)))
    p1, p2 = _plan(s1, 8, 8, 0, 0), _plan(s2, 8, 8, 0, 0)
    plans, edges = plan_chain(["a", "b"], [p1, p2], [""], fixed={"a"})
    assert not edges[0].onchip and plans[1].onchip_in is None and plans[0].onchip_out is None
    # 2 blocks of 34 x 34 entries of 16 bytes: the whole 16 KiB buffer would not hold it even alone
    assert edges[0].reason.startswith("does not fit: the padded input image needs 36992 bytes, the inp buffer has ")
    assert "(16384 in all)" in edges[0].reason
    # the graph's reason wins; mismatched code widths are said
    assert plan_chain(["a", "b"], [p1, p2], ["CPU ops in between: add"])[1][0].reason == "CPU ops in between: add"
    p3 = _plan(ConvShape(1, 32, 32, 32, 16, 1, 1), 4, 4, 0, 0)
    assert plan_chain(["a", "c"], [p1, p3], [""])[1][0].reason.startswith("code widths differ")


def _chain_net():
    """conv -> relu -> depthwise -> relu -> 1x1 -> relu -> maxpool -> conv -> relu -> 1x1 (+ residual): two edges
    that can stay on chip, one with a CPU op (max pool), one fan-out."""
    rng = np.random.default_rng(0)
    const = lambda *shape: _tvm.const(rng.normal(0, 0.3, shape).astype(np.float32))  # noqa: E731
    x = relax.Var("x", relax.TensorType((1, 3, 8, 8), "float32"))
    bb = relax.BlockBuilder()
    nn = relax.op.nn
    with bb.function("main", [x]):
        with bb.dataflow():
            r0 = bb.emit(nn.relu(bb.emit(nn.conv2d(x, const(16, 3, 3, 3), padding=(1, 1)))))
            r1 = bb.emit(nn.relu(bb.emit(nn.conv2d(r0, const(16, 1, 3, 3), padding=(1, 1), groups=16))))
            r2 = bb.emit(nn.relu(bb.emit(nn.conv2d(r1, const(24, 16, 1, 1)))))
            p2 = bb.emit(nn.max_pool2d(r2, pool_size=(2, 2), strides=(2, 2)))
            r3 = bb.emit(nn.relu(bb.emit(nn.conv2d(p2, const(16, 24, 3, 3), padding=(1, 1)))))
            c4 = bb.emit(nn.conv2d(r3, const(16, 16, 1, 1)))
            out = bb.emit_output(relax.op.add(c4, r3))
        bb.emit_func_output(out)
    return bb.get()


def test_compiled_chain_is_bit_exact_and_reported(tmp_path):
    net = _chain_net()
    rng = np.random.default_rng(1)
    calib = [rng.normal(0, 1, (4, 3, 8, 8)).astype(np.float32)]
    x = rng.normal(0, 1, (1, 3, 8, 8)).astype(np.float32)
    plan = PrecisionPlan({"conv2d_0": P(8, 8), "conv2d_1": P(8, 8), "conv2d_2": P(4, 4), "conv2d_3": P(8, 8),
                          "conv2d_4": P(8, 8)})
    accel = tvm_mp.compile(net, plan=plan, target="accel", calibration=calib)
    rt = accel.accel
    assert rt.chains == (("conv2d_0", "conv2d_1", "conv2d_2"),)
    y = accel.run(x)
    np.testing.assert_array_equal(y, accel.reference(x))  # the integer reference (= the CPU build, test_target)
    assert rt.kernels["conv2d_2"].calls == 1  # inside the chain's one call
    edges = {(e.producer, e.consumer): e for e in rt.edges}
    assert edges[("conv2d_0", "conv2d_1")].onchip and edges[("conv2d_1", "conv2d_2")].onchip
    assert edges[("conv2d_2", "conv2d_3")].reason == "CPU ops in between: max_pool2d"  # codes
    assert edges[("conv2d_3", "conv2d_4")].reason.startswith("fan-out: conv2d_3's output feeds 2 ops")
    assert len(edges) == 4
    # the report: per edge on chip or why not, and what each on-chip edge saved
    a = accel.report.accelerator
    saved = {(e["producer"], e["consumer"]): e for e in a["edges"] if e["onchip"]}
    assert len(saved) == 2 and all(e["dram_bytes_saved"] > 0 and e["energy_uj_saved"] > 0 for e in saved.values())
    assert saved[("conv2d_0", "conv2d_1")]["dram_bytes_saved"] == 2 * 16 * 8 * 8  # 8-bit codes stored + loaded
    text = str(accel.report)
    assert "conv2d_0 -> conv2d_1: on chip, saves 2048 DRAM bytes" in text and "via DRAM (fan-out" in text
    # the analytical cost model, given the same links, chains the same edges and agrees with the simulator
    layers = {i.name: i for i in tvm_mp.list_layers(net)}
    names = ["conv2d_0", "conv2d_1", "conv2d_2"]
    wls = [Workload.from_layer(layers[n], plan[n], target="accel") for n in names]
    est = AccelCostModel(HW).predict_chain(wls, [(0, 1), (1, 2)])
    assert est.notes["onchip_edges"] == 2
    sim = sum(rt.last[n].energy_uj for n in names)
    assert abs(est.energy_uj.sum() - sim) <= 0.10 * sim
    # export + load: the chain and the edges come back
    back = tvm_mp.load(accel.export(tmp_path / "art"))
    assert back.accel.chains == rt.chains and back.accel.edges == rt.edges
    np.testing.assert_array_equal(back.run(x), y)
    meta = json.loads((tmp_path / "art" / "accel" / "accel.json").read_text())
    assert meta["chains"] == [list(rt.chains[0])]
    program_txt = (tmp_path / "art" / "accel" / "conv2d_0.program.txt").read_text()
    assert program_txt.startswith("# lowered by: tir\n") and program_txt.count("FWD") >= 1
    meta["chains"] = []  # a layer reading on chip outside any chain: refused in one line, not run wrong
    (tmp_path / "art" / "accel" / "accel.json").write_text(json.dumps(meta))
    with pytest.raises(Error, match="damaged .its chains and its layers' on-chip inputs disagree.; re-export"):
        tvm_mp.load(tmp_path / "art")


@pytest.mark.slow
def test_resnet8_chains_bit_exact():
    """ResNet-8 at w4a4: the two edges without a residual add in between stay on chip (conv2d_4's mapping is
    re-searched to leave room for conv2d_5's image), and the output equals the integer reference's."""
    from tvm_mp.models.builders import BUILDERS

    b = BUILDERS["resnet8"]
    mod = tvm_mp.load_onnx(b.build(0), shapes={b.input_name: b.input_shape})
    rng = np.random.default_rng(0)
    calib = [rng.random((2,) + tuple(b.input_shape[1:]), dtype=np.float32)]
    x = rng.random(b.input_shape, dtype=np.float32)
    plan = PrecisionPlan.uniform(mod, P(4, 4))
    accel = tvm_mp.compile(mod, plan=plan, target="accel", calibration=calib)
    assert accel.accel.chains == (("conv2d_4", "conv2d_5"), ("conv2d_7", "conv2d_8"))
    np.testing.assert_array_equal(accel.run(x), accel.reference(x))
    model, figures = AnalyticalModel(HW), accel.accel.last
    for name in ("conv2d_4", "conv2d_5", "conv2d_7", "conv2d_8"):  # the model on chained layers: the 10 %
        est, sim = model.estimate_plan(accel.accel.kernels[name].plan), figures[name]
        assert est.events.counts() == sim.events.counts() and abs(est.cycles - sim.cycles) <= 0.10 * sim.cycles
    off = [e for e in accel.accel.edges if e.reason.startswith("does not fit")]
    assert [(e.producer, e.consumer) for e in off] == [("conv2d_1", "conv2d_2")]
    assert off[0].reason.startswith("does not fit: the padded input image needs 18496 bytes")


def test_budget_search_costs_see_the_chained_saving():
    """The search's evaluator finds the links (integer edges with only a fused activation between) and the cost
    table prices linked layers with their edges on chip: lower energy where the build would chain them."""
    from tvm_mp.search.accuracy import Scorer
    from tvm_mp.search.costs import CostTable
    from tvm_mp.search.space import SearchSpace

    net = _chain_net()
    calib = [np.random.default_rng(1).normal(0, 1, (2, 3, 8, 8)).astype(np.float32)]
    layers = tvm_mp.list_layers(net)
    links = Scorer(net, calib).evaluator.links([info.name for info in layers])
    assert links == [("conv2d_0", "conv2d_1"), ("conv2d_1", "conv2d_2")]
    space = SearchSpace.build(layers[:3], [P(8, 8), P(4, 4)])
    model = AccelCostModel(HW)
    plain = CostTable.from_model(space, model, "accel")
    chained = CostTable.from_model(space, model, "accel", links=links)
    assert (chained.energy_uj <= plain.energy_uj).all() and (chained.energy_uj < plain.energy_uj).sum() >= 4
