"""The compile driver: the one path from (module, plan, target, calibration or ranges) to a :class:`CompiledModel`.

Phases, in this order and nowhere else::

    canonicalize -> calibrate -> annotate -> quantize -> lower inside the target -> [offload] -> build -> report

- canonicalize: :func:`tvm_mp.canonical.canonicalize` (raw TVM modules: entry function, BatchNorm, folded weights);
- calibrate: activation ranges and input statistics (:func:`tvm_mp.quantize.calibrate.calibrate`), unless the
  caller hands ``ranges`` it already has (a budget compile hands the search's, so it calibrates once);
- annotate, quantize: the pass phases of :mod:`tvm_mp.passes.pipeline`; ``weights`` hands already rounded weights
  (``(layer, w_bits) -> (w_q, scale)``, e.g. the search's) so they are not rounded twice;
- lower: RewriteMixedPrecision **inside the target's context** with the target's tuning database, so every entry
  point builds the same fast kernels;
- offload (accelerator target only): after lowering, the accelerator layers become packed calls
  (:func:`build_accel`; :func:`compile_offloaded` is an alias of this path);
- build: ``tvm.compile``; errors become one line;
- report: per-layer weights and MACs, and per-layer and total latency and energy from the target's cost model
  (labelled "modelled"); the conv / matmul ops tvm-mp cannot quantize, each with its reason
  (:func:`tvm_mp.layers.unquantizable_reason`; a warning names them too when the compile starts).

The accelerator target (``"accel"``) lowers as the host CPU does, then hands the lowered module to
:func:`tvm_mp.accel.target.offload_lowered` (:func:`build_accel`): the integer layers its datapath runs become packed
calls to its simulator, and the report's figures are the simulator's.

The target's kind decides the back end after quantize: TVM targets lower and build as above; a Cortex-M target
(``target.builds_with_tvm`` False) hands the quantized module to :mod:`tvm_mp.deploy.cortexm` instead (C from
:func:`tvm_mp.mcu.emit_network`, measured under qemu-system-arm; the report carries its code size, RAM and
emulated instructions instead of modelled costs).

``tvm_mp.compile(plan=...)``, ``tvm_mp.compile(budget=...)`` (after its search), ``compile_adaptive`` (each
point), :func:`compile_offloaded` and the Cortex-M flow (:func:`quantize`) all come through here.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import replace
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import tvm

from . import _tvm
from .canonical import canonicalize
from .cost_models.base import Workload
from .cost_models.select import cost_model_name, default_cost_model, resolve_cost_model
from .errors import CalibrationError, CompileError, Error, PlanError, UnsupportedError
from .formats import lowering as format_lowering
from .kinds import CALIBRATION_METHODS, DEFAULT_CALIBRATION_METHOD, check
from .layers import UnquantizableLayer, annotated_layer_functions, list_layers, unquantizable_layers
from .model import CompiledModel, LayerReport, Report, call_accuracy_fn
from .passes.pipeline import annotate_phase, lower_phase, quantize_phase
from .passes.rewrite_mixed_precision import schedule_of, weight_storage
from .precision import PrecisionPlan
from .quantize.calibrate import ActivationRange, calibrate
from .quantize.graph import analyze_outputs, layer_name_of
from .quantize.interpreter import unimplemented_ops
from .quantize.qlayer import read_layer
from .schedules import tuning
from .targets import CompileTarget, parse


def check_plan(mod: tvm.IRModule, plan: Any) -> PrecisionPlan:
    """``plan`` as a :class:`PrecisionPlan` checked against ``mod``'s layers. A ``pathlib.Path`` (any
    ``os.PathLike``) is read as a plan file (:meth:`PrecisionPlan.load`). An empty plan is refused when the model
    has quantizable layers (it would compile everything in fp32 without a word)."""
    if plan is None:
        raise PlanError("compile needs plan=PrecisionPlan(...), e.g. PrecisionPlan.uniform(mod, Precision(8, 8))")
    if isinstance(plan, os.PathLike):
        plan = PrecisionPlan.load(plan)
    if isinstance(plan, str):
        raise PlanError(f"plan={plan!r} is text: give a PrecisionPlan, a plan file as pathlib.Path({plan!r}), or a "
                        "uniform plan PrecisionPlan.uniform(mod, Precision.parse('w4a4'))")
    if not isinstance(plan, PrecisionPlan):
        raise PlanError(f"plan must be a PrecisionPlan (or the pathlib.Path of a plan file), got "
                        f"{type(plan).__name__}")
    for layer in unquantizable_layers(mod):
        if layer.name in plan:
            raise PlanError(f"layer {layer.name!r} ({layer.op}) in the plan cannot be quantized: {layer.reason}; "
                            "remove it from the plan")
    names = [layer.name for layer in list_layers(mod)]
    plan.validate_for(names)
    if not len(plan) and names:
        shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
        raise PlanError(f"the plan is empty: it gives none of the model's {len(names)} layers ({shown}) a precision, "
                        "so nothing would be quantized; name at least one layer (tvm-mp layers MODEL lists them)")
    return plan


def calibrate_for(mod: tvm.IRModule, plan: PrecisionPlan, calibration: Iterable | None,
                  method: str = DEFAULT_CALIBRATION_METHOD, percentile: float = 99.99) -> dict[str, ActivationRange]:
    """Activation ranges (with input statistics) for the quantized layers of ``plan`` (none for float formats)."""
    if all(p.kind == "float" for _, p in plan.items()):  # float-format layers need no activation ranges
        return {}
    if calibration is None:
        raise CalibrationError("quantized layers need calibration=[batches of representative inputs]")
    return calibrate(mod, calibration, method, percentile)


def quantize(mod: tvm.IRModule, plan: PrecisionPlan, *, calibration: Iterable | None = None,
             ranges: Mapping[str, ActivationRange] | None = None, calibration_method: str = DEFAULT_CALIBRATION_METHOD,
             percentile: float = 99.99, weights: Mapping | None = None) -> tvm.IRModule:
    """Canonicalize, calibrate (unless ``ranges`` are given), annotate and quantize: the quantized module that the
    build lowers and the NumPy reference runs (the Cortex-M flow takes it from here)."""
    mod = canonicalize(mod)
    plan = check_plan(mod, plan)
    if ranges is None:
        ranges = calibrate_for(mod, plan, calibration, calibration_method, percentile)
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        return tvm.transform.Sequential(annotate_phase(plan, ranges) + quantize_phase(ranges, weights))(mod)


def warn_fp32_ops(mod: tvm.IRModule) -> None:
    """One warning naming the fp32 ops the NumPy reference computes through TVM (float tolerance there)."""
    ops = unimplemented_ops(mod)
    if ops:
        warnings.warn(f"fp32 ops run through TVM in the reference: {', '.join(ops)}", stacklevel=4)


def warn_unquantizable(mod: tvm.IRModule, stacklevel: int = 4) -> tuple[UnquantizableLayer, ...]:
    """One warning naming every conv-like / matmul-like op tvm-mp cannot quantize, each with its reason (they run
    unquantized, as TVM builds them), or saying that the model has no layer to quantize at all. ``stacklevel`` as
    for ``warnings.warn`` from the caller's caller (the driver's entry points: the user's call)."""
    found = tuple(unquantizable_layers(mod))
    none = not list_layers(mod)
    if found:
        head = (f"tvm-mp cannot quantize {len(found)} layer{'s' if len(found) > 1 else ''} of the model"
                + (" (it has no layer tvm-mp can quantize: the whole model runs unquantized)" if none else "")
                + ("; they run" if len(found) > 1 else "; it runs") + " unquantized, as TVM builds them:")
        warnings.warn("\n".join([head] + [f"  {layer.summary}" for layer in found]), stacklevel=stacklevel)
    elif none:
        warnings.warn("the model has no conv or matmul layer: nothing to quantize, it runs in fp32 as TVM builds it",
                      stacklevel=stacklevel)
    return found



