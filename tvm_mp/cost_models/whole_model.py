"""Whole-model latency as built: the calls the VM makes, each layer's kernel time *in the model*, and the fixed
per-inference terms as their own figures.

A built model runs a list of calls (:class:`ModelCall`): one kernel per quantized layer (its epilogue as built:
requantized into the next layer's codes, or float at a float edge), a quantize call wherever a float edge enters
a quantized layer (the model's input, a residual add), the graph's other operators (pooling, add, relu, mean;
legalized by TVM into their own functions), and the VM's own instructions around them (allocations, shape
checks, reshapes as views). :func:`runtime_calls` lists them from the lowered module -- the module the driver
hands to ``tvm.compile``, legalized the way ``tvm.compile`` legalizes it -- so a prediction needs no build.

:class:`WholeModel` predicts::

    latency = sum(layer kernels, from the layer model) + sum(quantize calls) + sum(other operators) + VM overhead

- layer kernels: any per-layer :class:`~tvm_mp.cost_models.base.CostModel`; the host's shipped one is an
  :class:`~tvm_mp.cost_models.xgb.XGBCostModel` trained on kernels timed inside built models
  (:mod:`tvm_mp.measure.in_model`), so it predicts the kernel as the model runs it (integer edges, fused
  epilogue, caches as the previous layers left them), not an isolated kernel with its own quantize and float output;
- quantize calls: ``a + b x elements``; other operators: ``a_op + b_op x bytes`` per operator family (``add``,
  ``relu``, ``max_pool2d``, ...; families never seen in training use the fit over every operator);
- VM overhead: ``v0 + v_call x calls + v_view x view instructions`` per inference, fitted on what the whole-model
  time leaves after the measured calls.

:class:`FixedCosts` holds those fits (:meth:`FixedCosts.fit` on model records). docs/bench_predict_model_<cpu>.md
evaluates the whole on held-out models.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .base import CostModelError, Estimate, Workload

#: What a call of a built model does: a quantized layer's kernel, a quantize at a float -> integer edge, or
#: another operator of the graph.
ROLES = ("layer", "quantize", "op")
#: Epilogue of a layer kernel by the dtype of its output.
EPILOGUE_OF_DTYPE = {"uint8": "requant", "float32": "float", "int32": "acc"}
FORMAT = "tvm-mp-whole-model"
FORMAT_VERSION = 1
#: The host's shipped whole-model predictors, one per CPU they were trained on (LLVM's CPU name, e.g. ``znver4``;
#: ``python bench/predict_model.py --write-default`` on that CPU).
DEFAULT_MODEL = "host_whole_model_{cpu}.json"
#: Vector features that decide which shipped predictor suits a CPU none was trained on (the kernels the build
#: picks follow them: register tiles, dot-product and popcount instructions).
_ISA_FEATURES = ("avx512f", "avx512vnni", "avx512vpopcntdq", "avx2")
_KERNEL = re.compile(r"^tvm_mp_(.+)_(kernel|quantize)$")


def _dtype_bytes(dtype: str) -> int:
    digits = "".join(ch for ch in str(dtype) if ch.isdigit())
    return max(1, int(digits) // 8) if digits else 4


@dataclass(frozen=True)
class ModelCall:
    """One function call a built model makes per inference.

    ``func``: the function's symbol in the executable (``tvm_mp_conv2d_1_kernel``, ``max_pool2d1``, ...);
    ``shapes`` / ``dtypes``: every argument, the output last; ``layer``: the layer a kernel or quantize call
    belongs to; ``workload``: the layer's workload (role "layer" only).
    """

    func: str
    role: str
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]
    layer: str = ""
    workload: Workload | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.func, str) or not self.func:
            raise CostModelError("ModelCall.func must be the called function's name")
        if self.role not in ROLES:
            raise CostModelError(f"ModelCall.role={self.role!r}: use one of {', '.join(ROLES)}")
        try:
            shapes = tuple(tuple(int(s) for s in shape) for shape in self.shapes)
        except (TypeError, ValueError):
            raise CostModelError(f"ModelCall.shapes must be integer shapes, got {self.shapes!r}") from None
        dtypes = tuple(str(d) for d in self.dtypes)
        if not shapes or len(shapes) != len(dtypes):
            raise CostModelError(f"ModelCall {self.func}: give one dtype per argument shape (the output last)")
        object.__setattr__(self, "shapes", shapes)
        object.__setattr__(self, "dtypes", dtypes)
        if (self.role == "layer") != (self.workload is not None):
            raise CostModelError(f"ModelCall {self.func}: a layer call needs its workload, other calls take none")
        if self.role != "op" and not self.layer:
            raise CostModelError(f"ModelCall {self.func}: a {self.role} call names its layer")

    @property
    def family(self) -> str:
        """What the call is costed as: ``"layer"``, ``"quantize"``, or the operator family (the function name
        without TVM's numbering: ``max_pool2d1`` -> ``max_pool2d``)."""
        if self.role != "op":
            return self.role
        return self.func.rstrip("0123456789") or self.func

    @property
    def nbytes(self) -> int:
        """Bytes of every argument and the output."""
        return int(sum(math.prod(s) * _dtype_bytes(d) for s, d in zip(self.shapes, self.dtypes)))

    @property
    def elements(self) -> int:
        """Elements of the output."""
        return int(math.prod(self.shapes[-1]))

    def to_dict(self) -> dict:
        data: dict = {"func": self.func, "role": self.role, "shapes": [list(s) for s in self.shapes],
                      "dtypes": list(self.dtypes)}
        if self.layer:
            data["layer"] = self.layer
        if self.workload is not None:
            data["workload"] = self.workload.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping, params_cache: dict | None = None) -> "ModelCall":
        if not isinstance(data, Mapping):
            raise CostModelError(f"a model call must be a JSON object, got {type(data).__name__}")
        try:
            workload = data.get("workload")
            return cls(data["func"], data["role"], tuple(tuple(s) for s in data["shapes"]), tuple(data["dtypes"]),
                       data.get("layer", ""),
                       None if workload is None else Workload.from_dict(workload, params_cache))
        except KeyError as err:
            raise CostModelError(f"model call field {err.args[0]!r} is missing") from None


