"""Scoring a plan without compiling it: the NumPy reference with cached quantized layers and cached activations.

Compiling a plan takes seconds (calibration, GPTQ weight rounding, TVM build); a search scores thousands of plans.
Here a plan is scored by the NumPy reference of the quantized network (:mod:`tvm_mp.quantize.interpreter`),
made fast in three ways, none of which changes a single output bit:

* **Per-(layer, bits) quantization, done once.** A layer's integer weights depend only on its weight bits (and the
  calibration statistics), its activation quantizer only on its activation bits; :class:`LayerBank` builds each
  ``(layer, w_bits)`` / ``(layer, a_bits)`` once, exactly as the passes do (``AnnotatePrecision`` +
  ``QuantizeWeights``), so scoring a plan never re-runs the passes.
* **Activations cached by what they depend on.** Each value of the network depends on the precisions of some
  layers only (those upstream of it, and for an integer edge the consumer whose codes it is requantized into).
  :class:`PlanEvaluator` keys every intermediate value on exactly those precisions (and the input bytes), so
  changing the last layer of a plan recomputes only the last layer.
* **Exact integer accumulation in BLAS.** ``sum(code * w_q)`` is computed as a float32 or float64 matrix product;
  every partial sum is an integer whose magnitude is bounded by ``qmax * max|w_q| * R``, so float32 is exact below
  ``2**24`` and float64 below ``2**53`` (always, at 8 bits or less), and the result equals the int64 reference.

Number formats are scored the same way. A **clustered** layer (``Precision.clustered(K, a)``) is built once per
``(layer, K, a)`` exactly as QuantizeWeights builds it (k-means with the compiler's seed, int8 centroids, one scale)
and computed by the same exact BLAS product on ``w_q = c_q[idx]`` -- the table look-ups of the compiled kernel
add the same integers, so the result is the same int64 sum. A **float-format** layer (fp16, bf16, fp8, any eXmY) is
computed by its NumPy reference (:func:`tvm_mp.quantize.floats.conv2d` / ``dense``: operands rounded to the format,
float32 products accumulated sequentially), never by BLAS, whose summation order differs. Edges touching a float
layer are float edges (:mod:`tvm_mp.quantize.graph`), so the graph structure is cached per set of quantized layers
*and* set of float layers.

What a plan is scored by (:class:`Scorer`): the user's ``accuracy_fn(model)``, where ``model.run(*inputs)`` is the
reference of the plan (the same function works on a :class:`~tvm_mp.model.CompiledModel`), or an
output-fidelity proxy against the fp32 network on the user's data: top-1 agreement, SQNR of the outputs (dB) or the
negative KL divergence of their softmax. Higher scores are better. :meth:`Scorer.noise` gives the outputs'
noise-to-signal power ratio, the additive proxy used for per-layer sensitivity.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import tvm

from ..errors import CalibrationError, Error, PlanError, UnsupportedError
from ..inputs import bind_inputs, check_inputs
from ..kinds import DEFAULT_CALIBRATION_METHOD, SCORE_METRICS, check
from ..layers import dataflow_bindings, match_layers
from ..model import call_accuracy_fn, input_specs
from ..passes.annotate_precision import AnnotatePrecision
from ..precision import Precision, PrecisionPlan
from ..quantize import fastconv, reference
from ..quantize.calibrate import ActivationRange, calibrate, normalize_batches
from ..quantize.correction import corrected_bias
from ..quantize.graph import analyze_outputs, layer_name_of
from ..quantize.interpreter import Interpreter, batch_polymorphic, concat_batches, sample_blocks
from ..quantize.qlayer import QuantLayer
from ..quantize.scheme import ActQuant, fit_accumulator, quantize_weights
from .space import canonical, is_integer

#: Output-fidelity proxies (used when no accuracy_fn is given). All are "higher is better".
PROXY_METRICS = SCORE_METRICS
#: Smallest positive float64: keeps ratios finite when a signal is exactly zero.
_TINY = float(np.finfo(np.float64).tiny)
#: SQNR reported when the outputs are identical to fp32 (no noise).
MAX_SQNR_DB = 200.0


def _canon(prec: Precision) -> Precision:
    return canonical(prec)


def plan_key(plan: PrecisionPlan) -> tuple:
    """Hashable identity of a plan (kernel kinds resolved, so "auto" equals the kind it picks)."""
    return tuple((name, _canon(prec)) for name, prec in sorted(plan.items()))


class LayerBank:
    """Quantized layers of ``mod``, built once per ``(layer, w_bits)`` and ``(layer, a_bits)``, exactly as the
    passes build them (same GPTQ statistics, same clipped activation ranges); float-format layers once per
    ``(layer, format)``, clustered ones once per ``(layer, K)`` (k-means seeded with ``cluster_seed``, the seed of
    ``QuantizeWeights`` in ``tvm_mp.compile``)."""

    def __init__(self, mod: tvm.IRModule, ranges: Mapping[str, ActivationRange], cluster_seed: int = 0):
        self.matches = {m.info.name: m for m in match_layers(mod["main"], mod)}
        self.ranges = dict(ranges)
        self.cluster_seed = int(cluster_seed)
        self._clustered: dict[tuple[str, int], object] = {}
        self._weights: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
        self._acts: dict[tuple[str, int], ActQuant] = {}
        self._layers: dict[tuple, QuantLayer] = {}

    def weights(self, name: str, w_bits: int) -> tuple[np.ndarray, np.ndarray]:
        key = (name, w_bits)
        if key not in self._weights:
            match = self._match(name)
            groups = match.info.params.groups if match.info.params is not None else 1
            hessian = getattr(self.ranges.get(name), "hessian", None)
            w_q, scale = quantize_weights(match.weight, w_bits, hessian, groups)
            self._weights[key] = (w_q.astype(np.int8), scale.reshape(-1).astype(np.float32))
        return self._weights[key]

    def rounded_weights(self) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]:
        """Every ``(layer, w_bits) -> (w_q, scale)`` rounded so far (what ``QuantizeWeights(weights=...)`` takes)."""
        return dict(self._weights)

    def act(self, name: str, a_bits: int) -> ActQuant:
        key = (name, a_bits)
        if key not in self._acts:
            rng = self.ranges.get(name)
            if rng is None:
                raise CalibrationError(f"layer {name!r} has no calibrated activation range: calibrate on this model")
            lo, hi = rng.for_bits(a_bits)
            self._acts[key] = ActQuant.from_range(lo, hi, a_bits, unsigned=rng.unsigned)
        return self._acts[key]

    def clustered(self, name: str, clusters: int):
        """``(ClusteredWeights as the compiled layer reads them back, w_q int8, per-channel scale float32)``."""
        key = (name, clusters)
        if key not in self._clustered:
            from ..quantize.clustering import cluster_weights, from_integer_weights

            match = self._match(name)
            cw = cluster_weights(match.weight, clusters, seed=self.cluster_seed)  # QuantizeWeights' orientation
            w_q = cw.w_q
            scale = np.full(match.weight.shape[0], cw.scale, np.float32)
            self._clustered[key] = (from_integer_weights(w_q, float(scale[0]), clusters), w_q, scale)
        return self._clustered[key]

    def layer(self, name: str, precision: Precision) -> QuantLayer:
        key = (name, _canon(precision))
        if key not in self._layers:
            if precision.kind == "float":
                from ..quantize.floats import FloatFormat, round_to_format

                match = self._match(name)
                rounded = round_to_format(np.asarray(match.weight, np.float32), FloatFormat.of(precision))
                self._layers[key] = QuantLayer(match.info, precision, None, None, None, match.bias, w_float=rounded)
                return self._layers[key]
            if precision.kind == "clustered":
                match = self._match(name)
                cw, w_q, scale = self.clustered(name, precision.clusters)
                self._layers[key] = QuantLayer(match.info, precision, self.act(name, precision.a_bits), w_q, scale,
                                               match.bias, clustered=cw)
                return self._layers[key]
            if not is_integer(precision):
                raise UnsupportedError(f"the fast plan scorer cannot compute {precision} ({precision.kind}) of "
                                       f"layer {name!r}")
            match = self._match(name)
            w_q, scale = self.weights(name, precision.w_bits)
            act = self.act(name, precision.a_bits)
            w_q, scale = fit_accumulator(match.weight, w_q, scale, match.bias, act.scale, precision.w_bits)
            groups = match.info.params.groups if match.info.params is not None else 1
            bias = corrected_bias(match.weight, w_q, scale, match.bias, self.ranges.get(name), act, groups)
            prec = _canon(precision)
            self._layers[key] = QuantLayer(match.info, prec, act, w_q, scale, bias)
        return self._layers[key]

    def _match(self, name: str):
        try:
            return self.matches[name]
        except KeyError:
            raise PlanError(f"unknown layer {name!r}; the model's layers are {', '.join(self.matches)}") from None


def integer_acc(layer: QuantLayer, codes: np.ndarray) -> np.ndarray:
    """``sum(code * w_q)`` of a layer as int64, computed by an exact floating-point product
    (:func:`tvm_mp.quantize.fastconv.conv2d` for convolutions: every partial sum is an integer below the bound)."""
    r = layer.info.reduction
    bound = float(layer.require_act().qmax) * float(np.abs(layer.w_q).max(initial=0)) * r
    dtype = np.float32 if bound < 2.0**24 else np.float64
    if bound >= 2.0**53:  # never at 8 bits or less; keep the exact integer path for safety
        if layer.info.op == "dense":
            return reference.dense_acc(codes, layer.w_q).astype(np.int64)
        return reference.conv2d_acc(codes, layer.w_q, layer.info.params, layer.act.zero_point).astype(np.int64)
    if layer.info.op == "dense":
        out = codes.astype(dtype) @ layer.w_q.astype(dtype).T
        return np.rint(out).astype(np.int64)
    out = fastconv.conv2d(codes, layer.w_q, layer.info.params, layer.act.zero_point, dtype)
    return np.rint(out).astype(np.int64)


def float_conv2d(x: np.ndarray, w: np.ndarray, attrs) -> np.ndarray:
    """fp32 NCHW/OIHW conv2d (:func:`tvm_mp.quantize.fastconv.conv2d`, float32 accumulation)."""
    from ..workload import ConvParams

    params = ConvParams(tuple(attrs.strides), tuple(attrs.padding), tuple(attrs.dilation), int(attrs.groups))
    return fastconv.conv2d(x, w, params, 0.0, np.float32)


class _PlanInterpreter(Interpreter):
    """The reference interpreter reading its quantized layers from a :class:`LayerBank` for the current plan."""

    def __init__(self, mod: tvm.IRModule, bank: LayerBank):
        super().__init__(mod, quantized=True)
        self.bank = bank
        self.plan: PrecisionPlan | None = None

    def _layer(self, gv) -> QuantLayer:
        name = str(self.mod[gv].attrs["tvm_mp.layer"])
        return self.bank.layer(name, self.plan[name])

    def _eval_call(self, call, args):
        if call.op.name == "relax.nn.conv2d":  # fp32 layers: one BLAS product (same values up to float rounding)
            return float_conv2d(args[0], args[1], call.attrs)
        return super()._eval_call(call, args)

    def _quantized_layer(self, var, call, x, outputs, env):
        layer = self._layer(call.op)
        if layer.precision.kind == "float":  # the formats' own reference (sequential float32 sums, not BLAS)
            return self._float_format_layer(layer, x, outputs[var])
        act = layer.require_act()
        codes = x if x.dtype == np.uint8 else act.quantize(x)
        acc = integer_acc(layer, codes)  # clustered layers too: the same integers as the table look-ups
        return self._finish_layer(layer, acc, outputs[var])


def _op_name(value) -> str:
    op = getattr(value, "op", None)
    return str(op.name) if hasattr(op, "name") else ""


@dataclass(frozen=True, eq=False)
class _Structure:
    """The annotated graph for one set of quantized layers: bindings, output edges and dependency sets."""

    names: tuple  # (quantized layer names, float-format layer names): the cache key of this structure
    interp: _PlanInterpreter
    bindings: tuple
    outputs: dict
    taken: dict
    deps: dict  # var -> tuple of layer names whose precision the value depends on


def _free_vars(expr) -> list:
    from tvm import relax

    found = []
    relax.analysis.post_order_visit(expr, lambda e: found.append(e) if isinstance(e, relax.Var) else None)
    return found


class PlanEvaluator:
    """Run the NumPy reference of any plan, with cached layers and cached activations (see module docstring).

    ``cache_mb`` bounds the memory of cached activations (least recently used ones are dropped first).
    """

    def __init__(self, mod: tvm.IRModule, ranges: Mapping[str, ActivationRange], cache_mb: float = 256.0,
                 cluster_seed: int = 0):
        if not isinstance(mod, tvm.IRModule):
            raise Error(f"PlanEvaluator needs a tvm.IRModule (from tvm_mp.load_onnx), got {type(mod).__name__}")
        self.mod = mod
        self.ranges = dict(ranges)
        self.bank = LayerBank(mod, self.ranges, cluster_seed)
        self.layer_names = tuple(self.bank.matches)
        self.cache_bytes = int(cache_mb * 2**20)
        self._structures: dict[frozenset, _Structure] = {}
        self._cache: OrderedDict = OrderedDict()
        self._used = 0
        self._blas = None
        self._polymorphic: bool | None = None
        self._input_specs = input_specs(mod)

    def _structure(self, names: frozenset, floats: frozenset = frozenset()) -> _Structure:
        """The graph with ``names`` quantized, ``floats`` (a subset) of them in a float format."""
        key = (frozenset(names), frozenset(floats))
        if key in self._structures:
            return self._structures[key]
        names = key[0]
        plan = PrecisionPlan({n: Precision.fp16() if n in key[1] else Precision(8, 8) for n in names})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # layers left in fp32 are intended here
            annotated = AnnotatePrecision(plan, self.ranges)(self.mod) if names else self.mod
        func = annotated["main"]
        outputs = analyze_outputs(func, annotated) if names else {}
        taken = {b.var: out for out in outputs.values() for b in out.chain}
        deps: dict = {}
        bindings = tuple(dataflow_bindings(func))
        for b in bindings:
            dep = set()
            for v in _free_vars(b.value):
                dep.update(deps.get(v, ()))
            name = layer_name_of(b.value, annotated)
            if name is not None:
                dep.add(name)
                out = outputs.get(b.var)
                if out is not None and out.integer:
                    dep.add(out.consumer_layer)
            deps[b.var] = tuple(sorted(dep))
        struct = _Structure(key, _PlanInterpreter(annotated, self.bank), bindings, outputs, taken, deps)
        self._structures[key] = struct
        return struct

    def epilogues(self, names: Iterable[str], floats: Iterable[str] = ()) -> dict[str, str]:
        """Layer -> "requant" (output requantized into the next layer's codes) or "float", when the layers
        ``names`` are quantized, ``floats`` of them in a float format (the edge rule of
        :mod:`tvm_mp.quantize.graph`)."""
        struct = self._structure(frozenset(names), frozenset(floats))
        out = {}
        for b in struct.bindings:
            name = layer_name_of(b.value, struct.interp.mod)
            if name is not None:
                out[name] = "requant" if struct.outputs[b.var].integer else "float"
        return out

    def links(self, names: Iterable[str]) -> list[tuple[str, str]]:
        """``(producer, consumer)`` layers of ``names`` (all integer) whose integer edge has only a fused
        activation in between: the edges an accelerator may keep on chip (:mod:`tvm_mp.accel.chain`)."""
        struct = self._structure(frozenset(names))
        out = []
        for b in struct.bindings:
            name = layer_name_of(b.value, struct.interp.mod)
            o = struct.outputs.get(b.var)
            if name is not None and o is not None and o.integer and o.consumer_layer is not None and \
                    all(_op_name(c.value) in ("relax.nn.relu", "relax.clip") for c in o.chain):
                out.append((name, o.consumer_layer))
        return out

    def check_inputs(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The rules of :mod:`tvm_mp.inputs` (any batch size: calibration batches pass through here too)."""
        return check_inputs(list(inputs), self._input_specs, multiple=False)

    def run(self, plan: PrecisionPlan, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """Output of the quantized network of ``plan`` (layers absent from it stay fp32) on ``inputs``.

        BLAS runs single-threaded in here: the products are small, and a multi-threaded BLAS on a busy machine
        spins (a 288x288 Cholesky of the GPTQ rounding took 0.7 s with 2 threads under load, 0.02 s with one)."""
        with self.blas_single_thread():
            return self._run(plan, inputs)

    @contextmanager
    def blas_single_thread(self):
        """BLAS limited to one thread inside (see :meth:`run`)."""
        if self._blas is None:
            from threadpoolctl import ThreadpoolController

            self._blas = ThreadpoolController()  # scans the loaded libraries once
        with self._blas.limit(limits=1, user_api="blas"):
            yield

    def _run(self, plan: PrecisionPlan, inputs: Sequence[np.ndarray]) -> np.ndarray:
        if not isinstance(plan, PrecisionPlan):
            raise PlanError(f"expected a PrecisionPlan, got {type(plan).__name__}")
        plan.validate_for(self.layer_names)
        arrays = self.check_inputs(inputs)
        blocks = sample_blocks(self.mod, arrays)
        if blocks is not None:
            if self._polymorphic is None:
                self._polymorphic = batch_polymorphic(self.mod)
            if not self._polymorphic:  # ops mix the batch axis: sample-block by sample-block
                return concat_batches([self._run(plan, block) for block in blocks])
        digest = hashlib.blake2b(digest_size=16)
        for a in arrays:
            digest.update(str(a.shape).encode())
            digest.update(a.tobytes())
        digest = digest.hexdigest()
        struct = self._structure(frozenset(plan), frozenset(n for n, p in plan.items() if p.kind == "float"))
        interp = struct.interp
        interp.plan = plan
        func = interp.mod["main"]
        env = {p: a for p, a in zip(func.params, arrays)}
        precisions = {n: _canon(p) for n, p in plan.items()}
        for i, b in enumerate(struct.bindings):
            key = (struct.names, digest, i, tuple(precisions[n] for n in struct.deps[b.var]))
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                env[b.var] = hit
                continue
            value = self._compute(struct, b, env)
            env[b.var] = value
            self._store(key, value)
        return np.asarray(interp._eval(func.body.body, env))

    def _compute(self, struct: _Structure, b, env):
        interp = struct.interp
        value = b.value
        if b.var in struct.taken:
            out = struct.taken[b.var]
            src = env[value.args[0]]
            if out.integer and value.op.name in ("relax.nn.max_pool2d", "relax.reshape"):
                return interp._eval_call(value, [src])
            return src
        if layer_name_of(value, interp.mod) is not None:
            return interp._quantized_layer(b.var, value, env[value.args[0]], struct.outputs, env)
        return interp._eval(value, env)

    def _store(self, key, value) -> None:
        size = sum(v.nbytes for v in value) if isinstance(value, tuple) else getattr(value, "nbytes", 0)
        if size > self.cache_bytes:
            return
        self._cache[key] = value
        self._used += size
        while self._used > self.cache_bytes and self._cache:
            _, old = self._cache.popitem(last=False)
            self._used -= sum(v.nbytes for v in old) if isinstance(old, tuple) else getattr(old, "nbytes", 0)


class ReferenceModel:
    """What ``accuracy_fn`` receives during a search: ``run(*inputs)`` computes the NumPy reference of ``plan``
    (bit-exact with the compiled model's integer layers), like :meth:`CompiledModel.run`."""

    def __init__(self, evaluator: PlanEvaluator, plan: PrecisionPlan):
        self._evaluator = evaluator
        self.plan = plan

    def run(self, *inputs, **named) -> np.ndarray:
        """Inputs by position or by name, as :meth:`CompiledModel.run` takes them."""
        return self._evaluator.run(self.plan, bind_inputs(inputs, named, self._evaluator._input_specs))

    def reference(self, *inputs, **named) -> np.ndarray:
        return self.run(*inputs, **named)


def fidelity(metric: str, quant: np.ndarray, fp32: np.ndarray) -> float:
    """Output-fidelity score of ``quant`` against ``fp32`` (higher is better); see :data:`PROXY_METRICS`."""
    q = np.asarray(quant, dtype=np.float64).reshape(quant.shape[0], -1)
    f = np.asarray(fp32, dtype=np.float64).reshape(fp32.shape[0], -1)
    if metric == "agreement":
        return float(np.mean(q.argmax(axis=1) == f.argmax(axis=1)))
    if metric == "sqnr_db":
        noise = float(np.sum((q - f) ** 2))
        signal = float(np.sum(f**2))
        if noise == 0.0:
            return MAX_SQNR_DB
        return float(min(MAX_SQNR_DB, 10.0 * math.log10(max(signal, _TINY) / noise)))
    if metric == "neg_kl":
        lp = f - f.max(axis=1, keepdims=True)
        lp = lp - np.log(np.exp(lp).sum(axis=1, keepdims=True))
        lq = q - q.max(axis=1, keepdims=True)
        lq = lq - np.log(np.exp(lq).sum(axis=1, keepdims=True))
        return float(-np.mean(np.sum(np.exp(lp) * (lp - lq), axis=1)))
    raise PlanError(f"unknown accuracy metric {metric!r}: use one of {', '.join(PROXY_METRICS)} or pass accuracy_fn")


def noise_ratio(quant: np.ndarray, fp32: np.ndarray) -> float:
    """Noise-to-signal power ratio of the outputs, ``sum((q - f)^2) / sum(f^2)`` (0 = identical)."""
    q = np.asarray(quant, dtype=np.float64)
    f = np.asarray(fp32, dtype=np.float64)
    return float(np.sum((q - f) ** 2) / max(float(np.sum(f**2)), _TINY))


def _first_samples(data: list[list[np.ndarray]], n: int | None) -> list[list[np.ndarray]]:
    """The first ``n`` samples of a list of batches (as batches); all of them when ``n`` is None."""
    if n is None:
        return data
    out, left = [], n
    for arrays in data:
        if left <= 0:
            break
        take = min(left, arrays[0].shape[0])
        out.append([a[:take] for a in arrays])
        left -= take
    return out


class Scorer:
    """Score plans (higher is better), memoized per plan.

    mod: the fp32 module (from ``tvm_mp.load_onnx``).
    calibration: batches of representative inputs, as for ``tvm_mp.compile`` (sets the activation ranges
        unless ``ranges`` is given; also the data of the proxy metrics unless ``data`` is given).
    accuracy_fn: ``accuracy_fn(model) -> float``; ``model.run(*inputs)`` is the plan's NumPy reference. When
        given, it is the score (e.g. top-1 on a held-out split); otherwise ``metric`` on ``data`` is.
    metric: "agreement" (top-1 agreement with fp32), "sqnr_db" or "neg_kl" (see :func:`fidelity`).
    noise_samples: :meth:`noise` uses the first this many samples of the data (None: all of it).
    """

    def __init__(self, mod: tvm.IRModule, calibration: Iterable | None = None, *, accuracy_fn: Callable | None = None,
                 data: Iterable | None = None, metric: str = "agreement",
                 ranges: Mapping[str, ActivationRange] | None = None,
                 calibration_method: str = DEFAULT_CALIBRATION_METHOD, percentile: float = 99.99,
                 cache_mb: float = 256.0, noise_samples: int | None = 128):
        check(metric, PROXY_METRICS, "accuracy metric", PlanError)
        if accuracy_fn is not None and not callable(accuracy_fn):
            raise Error("accuracy_fn must be a function taking a model (with .run) and returning a number")
        if calibration is not None and not isinstance(calibration, (list, tuple)):
            calibration = list(calibration)
        if ranges is None:
            if calibration is None:
                raise CalibrationError("scoring plans needs calibration=[batches of representative inputs]")
            ranges = calibrate(mod, calibration, calibration_method, percentile)
        self.mod = mod
        self.ranges = dict(ranges)
        self.accuracy_fn = accuracy_fn
        self.metric = metric
        source = data if data is not None else calibration
        self.data = normalize_batches(mod, source) if source is not None else None
        if noise_samples is not None and (not isinstance(noise_samples, int) or noise_samples < 1):
            raise Error(f"noise_samples={noise_samples!r}: give a positive number of samples or None (all)")
        self.noise_data = _first_samples(self.data, noise_samples) if self.data is not None else None
        self._fp32_noise_out: np.ndarray | None = None
        self.evaluator = PlanEvaluator(mod, self.ranges, cache_mb)
        self._scores: dict = {}
        self._noise: dict = {}
        self._fp32_out: np.ndarray | None = None

    @property
    def name(self) -> str:
        """What the score measures: "accuracy_fn" or the proxy metric."""
        return "accuracy_fn" if self.accuracy_fn is not None else self.metric

    @property
    def evaluations(self) -> int:
        """Number of distinct plans scored so far."""
        return len(self._scores)

    def model(self, plan: PrecisionPlan) -> ReferenceModel:
        return ReferenceModel(self.evaluator, plan)

    def _outputs(self, plan: PrecisionPlan, data=None) -> np.ndarray:
        data = self.data if data is None else data
        if data is None:
            raise CalibrationError("proxy scores need data: pass calibration= or data= to the Scorer")
        return np.concatenate([self.evaluator.run(plan, arrays) for arrays in data], axis=0)

    def fp32_outputs(self) -> np.ndarray:
        if self._fp32_out is None:
            self._fp32_out = self._outputs(PrecisionPlan({}))
        return self._fp32_out

    def score(self, plan: PrecisionPlan) -> float:
        """The plan's score (cached)."""
        key = plan_key(plan)
        if key not in self._scores:
            if self.accuracy_fn is not None:
                value = call_accuracy_fn(self.accuracy_fn, self.model(plan))
            else:
                value = fidelity(self.metric, self._outputs(plan), self.fp32_outputs())
            self._scores[key] = value
        return self._scores[key]

    def fp32_score(self) -> float:
        """Score of the unquantized network (the ceiling of every plan's score, up to quantization noise luck)."""
        return self.score(PrecisionPlan({}))

    def noise(self, plan: PrecisionPlan) -> float:
        """Noise-to-signal power ratio of the plan's outputs against fp32 on the data (cached)."""
        key = plan_key(plan)
        if key not in self._noise:
            if self._fp32_noise_out is None:
                self._fp32_noise_out = self._outputs(PrecisionPlan({}), self.noise_data)
            self._noise[key] = noise_ratio(self._outputs(plan, self.noise_data), self._fp32_noise_out)
        return self._noise[key]

    def seen(self) -> dict:
        """Plan key -> score of every plan scored so far."""
        return dict(self._scores)
