"""Event counts: the closed form equals a walk of the real kernel's TIR, exactly, on drawn shapes and bits."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tvm_mp.cost_models import features as F
from tvm_mp.cost_models.base import Workload
from tvm_mp.measure.local import kernel_func
from tvm_mp.workload import ConvParams

COUNTER = F.KernelCounter()  # shared: its per-structure templates are read once


@st.composite
def small_workloads(draw):
    op = draw(st.sampled_from(["conv2d", "depthwise_conv2d", "dense"]))
    w_bits, a_bits = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    kind = draw(st.sampled_from(["bitserial", "packed"]))
    epilogue = draw(st.sampled_from(["acc", "float", "requant"]))
    if op == "dense":
        k = draw(st.integers(1, 100))
        return Workload("dense", (draw(st.integers(1, 3)), k), (draw(st.integers(1, 9)), k), w_bits, a_bits, kind,
                        None, epilogue)
    groups = draw(st.integers(2, 6)) if op == "depthwise_conv2d" else draw(st.integers(1, 3))
    cg = 1 if op == "depthwise_conv2d" else draw(st.integers(1, 40))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    params = ConvParams((draw(st.integers(1, 3)), draw(st.integers(1, 3))),
                        tuple(draw(st.integers(0, 2)) for _ in range(4)),
                        (draw(st.integers(1, 2)), draw(st.integers(1, 2))), groups)
    h = draw(st.integers(2 * kh, 12))
    w = draw(st.integers(2 * kw, 12))
    mult = 1 if op == "depthwise_conv2d" else draw(st.integers(1, 3))
    return Workload(op, (draw(st.integers(1, 2)), groups * cg, h, w), (groups * mult, cg, kh, kw), w_bits, a_bits,
                    kind, params, epilogue)


@settings(max_examples=50)
@given(small_workloads())
def test_closed_form_equals_tir_walk(wl):
    walked = F.tir_events(kernel_func(wl, schedule=False))
    closed = {name: int(v[0]) for name, v in COUNTER.events([wl]).items()}
    assert closed == walked


def test_counts_mean_what_they_say():
    """A w2a3 bit-serial dense: K=40 -> 2 words, 2 planes x 3 act bits x 2 words = 12 popcounts per output."""
    wl = Workload("dense", (1, 40), (5, 40), 2, 3, "bitserial", None, "acc")
    ev = {k: int(v[0]) for k, v in COUNTER.events([wl]).items()}
    assert ev["popcount"] == 5 * 2 * 3 * 2
    assert ev["points_bitpack"] == 3 * 2 * 32
    assert ev["points_packed_acc"] == 0 and ev["points_epilogue"] == 0
    packed = Workload("dense", (1, 40), (5, 40), 8, 8, "packed", None, "acc")
    pe = {k: int(v[0]) for k, v in COUNTER.events([packed]).items()}
    assert pe["int_mul"] == 5 * 40 and pe["popcount"] == 0  # one multiply per MAC (8-bit weights: no decode)
    # DRAM: codes 40 B + packed weights 5x40 B + int32 output 5x4 B
    assert pe["dram_bytes"] == 40 + 200 + 20


def test_feature_matrix_shape_and_knobs():
    wls = [Workload("dense", (1, 64), (10, 64), 4, 4), Workload("dense", (1, 64), (10, 64), 4, 4, knobs={"tile": 8})]
    x = F.feature_matrix(wls, COUNTER, ["tile"])
    names = F.feature_names(["tile"])
    assert x.shape == (2, len(names)) and x.dtype == np.float32
    col = names.index("knob:tile")
    assert np.isnan(x[0, col]) and x[1, col] == 8
    assert x[0, names.index("op=dense")] == 1 and x[0, names.index("op=conv2d")] == 0
    assert F.feature_matrix([], COUNTER).shape == (0, len(F.feature_names()))
    mapped = [wls[0].replace(knobs={"order": "oc_sp", "th": 4}), wls[0].replace(knobs={"order": "sp_oc", "th": 2})]
    knobs = F.knob_feature_names(mapped)
    assert knobs == ["order=oc_sp", "order=sp_oc", "th"]
    xk = F.feature_matrix(mapped, COUNTER, knobs)[:, -3:]
    np.testing.assert_array_equal(xk, [[1, 0, 4], [0, 1, 2]])


def test_op_classes():
    assert F.op_class("tirx.popcount", "uint32") == "popcount"
    assert F.op_class("Mul", "int64") == "int64_mul"
    assert F.op_class("Max", "float32") == "float_alu"
    assert F.op_class("Add", "uint32") == "int_alu"


def test_scheduled_kernels_only_pad_loops():
    """A schedule may split loops by a vector width: padded lanes can add points, never remove them."""
    wl = Workload("dense", (1, 64), (10, 64), 4, 4, "packed", None, "requant")
    scheduled = F.tir_events(kernel_func(wl, schedule=True))
    plain = F.tir_events(kernel_func(wl, schedule=False))
    assert all(scheduled[k] >= plain[k] for k in plain)
    assert scheduled["points_packed_acc"] == plain["points_packed_acc"] == 10 * 64
    assert plain["points_epilogue"] == 10
