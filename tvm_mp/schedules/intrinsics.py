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
    return _register_once(name, lambda: _desc_impl(lanes, f"{code_dtype}x{4 * lanes}", llvm_intrinsic))


def _register_once(name: str, make) -> str:
    """Register the tensor intrinsic ``name`` from ``make() -> (desc, impl)`` unless it is registered already."""
    from tvm.s_tir import TensorIntrin

    if TensorIntrin.get(name, allow_missing=True) is None:
        TensorIntrin.register(name, *make())
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


def ensure_broadcast_dot_intrin(name: str, lanes: int, llvm_intrinsic: str) -> str:
    """Register the *broadcast-codes* form (idempotent) and return its name: ``lanes`` int32 accumulators, one
    per output feature, each adding the 4-way dot product of the same four activation codes (uint8) with its own
    four int8 weights (stored as their uint8 bit patterns, feature-major: ``B[i * 4 + k]``). The dense kernel's
    form (:func:`~tvm_mp.schedules.computes.dense_dot_acc`): the codes broadcast, the weights one vector load.
    ``llvm_intrinsic`` takes (int32 x lanes accumulators, uint8 codes, int8 weights)."""
    return _register_once(name, lambda: _desc_impl_broadcast(lanes, llvm_intrinsic))


def _desc_impl_broadcast(lanes: int, llvm_intrinsic: str):
    bytes_vector, acc_vector = f"int8x{4 * lanes}", f"int32x{lanes}"

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (4,), "uint8", offset_factor=1)
        B = T.match_buffer(b, (4 * lanes,), "uint8", offset_factor=1)
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1, scope="local")
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:4 * lanes])
            T.writes(C[0:lanes])
            for i, k in T.grid(lanes, 4):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + T.Cast("int32", A[vk]) * T.Cast("int32", T.Cast("int8", B[vi * 4 + vk]))

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (4,), "uint8", offset_factor=1)
        B = T.match_buffer(b, (4 * lanes,), "uint8", offset_factor=1)
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1, scope="local")
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:4 * lanes])
            T.writes(C[0:lanes])
            codes = T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), lanes),
                                  dtype=f"uint8x{4 * lanes}")
            weights = T.reinterpret(B.vload([0], f"uint8x{4 * lanes}"), dtype=bytes_vector)
            C[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(llvm_intrinsic), C.vload([0], acc_vector), codes, weights,
                dtype=acc_vector)

    return desc, impl


def ensure_window_dot_intrin(name: str, lanes: int, stride: int, dilation: int, llvm_intrinsic: str,
                             code_dtype: str = "uint8") -> str:
    """Register the *window* form (idempotent) and return its name: ``lanes`` int32 accumulators, one per output
    pixel of a depthwise row, each adding the 4-way dot product of the codes ``A[i * stride + k * dilation]``
    (``k < 4``: a quad of one kernel row's taps) with the same four int8 weights ``B``
    (:func:`~tvm_mp.schedules.computes.depthwise_window_acc`). One vector load of ``4 * lanes`` codes, one
    shuffle putting each lane's quad in place, one dot instruction; the load reads past the window (the caller
    keeps that memory inside the buffer). ``llvm_intrinsic`` takes (int32 x lanes, codes, int8 weights), the codes
    read as ``code_dtype`` (x86 ``vpdpbusd``: "uint8"; aarch64 ``sdot``: "int8", so the codes must be < 128)."""
    return _register_once(name, lambda: _desc_impl_window(lanes, stride, dilation, llvm_intrinsic, code_dtype))


def _desc_impl_window(lanes: int, stride: int, dilation: int, llvm_intrinsic: str, code_dtype: str):
    span = stride * (lanes - 1) + 3 * dilation + 1
    width = 4 * lanes
    acc_vector = f"int32x{lanes}"
    order = [i * stride + k * dilation for i in range(lanes) for k in range(4)]

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (span,), "uint8", offset_factor=1)
        B = T.match_buffer(b, (4,), "int8", offset_factor=1)
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1, scope="local")
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:span], B[0:4])
            T.writes(C[0:lanes])
            for i, k in T.grid(lanes, 4):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + T.Cast("int32", A[vi * stride + vk * dilation]) * T.Cast("int32", B[vk])

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (span,), "uint8", offset_factor=1)
        B = T.match_buffer(b, (4,), "int8", offset_factor=1)
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1, scope="local")
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:span], B[0:4])
            T.writes(C[0:lanes])
            quads = T.reinterpret(T.Shuffle([A.vload([0], f"uint8x{width}")], order), dtype=f"{code_dtype}x{width}")
            weights = T.reinterpret(T.broadcast(T.reinterpret(B.vload([0], "int8x4"), dtype="int32"), lanes),
                                    dtype=f"int8x{width}")
            C[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(llvm_intrinsic), C.vload([0], acc_vector), quads, weights,
                dtype=acc_vector)

    return desc, impl


def ensure_avx2_dot_intrin(name: str, split: bool) -> str:
    """Register the AVX2 form of the 8-lane u8 x s8 4-way dot (idempotent) and return its name: ``vpmaddubsw``
    (u8 x s8 products summed in pairs to int16, saturating) then ``vpmaddwd`` by ones (pairs summed to int32).

    Exact only while a pair sum fits int16: codes < 128 (``a_bits <= 7``) or weights within +-64 (``w_bits <= 7``).
    ``split`` (8-bit codes and 8-bit weights): the codes' low seven bits and their top bit go through separate
    ``vpmaddubsw`` (each pair sum then fits: 127*128*2 and 128*128*2), both widened and added -- exact for every
    u8 x s8, at twice the multiplies.
    """
    return _register_once(name, lambda: _desc_impl_avx2(split))


