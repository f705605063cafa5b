"""Event counts: the closed form equals a walk of the real kernel's TIR, exactly, on drawn shapes and bits."""

from __future__ import annotations

import numpy as np
import pytest
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
    closed = {name: int(v[0]) for name, v in COUNTER.events([wl], unpack_per_mac=True).items()}
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


def test_sub_byte_weights_are_unpacked_once_per_weight_as_built():
    """A packed conv unpacks its 4-bit weights once per call (OC x R, padded to whole packing blocks), then does
    the 8-bit MAC; counted per MAC, a w4a8 conv cost 2.4x the operations of w8a8 on a 14x14 map."""
    conv = ConvParams((1, 1), (1, 1, 1, 1))
    w8, w4 = (Workload("conv2d", (1, 64, 14, 14), (64, 64, 3, 3), b, 8, "packed", conv, "requant") for b in (8, 4))
    e8, e4 = ({k: int(v[0]) for k, v in COUNTER.events([wl]).items()} for wl in (w8, w4))
    per_mac = {k: int(v[0]) for k, v in COUNTER.events([w4], unpack_per_mac=True).items()}
    unpacked = 64 * 576  # R = 64 x 9 = 576: whole blocks of 2 x 16 weights
    assert F.unpack_points(F.raw_fields([w4]))[0] == unpacked and F.unpack_points(F.raw_fields([w8]))[0] == 0
    assert e4["int_mul"] == e8["int_mul"] == 64 * 196 * 576
    assert 0 < e4["int_alu"] - e8["int_alu"] == (per_mac["int_alu"] - e8["int_alu"]) // 196
    assert e4["l1_load_bytes"] - e8["l1_load_bytes"] == unpacked
    assert per_mac["int_alu"] > 2 * e8["int_alu"]


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


AVX2_CPU = '{"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver1"}'  # AVX2, no AVX-512
AVX512_CPU = '{"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver4"}'  # AVX-512 VNNI + VPOPCNTDQ


def _variant_workloads(target: str) -> list[Workload]:
    conv = dict(params=ConvParams((1, 1), (1, 1, 1, 1)), target=target)
    return [Workload("conv2d", (1, 8, 12, 12), (8, 8, 3, 3), 5, 2, kind="bitserial", **conv),  # direct
            Workload("conv2d", (1, 3, 12, 12), (8, 3, 3, 3), 2, 2, kind="bitserial", **conv),  # im2col (3 channels)
            Workload("conv2d", (1, 64, 6, 6), (8, 64, 3, 3), 1, 1, kind="bitserial", **conv),  # 64-bit words
            Workload("dense", (1, 64), (10, 64), 8, 8, target=target)]


def test_schedule_features_follow_the_targets_cpu():
    """With VPOPCNTDQ (AVX-512) the 64-channel 3x3 bit-serial conv keeps 32-bit words (``direct``); on an AVX2
    CPU it takes 64-bit words; and AVX-512's wider register file gives packed convs a wider default tile."""
    names = F.feature_names((), ("schedule",))
    x = F.feature_matrix(_variant_workloads(AVX512_CPU), COUNTER, feature_sets=("schedule",))
    col = {n: x[:, i] for i, n in enumerate(names)}
    np.testing.assert_array_equal(col["algo=direct"], [1, 0, 1, 0])
    np.testing.assert_array_equal(col["algo=direct64"], [0, 0, 0, 0])
    conv = dict(params=ConvParams((1, 1), (1, 1, 1, 1)))
    packed = [Workload("conv2d", (1, 64, 14, 14), (64, 64, 3, 3), 8, 8, target=t, **conv)
              for t in (AVX2_CPU, AVX512_CPU)]
    x = F.feature_matrix(packed, COUNTER, feature_sets=("schedule",))
    col = {n: x[:, i] for i, n in enumerate(names)}
    np.testing.assert_array_equal(col["oc_block"], [4, 16])
    np.testing.assert_array_equal(col["p_unroll"], [2, 1])


