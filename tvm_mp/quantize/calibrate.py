"""Activation ranges from the user's calibration batches (min/max or percentile), measured in NumPy.

The fp32 network is interpreted (:mod:`tvm_mp.quantize.interpreter`) and the input of every quantizable layer is
observed. A range starting at 0 or above (after ReLU-like ops) gives unsigned codes with zero point 0; a range
with negative values gives a signed (affine) code with a zero point inside the range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np
import tvm

from .. import _tvm
from ..errors import CalibrationError
from ..inputs import InputSpec, check_inputs
from ..kinds import BIAS_CORRECTIONS, CALIBRATION_METHODS, DEFAULT_CALIBRATION_METHOD, check
from .interpreter import Interpreter


@dataclass(frozen=True)
class ActivationRange:
    """Observed range of one layer's input, (method "mse") the best clipped range for each bit-width, and the
    second moment ``H = E[x x^T]`` of the layer's input windows per group (diagonal blocks ``[G, nblocks, B, B]``,
    for GPTQ rounding). For bias correction (:mod:`tvm_mp.quantize.correction`): ``mean``, the mean input window
    per group ``[G, R]`` (float64), and ``channel_sample``, a seeded sample of each input channel's values
    ``[C, K]`` (float32; the shift of the input quantizer's mean per channel is measured on it)."""

    lo: float
    hi: float
    clipped: tuple[tuple[float, float], ...] = ()  # index b-1: (lo, hi) for b bits; empty = use (lo, hi)
    hessian: np.ndarray | None = field(default=None, compare=False, repr=False)
    mean: np.ndarray | None = field(default=None, compare=False, repr=False)
    channel_sample: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def unsigned(self) -> bool:
        return self.lo >= 0.0

    def for_bits(self, bits: int) -> tuple[float, float]:
        """The range to quantize to ``bits`` bits."""
        return self.clipped[bits - 1] if self.clipped else (self.lo, self.hi)


#: Clipping ratios of the observed range tried by the "mse" method.
MSE_RATIOS = np.linspace(0.1, 1.0, 46)
#: Values kept per layer for the "mse" search (a seeded subsample: deterministic).
MSE_SAMPLE = 65536


def mse_clipped_ranges(sample: np.ndarray, lo: float, hi: float) -> tuple[tuple[float, float], ...]:
    """For 1..8 bits, the clipped range (ratio of [lo, hi]) minimizing the quantization error of ``sample``.

    The error of each ratio is computed in one buffer with the quantizer's float32 arithmetic (``ActQuant.quantize``
    then ``dequantize``: the code minus the zero point, times the scale): the same errors, the first smallest wins.
    """
    from .scheme import ActQuant

    x = np.ascontiguousarray(sample, dtype=np.float32).reshape(-1)
    buf = np.empty_like(x)
    out = []
    for bits in range(1, 9):
        best, best_err = (lo, hi), np.inf
        for ratio in MSE_RATIOS:
            act = ActQuant.from_range(lo * ratio, hi * ratio, bits, unsigned=lo >= 0)
            np.multiply(x, act.inv_scale, out=buf)
            np.rint(buf, out=buf)
            np.clip(buf, np.float32(-act.zero_point), np.float32(act.qmax - act.zero_point), out=buf)
            np.multiply(buf, np.float32(act.scale), out=buf)
            np.subtract(buf, x, out=buf)
            np.square(buf, out=buf)
            err = float(np.add.reduce(buf) / x.size)  # np.mean's float32 sum and division, less overhead
            if err < best_err:
                best, best_err = (float(lo * ratio), float(hi * ratio)), err
        out.append(best)
    return tuple(out)


def _input_specs(mod: tvm.IRModule) -> list[InputSpec]:
    return [InputSpec(_tvm.var_name(p), _tvm.expr_shape(p), _tvm.expr_dtype(p)) for p in mod["main"].params]


def normalize_batches(mod: tvm.IRModule, batches: Iterable) -> list[list[np.ndarray]]:
    """Check calibration data and return it as lists of input arrays (in ``main``'s parameter order).

    ``batches``: an iterable (list, tuple, generator: read once) of batches; a batch is one array (one-input
    models) or a dict ``{input name: array}`` naming every input. Each array follows the rules of ``run``
    (:mod:`tvm_mp.inputs`: real numbers converted to the input's dtype, NaN/Inf, complex and strings refused,
    integer inputs keep their dtype) except that the batch may be any positive size. Every mistake raises one-line
    :class:`~tvm_mp.errors.CalibrationError`.
    """
    specs = _input_specs(mod)
    names = [s.name for s in specs]
    hint = "give a list of batches, e.g. [array of shape (batch, ...)] or [{name: array}]"
    if isinstance(batches, np.ndarray):
        raise CalibrationError("calibration must be an iterable of batches (e.g. a list of arrays), not one array")
    if isinstance(batches, Mapping):
        raise CalibrationError(f"calibration is one dict; {hint}: wrap it in a list, [{{...}}]")
    if isinstance(batches, (str, bytes)) or not isinstance(batches, Iterable):
        raise CalibrationError(f"calibration must be an iterable of batches, got {type(batches).__name__}; {hint}")
    out = []
    for i, batch in enumerate(batches):
        if isinstance(batch, Mapping):
            unknown = [k for k in batch if k not in names]
            if unknown:
                raise CalibrationError(f"calibration batch {i} names unknown input(s) {unknown}; the model's inputs "
                                       f"are {names}")
            missing = [n for n in names if n not in batch]
            if missing:
                raise CalibrationError(f"calibration batch {i} lacks input(s) {missing}; the model's inputs are "
                                       f"{names}")
            values = [batch[n] for n in names]
        else:
            if len(specs) != 1:
                raise CalibrationError(f"the model has {len(specs)} inputs: give each calibration batch as a dict "
                                       f"{{name: array}} with names {names}")
            values = [batch]
        out.append(check_inputs(values, specs, multiple=False, where=f"calibration batch {i}, ",
                                value_error=CalibrationError, shape_error=CalibrationError))
    if not out:
        raise CalibrationError("calibration data is empty: give at least one batch of representative inputs")
    return out


#: Values kept per input channel for the activation part of bias correction (a seeded subsample).
CHANNEL_SAMPLE = 1024
#: Input windows per layer and batch that enter H (a seeded subsample keeps wide layers cheap).
HESSIAN_ROWS = 8192


def _channel_columns(x: np.ndarray) -> np.ndarray:
    """``[C, n]``: every value of each input channel (axis 1 of NCHW; the last axis of a dense input)."""
    if x.ndim == 4:
        return x.transpose(1, 0, 2, 3).reshape(x.shape[1], -1)
    return x.reshape(-1, x.shape[-1]).T


def _windows(info, x: np.ndarray) -> np.ndarray:
    """``[G, n, R]`` input windows of a layer (im2col for conv2d; rows for dense)."""
    from .reference import im2col

    if info.op == "dense":
        return x.reshape(1, x.shape[0], -1)
    oc, cg, kh, kw = info.weight_shape
    cols = im2col(np.asarray(x, dtype=np.float32), kh, kw, info.params, 0.0)  # [N, G, OH, OW, R]
    return cols.transpose(1, 0, 2, 3, 4).reshape(info.params.groups, -1, cg * kh * kw)


def calibrate(mod: tvm.IRModule, batches: Iterable, method: str = DEFAULT_CALIBRATION_METHOD,
              percentile: float = 99.99, statistics: bool = True,
              bias_correction: str = "full") -> dict[str, ActivationRange]:
    """Layer name -> input range over the calibration batches.

    ``method="minmax"`` takes the extreme values; ``"percentile"`` averages per-batch ``percentile`` /
    ``100 - percentile`` values, clipping rare outliers; ``"mse"`` observes min/max and then, for each bit-width,
    clips the range to the ratio that minimizes the quantization error on a seeded sample of the layer's inputs
    (low bit-widths gain most; the default, as in :func:`tvm_mp.compile`). With ``statistics`` each range also
    carries the layer's input second moment (used by QuantizeWeights for GPTQ rounding) and, unless
    ``bias_correction="off"``, the input statistics that let each quantized layer's bias cancel its expected output
    shift (:mod:`tvm_mp.quantize.correction`):
    ``"weights"`` the shift of the rounded weights, ``"full"`` (default) also the shift of the input quantizer.
    """
    check(method, CALIBRATION_METHODS, "calibration method", CalibrationError)
    check(bias_correction, BIAS_CORRECTIONS, "bias correction", CalibrationError)
    if not statistics:
        bias_correction = "off"
    if not (50.0 < percentile <= 100.0):
        raise CalibrationError(f"percentile must be in (50, 100], got {percentile}")
    data = normalize_batches(mod, batches)
    seen: dict[str, list[tuple[float, float]]] = {}
    samples: dict[str, list[np.ndarray]] = {}
    moments: dict[str, list] = {}
    means: dict[str, list] = {}
    channels: dict[str, list[np.ndarray]] = {}
    rng = np.random.default_rng(0)
    channel_rng = np.random.default_rng(1)  # its own stream: the other samples stay as they were
    from ..layers import list_layers

    infos = {layer.name: layer for layer in list_layers(mod)} if statistics else {}

    def record(name: str, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float32)
        if name in infos:
            win = _windows(infos[name], x)
            if win.shape[1] > HESSIAN_ROWS:
                win = win[:, np.sort(rng.choice(win.shape[1], HESSIAN_ROWS, replace=False))]
            from .rounding import block_moments

            acc = moments.setdefault(name, [0.0, 0])
            acc[0] = acc[0] + block_moments(win.astype(np.float64))
            acc[1] += win.shape[1]
            if bias_correction != "off":
                mean = means.setdefault(name, [0.0, 0])
                mean[0] = mean[0] + win.astype(np.float64).sum(axis=1)
                mean[1] += win.shape[1]
            if bias_correction == "full":
                cols = _channel_columns(x)
                take = min(cols.shape[1], CHANNEL_SAMPLE // len(data) + 1)
                channels.setdefault(name, []).append(cols[:, np.sort(channel_rng.choice(cols.shape[1], take,
                                                                                replace=False))])
        if method == "mse":
            flat = x.reshape(-1)
            take = min(flat.size, MSE_SAMPLE // max(1, len(data)) + 1)
            samples.setdefault(name, []).append(rng.choice(flat, size=take, replace=False))
        if method in ("minmax", "mse"):
            lo, hi = float(x.min()), float(x.max())
        else:
            lo, hi = (float(v) for v in np.percentile(x, [100.0 - percentile, percentile]))
        seen.setdefault(name, []).append((lo, hi))

    interp = Interpreter(mod, quantized=False, on_layer_input=record)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):  # small products: a busy machine makes BLAS threads spin
        for arrays in data:
            interp.run(arrays)
    ranges = {}
    for name, values in seen.items():
        los, his = zip(*values)
        lo, hi = (float(np.mean(los)), float(np.mean(his))) if method == "percentile" else (min(los), max(his))
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise CalibrationError(f"layer {name!r} sees NaN/Inf activations on the calibration data")
        clipped = mse_clipped_ranges(np.concatenate(samples[name]), lo, hi) if method == "mse" else ()
        hessian = moments[name][0] / moments[name][1] if name in moments else None
        mean = means[name][0] / means[name][1] if name in means else None
        sample = np.concatenate(channels[name], axis=1) if name in channels else None
        ranges[name] = ActivationRange(lo, hi, clipped, hessian, mean, sample)
    return ranges
