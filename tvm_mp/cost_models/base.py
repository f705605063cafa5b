"""The one small interface of cost models: ``predict(workloads) -> Estimate`` for a batch.

A :class:`Workload` is one layer configuration a model can be asked about: the layer (op, shapes, strides,
padding, dilation, groups), its precision and kernel kind, the kernel's epilogue, the schedule knobs (none yet:
the default schedule), the compilation target and the device key. Measurement records (``tvm_mp.measure``) store
workloads with what was measured; every cost model takes a sequence of workloads and returns an
:class:`Estimate` with one latency and one energy per workload.

Models here are interchangeable: :class:`~tvm_mp.cost_models.analytical.AnalyticalModel` (roofline latency + event
energy), :class:`~tvm_mp.cost_models.xgb.XGBCostModel` (learned from records) and :class:`MeasuredModel` (any
measurement source -- the accelerator simulator, the host, a board over RPC -- used as an exact but slow model).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from .. import kinds
from ..errors import Error
from ..precision import Precision
from ..targets import arch_of_record
from ..workload import ConvParams

#: Layer operations a workload can describe (the ``LayerInfo.op`` values).
OPS = ("conv2d", "depthwise_conv2d", "dense")
#: Integer kernel kinds actually compiled ("auto" is resolved when a workload is made). Learned models and the
#: kernel event counter (:mod:`tvm_mp.cost_models.features`) know these only.
KERNEL_KINDS = kinds.KERNEL_KINDS
#: Number-format kinds (:mod:`tvm_mp.formats`): a reduced-precision float layer and a clustered-weight layer. A
#: workload of these kinds also carries its format (``exp_bits``/``man_bits``/``finite`` or ``clusters``).
FORMAT_KINDS = kinds.FORMAT_KINDS
#: Every kind a workload may have.
WORKLOAD_KINDS = KERNEL_KINDS + FORMAT_KINDS
#: What the kernel returns: the raw int32 accumulator, dequantized float32, or requantized uint8 codes.
EPILOGUES = kinds.EPILOGUES
#: How an energy figure was obtained. CPU energy is never measured here: it is "modelled" (events x table).
ENERGY_BASES = ("modelled", "simulated", "measured", "learned", "mixed")


class CostModelError(Error):
    """A workload, estimate, model file or record cannot be used as given."""


def _int_tuple(value, name: str) -> tuple[int, ...]:
    try:
        out = tuple(map(int, value))
    except (TypeError, ValueError):
        raise CostModelError(f"Workload.{name} must be a sequence of integers, got {value!r}") from None
    if not out or min(out) < 1:
        raise CostModelError(f"Workload.{name}={out} has a non-positive size; every dimension must be >= 1")
    return out


def require_kinds(workloads: Sequence["Workload"], kinds: Sequence[str], model: str) -> None:
    """Raise :class:`CostModelError` naming the first workload whose kind ``model`` cannot cost (never a wrong
    number): e.g. ``require_kinds(workloads, KERNEL_KINDS, "AnalyticalModel")``."""
    for w in workloads:
        if w.kind not in kinds:
            fmt = f" ({w.precision.format_name})" if w.kind in FORMAT_KINDS else ""
            hint = (" -- cost number formats with tvm_mp.cost_models.analytical.DatapathModel" if w.kind in FORMAT_KINDS
                    else "")
            raise CostModelError(f"{model} cannot cost kind {w.kind!r}{fmt} (workload {w}); it costs "
                                 f"{', '.join(kinds)}{hint}")


def target_family(target: str) -> str:
    """``"x86_64"``, ``"aarch64"`` or ``"accel"`` for a workload's target string (used as a model feature; the
    architecture word of :mod:`tvm_mp.targets`)."""
    return arch_of_record(target)


@dataclass(frozen=True)
class Workload:
    """One layer configuration to measure or predict.

    Shapes are NCHW / OIHW for conv2d (``params`` required), ``[N, K]`` / ``[OC, K]`` for dense (``params`` None).
    ``kind`` may be given as ``"auto"``; it is resolved with the rule of :class:`~tvm_mp.precision.Precision`.
    ``knobs`` are schedule knobs (a mapping of name -> int/float/str; empty = the default schedule), stored
    sorted. ``target`` is a tvm-mp target name ("llvm", "aarch64", "accel") or target JSON; ``device`` is the
    key of the device measured (``"host"``, an RPC key, a simulator name).
    Number formats: ``kind="float"`` with ``exp_bits``, ``man_bits`` (and ``finite``), or ``kind="clustered"``
    with ``clusters``; ``w_bits``/``a_bits`` as in :class:`~tvm_mp.precision.Precision` (use
    :meth:`from_layer`). Integer workloads leave those fields at their defaults (their keys are unchanged).
    """

    op: str
    input_shape: tuple[int, ...]
    weight_shape: tuple[int, ...]
    w_bits: int
    a_bits: int
    kind: str = "auto"
    params: ConvParams | None = None
    epilogue: str = "requant"
    knobs: Any = ()
    target: str = "llvm"
    device: str = "host"
    exp_bits: int | None = None
    man_bits: int | None = None
    finite: bool = False
    clusters: int | None = None

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise CostModelError(f"Workload.op={self.op!r} is unknown: use one of {', '.join(OPS)}")
        ins = _int_tuple(self.input_shape, "input_shape")
        wts = _int_tuple(self.weight_shape, "weight_shape")
        object.__setattr__(self, "input_shape", ins)
        object.__setattr__(self, "weight_shape", wts)
        try:
            prec = Precision(self.w_bits, self.a_bits, self.kind, self.exp_bits, self.man_bits, self.finite,
                             self.clusters)
        except Error as err:
            raise CostModelError(f"Workload precision: {err}") from None
        object.__setattr__(self, "kind", prec.resolved_kind)
        if self.epilogue not in EPILOGUES:
            raise CostModelError(f"Workload.epilogue={self.epilogue!r} is unknown: use one of {', '.join(EPILOGUES)}")
        if self.knobs:
            knobs = self.knobs.items() if isinstance(self.knobs, (dict, Mapping)) else self.knobs
            try:
                knobs = tuple(sorted((str(k), v) for k, v in knobs))
            except (TypeError, ValueError):
                raise CostModelError(f"Workload.knobs must be a mapping of knob name -> value, got {self.knobs!r}"
                                     ) from None
            for name, value in knobs:
                if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                    raise CostModelError(f"schedule knob {name!r}={value!r} must be an int, a float or a string")
            object.__setattr__(self, "knobs", knobs)
        else:
            object.__setattr__(self, "knobs", ())
        if not isinstance(self.target, str) or not self.target:
            raise CostModelError("Workload.target must be a non-empty string such as 'llvm', 'aarch64' or 'accel'")
        if not isinstance(self.device, str) or not self.device:
            raise CostModelError("Workload.device must be a non-empty device key such as 'host'")
        if self.op == "dense":
            self._check_dense(ins, wts)
        else:
            self._check_conv(ins, wts)

    def _check_dense(self, ins, wts) -> None:
        if self.params is not None:
            raise CostModelError("a dense workload takes no conv params: pass params=None")
        if len(ins) != 2 or len(wts) != 2 or ins[1] != wts[1]:
            raise CostModelError(f"dense workload needs input [N, K] and weight [OC, K] with the same K, got "
                                 f"{ins} and {wts}")

    def _check_conv(self, ins, wts) -> None:
        if not isinstance(self.params, ConvParams):
            raise CostModelError(f"a {self.op} workload needs params=ConvParams(strides, padding, dilation, groups)")
        if len(ins) != 4 or len(wts) != 4:
            raise CostModelError(f"{self.op} workload needs NCHW input and OIHW weight, got {ins} and {wts}")
        g = self.params.groups
        if ins[1] != g * wts[1] or wts[0] % g:
            raise CostModelError(f"{self.op} workload: input channels {ins[1]} must equal groups {g} x weight "
                                 f"channels {wts[1]}, and out channels {wts[0]} must be a multiple of groups")
        if self.op == "depthwise_conv2d" and (wts[1] != 1 or g != ins[1]):
            raise CostModelError("a depthwise_conv2d workload has groups == input channels and weight [C*m, 1, KH, KW]")
        oh, ow = self.params.output_hw(ins[2], ins[3], wts[2], wts[3])
        if oh < 1 or ow < 1:
            raise CostModelError(f"{self.op} workload has an empty output ({oh}x{ow}): enlarge the input or padding")

    # ---- derived quantities -----------------------------------------------------------------------------
    @cached_property
    def output_shape(self) -> tuple[int, ...]:
        if self.op == "dense":
            return (self.input_shape[0], self.weight_shape[0])
        oh, ow = self.params.output_hw(self.input_shape[2], self.input_shape[3], self.weight_shape[2],
                                       self.weight_shape[3])
        return (self.input_shape[0], self.weight_shape[0], oh, ow)

    @property
    def reduction(self) -> int:
        """Length of one output's dot product (Cg*KH*KW or K)."""
        return int(np.prod(self.weight_shape[1:]))

    @property
    def macs(self) -> int:
        return int(np.prod(self.output_shape)) * self.reduction

    @property
    def weight_count(self) -> int:
        return int(np.prod(self.weight_shape))

    @property
    def precision(self) -> Precision:
        return Precision(self.w_bits, self.a_bits, self.kind, self.exp_bits, self.man_bits, self.finite,
                         self.clusters)

    def to_dict(self) -> dict:
        data = {"op": self.op, "input_shape": list(self.input_shape), "weight_shape": list(self.weight_shape),
                "w_bits": self.w_bits, "a_bits": self.a_bits, "kind": self.kind, "epilogue": self.epilogue,
                "target": self.target, "device": self.device}
        if self.params is not None:
            p = self.params
            data.update(strides=list(p.strides), padding=list(p.padding), dilation=list(p.dilation), groups=p.groups)
        if self.knobs:
            data["knobs"] = dict(self.knobs)
        if self.kind == "float":
            data.update(exp_bits=self.exp_bits, man_bits=self.man_bits, finite=self.finite)
        elif self.kind == "clustered":
            data["clusters"] = self.clusters
        return data

    @classmethod
    def from_dict(cls, data: Mapping, params_cache: dict | None = None) -> "Workload":
        """The inverse of :meth:`to_dict`. ``params_cache`` (any dict) reuses equal ConvParams across calls."""
        if not isinstance(data, (dict, Mapping)):
            raise CostModelError(f"a workload must be a JSON object, got {type(data).__name__}")
        try:
            params = None
            if data["op"] != "dense":
                geo = (tuple(data["strides"]), tuple(data["padding"]), tuple(data["dilation"]), int(data["groups"]))
                params = params_cache.get(geo) if params_cache is not None else None
                if params is None:
                    params = ConvParams(*geo)
                    if params_cache is not None:
                        params_cache[geo] = params
            return cls(data["op"], tuple(data["input_shape"]), tuple(data["weight_shape"]), int(data["w_bits"]),
                       int(data["a_bits"]), data.get("kind", "auto"), params, data.get("epilogue", "requant"),
                       data.get("knobs", ()), data.get("target", "llvm"), data.get("device", "host"),
                       *(None if data.get(f) is None else int(data[f]) for f in ("exp_bits", "man_bits")),
                       bool(data.get("finite", False)), None if data.get("clusters") is None else int(data["clusters"]))
        except KeyError as err:
            raise CostModelError(f"workload field {err.args[0]!r} is missing in {dict(data)}") from None
        except Error as err:
            raise CostModelError(str(err)) from None

    @cached_property
    def layer_key(self) -> str:
        """Identity of the layer shape alone (op, shapes, geometry): what held-out splits group on."""
        geo = ""
        if self.params is not None:
            p = self.params
            geo = f";s{p.strides};p{p.padding};d{p.dilation};g{p.groups}"
        return f"{self.op};{self.input_shape};{self.weight_shape}{geo}"

    @cached_property
    def key(self) -> str:
        """Deterministic identity of the workload (records are deduplicated on it)."""
        knobs = json.dumps(dict(self.knobs), sort_keys=True) if self.knobs else ""
        kind = f"{self.kind}:{self.precision.format_name}" if self.kind in FORMAT_KINDS else self.kind
        return (f"{self.layer_key};w{self.w_bits}a{self.a_bits};{kind};{self.epilogue};{knobs};"
                f"{self.target};{self.device}")

    def replace(self, **changes) -> "Workload":
        """A copy with some fields changed (validated again)."""
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        fields.update(changes)
        return Workload(**fields)

    @classmethod
    def from_layer(cls, layer, precision: Precision, epilogue: str = "requant", knobs: Any = (),
                   target: str = "llvm", device: str = "host") -> "Workload":
        """The workload of a :class:`~tvm_mp.layers.LayerInfo` at ``precision``."""
        if not isinstance(precision, Precision):
            raise CostModelError("Workload.from_layer needs a Precision, e.g. Precision(4, 4)")
        return cls(layer.op, tuple(layer.input_shape), tuple(layer.weight_shape), precision.w_bits,
                   precision.a_bits, precision.resolved_kind, layer.params, epilogue, knobs, target, device,
                   precision.exp_bits, precision.man_bits, precision.finite, precision.clusters)

    def __str__(self) -> str:
        geo = ""
        if self.params is not None:
            p = self.params
            geo = f" s{p.strides[0]}x{p.strides[1]} p{','.join(map(str, p.padding))} g{p.groups}"
        prec = (f"{self.precision}/{self.kind}" if self.kind in FORMAT_KINDS
                else f"w{self.w_bits}a{self.a_bits}/{self.kind}")
        return (f"{self.op} in={self.input_shape} w={self.weight_shape}{geo} {prec}"
                f" epi={self.epilogue} @{self.target}/{self.device}")