@dataclass(frozen=True)
class RuntimeCalls:
    """The calls one inference of a built model makes, and its other VM instructions (views such as reshape)."""

    calls: tuple[ModelCall, ...]
    views: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "calls", tuple(self.calls))
        if any(not isinstance(c, ModelCall) for c in self.calls):
            raise CostModelError("RuntimeCalls.calls must be ModelCall objects")
        if int(self.views) < 0:
            raise CostModelError("RuntimeCalls.views must be >= 0")
        object.__setattr__(self, "views", int(self.views))

    def of_role(self, role: str) -> list[ModelCall]:
        return [c for c in self.calls if c.role == role]

    @property
    def workloads(self) -> list[Workload]:
        return [c.workload for c in self.calls if c.role == "layer"]

    def to_dict(self) -> dict:
        return {"calls": [c.to_dict() for c in self.calls], "views": self.views}

    @classmethod
    def from_dict(cls, data: Mapping, params_cache: dict | None = None) -> "RuntimeCalls":
        try:
            return cls(tuple(ModelCall.from_dict(c, params_cache) for c in data["calls"]), int(data.get("views", 0)))
        except (KeyError, TypeError) as err:
            raise CostModelError(f"runtime calls must be {{'calls': [...], 'views': n}} ({err})") from None


def runtime_calls(lowered, layers: Mapping[str, Any], plan, target=None, device: str = "host") -> RuntimeCalls:
    """The calls the built model of ``lowered`` makes per inference, in order.

    ``lowered``: the module the driver builds (``CompiledModel.lowered``, or ``driver.lower`` of a quantized
    module); ``layers``: layer name -> :class:`~tvm_mp.layers.LayerInfo` of the model; ``plan``: its
    :class:`~tvm_mp.precision.PrecisionPlan`; ``target``: the compile target (its ``cost_key`` goes into the layer
    workloads). The module is legalized as ``tvm.compile`` does (cheap: no code generation) so the list holds the
    functions the executable really calls; ``RuntimeCalls.views`` counts the reshapes that run as VM views.
    """
    from .. import _tvm
    from ..targets import parse

    target = parse(target)
    legal = _tvm.legalize_like_compile(lowered, target.tvm_target)
    calls: list[ModelCall] = []
    views = 0
    for binding in _tvm.main_bindings(legal):
        kind, func, args, out = _tvm.binding_call(binding)
        if kind == "view":
            views += 1
            continue
        if kind != "call_tir":
            continue
        shapes = tuple(a[0] for a in args) + (out[0],)
        dtypes = tuple(a[1] for a in args) + (out[1],)
        found = _KERNEL.match(func)
        if found is None:
            calls.append(ModelCall(func, "op", shapes, dtypes))
            continue
        layer, what = found.groups()
        if what == "quantize":
            calls.append(ModelCall(func, "quantize", shapes, dtypes, layer))
            continue
        if layer not in layers or layer not in plan:
            raise CostModelError(f"kernel {func} belongs to layer {layer!r}, which is not in the model's layers "
                                 "and plan given")
        epilogue = EPILOGUE_OF_DTYPE.get(out[1])
        if epilogue is None:
            raise CostModelError(f"kernel {func} returns {out[1]}; expected {', '.join(EPILOGUE_OF_DTYPE)}")
        workload = Workload.from_layer(layers[layer], plan[layer], epilogue=epilogue, target=target.cost_key,
                                       device=device)
        calls.append(ModelCall(func, "layer", shapes, dtypes, layer, workload))
    return RuntimeCalls(tuple(calls), views)