def test_schedule_features_name_the_kernel_variant_the_build_picks():
    wls = _variant_workloads(AVX2_CPU)  # what each CPU picks is in the test above
    names = F.feature_names((), ("schedule",))
    assert len(names) == len(F.feature_names()) + len(F._SCHEDULE_FEATURES)
    x = F.feature_matrix(wls, COUNTER, feature_sets=("schedule",))
    col = {n: x[:, i] for i, n in enumerate(names)}
    np.testing.assert_array_equal(col["algo=direct"], [1, 0, 0, 0])
    np.testing.assert_array_equal(col["algo=im2col"], [0, 1, 0, 0])
    np.testing.assert_array_equal(col["algo=direct64"], [0, 0, 1, 0])
    np.testing.assert_array_equal(col["algo=dense"], [0, 0, 0, 1])
    # direct: a word per kernel tap (8 of its 32 bits used); im2col packs the 27-bit window in one word
    assert col["algo_words"][0] == 9 and col["algo_word_fill"][0] == 0.25
    assert col["algo_words"][1] == 1 and col["algo_words"][2] == 9 * 2
    assert col["dot_split"][3] == 1 and np.isnan(col["algo_words"][3])  # packed 8x8: the exact split dot
    np.testing.assert_array_equal(x[:, : len(F.feature_names())], F.feature_matrix(wls, COUNTER))
    with pytest.raises(F.CostModelError, match="feature set"):
        F.feature_names((), ("nope",))


