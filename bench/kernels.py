"""Per-layer benchmark: tvm-mp kernels vs onnxruntime (fp32, static QDQ int8) and TVM's fp32 default pipeline.

For every conv / dense layer shape of ResNet-8, DS-CNN, MobileNetV1-0.25 and the digits CNN (repeated shapes
measured once), a one-layer ONNX model (layer + ReLU, He-initialised weights) is timed in one process as:

* ``ort_fp32``: onnxruntime, CPU provider, one intra-op thread;
* ``ort_int8``: the same model after ``onnxruntime.quantization.quantize_static`` (QDQ, per-channel s8 weights,
  u8 activations) -- onnxruntime fuses it into its int8 conv (Q -> QLinearConv -> DQ);
* ``tvm_fp32``: ``tvm_mp.load_onnx`` + ``tvm.compile`` with TVM's default Relax pipeline for this host (untuned);
* tvm-mp ``packed_w8a8``, ``packed_w4a4`` and bit-serial ``w1a1, w1a2, w2a2, w2a4, w4a4``: ``tvm_mp.compile`` of
  the same model for ``target="host"`` (quantize + integer kernel + float epilogue), with the tuned knobs of the
  tuning database when it has them (``--tune`` fills it first).

Every variant is called from the same Python loop (one call = one inference of the layer, output allocated by
the framework), interleaved round-robin over ``--repeats`` rounds; the figure is the median round. Figures are
ratios to ``ort_int8`` measured in the same run. Roofline fraction = achieved MAC/s over this core's peak for the
data type, peaks measured here by a C micro-benchmark (u8 x s8 ``vpdpbusd``, fp32 FMA, AND + ``vpopcntd``).
With ``--qemu`` each tvm-mp kernel is also cross-compiled for aarch64 and its dynamic instruction count under
qemu-aarch64 recorded.

    python bench/kernels.py [--tune] [--qemu] [--models resnet8,ds_cnn,...] [--repeats 15]

Writes ``docs/data/bench_kernels.json`` and regenerates ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tvm_mp.targets import parse
from tvm_mp.testing.machine import describe_machine, machine_line

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "docs" / "data"
MODELS = ("resnet8", "ds_cnn", "mobilenet_v1_025", "digits_cnn")
TVM_MP_VARIANTS = {  # name -> (w_bits, a_bits, kind)
    "packed_w8a8": (8, 8, "packed"),
    "packed_w4a4": (4, 4, "packed"),
    "bitserial_w1a1": (1, 1, "bitserial"),
    "bitserial_w1a2": (1, 2, "bitserial"),
    "bitserial_w2a2": (2, 2, "bitserial"),
    "bitserial_w2a4": (2, 4, "bitserial"),
    "bitserial_w4a4": (4, 4, "bitserial"),
}
BASELINES = ("ort_fp32", "ort_int8", "tvm_fp32")
#: The realistic set (``--realistic``): ImageNet-scale ResNet-18 / MobileNetV2 layers at 224x224, the first five as
#: in issue 17. ``name -> (op, input NCHW, weight OIHW or (OC, K), strides, padding, groups)``.
REALISTIC = {
    "r18 conv3x3 64-64 56x56": ("conv2d", (1, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1),
    "r18 conv3x3 256-256 14x14": ("conv2d", (1, 256, 14, 14), (256, 256, 3, 3), 1, 1, 1),
    "r18 conv3x3 128-128 28x28": ("conv2d", (1, 128, 28, 28), (128, 128, 3, 3), 1, 1, 1),
    "mv2 pointwise 96-576 14x14": ("conv2d", (1, 96, 14, 14), (576, 96, 1, 1), 1, 0, 1),
    "mv2 depthwise3x3 s2 144ch 56x56": ("depthwise_conv2d", (1, 144, 56, 56), (144, 1, 3, 3), 2, 1, 144),
    "r18 conv3x3 s2 64-128 56x56": ("conv2d", (1, 64, 56, 56), (128, 64, 3, 3), 2, 1, 1),
    "mv2 pointwise 144-24 56x56": ("conv2d", (1, 144, 56, 56), (24, 144, 1, 1), 1, 0, 1),
    "mv2 depthwise3x3 s1 384ch 14x14": ("depthwise_conv2d", (1, 384, 14, 14), (384, 1, 3, 3), 1, 1, 384),
    "r18 fc 512-1000": ("dense", (1, 512), (1000, 512), 1, 0, 1),
}
#: Variants of the realistic set: w8a8, w2a2 (both kinds: the faster is the kernel a plan would pick) and w1a1.
REALISTIC_VARIANTS = {
    "packed_w8a8": (8, 8, "packed"),
    "packed_w2a2": (2, 2, "packed"),
    "bitserial_w2a2": (2, 2, "bitserial"),
    "bitserial_w1a1": (1, 1, "bitserial"),
}
#: Like for like with onnxruntime's int8 on AVX2 (``bench/models.py --variants``): 7-bit weights are exact with one
#: saturating ``vpmaddubsw`` per 32 MACs, onnxruntime's own instruction; ``ort_int8_rr`` is onnxruntime quantized
#: with ``reduce_range`` (7-bit weights), the same precision on its side.
NARROW_VARIANTS = {"packed_w7a8": (7, 8, "packed")}
ALL_VARIANTS = {**TVM_MP_VARIANTS, **REALISTIC_VARIANTS, **NARROW_VARIANTS}


# ---------------------------------------------------------------------------------------------------------------
# machine
# ---------------------------------------------------------------------------------------------------------------

def machine_description() -> dict:
    return describe_machine(packages=("apache-tvm", "onnxruntime", "numpy"))


PEAKS_C = r"""
#include <immintrin.h>
#include <stdint.h>
/* Register-only loops with 12 independent accumulators: the issue rate of each instruction class. */
int64_t peak_vnni(int64_t iters) {  /* u8 x s8 MACs */
  __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
  /* distinct starting values: identical chains would be merged into one by the compiler */
  __m512i c0 = _mm512_set1_epi32(0), c1 = _mm512_set1_epi32(1), c2 = _mm512_set1_epi32(2),
          c3 = _mm512_set1_epi32(3), c4 = _mm512_set1_epi32(4), c5 = _mm512_set1_epi32(5),
          c6 = _mm512_set1_epi32(6), c7 = _mm512_set1_epi32(7), c8 = _mm512_set1_epi32(8),
          c9 = _mm512_set1_epi32(9), c10 = _mm512_set1_epi32(10), c11 = _mm512_set1_epi32(11);
  for (int64_t i = 0; i < iters; ++i) {
    c0 = _mm512_dpbusd_epi32(c0, a, b); c1 = _mm512_dpbusd_epi32(c1, a, b); c2 = _mm512_dpbusd_epi32(c2, a, b);
    c3 = _mm512_dpbusd_epi32(c3, a, b); c4 = _mm512_dpbusd_epi32(c4, a, b); c5 = _mm512_dpbusd_epi32(c5, a, b);
    c6 = _mm512_dpbusd_epi32(c6, a, b); c7 = _mm512_dpbusd_epi32(c7, a, b); c8 = _mm512_dpbusd_epi32(c8, a, b);
    c9 = _mm512_dpbusd_epi32(c9, a, b); c10 = _mm512_dpbusd_epi32(c10, a, b); c11 = _mm512_dpbusd_epi32(c11, a, b);
    __asm__ volatile("" : "+v"(a));
  }
  __m512i s = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(c0, c1), _mm512_add_epi32(c2, c3)),
              _mm512_add_epi32(_mm512_add_epi32(c4, c5), _mm512_add_epi32(c6, c7)));
  s = _mm512_add_epi32(s, _mm512_add_epi32(_mm512_add_epi32(c8, c9), _mm512_add_epi32(c10, c11)));
  volatile int sink = _mm512_reduce_add_epi32(s); (void)sink;
  return iters * 12 * 64;
}
int64_t peak_fma(int64_t iters) {  /* fp32 MACs */
  __m512 a = _mm512_set1_ps(1.0001f), b = _mm512_set1_ps(0.9999f);
  __m512 c0 = _mm512_set1_ps(0.f), c1 = _mm512_set1_ps(1.f), c2 = _mm512_set1_ps(2.f), c3 = _mm512_set1_ps(3.f),
         c4 = _mm512_set1_ps(4.f), c5 = _mm512_set1_ps(5.f), c6 = _mm512_set1_ps(6.f), c7 = _mm512_set1_ps(7.f),
         c8 = _mm512_set1_ps(8.f), c9 = _mm512_set1_ps(9.f), c10 = _mm512_set1_ps(10.f),
         c11 = _mm512_set1_ps(11.f);
  for (int64_t i = 0; i < iters; ++i) {
    c0 = _mm512_fmadd_ps(a, b, c0); c1 = _mm512_fmadd_ps(a, b, c1); c2 = _mm512_fmadd_ps(a, b, c2);
    c3 = _mm512_fmadd_ps(a, b, c3); c4 = _mm512_fmadd_ps(a, b, c4); c5 = _mm512_fmadd_ps(a, b, c5);
    c6 = _mm512_fmadd_ps(a, b, c6); c7 = _mm512_fmadd_ps(a, b, c7); c8 = _mm512_fmadd_ps(a, b, c8);
    c9 = _mm512_fmadd_ps(a, b, c9); c10 = _mm512_fmadd_ps(a, b, c10); c11 = _mm512_fmadd_ps(a, b, c11);
    __asm__ volatile("" : "+v"(a));
  }
  __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
             _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
  s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)));
  volatile float sink = _mm512_reduce_add_ps(s); (void)sink;
  return iters * 12 * 16;
}
int64_t peak_popcount(int64_t iters) {  /* 1-bit MACs: AND + VPOPCNTD + VPADDD on 512 bits, 8 chains */
  __m512i a = _mm512_set1_epi32(0x5a5a5a5a);
  __m512i w0 = _mm512_set1_epi32(1), w1 = _mm512_set1_epi32(3), w2 = _mm512_set1_epi32(7),
          w3 = _mm512_set1_epi32(15), w4 = _mm512_set1_epi32(31), w5 = _mm512_set1_epi32(63),
          w6 = _mm512_set1_epi32(127), w7 = _mm512_set1_epi32(255);
  __m512i c0 = _mm512_setzero_si512(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
  for (int64_t i = 0; i < iters; ++i) {
    c0 = _mm512_add_epi32(c0, _mm512_popcnt_epi32(_mm512_and_si512(a, w0)));
    c1 = _mm512_add_epi32(c1, _mm512_popcnt_epi32(_mm512_and_si512(a, w1)));
    c2 = _mm512_add_epi32(c2, _mm512_popcnt_epi32(_mm512_and_si512(a, w2)));
    c3 = _mm512_add_epi32(c3, _mm512_popcnt_epi32(_mm512_and_si512(a, w3)));
    c4 = _mm512_add_epi32(c4, _mm512_popcnt_epi32(_mm512_and_si512(a, w4)));
    c5 = _mm512_add_epi32(c5, _mm512_popcnt_epi32(_mm512_and_si512(a, w5)));
    c6 = _mm512_add_epi32(c6, _mm512_popcnt_epi32(_mm512_and_si512(a, w6)));
    c7 = _mm512_add_epi32(c7, _mm512_popcnt_epi32(_mm512_and_si512(a, w7)));
    __asm__ volatile("" : "+v"(a));
  }
  __m512i s = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(c0, c1), _mm512_add_epi32(c2, c3)),
              _mm512_add_epi32(_mm512_add_epi32(c4, c5), _mm512_add_epi32(c6, c7)));
  volatile int sink = _mm512_reduce_add_epi32(s); (void)sink;
  return iters * 8 * 512;
}
"""


#: The same peaks on an AVX2 + FMA host without AVX-512: u8 x s8 is ``vpmaddubsw`` (saturating int16 pair sums)
#: then ``vpmaddwd`` by ones and ``vpaddd`` (32 MACs), i16 x i16 ``vpmaddwd`` + ``vpaddd`` (16 MACs), popcount the
#: nibble-LUT ``vpshufb`` form (byte counts summed over 8 steps, then ``vpsadbw``) and scalar 64-bit ``popcnt``.
PEAKS_AVX2_C = r"""
#include <immintrin.h>
#include <stdint.h>
#define CH12(OP) OP(0) OP(1) OP(2) OP(3) OP(4) OP(5) OP(6) OP(7) OP(8) OP(9) OP(10) OP(11)
int64_t peak_int8(int64_t iters) { /* u8 x s8: vpmaddubsw -> vpmaddwd(1) -> vpaddd, 32 MACs */
  __m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(-2), one = _mm256_set1_epi16(1);
#define D(i) __m256i c##i = _mm256_set1_epi32(i);
  CH12(D)
#undef D
  for (int64_t it = 0; it < iters; ++it) {
#define S(i) c##i = _mm256_add_epi32(c##i, _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), one));
    CH12(S)
#undef S
    __asm__ volatile("" : "+x"(a));
  }
  __m256i s = c0;
#define A(i) s = _mm256_add_epi32(s, c##i);
  CH12(A)
  volatile int sink = _mm256_extract_epi32(s, 0); (void)sink;
  return iters * 12 * 32;
}
int64_t peak_int16(int64_t iters) { /* i16 x i16: vpmaddwd -> vpaddd, 16 MACs */
  __m256i a = _mm256_set1_epi16(3), b = _mm256_set1_epi16(-2);
#define D(i) __m256i c##i = _mm256_set1_epi32(i);
  CH12(D)
  for (int64_t it = 0; it < iters; ++it) {
#define S(i) c##i = _mm256_add_epi32(c##i, _mm256_madd_epi16(a, b));
    CH12(S)
#undef S
    __asm__ volatile("" : "+x"(a));
  }
  __m256i s = c0;
  CH12(A)
  volatile int sink = _mm256_extract_epi32(s, 0); (void)sink;
  return iters * 12 * 16;
}
int64_t peak_fma(int64_t iters) {
  __m256 a = _mm256_set1_ps(1.0001f), b = _mm256_set1_ps(0.9999f);
#undef D
#define D(i) __m256 c##i = _mm256_set1_ps((float)i);
  CH12(D)
  for (int64_t it = 0; it < iters; ++it) {
#define S(i) c##i = _mm256_fmadd_ps(a, b, c##i);
    CH12(S)
#undef S
    __asm__ volatile("" : "+x"(a));
  }
  __m256 s = c0;
#undef A
#define A(i) s = _mm256_add_ps(s, c##i);
  CH12(A)
  volatile float sink = s[0]; (void)sink;
  return iters * 12 * 8;
}
int64_t peak_popcount_lut(int64_t iters) { /* AND + nibble-LUT vpshufb popcount, byte counts summed 8 steps, vpsadbw */
  const __m256i lut = _mm256_setr_epi8(0,1,1,2,1,2,2,3,1,2,2,3,2,3,3,4,0,1,1,2,1,2,2,3,1,2,2,3,2,3,3,4);
  const __m256i low = _mm256_set1_epi8(0x0f);
  __m256i a = _mm256_set1_epi32(0x5a5a5a5a);
  __m256i w0 = _mm256_set1_epi32(1), w1 = _mm256_set1_epi32(3), w2 = _mm256_set1_epi32(7), w3 = _mm256_set1_epi32(15);
  __m256i t0 = _mm256_setzero_si256(), t1 = t0, t2 = t0, t3 = t0;
  for (int64_t it = 0; it < iters; ++it) {
    __m256i b0 = _mm256_setzero_si256(), b1 = b0, b2 = b0, b3 = b0;
    for (int k = 0; k < 8; ++k) {
#define P(i) { __m256i x = _mm256_and_si256(a, w##i); \
      b##i = _mm256_add_epi8(b##i, _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_and_si256(x, low)), \
             _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(x, 4), low)))); }
      P(0) P(1) P(2) P(3)
      __asm__ volatile("" : "+x"(a));
    }
    t0 = _mm256_add_epi64(t0, _mm256_sad_epu8(b0, _mm256_setzero_si256()));
    t1 = _mm256_add_epi64(t1, _mm256_sad_epu8(b1, _mm256_setzero_si256()));
    t2 = _mm256_add_epi64(t2, _mm256_sad_epu8(b2, _mm256_setzero_si256()));
    t3 = _mm256_add_epi64(t3, _mm256_sad_epu8(b3, _mm256_setzero_si256()));
  }
  __m256i s = _mm256_add_epi64(_mm256_add_epi64(t0, t1), _mm256_add_epi64(t2, t3));
  volatile long long sink = _mm256_extract_epi64(s, 0); (void)sink;
  return iters * 8 * 4 * 256;
}
int64_t peak_popcnt_scalar(int64_t iters) { /* AND + popcnt + add on 64 bits, 8 chains */
  uint64_t a = 0x5a5a5a5a5a5a5a5aull;
  uint64_t c[8] = {0}; const uint64_t w[8] = {1, 3, 7, 15, 31, 63, 127, 255};
  for (int64_t it = 0; it < iters; ++it) {
    for (int k = 0; k < 8; ++k) c[k] += __builtin_popcountll(a & w[k]);
    __asm__ volatile("" : "+r"(a));
  }
  volatile uint64_t sink = c[0]+c[1]+c[2]+c[3]+c[4]+c[5]+c[6]+c[7]; (void)sink;
  return iters * 8 * 64;
}
"""


def _cpu_flags() -> set:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def measure_peaks(repeats: int = 21) -> dict:
    """Single-core peak MAC/s per data type, measured by register-only loops (best of repeats). AVX-512 VNNI hosts
    run :data:`PEAKS_C`, others :data:`PEAKS_AVX2_C` (then ``isa`` is ``avx2`` and the int16 and scalar popcount
    peaks are reported too)."""
    avx512 = {"avx512_vnni", "avx512_vpopcntdq"} <= _cpu_flags()
    with tempfile.TemporaryDirectory() as tmp:
        src, lib = Path(tmp) / "peaks.c", Path(tmp) / "peaks.so"
        src.write_text(PEAKS_C if avx512 else PEAKS_AVX2_C)
        subprocess.run(["gcc", "-O2", "-march=native", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
        so = ctypes.CDLL(str(lib))
        peaks = {"isa": "avx512" if avx512 else "avx2"}
        fns = ((("int8_macs_per_s", so.peak_vnni), ("fp32_macs_per_s", so.peak_fma),
                ("bit_macs_per_s", so.peak_popcount)) if avx512 else
               (("int8_macs_per_s", so.peak_int8), ("int16_macs_per_s", so.peak_int16),
                ("fp32_macs_per_s", so.peak_fma), ("bit_macs_per_s", so.peak_popcount_lut),
                ("bit_scalar_macs_per_s", so.peak_popcnt_scalar)))
        for key, fn in fns:
            fn.restype = ctypes.c_int64
            fn.argtypes = [ctypes.c_int64]
            fn(100_000)
            rates = []
            iters = 40_000 if key == "bit_macs_per_s" and not avx512 else 300_000  # (8 inner steps per pass)
            for _ in range(repeats):
                t0 = time.perf_counter()
                ops = fn(iters)
                rates.append(ops / (time.perf_counter() - t0))
            peaks[key] = float(np.max(rates))  # the best round: other jobs share the cores
    return peaks


def peak_for(variant: str, peaks: dict) -> float:
    variant = variant.split("@")[0]
    if variant in ("ort_fp32", "tvm_fp32"):
        return peaks["fp32_macs_per_s"]
    if variant.startswith("bitserial"):
        w, a = ALL_VARIANTS[variant][:2]
        return peaks["bit_macs_per_s"] / (w * a)
    return peaks["int8_macs_per_s"]  # ort int8 and packed kernels (sub-byte weights are unpacked to int8)


# ---------------------------------------------------------------------------------------------------------------
# one-layer models
# ---------------------------------------------------------------------------------------------------------------

def unique_layers(models=MODELS):
    """``[(key, LayerInfo, [model/layer names])]``: every conv / dense shape of the models, once."""
    import tvm_mp
    from tvm_mp.models.builders import BUILDERS

    seen = {}
    for name in models:
        b = BUILDERS[name]
        mod = tvm_mp.load_onnx(b.build(0), shapes={b.input_name: b.input_shape})
        for info in tvm_mp.list_layers(mod):
            key = (info.op, tuple(info.input_shape), tuple(info.weight_shape), info.params)
            seen.setdefault(key, (info, []))[1].append(f"{name}/{info.name}")
    return [(k, info, where) for k, (info, where) in seen.items()]


def layer_onnx(info, seed: int = 0):
    """One-layer ONNX model (conv or dense, with bias, then ReLU), He-initialised from ``seed``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    fan_in = int(np.prod(info.weight_shape[1:]))
    weight = (rng.normal(0, math.sqrt(2.0 / fan_in), info.weight_shape)).astype(np.float32)
    bias = rng.normal(0, 0.05, info.weight_shape[0]).astype(np.float32)
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, list(info.input_shape))
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, list(info.output_shape))
    if info.op == "dense":
        node = helper.make_node("Gemm", ["input", "W", "B"], ["pre"], transB=1)
    else:
        p = info.params
        node = helper.make_node("Conv", ["input", "W", "B"], ["pre"], kernel_shape=list(info.weight_shape[2:]),
                                strides=list(p.strides), pads=[p.padding[0], p.padding[1], p.padding[2],
                                                                 p.padding[3]],
                                dilations=list(p.dilation), group=p.groups)
    relu = helper.make_node("Relu", ["pre"], ["output"])
    graph = helper.make_graph([node, relu], "layer", [x], [y], [numpy_helper.from_array(weight, "W"),
                                                               numpy_helper.from_array(bias, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def calibration_inputs(shape, n: int = 4, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 1, shape).astype(np.float32) for _ in range(n)]


def ort_sessions(model, calib, threads: int = 1, reduce_range: bool = False):
    """``{"ort_fp32": session, "ort_int8": session}`` for ``model`` (int8: static QDQ quantization); with
    ``reduce_range`` also ``"ort_int8_rr"``: the same with 7-bit weights (exact on AVX2's saturating u8 x s8)."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{model.graph.input[0].name: c} for c in calib])

        def get_next(self):
            return next(self.items, None)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # no busy-waiting between runs: onnxruntime's and TVM's thread pools share the process and the two cores
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    with tempfile.TemporaryDirectory() as tmp:
        f32, q8 = Path(tmp) / "m.onnx", Path(tmp) / "q.onnx"
        onnx.save(model, str(f32))
        import logging

        logging.getLogger().setLevel(logging.ERROR)
        sessions = {"ort_fp32": ort.InferenceSession(str(f32), opts, providers=["CPUExecutionProvider"])}
        for name, rr in (("ort_int8", False), ("ort_int8_rr", True))[:2 if reduce_range else 1]:
            quantize_static(str(f32), str(q8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=rr)
            sessions[name] = ort.InferenceSession(str(q8), opts, providers=["CPUExecutionProvider"])
        return sessions


def tvm_fp32_vm(mod, target):
    from tvm_mp import _tvm

    return _tvm.vm(_tvm.build(mod, target))


def tvm_mp_vm(mod, calib, w_bits, a_bits, kind, target):
    import tvm_mp
    from tvm_mp import Precision, PrecisionPlan, _tvm

    cm = tvm_mp.compile(mod, plan=PrecisionPlan.uniform(mod, Precision(w_bits, a_bits, kind)), calibration=calib,
                        target=target)
    x = calib[0]
    if not np.array_equal(cm.run(x), cm.reference(x)):
        raise AssertionError(f"tvm-mp w{w_bits}a{a_bits} {kind} differs from the NumPy reference")
    return _tvm.vm(cm.executable), cm


# ---------------------------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------------------------

def make_callable(variant: str, runner, x: np.ndarray):
    if variant.startswith("ort"):
        feed = {runner.get_inputs()[0].name: x}
        return lambda: runner.run(None, feed)
    from tvm_mp import _tvm

    dev_x = _tvm.to_device(x)
    fn = runner["main"]
    return lambda: fn(dev_x)


def interleaved_median_us(callables: dict, repeats: int, target_s: float = 0.004, cpu_out: dict | None = None) -> dict:
    """Median over ``repeats`` round-robin rounds of each callable's mean call time (us). With ``cpu_out``, the
    median process CPU time per call (us) is stored there too: on a loaded machine the wall time mostly measures
    the waits for a core, the CPU time what the call itself costs (one-thread runs; other threads' spinning would
    count)."""
    numbers = {}
    for name, fn in callables.items():
        for _ in range(3):
            fn()
        t0 = time.perf_counter()
        fn()
        once = max(time.perf_counter() - t0, 1e-6)
        numbers[name] = max(3, int(target_s / once))
    rounds = {name: [] for name in callables}
    cpu = {name: [] for name in callables}
    for _ in range(repeats):
        for name, fn in callables.items():
            n = numbers[name]
            c0 = time.process_time()
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            rounds[name].append((time.perf_counter() - t0) / n * 1e6)
            cpu[name].append((time.process_time() - c0) / n * 1e6)
    if cpu_out is not None:
        cpu_out.update({name: float(np.median(v)) for name, v in cpu.items()})
    return {name: float(np.median(v)) for name, v in rounds.items()}


def call_overhead_us(repeats: int) -> dict:
    """The floor of the timing loop: an Identity ONNX model and an identity Relax function, same shapes."""
    import onnxruntime as ort
    from onnx import TensorProto, helper
    from tvm import relax

    from tvm_mp import _tvm

    x = np.zeros((1, 16, 8, 8), np.float32)
    g = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "id",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(x.shape))],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, list(x.shape))])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    v = relax.Var("x", relax.TensorType(x.shape, "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [v]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.add(v, relax.const(0.0, "float32")))
        bb.emit_func_output(out)
    vm = _tvm.vm(_tvm.build(bb.get(), "host"))
    return interleaved_median_us({"ort": make_callable("ort", sess, x), "tvm": make_callable("tvm", vm, x)},
                                 repeats)


# ---------------------------------------------------------------------------------------------------------------
# qemu instruction counts
# ---------------------------------------------------------------------------------------------------------------

def qemu_instruction_count(info, w_bits, a_bits, kind, target_json, workdir: Path) -> dict:
    """Dynamic aarch64 instructions of one call of the layer's accumulator kernel under qemu (conv layers)."""
    import tvm

    from tvm_mp.schedules import kernels, tuning
    from tvm_mp.testing import qemu

    target = parse(target_json).tvm_target
    work = kernels.conv_workload(kind, w_bits, a_bits, info.input_shape, info.weight_shape, info.params)
    config = kernels.conv2d_config(work, target)
    codes, data, _ = tuning.random_operands(work, 0, np.random.default_rng(0), config)
    func = kernels.conv2d_kernel("k", kind, w_bits, a_bits, info.input_shape, info.weight_shape, info.params, 0,
                                 kernels.Epilogue("acc"), data[0].shape, target=target, config=config)
    lib = qemu.export_aarch64(tvm.compile(tvm.IRModule({"k": func}), target), workdir / "k.so")
    prog = qemu.kernel_program("k", [codes, *data], [tuple(info.output_shape)], [np.int32])
    run = qemu.run_program(prog, lib, workdir / "run", count=True)
    return {"instructions": run.instructions, "top_mnemonics": dict(list(run.mix.items())[:6]),
            "algorithm": config.algorithm, "use_dot": config.use_dot}


#: ``--qemu-realistic``: the aarch64 kernels counted per realistic layer, ``label -> (variant, target, config
#: changes)``; the config is the default of the variant on the target with these knobs replaced (``None``: the
#: default as it is). Each newer kernel sits beside the schedule it replaces or competes with.
NEON_DOT = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon", "+dotprod"]}
QEMU_REALISTIC = {
    "packed_w8a8 mla": ("packed_w8a8", NEON_DOT, {"use_dot": False}),
    "packed_w8a8 sdot split": ("packed_w8a8", NEON_DOT, {"use_dot": True}),
    "packed_w2a2 mla": ("packed_w2a2", NEON_DOT, {"use_dot": False}),
    "packed_w2a2 sdot": ("packed_w2a2", NEON_DOT, {"use_dot": True}),
    "bitserial_w2a2 direct": ("bitserial_w2a2", "aarch64", None),
    "bitserial_w2a2 direct64": ("bitserial_w2a2", "aarch64", {"algorithm": "direct64", "lanes": 2}),
    "bitserial_w1a1 direct": ("bitserial_w1a1", "aarch64", None),
    "bitserial_w1a1 direct64": ("bitserial_w1a1", "aarch64", {"algorithm": "direct64", "lanes": 2}),
}


def qemu_count(info, w_bits, a_bits, kind, target_json, changes, workdir: Path) -> dict:
    """Emulated aarch64 instructions of one call of ``info``'s accumulator kernel with the default config of
    ``target_json`` changed by ``changes`` (``None``: as it is), checked bit-exact against the NumPy reference."""
    import dataclasses

    import tvm

    from tvm_mp.quantize import reference
    from tvm_mp.schedules import kernels, registry, tuning
    from tvm_mp.testing import qemu

    target = parse(target_json).tvm_target
    work = kernels.conv_workload(kind, w_bits, a_bits, info.input_shape, info.weight_shape, info.params)
    config = kernels.conv2d_config(work, target, database=False)
    if changes:
        config = dataclasses.replace(config, **changes)
    if not registry.legal(config, work):
        return {}
    rng = np.random.default_rng(0)
    zp = int(rng.integers(0, 1 << a_bits))
    codes, data, w_q = tuning.random_operands(work, zp, rng, config)
    func = kernels.conv2d_kernel("k", kind, w_bits, a_bits, info.input_shape, info.weight_shape, info.params, zp,
                                 kernels.Epilogue("acc"), data[0].shape, target=target, config=config)
    t0 = time.perf_counter()
    lib = qemu.export_aarch64(tvm.compile(tvm.IRModule({"k": func}), target), workdir / "k.so")
    compile_s = time.perf_counter() - t0
    expected = reference.conv2d_acc(codes, w_q, info.params, zp)
    run = qemu.run_program(qemu.kernel_program("k", [codes, *data], [expected.shape], [np.int32]), lib,
                           workdir / "run", count=True)
    return {"instructions": int(run.instructions), "exact": bool(np.array_equal(run.outputs[0], expected)),
            "top_mnemonics": dict(list(run.mix.items())[:8]), "config": config.to_dict(),
            "compile_s": compile_s}


def _config_of(info, w_bits, a_bits, kind, target_json, changes) -> str:
    import dataclasses

    from tvm_mp.schedules import kernels

    work = kernels.conv_workload(kind, w_bits, a_bits, info.input_shape, info.weight_shape, info.params)
    config = kernels.conv2d_config(work, parse(target_json).tvm_target, database=False)
    return json.dumps((dataclasses.replace(config, **changes) if changes else config).to_dict(), sort_keys=True)


def qemu_realistic_worker(layers: str, labels: str) -> dict:
    """``{layer: {label: counts}}`` of :data:`QEMU_REALISTIC` (labels: comma-separated, or all) on the realistic
    conv layers -- also run by the ``--qemu-before`` tree (an older tvm_mp) through ``--qemu-worker``."""
    out = {}
    for name, info in realistic_layers(layers):
        if info.op == "dense":
            continue
        out[name], done = {}, {}
        for label, (variant, target, changes) in QEMU_REALISTIC.items():
            if labels and label not in labels.split(","):
                continue
            w, a, kind = ALL_VARIANTS[variant]
            key = (w, a, kind, json.dumps(target, sort_keys=True), _config_of(info, w, a, kind, target, changes))
            if key in done:  # the same kernel under another label (depthwise: no dot, no direct64)
                out[name][label] = {**done[key], "same_as": done[key]["label"]}
                continue
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    out[name][label] = qemu_count(info, w, a, kind, target, changes, Path(tmp))
                except Exception as err:  # noqa: BLE001 -- an older tree may not build a config: recorded
                    out[name][label] = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"}
            done[key] = {**out[name][label], "label": label}
            print(f"qemu {name} {label}: {out[name][label].get('instructions', out[name][label].get('error'))}",
                  file=sys.stderr, flush=True)
    return out


def run_qemu_realistic(args) -> dict:
    """The ``--qemu-realistic`` run: this tree's kernels, and with ``--qemu-before DIR`` (a checkout of an older
    tvm_mp) the same labels built by that tree, each counted under qemu-aarch64."""
    result = {"command": "python bench/kernels.py " + " ".join(sys.argv[1:]), "date": time.strftime("%Y-%m-%d %H:%M"),
              "after": qemu_realistic_worker(args.layers, args.qemu_labels)}
    if args.qemu_before:
        env = dict(os.environ, PYTHONPATH=str(Path(args.qemu_before).resolve()))
        proc = subprocess.run([sys.executable, __file__, "--qemu-worker", "--layers", args.layers,
                               "--qemu-labels", args.qemu_labels], env=env, capture_output=True, text=True)
        sys.stderr.write(proc.stderr[-4000:])
        if proc.returncode == 0:
            result["before"] = json.loads(proc.stdout.strip().splitlines()[-1])
            result["before_tree"] = args.qemu_before_label or args.qemu_before
    return result


#: Mnemonics that mark a kernel's hottest loop: the MAC instructions of each kind (VNNI, AVX2 u8 x s8 and i16,
#: AVX-512 and AVX2 nibble-LUT popcount, scalar popcount).
HOT_MNEMONICS = ("vpopcntd", "vpdpbusd", "vpmaddubsw", "vpmaddwd", "vpshufb", "popcntq", "popcntl", "vpmulld")


def host_inner_loop_mix(target, in_shape=(1, 16, 32, 32), weight_shape=(16, 16, 3, 3), variants=None) -> dict:
    """Static instruction mix of the hottest loop (the basic block with the most MAC instructions, see
    :data:`HOT_MNEMONICS`) of the x86 kernels of one conv layer (default: ResNet-8's 16 -> 16 channels, 3x3,
    32x32), per variant, with the MACs that one pass of the loop computes -- the instruction budget per MAC that
    bounds each kind on this host."""
    import collections

    import tvm

    from tvm_mp.schedules import kernels, tuning
    from tvm_mp.workload import ConvParams

    params = ConvParams((1, 1), (1, 1, 1, 1), (1, 1), 1)
    out = {}
    for variant, (w, a, kind) in (variants or TVM_MP_VARIANTS).items():
        work = kernels.conv_workload(kind, w, a, in_shape, weight_shape, params)
        config = kernels.conv2d_config(work, target)
        _, data, _ = tuning.random_operands(work, 0, np.random.default_rng(0), config)
        func = kernels.conv2d_kernel("k", kind, w, a, work.in_shape, work.weight_shape, params, 0,
                                     kernels.Epilogue("acc"), data[0].shape, target=target, config=config)
        asm = tvm.compile(tvm.IRModule({"k": func}), target).mod.inspect_source("asm")
        best, best_score = collections.Counter(), -1
        block: list[str] = []
        for line in asm.splitlines() + ["end:"]:
            text = line.strip()
            if not text or text.startswith(("#", ".loc", ".cfi", ".p2align", ".Ltmp")):
                continue
            if text.endswith(":"):  # a label starts a new basic block
                score = sum(op in HOT_MNEMONICS for op in block)
                if score > best_score:
                    best, best_score = collections.Counter(block), score
                block = []
            elif not text.startswith("."):
                block.append(text.split()[0])
        out[variant] = {"config": config.to_dict(), "loop_mix": dict(best.most_common(10)),
                        "loop_instructions": int(sum(best.values()))}
    return out


# ---------------------------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------------------------

def tune_layers(layers, target, trials: int, min_macs: int, log) -> None:
    from tvm_mp.schedules import kernels, tuning

    db = tuning.TuningDatabase.default()
    for _, info, where in layers:
        if info.op == "dense" or info.macs < min_macs:
            continue
        for variant, (w, a, kind) in TVM_MP_VARIANTS.items():
            work = kernels.conv_workload(kind, w, a, info.input_shape, info.weight_shape, info.params)
            if db.get(work, target) is not None:
                continue
            best, t = tuning.tune_conv(work, target, db, max_trials=trials, rng=np.random.default_rng(0))
            log(f"tuned {where[0]} {variant}: {t:.2f} us {best}")
            db.save()


def geomean(values) -> float:
    values = [v for v in values if v and v > 0]
    return float(math.exp(np.mean(np.log(values)))) if values else float("nan")


def run(args) -> dict:
    import tvm_mp

    target = parse("host").tvm_target
    log = (lambda m: print(m, flush=True))
    layers = unique_layers(args.models.split(","))
    log(f"{len(layers)} unique layer shapes")
    if args.tune:
        tune_layers(layers, target, args.trials, args.tune_min_macs, log)
    peaks = measure_peaks()
    log(f"peaks: {peaks}")
    overhead = call_overhead_us(args.repeats)
    log(f"call overhead (identity): {overhead}")
    rows = []
    for idx, (_, info, where) in enumerate(layers):
        model = layer_onnx(info, seed=idx)
        calib = calibration_inputs(info.input_shape)
        x = calib[0]
        mod = tvm_mp.load_onnx(model, shapes={"input": tuple(info.input_shape)})
        runners = dict(ort_sessions(model, calib))
        runners["tvm_fp32"] = tvm_fp32_vm(mod, target)
        for variant, (w, a, kind) in TVM_MP_VARIANTS.items():
            runners[variant], _ = tvm_mp_vm(mod, calib, w, a, kind, target)
        times = interleaved_median_us({k: make_callable(k, r, x) for k, r in runners.items()}, args.repeats)
        row = {"layers": where, "op": info.op, "input_shape": list(info.input_shape),
               "weight_shape": list(info.weight_shape),
               "params": None if info.params is None else {"strides": list(info.params.strides),
                                                           "padding": list(info.params.padding),
                                                           "dilation": list(info.params.dilation),
                                                           "groups": info.params.groups},
               "macs": int(info.macs), "latency_us": times,
               "speedup_vs_ort_int8": {k: times["ort_int8"] / t for k, t in times.items()},
               "roofline_fraction": {k: info.macs / (t * 1e-6) / peak_for(k, peaks) for k, t in times.items()}}
        if args.qemu and info.op != "dense":
            row["qemu_aarch64"] = {}
            for variant, (w, a, kind) in TVM_MP_VARIANTS.items():
                with tempfile.TemporaryDirectory() as tmp:
                    row["qemu_aarch64"][variant] = qemu_instruction_count(info, w, a, kind, "aarch64", Path(tmp))
                if kind == "packed" and a <= 7:
                    dot = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon", "+dotprod"]}
                    with tempfile.TemporaryDirectory() as tmp:
                        row["qemu_aarch64"][variant + "+dotprod"] = qemu_instruction_count(info, w, a, kind, dot,
                                                                                          Path(tmp))
        rows.append(row)
        log(f"[{idx + 1}/{len(layers)}] {where[0]:<28} " + " ".join(f"{k}={v:.1f}" for k, v in times.items()))
    variants = list(BASELINES) + list(TVM_MP_VARIANTS)
    summary = {v: geomean([r["speedup_vs_ort_int8"][v] for r in rows]) for v in variants}
    fp32_ratio = geomean([r["latency_us"]["tvm_fp32"] / r["latency_us"]["packed_w8a8"] for r in rows])
    return {"command": "python bench/kernels.py " + " ".join(sys.argv[1:]), "date": time.strftime("%Y-%m-%d"),
            "machine": machine_description(), "peaks": peaks, "call_overhead_us": overhead,
            "repeats": args.repeats, "target": str(target.attrs.get("mcpu", "")), "rows": rows,
            "geomean_speedup_vs_ort_int8": summary, "geomean_packed_int8_vs_tvm_fp32": fp32_ratio}


def realistic_layers(names=None):
    """``[(name, LayerInfo)]`` of :data:`REALISTIC` (all, or the comma-separated ``names`` substrings)."""
    from tvm_mp.layers import LayerInfo
    from tvm_mp.workload import ConvParams

    out = []
    for name, (op, ins, wsh, stride, pad, groups) in REALISTIC.items():
        if names and not any(n in name for n in names.split(",")):
            continue
        params = None if op == "dense" else ConvParams((stride, stride), (pad,) * 4, (1, 1), groups)
        out.append((name, LayerInfo.from_shapes(name, op, ins, wsh, params, has_bias=True)))
    return out


def kernel_knobs(info, w, a, kind, target) -> dict:
    """The knobs and their source (tuning database or defaults) a build of ``info`` uses on ``target``."""
    from tvm_mp.schedules import kernels

    if info.op == "dense":
        work = kernels.dense_workload(kind, w, a, info.input_shape, info.weight_shape)
    else:
        work = kernels.conv_workload(kind, w, a, info.input_shape, info.weight_shape, info.params)
    config, source = kernels.config_for(work, target)
    return {**config.to_dict(), "source": source}


def run_realistic(args) -> dict:
    """The realistic set at ``target="host"`` and at the default target (``target=None``, w8a8), vs onnxruntime
    int8 in the same interleaved rounds, one thread."""
    import tvm_mp

    target = parse("host").tvm_target
    default = parse(None)
    log = (lambda m: print(m, flush=True))
    peaks = measure_peaks()
    log(f"peaks: {peaks}; default target {default} == host: {default == parse('host')}")
    rows = []
    variants = {k: v for k, v in REALISTIC_VARIANTS.items()
                if not args.variants or k in args.variants.split(",")}
    for idx, (name, info) in enumerate(realistic_layers(args.layers)):
        model = layer_onnx(info, seed=idx)
        calib = calibration_inputs(info.input_shape)
        x = calib[0]
        mod = tvm_mp.load_onnx(model, shapes={"input": tuple(info.input_shape)})
        runners = {"ort_int8": ort_sessions(model, calib)["ort_int8"]}
        knobs = {}
        t0 = time.perf_counter()
        for variant, (w, a, kind) in variants.items():
            runners[variant], _ = tvm_mp_vm(mod, calib, w, a, kind, target)
            knobs[variant] = kernel_knobs(info, w, a, kind, target)
        if "packed_w8a8" in variants:
            runners["packed_w8a8@default"], _ = tvm_mp_vm(mod, calib, 8, 8, "packed", None)
        compile_s = time.perf_counter() - t0
        cpu: dict = {}
        times = interleaved_median_us({k: make_callable(k.split("@")[0], r, x) for k, r in runners.items()},
                                      args.repeats, target_s=0.02, cpu_out=cpu)
        row = {"name": name, "op": info.op, "input_shape": list(info.input_shape),
               "weight_shape": list(info.weight_shape), "macs": int(info.macs), "latency_us": times,
               "cpu_us": cpu, "speedup_cpu_vs_ort_int8": {k: cpu["ort_int8"] / t for k, t in cpu.items()},
               "gmacs_cpu": {k: info.macs / (t * 1e-6) / 1e9 for k, t in cpu.items()},
               "roofline_fraction_cpu": {k: info.macs / (t * 1e-6) / peak_for(k, peaks) for k, t in cpu.items()},
               "gmacs": {k: info.macs / (t * 1e-6) / 1e9 for k, t in times.items()},
               "speedup_vs_ort_int8": {k: times["ort_int8"] / t for k, t in times.items()},
               "roofline_fraction": {k: info.macs / (t * 1e-6) / peak_for(k, peaks) for k, t in times.items()},
               "knobs": knobs, "compile_s": compile_s}
        rows.append(row)
        log(f"[{idx + 1}] {name:<34} " + " ".join(f"{k}={v:.0f}us({row['speedup_vs_ort_int8'][k]:.2f}x)"
                                                 for k, v in times.items()))
    names = [k for k in rows[0]["latency_us"] if k != "ort_int8"] if rows else []
    summary = {v: geomean([r["speedup_vs_ort_int8"][v] for r in rows]) for v in names}
    summary_cpu = {v: geomean([r["speedup_cpu_vs_ort_int8"][v] for r in rows]) for v in names}
    best_w2a2 = geomean([max(r["speedup_vs_ort_int8"].get(v, 0) for v in ("packed_w2a2", "bitserial_w2a2"))
                         for r in rows])
    return {"command": "python bench/kernels.py " + " ".join(sys.argv[1:]), "date": time.strftime("%Y-%m-%d %H:%M"),
            "machine": machine_description(), "peaks": peaks, "repeats": args.repeats,
            "target": str(target.attrs.get("mcpu", "")), "default_target": str(default),
            "default_is_host": default == parse("host"), "rows": rows,
            "inner_loop_mix": host_inner_loop_mix(target, (1, 64, 56, 56), (64, 64, 3, 3), variants),
            "geomean_speedup_vs_ort_int8": summary, "geomean_speedup_cpu_vs_ort_int8": summary_cpu,
            "geomean_best_w2a2": best_w2a2, "load_start": args.load_start, "load_end": os.getloadavg()}


# ---------------------------------------------------------------------------------------------------------------
# markdown
# ---------------------------------------------------------------------------------------------------------------

def render_markdown() -> str:
    """docs/benchmarks.md from the JSON files of bench/kernels.py and bench/models.py."""
    kern = _load(DATA / "bench_kernels.json")
    models = _load(DATA / "bench_models.json")
    notes = _load_text(ROOT / "docs" / "data" / "bench_notes.md")
    out = ["# Benchmarks", "",
           "Generated by `bench/kernels.py` and `bench/models.py` from `docs/data/bench_kernels.json` and "
           "`docs/data/bench_models.json` (do not edit by hand; analysis notes come from "
           "`docs/data/bench_notes.md`).", ""]
    any_run = kern or models
    if any_run:
        m = any_run["machine"]
        out += ["## Machine", "", machine_line(m), "",
                "- the 2 cores are shared with other jobs running at the same time: every figure is the median of "
                "interleaved rounds (all variants of a row measured round-robin in each round), and ratios are "
                "taken within one run", ""]
    if kern:
        pk = kern["peaks"]
        out += ["## Per-layer kernels", "", f"Command: `{kern['command']}` ({kern['date']}, {kern['repeats']} "
                "rounds).", "",
                f"Single-core peaks measured here (register-only loops): u8 x s8 `vpdpbusd` "
                f"{pk['int8_macs_per_s'] / 1e9:.0f} GMAC/s, fp32 FMA {pk['fp32_macs_per_s'] / 1e9:.0f} GMAC/s, "
                f"AND + `vpopcntd` {pk['bit_macs_per_s'] / 1e9:.0f} G one-bit MAC/s (a wXaY bit-serial peak is "
                "that over X*Y).", "",
                f"Timing-loop floor (an identity model, same loop): onnxruntime "
                f"{kern['call_overhead_us']['ort']:.1f} us, TVM VM {kern['call_overhead_us']['tvm']:.1f} us per "
                "call; it is included in every figure below, as a user calling either runtime pays it.", "",
                "### Geomean over the layer shapes (speedup vs onnxruntime int8, same run; > 1 is faster)", "",
                "| variant | geomean speedup | target |", "| --- | ---: | --- |"]
        targets = {"bitserial_w1a1": 2.5, "bitserial_w2a2": 1.0, "packed_w8a8": 1.0}
        for v, g in kern["geomean_speedup_vs_ort_int8"].items():
            t = targets.get(v)
            mark = "" if t is None else (f">= {t} {'met' if g >= t else 'NOT met'}")
            out.append(f"| {v} | {g:.2f}x | {mark} |")
        fr = kern["geomean_packed_int8_vs_tvm_fp32"]
        out += ["", f"tvm-mp packed int8 vs TVM fp32 default pipeline: geomean {fr:.2f}x faster "
                f"(target >= 3x: {'met' if fr >= 3 else 'NOT met'}).", "",
                "### Per layer: latency (us), speedup vs onnxruntime int8, roofline fraction", ""]
        variants = list(kern["geomean_speedup_vs_ort_int8"])
        out.append("| layer (first use) | MACs | " + " | ".join(variants) + " |")
        out.append("| --- | ---: | " + " | ".join("---:" for _ in variants) + " |")
        for r in kern["rows"]:
            cells = [f"{r['latency_us'][v]:.1f} / {r['speedup_vs_ort_int8'][v]:.2f}x / "
                     f"{100 * r['roofline_fraction'][v]:.1f}%" for v in variants]
            extra = f" (+{len(r['layers']) - 1})" if len(r["layers"]) > 1 else ""
            out.append(f"| {r['layers'][0]}{extra} | {r['macs']} | " + " | ".join(cells) + " |")
        out += ["", "Cell: `latency us / speedup vs ort_int8 / fraction of the data type's peak`. Roofline "
                "fractions of fp32 variants use the FMA peak, ort int8 and packed tvm-mp the vpdpbusd peak "
                "(sub-byte packed weights are unpacked to int8 in the kernel), bit-serial wXaY the popcount peak "
                "over X*Y.", ""]
        mix = kern.get("host_inner_loop_mix")
        if mix:
            out += ["### x86 inner loops: static instruction mix", "",
                    "The hottest loop (most `vpopcntd` / `vpdpbusd`) of each kernel for ResNet-8's 16 -> 16 "
                    "channel 3x3 layer, from the generated assembly (`--mix`; this VM exposes no hardware "
                    "counters, so the mix is static).", "", "| variant | knobs | loop instructions | mix |",
                    "| --- | --- | ---: | --- |"]
            for v, m in mix.items():
                c = m["config"]
                knobs = f"{c['algorithm']}, {c['oc_block']}x{c['p_unroll']}x{c['lanes']}" + (
                    ", vnni" if c["use_dot"] else "")
                top = ", ".join(f"{k} {n}" for k, n in m["loop_mix"].items())
                out.append(f"| {v} | {knobs} | {m['loop_instructions']} | {top} |")
            out.append("")
        qrows = [r for r in kern["rows"] if r.get("qemu_aarch64")]
        if qrows:
            out += ["### aarch64 under qemu: dynamic instructions per kernel call", "",
                    "Kernels cross-compiled for `aarch64-linux-gnu` (+neon; `+dotprod` rows use `sdot`), run "
                    "under qemu-aarch64 with tvm-mp's TCG plugin (see docs/arm.md); next to the host latency "
                    "of the same variant (whole layer, us). Emulated time is not a performance figure; the "
                    "instruction count is the speed proxy.", ""]
            qv = list(qrows[0]["qemu_aarch64"])
            out.append("| layer | MACs | " + " | ".join(qv) + " |")
            out.append("| --- | ---: | " + " | ".join("---:" for _ in qv) + " |")
            for r in qrows:
                cells = []
                for v in qv:
                    q = r["qemu_aarch64"].get(v) or {}
                    host = r["latency_us"].get(v.split("+")[0])
                    cells.append(f"{q.get('instructions', 0) / 1e3:.0f}k insn / {host:.1f} us" if q else "-")
                out.append(f"| {r['layers'][0]} | {r['macs']} | " + " | ".join(cells) + " |")
            out.append("")
    out += render_avx512()
    out += render_realistic()
    if models:
        out += ["## Whole models", "", f"Command: `{models['command']}` ({models['date']}, {models['repeats']} "
                "rounds). Latency per inference, batch 1, median of interleaved rounds (ms).", ""]
        variants = models["variants"]
        for threads in models["threads"]:
            out += [f"### {threads} thread{'s' if threads > 1 else ''}", "",
                    "| model | " + " | ".join(variants) + " |", "| --- | " + " | ".join("---:" for _ in variants)
                    + " |"]
            for name, res in models["results"].items():
                lat = res[str(threads)]
                base = lat.get("ort_int8")
                cells = [f"{lat[v]:.3f} ({base / lat[v]:.2f}x)" if v in lat else "-" for v in variants]
                out.append(f"| {name} | " + " | ".join(cells) + " |")
            out.append("")
        out += ["Cell: `ms (speedup vs onnxruntime int8 of the whole model)`.", ""]
    if notes:
        out += [notes.strip(), ""]
    return "\n".join(out)


GOALS = {"packed_w8a8": 1.1, "best w2a2": 1.3, "bitserial_w1a1": 3.0}  # issue 17, geomean vs onnxruntime int8


def render_avx512() -> list[str]:
    """The AVX-512 VNNI host's section (the issue-17 host): the ``--realistic --tag znver4`` run and the
    ``bench/models.py`` runs ``bench_models_imagenet_znver4[_2t].json`` (one / two threads) and
    ``bench_models_znver4.json``."""
    run = ((_load(DATA / "bench_kernels_realistic.json") or {}).get("runs") or {}).get("znver4")
    names = ("bench_models_imagenet_znver4.json", "bench_models_imagenet_znver4_2t.json", "bench_models_znver4.json")
    whole = [m for m in (_load(DATA / name) for name in names) if m]
    if not run and not whole:
        return []
    out = ["## AVX-512 VNNI host (Zen 4): realistic layers and whole models", ""]
    if run:
        pk, la, lb = run["peaks"], run["load_start"], run["load_end"]
        out += [f"Command: `{run['command']}` ({run['date']}, {run['repeats']} interleaved rounds, one thread; load "
                f"average at start {la[0]:.1f}, at end {lb[0]:.1f} on 2 cores). {machine_line(run['machine'])}", "",
                f"Single-core peaks measured here (register-only loops): u8 x s8 `vpdpbusd` "
                f"{pk['int8_macs_per_s'] / 1e9:.0f} GMAC/s, fp32 FMA {pk['fp32_macs_per_s'] / 1e9:.0f} GMAC/s, AND + "
                f"`vpopcntq` {pk['bit_macs_per_s'] / 1e9:.0f} G one-bit MAC/s. Each layer a one-layer model (quantize, "
                "kernel, epilogue; float in and out) beside onnxruntime int8 (static QDQ, per-channel); process CPU "
                "time per call, median of the rounds; `%` = fraction of the data type's peak.", "",
                "| layer | MACs | ort_int8 us | w8a8 us (x, %) | best w2a2 us (x) | w1a1 us (x, %) | w8a8 tile |",
                "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
        for r in run["rows"]:
            cpu, sp, rf = r["cpu_us"], r["speedup_cpu_vs_ort_int8"], r["roofline_fraction_cpu"]
            w2 = min(("packed_w2a2", "bitserial_w2a2"), key=lambda v: cpu.get(v, float("inf")))
            k = r["knobs"]["packed_w8a8"]
            out.append(f"| {r['name']} | {r['macs'] / 1e6:.1f} M | {cpu['ort_int8']:.0f} | "
                       f"{cpu['packed_w8a8']:.0f} ({sp['packed_w8a8']:.2f}x, {rf['packed_w8a8']:.0%}) | "
                       f"{cpu[w2]:.0f} ({sp[w2]:.2f}x) | {cpu['bitserial_w1a1']:.0f} ({sp['bitserial_w1a1']:.2f}x, "
                       f"{rf['bitserial_w1a1']:.0%}) | {k['algorithm']} {k['oc_block']}x{k['p_unroll']} |")
        g = run["geomean_speedup_cpu_vs_ort_int8"]
        best = geomean([max(r["speedup_cpu_vs_ort_int8"][v] for v in ("packed_w2a2", "bitserial_w2a2"))
                        for r in run["rows"]])
        out += ["", f"Geomean vs onnxruntime int8 (CPU): w8a8 {g['packed_w8a8']:.2f}x (goal {GOALS['packed_w8a8']}x), "
                f"best w2a2 {best:.2f}x (goal {GOALS['best w2a2']}x), w1a1 {g['bitserial_w1a1']:.2f}x (goal "
                f"{GOALS['bitserial_w1a1']}x).", ""]
    for models in whole:
        la, lb = models.get("load_start", [0]), models.get("load_end", [0])
        variants = [v for v in models["variants"] if v != "ort_int8"]
        out += [f"Whole models: `{models['command']}` ({models['date']}, {models['repeats']} interleaved rounds; "
                f"load average {la[0]:.1f} at start, {lb[0]:.1f} at end). ms per inference, batch 1 (speedup vs "
                "onnxruntime int8).", "",
                "| model | threads | clock | ort_int8 | " + " | ".join(variants) + " |",
                "| --- | ---: | --- | ---: | " + " | ".join("---:" for _ in variants) + " |"]
        for model, res in models["results"].items():
            out += _latency_rows(res, models["threads"], variants, 3, lead=f"| {model} ")
        out.append("")
    notes = _load_text(DATA / "bench_notes_avx512.md")
    if notes:
        out += [notes.strip(), ""]
    return out


def _ratio_cell(row: dict, v: str, cpu: bool) -> str:
    key = "speedup_cpu_vs_ort_int8" if cpu else "speedup_vs_ort_int8"
    return f"{row[key][v]:.2f}x" if v in row.get(key, {}) else "-"


def render_realistic() -> list[str]:
    """The ``--realistic`` section (ImageNet-scale layers, this host) and the issue-17 whole-model table."""
    saved = _load(DATA / "bench_kernels_realistic.json")
    models = _load(DATA / "bench_models_issue17.json")
    notes = _load_text(DATA / "bench_notes_realistic.md")
    if not saved and not models:
        return []
    out = ["## Realistic layers (ImageNet-scale ResNet-18 / MobileNetV2), this host", ""]
    runs = (saved or {}).get("runs", {})
    after = runs.get("after")
    before = runs.get("before")
    if after:
        pk = after["peaks"]
        la, lb = after["load_start"], after["load_end"]
        out += [f"Command: `{after['command']}` ({after['date']}, {after['repeats']} interleaved rounds, one thread; "
                f"load average at start {la[0]:.1f}, at end {lb[0]:.1f} on 2 cores). "
                f"{machine_line(after['machine'])}", ""]
        if pk.get("isa") == "avx2":
            out += [f"Single-core peaks measured here (AVX2 + FMA, no AVX-512 / VNNI / VPOPCNTDQ; register-only "
                    f"loops, best of 21): u8 x s8 `vpmaddubsw`+`vpmaddwd` {pk['int8_macs_per_s'] / 1e9:.0f} GMAC/s "
                    f"(int16 pair sums saturate: exact only for 7-bit codes or weights), i16 `vpmaddwd` "
                    f"{pk['int16_macs_per_s'] / 1e9:.0f} GMAC/s, fp32 FMA {pk['fp32_macs_per_s'] / 1e9:.0f} "
                    f"GMAC/s, AND + `vpshufb` nibble popcount {pk['bit_macs_per_s'] / 1e9:.0f} G one-bit MAC/s "
                    f"(scalar `popcnt` {pk['bit_scalar_macs_per_s'] / 1e9:.0f}). Roofline fractions: int8 "
                    "variants over the u8 x s8 peak, bit-serial wXaY over the popcount peak / (X*Y).", ""]
        out += [f"Default target: `target=None` resolves to `{after['default_target']}`, "
                f"{'the same target as' if after['default_is_host'] else 'NOT the same as'} `\"host\"` "
                "(column `packed_w8a8@default`: compiled with `target=None`).", "",
                "Figures are medians of interleaved rounds, each layer a one-layer model (conv + bias + ReLU, float "
                "in and out: quantize, kernel, epilogue) beside onnxruntime int8 (static QDQ, per-channel s8 "
                "weights, u8 activations). Two clocks: **CPU** = process CPU time per call (what the call costs; "
                "the machine was shared, so wall time mostly measured waiting for a core) and **wall**.", "",
                "### Geomean speedup vs onnxruntime int8 (before -> after this work)", "",
                "| variant | goal | before CPU | after CPU | before wall | after wall |",
                "| --- | ---: | ---: | ---: | ---: | ---: |"]
        variants = list(after["geomean_speedup_vs_ort_int8"])
        for v in variants:
            b = before or {}
            goal = GOALS.get(v, "")
            cells = [b.get("geomean_speedup_cpu_vs_ort_int8", {}).get(v),
                     after.get("geomean_speedup_cpu_vs_ort_int8", {}).get(v),
                     b.get("geomean_speedup_vs_ort_int8", {}).get(v), after["geomean_speedup_vs_ort_int8"].get(v)]
            out.append(f"| {v} | {goal and f'>= {goal}x'} | " + " | ".join(
                "-" if c is None else f"{c:.2f}x" for c in cells) + " |")

        def best(run, key):
            return geomean([max(r[key].get(v, 0) for v in ("packed_w2a2", "bitserial_w2a2"))
                            for r in run["rows"]]) if run and key in run["rows"][0] else None
        cells = [best(before, "speedup_cpu_vs_ort_int8"), best(after, "speedup_cpu_vs_ort_int8"),
                 best(before, "speedup_vs_ort_int8"), best(after, "speedup_vs_ort_int8")]
        out.append("| best w2a2 (faster kind per layer) | >= 1.3x | " + " | ".join(
            "-" if c is None else f"{c:.2f}x" for c in cells) + " |")
        out += ["", "### Per layer, after: CPU us / GMAC/s / % of peak / speedup vs onnxruntime int8 (CPU)", "",
                "| layer | MACs | ort_int8 | " + " | ".join(variants) + " |",
                "| --- | ---: | ---: | " + " | ".join("---:" for _ in variants) + " |"]
        for r in after["rows"]:
            ort = (f"{r['cpu_us']['ort_int8']:.0f} / {r['gmacs_cpu']['ort_int8']:.1f} / "
                   f"{100 * r['macs'] / (r['cpu_us']['ort_int8'] * 1e-6) / pk['int8_macs_per_s']:.0f}%")
            cells = [f"{r['cpu_us'][v]:.0f} / {r['gmacs_cpu'][v]:.1f} / {100 * r['roofline_fraction_cpu'][v]:.0f}% "
                     f"/ **{r['speedup_cpu_vs_ort_int8'][v]:.2f}x**" for v in variants]
            out.append(f"| {r['name']} | {r['macs'] / 1e6:.1f} M | {ort} | " + " | ".join(cells) + " |")
        if before:
            out += ["", "### Per layer, before -> after: speedup vs onnxruntime int8 (CPU; wall in brackets)", "",
                    "| layer | " + " | ".join(variants) + " |", "| --- | " + " | ".join("---:" for _ in variants)
                    + " |"]
            rows_b = {r["name"]: r for r in before["rows"]}
            for r in after["rows"]:
                b = rows_b.get(r["name"], {})
                cells = [f"{_ratio_cell(b, v, True)} -> {_ratio_cell(r, v, True)} "
                         f"({_ratio_cell(b, v, False)} -> {_ratio_cell(r, v, False)})" for v in variants]
                out.append(f"| {r['name']} | " + " | ".join(cells) + " |")
            out += ["", "Knobs used after (no tuning-database entry for this CPU: the defaults): " + "; ".join(
                f"{v}: {k['algorithm']} {k['oc_block']}x{k['p_unroll']}x{k['lanes']}" + (" dot" if k["use_dot"]
                                                                                       else "")
                for v, k in after["rows"][0]["knobs"].items()) + " (first layer).", ""]
        mix = after.get("inner_loop_mix")
        if mix:
            out += ["### Inner loops on this host: static instruction mix (64 -> 64, 3x3, 56x56)", "",
                    "The hottest basic block of each kernel in the generated assembly (the block with the most MAC "
                    "instructions; this VM exposes no hardware counters).", "",
                    "| variant | knobs | loop instructions | mix |", "| --- | --- | ---: | --- |"]
            for v, m in mix.items():
                c = m["config"]
                knobs = f"{c['algorithm']}, {c['oc_block']}x{c['p_unroll']}x{c['lanes']}" + (
                    ", dot" if c["use_dot"] else "")
                top = ", ".join(f"{k} {n}" for k, n in m["loop_mix"].items())
                out.append(f"| {v} | {knobs} | {m['loop_instructions']} | {top} |")
            out.append("")
    if models:
        la, lb = models.get("load_start", [0]), models.get("load_end", [0])
        out += ["### Whole models, this host", "", f"Command: `{models['command']}` ({models['date']}, "
                f"{models['repeats']} interleaved rounds; load average {la[0]:.1f} at start, {lb[0]:.1f} at end). "
                "Latency per inference, batch 1, ms, wall (speedup vs onnxruntime int8); one-thread runs also as "
                "process CPU time.", ""]
        variants = [v for v in models["variants"] if v != "ort_int8"]
        out += ["| model | threads | clock | ort_int8 | " + " | ".join(variants) + " |",
                "| --- | ---: | --- | ---: | " + " | ".join("---:" for _ in variants) + " |"]
        for name, res in models["results"].items():
            out += _latency_rows(res, models["threads"], variants, 3, f"| {name} ")
        out.append("")
    out += render_qemu_realistic()
    imagenet = render_imagenet_models()
    if imagenet:
        out += ["### Whole models at 224x224 (MobileNetV2-1.0, ResNet-18 builders), this host", ""] + imagenet
    out += render_model_breakdowns()
    if notes:
        out += [notes.strip(), ""]
    return out


#: ``--qemu-realistic`` table: (column, previous label, new label).
QEMU_PAIRS = (("packed w8a8: mla -> sdot split", "packed_w8a8 mla", "packed_w8a8 sdot split"),
              ("packed w2a2: mla -> sdot", "packed_w2a2 mla", "packed_w2a2 sdot"),
              ("bit-serial w2a2: direct -> direct64", "bitserial_w2a2 direct", "bitserial_w2a2 direct64"),
              ("bit-serial w1a1: direct -> direct64", "bitserial_w1a1 direct", "bitserial_w1a1 direct64"))


def _insn(c: dict | None) -> str:
    if not c or "instructions" not in c:
        return "-" if not c else "error"
    return f"{c['instructions'] / 1e6:.1f}M"


def render_qemu_realistic() -> list[str]:
    """The ``--qemu-realistic`` section: emulated aarch64 instructions per realistic layer, new kernel beside the
    schedule it replaces."""
    saved = _load(DATA / "bench_qemu_realistic.json")
    if not saved:
        return []
    after, before = saved.get("after", {}), saved.get("before", {})
    allc = [c for rows in (after, before) for r in rows.values() for c in r.values() if "instructions" in c]
    exact = all(c.get("exact") for c in allc)
    out = ["### aarch64 under qemu: instructions per realistic layer, new kernels vs the previous schedule", "",
           "Commands: " + "; ".join(f"`{c}`" for c in saved.get("commands", [saved.get("command")]))
           + f" ({saved['date']}). One call of each layer's accumulator kernel "
           "(random codes and weights), cross-compiled for `aarch64-linux-gnu` (`+neon`; the packed columns "
           "`+neon,+dotprod`), run under `qemu-aarch64 -cpu max` with tvm-mp's counting plugin: dynamic "
           "instructions in millions (instructions per MAC in brackets; the ratio is previous / new, > 1: the new "
           f"kernel runs fewer). {'Every kernel here was bit-exact against the NumPy reference.' if exact else ''}"
           " Counts, not times: no latency or issue width of a real core.", "",
           "| layer | MACs | " + " | ".join(p[0] for p in QEMU_PAIRS) + " |",
           "| --- | ---: | " + " | ".join("---:" for _ in QEMU_PAIRS) + " |"]
    for name, counts in after.items():
        macs = realistic_layers(name)[0][1].macs
        cells = []
        for _, old, new in QEMU_PAIRS:
            a, b = counts.get(old), counts.get(new)
            if a and b and "instructions" in a and "instructions" in b:
                if b.get("same_as") == old:
                    cells.append(f"{_insn(a)} ({a['instructions'] / macs:.2f}), one kernel")
                else:
                    cells.append(f"{_insn(a)} -> {_insn(b)} ({a['instructions'] / macs:.2f} -> "
                                 f"{b['instructions'] / macs:.2f}; {a['instructions'] / b['instructions']:.2f}x)")
            else:
                cells.append(_insn(a) if a and "instructions" in a else "-")
        out.append(f"| {name} | {macs / 1e6:.1f} M | " + " | ".join(cells) + " |")
    if before:
        tree = saved.get("before_tree", "an older tree")
        out += ["", f"Each kernel of the layers counted with tvm_mp at `{tree}` (before) and now (the same "
                "labels; instructions per MAC in brackets):", "",
                "| layer | MACs | kernel | before | now |", "| --- | ---: | --- | ---: | ---: |"]
        for name, counts in before.items():
            macs = realistic_layers(name)[0][1].macs
            for label, c in counts.items():
                if "instructions" not in c or c.get("same_as"):
                    continue
                now = after.get(name, {}).get(label, {})
                out.append(f"| {name} | {macs / 1e6:.1f} M | {label} | {_insn(c)} "
                           f"({c['instructions'] / macs:.2f}) | {_insn(now)} "
                           f"({now.get('instructions', 0) / macs:.2f}) |")
    out.append("")
    return out


def render_model_breakdowns() -> list[str]:
    """``bench/model_layers.py`` runs: per layer shape, tvm-mp (in the running model) beside onnxruntime int8."""
    out = []
    for path in sorted(DATA.glob("bench_model_layers_*.json")):
        d = _load(path)
        pk = d["peaks"]["int8_macs_per_s"]
        rows = d["rows"]
        ours_total = sum(r["tvm_mp_us"] or 0 for r in rows)
        ort_total = sum(r["ort_int8_us"] or 0 for r in rows)
        la, lb = d["load_start"], d["load_end"]

        def top(parts: dict) -> str:
            return ", ".join(f"{k} {v / 1e3:.2f}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1])[:5])

        out += [f"#### {d['model']} at {d['variant']}: where the time goes", "",
                f"Command: `{d['command']}` ({d['date']}; load average {la[0]:.1f} at start, {lb[0]:.1f} at end). "
                "tvm-mp: each call's CPU time inside the running model (one thread; whole inference "
                f"{d['tvm_mp_whole_ms']:.1f} ms CPU); onnxruntime int8: its profiler's kernel time per node (median "
                "of the profiled runs), scaled so that the nodes sum to its process CPU time per run (the profiler "
                f"reads wall time: {d.get('ort_clocks', {}).get('wall_ms', 0):.0f} ms per run here against "
                f"{d.get('ort_clocks', {}).get('cpu_ms', 0):.1f} ms CPU; one scale for every node, so short nodes, "
                "whose wall time holds fewer waits, come out too short: a row above 100 % of the peak is one). "
                f"Layer kernels: tvm-mp {ours_total / 1e3:.1f} ms, onnxruntime {ort_total / 1e3:.1f} ms; the rest "
                f"(ms): tvm-mp {sum(d['tvm_mp_other_us'].values()) / 1e3:.1f} ({top(d['tvm_mp_other_us'])}), "
                f"onnxruntime {sum(d['ort_other_us'].values()) / 1e3:.1f} ({top(d['ort_other_us'])}).", ""]
        groups: dict = {}
        for r in rows:
            key = (r["op"], tuple(r["input_shape"]), tuple(r["weight_shape"]))
            g = groups.setdefault(key, {"n": 0, "macs": 0, "ours": 0.0, "ort": 0.0, "first": r["layer"]})
            g["n"] += 1
            g["macs"] += r["macs"]
            g["ours"] += r["tvm_mp_us"] or 0
            g["ort"] += r["ort_int8_us"] or 0
        out += ["Layer shapes by tvm-mp time (layers of one shape summed; GMAC/s and % of this core's u8 x s8 "
                f"peak, {pk / 1e9:.0f} GMAC/s):", "",
                "| layer shape (first) | layers | MACs | tvm-mp us | GMAC/s | % peak | ort int8 us | GMAC/s | % peak "
                "| ort / tvm-mp |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for (op, ins, wsh), g in sorted(groups.items(), key=lambda kv: -kv[1]["ours"]):
            def rate(us, g=g, pk=pk):
                if not us:
                    return "- | -"
                return f"{g['macs'] / (us * 1e-6) / 1e9:.1f} | {100 * g['macs'] / (us * 1e-6) / pk:.0f}%"

            ratio = f"{g['ort'] / g['ours']:.2f}x" if g["ours"] and g["ort"] else "-"
            out.append(f"| {g['first']} {op} {'x'.join(map(str, ins[1:]))} w{'x'.join(map(str, wsh))} | {g['n']} "
                       f"| {g['macs'] / 1e6:.1f} M | {g['ours']:.0f} | {rate(g['ours'])} | {g['ort']:.0f} | "
                       f"{rate(g['ort'])} | {ratio} |")
        out.append("")
    return out


def _latency_rows(res: dict, threads, variants, digits: int, lead: str = "") -> list[str]:
    """Table rows of one model's bench/models.py result: per thread count, wall (and one-thread CPU) ms, with the
    speedup vs onnxruntime int8."""
    rows = []
    for t in threads:
        lat = res[str(t)]
        clocks = [("wall", lat)] + ([("CPU", lat["cpu_ms"])] if t == 1 and "cpu_ms" in lat else [])
        for clock, vals in clocks:
            base = vals["ort_int8"]
            cells = [f"{vals[v]:.{digits}f} ({base / vals[v]:.2f}x)" if v in vals else "-" for v in variants]
            rows.append(f"{lead}| {t} | {clock} | {base:.{digits}f} | " + " | ".join(cells) + " |")
    return rows


def render_imagenet_models() -> list[str]:
    """bench/models.py runs of the ImageNet-scale builders (``bench_models_<model>.json``, and the like-for-like
    run ``bench_models_like_for_like.json``: 7-bit weights on both sides)."""
    out = []
    for name in ("resnet18", "mobilenet_v2_10", "mobilenet_v2_10_epilogue", "like_for_like"):
        models = _load(DATA / f"bench_models_{name}.json")
        if not models:
            continue
        la, lb = models.get("load_start", [0]), models.get("load_end", [0])
        variants = [v for v in models["variants"] if v != "ort_int8"]
        for model, res in models["results"].items():
            title = model + (", after the epilogue fix" if name.endswith("_epilogue") else "")
            if name == "like_for_like":
                title += ", like for like: 7-bit weights (`packed_w7a8`; `ort_int8_rr` = onnxruntime `reduce_range`)"
            out += [f"#### {title} (224x224)", "", f"Command: `{models['command']}` ({models['date']}, "
                    f"{models['repeats']} interleaved rounds; load average {la[0]:.1f} at start, {lb[0]:.1f} at "
                    "end). Latency per inference, batch 1, ms (speedup vs onnxruntime int8); one-thread runs also as "
                    "process CPU time.", "",
                    "| threads | clock | ort_int8 | " + " | ".join(variants) + " |",
                    "| ---: | --- | ---: | " + " | ".join("---:" for _ in variants) + " |"]
            out += _latency_rows(res, models["threads"], variants, 1)
            out.append("")
    return out


def _load(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def _load_text(path: Path):
    return path.read_text() if path.exists() else None


def write_markdown() -> Path:
    path = ROOT / "docs" / "benchmarks.md"
    path.write_text(render_markdown())
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--tune", action="store_true", help="tune missing workloads into the tuning database first")
    parser.add_argument("--trials", type=int, default=24, help="configs tried per workload when tuning")
    parser.add_argument("--tune-min-macs", type=int, default=200_000,
                        help="tune only layers with at least this many MACs (smaller ones are overhead-bound)")
    parser.add_argument("--qemu", action="store_true", help="also count aarch64 instructions under qemu")
    parser.add_argument("--qemu-realistic", action="store_true",
                        help="count the aarch64 kernels of the realistic conv layers under qemu (own JSON, section)")
    parser.add_argument("--qemu-labels", default="", help="--qemu-realistic: only these labels of QEMU_REALISTIC")
    parser.add_argument("--qemu-before", default="",
                        help="--qemu-realistic: an older tvm_mp checkout (its parent directory) to count beside")
    parser.add_argument("--qemu-before-label", default="", help="how the older checkout is named in the docs")
    parser.add_argument("--qemu-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--realistic", action="store_true",
                        help="ImageNet-scale layers instead of the micro-model layers (own JSON and section)")
    parser.add_argument("--tag", default="after", help="--realistic: the name this run is stored under")
    parser.add_argument("--layers", default="", help="--realistic: only layers whose name has one of these")
    parser.add_argument("--variants", default="", help="--realistic: only these tvm-mp variants")
    parser.add_argument("--render-only", action="store_true", help="only regenerate docs/benchmarks.md")
    parser.add_argument("--mix", action="store_true",
                        help="add the static inner-loop instruction mix of the x86 kernels to the saved run")
    parser.add_argument("--repeaks", action="store_true",
                        help="re-measure the peaks and recompute the roofline fractions of the saved run")
    args = parser.parse_args(argv)
    args.load_start = os.getloadavg()
    if args.qemu_worker:
        print(json.dumps(qemu_realistic_worker(args.layers, args.qemu_labels)))
        return 0
    if args.qemu_realistic:
        path = DATA / "bench_qemu_realistic.json"
        saved = _load(path) or {}
        result = run_qemu_realistic(args)
        for key in ("after", "before"):  # a partial run replaces only the labels / layers it counted
            for layer, counts in result.get(key, {}).items():
                saved.setdefault(key, {}).setdefault(layer, {}).update(counts)
        saved.update({k: v for k, v in result.items() if k not in ("after", "before", "command")})
        saved["commands"] = saved.get("commands", [saved.pop("command")] if "command" in saved else []) + [
            result["command"]]
        DATA.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(saved, indent=1) + "\n")
        print(f"wrote {write_markdown()}")
        return 0
    if args.realistic:
        os.environ.setdefault("TVM_NUM_THREADS", "1")
        path = DATA / "bench_kernels_realistic.json"
        saved = _load(path) or {"runs": {}}
        result = run_realistic(args)
        old = saved["runs"].get(args.tag)
        if args.layers and old:  # a partial run replaces its layers' rows in the saved run of the same tag
            new = {r["name"]: r for r in result["rows"]}
            rows = [new.pop(r["name"], r) for r in old["rows"]] + list(new.values())
            for key, ratio in (("geomean_speedup_vs_ort_int8", "speedup_vs_ort_int8"),
                               ("geomean_speedup_cpu_vs_ort_int8", "speedup_cpu_vs_ort_int8")):
                old[key] = {v: geomean([r[ratio][v] for r in rows]) for v in old[key]}
            old["rows"] = rows
            old["command"] += f"; rows of {args.layers!r} re-measured: {result['command']} ({result['date']}, load "\
                              f"{result['load_start'][0]:.1f} -> {result['load_end'][0]:.1f})"
            result = old
        saved["runs"][args.tag] = result
        DATA.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(saved, indent=1) + "\n")
        print(f"wrote {write_markdown()}")
        return 0
    if args.mix:

        result = json.loads((DATA / "bench_kernels.json").read_text())
        result["host_inner_loop_mix"] = host_inner_loop_mix(parse("host").tvm_target)
        (DATA / "bench_kernels.json").write_text(json.dumps(result, indent=1) + "\n")
    if args.repeaks:
        result = json.loads((DATA / "bench_kernels.json").read_text())
        result["peaks"] = peaks = measure_peaks()
        for row in result["rows"]:
            row["roofline_fraction"] = {k: row["macs"] / (t * 1e-6) / peak_for(k, peaks)
                                        for k, t in row["latency_us"].items()}
        (DATA / "bench_kernels.json").write_text(json.dumps(result, indent=1) + "\n")
    elif not (args.render_only or args.mix):
        os.environ.setdefault("TVM_NUM_THREADS", "1")
        result = run(args)
        DATA.mkdir(parents=True, exist_ok=True)
        (DATA / "bench_kernels.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {write_markdown()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
