"""What a compile returns and what ``export`` writes: :class:`CompiledModel`, its :class:`Report`, and :func:`load`.

An artifact directory (``CompiledModel.export``) holds:

- ``model.so``: the executable (Relax VM), linked for the target (not for Cortex-M targets);
- ``bundle/``: for aarch64 the standalone C bundle (no TVM runtime, :mod:`tvm_mp.deploy.aarch64`); for Cortex-M
  the C of the network (:mod:`tvm_mp.deploy.cortexm`);
- ``quantized.json``: the quantized Relax module (TVM's JSON form), what :meth:`CompiledModel.reference` runs;
- ``plan.json``, ``report.json`` / ``report.txt``, ``target.json``, ``inputs.json`` (input shapes and dtypes).

:func:`load` reads it back into a runnable :class:`CompiledModel` in a fresh process, without recompiling.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import tvm

from . import _tvm
from .errors import Error, InputShapeError
from .precision import PrecisionPlan
from .quantize.interpreter import Interpreter
from .targets import CompileTarget, parse

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

    @property
    def weight_ratio(self) -> float:
        return self.weight_bytes / self.fp32_weight_bytes


@dataclass(frozen=True)
class Report:
    """What was compiled: per-layer rows and totals (None where unknown).

    ``cost_model`` names the model that gave the latency and energy figures; ``latency_basis`` and
    ``energy_basis`` say whether each total is "modelled" (predicted) or "measured". ``fixed_latency_ms``: the
    part of ``latency_ms`` outside the layer rows (quantize calls, other operators, VM overhead), when the cost
    model predicts the whole inference (None: ``latency_ms`` is the sum of the rows).
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
    fixed_latency_ms: float | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["layers"] = [asdict(row) for row in self.layers]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Report":
        """The report ``to_dict`` wrote (unknown keys are refused with the file's fix)."""
        try:
            rows = tuple(LayerReport(**row) for row in data["layers"])
            known = {f.name for f in fields(cls)} - {"layers"}
            extra = sorted(set(data) - known - {"layers"})
            if extra:
                raise TypeError(f"unknown field(s) {', '.join(extra)}")
            rest = {k: v for k, v in data.items() if k in known}
            rest["fp32_layers"] = tuple(rest.get("fp32_layers", ()))
            return cls(rows, **rest)
        except (KeyError, TypeError) as err:
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
        if self.deployment:
            d = self.deployment

            def fig(key: str, unit: str = " B") -> str:
                return "n/a" if d.get(key) is None else f"{d[key]}{unit}"

            lines.append(f"{self.target}: code {fig('code_bytes')}; RAM {fig('ram_bytes')} (weights "
                         f"{fig('weight_bytes')} + peak activations {fig('activation_bytes')}); "
                         f"{fig('instructions', '')} {d.get('instructions_basis', 'instructions')} per inference")
        emulated = [r.name for r in self.layers if r.arithmetic == "emulated"]
        if emulated:
            lines.append(f"float formats emulated on this target (float32 arithmetic on operands rounded exactly to "
                         f"the format): {', '.join(emulated)}")
        return "\n".join(lines)


def check_inputs(inputs, input_shapes) -> list[np.ndarray]:
    """``inputs`` as float32 arrays, checked against the compiled input shapes (any batch size)."""
    if len(inputs) != len(input_shapes):
        raise InputShapeError(f"the model takes {len(input_shapes)} input(s), got {len(inputs)}")
    arrays = []
    for i, (x, shape) in enumerate(zip(inputs, input_shapes)):
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != len(shape) or tuple(x.shape[1:]) != tuple(shape[1:]):
            raise InputShapeError(f"input {i} has shape {x.shape}; expected (batch, "
                                  f"{', '.join(map(str, shape[1:]))})")
        arrays.append(x)
    return arrays


