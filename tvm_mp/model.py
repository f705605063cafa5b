"""What a compile returns and what ``export`` writes: :class:`CompiledModel`, its :class:`Report`, and :func:`load`.

An artifact directory (``CompiledModel.export``) holds:

- ``model.so``: the executable (Relax VM), linked for the target (not for Cortex-M targets);
- ``bundle/``: for aarch64 the standalone C bundle (no TVM runtime, :mod:`tvm_mp.deploy.aarch64`); for Cortex-M
  the C of the network (:mod:`tvm_mp.deploy.cortexm`);
- ``quantized.json``: the quantized Relax module (TVM's JSON form), what :meth:`CompiledModel.reference` runs;
- ``accel/``: for the accelerator target, its hardware description, per-layer mappings, epilogues, weights and
  instruction listings (:mod:`tvm_mp.accel.target`);
- ``plan.json``, ``report.json`` / ``report.txt``, ``target.json``, ``inputs.json`` (input shapes and dtypes).

:func:`load` reads it back into a runnable :class:`CompiledModel` in a fresh process, without recompiling.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import struct
import sys
import uuid
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import tvm

from . import _tvm
from . import inputs as inputs_mod
from ._files import write_atomic
from .errors import Error, ToolchainError
from .inputs import InputSpec
from .layers import UnquantizableLayer
from .precision import PrecisionPlan
from .quantize.interpreter import Interpreter, concat_batches, index_guard, sample_blocks
from .targets import CompileTarget, parse


def _field_ok(value, kind) -> bool:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "count":
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if kind == "number":
        return number and value == value
    if kind == "optional number":
        return value is None or (number and value == value)
    if kind == "names":
        return isinstance(value, tuple) and all(isinstance(v, str) for v in value)
    return isinstance(value, {"text": str, "object": dict}[kind])


_KIND_WORDS = {"text": "a string", "count": "a non-negative integer", "number": "a number",
               "optional number": "a number or null", "names": "a list of layer names", "object": "an object"}


#: What each report field read from a file must hold (its annotation, as :func:`_check_fields` checks it).
_FIELD_KINDS = {"name": "text", "op": "text", "precision": "text", "kernel": "text", "macs": "count",
                "weight_bytes": "count", "fp32_weight_bytes": "count", "latency_ms": "optional number",
                "energy_uj": "optional number", "arithmetic": "text", "memory_kb": "number",
                "accuracy": "optional number", "fp32_layers": "names", "cost_model": "text", "latency_basis": "text",
                "energy_basis": "text", "target": "text", "deployment": "object",
                "accelerator": "object"}


def _check_fields(obj, where: str) -> None:
    """Raise TypeError naming the first field of a report (row) read from a file that has the wrong type."""
    for f in fields(obj):
        kind = _FIELD_KINDS.get(f.name)
        if kind is not None and not _field_ok(getattr(obj, f.name), kind):
            raise TypeError(f"{where}: {f.name}={getattr(obj, f.name)!r} is not {_KIND_WORDS[kind]}")


#: Files an exported artifact directory holds (``load`` needs all but the report text; ``model.so`` only for
#: targets TVM builds).
ARTIFACT_FILES = ("model.so", "quantized.json", "plan.json", "report.json", "target.json", "inputs.json")


@dataclass(frozen=True)
class LayerReport:
    """One row of a compile report. ``latency_ms`` / ``energy_uj`` are None until measured or modelled."""

    name: str
    op: str
    precision: str  # "w4a4", "e5m10", "c16a8", or "fp32"
    kernel: str  # "bitserial", "packed", "float:e5m10", "clustered:K16" or "fp32"
    macs: int
    weight_bytes: int  # bytes of the weight constant as stored in the artifact
    fp32_weight_bytes: int
    latency_ms: float | None = None
    energy_uj: float | None = None
    arithmetic: str = ""  # "int32", "table" (clustered), "emulated" (float formats: fp32 on rounded operands), "fp32"
    #: The schedule knobs the layer's kernel was built with (KernelConfig as a dict; None: no tunable kernel) and
    #: where they came from: "tuned (user database)", "tuned (shipped)", "tuned (FILE)" or "default".
    schedule: dict | None = None
    schedule_source: str = ""

    @property
    def weight_ratio(self) -> float:
        return self.weight_bytes / self.fp32_weight_bytes


@dataclass(frozen=True)
class LayerWhy:
    """Why one layer got its bits: its sensitivity and the reason, as a sentence.

    ``sensitivity``: the network's output noise-to-signal power ratio with this layer alone quantized at
    ``PlanExplanation.sensitivity_option`` (every other layer fp32; the search's per-layer proxy), ``rank`` its place
    among the layers (1 = the most sensitive). ``noise``: the same ratio at the layer's chosen option (None for fp32).
    """

    name: str
    precision: str
    sensitivity: float
    rank: int
    reason: str
    noise: float | None = None

    def __post_init__(self) -> None:
        for key in ("name", "precision", "reason"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise Error(f"LayerWhy.{key} must be a non-empty string")
        if not _field_ok(self.sensitivity, "number") or self.sensitivity < 0:
            raise Error(f"LayerWhy.sensitivity={self.sensitivity!r} must be a non-negative number")
        if not isinstance(self.rank, int) or isinstance(self.rank, bool) or self.rank < 1:
            raise Error(f"LayerWhy.rank={self.rank!r} must be a positive integer")
        if not _field_ok(self.noise, "optional number"):
            raise Error(f"LayerWhy.noise={self.noise!r} must be a number or None")


@dataclass(frozen=True)
class PlanExplanation:
    """How a plan was chosen, per layer (:class:`LayerWhy`), and what the plan scores on the user's data.

    ``source``: "budget search" (the budget it met is ``budget``) or "plan". ``sensitivity_option``: the option every
    layer's sensitivity is measured at (one option for all, so the ranks compare layers); ``sensitivity_basis``: how.
    ``score_name``: what the scores are (``accuracy_fn`` on the user's data, or agreement with fp32 on the
    calibration data); ``fp32_score`` / ``plan_score``: of the unquantized network and of the plan on the NumPy
    reference (the built model's own is :attr:`Report.accuracy`).
    """

    source: str
    layers: tuple[LayerWhy, ...]
    sensitivity_option: str
    sensitivity_basis: str
    budget: str = ""
    score_name: str = ""
    fp32_score: float | None = None
    plan_score: float | None = None

    def __post_init__(self) -> None:
        rows = tuple(self.layers)
        if not all(isinstance(r, LayerWhy) for r in rows):
            raise Error("PlanExplanation.layers holds LayerWhy records")
        object.__setattr__(self, "layers", rows)
        for key in ("source", "sensitivity_option", "sensitivity_basis", "budget", "score_name"):
            if not isinstance(getattr(self, key), str):
                raise Error(f"PlanExplanation.{key} must be a string")
        for key in ("fp32_score", "plan_score"):
            if not _field_ok(getattr(self, key), "optional number"):
                raise Error(f"PlanExplanation.{key}={getattr(self, key)!r} must be a number or None")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["layers"] = [asdict(r) for r in self.layers]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "PlanExplanation":
        if not isinstance(data, dict) or not isinstance(data.get("layers"), list):
            raise TypeError("explanation is not an object with a list of layers")
        rows = tuple(LayerWhy(**r) if isinstance(r, dict) else r for r in data["layers"])
        return cls(**{**data, "layers": rows})

    def lines(self) -> list[str]:
        """The text the report prints: a head line, then one line per layer."""
        head = f"why each layer got its bits ({self.source}"
        head += f", {self.budget})" if self.budget else ")"
        scores = []
        if self.fp32_score is not None:
            scores.append(f"fp32 {self.fp32_score:.4g}")
        if self.plan_score is not None:
            scores.append(f"this plan {self.plan_score:.4g} (NumPy reference)")
        if scores:
            head += f"; {self.score_name or 'score'}: " + ", ".join(scores)
        out = [head, f"  sensitivity = {self.sensitivity_basis}; rank 1 = most sensitive"]
        width = max((len(r.name) for r in self.layers), default=5)
        out += [f"  {r.name:<{width}} {r.precision:<6} sens {r.sensitivity:.2e} (rank {r.rank}/{len(self.layers)}): "
                f"{r.reason}" for r in self.layers]
        return out


@dataclass(frozen=True)
class Report:
    """What was compiled: per-layer rows and totals (None where unknown).

    ``cost_model`` names the model that gave the latency and energy figures; ``latency_basis`` and ``energy_basis`` say
    whether each total is "modelled" (predicted) or "measured". ``fp32_layers`` are the quantizable layers the plan left
    in fp32; ``unquantizable`` the conv / matmul ops tvm-mp cannot quantize, each with its reason (they run unquantized
    as TVM builds them and have no row in ``layers``). ``fixed_latency_ms``: the part of ``latency_ms`` outside the
    layer rows (quantize calls, other operators, VM overhead), when the cost model predicts the whole inference (None:
    ``latency_ms`` is the sum of the rows).
    """

    layers: tuple[LayerReport, ...]
    memory_kb: float
    energy_uj: float | None = None
    latency_ms: float | None = None
    accuracy: float | None = None
    fp32_layers: tuple[str, ...] = field(default=())
    cost_model: str = ""
    latency_basis: str = ""
    energy_basis: str = ""
    target: str = ""
    #: Figures of the deployed artifact (Cortex-M: code_bytes, weight_bytes, activation_bytes, ram_bytes,
    #: instructions with instructions_basis "emulated instructions (...)"); empty for other targets.
    deployment: dict = field(default_factory=dict)
    unquantizable: tuple[UnquantizableLayer, ...] = field(default=())
    fixed_latency_ms: float | None = None
    #: Accelerator builds (target "accel"): hardware, clock, total cycles and energy, energy per component
    #: (``components_uj``), and per accelerator layer its mapping, cycles, energy and components; ``cpu_layers``
    #: lists the planned layers left on the host CPU. Empty for other targets.
    accelerator: dict = field(default_factory=dict)
    #: Why each layer got its bits (:class:`PlanExplanation`; a budget compile fills it), None otherwise.
    explanation: PlanExplanation | None = None

    def __post_init__(self) -> None:
        if self.explanation is not None and not isinstance(self.explanation, PlanExplanation):
            raise Error(f"Report.explanation is a PlanExplanation or None, got {type(self.explanation).__name__}")
        entries = tuple(self.unquantizable)
        for entry in entries:
            if not isinstance(entry, UnquantizableLayer):
                raise Error(f"Report.unquantizable holds UnquantizableLayer records, got {type(entry).__name__}")
        object.__setattr__(self, "unquantizable", entries)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["layers"] = [asdict(row) for row in self.layers]
        data["unquantizable"] = [entry.to_dict() for entry in self.unquantizable]
        data["explanation"] = None if self.explanation is None else self.explanation.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Report":
        """The report ``to_dict`` wrote (unknown keys are refused with the file's fix)."""
        try:
            if not isinstance(data, dict):
                raise TypeError(f"a {type(data).__name__}, not an object")
            if not isinstance(data.get("layers"), list):
                raise TypeError("no list of layers")
            rows = []
            for i, row in enumerate(data["layers"]):
                if not isinstance(row, dict):
                    raise TypeError(f"layer {i} is a {type(row).__name__}, not an object")
                rows.append(LayerReport(**row))
                _check_fields(rows[-1], f"layer {i} ({row.get('name')!r})")
            known = {f.name for f in fields(cls)} - {"layers"}
            extra = sorted(set(data) - known - {"layers"})
            if extra:
                raise TypeError(f"unknown field(s) {', '.join(extra)}")
            rest = {k: v for k, v in data.items() if k in known}
            if not isinstance(rest.get("fp32_layers", []), (list, tuple)):
                raise TypeError("fp32_layers is not a list")
            rest["fp32_layers"] = tuple(rest.get("fp32_layers", ()))
            rest["unquantizable"] = tuple(UnquantizableLayer.from_dict(e) for e in rest.get("unquantizable", ()))
            if rest.get("explanation") is not None:
                rest["explanation"] = PlanExplanation.from_dict(rest["explanation"])
            report = cls(tuple(rows), **rest)
            _check_fields(report, "the report")
            return report
        except (KeyError, TypeError, Error) as err:
            raise Error(f"report.json is not a tvm-mp report ({err}); re-export the model") from None

    def with_accuracy(self, accuracy: float | None) -> "Report":
        return replace(self, accuracy=accuracy)

    def __str__(self) -> str:
        costs = any(r.latency_ms is not None for r in self.layers)
        head = (f"{'layer':<12} {'op':<17} {'bits':<6} {'kernel':<10} {'MACs':>10} {'weight B':>9} {'fp32 B':>9} "
                f"{'ratio':>7}" + (f" {'ms':>9} {'uJ':>9}" if costs else ""))
        lines = [head, "-" * len(head)]

        def cost_cols(r) -> str:
            if not costs:
                return ""
            return "".join(f" {'-' if v is None else f'{v:.4f}':>9}" for v in (r.latency_ms, r.energy_uj))

        for r in self.layers:
            lines.append(f"{r.name:<12} {r.op:<17} {r.precision:<6} {r.kernel:<10} {r.macs:>10} {r.weight_bytes:>9} "
                         f"{r.fp32_weight_bytes:>9} {r.weight_ratio:>7.4f}{cost_cols(r)}")
        total_w = sum(r.weight_bytes for r in self.layers)
        total_f = sum(r.fp32_weight_bytes for r in self.layers)
        lines.append("-" * len(head))
        lines.append(f"{'total':<12} {'':<17} {'':<6} {'':<10} {sum(r.macs for r in self.layers):>10} {total_w:>9} "
                     f"{total_f:>9} {total_w / max(total_f, 1):>7.4f}")
        extras = [f"weight memory {self.memory_kb:.2f} kB"]
        for label, value, unit, basis in (("latency", self.latency_ms, "ms", self.latency_basis),
                                          ("energy", self.energy_uj, "uJ", self.energy_basis),
                                          ("accuracy", self.accuracy, "", "")):
            text = "n/a" if value is None else f"{value:.4g} {unit}".strip()
            if label == "latency" and value is not None and self.fixed_latency_ms is not None:
                basis = f"{basis}; layers {value - self.fixed_latency_ms:.4g} + fixed {self.fixed_latency_ms:.4g} ms"
            extras.append(f"{label} {text}{f' ({basis})' if basis and value is not None else ''}")
        lines.append("; ".join(extras))
        if self.cost_model:
            lines.append(f"costs from {self.cost_model}" + (f" for {self.target}" if self.target else ""))
        sources: dict[str, int] = {}
        for r in self.layers:
            if r.schedule_source:
                sources[r.schedule_source] = sources.get(r.schedule_source, 0) + 1
        if sources:
            lines.append("kernel schedules: " + ", ".join(f"{n} {src}" for src, n in sorted(sources.items())))
        if self.deployment:
            d = self.deployment

            def fig(key: str, unit: str = " B") -> str:
                return "n/a" if d.get(key) is None else f"{d[key]}{unit}"

            lines.append(f"{self.target}: code {fig('code_bytes')}; RAM {fig('ram_bytes')} (weights "
                         f"{fig('weight_bytes')} + peak activations {fig('activation_bytes')}); "
                         f"{fig('instructions', '')} {d.get('instructions_basis', 'instructions')} per inference")
        if self.accelerator:
            a = self.accelerator
            comp = ", ".join(f"{c} {v:.4g}" for c, v in sorted(a["components_uj"].items(), key=lambda kv: -kv[1])
                             if v > 0)
            lines.append(f"accelerator {a['hardware']} at {a['clock_mhz']:g} MHz: {a['cycles']} cycles, "
                         f"{a['energy_uj']:.4g} uJ ({comp} uJ)")
            for entry in a["layers"]:
                lines.append(f"  {entry['name']:<12} {entry['precision']:<6} {entry['cycles']:>9} cycles "
                             f"{entry['energy_uj']:>9.4f} uJ  {entry['mapping']}; output {entry['output']}")
            if a.get("cpu_layers"):
                lines.append(f"  on the host CPU: {', '.join(a['cpu_layers'])}")
            if a.get("edges"):
                from .accel.report import edge_line

                lines.append(f"  edges between accelerator layers ({sum(e['onchip'] for e in a['edges'])} of "
                             f"{len(a['edges'])} on chip):")
                lines.extend(f"    {edge_line(e)}" for e in a["edges"])
        if self.unquantizable:
            lines.append(f"not quantized ({len(self.unquantizable)} conv / matmul op"
                         f"{'s' if len(self.unquantizable) > 1 else ''} tvm-mp cannot quantize; "
                         f"{'they run' if len(self.unquantizable) > 1 else 'it runs'} as TVM builds "
                         f"{'them' if len(self.unquantizable) > 1 else 'it'}):")
            lines.extend(f"  {entry.summary}" for entry in self.unquantizable)
        emulated = [r.name for r in self.layers if r.arithmetic == "emulated"]
        if emulated:
            lines.append(f"float formats emulated on this target (float32 arithmetic on operands rounded exactly to "
                         f"the format): {', '.join(emulated)}")
        if self.explanation is not None:
            lines.extend(self.explanation.lines())
        return "\n".join(lines)


def check_inputs(inputs, input_specs) -> list[np.ndarray]:
    """``inputs`` (positional, in ``main``'s order) checked against the model's inputs and converted to their
    dtypes; ``input_specs`` are :class:`~tvm_mp.inputs.InputSpec` s (plain shapes mean float32 inputs). The rules
    are :mod:`tvm_mp.inputs`'."""
    return inputs_mod.check_inputs(list(inputs), input_specs)


def input_specs(quantized: tvm.IRModule) -> list[InputSpec]:
    """Name, shape and dtype of each parameter of ``main``."""
    return [InputSpec(_tvm.var_name(p), _tvm.expr_shape(p), _tvm.expr_dtype(p)) for p in quantized["main"].params]


def _one_line(text) -> str:
    return " ".join(str(text).split())


def accuracy_value(value) -> float:
    """What ``accuracy_fn`` returned, as a float: a real number (Python or NumPy scalar, or a 0-d array), finite.

    Any finite real is accepted (higher is better; a percentage above 1 is fine and is reported as given). ``None``,
    ``bool``, strings, arrays of more than one element and NaN/Inf are refused with one line."""
    raw = value
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    hint = "it must return one finite number (higher is better), e.g. float(np.mean(predictions == labels))"
    if isinstance(value, np.ndarray):
        raise Error(f"accuracy_fn returned an array of shape {value.shape}; {hint}")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        shown = repr(raw) if len(repr(raw)) <= 60 else f"a {type(raw).__name__}"
        raise Error(_one_line(f"accuracy_fn returned {shown} ({type(raw).__name__}); {hint}"))
    out = float(value)
    if not math.isfinite(out):
        raise Error(f"accuracy_fn returned {out}; {hint}")
    return out


def call_accuracy_fn(accuracy_fn, model) -> float:
    """``accuracy_fn(model)`` checked by :func:`accuracy_value`; an exception it raises becomes one-line
    :class:`~tvm_mp.errors.Error` naming accuracy_fn, chained to the original (``__cause__``)."""
    if not callable(accuracy_fn):
        raise Error(f"accuracy_fn must be a function taking the model and returning a number, got "
                    f"{type(accuracy_fn).__name__}")
    try:
        value = accuracy_fn(model)
    except Exception as err:  # the user's code: keep it as the cause, say where it came from
        name = getattr(accuracy_fn, "__qualname__", type(accuracy_fn).__name__)
        raise Error(_one_line(f"accuracy_fn ({name}) raised {type(err).__name__}: {err}; fix accuracy_fn (the "
                              "original exception is chained as __cause__)")) from err
    return accuracy_value(value)


#: What an artifact directory may hold (``export`` replaces these and refuses to write among other files).
#: What ``tvm-mp report`` renders from an export (:mod:`tvm_mp.reporting`): derived files, replaced with it.
RENDERED_FILES = ("report.md", "weights.png", "pareto.png", "energy_by_layer.png", "predicted_vs_measured.png")
EXPORT_NAMES = frozenset(ARTIFACT_FILES) | {"report.txt", "bundle", "accel"} | frozenset(RENDERED_FILES)


def check_export_dir(directory, names: frozenset[str] = EXPORT_NAMES) -> Path:
    """The directory ``export`` may write: new, empty, or holding a previous export (only ``names``, by default
    :data:`EXPORT_NAMES`), under an existing directory or a path that can be created. Anything else raises one line
    saying why."""
    if isinstance(directory, bytes):
        directory = directory.decode(errors="replace")
    if not isinstance(directory, (str, os.PathLike)) or not str(directory).strip():
        raise Error(f"export needs a directory path, got {directory!r}")
    out = Path(directory)
    if out.exists() and not out.is_dir():
        raise Error(f"cannot export to {out}: it is a file; give a directory (new, empty, or a previous export)")
    if out.is_dir():
        try:
            foreign = sorted(p.name for p in out.iterdir() if p.name not in names)
        except OSError as err:
            raise Error(f"cannot export to {out}: {err.strerror or err}") from None
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise Error(_one_line(f"cannot export to {out}: it holds files that are not a tvm-mp export ({shown}); "
                                  "give a new or empty directory (a previous export is replaced)"))
        return out
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise Error(f"cannot export to {out}: {parent} is a file, not a directory")
    return out


def _move_into(tmp: Path, out: Path, names: frozenset[str] = EXPORT_NAMES) -> None:
    """Replace the export in ``out`` (new, empty or a previous export) by the one written in ``tmp``: each file
    renamed over its previous version (atomic), then the previous export's files the new one lacks removed."""
    if not out.exists():
        os.rename(tmp, out)
        return
    new = {item.name for item in tmp.iterdir()}
    for item in tmp.iterdir():
        dest = out / item.name
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        os.replace(item, dest)
    for name in names:  # the previous export's files (a bundle/ from another target included)
        old = out / name
        if name in new:
            continue
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        elif old.exists() or old.is_symlink():
            old.unlink()
    tmp.rmdir()


def export_directory(directory, write: Callable[[Path], None], names: frozenset[str] = EXPORT_NAMES) -> Path:
    """Export into ``directory`` (checked by :func:`check_export_dir` against ``names``): ``write(tmp)`` fills a
    temporary directory next to it, whose files then replace the previous export's one by one (each rename atomic),
    so a failed export leaves ``directory`` as it was; an OS error is one line naming where. A missing cross
    compiler (:class:`~tvm_mp.errors.ToolchainError`) delivers what was written without it, then is raised."""
    out = check_export_dir(directory, names)
    tmp = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            write(tmp)
        except ToolchainError:  # no cross linker: deliver what needs none (the aarch64 bundle), then say so
            _move_into(tmp, out, names)
            tmp = None
            raise
        _move_into(tmp, out, names)
        tmp = None
    except OSError as err:
        where = err.filename if err.filename and tmp is not None and str(tmp) not in str(err.filename) \
            else out.parent
        raise Error(_one_line(f"cannot export to {out}: cannot write in {where} ({err.strerror or err}); give "
                              "a directory you can write")) from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


class CompiledModel:
    """A built model: ``run`` it on NumPy arrays; ``reference`` runs the NumPy reference of the same plan.

    ``lowered`` is the Relax module that was built (None for a model read back by :func:`load`);
    ``quantized_module`` the quantized module the reference runs. ``inputs`` lists the model's inputs
    (:class:`~tvm_mp.inputs.InputSpec`: name, compiled shape, dtype); what ``run`` and ``reference`` accept is
    defined in :mod:`tvm_mp.inputs` (and ``docs/inputs.md``).
    """

    def __init__(self, lowered: tvm.IRModule | None, quantized: tvm.IRModule, executable, plan: PrecisionPlan,
                 report: Report, target: CompileTarget, input_shapes: Sequence[tuple[int, ...]] | None = None):
        self.lowered = lowered
        self.quantized_module = quantized
        self.executable = executable
        self.plan = plan
        self.report = report
        self.target = target
        self._vm = None
        self._specs = input_specs(quantized)
        if input_shapes is not None and [tuple(int(v) for v in s) for s in input_shapes] != self.input_shapes:
            raise Error(f"input shapes {list(input_shapes)} do not match the model's {self.input_shapes}")
        #: The artifact directory a model read back by :func:`load` came from (None for a fresh compile).
        self.source: Path | None = None
        self._not_here: str | None = None
        self._guard = None
        #: The accelerator runtime of an accelerator build (:class:`tvm_mp.accel.target.AccelRuntime`; its ``last``
        #: holds each accelerator layer's figures of the last run), else None.
        self.accel = None

    @property
    def inputs(self) -> list[InputSpec]:
        """The model's inputs, in ``main``'s order."""
        return list(self._specs)

    @property
    def input_shapes(self) -> list[tuple[int, ...]]:
        return [s.shape for s in self._specs]

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self._specs]

    @property
    def input_dtypes(self) -> list[str]:
        return [s.dtype for s in self._specs]

    def _check(self, inputs, named=None) -> list[np.ndarray]:
        arrays = inputs_mod.check_inputs(inputs_mod.bind_inputs(inputs, named or {}, self._specs), self._specs)
        if self._guard is None:
            self._guard = index_guard(self.quantized_module) or (lambda arrays: None)
        self._guard(arrays)
        return arrays

    def _why_not_here(self) -> str:
        """Why this model's code cannot run on this machine ("" when it can)."""
        if self._not_here is None:
            hint = ("run it there (export writes what to copy), use reference() here, or compile with "
                    "target='host' to run it here")
            if not self.target.is_host:
                self._not_here = f"this model is built for {self.target}, not for this machine: {hint}"
            elif missing := self.target.missing_host_features():
                shown = ", ".join(missing[:4]) + (", ..." if len(missing) > 4 else "")
                self._not_here = (f"this model is built for CPU {self.target.mcpu or 'llvm'} whose features "
                                  f"{shown} this machine's CPU lacks: {hint}")
            elif self.executable is None:
                self._not_here = "this model holds no executable: compile it again, or use reference()"
            else:
                self._not_here = ""
        return self._not_here

    def run(self, *inputs, **named) -> np.ndarray:
        """Run on NumPy inputs, by position (``main``'s order) or by name (one dict, or keywords).

        A batch that is a multiple of the compiled one runs sample-block by sample-block (exactly as
        :meth:`reference` cuts it). Bad inputs raise one line (:mod:`tvm_mp.inputs`: NaN/Inf, complex and
        strings are refused; integer inputs run with their own dtype)."""
        arrays = self._check(inputs, named)
        reason = self._why_not_here()
        if reason:
            raise Error(reason)
        if self._vm is None:
            self._vm = _tvm.vm(self.executable)
        blocks = sample_blocks(self.quantized_module, arrays)
        if blocks is None:
            return _tvm.run_relax(self._vm, arrays)
        return concat_batches([_tvm.run_relax(self._vm, block) for block in blocks])

    def reference(self, *inputs, **named) -> np.ndarray:
        """The NumPy reference of the same plan (no TVM): integer layers bit-exact with :meth:`run`. Takes the
        inputs as :meth:`run` does and refuses the same ones."""
        return Interpreter(self.quantized_module, quantized=True).run(self._check(inputs, named))

    def export(self, directory: str | Path) -> Path:
        """Write the artifact directory (see module docstring); :func:`load` reads it back.

        ``directory`` may be new (parents are created), empty, or a previous export, which is replaced as a
        whole (its files, including a ``bundle/`` of another target, are removed). A directory holding any other
        file is refused, as is a path that is (or is under) a file or that cannot be written. Everything is
        written to a temporary directory next to it first, so a failed export leaves ``directory`` as it was
        (except a missing cross compiler, :class:`~tvm_mp.errors.ToolchainError`: what was written without it, the
        aarch64 ``bundle/``, is delivered before the error).
        A model read back by :func:`load` exports by copying its ``model.so`` / ``bundle/``."""
        return export_directory(directory, self._write)

    def _write(self, out: Path) -> None:
        if self.source is not None and self.lowered is None:  # read back by load: copy what cannot be rebuilt
            for name in ("model.so", "bundle", "accel"):
                src = self.source / name
                if src.is_dir():
                    shutil.copytree(src, out / name)
                elif src.is_file():
                    shutil.copy2(src, out / name)
                elif name == "model.so" and self.target.builds_with_tvm:
                    raise Error(f"cannot export: {src} is gone since tvm_mp.load read it; export from the "
                                "compiled model or copy the artifact directory")
        else:
            self.target.export(self, out)
        # each file written atomically too: a kill mid-write never leaves a part of a file, even in the
        # temporary directory that replaces the previous export
        write_atomic(out / "quantized.json", tvm.ir.save_json(self.quantized_module))
        write_atomic(out / "plan.json", self.plan.to_json())
        write_atomic(out / "report.json", json.dumps(self.report.to_dict(), indent=2))
        write_atomic(out / "report.txt", str(self.report) + "\n")
        write_atomic(out / "target.json", json.dumps(self.target.to_json(), indent=2))
        write_atomic(out / "inputs.json", json.dumps({"shapes": [list(s.shape) for s in self._specs],
                                                     "inputs": [s.to_json() for s in self._specs]}))


def _damaged(src: Path, name: str, why) -> Error:
    if isinstance(why, Error):  # its own fix ("write the plan as ...") is not the fix for a damaged artifact
        why = str(why).split("; ")[0]
    return Error(_one_line(f"{src / name} is damaged ({why}); re-export the model"))


def _target_of(src: Path) -> CompileTarget:
    try:
        return parse(json.loads((src / "target.json").read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, Error) as err:
        raise _damaged(src, "target.json", err) from None


#: ELF ``e_machine`` of the architectures tvm-mp builds for (``platform.machine()`` names).
_ELF_MACHINES = {62: "x86_64", 183: "aarch64", 40: "arm", 3: "i386"}


def check_shared_library(path: Path, target: CompileTarget) -> None:
    """Refuse, before it is loaded, a ``model.so`` that would crash the process or cannot run here: not an ELF
    file, cut short (a truncated library makes ``dlopen`` fault), or built for another machine. Linux only."""
    if not sys.platform.startswith("linux"):
        return
    data = path.read_bytes()
    size = len(data)
    if size < 64 or data[:4] != b"\x7fELF":
        raise _damaged(path.parent, path.name, f"not a shared library: {size} bytes without an ELF header")
    if data[4] != 2 or data[5] != 1:
        raise _damaged(path.parent, path.name, "not a 64-bit little-endian ELF file")
    machine = struct.unpack_from("<H", data, 18)[0]
    arch = _ELF_MACHINES.get(machine, f"ELF machine {machine}")
    here = platform.machine()
    if here in _ELF_MACHINES.values() and arch != here:
        raise Error(f"{path} is built for {arch}, not for this machine ({here}), though target.json says "
                    f"{target.name}: run it on {arch}, or re-export the model")
    phoff, shoff = struct.unpack_from("<QQ", data, 32)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", data, 54)
    need = max(phoff + phentsize * phnum, shoff + shentsize * shnum)
    if need <= size:
        for i in range(phnum):
            offset, filesz = struct.unpack_from("<Q", data, phoff + i * phentsize + 8)[0], \
                struct.unpack_from("<Q", data, phoff + i * phentsize + 32)[0]
            need = max(need, offset + filesz)
    if need > size:
        raise _damaged(path.parent, path.name, f"truncated: {size} bytes of at least {need}")


def load(directory: str | Path) -> CompiledModel:
    """The runnable model (with its plan and report) that :meth:`CompiledModel.export` wrote to ``directory``.

    Every file is checked before use: a missing, cut or garbled file, or a ``model.so`` built for another machine,
    raises one line naming it (nothing is loaded that could crash the process). A model whose target is not this
    machine (aarch64, Cortex-M, CUDA, or a CPU with features this one lacks) loads without its executable:
    ``reference`` works, ``run`` says where to run it."""
    if isinstance(directory, bytes):
        directory = directory.decode(errors="replace")
    if not isinstance(directory, (str, os.PathLike)) or not str(directory).strip():
        raise Error(f"tvm_mp.load needs the path of an artifact directory, got {directory!r}")
    src = Path(directory)
    hint = "give the directory CompiledModel.export (or tvm-mp compile -o) wrote"
    if not src.exists():
        raise Error(f"{src} is not a directory (it does not exist): {hint}")
    if not src.is_dir():
        raise Error(f"{src} is not a directory (it is a file): {hint}")
    missing = [name for name in ARTIFACT_FILES if not (src / name).is_file()]
    if "target.json" not in missing:
        target = _target_of(src)
        if not target.builds_with_tvm and "model.so" in missing:  # a C target (Cortex-M) has none
            missing.remove("model.so")
    if missing:
        raise Error(f"{src} is not a tvm-mp artifact: {', '.join(missing)} missing; re-export the model")
    name = "plan.json"
    try:
        plan = PrecisionPlan.from_json((src / name).read_text())
        name = "report.json"
        report = Report.from_dict(json.loads((src / name).read_text()))
        name = "inputs.json"
        shapes = [tuple(int(d) for d in s) for s in json.loads((src / name).read_text())["shapes"]]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError,
            Error) as err:
        raise _damaged(src, name, err) from None
    except OSError as err:
        raise Error(f"cannot read {src / name}: {err.strerror or err}") from None
    try:
        quantized = tvm.ir.load_json((src / "quantized.json").read_text())
        if not isinstance(quantized, tvm.IRModule) or "main" not in [g.name_hint for g in quantized.get_global_vars()]:
            raise TypeError(f"holds a {type(quantized).__name__}, not a module with main")
        specs = input_specs(quantized)
    except Exception as err:  # TVM's own error types
        raise _damaged(src, "quantized.json", _tvm.error_line(err)) from None
    if [s.shape for s in specs] != shapes:
        raise _damaged(src, "inputs.json", f"shapes {shapes} but the model's inputs are "
                                           f"{[s.shape for s in specs]}")
    model = CompiledModel(None, quantized, None, plan, report, target)
    model.source = src
    if target.kind == "accel":  # the accelerator's layers: their packed functions are named in model.so
        from .accel.target import AccelRuntime

        model.accel = AccelRuntime.read(src)
        model.accel.register()
    if target.is_host and not target.missing_host_features():
        so = src / "model.so"
        check_shared_library(so, target)
        try:
            model.executable = tvm.runtime.load_module(str(so))
        except Exception as err:
            raise Error(_one_line(f"cannot load {so}: {_tvm.error_line(err)}; re-export the model")) from None
    return model
