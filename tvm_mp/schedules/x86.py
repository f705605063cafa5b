"""x86 schedules (the host: AVX-512 with VNNI and VPOPCNTDQ where the target's mcpu / mattr has them).

Bit-serial kernels: AND + ``vpopcntd`` on 16 pixels' uint32 words per instruction (LLVM lowers the vectorized
``popcount``); packed kernels: u8 x s8 dot products with ``vpdpbusd`` through the tensor intrinsic registered here
(64 MACs per instruction). AVX2 without VNNI: packed kernels tensorize the same dot on 8 lanes with ``vpmaddubsw``
+ ``vpmaddwd`` (32 MACs per pair; 8-bit codes x 8-bit weights split the codes in two to stay exact), bit-serial
kernels are plain vector code (LLVM's ``vpshufb`` nibble popcount). Depthwise kernels (either kind) with VNNI, VBMI
and VL: the window form, a row's pixels in the lanes, each lane a ``vpdpbusd`` of a kernel row's tap quad shuffled
out of one vector load by ``vpermb`` (``kernels.window_dot``).
"""

from __future__ import annotations

from .intrinsics import ensure_avx2_dot_intrin, ensure_broadcast_dot_intrin, ensure_dot_intrin, ensure_window_dot_intrin
from .registry import ConvWorkload, KernelConfig, algorithms_for, one_byte_weights, target_has, tiling_space

VNNI_INTRIN = "tvm_mp_u8s8_dot_16x4_vnni"
AVX2_INTRIN = "tvm_mp_u8s8_dot_8x4_avx2"
VNNI_BROADCAST_INTRIN = "tvm_mp_u8s8_dot_16x4_vnni_broadcast"
AVX2_SPLIT_INTRIN = "tvm_mp_u8s8_dot_8x4_avx2_split"
#: Layers below this many MACs run on one thread by default (measured: a parallel launch on this 2-core host
#: costs ~100 us when the other core is busy, more than these layers take).
PARALLEL_MIN_MACS = 4_000_000
#: Bit-serial convs with more input channels than this use 64-bit words without VPOPCNTDQ (fewer channels would
#: leave most of each word empty).
DIRECT64_MIN_CHANNELS = 32


def ensure_intrinsics() -> str:
    """Register the VNNI u8 x s8 4-way dot intrinsic (idempotent) and return its name."""
    return ensure_dot_intrin(VNNI_INTRIN, 16, "uint8", "llvm.x86.avx512.vpdpbusd.512")


def vector_lanes(target) -> int:
    """int32 lanes of the widest vector the target has."""
    if target_has(target, "avx512f"):
        return 16
    if target_has(target, "avx2"):
        return 8
    return 4


def dot_intrin(target, config: KernelConfig, work: ConvWorkload | None = None) -> str | None:
    """The dot-product tensor intrinsic of ``config`` on ``target``: VNNI (16 lanes), else AVX2 (8 lanes; the
    exact split form unless the codes or the weights have at most 7 bits -- without ``work``, the split form)."""
    if not config.use_dot:
        return None
    if config.lanes == 16 and target_has(target, "avx512vnni"):
        return ensure_intrinsics()
    if config.lanes == 8 and target_has(target, "avx2"):
        narrow = work is not None and min(work.a_bits, work.w_bits) <= 7
        return ensure_avx2_dot_intrin(AVX2_INTRIN, False) if narrow else ensure_avx2_dot_intrin(AVX2_SPLIT_INTRIN,
                                                                                               True)
    return None


def dense_dot_intrin(target, config: KernelConfig) -> str | None:
    """The broadcast-codes dot intrinsic of the dense kernel's dot form (VNNI, 16 lanes), else None (the form is
    then left to LLVM's vectorizer)."""
    if config.use_dot and config.lanes == 16 and target_has(target, "avx512vnni"):
        return ensure_broadcast_dot_intrin(VNNI_BROADCAST_INTRIN, 16, "llvm.x86.avx512.vpdpbusd.512")
    return None