def _as_vector(value, name: str, n: int | None) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 1:
        raise CostModelError(f"Estimate.{name} must be one value per workload (1-D), got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise CostModelError(f"Estimate.{name} has {arr.shape[0]} values for {n} workloads")
    if np.any(~np.isfinite(arr)) or np.any(arr < 0):
        raise CostModelError(f"Estimate.{name} must be finite and non-negative")
    arr.setflags(write=False)
    return arr


def _as_interval(value, name: str, n: int) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != (n, 2) or np.any(~np.isfinite(arr)) or np.any(arr[:, 0] > arr[:, 1]):
        raise CostModelError(f"Estimate.{name} must be an (n, 2) array of finite [low, high] bounds, low <= high")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True)
class Estimate:
    """Predicted latency (ms) and energy (µJ) of a batch of workloads, one value each, in workload order.

    ``energy_basis`` says where the energy figures come from: "modelled" (CPU event counts x energy table, never
    a measurement), "simulated" (the accelerator simulator), "measured", "learned" (a model trained on simulated
    or measured energy) or "mixed". Intervals, when a model gives them, are ``(n, 2)`` [low, high] bounds.
    """

    latency_ms: np.ndarray
    energy_uj: np.ndarray
    energy_basis: str = "modelled"
    latency_interval_ms: np.ndarray | None = None
    energy_interval_uj: np.ndarray | None = None
    notes: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        lat = _as_vector(self.latency_ms, "latency_ms", None)
        object.__setattr__(self, "latency_ms", lat)
        object.__setattr__(self, "energy_uj", _as_vector(self.energy_uj, "energy_uj", lat.shape[0]))
        if self.energy_basis not in ENERGY_BASES:
            raise CostModelError(f"Estimate.energy_basis={self.energy_basis!r}: use one of {', '.join(ENERGY_BASES)}")
        object.__setattr__(self, "latency_interval_ms",
                           _as_interval(self.latency_interval_ms, "latency_interval_ms", lat.shape[0]))
        object.__setattr__(self, "energy_interval_uj",
                           _as_interval(self.energy_interval_uj, "energy_interval_uj", lat.shape[0]))

    def __len__(self) -> int:
        return int(self.latency_ms.shape[0])

    @property
    def total_latency_ms(self) -> float:
        """Sum over the batch (layers run one after another)."""
        return float(self.latency_ms.sum())

    @property
    def total_energy_uj(self) -> float:
        return float(self.energy_uj.sum())

    @property
    def energy_label(self) -> str:
        """How to label energy figures when showing them (e.g. "energy (modelled)")."""
        return f"energy ({self.energy_basis})"


