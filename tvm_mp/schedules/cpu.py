"""Default CPU schedule for tvm-mp kernels (x86 host and aarch64): parallel outer loops, vectorized inner loops.

A reasonable schedule without tuning; the fast, tunable schedules per target family are separate modules.
"""

from __future__ import annotations

from .. import _tvm


def _static_extent(sch, loop) -> int | None:
    extent = sch.get(loop).extent
    return int(extent) if hasattr(extent, "value") else None


def schedule_default(func):
    """Parallelize the outer spatial loops of every block; vectorize the innermost loop of elementwise blocks."""
    sch = _tvm.schedule(func)
    for block in sch.get_child_blocks(sch.get_sblock("root")) if _has_root(sch) else []:
        loops = sch.get_loops(block)
        if not loops:
            continue
        n_spatial, n_iters = _tvm.leading_spatial_iters(sch, block)
        if n_spatial == 0:
            continue
        reduces = n_spatial < n_iters
        if reduces and n_spatial >= 2 and _window_reduction(sch, loops, n_spatial):
            loops = _vectorize_over_window(sch, block, loops, n_spatial)
        elif not reduces and n_spatial >= 2:
            extent = _static_extent(sch, loops[n_spatial - 1])
            if extent is not None and extent >= 4:
                _vectorize_row(sch, loops[n_spatial - 1], extent)
                loops = sch.get_loops(block)
        if _block_size(sch, loops) < PARALLEL_MIN_ELEMENTS:
            continue  # waking a second thread costs more than the whole block takes
        outer = sch.fuse(*loops[: min(2, n_spatial)]) if n_spatial >= 2 else loops[0]
        sch.parallel(outer)
    return sch.mod["main"]


#: A reduction block whose reduction loops span at most this many iterations (a pooling window) is vectorized over
#: its innermost spatial loop, the window loops moved outside it (:func:`_vectorize_over_window`).
WINDOW_MAX = 64


#: ... and its innermost spatial loop has 4 to this many iterations. A longer row is left to LLVM, which runs it
#: faster than vectors whose loads are strided (a 3x3 stride-2 max pool over (1, 64, 112, 112): 187 us left
#: alone, 380 vectorized); shorter rows it unrolled and vectorized across rows with gathers.
WINDOW_ROW_MAX = 16


def _window_reduction(sch, loops, n_spatial: int) -> bool:
    """Whether a reduction block is a window reduction: spatial loops first, then reduction loops of at most
    :data:`WINDOW_MAX` iterations together, and an innermost spatial loop of 4 to :data:`WINDOW_ROW_MAX`."""
    size = 1
    for loop in loops[n_spatial:]:
        extent = _static_extent(sch, loop)
        if extent is None:
            return False
        size *= extent
    last = _static_extent(sch, loops[n_spatial - 1])
    return len(loops) > n_spatial and size <= WINDOW_MAX and last is not None and 4 <= last <= WINDOW_ROW_MAX


def _vectorize_over_window(sch, block, loops, n_spatial: int):
    """Window loops outside the innermost spatial loop, which is vectorized (as an elementwise block's); returns
    the block's loops. Left innermost, the window loops of a max pooling ran scalar: a
    2x2 max pool over (1, 16, 20, 20) took 4.6 us, now 0.9; over (1, 128, 32, 8) 11.3 -> 4.5; 3x3 stride 2 over
    (1, 16, 24, 12) 4.6 -> 1.8 (host, one thread)."""
    inner = loops[n_spatial - 1]
    sch.reorder(*loops[n_spatial:], inner)
    # (the initialization stays in the block: its condition is the same for every lane)
    _vectorize_row(sch, inner, _static_extent(sch, inner))
    return sch.get_loops(block)


def _vectorize_row(sch, loop, extent: int) -> None:
    """Vectorize ``loop`` in the largest power of two up to 16 lanes dividing ``extent`` (a divisor: a tail
    predicate would scalarize the vector loop, and LLVM would then vectorize across the outer loop with gathers
    and scatters); a loop no power of two >= 4 divides is vectorized whole up to 64 iterations, else left alone."""
    width = _pow2_divisor(extent, 16)
    if width >= 4:
        _, loop = sch.split(loop, [None, width])
    elif extent > 64:
        return
    sch.vectorize(loop)


#: Blocks with fewer iterations run on one thread (measured on the 2-core host: a parallel launch that wakes the
#: pool's second thread costs tens of microseconds, more than a 64k-element quantize takes).
PARALLEL_MIN_ELEMENTS = 1 << 18


def _block_size(sch, loops) -> int:
    size = 1
    for loop in loops:
        extent = _static_extent(sch, loop)
        if extent is None:
            return PARALLEL_MIN_ELEMENTS  # symbolic sizes: assume large
        size *= extent
    return size


def _has_root(sch) -> bool:
    try:
        sch.get_sblock("root")
        return True
    except Exception:  # a PrimFunc without a root block has nothing to schedule
        return False


def _pow2_divisor(n: int, most: int) -> int:
    """Largest power of two <= ``most`` dividing ``n``."""
    p = most
    while p > 1 and n % p:
        p //= 2
    return p


def _pow2_below(n: int) -> int:
    p = 1
    while p * 2 <= n:
        p *= 2
    return p
