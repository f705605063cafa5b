"""Kernels and whole compiled models cross-compiled for aarch64, run under qemu-aarch64, bit-exact against the
NumPy reference; dynamic instruction counts from the TCG plugin."""

from __future__ import annotations

import numpy as np
import pytest
import tvm

import tvm_mp
from tvm_mp import Precision, PrecisionPlan
from tvm_mp.quantize import reference
from tvm_mp.schedules import kernels, registry, tuning
from tvm_mp.targets import parse
from tvm_mp.testing import qemu
from tvm_mp.workload import ConvParams

pytestmark = pytest.mark.external

NEON = parse("aarch64").tvm_target
DOTPROD = parse({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon", "+dotprod"]}).tvm_target
SAME = ConvParams((1, 1), (1, 1, 1, 1), (1, 1), 1)


def run_kernel(tmp_path, target, kind, w_bits, a_bits, in_shape, w_shape, params, config=None, count=False):
    work = kernels.conv_workload(kind, w_bits, a_bits, in_shape, w_shape, params)
    config = config or kernels.conv2d_config(work, target, database=False)
    rng = np.random.default_rng(w_bits * 10 + a_bits)
    zp = int(rng.integers(0, 1 << a_bits))
    codes, data, w_q = tuning.random_operands(work, zp, rng, config)
    func = kernels.conv2d_kernel("k", kind, w_bits, a_bits, in_shape, w_shape, params, zp, kernels.Epilogue("acc"),
                                 data[0].shape, target=target, config=config)
    lib = qemu.export_aarch64(tvm.compile(tvm.IRModule({"k": func}), target), tmp_path / "k.so")
    expected = reference.conv2d_acc(codes, w_q, params, zp)
    run = qemu.run_program(qemu.kernel_program("k", [codes, *data], [expected.shape], [np.int32]), lib,
                           tmp_path / "run", count=count)
    np.testing.assert_array_equal(run.outputs[0], expected)
    return run, config


@pytest.mark.parametrize("kind,w_bits,a_bits,in_shape,w_shape,params", [
    ("packed", 8, 8, (1, 16, 8, 8), (16, 16, 3, 3), SAME),
    ("packed", 3, 5, (1, 6, 7, 5), (5, 6, 3, 2), ConvParams((1, 1), (2, 0, 1, 1), (2, 1), 1)),
    ("bitserial", 1, 1, (1, 40, 6, 6), (8, 40, 3, 3), SAME),
    ("bitserial", 2, 3, (1, 16, 9, 9), (8, 16, 3, 3), ConvParams((2, 2), (1, 1, 1, 1), (1, 1), 1)),
    ("bitserial", 4, 4, (1, 8, 7, 7), (8, 1, 3, 3), ConvParams((1, 1), (1, 1, 1, 1), (1, 1), 8)),
    ("packed", 2, 8, (1, 8, 7, 7), (16, 1, 3, 3), ConvParams((2, 2), (0, 0, 1, 1), (1, 1), 8)),
    # depthwise stride 2 on column phases (odd width, bit-planes decoded to integers)
    ("bitserial", 1, 2, (1, 8, 9, 11), (8, 1, 3, 3), ConvParams((2, 2), (1, 1, 1, 1), (1, 1), 8)),
    # ... split by shuffle pairs (phase rows of 16 and 32 codes: NEON's uzp1 / uzp2)
    ("packed", 8, 8, (1, 4, 7, 30), (4, 1, 3, 3), ConvParams((2, 2), (1, 1, 1, 1), (1, 1), 4)),
    ("packed", 4, 4, (1, 4, 5, 66), (4, 1, 3, 3), ConvParams((2, 2), (1, 1, 1, 1), (1, 1), 4)),
])
def test_kernels_exact_under_qemu(arm_tools, tmp_path, kind, w_bits, a_bits, in_shape, w_shape, params):
    run, config = run_kernel(tmp_path, NEON, kind, w_bits, a_bits, in_shape, w_shape, params)
    assert config.lanes == 4


def test_sdot_kernel_exact_and_fewer_instructions(arm_tools, tmp_path):
    shape = ((1, 16, 8, 8), (16, 16, 3, 3), SAME)
    plain, cfg_plain = run_kernel(tmp_path / "neon", NEON, "packed", 4, 4, *shape, count=True)
    dot, cfg_dot = run_kernel(tmp_path / "dot", DOTPROD, "packed", 4, 4, *shape, count=True)
    assert cfg_dot.use_dot and not cfg_plain.use_dot
    assert 0 < dot.instructions < plain.instructions / 2
    assert plain.mix.get("mla", 0) > 0  # the plain NEON kernel multiplies lane by lane


def test_sdot_split_w8a8_exact_at_extremes_and_fewer_instructions(arm_tools, tmp_path):
    # 8-bit codes through sdot (signed bytes): the split form (low seven bits, top bit) must be exact at codes
    # 255 / 128 / 127 against weights -127 / 127, and take far fewer instructions than lane-by-lane mla
    shape = ((1, 16, 6, 6), (8, 16, 3, 3), SAME)
    work = kernels.conv_workload("packed", 8, 8, *shape)
    dot_cfg = kernels.conv2d_config(work, DOTPROD, database=False)
    assert dot_cfg.use_dot
    rng = np.random.default_rng(5)
    codes = rng.choice(np.array([0, 127, 128, 255], np.uint8), shape[0]).astype(np.uint8)
    w_q = rng.choice(np.array([-127, -1, 1, 127], np.int8), shape[1]).astype(np.int8)
    expected = reference.conv2d_acc(codes, w_q, SAME, 255)
    counts = {}
    for name, target, cfg in (("dot", DOTPROD, dot_cfg), ("mla", NEON, kernels.conv2d_config(work, NEON,
                                                                                           database=False))):
        data = kernels.weight_data(work, w_q, cfg)
        func = kernels.conv2d_kernel("k", "packed", 8, 8, *shape, 255, kernels.Epilogue("acc"), data[0].shape,
                                     target=target, config=cfg)
        lib = qemu.export_aarch64(tvm.compile(tvm.IRModule({"k": func}), target), tmp_path / name / "k.so")
        run = qemu.run_program(qemu.kernel_program("k", [codes, *data], [expected.shape], [np.int32]), lib,
                               tmp_path / name / "run", count=True)
        np.testing.assert_array_equal(run.outputs[0], expected)
        counts[name] = run
    # (qemu's disassembler prints sdot as '.byte')
    assert counts["mla"].mix.get("mla", 0) > 0 and counts["dot"].mix.get("mla", 0) < counts["mla"].mix["mla"] / 8
    assert counts["dot"].instructions < counts["mla"].instructions / 2


@pytest.mark.parametrize("w_bits,a_bits,in_shape,w_shape,params,lanes", [
    # 64-bit words on NEON: 70 channels (two words, the second mostly padding), odd widths, stride 2, dilation
    (1, 1, (1, 70, 7, 9), (8, 70, 3, 3), SAME, 2),
    (2, 3, (1, 40, 9, 7), (4, 40, 3, 2), ConvParams((2, 1), (1, 0, 2, 1), (1, 2), 1), 4),
])
def test_direct64_exact_under_qemu(arm_tools, tmp_path, w_bits, a_bits, in_shape, w_shape, params, lanes):
    config = registry.KernelConfig("direct64", lanes=lanes, oc_block=4, p_unroll=1, parallel=False)
    run, _ = run_kernel(tmp_path, NEON, "bitserial", w_bits, a_bits, in_shape, w_shape, params, config=config)
    assert run.outputs[0].any()


def test_bitserial_kernel_counts_popcounts(arm_tools, tmp_path):
    run, _ = run_kernel(tmp_path, NEON, "bitserial", 1, 1, (1, 32, 8, 8), (16, 32, 3, 3), SAME, count=True)
    macs = 16 * 32 * 9 * 64
    # NEON cnt + pairwise adds: 128 one-bit MACs in a few instructions; a MAC-by-MAC kernel needs >= 1 per MAC
    assert run.mix.get("cnt", 0) > 0 and run.instructions < macs / 4


@pytest.mark.parametrize("model,bits", [("resnet8", (4, 4)), ("ds_cnn", (1, 2))])
def test_whole_model_exact_under_qemu(arm_tools, tmp_path, model, bits):
    from tvm_mp.models.builders import BUILDERS

    builder = BUILDERS[model]
    mod = tvm_mp.load_onnx(builder.build(0), shapes={builder.input_name: builder.input_shape})
    rng = np.random.default_rng(0)
    calib = [rng.normal(0, 1, builder.input_shape).astype(np.float32) for _ in range(2)]
    cm = tvm_mp.compile(mod, plan=PrecisionPlan.uniform(mod, Precision(*bits)), calibration=calib, target="aarch64")
    assert registry.target_family(cm.target) == "aarch64"
    tir_mod, program = qemu.model_program(cm.lowered, calib[1])
    lib = qemu.export_aarch64(tvm.compile(tir_mod, NEON), tmp_path / "model.so")
    run = qemu.run_program(program, lib, tmp_path / "run")
    np.testing.assert_array_equal(run.outputs[0], cm.reference(calib[1]))


def test_depthwise_requant_3_pixel_rows_exact(arm_tools, tmp_path):
    # regression: MobileNetV1-0.25's conv2d_23 (depthwise, stride 2, 6x6 -> 3x3, requantized to uint8). With each
    # 3-pixel output row vectorized whole, LLVM's aarch64 backend miscompiled the <3 x i64> multiply-shift
    # truncated to uint8 (370 of 1152 codes wrong); the epilogue now uses power-of-two vectors only.
    params = ConvParams((2, 2), (0, 0, 1, 1), (1, 1), 8)
    in_shape, w_shape = (1, 8, 6, 6), (8, 1, 3, 3)
    rng = np.random.default_rng(3)
    work = kernels.conv_workload("packed", 8, 8, in_shape, w_shape, params)
    config = kernels.conv2d_config(work, NEON, database=False)
    codes, data, _ = tuning.random_operands(work, 0, rng, config)
    bias = rng.integers(-2000, 2000, 8).astype(np.int32)
    mult = rng.integers(1 << 28, 1 << 30, 8).astype(np.int64)
    shift = rng.integers(34, 38, 8).astype(np.int64)
    func = kernels.conv2d_kernel("k", "packed", 8, 8, in_shape, w_shape, params, 0,
                                 kernels.Epilogue("requant", 0, 255, 0), data[0].shape, target=NEON, config=config)
    inputs = [codes, *data, bias, mult, shift]
    host = tvm.compile(tvm.IRModule({"k": func}), "llvm")
    expected = tvm.runtime.tensor(np.zeros((1, 8, 3, 3), np.uint8), tvm.cpu())
    host["k"](*[tvm.runtime.tensor(a, tvm.cpu()) for a in inputs], expected)
    assert len(np.unique(expected.numpy())) > 10  # codes spread over the range, not clamped
    lib = qemu.export_aarch64(tvm.compile(tvm.IRModule({"k": func}), NEON), tmp_path / "k.so")
    run = qemu.run_program(qemu.kernel_program("k", inputs, [(1, 8, 3, 3)], [np.uint8]), lib, tmp_path / "run")
    np.testing.assert_array_equal(run.outputs[0], expected.numpy())


@pytest.mark.parametrize("kind,w_bits,a_bits,in_shape,params", [
    ("packed", 8, 7, (1, 8, 14, 14), ConvParams((1, 1), (1, 1, 1, 1), (1, 1), 8)),
    ("packed", 4, 4, (1, 4, 15, 30), ConvParams((2, 2), (0, 0, 1, 1), (1, 1), 4)),
    ("bitserial", 1, 1, (1, 4, 9, 13), ConvParams((1, 1), (1, 1, 1, 1), (1, 2), 4)),
])
def test_depthwise_window_form_exact_and_fewer_instructions(arm_tools, tmp_path, kind, w_bits, a_bits, in_shape,
                                                            params):
    # the window form (kernels.window_dot): per 4 pixels and tap quad one load, one tbl, one sdot -- against the
    # integer MACs of the same layer; codes of 8 bits (signed sdot) keep the integer MACs
    w_shape = (in_shape[1], 1, 3, 3)
    work = kernels.conv_workload(kind, w_bits, a_bits, in_shape, w_shape, params)
    window, config = run_kernel(tmp_path / "window", DOTPROD, kind, w_bits, a_bits, in_shape, w_shape, params,
                                count=True)
    assert config.use_dot and kernels.window_dot(work, config, DOTPROD)
    plain, _ = run_kernel(tmp_path / "plain", DOTPROD, kind, w_bits, a_bits, in_shape, w_shape, params,
                          config=registry.with_defaults(config, use_dot=False), count=True)
    assert window.mix.get("tbl", 0) > 0  # (the disassembler prints sdot as .byte)
    assert 0 < window.instructions < plain.instructions
    wide = kernels.conv_workload("packed", 8, 8, in_shape, w_shape, params)
    assert not kernels.window_dot(wide, kernels.conv2d_config(wide, DOTPROD, database=False), DOTPROD)
