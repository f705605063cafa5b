"""``tvm_mp.compile``: plan -> calibrated, quantized, integer-kernel Relax module -> built, runnable model."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import tvm

from . import _tvm
from .budget import Budget
from .errors import CalibrationError, CompileError, Error, InputShapeError, PlanError
from .layers import list_layers
from .passes.pipeline import annotate_phase, lower_phase, quantize_phase
from .precision import PrecisionPlan
from .quantize.calibrate import calibrate
from .quantize.interpreter import Interpreter
from .quantize.qlayer import read_layer
from .layers import annotated_layer_functions
from .passes.rewrite_mixed_precision import weight_storage
from .formats import lowering as format_lowering


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
    """What was compiled: per-layer rows and totals (None where unknown)."""

    layers: tuple[LayerReport, ...]
    memory_kb: float
    energy_uj: float | None = None
    latency_ms: float | None = None
    accuracy: float | None = None
    fp32_layers: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        data = asdict(self)
        data["layers"] = [asdict(row) for row in self.layers]
        return data

    def __str__(self) -> str:
        head = f"{'layer':<12} {'op':<17} {'bits':<6} {'kernel':<10} {'MACs':>10} {'weight B':>9} {'fp32 B':>9} {'ratio':>7}"
        lines = [head, "-" * len(head)]
        for r in self.layers:
            lines.append(f"{r.name:<12} {r.op:<17} {r.precision:<6} {r.kernel:<10} {r.macs:>10} {r.weight_bytes:>9} "
                         f"{r.fp32_weight_bytes:>9} {r.weight_ratio:>7.4f}")
        total_w = sum(r.weight_bytes for r in self.layers)
        total_f = sum(r.fp32_weight_bytes for r in self.layers)
        lines.append("-" * len(head))
        lines.append(f"{'total':<12} {'':<17} {'':<6} {'':<10} {sum(r.macs for r in self.layers):>10} {total_w:>9} "
                     f"{total_f:>9} {total_w / max(total_f, 1):>7.4f}")
        extras = [f"weight memory {self.memory_kb:.2f} kB"]
        for label, value, unit in (("latency", self.latency_ms, "ms"), ("energy", self.energy_uj, "uJ"),
                                   ("accuracy", self.accuracy, "")):
            extras.append(f"{label} {'n/a' if value is None else f'{value:.4g} {unit}'.strip()}")
        lines.append("; ".join(extras))
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
    """A built model: ``run`` it on NumPy arrays; ``reference`` runs the NumPy reference of the same plan."""

    def __init__(self, lowered: tvm.IRModule, quantized: tvm.IRModule, executable, plan: PrecisionPlan,
                 report: Report, target):
        self.lowered = lowered
        self.quantized_module = quantized
        self.executable = executable
        self.plan = plan
        self.report = report
        self.target = target
        self._vm = None
        self._input_shapes = [_tvm.expr_shape(p) for p in lowered["main"].params]

    def _check(self, inputs) -> list[np.ndarray]:
        return check_inputs(inputs, self._input_shapes)

    def run(self, *inputs: np.ndarray) -> np.ndarray:
        """Run on NumPy inputs; a batch larger than the compiled one runs sample-block by sample-block."""
        arrays = self._check(inputs)
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
        """Write ``model.so`` (the executable), ``plan.json`` and ``report.json`` / ``report.txt``."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.executable.export_library(str(out / "model.so"))
        (out / "plan.json").write_text(self.plan.to_json())
        (out / "report.json").write_text(json.dumps(self.report.to_dict(), indent=2))
        (out / "report.txt").write_text(str(self.report) + "\n")
        return out