def tuning_database(target: CompileTarget, database: Any = None):
    """The tuning database(s) a build of ``target`` reads (:func:`tvm_mp.schedules.tuning.resolve`): ``database``
    (a TuningDatabase, a path, or False for default knobs only), else the user database (what ``tvm-mp tune``
    wrote, ``$TVM_MP_HOME/tuning.json``) and then the one shipped with tvm-mp, both under ``target.key``."""
    return tuning.resolve(database)


def lower(quantized: tvm.IRModule, target: CompileTarget, database: Any = None) -> tvm.IRModule:
    """The integer-kernel module of a quantized one, lowered inside ``target`` with its tuning database."""
    db = tuning_database(target, database)
    with target:
        return tvm.transform.Sequential(lower_phase(target=target.tvm_target, database=db))(quantized)


def build_executable(lowered: tvm.IRModule, target: CompileTarget, what: str = "the model"):
    try:
        return tvm.compile(lowered, target.tvm_target)
    except Error:
        raise
    except Exception as err:  # TVM's own error types: one line naming the stage
        raise CompileError(f"TVM failed to build {what} for {target}: {_tvm.error_line(err)}") from None


def epilogues(quantized: tvm.IRModule) -> dict[str, str]:
    """Layer -> "requant" (its output is requantized into the next layer's codes) or "float"."""
    main = quantized["main"]
    edges = analyze_outputs(main, quantized)
    out = {}
    for block in main.body.blocks:
        for b in block.bindings:
            name = layer_name_of(b.value, quantized)
            if name is not None and b.var in edges:
                out[name] = "requant" if edges[b.var].integer else "float"
    return out