def test_built_fields_count_the_fast_kernels_blocks():
    """The accumulate and bit-packing points of the "built" features equal those of the fast kernel the build
    makes with the default config (its unscheduled blocks), for each algorithm."""
    from tvm_mp.schedules import kernels as K
    from tvm_mp.schedules.registry import lookup
    from tvm_mp.targets import parse

    same = ConvParams((1, 1), (1, 1, 1, 1))
    wls = [Workload("conv2d", (1, 8, 12, 12), (8, 8, 3, 3), 5, 2, kind="bitserial", params=same),  # direct
           Workload("conv2d", (1, 3, 12, 12), (8, 3, 3, 3), 2, 2, kind="bitserial", params=same),  # im2col
           Workload("conv2d", (1, 64, 6, 6), (8, 64, 3, 3), 1, 1, kind="bitserial", params=same),  # direct64
           Workload("conv2d", (1, 8, 6, 6), (8, 8, 1, 1), 4, 4, params=ConvParams((1, 1), (0, 0, 0, 0))),
           Workload("conv2d", (1, 8, 12, 10), (16, 8, 3, 3), 4, 4, params=ConvParams((2, 2), (1, 1, 1, 1))),
           Workload("depthwise_conv2d", (1, 16, 10, 6), (16, 1, 3, 3), 3, 2, kind="bitserial",
                    params=ConvParams((1, 1), (1, 1, 1, 1), groups=16)),
           Workload("dense", (1, 64), (10, 64), 8, 8), Workload("dense", (1, 70), (10, 70), 3, 2, kind="bitserial"),
           # direct on the codes themselves (1x1, stride 1, no padding): packed a byte of channels at a time
           Workload("conv2d", (1, 44, 8, 8), (8, 44, 1, 1), 1, 2, kind="bitserial",
                    params=ConvParams((1, 1), (0, 0, 0, 0)))]
    raw = F.raw_fields(wls)
    built = F.built_fields(wls, raw)
    target = parse("host").tvm_target  # device "host", target "llvm": built for target="host"
    for i, wl in enumerate(wls):
        args = (wl.kind, wl.w_bits, wl.a_bits, wl.input_shape, wl.weight_shape)
        work = K.dense_workload(*args) if wl.op == "dense" else K.conv_workload(*args, wl.params)
        cfg = lookup(work.op, work.kind, target).default(work, target)
        shape = K.weight_data(work, np.ones(wl.weight_shape, np.int8), cfg)[0].shape
        func = (K.fast_dense(work, K.Epilogue("acc"), shape, cfg, target, schedule=False) if wl.op == "dense" else
                K.fast_conv2d(work, 1, K.Epilogue("acc"), shape, cfg, target, schedule=False))
        points = {block.name_hint: int(np.prod(ext)) for block, ext in F._leaf_blocks(func)}
        acc = sum(v for k, v in points.items()
                  if k in ("bitserial_acc", "dot_acc", "dw_acc", "dense_part", "dense_dot"))
        pack = sum(v for k, v in points.items() if k in ("planebytes", "bitpack")) or points.get("bitplanes", 0)
        assert (built["acc_points"][i], built["pack_points"][i]) == (acc, pack), (i, cfg.algorithm, points)
    lanes = cfg.lanes  # the host's int32 vector lanes (8 with AVX2)
    assert built["pixels"][0] == -(-12 * 14 // lanes) * lanes  # direct: the flat plane's rows are the padded width
    assert built["pixel_fill"][3] == 36 / (-(-36 // lanes) * lanes)  # a 6x6 map: whole vectors of pixels
    names = F.feature_names((), ("schedule", "built"))
    x = F.feature_matrix(wls, COUNTER, feature_sets=("schedule", "built"))
    assert x.shape == (len(wls), len(names)) and names[-len(F._BUILT_FEATURES):] == F._BUILT_FEATURES
    ev = COUNTER.events(raw, points=F.built_block_points(raw, built))
    assert ev["points_popcount_acc"][0] == built["acc_points"][0] and ev["points_packed_acc"][5] == built[
        "acc_points"][5] and ev["points_popcount_acc"][5] == 0  # bit-serial depthwise: integer MACs


def test_built_epilogue_vectors_are_the_scheduled_epilogues():
    """The conv epilogue fuses rows shorter than a vector with the other rows of their channel, never with the
    channel loop (20x4: 80 pixels, vectors of the full width; 25x4: 100 pixels, vectors of 4 lanes -- half the
    width with AVX2; with AVX-512 a quarter, so full vectors and a tail of 4 instead; 25x5: 125 pixels, full
    vectors, then the tail in vectors of its binary digits: 8, 4, and one scalar)."""
    from tvm_mp.measure.local import weight_storage_shape
    from tvm_mp.schedules import x86
    from tvm_mp.schedules.kernels import Epilogue, conv2d_kernel
    from tvm_mp.schedules.registry import KernelConfig
    from tvm_mp.targets import parse

    params = ConvParams((1, 1), (1, 1, 1, 1), groups=32)
    wls = [Workload("depthwise_conv2d", (1, 32, h, w), (32, 1, 3, 3), 8, 8, "packed", params, "requant")
           for h, w in ((25, 4), (20, 4), (25, 5))]
    target = parse("host").tvm_target
    if x86.has_window_dot(target):
        pytest.skip("the default depthwise kernel of this host is the window form (its own test below)")
    built = F.built_fields(wls, F.raw_fields(wls))
    config = KernelConfig("depthwise", lanes=x86.vector_lanes(target), oc_block=1, p_unroll=1, parallel=False)
    scripts = [conv2d_kernel("k", "packed", 8, 8, wl.input_shape, wl.weight_shape, params, 128,
                             Epilogue("requant", 0, 3, 1), weight_storage_shape(wl), target=target,
                             config=config).script()
               for wl in wls]
    lanes = 16 if "T.vectorized(16)" in scripts[1] else 8  # the host's int32 lanes (8 with AVX2, 16 with AVX-512)
    if lanes == 8:
        assert "for i0, i1, i2_i3_fused_0 in T.grid(1, 32, 25):" in scripts[0] and "T.vectorized(4)" in scripts[0]
        assert built["epilogue_lanes"][0] == 4 / lanes and built["epilogue_tail"][0] == 0
    else:
        assert "in range(6):" in scripts[0] and "T.vectorized(96, 100)" in scripts[0]  # partitioned: 6 vectors + 4
        assert built["epilogue_lanes"][0] == 1.0 and built["epilogue_tail"][0] == 4 / 100
    assert f"for i0, i1, i2_i3_fused_0 in T.grid(1, 32, {80 // lanes}):" in scripts[1]
    assert built["epilogue_lanes"][1] == 1.0 and built["epilogue_tail"][1] == 0
    assert built["epilogue_lanes"][2] == 1.0 and built["epilogue_tail"][2] == (125 % lanes) / 125
    assert "in range(124, 125)" in scripts[2]  # full vectors, then the tail: 125 % 16 = 8 + 4 + 1, 125 % 8 = 4 + 1
    assert "T.vectorized(120, 124)" in scripts[2]


def test_built_epilogue_vectors_of_the_depthwise_window_form():
    """The window form's epilogue runs on each row: vectors of the row's window lanes, the remainder in vectors of
    its binary digits (14 pixels at 16 lanes: 8 + 4 + 2; 5 at 8: 4 + 1, a scalar; 28: 16 + 8 + 4)."""
    from tvm_mp.measure.local import weight_storage_shape
    from tvm_mp.schedules import x86
    from tvm_mp.schedules.kernels import Epilogue, conv2d_kernel
    from tvm_mp.targets import parse

    target = parse("host").tvm_target
    if not x86.has_window_dot(target):
        pytest.skip("needs AVX-512 VNNI + VBMI (the window form)")
    params = ConvParams((1, 1), (1, 1, 1, 1), groups=8)
    wls = [Workload("depthwise_conv2d", (1, 8, h, w), (8, 1, 3, 3), 8, 8, "packed", params, "requant")
           for h, w in ((6, 14), (25, 5), (3, 28))]
    built = F.built_fields(wls, F.raw_fields(wls))
    scripts = [conv2d_kernel("k", "packed", 8, 8, wl.input_shape, wl.weight_shape, params, 128,
                             Epilogue("requant", 0, 3, 1), weight_storage_shape(wl), target=target).script()
               for wl in wls]
    assert "T.vectorized(8)" in scripts[0] and "T.vectorized(12, 14)" in scripts[0]
    assert built["epilogue_lanes"][0] == 8 / 16 and built["epilogue_tail"][0] == 0
    assert "T.vectorized(4)" in scripts[1] and "in range(4, 5)" in scripts[1]
    assert built["epilogue_lanes"][1] == 4 / 16 and built["epilogue_tail"][1] == 1 / 5
    assert "T.vectorized(16)" in scripts[2] and "T.vectorized(24, 28)" in scripts[2]
    assert built["epilogue_lanes"][2] == 1.0 and built["epilogue_tail"][2] == 0
    assert list(built["pixels"]) == [6 * 16, 25 * 8, 3 * 32]


def test_schedule_cache_keeps_the_window_forms_code_width_apart():
    """On aarch64 the depthwise window form runs for codes below 128 only (``sdot`` is signed): w8a4 and w8a8 of
    one layer have different built work, whichever of them the schedule cache sees first."""
    target = '{"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon", "+dotprod"]}'
    params = ConvParams((1, 1), (1, 1, 1, 1), groups=8)
    alone = {}
    for a_bits in (8, 4):
        wl = Workload("depthwise_conv2d", (1, 8, 14, 14), (8, 1, 3, 3), 8, a_bits, "packed", params, target=target)
        alone[a_bits] = F.built_fields([wl], F.raw_fields([wl]))["acc_points"][0]
    assert alone[4] != alone[8]
    for order in ((8, 4), (4, 8)):
        wls = [Workload("depthwise_conv2d", (1, 8, 14, 14), (8, 1, 3, 3), 8, a, "packed", params, target=target)
               for a in order]
        built = F.built_fields(wls, F.raw_fields(wls))
        assert list(built["acc_points"]) == [alone[a] for a in order]