def build_report(mod: tvm.IRModule, quantized: tvm.IRModule) -> Report:
    """Per-layer storage and MACs of the quantized module (fp32 rows for layers left in float)."""
    layers: dict[str, LayerReport] = {}
    for name, (_, func) in annotated_layer_functions(quantized).items():
        layer = read_layer(func)
        info = layer.info
        if format_lowering.is_format_layer(layer):  # float formats and clustered weights
            layers[name] = LayerReport(name, info.op, str(layer.precision), layer.precision.kernel_name, info.macs,
                                       format_lowering.storage_bytes(layer), info.weight_count * 4,
                                       arithmetic=format_lowering.arithmetic(layer))
            continue
        nbytes = sum(int(a.nbytes) for a in weight_storage(layer)[:1])
        layers[name] = LayerReport(name, info.op, f"w{layer.precision.w_bits}a{layer.precision.a_bits}",
                                   layer.precision.resolved_kind, info.macs, nbytes, info.weight_count * 4,
                                   arithmetic="int32")
    fp32 = []
    for info in list_layers(mod):
        if info.name not in layers:
            fp32.append(info.name)
            layers[info.name] = LayerReport(info.name, info.op, "fp32", "fp32", info.macs, info.weight_count * 4,
                                            info.weight_count * 4, arithmetic="fp32")
    rows = tuple(layers[i.name] for i in list_layers(mod))
    return Report(rows, memory_kb=sum(r.weight_bytes for r in rows) / 1024.0, fp32_layers=tuple(fp32))


def compile(mod: tvm.IRModule, plan: PrecisionPlan | None = None, budget: Budget | None = None, target: Any = "llvm",
            calibration: Iterable | None = None, accuracy_fn=None, calibration_method: str = "mse",
            percentile: float = 99.99) -> CompiledModel:
    """Quantize ``mod`` per ``plan``, lower its layers to integer kernels, build for ``target``.

    ``calibration``: an iterable of input arrays (one-input models) or of ``{input name: array}`` dicts.
    ``accuracy_fn(compiled_model) -> float``, when given, fills ``report.accuracy``.
    ``budget=Budget(...)`` instead of ``plan``: search the best plan within the budget first (scored with
    ``accuracy_fn`` on each plan's NumPy reference, else top-1 agreement with fp32 on the calibration data), then
    compile it; see :mod:`tvm_mp.search.budget`. An impossible budget raises ``BudgetError`` with the smallest
    achievable value of each limit.
    """
    if not isinstance(mod, tvm.IRModule):
        raise Error(f"compile needs a tvm.IRModule (from tvm_mp.load_onnx), got {type(mod).__name__}")
    if budget is not None:
        if plan is not None:
            raise PlanError("give either plan=PrecisionPlan(...) or budget=Budget(...), not both")
        from .search.budget import compile_with_budget  # search sits above compile: import on use

        return compile_with_budget(mod, budget, target=target, calibration=calibration, accuracy_fn=accuracy_fn,
                                   calibration_method=calibration_method, percentile=percentile)
    if plan is None:
        raise PlanError("compile needs plan=PrecisionPlan(...), e.g. PrecisionPlan.uniform(mod, Precision(8, 8))")
    if not isinstance(plan, PrecisionPlan):
        raise PlanError(f"plan must be a PrecisionPlan, got {type(plan).__name__}")
    tgt = _tvm.make_target(target)
    plan.validate_for([layer.name for layer in list_layers(mod)])
    ranges = {}
    if any(p.kind != "float" for _, p in plan.items()):  # float-format layers need no activation ranges
        if calibration is None:
            raise CalibrationError("quantized layers need calibration=[batches of representative inputs]")
        ranges = calibrate(mod, calibration, calibration_method, percentile)
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        quantized = tvm.transform.Sequential(annotate_phase(plan, ranges) + quantize_phase(ranges))(mod)
    with tgt:  # RewriteMixedPrecision picks the target's fast kernels
        lowered = tvm.transform.Sequential(lower_phase())(quantized)
    try:
        executable = _tvm.build(lowered, tgt)
    except Error:
        raise
    except Exception as err:  # TVM's own error types: one line naming the stage
        raise CompileError(f"TVM failed to build the model for {tgt.kind.name}: {_tvm.error_line(err)}") from None
    report = build_report(mod, quantized)
    model = CompiledModel(lowered, quantized, executable, plan, report, tgt)
    if accuracy_fn is not None:
        acc = float(accuracy_fn(model))
        if not math.isfinite(acc):
            raise Error(f"accuracy_fn returned {acc}; it must return a finite number")
        model.report = Report(report.layers, report.memory_kb, report.energy_uj, report.latency_ms, acc,
                              report.fp32_layers)
    return model
