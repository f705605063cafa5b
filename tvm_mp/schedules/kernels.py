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

from ..quantize.packing import plane_coefficients
from ..workload import ConvParams
from . import computes as C
from .cpu import schedule_default

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
                  zero_point: int, epi: Epilogue, weight_data_shape, schedule: bool = True):
    """Shape-specialized conv2d kernel (grouped and depthwise included)."""
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
                 weight_data_shape, schedule: bool = True):
    """Shape-specialized dense kernel: ``[N, K]`` codes times ``[OC, K]`` integer weights."""
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


def quantize_kernel(name: str, shape, inv_scale: float, zero_point: int, qmax: int, schedule: bool = True):
    x = te.placeholder(tuple(shape), "float32", "x")
    q = C.quantize(x, float(np.float32(inv_scale)), zero_point, qmax)
    func = te.create_prim_func([x, q])
    if schedule:
        func = schedule_default(func)
    return _finish(func, name)


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
