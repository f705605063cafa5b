"""The tiled CPU schedule shared by the x86 and arm_cpu families (they differ in vector width and dot intrinsic).

Works on the fast-path kernels of :mod:`tvm_mp.schedules.kernels` by block name: pre-processing blocks (padding,
channel quads, bit-planes, im2col, weight unpacking) are vectorized over their pixel axis; the accumulator block is
tiled into ``oc_block x (p_unroll * lanes)`` register tiles held in a local buffer, its reduction loops outside the
tile, the tile loops unrolled and the pixel vector vectorized (or tensorized into a dot-product instruction); the
epilogue reads the accumulator once, vectorized.
"""

from __future__ import annotations

from .. import _tvm
from .computes import PACK_BLOCK
from .intrinsics import ensure_deinterleave_intrin
from .registry import KernelConfig


def _block(sch, name):
    try:
        return sch.get_sblock(name)
    except Exception:  # the kernel has no such stage
        return None


def _extent(sch, loop) -> int:
    return int(sch.get(loop).extent)


def _vector_split(extent: int, width: int, pow2: bool) -> int | None:
    """How :func:`_vectorize_inner` vectorizes a loop of ``extent``: None for the whole loop, else the lanes it is
    split by."""
    if extent <= width and (not pow2 or extent & (extent - 1) == 0):
        return None
    least = 2 if pow2 else 4
    factor = width
    while factor >= least and extent % factor:
        factor //= 2
    if factor >= least:
        return factor
    if extent <= 4 * width and not pow2:
        return None
    return width


def pow2_lanes(extent: int, width: int) -> int:
    """Lanes of the vectors :func:`_vectorize_inner` (``pow2=True``) splits a loop of ``extent`` into."""
    split = _vector_split(extent, width, True)
    return extent if split is None else split


def _vectorize_inner(sch, block, width: int, pow2: bool = False) -> None:
    """Vectorize the innermost loop without a tail predicate (a predicated vector loop is scalarized, and LLVM
    then vectorizes across the outer loop with gathers / scatters): split by the widest divisor of its extent up
    to ``width``; a loop no such divisor fits is vectorized whole when short, else split with a tail.

    ``pow2``: vectors only of a power-of-two number of lanes (a loop no power of two >= 2 divides is split by
    ``width`` with a scalarized tail). The requantizing epilogue needs it: LLVM's aarch64 backend miscompiles a
    3-lane int64 multiply-shift truncated to uint8 (see :func:`schedule`)."""
    inner = sch.get_loops(block)[-1]
    ext = _extent(sch, inner)
    if ext == 1:
        return
    split = _vector_split(ext, width, pow2)
    if split is None:
        sch.vectorize(inner)
    else:
        _, vec = sch.split(inner, [None, split])
        sch.vectorize(vec)


def _vector_sizes(ext: int, width: int) -> list[int]:
    """Consecutive pieces of a loop of ``ext``: full vectors of ``width`` lanes (one piece), then the remainder's
    binary digits (28 at 16 lanes: 16, 8, 4) -- every vector a power of two wide, no predicated tail, no scalar
    loop but the last lane of an odd remainder."""
    rem = ext % width
    return ([ext - rem] if ext > rem else []) + [b for b in (32, 16, 8, 4, 2, 1) if b < width and rem & b]


def _vectorize_pieces(sch, loop, sizes: list[int], width: int) -> None:
    """Cut ``loop`` (starting at 0) into consecutive pieces of ``sizes`` and vectorize each: a piece wider than a
    vector in vectors of ``width`` lanes. One partition for every cut: a partitioned piece must not be partitioned
    again (TVM then places the cuts from 0, not from the piece's start, and drops iterations)."""
    pieces = sch.loop_partition(loop, sizes[:-1] + [None]) if len(sizes) > 1 else [loop]
    for piece, size in zip(pieces, sizes):
        if size > width:
            _, vec = sch.split(piece, [None, width])
            sch.vectorize(vec)
        elif size > 1:
            sch.vectorize(piece)