def layer_rows(mod: tvm.IRModule, quantized: tvm.IRModule) -> tuple[list[LayerReport], list[str]]:
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
    infos = list_layers(mod)
    for info in infos:
        if info.name not in layers:
            fp32.append(info.name)
            layers[info.name] = LayerReport(info.name, info.op, "fp32", "fp32", info.macs, info.weight_count * 4,
                                            info.weight_count * 4, arithmetic="fp32")
    return [layers[i.name] for i in infos], fp32


def build_report(mod: tvm.IRModule, quantized: tvm.IRModule, plan: PrecisionPlan, target: CompileTarget,
                 cost_model=None, lowered: tvm.IRModule | None = None) -> Report:
    """The report of a build: layer rows plus per-layer and total latency and energy from ``cost_model`` (default: the
    target's) for the planned layers. Layers left in fp32 have no cost figures; the totals cover the planned layers.
    With ``lowered``, each row also says which schedule knobs its kernel was built with and where they came from (read
    back from the kernel, :func:`~tvm_mp.passes.rewrite_mixed_precision.schedule_of`). A whole-model predictor (one with
    ``predict_calls``, e.g. :class:`~tvm_mp.cost_models.whole_model.WholeModel`) given the ``lowered`` module also costs
    the calls around the layers (quantize calls, other operators, VM overhead): they are the report's
    ``fixed_latency_ms``, and its total latency is the whole inference."""
    rows, fp32 = layer_rows(mod, quantized)
    if lowered is not None:
        rows = [replace(r, schedule=knobs, schedule_source=source) if knobs is not None else r
                for r in rows for knobs, source in [schedule_of(lowered, r.name)]]
    memory_kb = sum(r.weight_bytes for r in rows) / 1024.0
    infos = {i.name: i for i in list_layers(mod)}
    planned = [name for name in infos if name in plan]
    unq = tuple(unquantizable_layers(mod))
    if not planned:
        return Report(tuple(rows), memory_kb, fp32_layers=tuple(fp32), target=target.name, unquantizable=unq)
    model = resolve_cost_model(cost_model) if cost_model is not None else default_cost_model(
        target, [plan[n] for n in planned])
    edges = epilogues(quantized)
    workloads = [Workload.from_layer(infos[n], plan[n], epilogue=edges.get(n, "float"), target=target.cost_key)
                 for n in planned]
    try:
        est = model.predict(workloads)
    except Error as err:  # a model that cannot cost these kinds: report without figures, say why
        warnings.warn(f"no cost figures in the report: {err}", stacklevel=3)
        return Report(tuple(rows), memory_kb, fp32_layers=tuple(fp32), target=target.name, unquantizable=unq)
    costs = {n: (float(est.latency_ms[k]), float(est.energy_uj[k])) for k, n in enumerate(planned)}
    rows = [replace(r, latency_ms=costs[r.name][0], energy_uj=costs[r.name][1]) if r.name in costs else r
            for r in rows]
    latency, fixed = float(np.sum(est.latency_ms)), None
    if lowered is not None and callable(getattr(model, "predict_calls", None)):
        whole = whole_model_estimate(model, lowered, infos, plan, target)
        if whole is not None:
            fixed = whole.fixed_ms
            latency += fixed
    return Report(tuple(rows), memory_kb, float(np.sum(est.energy_uj)), latency,
                  fp32_layers=tuple(fp32), cost_model=cost_model_name(model), latency_basis="modelled",
                  energy_basis=est.energy_basis, target=target.name, fixed_latency_ms=fixed,
                  unquantizable=unq)


