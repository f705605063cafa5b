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
        iter_types = [str(iv.iter_type) for iv in sch.get(block).iter_vars]
        n_spatial = 0
        for kind in iter_types:
            if kind not in ("0", "DataPar", "IterVarType.DataPar"):
                break
            n_spatial += 1
        if n_spatial == 0:
            continue
        reduces = n_spatial < len(iter_types)
        if not reduces and n_spatial >= 2:
            extent = _static_extent(sch, loops[n_spatial - 1])
            if extent is not None and extent >= 4:
                # a divisor of the extent: a tail predicate would scalarize the vector loop (and LLVM would then
                # vectorize across the outer loop with gathers and scatters)
                width = _pow2_divisor(extent, 16)
                if width >= 4:
                    _, inner = sch.split(loops[n_spatial - 1], [None, width])
                    sch.vectorize(inner)
                elif extent <= 64:
                    sch.vectorize(loops[n_spatial - 1])
                loops = sch.get_loops(block)
        if _block_size(sch, loops) < PARALLEL_MIN_ELEMENTS:
            continue  # waking a second thread costs more than the whole block takes
        outer = sch.fuse(*loops[: min(2, n_spatial)]) if n_spatial >= 2 else loops[0]
        sch.parallel(outer)
    return sch.mod["main"]


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
