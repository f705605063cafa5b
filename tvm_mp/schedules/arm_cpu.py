"""arm_cpu schedules (aarch64 NEON; ``sdot`` where the target has ``+dotprod``).

Same kernels and tiling as x86 with 4-lane (128-bit) vectors: bit-serial AND + popcount lowers to NEON ``cnt``
on bytes plus pairwise adds; packed kernels use ``sdot`` (signed x signed: activation codes below 128, i.e.
``a_bits <= 7``, take one ``sdot``; 8-bit codes on convs with more than one tap the split form, the codes' low
seven bits and their top bit in two ``sdot``, as the AVX2 split form on x86). Otherwise (no ``+dotprod``, or 8-bit
codes on a 1x1 conv) plain multiply-accumulate. Depthwise kernels with ``+dotprod`` and codes below 128: the window
form (``kernels.window_dot``), each lane an ``sdot`` of a kernel row's tap quad shuffled out of one load by ``tbl``.
"""

from __future__ import annotations

from .intrinsics import ensure_dot_intrin, ensure_sdot_split_intrin, ensure_window_dot_intrin
from .registry import ConvWorkload, KernelConfig, target_has, tiling_space
from .x86 import PARALLEL_MIN_MACS, _default_algorithm, dense_default

SDOT_INTRIN = "tvm_mp_u8s8_dot_4x4_sdot"
SDOT_SPLIT_INTRIN = "tvm_mp_u8s8_dot_4x4_sdot_split"


def ensure_intrinsics() -> str:
    """Register the NEON ``sdot`` s8 x s8 4-way dot intrinsic (idempotent) and return its name."""
    return ensure_dot_intrin(SDOT_INTRIN, 4, "int8", "llvm.aarch64.neon.sdot.v4i32.v16i8")


def dot_intrin(target, config: KernelConfig, work: ConvWorkload | None = None) -> str | None:
    """The ``sdot`` tensor intrinsic of ``config`` on ``target``: one ``sdot`` for codes below 128
    (``a_bits <= 7``), else the split form (without ``work``: the split form, exact for every code)."""
    if config.use_dot and config.lanes == 4 and target_has(target, "dotprod"):
        if work is not None and work.a_bits <= 7:
            return ensure_intrinsics()
        return ensure_sdot_split_intrin(SDOT_SPLIT_INTRIN)
    return None


def has_window_dot(target, work: ConvWorkload) -> bool:
    """True when ``work``'s depthwise kernel can run the window form on ``target``: ``sdot`` (``+dotprod``) and
    codes below 128 (``a_bits <= 7``: ``sdot`` reads them as signed bytes)."""
    return target_has(target, "dotprod") and work.a_bits <= 7


def window_dot_intrin(lanes: int, stride: int, dilation: int) -> str:
    """The window-form dot intrinsic of depthwise rows: ``sdot`` on 4 lanes, the quads shuffled by ``tbl``."""
    return ensure_window_dot_intrin(f"tvm_mp_s8s8_window_{lanes}x4_s{stride}_d{dilation}_sdot", lanes, stride,
                                    dilation, "llvm.aarch64.neon.sdot.v4i32.v16i8", code_dtype="int8")


def default_config(work: ConvWorkload, target) -> KernelConfig:
    algo = _default_algorithm(work, 4)  # NEON: 4 int32 lanes
    # 8-bit codes take the split form (two sdot per quad): measured under qemu-aarch64 (bench/kernels.py
    # --qemu-realistic) 1.75-2.2x fewer instructions than mla on 3x3 convs, but 1x1 convs gained nothing (144 -> 24
    # at 56x56: 1.05x fewer; 96 -> 576 at 14x14: 1.18x more), so they keep mla
    taps = work.weight_shape[2] * work.weight_shape[3] if work.op != "dense" else 1
    use_dot = work.kind == "packed" and target_has(target, "dotprod") and (work.a_bits <= 7 or taps > 1)
    parallel = work.macs >= PARALLEL_MIN_MACS
    if algo == "dense":
        return dense_default(work, 4)
    if algo == "depthwise":  # use_dot: the window form (kernels.window_dot)
        return KernelConfig(algo, lanes=4, oc_block=1, p_unroll=1, use_dot=has_window_dot(target, work),
                            parallel=parallel)
    return KernelConfig(algo, lanes=4, oc_block=4, p_unroll=2, use_dot=use_dot, parallel=parallel)


def config_space(work: ConvWorkload, target) -> list[KernelConfig]:
    """Every config a tuner tries for ``work`` on an aarch64 ``target`` (threading as the default config)."""
    base = default_config(work, target)
    return tiling_space(work, 4, base.use_dot, (base.parallel,))