def whole_model_estimate(model, lowered: tvm.IRModule, infos, plan: PrecisionPlan, target: CompileTarget):
    """``model.predict_calls`` of the calls the built ``lowered`` module makes (None, with a warning, when they
    cannot be listed: e.g. layers offloaded to the accelerator)."""
    from .cost_models.whole_model import runtime_calls

    try:
        return model.predict_calls(runtime_calls(lowered, infos, plan, target))
    except Error as err:
        warnings.warn(f"the report's latency covers the layers only: {err}", stacklevel=4)
        return None


def score(model: CompiledModel, accuracy_fn: Callable | None) -> CompiledModel:
    """Fill ``model.report.accuracy`` from ``accuracy_fn(model)`` (a finite real, see
    :func:`tvm_mp.model.call_accuracy_fn`; what it raises surfaces as one-line Error naming accuracy_fn)."""
    if accuracy_fn is None:
        return model
    model.report = model.report.with_accuracy(call_accuracy_fn(accuracy_fn, model))
    return model


def build(mod: tvm.IRModule, plan: PrecisionPlan, target: Any = None, *, calibration: Iterable | None = None,
          ranges: Mapping[str, ActivationRange] | None = None, calibration_method: str = DEFAULT_CALIBRATION_METHOD,
          percentile: float = 99.99, weights: Mapping | None = None, database: Any = None, cost_model=None,
          accuracy_fn: Callable | None = None, accel_layers: Iterable[str] | None = None,
          mappings: Mapping | None = None, objective: str | None = None) -> CompiledModel:
    """Every phase (see module docstring) for one plan.

    Accelerator target only: ``accel_layers`` (the layers it runs; default every integer layer its datapath runs),
    ``mappings`` (layer -> :class:`~tvm_mp.accel.lower.LayerMapping`) and ``objective`` ("energy" or "latency",
    default the cost model's) go to :func:`build_accel`.
    """
    if not isinstance(mod, tvm.IRModule):
        raise Error(f"compile needs a tvm.IRModule (from tvm_mp.load_onnx or a TVM frontend), got "
                    f"{type(mod).__name__}")
    check(calibration_method, CALIBRATION_METHODS, "calibration method", CalibrationError)
    tgt = parse(target)
    mod = canonicalize(mod)
    plan = check_plan(mod, plan)
    warn_fp32_ops(mod)
    warn_unquantizable(mod)
    if tgt.kind != "accel" and (accel_layers is not None or mappings is not None or objective is not None):
        raise UnsupportedError(f"accel_layers, mappings and objective are options of the accelerator target, not "
                               f"of {tgt.name}: compile with target='accel' or leave them out")
    quantized = quantize(mod, plan, calibration=calibration, ranges=ranges, calibration_method=calibration_method,
                         percentile=percentile, weights=weights)
    if not tgt.builds_with_tvm:
        return score(build_cortex_m(mod, quantized, plan, tgt, calibration), accuracy_fn)
    lowered = lower(quantized, tgt, database)
    if tgt.kind == "accel":
        return score(build_accel(mod, quantized, lowered, plan, tgt, cost_model, mappings, accel_layers, objective),
                     accuracy_fn)
    executable = build_executable(lowered, tgt)
    report = build_report(mod, quantized, plan, tgt, cost_model, lowered)
    return score(CompiledModel(lowered, quantized, executable, plan, report, tgt), accuracy_fn)


