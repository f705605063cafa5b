"""Tensor intrinsics for the packed kernels: ``lanes`` int32 accumulators, each adding a 4-way dot product of
activation codes (four bytes of a uint32 word) with four int8 weights (the same for every lane).

One description for every target (the semantics are :func:`~tvm_mp.schedules.computes.quad_term`); the
implementation is one LLVM intrinsic call: x86 ``vpdpbusd`` (16 lanes, u8 x s8) or aarch64 ``sdot`` (4 lanes,
s8 x s8, so the codes must be < 128).
"""

from __future__ import annotations

from tvm.script import tirx as T

from .computes import quad_term


def ensure_dot_intrin(name: str, lanes: int, code_dtype: str, llvm_intrinsic: str) -> str:
    """Register the intrinsic ``name`` (idempotent) and return its name.

    ``code_dtype``: how the implementation reads the activation bytes ("uint8" or "int8"); ``llvm_intrinsic``:
    the LLVM intrinsic taking (int32 x lanes accumulators, code bytes, weight bytes).
    """
    from tvm.s_tir import TensorIntrin

    if TensorIntrin.get(name, allow_missing=True) is None:
        TensorIntrin.register(name, *_desc_impl(lanes, f"{code_dtype}x{4 * lanes}", llvm_intrinsic))
    return name


def _desc_impl(lanes: int, code_vector: str, llvm_intrinsic: str):
    words, bytes_vector, acc_vector = f"uint32x{lanes}", f"int8x{4 * lanes}", f"int32x{lanes}"

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (lanes,), "uint32", offset_factor=1)
        B = T.match_buffer(b, (4,), "int8", offset_factor=1)
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1, scope="local")
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:lanes], B[0:4])
            T.writes(C[0:lanes])
            for i, k in T.grid(lanes, 4):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + quad_term(A[vi], vk, B[vk])

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (lanes,), "uint32", offset_factor=1)
        B = T.match_buffer(b, (4,), "int8", offset_factor=1)
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1, scope="local")
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:lanes], B[0:4])
            T.writes(C[0:lanes])
            codes = T.reinterpret(A.vload([0], words), dtype=code_vector)
            weights = T.reinterpret(T.broadcast(T.reinterpret(B.vload([0], "int8x4"), dtype="int32"), lanes),
                                    dtype=bytes_vector)
            C[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(llvm_intrinsic), C.vload([0], acc_vector), codes, weights,
                dtype=acc_vector)

    return desc, impl
