"""Per-layer sensitivity that scales to real networks: each layer's own output noise, times how much of it reaches
the network's output.

:func:`~tvm_mp.search.sensitivity.measure_sensitivity` runs the whole network once per (layer, option): 54 layers x
20 options of a MobileNetV3 are a thousand network runs. Here, for layer ``l`` at option ``o``:

* ``local[l, o]``: the noise-to-signal power ratio of ``l``'s output (conv/dense + bias, before its activation)
  quantized at ``o`` against fp32, computed from ``l``'s fp32 input: **one layer computation** per (layer, option),
  on the first :data:`LOCAL_SAMPLES` samples.
  The fp32 values of the whole network on the proxy samples are computed once and kept (a few MB for a few
  samples), so every layer's input is at hand;
* ``gain[l]``: the output noise ratio per unit of ``local`` when the quantization noise of one option of ``l``
  (the one whose local noise is nearest :data:`GAIN_NSR`) is put into the fp32 network at ``l``'s output: only the
  values downstream of ``l`` are recomputed, **one partial network run per layer**;
* ``noise[l, o] = gain[l] * local[l, o]``: the output noise ratio ``l`` alone at ``o`` causes, to first order --
  the quantity :func:`~tvm_mp.search.sensitivity.measure_sensitivity` measures, additive over layers like it.
  First order only: weight and activation errors reach the output differently (a factor 2-3 either way on the
  test net), and 1-3-bit options hurt far more than linearly;
* ``exact[l, o]``: that output noise ratio itself, by the same partial network run with ``l`` at ``o`` (equal to
  the scorer's full-network measurement); the guided search asks for it for the entries its integer programs
  pick (:mod:`tvm_mp.search.guided`).

The network output is read **before a final softmax, log-softmax or sigmoid** (logits, centred over the softmax
axis: only differences between classes matter): saturated probabilities hide noise, so a classifier's softmax
output would call every layer insensitive (the search on it scattered w1a1 layers through a 54-layer network).

Every table entry is computed once per :class:`LayerNoise` (a :class:`~tvm_mp.search.pareto.SearchContext` keeps
one), whatever the spaces asked for later. Deterministic: no randomness, fixed samples.
"""

from __future__ import annotations

import math
from collections import ChainMap
from typing import Sequence

import numpy as np
from tvm import relax

from ..errors import Error
from ..layers import dataflow_bindings, match_layers
from ..layers import op_name as _op
from ..precision import Precision
from ..quantize import scheme
from ..quantize.interpreter import Interpreter, batch_polymorphic, sample_blocks
from .accuracy import _TINY, Scorer, _canon, _first_samples, _free_vars, integer_acc
from .sensitivity import Sensitivity
from .space import SearchSpace

#: Local noise ratio the gain is measured at (SQNR 30 dB): well above float rounding, small enough to be linear.
GAIN_NSR = 1e-3
#: Ops read through at the network output: their input is the tap (logits, not probabilities).
SATURATING_OUTPUT_OPS = ("relax.nn.softmax", "relax.nn.log_softmax", "relax.sigmoid")
#: Ops that only reshape, looked through on the way back from an output to a saturating op.
RESHAPING_OPS = ("relax.reshape", "relax.squeeze", "relax.expand_dims", "relax.flatten")
#: Samples of the scorer's data the proxy uses by default.
PROXY_SAMPLES = 16
#: Of those, the samples a layer's own output noise is measured on (a ratio over whole feature maps: a few suffice).
LOCAL_SAMPLES = 4