def window_dot_intrin(lanes: int, stride: int, dilation: int) -> str:
    """The window-form dot intrinsic of depthwise rows (``vpdpbusd`` on 4, 8 or 16 lanes, AVX-512 VL + VNNI)."""
    return ensure_window_dot_intrin(f"tvm_mp_u8s8_window_{lanes}x4_s{stride}_d{dilation}", lanes, stride, dilation,
                                    f"llvm.x86.avx512.vpdpbusd.{32 * lanes}")


def has_window_dot(target) -> bool:
    """True when ``target`` runs the depthwise window form (``vpdpbusd`` on 4-16 lanes: AVX-512 VNNI and VL, and
    ``vpermb``: VBMI)."""
    return target_has(target, "avx512vnni") and target_has(target, "avx512vbmi") and target_has(target, "avx512vl")


def has_dot(target, lanes: int) -> bool:
    """True when ``target`` has a dot-product intrinsic for packed kernels of ``lanes`` int32 lanes."""
    return (lanes == 16 and target_has(target, "avx512vnni")) or (lanes == 8 and target_has(target, "avx2"))


def default_config(work: ConvWorkload, target) -> KernelConfig:
    lanes = vector_lanes(target)
    algo = _default_algorithm(work, lanes)
    use_dot = work.kind == "packed" and has_dot(target, lanes)
    parallel = work.macs >= PARALLEL_MIN_MACS
    if algo == "depthwise":  # use_dot: the window form (kernels.window_dot), where the target has it
        return KernelConfig(algo, lanes=lanes, oc_block=1, p_unroll=1, use_dot=has_window_dot(target),
                            parallel=parallel)
    if algo == "dense":
        return dense_default(work, lanes, use_dot and lanes == 16)
    if algo == "direct" and work.kind == "bitserial" and work.weight_shape[1] > DIRECT64_MIN_CHANNELS and \
            work.weight_shape[2] * work.weight_shape[3] > 1 and not target_has(target, "avx512vpopcntdq"):
        # 64-bit words: the popcount's widening is one vpsadbw per lane (measured on the AVX2 host, 64->64 3x3
        # 56x56 w1a1, interleaved: 1.88 against 2.89 ms with 32-bit words); 1x1 convs measured no faster (96 -> 576
        # at 14x14: 248 against 249 us) and slower inside a whole layer, so they keep 32-bit words
        return KernelConfig("direct64", lanes=max(4, lanes // 2), oc_block=4, p_unroll=1, use_dot=False,
                            parallel=parallel)
    oc_block, p_unroll = _register_tile(work, algo, lanes, use_dot)
    return KernelConfig(algo, lanes=lanes, oc_block=oc_block, p_unroll=p_unroll, use_dot=use_dot, parallel=parallel)


def _register_tile(work: ConvWorkload, algo: str, lanes: int, use_dot: bool) -> tuple[int, int]:
    """Default ``(oc_block, p_unroll)`` of a conv kernel. AVX2 (16 vector registers): 4 x 2 packed, 4 x 1 bit-serial.
    AVX-512 (32 registers, ``lanes == 16``), the ``direct`` algorithm: 16 output channels x one 16-pixel vector when
    16 divide the output channels -- each activation load feeds 16 ``vpdpbusd`` instead of 4, measured on the Zen 4
    host (accumulator kernels, one thread, median us, 4 x 2 -> 16 x 1, w8a8): 3x3 64 -> 64 at 56x56 810 -> 618,
    3x3 s2 64 -> 128 at 56x56 448 -> 349, 1x1 96 -> 576 at 14x14 206 -> 103, 3x3 256 -> 256 at 14x14 659 -> 645;
    else 8 x 2 when 8 divide them (1x1 144 -> 24 at 56x56: 128 -> 106). Bit-serial 1x1 convs: 8 x 1 when 8 divide
    the output channels (kernels with their float epilogue, one pixel vector per tile, 4 / 8 / 16 channels, w1a1:
    96 -> 576 at 14x14 25.7 / 22.0 / 28.5 us, 576 -> 96 at 14x14 16.0 / 15.7 / 18.3, 24 -> 144 at 56x56 89 / 85 /
    84, 160 -> 960 at 7x7 17.9 / 17.0 / 14.9; w2a2 within 3 % of each other); bit-serial 3x3 convs measured no
    faster with a wider tile."""
    oc = work.weight_shape[0]
    if lanes == 16 and algo == "direct":
        pointwise = work.weight_shape[2] * work.weight_shape[3] == 1
        if work.kind == "bitserial" and pointwise and oc % 8 == 0:
            return 8, 1
        if use_dot:
            if oc % 16 == 0:
                return 16, 1
            if oc % 8 == 0:
                return 8, 2
    return 4, (2 if work.kind == "packed" else 1)


def dense_default(work: ConvWorkload, lanes: int, use_dot: bool = False) -> KernelConfig:
    """Dense: 8 output features per tile and the reduction unrolled twice for packed weights (measured on the
    2-core host, 1x4096x1000 at w2a2: 1.9-2.4 ms against 3-4 ms untiled); bit-serial tiles of 2. With ``use_dot``
    (VNNI) and one-byte weights, the dot form (``kernels.dense_dot``): tiles of DENSE_DOT_TILE vectors of output
    features."""
    packed = work.kind == "packed"
    parallel = work.macs >= PARALLEL_MIN_MACS
    if use_dot and one_byte_weights(work):
        return KernelConfig("dense", lanes=lanes, oc_block=DENSE_DOT_TILE[0], p_unroll=DENSE_DOT_TILE[1],
                            use_dot=True, parallel=parallel)
    return KernelConfig("dense", lanes=lanes, oc_block=8 if packed else 2, p_unroll=2 if packed else 1,
                        use_dot=False, parallel=parallel)


#: (vectors of output features, reduction quads unrolled) per tile of the dense dot form.
DENSE_DOT_TILE = (4, 2)


#: A packed conv with 3 input channels per group (an RGB first layer) runs ``direct`` up to this many output pixels:
#: its 4-byte channel quads are 3/4 full, and the im2col gathers every code through a division (the pixel vector
#: crosses rows). Accumulator kernels alone, one thread, w8a8: 40x40 -> 8 (3x3) im2col 22.1 us, direct 3.6;
#: 48x24 -> 16: 17.7 / 4.9; 96x96 -> 8 stride 2 (48x48 out): 15.0 / 9.4; but 224x224 -> 32 stride 2 (112x112
#: out): 376 / 709, and the 7x7 stem 1623 / 1977. Fewer channels (1: a quad 1/4 full) stay im2col (a 10x4
#: spectrogram layer, stride 2: 4.6 / 11.3 us). With AVX-512 (16 lanes: the 16 x 1 direct tile) direct wins at
#: every size: Zen 4, the kernel with its requantizing epilogue, one thread, im2col / direct: the 7x7 stem
#: 1075 / 907 us, 224x224 -> 32 stride 2 190 / 175.
DIRECT_FIRST_LAYER_MAX_PIXELS = 4096


def _default_algorithm(work: ConvWorkload, lanes: int) -> str:
    algos = algorithms_for(work)
    if work.op != "dense" and work.kind == "bitserial" and "direct" in algos:
        cg = work.weight_shape[1]
        if cg < 8:  # a few channels per 32-bit word: im2col packs the window densely instead
            return "im2col"
    if work.op != "dense" and work.kind == "packed" and "direct" in algos and work.weight_shape[1] < 4:
        oh, ow = work.out_hw
        if work.weight_shape[1] == 3 and (lanes == 16 or oh * ow <= DIRECT_FIRST_LAYER_MAX_PIXELS):
            return "direct"
        return "im2col"
    return algos[0]


def config_space(work: ConvWorkload, target) -> list[KernelConfig]:
    """Every config a tuner tries for ``work`` on an x86 ``target``."""
    base = default_config(work, target)
    # threads only pay off on big layers (a parallel launch costs more than these small layers take)
    parallels = (False, True) if work.macs >= PARALLEL_MIN_MACS else (False,)
    space = tiling_space(work, vector_lanes(target), base.use_dot, parallels)
    return space if base in space else [base] + space  # (direct64's default counts 64-bit lanes)