#: Rows of at least this many codes are padded in three loops (:func:`_vectorize_padded_rows`). Depthwise 3x3
#: accumulator kernels with their requantizing epilogue, w8a8, Zen 4, one thread, one loop -> three: stride 2,
#: 144 ch at 56x56 159 -> 140 us, 96 ch at 112x112 572 -> 368; stride 1 (384 ch at 14x14, 192 at 28x28, 32 at
#: 112x112, 144 at 56x56, 960 at 7x7) unchanged within 1 %, with the 14-code rows of 384 ch at 14x14 as well.
PAD_SPLIT_MIN_COLS = 32


def _vectorize_padded_rows(sch, block, left: int, width: int, lanes: int) -> None:
    """A zero-point-padded plane's rows (``computes.pad_plane``): the left padding, the copied codes and the right
    padding are separate loops, each vectorized in power-of-two vectors (:func:`_vector_sizes`). Vectorized
    whole (in the largest power of two dividing the padded row: 4 codes for 56 + 12 columns), the row's clamped
    load index is no ramp."""
    x = sch.get_loops(block)[-1]
    ext = _extent(sch, x)
    sizes = []
    for part in (left, width, ext - left - width):
        for size in _vector_sizes(part, lanes) if part > 0 else ():
            # a piece not starting at 0 cannot be split (TVM): its full vectors are pieces of their own
            sizes += [lanes] * (size // lanes) if size > lanes and sizes else [size]
    _vectorize_pieces(sch, x, sizes, lanes)


def _flatten_vectorize(sch, block, width: int, keep_outer: int = 0) -> None:
    loops = sch.get_loops(block)
    if len(loops) - keep_outer > 1:
        sch.fuse(*loops[keep_outer:])
    _vectorize_inner(sch, block, width)


def _row_vectorize(sch, block, row: int) -> None:
    """Flat-plane blocks: split the flat axis by the padded row length (whole rows: the index arithmetic then
    simplifies to (row, column)) and vectorize the row."""
    loops = sch.get_loops(block)
    _, li = sch.split(loops[-1], [None, row])
    sch.vectorize(li)


def _reduction_pack(sch, block, lanes: int, row: int | None = None) -> None:
    """Blocks ``out[..., p] = sum_t bit_t << t``: pixel vector innermost, bit loop unrolled outside it."""
    *outer, p, t = sch.get_loops(block)
    po, pv = sch.split(p, [None, row or lanes])
    sch.reorder(po, t, pv)
    sch.vectorize(pv)
    sch.unroll(t)
    init = sch.decompose_reduction(block, t)
    sch.vectorize(sch.get_loops(init)[-1])


def _window_pack(sch, wcodes, bitpack, lanes: int) -> None:
    """im2col codes, then their bit-planes (``computes.window_codes`` / ``window_bits``): per vector of pixels,
    a word's codes are gathered once into a small tile and every activation plane is packed from it (the tile
    stays in L1; packing each plane from the image gathered every code once per plane: a 3-channel first layer
    at w1a8 ran 112 us, 5.7x its packed kernel)."""
    *outer, j, p, t = sch.get_loops(bitpack)
    po, pv = sch.split(p, [None, lanes])
    sch.reorder(po, j, t, pv)
    sch.vectorize(pv)
    sch.unroll(t)
    init = sch.decompose_reduction(bitpack, t)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.compute_at(wcodes, po)
    sch.vectorize(sch.get_loops(wcodes)[-1])


def schedule(func, config: KernelConfig, hints: dict, dot_intrin: str | None = None):
    """Apply the tiled schedule to a fast-path kernel PrimFunc; ``hints`` come from the kernel builder."""
    sch = _tvm.schedule(func)
    lanes = config.lanes
    byte_lanes = lanes * 4

    row = hints.get("flat_row")
    padded = _block(sch, "padded")
    if padded is not None and hints.get("is_codes"):
        # the flat plane is the codes (a pointwise stride-1 conv): its readers load them straight, no copy. Zen 4,
        # one thread, w8a8 kernels with their float epilogue: 144 -> 24 at 56x56 83 -> 72 us, 32 -> 16 at
        # 112x112 70 -> 63, 96 -> 576 at 14x14 71 -> 68 (bit-serial: see computes.plane_bits)
        sch.compute_inline(padded)
        padded = None
    if padded is not None:
        if row:
            _row_vectorize(sch, padded, row)
        elif hints.get("pad_cols", (0, 0))[1] >= PAD_SPLIT_MIN_COLS:
            _vectorize_padded_rows(sch, padded, *hints["pad_cols"], byte_lanes)
        else:
            _vectorize_inner(sch, padded, byte_lanes)
    quads = _block(sch, "quads")
    if quads is not None:
        _row_vectorize(sch, quads, row)
    for name in ("bits64", "w64"):
        block = _block(sch, name)
        if block is not None:
            _vectorize_inner(sch, block, lanes)
    phased = _block(sch, "phased")
    if phased is not None and hints.get("deinterleave"):  # stride 2: whole shuffle pairs (computes.deinterleave_width)
        *_, ph, x = sch.get_loops(phased)
        xo, xi = sch.split(x, [None, hints["deinterleave"]])
        sch.reorder(xo, ph, xi)
        sch.tensorize(ph, ensure_deinterleave_intrin(hints["deinterleave"]))
    elif phased is not None:  # power-of-two vectors: 34 columns in 32 + 2
        x = sch.get_loops(phased)[-1]
        _vectorize_pieces(sch, x, _vector_sizes(_extent(sch, x), byte_lanes), byte_lanes)
    cols = _block(sch, "cols")
    if cols is not None:
        _vectorize_inner(sch, cols, lanes)
    wcodes = _block(sch, "wcodes")
    if wcodes is not None:
        _window_pack(sch, wcodes, sch.get_sblock("bitpack"), lanes)
    wunpack = _block(sch, "wunpack")
    if wunpack is not None:
        _schedule_unpack(sch, wunpack, hints.get("pack_per", 1), byte_lanes)
    if _block(sch, "planebytes") is not None:
        _reduction_pack(sch, sch.get_sblock("planebytes"), byte_lanes, row)
        _row_vectorize(sch, sch.get_sblock("bitplanes"), row)
    elif _block(sch, "bitplanes") is not None:
        _reduction_pack(sch, sch.get_sblock("bitplanes"), lanes, row)
    if _block(sch, "bitpack") is not None and wcodes is None:
        _reduction_pack(sch, sch.get_sblock("bitpack"), lanes)

    acc = _block(sch, "dot_acc") or _block(sch, "bitserial_acc")
    if acc is not None:
        _schedule_acc(sch, acc, config, hints, dot_intrin)
    popsum = _block(sch, "popsum")
    if popsum is not None:
        _schedule_popsum(sch, popsum, lanes)
        sch.compute_inline(sch.get_sblock("signed_acc"))
    dw = _block(sch, "dw_acc")
    if dw is not None and not hints.get("window_dot"):
        _schedule_depthwise(sch, dw, config)

    crop = _block(sch, "crop")
    epi = _block(sch, "dequantize") or _block(sch, "requantize")
    if crop is not None and epi is not None:
        sch.compute_inline(crop)
    last = epi if epi is not None else crop
    if dw is not None and hints.get("window_dot"):
        _schedule_depthwise_window(sch, dw, last, config, hints["window_dot"][0], dot_intrin)
    elif last is not None:
        # The epilogue is vectorized in power-of-two lanes only. With the row vectorized whole, a depthwise
        # layer with 3-pixel rows (MobileNetV1-0.25's conv2d_23) got <3 x i64> requantization, which LLVM's
        # aarch64 backend miscompiles (the int64 multiply-shift truncated to uint8: 370 of 1152 codes wrong).
        # Rows shorter than a vector are fused with the loops above them; longer rows are not: a fused loop reads
        # the accumulator (whose rows are padded wider than the output's) through a division and remainder per
        # pixel, with inserts and extracts across rows -- measured 1.3-2x slower on 384-channel depthwise layers
        # at 14x14 and 28x28 on x86; emulated aarch64 instructions, w8a8 depthwise: 384 ch at 14x14 1.98M fused,
        # 0.97M not; 960 ch at 7x7 (7-pixel rows, split into a 4-lane vector and a scalar tail) 0.93M / 0.67M.
        loops = sch.get_loops(last)
        keep = 0
        if config.parallel and len(loops) >= 2:
            sch.parallel(sch.fuse(loops[0], loops[1]))
            keep = 1
        # Only the rows of one channel are fused, never the channel loop: a fused vector spanning two output
        # channels reads their parameters through a division each (gathers) -- a 32-channel depthwise at 25x4
        # (100 pixels, 8 lanes) ran 3x slower than at 20x4; and even where vectors stay inside a channel, the
        # outputs' index through the channel's division and the row's (channel x 320 pixels of 32 x 10 rows) is
        # not simplified back to the fused index, so every lane is a gather and a scatter -- a 128-channel
        # depthwise at 32x10 ran 88 us, 4x the time per pixel of 32x8 (32 x 8 = 256: powers of two simplify).
        loops = sch.get_loops(last)
        out_row = _extent(sch, loops[-1])
        fused = len(loops) - keep > 1 and out_row < lanes
        if fused and epilogue_row_pieces(out_row, lanes, bool(row), bool(hints.get("dense_acc_rows"))):
            _vectorize_pieces(sch, loops[-1], _vector_sizes(out_row, lanes), lanes)
            return sch.mod["main"]
        if fused:
            sch.fuse(*loops[max(keep, len(loops) - 2):])
        inner = sch.get_loops(last)[-1]
        ext = _extent(sch, inner)
        if (hints.get("dense_acc_rows") or not fused) and epilogue_partitioned(ext, lanes):
            # full vectors, then the tail in vectors of its binary digits (12 = 8 + 4): left as a scalar loop,
            # the tail was vectorized by LLVM in a serial loop but not in a parallel one (a parallel loop's body
            # is its own function, where the tail's indices are 32-bit and LLVM extracts every lane): 1x1 s2
            # 64 -> 128 at 56x56 (28-pixel rows), one thread, parallel: 122 -> 84 us (serial: 84 both).
            _vectorize_pieces(sch, inner, _vector_sizes(ext, lanes), lanes)
        else:
            _vectorize_inner(sch, last, lanes, pow2=True)
    return sch.mod["main"]


def epilogue_row_pieces(row: int, lanes: int, flat: bool, dense_rows: bool) -> bool:
    """Whether the epilogue of a flat-plane kernel (``direct``: accumulator rows of the padded pitch) runs each
    output row shorter than a vector, but at least half of one, in vectors of its binary digits (14 = 8 + 4 + 2)
    read straight from the accumulator's row, instead of fused with the other rows of its channel, which reads the
    accumulator through a division per lane (a gather). Zen 4, one thread, 3x3 256 -> 256 at 14x14 with the
    float epilogue: bit-serial w1a1 180 -> 124 us, packed w8a8 649 -> 608."""
    return flat and not dense_rows and max(4, lanes // 2) <= row < lanes


def epilogue_partitioned(extent: int, lanes: int) -> bool:
    """Whether the epilogue's loop of ``extent`` is cut into full vectors of ``lanes``, then the remainder in
    vectors of its binary digits (:func:`_vector_sizes`), instead of vectors of the largest power of two dividing
    it: when the loop is longer than a vector and that power is below half the lanes (a channel's 25 x 5 outputs:
    125, odd, and the predicated split TVM gives such a loop is scalarized whole; 14 x 14: 196, 4-lane vectors).
    Only where a vector of outputs is a plain load of the accumulator, not a gather: the loop is one row, or the
    accumulator's rows are as long as the output's (``dense_acc_rows``)."""
    return extent > lanes and _fit(lanes, extent) < lanes // 2


def _schedule_unpack(sch, wunpack, per: int, byte_lanes: int) -> None:
    """Weight unpacking: whole packing blocks per step (the sub-byte position unrolled, the block vectorized)."""
    r = sch.get_loops(wunpack)[-1]
    if per > 1 and _extent(sch, r) % (per * PACK_BLOCK) == 0:
        _, s_loop, k = sch.split(r, [None, per, PACK_BLOCK])
        sch.unroll(s_loop)
        sch.vectorize(k)
    else:
        _vectorize_inner(sch, wunpack, byte_lanes)


def schedule_dense(func, config: KernelConfig, vw: int, pack_per: int):
    """The fast dense kernel's schedule (:func:`tvm_mp.schedules.kernels.fast_dense`): tiles of ``oc_block``
    output features (spread over threads when ``parallel``), each holding ``vw`` vectorized partial sums per
    feature in a local buffer; the reduction loop unrolled ``p_unroll`` times (bit-serial: plane loops unrolled
    too); packed weights unpacked per tile; the partial sums added up and the epilogue applied per tile."""
    sch = _tvm.schedule(func)
    lanes = config.lanes
    padded = _block(sch, "padded")
    if padded is not None:
        _vectorize_inner(sch, padded, lanes * 4)
    if _block(sch, "bitpack") is not None:
        _reduction_pack(sch, sch.get_sblock("bitpack"), vw)
    part = sch.get_sblock("dense_part")
    n, o, v, s, *planes = sch.get_loops(part)
    ob = _fit(config.oc_block, _extent(sch, o))
    pu = _fit(config.p_unroll, _extent(sch, s))
    oo, oi = sch.split(o, [None, ob])
    so, si = sch.split(s, [None, pu])
    sch.reorder(n, oo, so, si, *reversed(planes), oi, v)
    outer = sch.fuse(n, oo)
    if config.parallel:
        sch.parallel(outer)
    wunpack = _block(sch, "wunpack")
    if wunpack is not None:
        sch.compute_at(wunpack, outer)
        if len(sch.get_loops(wunpack)) > 1:  # (a tile needing one weight has no loop of its own)
            _schedule_unpack(sch, wunpack, pack_per, lanes * 4)
    wb = sch.cache_write(part, 0, "local")
    sch.reverse_compute_at(wb, outer)
    if len(sch.get_loops(wb)) > 1:  # (unit loops are dropped: then the write-back has no loop of its own)
        _vectorize_inner(sch, wb, lanes)
    if vw > 1:
        sch.vectorize(v)
    init = sch.decompose_reduction(part, so)
    if vw > 1:
        sch.vectorize(sch.get_loops(init)[-1])
    for loop in (oi, si, *planes):
        sch.unroll(loop)
    sch.reverse_compute_at(sch.get_sblock("dense_acc"), outer)
    epi = _block(sch, "dequantize") or _block(sch, "requantize")
    if _block(sch, "row_sum") is None:
        if epi is not None:
            sch.reverse_compute_at(epi, outer)
    else:  # 1-bit weights: the codes' sum is needed by every tile, so the offset and epilogue run after the tiles
        for block in (_block(sch, "bitserial_offset"), epi):
            if block is not None:
                _flatten_vectorize(sch, block, lanes)
    return sch.mod["main"]


def schedule_dense_dot(func, config: KernelConfig, dot_intrin: str | None):
    """The dense kernel's dot form (:func:`~tvm_mp.schedules.computes.dense_dot_acc`): tiles of ``oc_block``
    vectors of ``lanes`` output features (spread over threads when ``parallel``) held in registers, the reduction's
    quads unrolled ``p_unroll`` times; per quad, the four codes are broadcast once and each vector of the tile adds
    their dot product with its weights (``dot_intrin``: one ``vpdpbusd`` reading 64 weight bytes); the epilogue
    after the tiles."""
    sch = _tvm.schedule(func)
    lanes = config.lanes
    padded = _block(sch, "padded")
    if padded is not None:
        _vectorize_inner(sch, padded, lanes * 4)
    dot = sch.get_sblock("dense_dot")
    n, o, rk, q = sch.get_loops(dot)
    ob = _fit(config.oc_block, _extent(sch, o) // lanes)
    pu = _fit(config.p_unroll, _extent(sch, rk))
    ot, obi, oi = sch.split(o, [None, ob, lanes])
    rko, rki = sch.split(rk, [None, pu])
    if dot_intrin is not None:
        sch.reorder(n, ot, rko, rki, obi, oi, q)
    else:
        sch.reorder(n, ot, rko, rki, obi, q, oi)
    outer = sch.fuse(n, ot)
    if config.parallel:
        sch.parallel(outer)
    wb = sch.cache_write(dot, 0, "local")
    sch.reverse_compute_at(wb, outer)
    _flatten_vectorize(sch, wb, lanes, keep_outer=1)
    if dot_intrin is None:
        sch.vectorize(oi)
        sch.unroll(q)
    init = sch.decompose_reduction(dot, rko)
    sch.vectorize(sch.get_loops(init)[-1])
    if dot_intrin is not None:
        sch.tensorize(oi, dot_intrin)
    for loop in (obi, rki):
        sch.unroll(loop)
    epi = _block(sch, "dequantize") or _block(sch, "requantize")
    acc = sch.get_sblock("dense_acc")
    if epi is not None:
        sch.compute_inline(acc)
    _flatten_vectorize(sch, epi if epi is not None else acc, lanes)
    return sch.mod["main"]


def _schedule_popsum(sch, block, lanes: int) -> None:
    """The per-pixel plane sum of 1-bit-weight kernels (``computes.signed_plane_acc``): a vector of pixels
    innermost, the reduction (planes, taps, words) around it."""
    loops = sch.get_loops(block)
    n_spatial, _ = _tvm.leading_spatial_iters(sch, block)
    *outer, p = loops[:n_spatial]
    red = loops[n_spatial:]
    po, pv = sch.split(p, [None, _fit(lanes, _extent(sch, p))])
    sch.reorder(*outer, po, *red, pv)
    sch.vectorize(pv)
    init = sch.decompose_reduction(block, red[0])
    sch.vectorize(sch.get_loops(init)[-1])


def _schedule_acc(sch, acc, config: KernelConfig, hints: dict, dot_intrin: str | None) -> None:
    n, oc, p, *red = sch.get_loops(acc)
    lanes = config.lanes
    ob = _fit(config.oc_block, _extent(sch, oc))
    pu = _fit(config.p_unroll, _extent(sch, p) // lanes)
    oco, oci = sch.split(oc, [None, ob])
    po, pui, pv = sch.split(p, [None, pu, lanes])
    use_dot = dot_intrin is not None and config.use_dot and hints.get("dot_ok", False)
    unrolled = [oci, pui]
    if use_dot:
        *red_outer, q = red
        sch.reorder(n, oco, po, *red_outer, oci, pui, pv, q)
    elif hints.get("bitserial"):
        planes, spatial_red = red[:2], red[2:]  # (i, j) plane loops, then the window / word loops
        sch.reorder(n, oco, po, *spatial_red, planes[1], planes[0], oci, pui, pv)
        unrolled += planes
    else:
        sch.reorder(n, oco, po, *red, oci, pui, pv)
    if config.parallel:
        outer = _parallel_tiles(sch, n, oco, po)
        depth = 2  # the parallel loop, then the serial loop of its tiles
    else:
        outer = sch.fuse(n, oco, po)
        depth = 1
    wb = sch.cache_write(acc, 0, "local")
    sch.reverse_compute_at(wb, outer)
    wb_loops = sch.get_loops(wb)
    if len(wb_loops) > depth + 1:
        sch.fuse(*wb_loops[depth:])
    _vectorize_inner(sch, wb, lanes)
    if not use_dot:
        sch.vectorize(pv)
    init = sch.decompose_reduction(acc, sch.get_loops(acc)[depth])
    sch.vectorize(sch.get_loops(init)[-1])
    if use_dot:
        sch.tensorize(pv, dot_intrin)
    for loop in unrolled:
        sch.unroll(loop)


#: A parallel tile loop has at least this many iterations where the tiles allow (to balance the threads).
PARALLEL_MIN_TASKS = 8


def _parallel_tiles(sch, n, oco, po):
    """Spread the tiles of loops (n, oco, po) over the runtime's threads: the loop over (n, oco) -- and, when it
    has fewer than :data:`PARALLEL_MIN_TASKS` iterations, over the first of equal parts of ``po`` -- is parallel,
    the rest of ``po`` a serial loop inside it (returned). Not the fused tile loop: a buffer allocated inside a
    parallel loop's body is allocated per iteration, through ``TVMBackendAllocWorkspace`` (a 16 x 16 int32 tile's
    accumulator is not below TVM's 1 KiB stack limit), where a serial loop's buffers are hoisted out of it.
    Measured on the Zen 4 host (w8a8, the kernel with its requantizing epilogue, one thread; parallel tile loop ->
    this, and the serial kernel): 3x3 s2 64 -> 128 at 56x56 362 -> 316 us (322); 3x3 64 -> 64 at 56x56 637 -> 571
    (569); the 7x7 stem (im2col) 1645 -> 1084 (1061); 1x1 s2 64 -> 128 at 56x56 153 -> 122 (84; the rest was the
    epilogue's tail, see :func:`schedule`). Two threads, before -> after: 363 -> 329 us (3x3 64 -> 64), 1061 ->
    722 (the stem)."""
    lead = _extent(sch, n) * _extent(sch, oco)
    if lead < PARALLEL_MIN_TASKS:
        npo = _extent(sch, po)
        want = -(-PARALLEL_MIN_TASKS // lead)
        parts = min(d for d in range(1, npo + 1) if npo % d == 0 and (d >= want or d == npo))
        if parts > 1:
            part, po = sch.split(po, [parts, None])
            sch.parallel(sch.fuse(n, oco, part))
            return po
    sch.parallel(sch.fuse(n, oco))
    return po


def _schedule_depthwise(sch, dw, config: KernelConfig) -> None:
    n, oc, oy, ox, ky, kx = sch.get_loops(dw)
    lanes = min(config.lanes, _extent(sch, ox))
    oxo, oxv = sch.split(ox, [None, lanes])  # rows of fewer lanes are one vector each (depthwise_row_pitch)
    sch.reorder(n, oc, oy, oxo, ky, kx, oxv)
    outer = sch.fuse(n, oc)
    if config.parallel:
        sch.parallel(outer)
    sch.vectorize(oxv)
    sch.unroll(ky)
    sch.unroll(kx)
    init = sch.decompose_reduction(dw, ky)
    sch.vectorize(sch.get_loops(init)[-1])


#: Output rows the depthwise window form accumulates together (independent dot chains between the loads; the
#: epilogue then runs on the rows). Zen 4, one thread, w8a8, one row -> four, float / requantizing epilogue: 96 ch
#: at 112x112 179 -> 154 / 347 -> 314 us; 144 ch at 56x56 stride 2 30 -> 31 / 50 -> 44; 384 ch at 14x14 (two
#: rows) 25 -> 25 / 37 -> 37; 960 ch at 7x7 (7 rows: one) unchanged.
WINDOW_ROWS = 4


def _schedule_depthwise_window(sch, dw, last, config: KernelConfig, vec: int, dot_intrin: str) -> None:
    """The window form (``computes.depthwise_window_acc``): per channel and :data:`WINDOW_ROWS` output rows (the
    largest power of two up to it dividing the rows), each vector of ``vec`` pixels accumulates in registers over
    the kernel rows and tap quads (``dot_intrin``: one load, one shuffle, one ``vpdpbusd`` per quad); the epilogue
    ``last`` then runs on each row (full vectors, the remainder in vectors of its binary digits), so the
    accumulator never goes to memory and a row shorter than its vectors (14 pixels in 16 lanes) is stored as the
    output's."""
    n, oc, oy, ox, ky, kq, k = sch.get_loops(dw)
    oxo, oxv = sch.split(ox, [None, vec])
    oyo, oyi = sch.split(oy, [None, _fit(WINDOW_ROWS, _extent(sch, oy))])
    sch.reorder(n, oc, oyo, oxo, ky, kq, oyi, oxv, k)
    outer = sch.fuse(n, oc)
    if config.parallel:
        sch.parallel(outer)
    sch.set_scope(dw, 0, "local")
    sch.reverse_compute_at(last, oyo)
    init = sch.decompose_reduction(dw, ky)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.tensorize(oxv, dot_intrin)
    sch.unroll(ky)
    sch.unroll(kq)
    sch.unroll(oyi)
    x = sch.get_loops(last)[-1]
    _vectorize_pieces(sch, x, _vector_sizes(_extent(sch, x), vec), vec)


def _fit(want: int, extent: int) -> int:
    """Largest power of two <= want dividing extent."""
    b = max(1, want)
    while b > 1 and extent % b:
        b //= 2
    return b