def build_accel(mod: tvm.IRModule, quantized: tvm.IRModule, lowered: tvm.IRModule, plan: PrecisionPlan,
                target: CompileTarget, cost_model=None, mappings: Mapping | None = None,
                accel_layers: Iterable[str] | None = None, objective: str | None = None) -> CompiledModel:
    """The accelerator back end (:mod:`tvm_mp.accel.target`): the layers the datapath runs (or ``accel_layers``)
    become packed calls to the simulator, the rest is built for the host. The report's layer figures are the
    simulator's (cycles and energy do not depend on the data); ``report.accelerator`` has cycles, energy per
    component and the mapping of each accelerator layer."""
    from .accel.target import offload_lowered

    objective = objective or getattr(cost_model, "objective", "energy")
    lowered, runtime = offload_lowered(lowered, quantized, target.hardware, mappings, objective,
                                       layers=accel_layers)
    executable = build_executable(lowered, target)
    runtime.register()
    report = accel_report(mod, quantized, target, runtime)
    model = CompiledModel(lowered, quantized, executable, plan, report, target)
    model.accel = runtime
    return model


def accel_report(mod: tvm.IRModule, quantized: tvm.IRModule, target: CompileTarget, runtime) -> Report:
    """The report of an accelerator build: each accelerator layer's simulated cycles (as latency at the clock)
    and energy; layers on the host CPU have no figures (``report.accelerator["cpu_layers"]``)."""
    rows, fp32 = layer_rows(mod, quantized)
    figures = runtime.profile()
    hw = target.hardware
    rows = [replace(r, kernel="accel", latency_ms=figures[r.name].latency_us / 1000.0,
                    energy_uj=figures[r.name].energy_uj) if r.name in figures else r for r in rows]
    components: dict[str, float] = {}
    layers = []
    for r in rows:
        if r.name not in figures:
            continue
        res, k = figures[r.name], runtime.kernels[r.name]
        comp = {c: float(v) for c, v in res.energy.components_uj.items()}
        for c, v in comp.items():
            components[c] = components.get(c, 0.0) + v
        layers.append({"name": r.name, "precision": k.spec.precision, "mapping": str(k.spec.mapping),
                       "output": "codes" if k.spec.output.kind == "codes" else "int32 to host",
                       "cycles": int(res.cycles), "energy_uj": float(res.energy_uj), "components_uj": comp,
                       "instructions": int(sum(res.instructions.values())),
                       "chain_in": k.spec.chain_in is not None, "chain_out": k.onchip_out is not None})
    cycles = sum(entry["cycles"] for entry in layers)
    energy = sum(entry["energy_uj"] for entry in layers)
    edges = runtime.edge_savings(figures)
    accel = {"hardware": hw.name, "clock_mhz": hw.clock_mhz, "cycles": int(cycles), "energy_uj": float(energy),
             "components_uj": components, "layers": layers, "edges": edges,
             "cpu_layers": [r.name for r in rows if r.name not in figures and r.precision != "fp32"]}
    return Report(tuple(rows), sum(r.weight_bytes for r in rows) / 1024.0, float(energy) if layers else None,
                  cycles / hw.clock_mhz / 1000.0 if layers else None, fp32_layers=tuple(fp32),
                  cost_model=f"accelerator simulator ({hw.name})", latency_basis="simulated",
                  energy_basis="simulated", target=target.name, unquantizable=tuple(unquantizable_layers(mod)),
                  accelerator=accel)