@runtime_checkable
class CostModel(Protocol):
    """Anything with ``predict(workloads) -> Estimate``."""

    def predict(self, workloads: Sequence[Workload]) -> Estimate:
        ...


class MeasuredModel:
    """A measurement source used as a cost model: exact for what it measures, and slow.

    ``source`` is a :class:`tvm_mp.measure.source.MeasureSource` (local host, RPC, accelerator simulator). Energy
    comes from the records when the source gives it (simulated or measured); otherwise from ``energy_model``
    (by default the modelled CPU energy), and the estimate is labelled accordingly.
    """

    def __init__(self, source, energy_model=None):
        self.source = source
        self.energy_model = energy_model

    def predict(self, workloads: Sequence[Workload]) -> Estimate:
        workloads = list(workloads)
        require_kinds(workloads, KERNEL_KINDS, f"{type(self).__name__} (measurement sources build integer kernels)")
        records = self.source.measure(workloads)
        failed = [r for r in records if r.error is not None]
        if failed:
            raise CostModelError(f"measuring {failed[0].workload} failed: {failed[0].error}")
        latency = np.array([r.latency_ms for r in records])
        bases = {r.energy_basis for r in records}
        if None not in bases:
            energy = np.array([r.energy_uj for r in records])
            basis = bases.pop() if len(bases) == 1 else "mixed"
            return Estimate(latency, energy, basis)
        if any(b is not None for b in bases):
            raise CostModelError("the source gave energy for some workloads only; measure them separately")
        if self.energy_model is None:
            from .energy_cpu import CpuEnergyModel

            self.energy_model = CpuEnergyModel()
        energy = self.energy_model.energy_uj(workloads)
        return Estimate(latency, energy, "modelled")


