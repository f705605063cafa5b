"""arm_cpu schedules (aarch64 NEON; ``sdot`` where the target has ``+dotprod``).

Same kernels and tiling as x86 with 4-lane (128-bit) vectors: bit-serial AND + popcount lowers to NEON ``cnt``
on bytes plus pairwise adds; packed kernels use ``sdot`` (signed x signed: activation codes must be < 128, i.e.
``a_bits <= 7``; 8-bit activations use plain multiply-accumulate).
"""

from __future__ import annotations

from tvm.script import tirx as T

from .computes import quad_term
from .registry import ConvWorkload, KernelConfig, algorithms_for, target_has
from .x86 import PARALLEL_MIN_MACS, _default_algorithm

SDOT_INTRIN = "tvm_mp_u8s8_dot_4x4_sdot"


def ensure_intrinsics() -> str:
    from tvm.s_tir import TensorIntrin

    if TensorIntrin.get(SDOT_INTRIN, allow_missing=True) is None:
        TensorIntrin.register(SDOT_INTRIN, *_sdot_desc_impl())
    return SDOT_INTRIN


def _sdot_desc_impl():
    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (4,), "uint32", offset_factor=1)
        B = T.match_buffer(b, (4,), "int8", offset_factor=1)
        C = T.match_buffer(c, (4,), "int32", offset_factor=1, scope="local")
        with T.sblock("root"):
            T.reads(C[0:4], A[0:4], B[0:4])
            T.writes(C[0:4])
            for i, k in T.grid(4, 4):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + quad_term(A[vi], vk, B[vk])

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (4,), "uint32", offset_factor=1)
        B = T.match_buffer(b, (4,), "int8", offset_factor=1)
        C = T.match_buffer(c, (4,), "int32", offset_factor=1, scope="local")
        with T.sblock("root"):
            T.reads(C[0:4], A[0:4], B[0:4])
            T.writes(C[0:4])
            a_i8 = T.reinterpret(A.vload([0], "uint32x4"), dtype="int8x16")
            b_i32 = T.reinterpret(B.vload([0], "int8x4"), dtype="int32")
            b_i8 = T.reinterpret(T.broadcast(b_i32, 4), dtype="int8x16")
            C[T.ramp(T.int32(0), 1, 4)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.sdot.v4i32.v16i8"),
                C.vload([0], "int32x4"), a_i8, b_i8, dtype="int32x4")

    return desc, impl


def dot_intrin(target, config: KernelConfig) -> str | None:
    if config.use_dot and config.lanes == 4 and target_has(target, "dotprod"):
        return ensure_intrinsics()
    return None


def default_config(work: ConvWorkload, target) -> KernelConfig:
    algo = _default_algorithm(work)
    use_dot = work.kind == "packed" and work.a_bits <= 7 and target_has(target, "dotprod")
    parallel = work.macs >= PARALLEL_MIN_MACS
    if algo in ("depthwise", "dense"):
        return KernelConfig(algo, lanes=4, oc_block=1, p_unroll=1, use_dot=False, parallel=parallel)
    return KernelConfig(algo, lanes=4, oc_block=4, p_unroll=2, use_dot=use_dot, parallel=parallel)


def config_space(work: ConvWorkload, target) -> list[KernelConfig]:
    base = default_config(work, target)
    out = []
    for algo in algorithms_for(work):
        if algo in ("depthwise", "dense"):
            out.append(KernelConfig(algo, lanes=4, oc_block=1, p_unroll=1, parallel=base.parallel))
            continue
        for ob in (1, 2, 4, 8):
            for pu in (1, 2, 4):
                out.append(KernelConfig(algo, lanes=4, oc_block=ob, p_unroll=pu, use_dot=base.use_dot,
                                        parallel=base.parallel))
    return out
