"""The fast (target-scheduled) kernels vs the NumPy reference, exactly, on the host.

Every algorithm (direct, im2col, depthwise) of both kinds, with hypothesis drawing shapes, conv geometry, bit
widths, zero points and schedule knobs (vector lanes, register tile, dot-product tensorization); each case
compiles its own shape-specialized kernel, so the example counts are small.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st

import tvm_mp
from tvm_mp import Precision, PrecisionPlan, _tvm
from tvm_mp.errors import UnsupportedError
from tvm_mp.quantize import packing, reference
from tvm_mp.schedules import kernels, registry
from tvm_mp.schedules.computes import PACK_BLOCK
from tvm_mp.targets import parse
from tvm_mp.workload import ConvParams

BITS = [1, 2, 3, 4, 8]
HOST = parse("host").tvm_target


def random_weights(rng, shape, w_bits):
    lo = -1 if w_bits == 1 else -((1 << (w_bits - 1)) - 1)
    w = rng.integers(lo, -lo + 1, shape)
    if w_bits == 1:
        w = np.where(w >= 0, 1, -1)
    return w.astype(np.int8)


@st.composite
def fast_cases(draw, algorithm: str):
    if algorithm == "depthwise":
        c = draw(st.integers(2, 12))  # one input channel per group, more than one group
        groups, cg, oc = c, 1, c * draw(st.integers(1, 2))
    elif algorithm == "im2col":
        groups = draw(st.integers(1, 3))
        cg = draw(st.integers(1, 12))
        c, oc = groups * cg, groups * draw(st.integers(1, 5))
    else:
        groups, cg = 1, draw(st.sampled_from([1, 3, 4, 5, 16, 33, 40]))
        c, oc = cg, draw(st.integers(1, 9))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    params = ConvParams(strides, tuple(draw(st.integers(0, 2)) for _ in range(4)),
                        (draw(st.integers(1, 2)), draw(st.integers(1, 2))), groups)
    min_h = params.dilation[0] * (kh - 1) + 1 - params.padding[0] - params.padding[2]
    min_w = params.dilation[1] * (kw - 1) + 1 - params.padding[1] - params.padding[3]
    h = draw(st.integers(max(1, min_h), max(1, min_h) + 7))
    w = draw(st.integers(max(1, min_w), max(1, min_w) + 7))
    w_bits, a_bits = draw(st.sampled_from(BITS)), draw(st.sampled_from(BITS))
    zp = draw(st.integers(0, (1 << a_bits) - 1))
    knobs = dict(lanes=draw(st.sampled_from([4, 8, 16])), oc_block=draw(st.sampled_from([1, 2, 4, 8])),
                 p_unroll=draw(st.sampled_from([1, 2, 4])), use_dot=draw(st.booleans()),
                 parallel=draw(st.booleans()))
    n = draw(st.integers(1, 2))
    return (n, c, h, w), (oc, cg, kh, kw), params, w_bits, a_bits, zp, knobs, draw(st.integers(0, 2**31 - 1))


def run_fast(kind, algorithm, case):
    in_shape, w_shape, params, w_bits, a_bits, zp, knobs, seed = case
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 1 << a_bits, in_shape).astype(np.uint8)
    w_q = random_weights(rng, w_shape, w_bits)
    config = registry.KernelConfig(algorithm, **knobs)
    data = kernels.conv2d_weight_data(kind, w_q, w_bits, config)
    func = kernels.conv2d_kernel("k", kind, w_bits, a_bits, in_shape, w_shape, params, zp, kernels.Epilogue("acc"),
                                 data[0].shape, target=HOST, config=config)
    lib = _tvm.build(tvm.IRModule({"k": func}), HOST)
    expected = reference.conv2d_acc(codes, w_q, params, zp)
    out = _tvm.to_device(np.zeros(expected.shape, np.int32))
    lib["k"](*[_tvm.to_device(a) for a in [codes, *data]], out)
    np.testing.assert_array_equal(out.numpy(), expected)


@pytest.mark.parametrize("algorithm", ["direct", "im2col", "depthwise"])
@pytest.mark.parametrize("kind", ["bitserial", "packed"])
def test_fast_conv_exact(kind, algorithm):
    @settings(max_examples=8 if algorithm == "direct" else 6)
    @given(fast_cases(algorithm))
    def check(case):
        run_fast(kind, algorithm, case)

    check()


@pytest.mark.parametrize("a_bits", [1, 2, 8])
@pytest.mark.parametrize("w_bits", [1, 3])
@pytest.mark.parametrize("in_shape,w_shape,params", [
    ((1, 3, 11, 7), (8, 3, 3, 3), ConvParams((1, 1), (1, 1, 1, 1), (1, 1), 1)),  # a first layer, R = 27
    ((2, 8, 9, 6), (6, 4, 3, 3), ConvParams((2, 1), (1, 0, 2, 1), (1, 1), 2)),  # groups, R = 36: two words
])
def test_bitserial_im2col_exact_at_one_and_more_activation_planes(in_shape, w_shape, params, w_bits, a_bits):
    """Bit-serial im2col packs straight from the plane with one activation plane, and from an im2col tile of codes
    (computed per pixel vector, every plane packed from it) with more: both exact, the tile present only then."""
    config = dict(lanes=16, oc_block=4, p_unroll=1, use_dot=False, parallel=False)
    zp = (1 << a_bits) - 1
    run_fast("bitserial", "im2col", (in_shape, w_shape, params, w_bits, a_bits, zp, config, 11))
    cfg = registry.KernelConfig("im2col", **config)
    data = kernels.conv2d_weight_data("bitserial", random_weights(np.random.default_rng(0), w_shape, w_bits),
                                      w_bits, cfg)
    func = kernels.conv2d_kernel("k", "bitserial", w_bits, a_bits, in_shape, w_shape, params, zp,
                                 kernels.Epilogue("acc"), data[0].shape, target=HOST, config=cfg)
    assert ('"wcodes"' in func.script()) == (a_bits > 1)


@st.composite
def dense_cases(draw):
    w_bits, a_bits = draw(st.sampled_from(BITS)), draw(st.sampled_from(BITS))
    knobs = dict(lanes=draw(st.sampled_from([4, 8, 16])), oc_block=draw(st.sampled_from([1, 2, 4, 8])),
                 p_unroll=draw(st.sampled_from([1, 2, 4])), use_dot=draw(st.booleans()),
                 parallel=draw(st.booleans()))
    shape = (draw(st.integers(1, 3)), draw(st.sampled_from([1, 5, 31, 64, 77, 130, 300])))
    return shape, draw(st.integers(1, 40)), w_bits, a_bits, knobs, draw(st.integers(0, 2**31 - 1))


def run_fast_dense(kind, case):
    in_shape, oc, w_bits, a_bits, knobs, seed = case
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 1 << a_bits, in_shape).astype(np.uint8)
    w_q = random_weights(rng, (oc, in_shape[1]), w_bits)
    work = kernels.dense_workload(kind, w_bits, a_bits, in_shape, (oc, in_shape[1]))
    config = registry.KernelConfig("dense", **knobs)
    data = kernels.weight_data(work, w_q, config)
    func = kernels.dense_kernel("k", kind, w_bits, a_bits, in_shape, oc, kernels.Epilogue("acc"), data[0].shape,
                                target=HOST, config=config)
    lib = _tvm.build(tvm.IRModule({"k": func}), HOST)
    out = _tvm.to_device(np.zeros((in_shape[0], oc), np.int32))
    lib["k"](*[_tvm.to_device(a) for a in [codes, *data]], out)
    np.testing.assert_array_equal(out.numpy(), reference.dense_acc(codes, w_q))


@pytest.mark.parametrize("kind", ["bitserial", "packed"])
def test_fast_dense_exact(kind):
    """The tunable dense kernel (partial sums per output feature, tiles of oc_block features) for any knobs."""
    @settings(max_examples=6)
    @given(dense_cases())
    def check(case):
        run_fast_dense(kind, case)

    check()


@pytest.mark.parametrize("w_bits", [5, 8])
@pytest.mark.parametrize("lanes,use_dot", [(16, True), (8, True), (16, False)])
@pytest.mark.parametrize("in_shape,oc", [((1, 512), 1000), ((2, 4099), 17), ((1, 3), 1)])
def test_dense_dot_form_exact_at_extremes(in_shape, oc, lanes, use_dot, w_bits):
    """The dense kernel's dot form (one-byte weights, ``use_dot``: codes broadcast, a lane per output feature;
    tensorized with VNNI at 16 lanes, LLVM's vectors otherwise) at the largest codes and weights of both signs,
    over reductions long and short, output features no vector divides."""
    rng = np.random.default_rng(3)
    top = (1 << (w_bits - 1)) - 1
    codes = np.full(in_shape, 255, np.uint8)
    codes[:, ::3] = rng.integers(0, 256, codes[:, ::3].shape)
    w_q = rng.choice(np.array([-top, top, 0, 1], np.int8), (oc, in_shape[1]))
    work = kernels.dense_workload("packed", w_bits, 8, in_shape, (oc, in_shape[1]))
    config = registry.KernelConfig("dense", lanes=lanes, oc_block=4, p_unroll=2, use_dot=use_dot, parallel=False)
    assert kernels.dense_dot(work, config) == use_dot
    data = kernels.weight_data(work, w_q, config)
    func = kernels.dense_kernel("k", "packed", w_bits, 8, in_shape, oc, kernels.Epilogue("acc"), data[0].shape,
                                target=HOST, config=config)
    script = func.script()
    assert ('sblock("dense_dot' in script) == use_dot
    if use_dot and lanes == 16 and parse("host").has("avx512vnni"):
        assert "vpdpbusd" in _tvm.build(tvm.IRModule({"k": func}), HOST).mod.inspect_source("asm")
    lib = _tvm.build(tvm.IRModule({"k": func}), HOST)
    out = _tvm.to_device(np.zeros((in_shape[0], oc), np.int32))
    lib["k"](*[_tvm.to_device(a) for a in [codes, *data]], out)
    np.testing.assert_array_equal(out.numpy(), reference.dense_acc(codes, w_q))


def test_dense_configs_are_tunable_and_default_is_in_the_space():
    work = kernels.dense_workload("packed", 4, 4, (1, 256), (64, 256))
    entry = registry.lookup("dense", "packed", HOST)
    space = entry.space(work, HOST)
    assert entry.default(work, HOST) in space
    assert {c.oc_block for c in space} == {1, 2, 4, 8} and {c.p_unroll for c in space} == {1, 2, 4}
    assert all(c.algorithm == "dense" for c in space)


def test_resnet_shape_every_bit_pair_direct_default_knobs():
    """A real layer shape (16 -> 16 channels, 3x3, 32x32) with the host's default knobs (VNNI where present)."""
    params = ConvParams((1, 1), (1, 1, 1, 1), (1, 1), 1)
    for kind, w_bits, a_bits in [("packed", 8, 8), ("packed", 4, 4), ("bitserial", 1, 1), ("bitserial", 2, 2),
                                 ("bitserial", 4, 4)]:
        work = kernels.conv_workload(kind, w_bits, a_bits, (1, 16, 32, 32), (16, 16, 3, 3), params)
        config = kernels.conv2d_config(work, HOST, database=False)
        assert config.algorithm == "direct"
        knobs = {k: v for k, v in config.to_dict().items() if k != "algorithm"}
        run_fast(kind, "direct", ((1, 16, 32, 32), (16, 16, 3, 3), params, w_bits, a_bits, 1, knobs, w_bits))