class LayerNoise:
    """``local``, ``gain`` and ``noise`` of every layer and option (see module docstring), computed on demand and
    kept. ``samples``: the first this many samples of the scorer's data."""

    def __init__(self, scorer: Scorer, samples: int = PROXY_SAMPLES, local_samples: int = LOCAL_SAMPLES):
        for name, value in (("samples", samples), ("local_samples", local_samples)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise Error(f"proxy {name}={value!r}: give a positive number of samples")
        if scorer.data is None:
            raise Error("the sensitivity proxy needs data: pass calibration= or data= to the Scorer")
        self.scorer = scorer
        self.samples = samples
        self.local_samples = local_samples
        self.mod = scorer.mod
        self.bank = scorer.evaluator.bank
        self._local: dict = {}
        self._gain: dict = {}
        self._exact: dict = {}
        self._blocks: list | None = None

    # ---- the fp32 network, once --------------------------------------------------------------------------------
    def _prepare(self) -> None:
        if self._blocks is not None:
            return
        func = self.mod["main"]
        self._interp = Interpreter(self.mod)
        self._bindings = list(dataflow_bindings(func))
        self._order = {b.var: i for i, b in enumerate(self._bindings)}
        self._uses = [tuple(v for v in _free_vars(b.value) if v in self._order) for b in self._bindings]
        self._matches = {m.info.name: m for m in match_layers(func, self.mod)}
        self._taps = _taps(func, {b.var: b.value for b in self._bindings})
        data = _first_samples(self.scorer.data, self.samples)
        blocks = []
        polymorphic = None
        for arrays in data:
            parts = sample_blocks(self.mod, arrays)
            if parts is not None:
                polymorphic = batch_polymorphic(self.mod) if polymorphic is None else polymorphic
                if polymorphic:
                    parts = None
            blocks += [arrays] if parts is None else parts
        with self.scorer.evaluator.blas_single_thread():
            self._blocks = [self._run_fp32(func, arrays) for arrays in blocks]
        sizes = np.cumsum([np.shape(arrays[0])[0] if np.ndim(arrays[0]) else 1 for arrays in blocks])
        self._local_blocks = int(np.searchsorted(sizes, self.local_samples) + 1)  # blocks covering local_samples

    def _run_fp32(self, func: relax.Function, arrays: Sequence[np.ndarray]) -> dict:
        env = {p: np.asarray(a) for p, a in zip(func.params, arrays)}
        for b in self._bindings:
            env[b.var] = self._interp._eval(b.value, env)
        return env

    def _tap_values(self, env) -> list[np.ndarray]:
        out = []
        for expr, axis in self._taps:
            value = np.asarray(self._interp._eval(expr, env), dtype=np.float64)
            if axis is not None:  # logits of a softmax: only differences between classes matter
                value = value - value.mean(axis=axis, keepdims=True)
            out.append(value)
        return out

    # ---- one layer alone ---------------------------------------------------------------------------------------
    def _layer_output(self, name: str, prec: Precision, x: np.ndarray) -> np.ndarray:
        """``name``'s output (conv/dense + bias, no activation) at ``prec`` from its fp32 input ``x``."""
        layer = self.bank.layer(name, prec)
        info = layer.info
        x = np.asarray(x, dtype=np.float32)
        if prec.kind == "float":
            from ..quantize import floats

            fmt = floats.FloatFormat.of(prec)
            if info.op == "dense":
                return floats.dense(x, layer.w_float, layer.bias, fmt)
            return floats.conv2d(x, layer.w_float, layer.bias, info.params, fmt)
        act = layer.require_act()
        acc = integer_acc(layer, act.quantize(x))
        corr = layer.bias_corr().reshape((1, -1) + (1,) * (acc.ndim - 2))
        return scheme.dequantize_output((acc + corr).astype(np.int32), 1, layer.out_scale())

    def _quantized_outputs(self, name: str, prec: Precision, blocks: int | None = None) -> list[np.ndarray]:
        match = self._match(name)
        out = []
        for env in self._blocks[:blocks]:
            x = self._interp._eval(match.input, env)
            q = self._layer_output(name, prec, x)
            out.append(q.reshape(np.shape(env[match.end_var])))
        return out

    def local(self, name: str, prec: Precision) -> float:
        """Noise-to-signal power ratio of ``name``'s output at ``prec`` (fp32 input), cached."""
        key = (name, _canon(prec))
        if key not in self._local:
            self._prepare()
            match = self._match(name)
            with self.scorer.evaluator.blas_single_thread():
                outs = self._quantized_outputs(name, prec, self._local_blocks)
            noise = signal = 0.0
            for env, q in zip(self._blocks, outs):
                f = np.asarray(env[match.end_var], dtype=np.float64)
                noise += float(np.sum((q.astype(np.float64) - f) ** 2))
                signal += float(np.sum(f**2))
            self._local[key] = noise / max(signal, _TINY)
        return self._local[key]

    def gain(self, name: str, options: Sequence[Precision]) -> float:
        """Output noise ratio per unit of local noise ratio of layer ``name``, measured with the option of
        ``options`` whose local noise is nearest :data:`GAIN_NSR` (cached per layer: the first call decides)."""
        if name not in self._gain:
            self._prepare()
            measured = [(o, self.local(name, o)) for o in options]
            measured = [(o, v) for o, v in measured if v > 0.0 and math.isfinite(v)]
            if not measured:  # the layer is exact at every option (e.g. its input and weights are constant)
                self._gain[name] = 0.0
                return 0.0
            ref, ref_local = min(measured, key=lambda t: (abs(math.log(t[1] / GAIN_NSR)), str(t[0])))
            self._gain[name] = self.exact(name, ref) / ref_local
        return self._gain[name]

    def exact(self, name: str, prec: Precision) -> float:
        """Output noise ratio with ``name`` alone at ``prec`` (its quantized output put into the fp32 network,
        everything downstream recomputed): what ``gain * local`` approximates; cached."""
        key = (name, _canon(prec))
        if key not in self._exact:
            match = self._match(name)
            with self.scorer.evaluator.blas_single_thread():
                outs = self._quantized_outputs(name, prec)
                self._exact[key] = self._output_noise(match.end_var, outs)
        return self._exact[key]

    def known_exact(self, name: str, prec: Precision) -> float | None:
        """:meth:`exact` if it was computed already, else None (computes nothing)."""
        return self._exact.get((name, _canon(prec)))

    def _output_noise(self, var, values: Sequence[np.ndarray]) -> float:
        noise = signal = 0.0
        for env, q in zip(self._blocks, values):
            changed = self._downstream(env, var, q)
            for f, g in zip(self._tap_values(env), self._tap_values(changed)):
                noise += float(np.sum((g - f) ** 2))
                signal += float(np.sum(f**2))
        return noise / max(signal, _TINY)

    def _downstream(self, env: dict, var, value) -> ChainMap:
        """``env`` with ``var`` replaced by ``value`` and every binding after it that depends on it recomputed."""
        new = {var: value}
        view = ChainMap(new, env)
        for i in range(self._order[var] + 1, len(self._bindings)):
            if any(v in new for v in self._uses[i]):
                b = self._bindings[i]
                new[b.var] = self._interp._eval(b.value, view)
        return view

    def _match(self, name: str):
        self._prepare()
        try:
            return self._matches[name]
        except KeyError:
            raise Error(f"unknown layer {name!r}; the model's layers are {', '.join(self._matches)}") from None

    # ---- tables ------------------------------------------------------------------------------------------------
    def table(self, space: SearchSpace) -> np.ndarray:
        """``[layer, option]`` output noise ratios ``gain * local`` of ``space`` (padding inf)."""
        out = np.full((space.n_layers, space.max_options), np.inf)
        for i, (layer, opts) in enumerate(zip(space.layers, space.options)):
            g = self.gain(layer.name, opts)
            for j, o in enumerate(opts):
                out[i, j] = g * self.local(layer.name, o)
        return out

    def sensitivity(self, space: SearchSpace) -> Sensitivity:
        return Sensitivity(space, self.table(space), None, None, f"proxy({self.scorer.name})", "")

    @property
    def computed(self) -> dict:
        """How much was computed: layer outputs (local) and partial network runs (gain)."""
        return {"local": len(self._local), "gain": len(self._gain), "exact": len(self._exact)}


def _taps(func: relax.Function, values: dict) -> list[tuple]:
    """``(expression, axis)`` per output of ``func``: the output read before a final softmax / log-softmax /
    sigmoid (through aliases and the reshapes after it), with the softmax axis (None for a sigmoid or an output read
    as it is)."""
    body = func.body.body
    outs = list(body.fields) if isinstance(body, relax.Tuple) else [body]
    taps = []
    for out in outs:
        expr, tap = out, (out, None)
        while isinstance(expr, relax.Var) and expr in values:
            value = values[expr]
            if isinstance(value, relax.Var):
                expr = value
            elif _op(value) in RESHAPING_OPS:
                expr = value.args[0]
            else:
                if _op(value) in SATURATING_OUTPUT_OPS and isinstance(value.args[0], relax.Var):
                    axis = int(value.attrs.axis) if _op(value) != "relax.sigmoid" else None
                    tap = (value.args[0], axis)
                break
        taps.append(tap)
    return taps