class CompiledModel:
    """A built model: ``run`` it on NumPy arrays; ``reference`` runs the NumPy reference of the same plan.

    ``lowered`` is the Relax module that was built (None for a model read back by :func:`load`);
    ``quantized_module`` the quantized module the reference runs.
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
        if input_shapes is None:
            input_shapes = [_tvm.expr_shape(p) for p in quantized["main"].params]
        self._input_shapes = [tuple(int(v) for v in s) for s in input_shapes]

    @property
    def input_shapes(self) -> list[tuple[int, ...]]:
        return list(self._input_shapes)

    def _check(self, inputs) -> list[np.ndarray]:
        return check_inputs(inputs, self._input_shapes)

    def run(self, *inputs: np.ndarray) -> np.ndarray:
        """Run on NumPy inputs; a batch larger than the compiled one runs sample-block by sample-block."""
        arrays = self._check(inputs)
        if not self.target.is_host:
            raise Error(f"this model is built for {self.target}, not for this machine: run it there (export "
                        "writes what to copy), use reference() here, or compile with target='host' to run it here")
        if self._vm is None:
            self._vm = _tvm.vm(self.executable)
        compiled_batch = self._input_shapes[0][0]
        batch = arrays[0].shape[0]
        if batch == compiled_batch:
            return _tvm.run_relax(self._vm, arrays)
        if batch % compiled_batch:
            raise InputShapeError(f"batch {batch} is not a multiple of the compiled batch {compiled_batch}")
        outs = [_tvm.run_relax(self._vm, [a[i : i + compiled_batch] for a in arrays])
                for i in range(0, batch, compiled_batch)]
        return np.concatenate(outs, axis=0)

    def reference(self, *inputs: np.ndarray) -> np.ndarray:
        """The NumPy reference of the same plan (no TVM): integer layers bit-exact with :meth:`run`."""
        return Interpreter(self.quantized_module, quantized=True).run(self._check(inputs))

    def export(self, directory: str | Path) -> Path:
        """Write the artifact directory (see module docstring); :func:`load` reads it back."""
        out = Path(directory)
        if out.exists() and not out.is_dir():
            raise Error(f"cannot export to {out}: it is a file; give a directory")
        out.mkdir(parents=True, exist_ok=True)
        self.target.export(self, out)
        (out / "quantized.json").write_text(tvm.ir.save_json(self.quantized_module))
        (out / "plan.json").write_text(self.plan.to_json())
        (out / "report.json").write_text(json.dumps(self.report.to_dict(), indent=2))
        (out / "report.txt").write_text(str(self.report) + "\n")
        (out / "target.json").write_text(json.dumps(self.target.to_json(), indent=2))
        (out / "inputs.json").write_text(json.dumps({"shapes": [list(s) for s in self._input_shapes]}))
        return out


def _target_of(src: Path) -> CompileTarget:
    try:
        return parse(json.loads((src / "target.json").read_text()))
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise Error(f"{src} holds a damaged artifact ({err}); re-export the model") from None


def load(directory: str | Path) -> CompiledModel:
    """The runnable model (with its plan and report) that :meth:`CompiledModel.export` wrote to ``directory``."""
    src = Path(directory)
    if not src.is_dir():
        raise Error(f"{src} is not a directory: give the directory CompiledModel.export (or tvm-mp compile -o) wrote")
    missing = [name for name in ARTIFACT_FILES if not (src / name).is_file()]
    if missing == ["model.so"] and not _target_of(src).builds_with_tvm:  # a C target (Cortex-M) has none
        missing = []
    if missing:
        raise Error(f"{src} is not a tvm-mp artifact: {', '.join(missing)} missing; re-export the model")
    try:
        target = parse(json.loads((src / "target.json").read_text()))
        plan = PrecisionPlan.from_json((src / "plan.json").read_text())
        report = Report.from_dict(json.loads((src / "report.json").read_text()))
        shapes = [tuple(s) for s in json.loads((src / "inputs.json").read_text())["shapes"]]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise Error(f"{src} holds a damaged artifact ({err}); re-export the model") from None
    try:
        quantized = tvm.ir.load_json((src / "quantized.json").read_text())
    except Exception as err:  # TVM's own error types
        raise Error(f"cannot read quantized.json in {src}: {_tvm.error_line(err)}; re-export the model") from None
    executable = None
    if target.is_host and target.builds_with_tvm:
        try:
            executable = tvm.runtime.load_module(str(src / "model.so"))
        except Exception as err:
            raise Error(f"cannot load model.so in {src}: {_tvm.error_line(err)}") from None
    return CompiledModel(None, quantized, executable, plan, report, target, shapes)