# ---- fixed terms ---------------------------------------------------------------------------------------------
def _linear_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Non-negative ``(a, b)`` of ``y ~ a + b x`` (least squares on relative error, so small calls count)."""
    from scipy.optimize import nnls

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.size == 0:
        return 0.0, 0.0
    if np.ptp(x) == 0 or x.size < 3:  # one size seen: a per-unit cost through the origin
        return 0.0, float(np.median(y / np.maximum(x, 1)))
    w = 1.0 / np.maximum(y, 1e-6)
    coef, _ = nnls(np.column_stack([np.ones_like(x), x]) * w[:, None], y * w)
    return float(coef[0]), float(coef[1])


@dataclass(frozen=True)
class FixedCosts:
    """The per-inference terms around the layer kernels (ms): quantize calls, other operators, VM overhead.

    ``quantize``: ``(a, b)`` of ``a + b x output elements``; ``ops``: operator family -> ``(a, b)`` of
    ``a + b x bytes`` (argument and output bytes); ``other_op``: the same fit over every operator, for families not
    in ``ops``; ``vm``: ``(v0, v_call, v_view)`` of ``v0 + v_call x calls + v_view x views`` -- what the
    whole-model time leaves after the calls timed inside it, so it also absorbs what the timing hook adds to each
    call (its terms may be negative). :meth:`fit` fits ``v_call`` alone, as the median over models of what is left
    per call: the leftover is a few percent of a model at most and as noisy as the two timings it is the difference
    of, and an intercept fitted on it was worse on held-out models.
    """

    quantize: tuple[float, float] = (0.0, 0.0)
    ops: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    other_op: tuple[float, float] = (0.0, 0.0)
    vm: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        def pair(value, name, n=2, signed=False):
            try:
                out = tuple(float(v) for v in value)
            except (TypeError, ValueError):
                raise CostModelError(f"FixedCosts.{name} must be {n} numbers, got {value!r}") from None
            if len(out) != n or any(not math.isfinite(v) or (v < 0 and not signed) for v in out):
                raise CostModelError(f"FixedCosts.{name}={value!r}: give {n} finite"
                                     f"{'' if signed else ', non-negative'} numbers")
            return out

        object.__setattr__(self, "quantize", pair(self.quantize, "quantize"))
        object.__setattr__(self, "other_op", pair(self.other_op, "other_op"))
        object.__setattr__(self, "vm", pair(self.vm, "vm", 3, signed=True))
        object.__setattr__(self, "ops", {str(k): pair(v, f"ops[{k!r}]") for k, v in dict(self.ops).items()})

    def call_ms(self, call: ModelCall) -> float:
        """Predicted time of one quantize or operator call."""
        if call.role == "quantize":
            a, b = self.quantize
            return a + b * call.elements
        if call.role == "op":
            a, b = self.ops.get(call.family, self.other_op)
            return a + b * call.nbytes
        raise CostModelError(f"{call.func} is a layer kernel: the layer model costs it")

    def vm_ms(self, calls: RuntimeCalls) -> float:
        v0, v_call, v_view = self.vm
        return v0 + v_call * len(calls.calls) + v_view * calls.views

    @classmethod
    def fit(cls, samples: Sequence[tuple[RuntimeCalls, Sequence[float], float]], min_family: int = 3
            ) -> "FixedCosts":
        """Fit from measured models: ``(calls, measured ms of each call, whole-model ms)`` per model.

        Operator families with fewer than ``min_family`` measured calls use the fit over every operator.
        """
        if not samples:
            raise CostModelError("FixedCosts.fit needs at least one measured model")
        q_x, q_y, op_rows = [], [], []
        for calls, times, _ in samples:
            if len(times) != len(calls.calls):
                raise CostModelError("give one measured time per call of the model")
            for call, t in zip(calls.calls, times):
                if call.role == "quantize":
                    q_x.append(call.elements)
                    q_y.append(t)
                elif call.role == "op":
                    op_rows.append((call.family, call.nbytes, t))
        quantize = _linear_fit(np.array(q_x), np.array(q_y))
        other = _linear_fit(np.array([r[1] for r in op_rows]), np.array([r[2] for r in op_rows]))
        ops = {}
        for fam in sorted({r[0] for r in op_rows}):
            rows = [r for r in op_rows if r[0] == fam]
            if len(rows) >= min_family:
                ops[fam] = _linear_fit(np.array([r[1] for r in rows]), np.array([r[2] for r in rows]))
        residual = np.array([whole - float(np.sum(times)) for _, times, whole in samples])
        n_calls = np.array([max(len(c.calls), 1) for c, _, _ in samples])
        vm = (0.0, float(np.median(residual / n_calls)), 0.0)
        return cls(quantize, ops, other, vm)

    def to_dict(self) -> dict:
        return {"quantize": list(self.quantize), "ops": {k: list(v) for k, v in self.ops.items()},
                "other_op": list(self.other_op), "vm": list(self.vm)}

    @classmethod
    def from_dict(cls, data: Mapping) -> "FixedCosts":
        try:
            return cls(data["quantize"], data.get("ops", {}), data["other_op"], data["vm"])
        except (KeyError, TypeError) as err:
            raise CostModelError(f"fixed costs need quantize, other_op and vm fields ({err})") from None


#: Relative spread (interquartile range / median) a layer kernel's timing counts fully at; a noisier one weighs
#: ``NOISE_FLOOR / spread`` (so a kernel timed at 20 % spread counts a tenth).
NOISE_FLOOR = 0.02


def noise_weight(spread_ms: float, median_ms: float) -> float:
    """Training weight of one timed call: 1 up to :data:`NOISE_FLOOR` relative spread, inversely proportional
    above it."""
    rel = float(spread_ms) / max(float(median_ms), 1e-12)
    return float(min(1.0, NOISE_FLOOR / max(rel, 1e-12)))


@dataclass(frozen=True)
class WholeModelEstimate:
    """A whole-model prediction (ms) and its terms: ``layer_ms`` (one per layer call, in call order), quantize
    calls, other operators and VM overhead."""

    layer_ms: tuple[float, ...]
    quantize_ms: float
    ops_ms: float
    vm_ms: float
    layers: tuple[str, ...] = ()

    @property
    def layers_ms(self) -> float:
        return float(sum(self.layer_ms))

    @property
    def fixed_ms(self) -> float:
        """Everything but the layer kernels: quantize calls + other operators + VM overhead."""
        return self.quantize_ms + self.ops_ms + self.vm_ms

    @property
    def total_ms(self) -> float:
        return self.layers_ms + self.fixed_ms


class WholeModel:
    """Whole-model latency = layer kernels (``layer_model``) + :class:`FixedCosts` (see the module docstring).

    It is also a per-layer :class:`~tvm_mp.cost_models.base.CostModel`: :meth:`predict` is the layer model's
    (what search tables and report rows use); :meth:`predict_calls` gives the whole model.
    """

    def __init__(self, layer_model, fixed: FixedCosts, info: Mapping[str, Any] | None = None):
        if not callable(getattr(layer_model, "predict", None)):
            raise CostModelError("WholeModel needs a layer model with predict(workloads)")
        if not isinstance(fixed, FixedCosts):
            raise CostModelError("WholeModel needs FixedCosts")
        self.layer_model = layer_model
        self.fixed = fixed
        self.info = dict(info or {})

    @classmethod
    def fit(cls, model_records: Sequence, seed: int = 0, layer_model: str = "xgboost", rounds: int | None = None,
            quantile_rounds: int | None = None, counter=None, feature_sets: Sequence[str] = (),
            noise_weights: bool = False, params: Mapping[str, Any] | None = None) -> "WholeModel":
        """Train on model records (:class:`~tvm_mp.measure.records.ModelRecord`, put on one speed scale first):
        the layer model on their layer kernels as timed in the models (``layer_model`` "xgboost", or "analytical":
        the roofline calibrated on them), the fixed terms on their other calls and whole-model times.
        ``feature_sets``: optional feature groups of the XGBoost layer model
        (:data:`~tvm_mp.cost_models.features.FEATURE_SETS`); ``noise_weights``: weigh each layer kernel by how
        steady its timing was (:func:`noise_weight`); ``params``: XGBoost booster parameters over the defaults
        (e.g. ``{"nthread": 1}``: the same boosters, much faster on a CPU other processes share)."""
        from .analytical import AnalyticalModel
        from .features import KernelCounter
        from .xgb import DEFAULT_QUANTILE_ROUNDS, DEFAULT_ROUNDS, XGBCostModel

        model_records = [r for r in model_records if r.error is None]
        if not model_records:
            raise CostModelError("WholeModel.fit needs model records (tvm_mp.measure.in_model)")
        layers = [rec for r in model_records for rec in r.layer_records()]
        counter = counter or KernelCounter()
        if layer_model == "xgboost":
            weights = None
            if noise_weights:
                weights = [noise_weight(spread, ms) for r in model_records
                           for call, ms, spread in zip(r.calls.calls, r.call_ms,
                                                       r.call_spread_ms or (0.0,) * len(r.call_ms))
                           if call.role == "layer" and ms > 0]
            model = XGBCostModel.fit(layers, seed=seed, rounds=rounds or DEFAULT_ROUNDS,
                                     quantile_rounds=quantile_rounds or DEFAULT_QUANTILE_ROUNDS, counter=counter,
                                     feature_sets=feature_sets, weights=weights, params=params)
        elif layer_model == "analytical":
            model = AnalyticalModel.calibrated(layers, AnalyticalModel(counter=counter))
        else:
            raise CostModelError(f"layer_model={layer_model!r}: use 'xgboost' or 'analytical'")
        fixed = FixedCosts.fit([(r.calls, r.call_ms, r.latency_ms) for r in model_records])
        info = {"models": sorted({r.model for r in model_records}), "model_records": len(model_records),
                "layer_records": len(layers), "layer_model": layer_model, "seed": int(seed),
                "feature_sets": list(feature_sets), "noise_weights": bool(noise_weights)}
        return cls(model, fixed, info)

    def predict(self, workloads: Sequence[Workload]) -> Estimate:
        """Per-layer estimates of the layer model: latency of each kernel as the model runs it; energy as the layer
        model gives it (the shipped one: the analytical CPU energy model, labelled "modelled")."""
        return self.layer_model.predict(workloads)

    @property
    def description(self) -> str:
        """How reports name the predictor: what gives its latency and its energy, and what it was trained on."""
        kind = self.info.get("layer_model", type(self.layer_model).__name__)
        trained = f", {self.info['model_records']} built models" if self.info.get("model_records") else ""
        if self.info.get("cpu"):
            trained += f" on {self.info['cpu']}"
        other = f"; {self.info['trained_on_other_cpu']}" if self.info.get("trained_on_other_cpu") else ""
        return (f"WholeModel (latency: {kind} layer kernels timed inside built models + fixed terms{trained}; "
                f"energy: analytical CPU model{other})")

    def predict_calls(self, calls: RuntimeCalls) -> WholeModelEstimate:
        layer_calls = calls.of_role("layer")
        layer_ms = (self.layer_model.predict([c.workload for c in layer_calls]).latency_ms
                    if layer_calls else np.zeros(0))
        quantize = sum(self.fixed.call_ms(c) for c in calls.of_role("quantize"))
        ops = sum(self.fixed.call_ms(c) for c in calls.of_role("op"))
        return WholeModelEstimate(tuple(float(v) for v in layer_ms), float(quantize), float(ops),
                                  float(self.fixed.vm_ms(calls)), tuple(c.layer for c in layer_calls))

    # ---- files ----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        from .xgb import XGBCostModel

        if not isinstance(self.layer_model, XGBCostModel):
            raise CostModelError("only a WholeModel with an XGBCostModel layer model can be saved")
        return {"format": FORMAT, "version": FORMAT_VERSION, "fixed": self.fixed.to_dict(), "info": self.info,
                "layer_model": self.layer_model.to_dict(compact=True)}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), separators=(",", ":")))
        return path

    @classmethod
    def from_dict(cls, data: Mapping) -> "WholeModel":
        from .xgb import XGBCostModel

        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise CostModelError(f"not a tvm-mp whole-model predictor (format {FORMAT!r} expected)")
        if int(data.get("version", 0)) > FORMAT_VERSION:
            raise CostModelError(f"whole-model file version {data['version']} is newer than this tvm-mp: upgrade it")
        return cls(XGBCostModel.from_dict(data["layer_model"]), FixedCosts.from_dict(data["fixed"]),
                   data.get("info", {}))

    @classmethod
    def load(cls, path: str | Path) -> "WholeModel":
        try:
            data = json.loads(Path(path).read_text())
        except OSError as err:
            raise CostModelError(f"cannot read whole-model predictor {path}: {err.strerror}") from None
        except json.JSONDecodeError as err:
            raise CostModelError(f"whole-model predictor {path} is not valid JSON ({err})") from None
        return cls.from_dict(data)

    @classmethod
    def default(cls, cpu: str | None = None) -> "WholeModel":
        """The shipped predictor for ``cpu`` (default: this host's; see :func:`shipped_cpu_for`); its ``info``
        says which CPU it was trained on (``"cpu"``) and, when that is not ``cpu``, ``"trained_on_other_cpu"``
        (docs/bench_predict_model_<cpu>.md)."""
        from ..targets import host_cpu

        cpu = cpu or host_cpu()
        trained = shipped_cpu_for(cpu)
        text = resources.files("tvm_mp.cost_models").joinpath(default_model_name(trained)).read_text()
        model = cls.from_dict(json.loads(text))
        model.info["cpu"] = trained
        if trained != cpu:
            model.info["trained_on_other_cpu"] = (f"trained on {trained}, this CPU is {cpu}: latency predictions may "
                                                  "be far off; measured budgets correct them")
        return model


def default_model_name(cpu: str) -> str:
    """File name of the shipped predictor trained on ``cpu``."""
    return DEFAULT_MODEL.format(cpu=cpu)


def shipped_cpus() -> list[str]:
    """The CPUs a shipped predictor was trained on."""
    prefix, suffix = DEFAULT_MODEL.split("{cpu}")
    names = [f.name for f in resources.files("tvm_mp.cost_models").iterdir()]
    return sorted(n[len(prefix):-len(suffix)] for n in names if n.startswith(prefix) and n.endswith(suffix))


def shipped_cpu_for(cpu: str) -> str:
    """The shipped predictor's CPU for ``cpu``: itself when one was trained there, else the one whose vector
    features (:data:`_ISA_FEATURES`) agree with it most (ties: the first by name, as ``max`` keeps the first)."""
    shipped = shipped_cpus()
    if not shipped:
        raise CostModelError("this tvm-mp ships no host latency predictor: reinstall it")
    if cpu in shipped:
        return cpu
    from ..targets import parse

    def features(name: str) -> tuple[bool, ...]:
        target = parse({"kind": "llvm", "mcpu": name})
        return tuple(target.has(f) for f in _ISA_FEATURES)

    want = features(cpu)
    return max(shipped, key=lambda name: sum(a == b for a, b in zip(features(name), want)))