def test_illegal_algorithm_is_refused():
    params = ConvParams((2, 2), (0, 0, 0, 0), (1, 1), 2)  # grouped: direct needs groups == 1
    config = registry.KernelConfig("direct")
    with pytest.raises(UnsupportedError, match="cannot compute"):
        kernels.conv2d_kernel("k", "packed", 8, 8, (1, 4, 6, 6), (4, 2, 1, 1), params, 0, kernels.Epilogue("acc"),
                              (4, 2), target=HOST, config=config)


@pytest.mark.parametrize("w_bits", [1, 2, 3, 4, 8])
def test_blocked_packing_holds_every_weight_once(w_bits):
    rng = np.random.default_rng(w_bits)
    w_q = random_weights(rng, (3, 77), w_bits)
    blocked = kernels.blocked_pack(w_q, w_bits)
    per = 8 // packing.container_bits(w_bits)
    assert blocked.dtype == np.uint8 and blocked.shape[1] * per >= 77
    # same containers as pack_dense, permuted within blocks of PACK_BLOCK * per weights
    order = np.arange(blocked.shape[1] * per)
    blk = PACK_BLOCK if per > 1 else 1
    perm = (order // (per * blk)) * (per * blk) + (order % blk) * per + (order // blk) % per
    unpacked = packing.unpack_dense(blocked, w_bits, blocked.shape[1] * per)
    restored = np.empty_like(unpacked)
    restored[:, order] = unpacked[:, perm] if per > 1 else unpacked
    np.testing.assert_array_equal(restored[:, :77], w_q.astype(np.int32))


@pytest.mark.parametrize("bits", [(8, 8), (4, 4), (2, 2), (1, 1), (3, 5)])
def test_compiled_model_on_host_target_matches_reference(bits):
    """Whole model, fast kernels with float and requantizing epilogues, integer edges: exact."""
    from tvm_mp.models.builders import BUILDERS

    builder = BUILDERS["ds_cnn"]
    mod = tvm_mp.load_onnx(builder.build(0), shapes={builder.input_name: builder.input_shape})
    rng = np.random.default_rng(0)
    calib = [rng.normal(0, 1, builder.input_shape).astype(np.float32) for _ in range(2)]
    cm = tvm_mp.compile(mod, plan=PrecisionPlan.uniform(mod, Precision(*bits)), calibration=calib, target="host")
    names = [f.attrs["global_symbol"] for _, f in cm.lowered.functions.items() if "global_symbol" in (f.attrs or {})]
    assert any(str(n).endswith("_kernel") for n in names)
    for x in calib:
        np.testing.assert_array_equal(cm.run(x), cm.reference(x))


# Epilogues whose loop no power of two fills a vector of: a channel's 25 x 5 outputs of a stride-1 depthwise
# conv (its accumulator rows as long as the output's), a 1x1 conv at 7 x 7 (direct, flat rows of 7), an im2col
# conv at 9 x 9, a strided 1x1 conv's 28-pixel rows. Full vectors, then the tail in vectors of its binary digits
# (125 = 7 x 16 + 8 + 4 + 1; 28 = 16 + 8 + 4); exact, float and requantizing, serial and parallel.
PARTITIONED = [
    ("depthwise", (1, 16, 25, 5), (16, 1, 3, 3), ConvParams((1, 1), (1, 1, 1, 1), (1, 1), 16)),
    ("direct", (1, 16, 7, 7), (32, 16, 1, 1), ConvParams((1, 1), (0, 0, 0, 0), (1, 1), 1)),
    ("im2col", (1, 3, 9, 9), (16, 3, 3, 3), ConvParams((1, 1), (1, 1, 1, 1), (1, 1), 1)),
    ("direct", (1, 8, 56, 56), (16, 8, 1, 1), ConvParams((2, 2), (0, 0, 0, 0), (1, 1), 1)),
]


def _epilogue_case(algorithm, in_shape, w_shape, params, kind, requant, parallel=False, w_bits=3, a_bits=4):
    """(scheduled kernel, operands, expected output) of a conv with a float or requantizing epilogue (w3a4 unless
    told)."""
    from tvm_mp.quantize import scheme

    rng = np.random.default_rng(7)
    act = scheme.ActQuant(0.05, min(5, (1 << a_bits) - 1), a_bits)
    codes = rng.integers(0, 1 << a_bits, in_shape).astype(np.uint8)
    w_q = random_weights(rng, w_shape, w_bits)
    w_scale = rng.uniform(0.01, 0.1, w_shape[0]).astype(np.float32)
    corr = scheme.bias_correction(rng.normal(0, 1, w_shape[0]).astype(np.float32), w_q, w_scale, act)
    acc = reference.conv2d_acc(codes, w_q, params, act.zero_point) + corr.reshape(1, -1, 1, 1)
    if requant:
        out_act = scheme.ActQuant(0.05, 3, 4)
        mult, shift = scheme.requant_multiplier(scheme.output_scale(w_scale, act) / out_act.scale)
        epi, extra = kernels.Epilogue("requant", 1, 14, out_act.zero_point), [mult, shift]
        expected = scheme.requantize(acc, 1, mult, shift, out_act.zero_point, 1, 14)
    else:
        scale = scheme.output_scale(w_scale, act)
        epi, extra = kernels.Epilogue("float", 0.0, None), [scale]
        expected = scheme.dequantize_output(acc, 1, scale, 0.0)
    config = registry.KernelConfig(algorithm, lanes=16, oc_block=4, p_unroll=1, use_dot=False, parallel=parallel)
    data = kernels.conv2d_weight_data(kind, w_q, w_bits, config)
    func = kernels.conv2d_kernel("k", kind, w_bits, a_bits, in_shape, w_shape, params, act.zero_point, epi,
                                 data[0].shape, target=HOST, config=config)
    return func, [codes, *data, corr, *extra], expected


def _run_exact(func, operands, expected):
    lib = _tvm.build(tvm.IRModule({"k": func}), HOST)
    out = _tvm.to_device(np.zeros(expected.shape, expected.dtype))
    lib["k"](*[_tvm.to_device(a) for a in operands], out)
    np.testing.assert_array_equal(out.numpy(), expected)


def _vector_loops(func) -> list[int]:
    return [int(n.extent) for n in _tvm.tir_nodes(func)
            if isinstance(n, tvm.tirx.For) and n.kind == tvm.tirx.ForKind.VECTORIZED]


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("requant", [False, True])
@pytest.mark.parametrize("kind", ["bitserial", "packed"])
@pytest.mark.parametrize("algorithm,in_shape,w_shape,params", PARTITIONED)
def test_partitioned_epilogue_exact(algorithm, in_shape, w_shape, params, kind, requant, parallel):
    from tvm_mp.schedules.tiled import epilogue_partitioned

    func, operands, expected = _epilogue_case(algorithm, in_shape, w_shape, params, kind, requant, parallel)
    oh, ow = expected.shape[2:]
    ext = ow if ow >= 16 else oh * ow  # rows shorter than a vector are fused with their channel's other rows
    assert epilogue_partitioned(ext, 16)
    vectors = _vector_loops(func)
    assert 16 in vectors  # the epilogue's full vectors
    for width in (8, 4, 2):  # and the tail's
        assert (ext % 16 & width == 0) or width in vectors, (width, vectors)
    _run_exact(func, operands, expected)


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("requant", [False, True])
@pytest.mark.parametrize("kind,w_bits,a_bits", [("bitserial", 1, 1), ("bitserial", 3, 4), ("packed", 8, 8)])
@pytest.mark.parametrize("side", [14, 9])
def test_direct_epilogue_runs_short_rows_in_pieces_exact(side, kind, w_bits, a_bits, requant, parallel):
    """A direct conv's accumulator rows are the padded pitch (16 for 14 outputs); output rows shorter than a
    vector but at least half of one run in vectors of their binary digits straight from the accumulator's row
    (14 = 8 + 4 + 2; 9 = 8 + 1), not fused with the channel's other rows (a gather per lane)."""
    from tvm_mp.schedules.tiled import epilogue_row_pieces

    params = ConvParams((1, 1), (1, 1, 1, 1), (1, 1), 1)
    func, operands, expected = _epilogue_case("direct", (1, 8, side, side), (8, 8, 3, 3), params, kind, requant,
                                              parallel, w_bits, a_bits)
    assert epilogue_row_pieces(side, 16, True, False)
    vectors = _vector_loops(func)
    for width in (8, 4, 2):
        assert (side & width == 0) or width in vectors, (width, vectors)
    _run_exact(func, operands, expected)


def _popcounts_per_update(func, block: str) -> int:
    """``popcount`` calls in the update of ``block`` of an unscheduled kernel."""
    line = next(ln for ln in func.script().splitlines() if re.match(rf"\s*{block}\[.*\] = {block}\[", ln))
    return line.count("T.popcount(")


@pytest.mark.parametrize("a_bits", [1, 3])
@pytest.mark.parametrize("algorithm,in_shape,w_shape,params", [
    ("direct", (1, 40, 9, 10), (6, 40, 3, 3), ConvParams((1, 1), (1, 1, 1, 1), (1, 1), 1)),
    ("direct64", (2, 70, 7, 6), (5, 70, 3, 3), ConvParams((2, 1), (1, 0, 2, 1), (1, 1), 1)),
    ("im2col", (2, 8, 9, 6), (6, 4, 3, 3), ConvParams((2, 1), (1, 0, 2, 1), (1, 1), 2)),
])
def test_one_bit_weights_sum_activation_popcounts_once_per_pixel(algorithm, in_shape, w_shape, params, a_bits):
    """+-1 weights: ``sum w a = 2 sum popcount(B & A) - sum popcount(A)``. The accumulate block has one popcount
    per word and output channel; the activations' popcounts are summed once per pixel (and group) in a block of
    their own. Exact at every zero point's extremes; multi-bit weights keep one popcount per word as well."""
    zp_max = (1 << a_bits) - 1
    for zp in (0, zp_max):
        config = dict(lanes=16, oc_block=4, p_unroll=1, use_dot=False, parallel=zp > 0)
        run_fast("bitserial", algorithm, (in_shape, w_shape, params, 1, a_bits, zp, config, 3 + zp))
    for w_bits in (1, 2):
        cfg = registry.KernelConfig(algorithm, lanes=16, oc_block=4, p_unroll=1, use_dot=False, parallel=False)
        data = kernels.conv2d_weight_data("bitserial", random_weights(np.random.default_rng(0), w_shape, w_bits),
                                          w_bits, cfg)
        func = kernels.conv2d_kernel("k", "bitserial", w_bits, a_bits, in_shape, w_shape, params, 0,
                                     kernels.Epilogue("acc"), data[0].shape, target=HOST, config=cfg,
                                     schedule=False)
        assert _popcounts_per_update(func, "bitserial_acc") == 1
        assert ('"popsum"' in func.script()) == (w_bits == 1)


@pytest.mark.parametrize("kind,w_bits,a_bits", [("bitserial", 1, 1), ("bitserial", 2, 3), ("bitserial", 1, 8),
                                                 ("packed", 8, 8), ("packed", 3, 4)])
@pytest.mark.parametrize("c,side", [(5, 7), (44, 6), (64, 4), (144, 9)])
def test_pointwise_direct_reads_the_codes_straight_exact(c, side, kind, w_bits, a_bits):
    """A 1x1 stride-1 conv without padding: its flat plane is the codes, so no padded copy is made (the readers
    load the codes); bit-serial packs its planes a byte of 8 channels at a time, then four bytes to a word
    (channels past C, partial bytes and words included). Exact at both zero points' extremes."""
    params = ConvParams((1, 1), (0, 0, 0, 0), (1, 1), 1)
    for zp in (0, (1 << a_bits) - 1):
        knobs = dict(lanes=16, oc_block=4, p_unroll=1, use_dot=True, parallel=zp > 0)
        run_fast(kind, "direct", ((1, c, side, side + 1), (6, c, 1, 1), params, w_bits, a_bits, zp, knobs, c + zp))
    cfg = registry.KernelConfig("direct", lanes=16, oc_block=4, p_unroll=1, use_dot=True, parallel=False)
    data = kernels.conv2d_weight_data(kind, random_weights(np.random.default_rng(0), (6, c, 1, 1), w_bits),
                                      w_bits, cfg)
    script = kernels.conv2d_kernel("k", kind, w_bits, a_bits, (1, c, side, side + 1), (6, c, 1, 1), params, 0,
                                   kernels.Epilogue("acc"), data[0].shape, target=HOST, config=cfg).script()
    assert "padded = T.sblock_alloc_buffer" not in script
    assert ("planebytes = T.sblock_alloc_buffer" in script) == (kind == "bitserial")


#: Convs whose taps read some of the stride phases: a strided 1x1 conv reads phase 0 alone; a dilation the stride
#: divides reads one row phase (and all column phases when the columns are not dilated).
PHASES = [
    ((1, 8, 12, 12), (16, 8, 1, 1), ConvParams((2, 2), (0, 0, 0, 0), (1, 1), 1), 1),
    ((1, 8, 13, 11), (16, 8, 3, 3), ConvParams((2, 2), (1, 1, 1, 1), (2, 1), 1), 2),
    ((1, 8, 12, 12), (16, 8, 3, 3), ConvParams((2, 2), (1, 1, 1, 1), (1, 1), 1), 4),
    ((1, 8, 12, 12), (16, 8, 1, 3), ConvParams((3, 2), (0, 1, 0, 1), (1, 1), 1), 2),
]


@pytest.mark.parametrize("kind", ["bitserial", "packed"])
@pytest.mark.parametrize("in_shape,w_shape,params,phases", PHASES)
def test_direct_builds_only_the_phases_its_taps_read_exact(in_shape, w_shape, params, phases, kind):
    func, operands, expected = _epilogue_case("direct", in_shape, w_shape, params, kind, True)
    padded = re.search(r"padded = T\.sblock_alloc_buffer\(\((\d+), (\d+), (\d+), (\d+)\)", func.script())
    assert padded is not None and int(padded.group(3)) == phases
    _run_exact(func, operands, expected)


#: (output channels, output pixels) of parallel direct convs, 4-channel register tiles of 16 pixels: the loop over
#: the channel tiles is parallel where it has 8 or more iterations, else with the first of equal parts of the pixel
#: tiles; the rest of the pixel tiles is a serial loop inside (each chunk allocates its tile buffers once).
PARALLEL_TILES = [(32, 12, 8), (8, 14, 14), (4, 16, 9)]  # (oc, input side, parallel extent)


@pytest.mark.parametrize("oc,side,extent", PARALLEL_TILES)
def test_parallel_tiles_run_in_chunks_exact(oc, side, extent):
    params = ConvParams((1, 1), (1, 1, 1, 1), (1, 1), 1)
    func, operands, expected = _epilogue_case("direct", (1, 8, side, side), (oc, 8, 3, 3), params, "packed", True,
                                              parallel=True)
    script = func.script()
    par = re.search(r"for (\w+) in T\.parallel\((\d+)\):\n(\s+)for \w+ in range\(", script)
    assert par is not None and int(par.group(2)) == extent, script[:3000]
    _run_exact(func, operands, expected)


#: Rows shorter than a vector whose channel plane a vector divides (32 x 10 = 320, 12 x 12 = 144): before, the
#: channel loop was fused in too, and the outputs' index through two divisions was not simplified back to the
#: fused index -- a gather and a scatter per lane (a 128-channel depthwise at 32x10: 88 us, now 30).
CHANNEL_PLANES = [
    ("depthwise", (1, 16, 32, 10), (16, 1, 3, 3), ConvParams((1, 1), (1, 1, 1, 1), (1, 1), 16)),
    ("direct", (1, 16, 12, 12), (32, 16, 1, 1), ConvParams((1, 1), (0, 0, 0, 0), (1, 1), 1)),
]


@pytest.mark.parametrize("requant", [False, True])
@pytest.mark.parametrize("kind", ["bitserial", "packed"])
@pytest.mark.parametrize("algorithm,in_shape,w_shape,params", CHANNEL_PLANES)
def test_epilogue_vectors_stay_in_one_channel_plane_exact(algorithm, in_shape, w_shape, params, kind, requant):
    func, operands, expected = _epilogue_case(algorithm, in_shape, w_shape, params, kind, requant)
    _, oc, oh, ow = expected.shape
    loops = [n for n in _tvm.tir_nodes(func) if isinstance(n, tvm.tirx.For)]
    assert 16 in _vector_loops(func)
    # the epilogue's vector loop runs over one channel's plane, under a loop over the channels
    assert any(int(n.extent) == oh * ow // 16 for n in loops)
    assert not any(int(n.extent) == oc * oh * ow // 16 for n in loops)
    _run_exact(func, operands, expected)


#: Odd row counts of short, non-power-of-two rows: the accumulator gets an even number of rows (LLVM's two-row
#: unroll then shares loads; with an odd count it rebuilt vectors byte by byte, 25 x 5 ran 2x slower than 24 x 5).
ODD_ROWS = [
    ((1, 8, 25, 5), (8, 1, 3, 3), ConvParams((1, 1), (1, 1, 1, 1), (1, 1), 8), 26),
    ((1, 8, 13, 13), (8, 1, 3, 3), ConvParams((1, 1), (1, 1, 1, 1), (1, 1), 8), 14),
    ((1, 8, 25, 4), (8, 1, 3, 3), ConvParams((1, 1), (1, 1, 1, 1), (1, 1), 8), 25),  # power-of-two rows
    ((1, 8, 5, 5), (8, 1, 3, 3), ConvParams((1, 1), (1, 1, 1, 1), (1, 1), 8), 5),  # too few rows to pay
    ((1, 8, 14, 14), (8, 1, 3, 3), ConvParams((2, 2), (1, 1, 1, 1), (1, 1), 8), 7),  # strided
]


@pytest.mark.parametrize("requant", [False, True])
@pytest.mark.parametrize("kind", ["bitserial", "packed"])
@pytest.mark.parametrize("in_shape,w_shape,params,acc_rows", ODD_ROWS)
def test_depthwise_odd_rows_get_an_even_accumulator_exact(in_shape, w_shape, params, acc_rows, kind, requant):
    func, operands, expected = _epilogue_case("depthwise", in_shape, w_shape, params, kind, requant)
    acc_shape = re.search(r"dw_acc = T\.sblock_alloc_buffer\(\((\d+), (\d+), (\d+), (\d+)\)", func.script())
    assert acc_shape is not None and int(acc_shape.group(3)) == acc_rows
    _run_exact(func, operands, expected)


#: Padded planes with rows of 32 codes or more: the left padding, the codes and the right padding are padded in
#: separate loops, each in power-of-two vectors (40 codes: 32 + 8; the right padding of the strided depthwise
#: conv's column phases: 1 + 8 + 2 + 1 columns).
PADDED_ROWS = [
    ("depthwise", (1, 4, 9, 40), (4, 1, 3, 3), ConvParams((2, 2), (1, 1, 1, 1), (1, 1), 4)),
    ("depthwise", (1, 4, 6, 33), (4, 1, 3, 3), ConvParams((1, 1), (1, 2, 1, 2), (1, 1), 4)),
    ("im2col", (1, 2, 5, 36), (4, 2, 3, 3), ConvParams((1, 2), (0, 1, 2, 1), (1, 1), 1)),
]


@pytest.mark.parametrize("kind", ["bitserial", "packed"])
@pytest.mark.parametrize("algorithm,in_shape,w_shape,params", PADDED_ROWS)
def test_wide_padded_rows_are_padded_in_pieces_exact(algorithm, in_shape, w_shape, params, kind):
    func, operands, expected = _epilogue_case(algorithm, in_shape, w_shape, params, kind, True)
    script = func.script()
    assert 'T.sblock("padded_' in script  # the row loop partitioned
    assert 32 in _vector_loops(func)  # the codes' first 32 in one vector (one loop: vectors of 2 or 4 codes)
    _run_exact(func, operands, expected)


#: Stride-2 depthwise convs whose column phases are split by shuffle pairs (computes.deinterleave_width): phase
#: rows of 16 codes or more rounded up to whole shuffles (20 columns: 18 -> 32 in pairs of 16; 40: 34 -> 64 in
#: pairs of 32; 70 without left padding: 50 -> 64; dilation 2: 35 -> 64), and one too short to split (10).
DEINTERLEAVED = [
    ((1, 4, 9, 20), ConvParams((2, 2), (1, 1, 1, 1), (1, 1), 4), 32),
    ((1, 4, 7, 40), ConvParams((2, 2), (1, 1, 1, 1), (1, 1), 4), 64),
    ((1, 4, 9, 70), ConvParams((2, 2), (0, 0, 1, 1), (1, 1), 4), 64),
    ((1, 4, 9, 41), ConvParams((2, 2), (2, 2, 2, 2), (2, 2), 4), 64),
    ((1, 4, 9, 12), ConvParams((2, 2), (1, 1, 1, 1), (1, 1), 4), 10),
]


@pytest.mark.parametrize("kind", ["bitserial", "packed"])
@pytest.mark.parametrize("in_shape,params,row", DEINTERLEAVED)
def test_strided_depthwise_splits_phases_by_shuffles_exact(in_shape, params, row, kind):
    func, operands, expected = _epilogue_case("depthwise", in_shape, (4, 1, 3, 3), params, kind, True)
    script = func.script()
    phased = re.search(r"phased = T\.sblock_alloc_buffer\(\((\d+), (\d+), (\d+), 2, (\d+)\)", script)
    assert phased is not None and int(phased.group(4)) == row
    assert ("T.Shuffle" in script) == (row % 16 == 0)
    _run_exact(func, operands, expected)


@pytest.mark.parametrize("algorithm,params", [
    ("im2col", ConvParams((2, 2), (1, 1, 1, 1), (1, 1), 1)),
    ("depthwise", ConvParams((1, 1), (1, 1, 1, 1), (1, 1), 3)),
])
def test_padded_rows_longer_than_a_vector_after_the_left_padding_exact(algorithm, params):
    """224 codes after one column of padding: full vectors of 64 codes that do not start the row, each a piece of
    its own (TVM splits only loops starting at 0)."""
    w_shape = (4, 3, 3, 3) if algorithm == "im2col" else (3, 1, 3, 3)
    func, operands, expected = _epilogue_case(algorithm, (1, 3, 3, 224), w_shape, params, "packed", True)
    assert 64 in _vector_loops(func)
    _run_exact(func, operands, expected)