def _desc_impl_avx2(split: bool):
    lanes = 8
    desc, _ = _desc_impl(lanes, "uint8x32", "llvm.x86.avx512.vpdpbusd.512")  # the description is shared
    ones = T.Broadcast(T.int16(1), 16)

    def madd(codes, weights):
        prod = T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.ub.sw"),
                                       T.reinterpret(codes, dtype="uint8x32"), weights, dtype="int16x16")
        return T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"), prod, ones,
                                       dtype="int32x8")

    if split:
        def dot(words, weights):
            low = T.bitwise_and(words, T.Broadcast(T.uint32(0x7F7F7F7F), lanes))
            top = T.bitwise_and(words, T.Broadcast(T.uint32(0x80808080), lanes))
            return madd(low, weights) + madd(top, weights)
    else:
        def dot(words, weights):
            return madd(words, weights)

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (lanes,), "uint32", offset_factor=1)
        B = T.match_buffer(b, (4,), "int8", offset_factor=1)
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1, scope="local")
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:lanes], B[0:4])
            T.writes(C[0:lanes])
            C[T.ramp(T.int32(0), 1, lanes)] = C.vload([0], "int32x8") + dot(
                A.vload([0], "uint32x8"),
                T.reinterpret(T.broadcast(T.reinterpret(B.vload([0], "int8x4"), dtype="int32"), lanes),
                              dtype="int8x32"))

    return desc, impl


def ensure_sdot_split_intrin(name: str) -> str:
    """Register the aarch64 ``sdot`` form of the 4-lane u8 x s8 4-way dot for 8-bit codes (idempotent) and return
    its name: ``sdot`` multiplies signed bytes, so a code >= 128 would read as ``code - 256``. The codes' low seven
    bits go through one ``sdot`` (exact: 0..127 x -128..127) and their top bit through another, read as the signed
    byte -128 (so that ``sdot`` gives ``-128 * sum(top_bit * w)``), which is subtracted: ``low + 128 * top`` for
    every u8 x s8, at twice the ``sdot`` of a code below 128 (the counterpart of the AVX2 split form)."""
    return _register_once(name, _desc_impl_sdot_split)


def _desc_impl_sdot_split():
    lanes, sdot = 4, "llvm.aarch64.neon.sdot.v4i32.v16i8"
    desc, _ = _desc_impl(lanes, "int8x16", sdot)  # the description is shared

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (lanes,), "uint32", offset_factor=1)
        B = T.match_buffer(b, (4,), "int8", offset_factor=1)
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1, scope="local")
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:lanes], B[0:4])
            T.writes(C[0:lanes])
            weights = T.reinterpret(T.broadcast(T.reinterpret(B.vload([0], "int8x4"), dtype="int32"), lanes),
                                    dtype="int8x16")
            low = T.reinterpret(T.bitwise_and(A.vload([0], "uint32x4"), T.Broadcast(T.uint32(0x7F7F7F7F), lanes)),
                                dtype="int8x16")
            top = T.reinterpret(T.bitwise_and(A.vload([0], "uint32x4"), T.Broadcast(T.uint32(0x80808080), lanes)),
                                dtype="int8x16")
            C[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(sdot), C.vload([0], "int32x4"), low, weights, dtype="int32x4") - \
                T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id(sdot), T.Broadcast(T.int32(0), lanes), top,
                                        weights, dtype="int32x4")

    return desc, impl


def ensure_deinterleave_intrin(width: int) -> str:
    """Register the split of ``2 * width`` codes into their even and odd columns (idempotent) and return its
    name: ``B[ph, x] = A[2 * x + ph]`` (``computes.column_phases`` at stride 2) as one vector load and two
    shuffles. Vectorized by TVM, the stride-2 load is a byte-by-byte gather (144 channels at 56x56: 75 us of the
    layer's kernel). Target-independent: LLVM lowers the shuffles (x86 ``vpermb`` / ``vpshufb``, aarch64
    ``uzp1`` / ``uzp2``)."""
    return _register_once(f"tvm_mp_deinterleave2_u8x{width}", lambda: _desc_impl_deinterleave(width))


def _desc_impl_deinterleave(width: int):
    codes = f"uint8x{2 * width}"

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle) -> None:
        A = T.match_buffer(a, (2 * width,), "uint8", offset_factor=1)
        row = T.int32()
        B = T.match_buffer(b, (2, width), "uint8", offset_factor=1, strides=[row, 1])
        with T.sblock("root"):
            T.reads(A[0:2 * width])
            T.writes(B[0:2, 0:width])
            for ph, x in T.grid(2, width):
                with T.sblock("update"):
                    vp, vx = T.axis.remap("SS", [ph, x])
                    B[vp, vx] = A[vx * 2 + vp]

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle) -> None:
        A = T.match_buffer(a, (2 * width,), "uint8", offset_factor=1)
        row = T.int32()
        B = T.match_buffer(b, (2, width), "uint8", offset_factor=1, strides=[row, 1])
        with T.sblock("root"):
            T.reads(A[0:2 * width])
            T.writes(B[0:2, 0:width])
            v = A.vload([0], codes)
            B[0, T.ramp(0, 1, width)] = T.Shuffle([v], [2 * i for i in range(width)])
            B[1, T.ramp(0, 1, width)] = T.Shuffle([v], [2 * i + 1 for i in range(width)])

    return desc, impl
