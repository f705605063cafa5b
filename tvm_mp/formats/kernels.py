"""Kernel factories of the float-format and clustered layers: TE computes turned into named PrimFuncs.

Arguments, in order (the output last, as ``call_tir`` wants):

* float conv2d / dense:      ``x float32, weights [OC, R] (storage dtype), bias float32[OC], out float32``
* clustered conv2d / dense:  ``codes uint8, packed_indices uint32[W], centroids int8[K], bias_corr int32[OC],
  <epilogue params>, out`` -- the epilogue is the integer one of :mod:`tvm_mp.schedules.kernels` (``float``:
  ``scale float32[OC]``; ``requant``: ``mult int64[OC], shift int64[OC]``; ``acc``: none, and no bias_corr).

The schedule (:func:`schedule_outer_parallel`) only parallelizes outer spatial loops: it never splits, reorders or
vectorizes a reduction, so the float sums keep their sequential order and match the NumPy reference bit for bit.
Shape-generic kernels (sizes and conv geometry symbolic; the format compiled in) serve the tests.
"""

from __future__ import annotations

import numpy as np
from tvm import te, tirx

from .. import _tvm
from ..precision import index_bits
from ..quantize.clustering import ClusteredWeights
from ..quantize.floats import FloatFormat, storage
from ..schedules import computes as integer_computes
from ..schedules.kernels import Epilogue
from ..workload import ConvParams
from . import computes as C

#: Marks a PrimFunc opaque to Relax's operator fusion, so its float arithmetic is never merged with another op's.
OPAQUE_PATTERN = 8

__all__ = ["Epilogue", "float_weight_storage", "clustered_weight_storage", "float_conv2d_kernel",
           "float_dense_kernel", "clustered_conv2d_kernel", "clustered_dense_kernel", "generic_float_conv2d_kernel",
           "generic_float_dense_kernel", "generic_clustered_conv2d_kernel", "generic_clustered_dense_kernel"]


def schedule_outer_parallel(func):
    """Parallelize the (up to two, fused) outer spatial loops of every block; reductions stay as written."""
    sch = _tvm.schedule(func)
    try:
        root = _tvm.get_block(sch, "root")
    except Exception:  # no root block: nothing to schedule
        return func
    for block in sch.get_child_blocks(root):
        loops = sch.get_loops(block)
        n_spatial, _ = _tvm.leading_spatial_iters(sch, block)
        if n_spatial == 0 or not loops:
            continue
        outer = sch.fuse(*loops[:2]) if n_spatial >= 2 else loops[0]
        sch.parallel(outer)
    return sch.mod["main"]


def _finish(func, name: str, schedule: bool):
    if schedule:
        func = schedule_outer_parallel(func)
    return func.with_attr("global_symbol", name).with_attr("op_pattern", OPAQUE_PATTERN)


def _geom(params: ConvParams, kh: int, kw: int) -> C.ConvGeom:
    return C.ConvGeom(kh, kw, params.strides[0], params.strides[1], params.padding[0], params.padding[1],
                      params.dilation[0], params.dilation[1], params.groups)


# ------------------------------------------------------------------------------------------------------------------
# Weight storage
# ------------------------------------------------------------------------------------------------------------------


