"""Bias correction: a quantized layer's bias cancels the expected shift of its output.

Rounding the weights (and quantizing the input: clipping cuts a tail, so its mean moves) shifts the mean of each
output channel: ``E[y_q] - E[y] = s_w * W_q . E[x_hat] - W . E[x]`` per output channel, with ``E[x]`` the mean
input window of the layer (from calibration, per group) and ``x_hat`` the input as the layer's quantizer gives
it back. At 4 bits this shift is a visible fraction of a channel's range and it adds up through the network;
subtracting it from the bias costs nothing at run time (the integer kernels read the corrected bias like any
other). Statistics come from :func:`tvm_mp.quantize.calibrate.calibrate`; a layer without them, or without a bias
(its function has nowhere to put one), keeps its bias as it is.

The compiler (QuantizeWeights) and the plan scorer (LayerBank) call :func:`corrected_bias` with the same
arguments, so the corrected bias, and with it every integer, is the same in both.
"""

from __future__ import annotations

import numpy as np

from .scheme import ActQuant


def input_shift(sample: np.ndarray, act: ActQuant) -> np.ndarray:
    """Per input channel, ``mean(dequantize(quantize(x))) - mean(x)`` over ``sample [C, K]`` (float64 ``[C]``)."""
    x = np.asarray(sample, dtype=np.float32)
    return act.dequantize(act.quantize(x)).astype(np.float64).mean(axis=1) - x.astype(np.float64).mean(axis=1)


def output_shift(weight: np.ndarray, w_q: np.ndarray, w_scale: np.ndarray, mean: np.ndarray, groups: int,
                 in_shift: np.ndarray | None = None) -> np.ndarray | None:
    """Expected ``E[y_q] - E[y]`` per output channel (float64 ``[OC]``), or None if the statistics do not fit.

    ``weight`` float and ``w_q`` integers with output channels on axis 0 (``[OC, C/G, KH, KW]`` or ``[OC, K]``),
    ``w_scale [OC]``; ``mean [G, R]`` the mean input window per group; ``in_shift [C]`` the input quantizer's
    mean shift per input channel (None: the weights' part only).
    """
    oc = w_q.shape[0]
    w = np.asarray(weight, dtype=np.float64).reshape(oc, -1)
    r = w.shape[1]
    mean = np.asarray(mean, dtype=np.float64)
    if groups < 1 or oc % groups or mean.shape != (groups, r):
        return None
    per = oc // groups
    spatial = int(np.prod(np.shape(weight)[2:], dtype=np.int64)) if np.ndim(weight) > 2 else 1
    mean_hat = mean
    if in_shift is not None:
        shift = np.asarray(in_shift, dtype=np.float64)
        cg = r // spatial
        if shift.shape == (groups * cg,):
            mean_hat = mean + np.repeat(shift.reshape(groups, cg), spatial, axis=1)
    wq = np.asarray(w_q, dtype=np.float64).reshape(oc, -1) * np.asarray(w_scale, dtype=np.float64).reshape(oc, 1)
    g = np.arange(oc) // per
    out = np.einsum("or,or->o", wq, mean_hat[g]) - np.einsum("or,or->o", w, mean[g])
    return out if np.isfinite(out).all() else None


def corrected_bias(weight: np.ndarray, w_q: np.ndarray, w_scale: np.ndarray, bias: np.ndarray | None, stats,
                   act: ActQuant, groups: int) -> np.ndarray | None:
    """``bias - output_shift`` (float32 ``[OC]``) when ``stats`` (an ``ActivationRange``) carries a mean input
    window and the layer has a bias; otherwise ``bias`` unchanged. ``act``: the layer's input quantizer."""
    mean = getattr(stats, "mean", None)
    if bias is None or mean is None:
        return bias
    sample = getattr(stats, "channel_sample", None)
    in_shift = None if sample is None else input_shift(sample, act)
    shift = output_shift(weight, w_q, w_scale, mean, groups, in_shift)
    if shift is None:
        return bias
    oc = w_q.shape[0]
    with np.errstate(over="ignore"):
        out = (np.asarray(bias, dtype=np.float64).reshape(oc) - shift).astype(np.float32)
    return out if np.isfinite(out).all() else bias  # a shift beyond float32: keep the bias as trained
