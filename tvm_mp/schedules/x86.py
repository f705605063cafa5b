"""x86 schedules (the host: AVX-512 with VNNI and VPOPCNTDQ where the target's mcpu / mattr has them).

Bit-serial kernels: AND + ``vpopcntd`` on 16 pixels' uint32 words per instruction (LLVM lowers the vectorized
``popcount``); packed kernels: u8 x s8 dot products with ``vpdpbusd`` through the tensor intrinsic registered here
(64 MACs per instruction); without VNNI both fall back to plain vector code of the target's width.
"""

from __future__ import annotations

from tvm.script import tirx as T

from .computes import quad_term
from .registry import ConvWorkload, KernelConfig, algorithms_for, target_has

VNNI_INTRIN = "tvm_mp_u8s8_dot_16x4_vnni"
#: Layers below this many MACs run on one thread by default (measured: a parallel launch on this 2-core host
#: costs ~100 us when the other core is busy, more than these layers take).
PARALLEL_MIN_MACS = 4_000_000


def ensure_intrinsics() -> str:
    """Register the VNNI u8 x s8 4-way dot intrinsic (idempotent) and return its name."""
    from tvm.s_tir import TensorIntrin

    if TensorIntrin.get(VNNI_INTRIN, allow_missing=True) is None:
        TensorIntrin.register(VNNI_INTRIN, *_vnni_desc_impl())
    return VNNI_INTRIN


def _vnni_desc_impl():
    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (16,), "uint32", offset_factor=1)
        B = T.match_buffer(b, (4,), "int8", offset_factor=1)
        C = T.match_buffer(c, (16,), "int32", offset_factor=1, scope="local")
        with T.sblock("root"):
            T.reads(C[0:16], A[0:16], B[0:4])
            T.writes(C[0:16])
            for i, k in T.grid(16, 4):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + quad_term(A[vi], vk, B[vk])

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (16,), "uint32", offset_factor=1)
        B = T.match_buffer(b, (4,), "int8", offset_factor=1)
        C = T.match_buffer(c, (16,), "int32", offset_factor=1, scope="local")
        with T.sblock("root"):
            T.reads(C[0:16], A[0:16], B[0:4])
            T.writes(C[0:16])
            a_u8 = T.reinterpret(A.vload([0], "uint32x16"), dtype="uint8x64")
            b_i32 = T.reinterpret(B.vload([0], "int8x4"), dtype="int32")
            b_i8 = T.reinterpret(T.broadcast(b_i32, 16), dtype="int8x64")
            C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
                C.vload([0], "int32x16"), a_u8, b_i8, dtype="int32x16")

    return desc, impl


def vector_lanes(target) -> int:
    """int32 lanes of the widest vector the target has."""
    if target_has(target, "avx512f"):
        return 16
    if target_has(target, "avx2"):
        return 8
    return 4


def dot_intrin(target, config: KernelConfig) -> str | None:
    if config.use_dot and config.lanes == 16 and target_has(target, "avx512vnni"):
        return ensure_intrinsics()
    return None


def default_config(work: ConvWorkload, target) -> KernelConfig:
    lanes = vector_lanes(target)
    algo = _default_algorithm(work)
    use_dot = work.kind == "packed" and lanes == 16 and target_has(target, "avx512vnni")
    parallel = work.macs >= PARALLEL_MIN_MACS
    if algo == "depthwise":
        return KernelConfig(algo, lanes=lanes, oc_block=1, p_unroll=1, use_dot=False, parallel=parallel)
    if algo == "dense":
        return KernelConfig(algo, lanes=lanes, oc_block=1, p_unroll=1, use_dot=False, parallel=False)
    return KernelConfig(algo, lanes=lanes, oc_block=4, p_unroll=2 if work.kind == "packed" else 1,
                        use_dot=use_dot, parallel=parallel)


def _default_algorithm(work: ConvWorkload) -> str:
    algos = algorithms_for(work)
    if work.op != "dense" and work.kind == "bitserial" and "direct" in algos:
        cg = work.weight_shape[1]
        if cg < 8:  # a few channels per 32-bit word: im2col packs the window densely instead
            return "im2col"
    if work.op != "dense" and work.kind == "packed" and "direct" in algos and work.weight_shape[1] < 4:
        return "im2col"
    return algos[0]


def config_space(work: ConvWorkload, target) -> list[KernelConfig]:
    """Every config a tuner tries for ``work`` on an x86 ``target``."""
    lanes = vector_lanes(target)
    base = default_config(work, target)
    # threads only pay off on big layers (a parallel launch costs more than these small layers take)
    parallels = (False, True) if work.macs >= PARALLEL_MIN_MACS else (False,)
    out = []
    for algo in algorithms_for(work):
        if algo in ("depthwise", "dense"):
            for par in parallels:
                out.append(KernelConfig(algo, lanes=lanes, oc_block=1, p_unroll=1, parallel=par))
            continue
        for ob in (1, 2, 4, 8):
            for pu in (1, 2, 4):
                for par in parallels:
                    out.append(KernelConfig(algo, lanes=lanes, oc_block=ob, p_unroll=pu, use_dot=base.use_dot,
                                            parallel=par))
    return out
