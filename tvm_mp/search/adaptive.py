"""Run-time operating points: one artifact holding several plans, switched at run time without recompiling.

``compile_adaptive(mod, points=..., calibration=...)`` lowers every plan with the same calibration (exactly what
``tvm_mp.compile`` would do for each alone), then merges them into one Relax module: each plan becomes a function
``point_<i>``; kernels (PrimFuncs) that are identical across plans are kept once; weight and requantization
constants that are identical are the same constant, and the Relax VM stores each distinct constant once. One
``tvm.compile`` builds the whole artifact. :meth:`AdaptiveModel.select` picks, for limits given at run time, the
best point that fits (by score when known, else the dearest that fits); :meth:`AdaptiveModel.run` runs it.

What is shared: a layer kept at the same precision in several plans (the usual case along a Pareto front, where
neighbouring plans differ in a few layers) shares its kernel and its weights; a layer at the same weight bits and
kernel kind but different activation bits shares its weights. What is not: a layer at different weight bits. Its
lower-precision bit-planes cannot be taken from the higher-precision ones without changing the numbers, because
tvm-mp picks a clipped scale and GPTQ rounding per bit-width (what makes 2-3-bit layers usable), so the 2-bit
integers are not the top bits of the 8-bit ones. Every point therefore computes exactly what its own stand-alone
``tvm_mp.compile`` computes (tested).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import tvm
from tvm import relax

from .. import _tvm
from .._files import write_atomic
from ..canonical import canonicalize
from ..driver import build_executable, lower_plans
from ..errors import CalibrationError, Error, InputShapeError, PlanError
from ..kinds import DEFAULT_CALIBRATION_METHOD
from ..layers import list_layers
from ..model import check_inputs, export_directory
from ..precision import PrecisionPlan
from ..targets import parse
from .costs import FIT_RTOL, METRICS, BudgetError, CostTable, _fmt
from .pareto import ParetoFront, ParetoPoint
from .space import SearchSpace

#: The files an adaptive model's export holds.
ADAPTIVE_EXPORT_NAMES = frozenset({"model.so", "points.json"})


@dataclass(frozen=True)
class OperatingPoint:
    """One plan of an adaptive artifact, with its predicted costs and (when known) its score."""

    function: str
    plan: PrecisionPlan
    energy_uj: float
    latency_ms: float
    memory_kb: float
    score: float | None = None

    def cost(self, metric: str) -> float:
        return getattr(self, metric)

    def to_dict(self) -> dict:
        return {"function": self.function, "plan": {n: str(p) for n, p in self.plan.items()},
                "energy_uj": self.energy_uj, "latency_ms": self.latency_ms, "memory_kb": self.memory_kb,
                "score": self.score}


@dataclass(frozen=True)
class WeightStore:
    """Bytes of the constants the points need: each point alone (``separate_bytes``, summed over points) against
    the distinct constants of the merged artifact (``shared_bytes``)."""

    separate_bytes: int
    shared_bytes: int
    distinct_constants: int
    total_constants: int

    @property
    def saved_fraction(self) -> float:
        return 1.0 - self.shared_bytes / max(self.separate_bytes, 1)

    def to_dict(self) -> dict:
        return {"separate_bytes": self.separate_bytes, "shared_bytes": self.shared_bytes,
                "distinct_constants": self.distinct_constants, "total_constants": self.total_constants,
                "saved_fraction": self.saved_fraction}


class AdaptiveModel:
    """A built artifact with several operating points; :meth:`select` one, then :meth:`run`."""

    def __init__(self, module: tvm.IRModule, executable, points: Sequence[OperatingPoint], store: WeightStore,
                 target, energy_basis: str, input_shapes: Sequence[tuple[int, ...]]):
        self.module = module
        self.executable = executable
        self.points = tuple(points)
        self.store = store
        self.target = target
        self.energy_basis = energy_basis
        self._input_shapes = [tuple(s) for s in input_shapes]
        self._vm = None
        self.selected = self.points[-1]

    def select(self, energy_uj: float | None = None, latency_ms: float | None = None,
               memory_kb: float | None = None) -> OperatingPoint:
        """Switch to the best point within the given limits (predicted costs); no recompilation.

        Best = highest score when every point has one, else the dearest in energy that fits. Raises
        :class:`~tvm_mp.search.costs.BudgetError` naming the smallest values available if no point fits."""
        limits = {m: v for m, v in (("energy_uj", energy_uj), ("latency_ms", latency_ms), ("memory_kb", memory_kb))
                  if v is not None}
        for m, v in limits.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise PlanError(f"select({m}={v!r}): give a positive finite number")
        fits = [p for p in self.points if all(p.cost(m) <= v * (1 + FIT_RTOL) for m, v in limits.items())]
        if not fits:
            smallest = ", ".join(_fmt(m, min(p.cost(m) for p in self.points)) for m in METRICS)
            asked = ", ".join(f"{m}={v:.4g}" for m, v in limits.items())
            raise BudgetError(f"no operating point meets {asked}: the smallest available are {smallest}; raise the "
                              "limit or compile a cheaper point")
        if all(p.score is not None for p in fits):
            best = max(fits, key=lambda p: (p.score, -p.energy_uj))
        else:
            best = max(fits, key=lambda p: p.energy_uj)
        self.selected = best
        return best

    def _check(self, inputs) -> list[np.ndarray]:
        return check_inputs(inputs, self._input_shapes)

    def run(self, *inputs: np.ndarray, point: OperatingPoint | int | None = None) -> np.ndarray:
        """Run the selected point (or ``point``: an OperatingPoint or its index) on NumPy inputs."""
        if point is None:
            point = self.selected
        elif isinstance(point, int):
            point = self.points[point]
        arrays = self._check(inputs)
        if self._vm is None:
            self._vm = _tvm.vm(self.executable)
        compiled_batch = self._input_shapes[0][0]
        batch = arrays[0].shape[0]
        if batch == compiled_batch:
            return _tvm.run_relax(self._vm, arrays, func=point.function)
        if batch % compiled_batch:
            raise InputShapeError(f"batch {batch} is not a multiple of the compiled batch {compiled_batch}")
        outs = [_tvm.run_relax(self._vm, [a[i : i + compiled_batch] for a in arrays], func=point.function)
                for i in range(0, batch, compiled_batch)]
        return np.concatenate(outs, axis=0)

    def to_dict(self) -> dict:
        return {"points": [p.to_dict() for p in self.points], "store": self.store.to_dict(),
                "energy_basis": self.energy_basis, "selected": self.selected.function}

    def export(self, directory: str | Path) -> Path:
        """Write ``model.so`` (all points) and ``points.json`` into ``directory``: new, empty or a previous export
        of an adaptive model, replaced as a whole; written to a temporary directory first, so a failed export
        leaves ``directory`` as it was (:func:`tvm_mp.model.export_directory`)."""
        return export_directory(directory, self._write, ADAPTIVE_EXPORT_NAMES)

    def _write(self, out: Path) -> None:
        self.target.export_library(self.executable, out / "model.so")
        write_atomic(out / "points.json", json.dumps(self.to_dict(), indent=2))


def _plans_of(points) -> list[tuple[PrecisionPlan, float | None]]:
    if isinstance(points, ParetoFront):
        points = points.front("energy_uj")
    if isinstance(points, (PrecisionPlan, ParetoPoint)):
        points = [points]
    out = []
    for p in points:
        if isinstance(p, ParetoPoint):
            out.append((p.plan, p.score))
        elif isinstance(p, PrecisionPlan):
            out.append((p, None))
        else:
            raise PlanError(f"points must be PrecisionPlans, ParetoPoints or a ParetoFront, got {type(p).__name__}")
    if not out:
        raise PlanError("compile_adaptive needs at least one point")
    seen, unique = set(), []
    for plan, score in out:
        key = plan.to_json()
        if key not in seen:
            seen.add(key)
            unique.append((plan, score))
    return unique


def _const_key(value: np.ndarray) -> tuple:
    return (str(value.dtype), value.shape, hashlib.blake2b(np.ascontiguousarray(value).tobytes(),
                                                           digest_size=16).hexdigest())


def merge_points(lowered: Sequence[tvm.IRModule]) -> tuple[tvm.IRModule, list[str], WeightStore]:
    """One module with ``point_<i>`` per lowered module; identical PrimFuncs once, identical constants shared."""
    bb = relax.BlockBuilder()
    by_text: dict[str, tvm.ir.GlobalVar] = {}
    used: set[str] = set()
    consts: dict[tuple, relax.Expr] = {}
    separate = total = 0
    names = []
    for i, low in enumerate(lowered):
        mapping = {}
        for gv, func in low.functions_items():
            if gv.name_hint == "main":
                continue
            text = func.script()
            if text not in by_text:
                name, k = gv.name_hint, 1
                while name in used:
                    name, k = f"{gv.name_hint}_{k}", k + 1
                used.add(name)
                by_text[text] = bb.add_func(func.with_attr("global_symbol", name), name)
            mapping[gv] = by_text[text]
        sizes = [0, 0]

        # Rebind is instantiated and run within this iteration, so it sees this iteration's mapping and sizes
        @relax.expr_functor.mutator
        class Rebind(relax.PyExprMutator):
            def visit_global_var_(self, op):
                return mapping.get(op, op)  # noqa: B023

            def visit_generic_const_(self, op):
                value = _tvm.const_value(op)
                key = _const_key(value)
                sizes[0] += value.nbytes  # noqa: B023
                sizes[1] += 1  # noqa: B023
                if key not in consts:
                    consts[key] = op
                return consts[key]

        name = f"point_{i}"
        main = Rebind(bb.get()).visit_expr(low["main"]).with_attr("global_symbol", name)
        bb.add_func(main, name)
        used.add(name)
        names.append(name)
        separate += sizes[0]
        total += sizes[1]
    store = WeightStore(separate, sum(int(_tvm.const_value(c).nbytes) for c in consts.values()), len(consts), total)
    return bb.get(), names, store


def compile_adaptive(mod: tvm.IRModule, points, calibration: Iterable | None = None, target: Any = None,
                     calibration_method: str = DEFAULT_CALIBRATION_METHOD, percentile: float = 99.99, cost_model=None,
                     database: Any = None) -> AdaptiveModel:
    """Build one artifact holding every plan of ``points`` (PrecisionPlans, ParetoPoints, or a ParetoFront: its
    energy front). Each point is lowered by the compile driver exactly as ``tvm_mp.compile`` lowers it alone (one
    calibration for all). Costs per point come from ``cost_model`` (default: the target's); see module docstring.
    """
    if not isinstance(mod, tvm.IRModule):
        raise Error(f"compile_adaptive needs a tvm.IRModule (from tvm_mp.load_onnx), got {type(mod).__name__}")
    plans = _plans_of(points)
    if calibration is None:
        raise CalibrationError("compile_adaptive needs calibration=[batches of representative inputs]")
    mod = canonicalize(mod)
    layers = list_layers(mod)
    names = [layer.name for layer in layers]
    for plan, _ in plans:
        plan.validate_for(names)
        missing = [n for n in names if n not in plan]
        if missing:
            raise PlanError(f"every operating point must give each layer a precision; a plan lacks {missing}")
    tgt = parse(target)
    _, lowered = lower_plans(mod, [plan for plan, _ in plans], tgt, calibration=list(calibration),
                             calibration_method=calibration_method, percentile=percentile, database=database)
    merged, functions, store = merge_points(lowered)
    executable = build_executable(merged, tgt, "the adaptive model")
    options = {n: list(dict.fromkeys(plan[n] for plan, _ in plans)) for n in names}
    space = SearchSpace.build(layers, options)
    costs = CostTable.from_model(space, cost_model, tgt)
    result = []
    for (plan, score), fn in zip(plans, functions):
        totals = costs.totals(space.index_of(plan))
        result.append(OperatingPoint(fn, plan, totals["energy_uj"], totals["latency_ms"], totals["memory_kb"], score))
    order = sorted(range(len(result)), key=lambda i: (result[i].energy_uj, i))
    shapes = [_tvm.expr_shape(p) for p in mod["main"].params]
    return AdaptiveModel(merged, executable, [result[i] for i in order], store, tgt, costs.energy_basis, shapes)