def build_cortex_m(mod: tvm.IRModule, quantized: tvm.IRModule, plan: PrecisionPlan, target: CompileTarget,
                   calibration: Iterable | None = None) -> CompiledModel:
    """The Cortex-M back end: C of the quantized module, measured on the emulated board (no TVM build). The
    model's ``reference`` runs; ``export`` writes the C bundle; ``run`` refuses (not this machine)."""
    from .deploy.cortexm import measure

    network, figures = measure(quantized, target.name, calibration)
    rows, fp32 = layer_rows(mod, quantized)
    report = Report(tuple(rows), sum(r.weight_bytes for r in rows) / 1024.0, fp32_layers=tuple(fp32),
                    target=target.name, deployment=figures, unquantizable=tuple(unquantizable_layers(mod)))
    model = CompiledModel(None, quantized, None, plan, report, target)
    model.network = network
    return model


def lower_plans(mod: tvm.IRModule, plans: Sequence[PrecisionPlan], target: Any = None, *,
                calibration: Iterable | None = None, ranges: Mapping[str, ActivationRange] | None = None,
                calibration_method: str = DEFAULT_CALIBRATION_METHOD, percentile: float = 99.99, database: Any = None
                ) -> tuple[list[tvm.IRModule], list[tvm.IRModule]]:
    """``(quantized, lowered)`` of each plan, all with one calibration: exactly what :func:`build` lowers for
    each plan alone (run-time operating points merge them into one artifact)."""
    tgt = parse(target)
    if not tgt.builds_with_tvm:
        raise UnsupportedError(f"run-time operating points merge TVM builds; {tgt.name} is a C target: compile "
                               "each plan on its own")
    if tgt.kind == "accel":
        raise UnsupportedError("run-time operating points are CPU builds; on the accelerator compile each plan on "
                               "its own with tvm_mp.compile(..., target='accel')")
    mod = canonicalize(mod)
    warn_fp32_ops(mod)
    warn_unquantizable(mod)
    for plan in plans:
        check_plan(mod, plan)
    if ranges is None:
        merged = PrecisionPlan({n: p for plan in plans for n, p in plan.items()})
        ranges = calibrate_for(mod, merged, calibration, calibration_method, percentile)
    quantized = [quantize(mod, plan, ranges=ranges) for plan in plans]
    return quantized, [lower(q, tgt, database) for q in quantized]


def compile_offloaded(mod: tvm.IRModule, plan: PrecisionPlan, calibration: Iterable, hw=None,
                      accel_layers: Iterable[str] | None = None, mappings: Mapping | None = None,
                      target: Any = None, objective: str = "energy",
                      calibration_method: str = DEFAULT_CALIBRATION_METHOD, percentile: float = 99.99,
                      database: Any = None) -> CompiledModel:
    """The older accelerator entry point, now an alias of ``tvm_mp.compile(mod, plan=plan, target="accel")``: the
    same build (:func:`build` with the accelerator target), returning the same :class:`~tvm_mp.model.CompiledModel`
    (``model.accel`` is its :class:`~tvm_mp.accel.target.AccelRuntime`; ``model.accel.report(...)`` the per-layer
    cycles and energy). ``hw``: a hardware description (``HardwareConfig`` or what ``{"kind": "accel", "config":
    ...}`` takes; default the built-in one) or ``target``: an accelerator target, not both. ``accel_layers`` (default:
    every integer layer the datapath runs) run on the simulator, the other planned layers as integer CPU kernels."""
    from .targets import accel_target

    if not isinstance(plan, PrecisionPlan):
        raise PlanError(f"plan must be a PrecisionPlan, got {type(plan).__name__}")
    if hw is not None and target is not None:
        raise UnsupportedError("compile_offloaded takes hw or target, not both: give target={'kind': 'accel', "
                               "'config': <your hardware description>} alone")
    tgt = accel_target(hw) if target is None else parse(target)
    if tgt.kind != "accel":
        raise UnsupportedError(f"compile_offloaded is tvm_mp.compile(..., target='accel') and cannot build for "
                               f"{tgt.name}: leave target out, or give target='accel'")
    return build(mod, plan, tgt, calibration=calibration, calibration_method=calibration_method,
                 percentile=percentile, database=database, accel_layers=accel_layers, mappings=mappings,
                 objective=objective)
