"""What RewriteMixedPrecision and the report need of a float-format or clustered layer: its weight constants, its
kernel, its stored bytes and a word on how its arithmetic runs on the target.

Kept here so the pass and ``compile.py`` only dispatch (one ``if`` each) and the formats stay in one package.
"""

from __future__ import annotations

import numpy as np

from ..errors import UnsupportedError
from ..quantize.floats import FloatFormat
from ..quantize.qlayer import QuantLayer
from ..schedules.kernels import Epilogue
from . import kernels


def is_format_layer(layer: QuantLayer) -> bool:
    """True for float-format and clustered layers (the kinds this package compiles)."""
    return layer.precision.kind in ("float", "clustered")


def weight_storage(layer: QuantLayer) -> list[np.ndarray]:
    """The weight constants of the layer's kernel: float formats ``[weights [OC, R] in the storage dtype]``;
    clustered ``[packed indices uint32, centroids int8[K]]``."""
    if layer.precision.kind == "float":
        return [kernels.float_weight_storage(layer.w_float, FloatFormat.of(layer.precision))]
    if layer.precision.kind == "clustered":
        return kernels.clustered_weight_storage(layer.clustered)
    raise UnsupportedError(f"layer {layer.name!r} is an integer layer ({layer.precision}): use the integer kernels")


def storage_bytes(layer: QuantLayer) -> int:
    """Bytes of every weight constant of the layer as stored in the artifact."""
    return int(sum(a.nbytes for a in weight_storage(layer)))


def float_bias(layer: QuantLayer) -> np.ndarray:
    """The float32 bias a float-format kernel adds (zeros when the layer has none: adding +0 changes nothing)."""
    oc = layer.info.out_channels
    return np.zeros(oc, np.float32) if layer.bias is None else np.asarray(layer.bias, np.float32).reshape(oc)


def layer_kernel(layer: QuantLayer, epi: Epilogue, storage: list[np.ndarray], schedule: bool = True):
    """The PrimFunc of a float-format layer (``epi`` gives only the clamp) or a clustered layer (any epilogue)."""
    prec, info = layer.precision, layer.info
    name = f"tvm_mp_{info.name}_kernel"
    if prec.kind == "float":
        fmt = FloatFormat.of(prec)
        if info.op == "dense":
            return kernels.float_dense_kernel(name, fmt, info.input_shape, info.out_channels, epi.lo, epi.hi,
                                              schedule)
        return kernels.float_conv2d_kernel(name, fmt, info.input_shape, info.weight_shape, info.params, epi.lo,
                                           epi.hi, schedule)
    if prec.kind == "clustered":
        words = int(storage[0].shape[0])
        if info.op == "dense":
            return kernels.clustered_dense_kernel(name, prec.clusters, prec.a_bits, info.input_shape,
                                                  info.out_channels, epi, words, schedule)
        return kernels.clustered_conv2d_kernel(name, prec.clusters, prec.a_bits, info.input_shape,
                                               info.weight_shape, info.params, layer.require_act().zero_point, epi,
                                               words, schedule)
    raise UnsupportedError(f"layer {layer.name!r} is an integer layer ({layer.precision}): use the integer kernels")


def arithmetic(layer: QuantLayer) -> str:
    """How the layer's arithmetic runs: float formats are *emulated* -- float32 multiplies and adds on operands
    rounded exactly to the format (no target here computes in the format itself with float32 accumulation);
    clustered layers look products up in a table and add int32."""
    if layer.precision.kind == "float":
        return "emulated"
    if layer.precision.kind == "clustered":
        return "table"
    return "int32"
