"""Kernel factories: TE computes (``computes.py``) turned into scheduled, named PrimFuncs.

A kernel's arguments, in order (the output last, as ``call_tir`` wants):

* conv2d / dense, ``bitserial``: ``codes, weight_planes, plane_coef, bias_corr, <epilogue params>, out``
* conv2d / dense, ``packed``:    ``codes, packed_weights, bias_corr, <epilogue params>, out``
* epilogue params: ``scale float32[OC]`` for a float output, ``mult int64[OC], shift int64[OC]`` for requantized
  uint8 output, nothing for the raw int32 accumulator (``Epilogue("acc")``, used by tests and tuning).

Shape-generic kernels (every size and conv parameter symbolic) come from :func:`generic_conv2d_kernel` and
:func:`generic_dense_kernel`; the tests compile each once and run thousands of shapes through it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import te, tirx

from .. import _tvm
from ..errors import UnsupportedError
from ..quantize.packing import container_bits, pack_dense, plane_coefficients, weight_bitplanes
from ..targets import parse
from ..workload import ConvParams
from . import computes as C
from .cpu import PARALLEL_MIN_ELEMENTS, schedule_default
from .registry import ConvWorkload, KernelConfig, legal, lookup, one_byte_weights

#: Marks a PrimFunc opaque to Relax's operator fusion, so its float arithmetic is never merged with another op's.
OPAQUE_PATTERN = 8


@dataclass(frozen=True)
class Epilogue:
    """What a kernel returns: ``acc`` (int32), ``float`` (dequantized, clamped to [lo, hi]) or ``requant``
    (uint8 codes with ``zero_point``, clamped to integer [lo, hi])."""

    kind: str = "float"
    lo: float | int | None = None
    hi: float | int | None = None
    zero_point: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("acc", "float", "requant"):
            raise ValueError(f"unknown epilogue {self.kind!r}")
        if self.kind == "requant" and (self.lo is None or self.hi is None):
            raise ValueError("a requant epilogue needs integer lo and hi")


def _finish(func, name: str):
    return func.with_attr("global_symbol", name).with_attr("op_pattern", OPAQUE_PATTERN)


def _epilogue(acc, oc, epi: Epilogue, bias_corr):
    if epi.kind == "acc":
        return acc, []
    if epi.kind == "float":
        scale = te.placeholder((oc,), "float32", "scale")
        return C.epilogue_float(acc, bias_corr, scale, epi.lo, epi.hi), [scale]
    mult = te.placeholder((oc,), "int64", "mult")
    shift = te.placeholder((oc,), "int64", "shift")
    return C.epilogue_requant(acc, bias_corr, mult, shift, epi.zero_point, epi.lo, epi.hi), [mult, shift]


def conv2d_kernel(name: str, kind: str, w_bits: int, a_bits: int, in_shape, weight_shape, params: ConvParams,
                  zero_point: int, epi: Epilogue, weight_data_shape, schedule: bool = True, target=None,
                  config: KernelConfig | None = None, database=None):
    """Shape-specialized conv2d kernel (grouped and depthwise included).

    Without ``target``: the reference-layout kernel with the default CPU schedule. With a ``target``: the fast
    kernel of that target family (:func:`conv2d_config` picks the knobs: ``config``, else the tuning database's,
    else the family's defaults); its weights must then be laid out by :func:`conv2d_weight_data` with the same
    config.
    """
    if target is not None:
        work = conv_workload(kind, w_bits, a_bits, in_shape, weight_shape, params)
        config = config or conv2d_config(work, target, database)
        return _finish(fast_conv2d(work, zero_point, epi, weight_data_shape, config, target, schedule), name)
    oc, cg, kh, kw = weight_shape
    n, c, h, w = in_shape
    geom = C.ConvGeom(kh, kw, params.strides[0], params.strides[1], params.padding[0], params.padding[1],
                      params.dilation[0], params.dilation[1], params.groups)
    out_hw = params.output_hw(h, w, kh, kw)
    codes = te.placeholder(tuple(in_shape), "uint8", "codes")
    bias_corr = te.placeholder((oc,), "int32", "bias_corr")
    if kind == "bitserial":
        planes = te.placeholder(tuple(weight_data_shape), "uint32", "weight_planes")
        coef_np, offset = plane_coefficients(w_bits)
        coef = te.placeholder(coef_np.shape, "int32", "plane_coef")
        apack = C.bitserial_pack_conv(codes, geom, a_bits, out_hw, zero_point)
        asum = C.window_sum_conv(codes, geom, out_hw, zero_point) if offset else None
        acc = C.bitserial_conv_acc(apack, planes, coef, oc, params.groups, asum, offset or None)
        weights = [planes, coef]
    else:
        packed = te.placeholder(tuple(weight_data_shape), "uint8", "packed_weights")
        acc = C.packed_conv_acc(codes, packed, w_bits, geom, oc, out_hw, zero_point)
        weights = [packed]
    out, extra = _epilogue(acc, oc, epi, bias_corr)
    args = [codes, *weights] + ([bias_corr] if epi.kind != "acc" else []) + extra + [out]
    func = te.create_prim_func(args)
    if schedule:
        func = schedule_default(func)
    return _finish(func, name)


def dense_kernel(name: str, kind: str, w_bits: int, a_bits: int, in_shape, out_features: int, epi: Epilogue,
                 weight_data_shape, schedule: bool = True, target=None, config: KernelConfig | None = None,
                 database=None):
    """Shape-specialized dense kernel: ``[N, K]`` codes times ``[OC, K]`` integer weights.

    Without ``target``: the reference-layout kernel with the default CPU schedule. With a ``target``: the fast
    kernel (:func:`fast_dense`) with ``config``, else the tuning database's, else the defaults; its weights must then
    be laid out by :func:`dense_weight_data` with the same config.
    """
    if target is not None:
        work = dense_workload(kind, w_bits, a_bits, in_shape, (out_features, in_shape[1]))
        config = config or conv2d_config(work, target, database)
        return _finish(fast_dense(work, epi, weight_data_shape, config, target, schedule), name)
    codes = te.placeholder(tuple(in_shape), "uint8", "codes")
    bias_corr = te.placeholder((out_features,), "int32", "bias_corr")
    if kind == "bitserial":
        planes = te.placeholder(tuple(weight_data_shape), "uint32", "weight_planes")
        coef_np, offset = plane_coefficients(w_bits)
        coef = te.placeholder(coef_np.shape, "int32", "plane_coef")
        apack = C.bitserial_pack_dense(codes, a_bits)
        acc = C.bitserial_dense_acc(apack, planes, coef, codes if offset else None, offset or None)
        weights = [planes, coef]
    else:
        packed = te.placeholder(tuple(weight_data_shape), "uint8", "packed_weights")
        acc = C.packed_dense_acc(codes, packed, w_bits)
        weights = [packed]
    out, extra = _epilogue(acc, out_features, epi, bias_corr)
    args = [codes, *weights] + ([bias_corr] if epi.kind != "acc" else []) + extra + [out]
    func = te.create_prim_func(args)
    if schedule:
        func = schedule_default(func)
    return _finish(func, name)


def quantize_kernel(name: str, shape, inv_scale: float, zero_point: int, qmax: int, schedule: bool = True,
                    llvm: bool = False):
    """The float -> uint8 codes kernel of a layer's input; ``llvm``: built by LLVM (a rounding it vectorizes)."""
    x = te.placeholder(tuple(shape), "float32", "x")
    q = C.quantize(x, float(np.float32(inv_scale)), zero_point, qmax, llvm=llvm)
    func = te.create_prim_func([x, q])
    if schedule:
        func = _schedule_quantize(func, int(np.prod(shape)))
    return _finish(func, name)


#: The quantize kernel runs its elements as one flat loop of this many unrolled vectors of 16 floats, where they
#: divide the size (the kernel's input and output are both contiguous). Zen 4, one thread, us, the default
#: schedule's rows -> flat: (1, 144, 56, 56) 42.8 -> 34.7, (1, 64, 56, 56) 18.6 -> 15.7, (1, 384, 14, 14)
#: 9.6 -> 5.6, (1, 96, 14, 14) 2.2 -> 1.4, (1, 3, 224, 224) 11.5 -> 11.7.
QUANTIZE_UNROLL = 4
QUANTIZE_LANES = 16


def _schedule_quantize(func, size: int):
    step = QUANTIZE_UNROLL * QUANTIZE_LANES
    if size % step:
        return schedule_default(func)
    sch = _tvm.schedule(func)
    block = sch.get_sblock("quantize")
    outer, unroll, vec = sch.split(sch.fuse(*sch.get_loops(block)), [None, QUANTIZE_UNROLL, QUANTIZE_LANES])
    sch.unroll(unroll)
    sch.vectorize(vec)
    if size >= PARALLEL_MIN_ELEMENTS:
        sch.parallel(outer)
    return sch.mod["main"]


def _var(name: str):
    return tirx.Var(name, "int32")


def generic_conv2d_kernel(kind: str, w_bits: int):
    """Shape-generic conv2d accumulator kernel.

    Arguments: ``codes[N,C,H,W] uint8, weights, [plane_coef,] acc[N,OC,OH,OW] int32`` followed by the int32
    scalars ``KH, KW, SH, SW, PT, PL, PB, PR, DH, DW, G, A_BITS, ZP`` and, for bit-serial, ``W_OFFSET``.
    The bit-serial kernel serves every ``w_bits`` (planes and coefficients are run-time data); the packed one is
    specialized on ``w_bits`` (its unpacking is compiled in).
    """
    names = "KH KW SH SW PT PL PB PR DH DW G A_BITS ZP".split()
    kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, g, a_bits, zp = scalars = [_var(n) for n in names]
    n, c, h, w, oc = (_var(x) for x in ("N", "C", "H", "W", "OC"))
    geom = C.ConvGeom(kh, kw, sh, sw, pt, pl, dh, dw, g)
    out_hw = geom.out_hw(h, w, pb, pr)
    codes = te.placeholder((n, c, h, w), "uint8", "codes")
    if kind == "bitserial":
        planes = te.placeholder((oc, _var("WP"), _var("WORDS")), "uint32", "weight_planes")
        coef = te.placeholder((planes.shape[1],), "int32", "plane_coef")
        woff = _var("W_OFFSET")
        apack = C.bitserial_pack_conv(codes, geom, a_bits, out_hw, zp)
        asum = C.window_sum_conv(codes, geom, out_hw, zp)
        acc = C.bitserial_conv_acc(apack, planes, coef, oc, g, asum, woff)
        args = [codes, planes, coef, acc, *scalars, woff]
    else:
        packed = te.placeholder((oc, _var("RB")), "uint8", "packed_weights")
        acc = C.packed_conv_acc(codes, packed, w_bits, geom, oc, out_hw, zp)
        args = [codes, packed, acc, *scalars]
    return _finish(te.create_prim_func(args), "main")


def generic_dense_kernel(kind: str, w_bits: int):
    """Shape-generic dense accumulator kernel; scalars ``A_BITS`` and, for bit-serial, ``W_OFFSET`` follow."""
    n, k, oc = _var("N"), _var("K"), _var("OC")
    a_bits = _var("A_BITS")
    codes = te.placeholder((n, k), "uint8", "codes")
    if kind == "bitserial":
        planes = te.placeholder((oc, _var("WP"), _var("WORDS")), "uint32", "weight_planes")
        coef = te.placeholder((planes.shape[1],), "int32", "plane_coef")
        woff = _var("W_OFFSET")
        acc = C.bitserial_dense_acc(C.bitserial_pack_dense(codes, a_bits), planes, coef, codes, woff)
        args = [codes, planes, coef, acc, a_bits, woff]
    else:
        packed = te.placeholder((oc, _var("RB")), "uint8", "packed_weights")
        acc = C.packed_dense_acc(codes, packed, w_bits)
        args = [codes, packed, acc, a_bits]
    return _finish(te.create_prim_func(args), "main")


# ------------------------------------------------------------------------------------------------------------------
# Fast kernels (target-specific schedules, see registry.py / tiled.py)
# ------------------------------------------------------------------------------------------------------------------


def conv_workload(kind, w_bits, a_bits, in_shape, weight_shape, params) -> ConvWorkload:
    in_shape, weight_shape = tuple(in_shape), tuple(weight_shape)
    dw = weight_shape[1] == 1 and params.groups == in_shape[1] and params.groups > 1
    return ConvWorkload("depthwise_conv2d" if dw else "conv2d", kind, int(w_bits), int(a_bits), in_shape,
                        weight_shape, params)


def config_for(work: ConvWorkload, target, database=None) -> tuple[KernelConfig, str]:
    """The knobs a build uses for ``work`` on ``target`` and where they came from: the tuning database's entry
    (``database``: see :func:`tvm_mp.schedules.tuning.resolve`; None reads the user database, then the shipped
    one), else the schedule's defaults (source ``"default"``)."""
    from . import tuning

    target = parse(target).tvm_target
    db = tuning.resolve(database)
    if db is not False:
        found, source = db.lookup(work, target)
        if found is not None and legal(found, work):
            return found, source
    return lookup(work.op, work.kind, target).default(work, target), tuning.DEFAULT


def conv2d_config(work: ConvWorkload, target, database=None) -> KernelConfig:
    """The knobs a build uses: the tuning database's entry for ``work`` on ``target``, else the defaults (any op:
    conv2d, depthwise_conv2d and dense workloads alike)."""
    return config_for(work, target, database)[0]


def dense_workload(kind, w_bits, a_bits, in_shape, weight_shape) -> ConvWorkload:
    return ConvWorkload("dense", kind, int(w_bits), int(a_bits), tuple(in_shape), tuple(weight_shape))


def dense_vector_width(work: ConvWorkload, config: KernelConfig) -> int:
    """Partial sums per output feature of the fast dense kernel: the config's lanes, fewer for a short reduction
    (its K codes, or its ``ceil(K/32)`` words for bit-serial)."""
    k = work.weight_shape[1]
    length = -(-k // C.WORD_BITS) if work.kind == "bitserial" else k
    return min(config.lanes, _pow2_at_least(length))


def dense_dot(work: ConvWorkload, config: KernelConfig | None) -> bool:
    """Whether the fast dense kernel of ``config`` is the dot form (:func:`computes.dense_dot_acc`): packed weights
    of one byte each (5-8 bits) with ``use_dot``."""
    return config is not None and config.use_dot and one_byte_weights(work)


def weight_data(work: ConvWorkload, w_q: np.ndarray, config: KernelConfig | None) -> list[np.ndarray]:
    """The weight constants of ``work``'s kernel in the layout ``config`` reads (conv or dense)."""
    if work.op != "dense":
        return conv2d_weight_data(work.kind, w_q, work.w_bits, config)
    return dense_weight_data(work, w_q, config)


def dense_weight_data(work: ConvWorkload, w_q: np.ndarray, config: KernelConfig | None) -> list[np.ndarray]:
    """Dense weights: the storage formats as they are without a config; with one, bit-planes padded with zero words
    to a multiple of the vector width, or the blocked packing of :func:`blocked_pack`."""
    w_q = np.asarray(w_q)
    if work.kind == "bitserial":
        planes = weight_bitplanes(w_q, work.w_bits)
        if config is not None:
            words = C.ceil_to(planes.shape[2], dense_vector_width(work, config))
            planes = np.pad(planes, ((0, 0), (0, 0), (0, words - planes.shape[2])))
        return [planes, plane_coefficients(work.w_bits)[0]]
    if config is None:
        return [pack_dense(w_q, work.w_bits)]
    if dense_dot(work, config):  # blocked by vectors of output features, codes in quads (computes.dense_dot_acc)
        oc, k = w_q.shape
        ocp, kp = C.ceil_to(oc, config.lanes), C.ceil_to(k, 4)
        w = np.zeros((ocp, kp), dtype=np.int8)
        w[:oc, :k] = w_q
        blocks = w.reshape(ocp // config.lanes, config.lanes, kp // 4, 4).transpose(0, 2, 1, 3)
        return [np.ascontiguousarray(blocks).reshape(ocp // config.lanes, kp // 4, config.lanes * 4).view(np.uint8)]
    if container_bits(work.w_bits) == 8:  # read in place: zero weights up to the vector length
        k = w_q.shape[1]
        return [pack_dense(np.pad(w_q, ((0, 0), (0, C.ceil_to(k, dense_vector_width(work, config)) - k))),
                           work.w_bits)]
    return [blocked_pack(w_q, work.w_bits)]


def conv2d_weight_data(kind: str, w_q: np.ndarray, w_bits: int, config: KernelConfig | None) -> list[np.ndarray]:
    """The weight constants of a conv kernel in the layout its ``config`` reads.

    ``im2col`` / ``depthwise`` / no config: the storage formats of :mod:`tvm_mp.quantize.packing` as they are.
    ``direct``: the same formats over the reduction order (ky, kx, c), channels zero-padded to a multiple of 4
    (packed) or 32 (bit-planes) so each tap starts a new byte quad / word.
    """
    if config is not None and config.algorithm in ("direct", "direct64"):
        oc, cg, kh, kw = w_q.shape
        mult = 4 if kind == "packed" else 2 * C.WORD_BITS if config.algorithm == "direct64" else C.WORD_BITS
        cpad = C.ceil_to(cg, mult)
        w = np.zeros((oc, kh, kw, cpad), dtype=w_q.dtype)
        w[..., :cg] = np.transpose(w_q, (0, 2, 3, 1))
        if kind == "bitserial" and w_bits == 1:
            # padded channels must contribute 0: store them as weight +1 over activation bits that are 0
            w[..., cg:] = 1
        w_q = w
    if kind == "bitserial":
        return [weight_bitplanes(w_q, w_bits), plane_coefficients(w_bits)[0]]
    if config is None:
        return [pack_dense(w_q, w_bits)]
    return [blocked_pack(w_q, w_bits)]


def blocked_pack(w_q: np.ndarray, w_bits: int) -> np.ndarray:
    """Dense packing in the blocked byte order the fast kernels unpack (see ``computes.unpack_weights``)."""
    rows = np.asarray(w_q).reshape(w_q.shape[0], -1)
    per = 8 // container_bits(w_bits)
    if per == 1:
        return pack_dense(rows, w_bits)
    block = C.PACK_BLOCK * per
    r = rows.shape[1]
    fill = 1 if w_bits == 1 else 0  # any valid weight: past R the kernel reads nothing from these
    padded = np.full((rows.shape[0], C.ceil_to(r, block)), fill, dtype=rows.dtype)
    padded[:, :r] = rows
    nblk = padded.shape[1] // block
    order = padded.reshape(rows.shape[0], nblk, per, C.PACK_BLOCK).transpose(0, 1, 3, 2).reshape(rows.shape[0], -1)
    return pack_dense(order, w_bits)


#: The depthwise window form's padded plane rows are a multiple of this many bytes where they are narrow.
WINDOW_ROW_BYTES = 16


def fast_conv2d(work: ConvWorkload, zero_point: int, epi: Epilogue, weight_data_shape, config: KernelConfig,
                target, schedule: bool = True):
    """The fast conv2d PrimFunc of ``config`` (arguments as :func:`conv2d_kernel`)."""
    from . import arm_cpu, registry, tiled, x86

    n, c, h, w = work.in_shape
    oc, cg, kh, kw = work.weight_shape
    params = work.params
    if not registry.legal(config, work):
        raise UnsupportedError(f"kernel algorithm {config.algorithm!r} cannot compute {work.key()}")
    geom = C.ConvGeom(kh, kw, params.strides[0], params.strides[1], params.padding[0], params.padding[1],
                      params.dilation[0], params.dilation[1], params.groups)
    oh, ow = work.out_hw
    tvm_target = parse(target).tvm_target
    codes = te.placeholder((n, c, h, w), "uint8", "codes")
    bias_corr = te.placeholder((oc,), "int32", "bias_corr")
    hints: dict = {"bitserial": work.kind == "bitserial"}
    if work.kind == "bitserial":
        planes = te.placeholder(tuple(weight_data_shape), "uint32", "weight_planes")
        coef = te.placeholder((len(plane_coefficients(work.w_bits)[0]),), "int32", "plane_coef")
        weights = [planes, coef]
    else:
        packed = te.placeholder(tuple(weight_data_shape), "uint8", "packed_weights")
        weights = [packed]
    lanes = config.lanes
    if config.algorithm == "direct64":
        if work.kind != "bitserial":
            raise UnsupportedError(f"kernel algorithm 'direct64' cannot compute {work.key()}")
        fp = C.flat_plane((h, w), (kh, kw), params.padding, params.dilation, lanes, params.strides)
        hints["flat_row"] = fp.wq
        bits = C.plane_bits(C.flat_padded(codes, fp, zero_point), work.a_bits)
        cw64 = -(-int(bits.shape[2]) // 2)
        acc = C.bitplane_direct_acc(C.words64(bits, cw64), C.weight_words64(planes, kh * kw, cw64),
                                    work.w_bits, fp, oc, "int64")
        acc4 = C.crop_flat(acc, oh, ow, fp.wq)
        hints["dense_acc_rows"] = fp.wq == ow  # the epilogue reads the accumulator without a gather
    elif config.algorithm == "direct":
        fp = C.flat_plane((h, w), (kh, kw), params.padding, params.dilation, lanes, params.strides)
        padded = C.flat_padded(codes, fp, zero_point)
        hints["flat_row"] = fp.wq
        hints["is_codes"] = fp.is_codes  # (tiled.schedule reads the codes straight)
        if work.kind == "packed":
            quads = C.quad_words(padded)
            wk = C.unpack_weights(packed, work.w_bits, oc, kh * kw * int(quads.shape[1]) * 4)
            hints["pack_per"] = 8 // container_bits(work.w_bits)
            acc = C.direct_dot_acc(quads, wk, fp, oc)
            hints["dot_ok"] = True
        else:
            acc = C.bitplane_direct_acc(C.plane_bits(padded, work.a_bits, fp.is_codes), planes, work.w_bits, fp, oc)
        acc4 = C.crop_flat(acc, oh, ow, fp.wq)
        hints["dense_acc_rows"] = fp.wq == ow
    elif config.algorithm == "im2col":
        padded = C.pad_plane(codes, geom, params.padding[2], params.padding[3], zero_point)
        hints["pad_cols"] = (params.padding[1], w)
        if work.kind == "packed":
            cols = C.im2col_words(padded, geom, (oh, ow), lanes)
            wk = C.unpack_weights(packed, work.w_bits, oc, int(cols.shape[2]) * 4)
            hints["pack_per"] = 8 // container_bits(work.w_bits)
            acc = C.gemm_dot_acc(cols, wk, oc)
            hints["dot_ok"] = True
        else:
            if work.a_bits > 1:  # im2col codes once, then each activation plane (schedule: tiled._window_pack)
                apack = C.window_bits(C.window_codes(padded, geom, (oh, ow), lanes), work.a_bits, cg * kh * kw)
            else:
                apack = C.plane_window_bits(padded, geom, work.a_bits, (oh, ow), lanes)
            acc = C.window_bits_acc(apack, planes, work.w_bits, oc)
        acc4 = C.crop_flat(acc, oh, ow, ow)
        hints["dense_acc_rows"] = True
    elif config.algorithm == "depthwise" and window_dot(work, config, tvm_target):
        vec = C.window_lanes(ow, lanes)
        owp = C.ceil_to(ow, vec)
        sw, dw = params.strides[1], params.dilation[1]
        nq = -(-kw // 4)
        need_w = (owp - 1) * sw + (4 * nq - 1) * dw + 1
        wp = max(need_w, w + params.padding[1] + params.padding[3])
        if w < tiled.PAD_SPLIT_MIN_COLS:
            # narrow rows padded to whole 16-byte vectors: the row copy is one masked vector, not a 19-byte
            # select; w8a8, one thread, float / requantizing epilogue: 384 ch at 14x14 24.8 -> 21.0 / 38.1 ->
            # 33.2 us, 960 ch at 7x7 20.9 -> 18.8 / 27.4 -> 26.2
            wp = C.ceil_to(wp, WINDOW_ROW_BYTES)
        # the last vector load reads 4 * vec codes from its window's start: rows below the plane hold its overrun
        overrun = sw * (owp - vec) + 4 * (nq - 1) * dw + 4 * vec - wp
        rows = (oh - 1) * params.strides[0] + (kh - 1) * params.dilation[0] + 1 + max(0, -(-overrun // wp))
        extra_h = max(0, rows - (h + params.padding[0] + params.padding[2]))
        padded = C.pad_plane(codes, geom, params.padding[2] + extra_h, wp - w - params.padding[1], zero_point)
        hints["pad_cols"] = (params.padding[1], w)
        wk = _depthwise_weights(work, weights[0], oc, kh * kw, hints)
        acc = C.depthwise_window_acc(padded, C.window_weights(wk, kh, kw), geom, oc, (oh, owp))
        acc4 = te.compute((n, oc, oh, ow), lambda a, b, y, x: acc[a, b, y, x], name="crop")
        hints["window_dot"] = (vec, sw, dw)  # (the epilogue runs on each row from the registers)
    elif config.algorithm == "depthwise":
        owp = C.depthwise_row_pitch(ow, params.strides, lanes)
        ohp = C.depthwise_acc_rows(oh, owp, params.strides, lanes)
        sw = params.strides[1]
        need_w = (owp - 1) * sw + (kw - 1) * params.dilation[1] + 1
        wq = owp + ((kw - 1) * params.dilation[1]) // sw + 1
        split = C.deinterleave_width(wq) if sw == 2 else 0
        if split:  # the phase rows in whole shuffles (tiled: one vector load, two shuffles per 2 x split codes)
            wq = C.ceil_to(wq, split)
            hints["deinterleave"] = split
        if sw > 1:  # strided: the taps read column phases (contiguous), not every sw-th code
            need_w = max(need_w, wq * sw)
        extra = max(0, need_w - (w + params.padding[1] + params.padding[3]))
        extra_h = max(0, (ohp - 1) * params.strides[0] + (kh - 1) * params.dilation[0] + 1
                      - (h + params.padding[0] + params.padding[2]))
        padded = C.pad_plane(codes, geom, params.padding[2] + extra_h, params.padding[3] + extra, zero_point)
        hints["pad_cols"] = (params.padding[1], w)
        wk = _depthwise_weights(work, weights[0], oc, kh * kw, hints)
        if sw > 1:
            acc = C.depthwise_phased_acc(C.column_phases(padded, sw, wq), wk, geom, oc, (ohp, owp))
        else:
            acc = C.depthwise_direct_acc(padded, wk, geom, oc, (ohp, owp))
        acc4 = te.compute((n, oc, oh, ow), lambda a, b, y, x: acc[a, b, y, x], name="crop")
        hints["dense_acc_rows"] = owp == ow
    else:
        raise UnsupportedError(f"conv2d has no {config.algorithm!r} algorithm")
    out, extra_args = _epilogue(acc4, oc, epi, bias_corr)
    args = [codes, *weights] + ([bias_corr] if epi.kind != "acc" else []) + extra_args + [out]
    func = te.create_prim_func(args)
    if not schedule:
        return func
    family = registry.target_family(tvm_target)
    if "window_dot" in hints:
        intrin = (arm_cpu if family == "aarch64" else x86).window_dot_intrin(*hints["window_dot"])
    elif family == "x86_64":
        intrin = x86.dot_intrin(tvm_target, config, work)
    elif family == "aarch64":
        intrin = arm_cpu.dot_intrin(tvm_target, config, work)
    else:
        intrin = None
    return tiled.schedule(func, config, hints, intrin)


def _depthwise_weights(work: ConvWorkload, stored: te.Tensor, oc: int, taps: int, hints: dict) -> te.Tensor:
    """int8 ``[OC, taps]`` depthwise weights from their stored form: packed weights unpacked (``hints`` learns
    the packing), bit-planes of ``taps`` <= a few words decoded to integers (the depthwise kernels do integer MACs
    or dot products on them, not popcounts)."""
    if work.kind == "packed":
        hints["pack_per"] = 8 // container_bits(work.w_bits)
        return C.unpack_weights(stored, work.w_bits, oc, taps)
    return C.decode_planes(stored, work.w_bits, taps)


def window_dot(work: ConvWorkload, config: KernelConfig, target) -> bool:
    """True when the depthwise ``config`` runs the window form on ``target`` (:func:`computes.depthwise_window_acc`:
    the row's pixels in the lanes, each lane a 4-way dot of a tap quad; x86 ``vpdpbusd`` with AVX-512 VNNI, aarch64
    ``sdot`` for codes below 128): ``use_dot``, the target's dot, and each vector's tap quads within one load."""
    from . import arm_cpu, registry, x86

    if config.algorithm != "depthwise" or not config.use_dot:
        return False
    family = registry.target_family(target)
    if family == "aarch64":
        has = arm_cpu.has_window_dot(target, work) and config.lanes == 4
    else:
        has = family == "x86_64" and x86.has_window_dot(target)
    vec = C.window_lanes(work.out_hw[1], config.lanes)
    return has and C.window_dot_fits(work.params.strides[1], work.params.dilation[1], vec)


def _pow2_at_least(n: int) -> int:
    p = 1
    while p < n:
        p *= 2
    return p


def fast_dense(work: ConvWorkload, epi: Epilogue, weight_data_shape, config: KernelConfig, target,
               schedule: bool = True):
    """The fast dense PrimFunc of ``config`` (arguments as :func:`dense_kernel`): the reduction split into
    :func:`dense_vector_width` partial sums per output feature, tiled by ``oc_block`` output features; or the
    dot form (:func:`dense_dot`)."""
    from . import tiled

    if config.algorithm != "dense":
        raise UnsupportedError(f"kernel algorithm {config.algorithm!r} cannot compute {work.key()}")
    n, k = work.in_shape
    oc = work.weight_shape[0]
    vw = dense_vector_width(work, config)
    codes = te.placeholder((n, k), "uint8", "codes")
    bias_corr = te.placeholder((oc,), "int32", "bias_corr")
    dot_form = dense_dot(work, config)
    if dot_form:
        packed = te.placeholder(tuple(weight_data_shape), "uint8", "packed_weights")
        length = C.ceil_to(k, 4)
        dot = C.dense_dot_acc(codes if length == k else C.padded_codes_dense(codes, length), packed, config.lanes)
        acc = te.compute((n, oc), lambda a, o: dot[a, o], name="dense_acc")
        weights = [packed]
    elif work.kind == "bitserial":
        planes = te.placeholder(tuple(weight_data_shape), "uint32", "weight_planes")
        coef_np, offset = plane_coefficients(work.w_bits)
        coef = te.placeholder(coef_np.shape, "int32", "plane_coef")
        apack = C.bitserial_pack_dense(codes, work.a_bits, int(weight_data_shape[2]))
        part = C.bitserial_dense_partial_acc(apack, planes, coef, vw)
        acc = C.sum_partials(part, codes if offset else None, offset or None)
        weights = [planes, coef]
    else:
        packed = te.placeholder(tuple(weight_data_shape), "uint8", "packed_weights")
        length = C.ceil_to(k, vw)
        padded = codes if length == k else C.padded_codes_dense(codes, length)
        if container_bits(work.w_bits) == 8:  # one weight per byte, zero-padded to the length: read in place
            def weight(o, r):
                return packed[o, r].astype("int8")
        else:
            wk = C.unpack_weights(packed, work.w_bits, oc, length)

            def weight(o, r):
                return wk[o, r]
        part = C.dense_partial_acc(padded, weight, oc, vw)
        acc = C.sum_partials(part)
        weights = [packed]
    out, extra_args = _epilogue(acc, oc, epi, bias_corr)
    args = [codes, *weights] + ([bias_corr] if epi.kind != "acc" else []) + extra_args + [out]
    func = te.create_prim_func(args)
    if not schedule:
        return func
    if dot_form:
        from . import x86

        return tiled.schedule_dense_dot(func, config, x86.dense_dot_intrin(parse(target).tvm_target, config))
    return tiled.schedule_dense(func, config, vw, 8 // container_bits(work.w_bits))