def float_weight_storage(weight: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """``[OC, R]`` weights rounded to ``fmt`` in its storage dtype (``weight`` OIHW or ``[OC, K]``)."""
    w = np.asarray(weight, dtype=np.float32)
    return np.ascontiguousarray(storage(w.reshape(w.shape[0], -1), fmt))


def clustered_weight_storage(cw: ClusteredWeights) -> list[np.ndarray]:
    """``[packed indices uint32, centroids int8[K]]``."""
    return [cw.packed_indices(), cw.table_centroids]


# ------------------------------------------------------------------------------------------------------------------
# Shape-specialized kernels (compiled models)
# ------------------------------------------------------------------------------------------------------------------


def float_conv2d_kernel(name: str, fmt: FloatFormat, in_shape, weight_shape, params: ConvParams, lo=None, hi=None,
                        schedule: bool = True):
    oc, cg, kh, kw = (int(v) for v in weight_shape)
    n, c, h, w = (int(v) for v in in_shape)
    x = te.placeholder((n, c, h, w), "float32", "x")
    weights = te.placeholder((oc, cg * kh * kw), fmt.storage_dtype, "weights")
    bias = te.placeholder((oc,), "float32", "bias")
    out = C.float_conv2d(x, weights, bias, fmt, _geom(params, kh, kw), oc, params.output_hw(h, w, kh, kw), lo, hi)
    return _finish(te.create_prim_func([x, weights, bias, out]), name, schedule)


def float_dense_kernel(name: str, fmt: FloatFormat, in_shape, out_features: int, lo=None, hi=None,
                       schedule: bool = True):
    n, k = (int(v) for v in in_shape)
    x = te.placeholder((n, k), "float32", "x")
    weights = te.placeholder((int(out_features), k), fmt.storage_dtype, "weights")
    bias = te.placeholder((int(out_features),), "float32", "bias")
    out = C.float_dense(x, weights, bias, fmt, lo, hi)
    return _finish(te.create_prim_func([x, weights, bias, out]), name, schedule)


def _epilogue(acc, oc, epi: Epilogue):
    if epi.kind == "acc":
        return acc, []
    bias_corr = te.placeholder((oc,), "int32", "bias_corr")
    if epi.kind == "float":
        scale = te.placeholder((oc,), "float32", "scale")
        return integer_computes.epilogue_float(acc, bias_corr, scale, epi.lo, epi.hi), [bias_corr, scale]
    mult = te.placeholder((oc,), "int64", "mult")
    shift = te.placeholder((oc,), "int64", "shift")
    out = integer_computes.epilogue_requant(acc, bias_corr, mult, shift, epi.zero_point, epi.lo, epi.hi)
    return out, [bias_corr, mult, shift]


def clustered_conv2d_kernel(name: str, clusters: int, a_bits: int, in_shape, weight_shape, params: ConvParams,
                            zero_point: int, epi: Epilogue, n_words: int, schedule: bool = True):
    oc, cg, kh, kw = (int(v) for v in weight_shape)
    n, c, h, w = (int(v) for v in in_shape)
    codes = te.placeholder((n, c, h, w), "uint8", "codes")
    packed = te.placeholder((int(n_words),), "uint32", "packed_indices")
    centroids = te.placeholder((int(clusters),), "int8", "centroids")
    acc = C.clustered_conv2d_acc(codes, packed, centroids, index_bits(clusters), a_bits, _geom(params, kh, kw), oc,
                                 params.output_hw(h, w, kh, kw), zero_point)
    out, extra = _epilogue(acc, oc, epi)
    return _finish(te.create_prim_func([codes, packed, centroids, *extra, out]), name, schedule)


def clustered_dense_kernel(name: str, clusters: int, a_bits: int, in_shape, out_features: int, epi: Epilogue,
                           n_words: int, schedule: bool = True):
    n, k = (int(v) for v in in_shape)
    codes = te.placeholder((n, k), "uint8", "codes")
    packed = te.placeholder((int(n_words),), "uint32", "packed_indices")
    centroids = te.placeholder((int(clusters),), "int8", "centroids")
    acc = C.clustered_dense_acc(codes, packed, centroids, index_bits(clusters), a_bits, int(out_features))
    out, extra = _epilogue(acc, int(out_features), epi)
    return _finish(te.create_prim_func([codes, packed, centroids, *extra, out]), name, schedule)


# ------------------------------------------------------------------------------------------------------------------
# Shape-generic kernels (tests): every size and conv parameter symbolic
# ------------------------------------------------------------------------------------------------------------------

CONV_SCALARS = "KH KW SH SW PT PL PB PR DH DW G".split()


def _var(name: str):
    return tirx.Var(name, "int32")


def _generic_geom():
    scalars = [_var(s) for s in CONV_SCALARS]
    kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, g = scalars
    return C.ConvGeom(kh, kw, sh, sw, pt, pl, dh, dw, g), pb, pr, scalars


def generic_float_conv2d_kernel(fmt: FloatFormat, schedule: bool = False):
    """``x[N,C,H,W] f32, weights[OC,RW] (storage), bias[OC] f32, out`` then int32 ``KH KW SH SW PT PL PB PR DH DW
    G`` (RW must equal C/G*KH*KW)."""
    geom, pb, pr, scalars = _generic_geom()
    n, c, h, w, oc = (_var(s) for s in ("N", "C", "H", "W", "OC"))
    x = te.placeholder((n, c, h, w), "float32", "x")
    weights = te.placeholder((oc, _var("RW")), fmt.storage_dtype, "weights")
    bias = te.placeholder((oc,), "float32", "bias")
    out = C.float_conv2d(x, weights, bias, fmt, geom, oc, geom.out_hw(h, w, pb, pr))
    return _finish(te.create_prim_func([x, weights, bias, out, *scalars]), "main", schedule)


def generic_float_dense_kernel(fmt: FloatFormat, schedule: bool = False):
    n, k, oc = _var("N"), _var("K"), _var("OC")
    x = te.placeholder((n, k), "float32", "x")
    weights = te.placeholder((oc, k), fmt.storage_dtype, "weights")
    bias = te.placeholder((oc,), "float32", "bias")
    out = C.float_dense(x, weights, bias, fmt)
    return _finish(te.create_prim_func([x, weights, bias, out]), "main", schedule)


def generic_clustered_conv2d_kernel(schedule: bool = False):
    """``codes, packed[W], centroids[K], acc int32`` then int32 ``KH KW SH SW PT PL PB PR DH DW G BITS A_BITS
    ZP``."""
    geom, pb, pr, scalars = _generic_geom()
    bits, a_bits, zp = _var("BITS"), _var("A_BITS"), _var("ZP")
    n, c, h, w, oc = (_var(s) for s in ("N", "C", "H", "W", "OC"))
    codes = te.placeholder((n, c, h, w), "uint8", "codes")
    packed = te.placeholder((_var("WORDS"),), "uint32", "packed_indices")
    centroids = te.placeholder((_var("K"),), "int8", "centroids")
    acc = C.clustered_conv2d_acc(codes, packed, centroids, bits, a_bits, geom, oc, geom.out_hw(h, w, pb, pr), zp)
    return _finish(te.create_prim_func([codes, packed, centroids, acc, *scalars, bits, a_bits, zp]), "main",
                   schedule)


def generic_clustered_dense_kernel(schedule: bool = False):
    """``codes[N,K], packed[W], centroids[K], acc int32`` then int32 ``BITS A_BITS``."""
    bits, a_bits = _var("BITS"), _var("A_BITS")
    n, k, oc = _var("N"), _var("KD"), _var("OC")
    codes = te.placeholder((n, k), "uint8", "codes")
    packed = te.placeholder((_var("WORDS"),), "uint32", "packed_indices")
    centroids = te.placeholder((_var("K"),), "int8", "centroids")
    acc = C.clustered_dense_acc(codes, packed, centroids, bits, a_bits, oc)
    return _finish(te.create_prim_func([codes, packed, centroids, acc, bits, a_bits]), "main", schedule)