class PerTargetModel:
    """One model per target family behind one ``predict``: e.g. the learned host model for CPU workloads and
    the accelerator's own mapping model for accelerator workloads, in a mixed batch.

    ``models`` maps a target family ("x86_64", "aarch64", "accel"; see :func:`target_family`) to a
    :class:`CostModel`. The estimate's energy basis is the models' common one, or "mixed".
    """

    def __init__(self, models: Mapping[str, CostModel]):
        for family, model in models.items():
            if not callable(getattr(model, "predict", None)):
                raise CostModelError(f"the model for {family!r} has no predict(workloads) method")
        self.models = dict(models)

    def predict(self, workloads: Sequence[Workload]) -> Estimate:
        workloads = list(workloads)
        fams = [target_family(w.target) for w in workloads]
        latency, energy = np.zeros(len(workloads)), np.zeros(len(workloads))
        lat_iv = np.zeros((len(workloads), 2))
        have_iv = True
        bases = set()
        for fam in sorted(set(fams)):
            if fam not in self.models:
                raise CostModelError(f"no cost model for target family {fam!r}; this PerTargetModel has "
                                     f"{', '.join(self.models)}")
            idx = np.array([i for i, f in enumerate(fams) if f == fam])
            est = self.models[fam].predict([workloads[i] for i in idx])
            latency[idx], energy[idx] = est.latency_ms, est.energy_uj
            bases.add(est.energy_basis)
            if est.latency_interval_ms is None:
                have_iv = False
            else:
                lat_iv[idx] = est.latency_interval_ms
        basis = bases.pop() if len(bases) == 1 else ("mixed" if bases else "modelled")
        return Estimate(latency, energy, basis, lat_iv if have_iv and workloads else None)
