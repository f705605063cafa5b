"""The schedule registry: families, knobs, defaults and legality."""

from __future__ import annotations

import pytest

from tvm_mp.errors import UnsupportedError
from tvm_mp.schedules import arm_cpu, registry
from tvm_mp.targets import parse
from tvm_mp.workload import ConvParams

CONV = registry.ConvWorkload("conv2d", "packed", 8, 8, (1, 16, 32, 32), (16, 16, 3, 3),
                             ConvParams((1, 1), (1, 1, 1, 1), (1, 1), 1))
STRIDED = registry.ConvWorkload("conv2d", "bitserial", 2, 2, (1, 16, 32, 32), (32, 16, 3, 3),
                                ConvParams((2, 2), (1, 1, 1, 1), (1, 1), 1))
DEPTHWISE = registry.ConvWorkload("depthwise_conv2d", "bitserial", 1, 1, (1, 8, 9, 9), (8, 1, 3, 3),
                                  ConvParams((1, 1), (1, 1, 1, 1), (1, 1), 8))


def test_target_families():
    assert registry.target_family(parse("host").tvm_target) == "x86_64"
    assert registry.target_family(parse("aarch64").tvm_target) == "aarch64"
    assert registry.target_family(None) == "generic"


def test_every_op_kind_family_is_registered():
    table = registry.entries()
    for op in ("conv2d", "depthwise_conv2d", "dense"):
        for kind in ("bitserial", "packed"):
            for family in ("x86_64", "aarch64", "generic"):
                assert (op, kind, family) in table


def test_defaults_follow_the_target():
    host = parse("host").tvm_target
    arm = parse("aarch64").tvm_target
    x86_default = registry.lookup("conv2d", "packed", host).default(CONV, host)
    arm_default = registry.lookup("conv2d", "packed", arm).default(CONV, arm)
    assert x86_default.algorithm == arm_default.algorithm == "direct"
    assert arm_default.lanes == 4 and not arm_default.use_dot  # plain +neon: no sdot
    # the VNNI dot with 16 lanes, the AVX2 vpmaddubsw dot with 8
    assert x86_default.use_dot == (registry.target_has(host, "avx512vnni") or registry.target_has(host, "avx2"))
    dotprod = parse({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon", "+dotprod"]}).tvm_target
    w4a4 = registry.ConvWorkload("conv2d", "packed", 4, 4, CONV.in_shape, CONV.weight_shape, CONV.params)
    w8a8 = registry.ConvWorkload("conv2d", "packed", 8, 8, CONV.in_shape, CONV.weight_shape, CONV.params)
    for work in (w4a4, w8a8):  # sdot: codes < 128 in one, 8-bit codes in the split form
        cfg = registry.lookup("conv2d", "packed", dotprod).default(work, dotprod)
        assert cfg.use_dot
        intrin = arm_cpu.dot_intrin(dotprod, cfg, work)
        assert intrin == (arm_cpu.SDOT_INTRIN if work.a_bits <= 7 else arm_cpu.SDOT_SPLIT_INTRIN)
    assert registry.lookup("conv2d", "bitserial", host).default(STRIDED, host).algorithm == "direct"
    few = registry.ConvWorkload("conv2d", "bitserial", 1, 1, (1, 3, 9, 9), (8, 3, 3, 3), CONV.params)
    assert registry.lookup("conv2d", "bitserial", host).default(few, host).algorithm == "im2col"  # 3 channels


def test_packed_first_layers_run_direct_up_to_a_plane_size():
    """An RGB first layer (3 channels: quads 3/4 full) runs direct on AVX2 while its output plane is small, im2col
    on ImageNet-scale planes (see x86.DIRECT_FIRST_LAYER_MAX_PIXELS); with AVX-512 direct at every size; with
    fewer channels im2col on both."""
    from tvm_mp.schedules import x86

    same = ConvParams((1, 1), (1, 1, 1, 1), (1, 1), 1)
    half = ConvParams((2, 2), (1, 1, 1, 1), (1, 1), 1)

    def algo(cpu, in_shape, w_shape, params):
        target = parse({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": cpu}).tvm_target
        entry = registry.lookup("conv2d", "packed", target)
        return entry.default(registry.ConvWorkload("conv2d", "packed", 8, 8, in_shape, w_shape, params),
                             target).algorithm

    assert 112 * 112 > x86.DIRECT_FIRST_LAYER_MAX_PIXELS
    for cpu, large in (("znver1", "im2col"), ("znver4", "direct")):
        assert algo(cpu, (1, 3, 40, 40), (8, 3, 3, 3), same) == "direct"
        assert algo(cpu, (1, 3, 96, 96), (8, 3, 3, 3), half) == "direct"  # 48 x 48 outputs
        assert algo(cpu, (1, 3, 224, 224), (32, 3, 3, 3), half) == large
        assert algo(cpu, (1, 1, 40, 40), (8, 1, 3, 3), same) == "im2col"  # one channel: a quad 1/4 full


def test_algorithms_and_legality():
    assert registry.algorithms_for(CONV) == ["direct", "im2col"]
    assert registry.algorithms_for(STRIDED) == ["direct", "im2col", "direct64"]  # strides: phase planes
    assert registry.algorithms_for(DEPTHWISE)[0] == "depthwise"
    assert not registry.legal(registry.KernelConfig("direct"), DEPTHWISE)  # grouped
    space = registry.lookup("conv2d", "bitserial", parse("host").tvm_target).space(STRIDED, parse("host").tvm_target)
    assert space and all(registry.legal(c, STRIDED) for c in space)


def test_config_validation_and_round_trip():
    with pytest.raises(UnsupportedError, match="power of two"):
        registry.KernelConfig("direct", oc_block=3)
    with pytest.raises(UnsupportedError, match="algorithm"):
        registry.KernelConfig("winograd")
    cfg = registry.KernelConfig("im2col", lanes=8, oc_block=2, p_unroll=4, use_dot=True, parallel=False)
    assert registry.KernelConfig.from_dict(cfg.to_dict()) == cfg


def test_workload_key_and_macs():
    assert CONV.macs == 16 * 32 * 32 * 16 * 9
    assert CONV.key() != STRIDED.key() and "w8a8" in CONV.key()
    with pytest.raises(UnsupportedError):
        registry.ConvWorkload("conv2d", "fp32", 8, 8, (1, 1, 1, 1), (1, 1, 1, 1), ConvParams())
