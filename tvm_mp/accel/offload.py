"""Relax-level offload: chosen layers run on the (simulated) accelerator, the rest on the CPU, through the Relax VM.

Design. Accelerator layers have **float edges**: such a layer takes its float input, quantizes it with its own
calibrated scale and zero point, runs the integer layer on the simulator and returns the dequantized float output
(``float32(acc + bias_corr) * s_in * s_w``, :func:`tvm_mp.quantize.scheme.dequantize_output`). Activations after
it (ReLU, Clip) stay in the graph. This keeps the host/accelerator interface one tensor type and lets the NumPy
reference apply unchanged: :func:`isolate` puts a no-op ``astype(float32)`` on both sides of every accelerator
layer, so :mod:`tvm_mp.quantize.graph` makes those edges float, and the isolated module is both what the CPU side
is compiled from and what :class:`~tvm_mp.quantize.interpreter.Interpreter` checks it against (integer edges
between CPU layers are kept). Integer edges between two accelerator layers (requantizing on chip, which the ISA
supports: see :class:`~tvm_mp.accel.lower.OutputSpec`) are left for later.

Flow (:func:`tvm_mp.driver.compile_offloaded`, the compile driver): calibrate -> AnnotatePrecision -> QuantizeWeights ->
:func:`isolate` ->
:func:`offload` (accelerator layer calls become ``R.call_dps_packed("tvm_mp.accel.<id>.<layer>", x)``) ->
RewriteMixedPrecision (the CPU layers) -> ``tvm.compile``. The packed functions are registered when the model is
built (not at import) and removed by :meth:`OffloadedModel.close`. Each call simulates the layer; the last run's
per-layer cycles and energy are in :meth:`OffloadedModel.accel_report`.

This module rewrites a quantized module for the accelerator; it imports neither the passes nor the driver (the
driver calls it).
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import tvm
from tvm import relax

from .. import _tvm
from ..errors import Error, ensure_ffi_registration
from ..layers import annotated_layer_functions
from ..quantize import scheme
from ..quantize.graph import layer_name_of
from ..quantize.qlayer import QuantLayer, read_layer
from .hardware import HardwareConfig, HardwareError
from .lower import ConvShape, LayerMapping, LayerPlan, OutputSpec, lower, pack_input, pack_layer, unpack_output
from .mapping import search_mappings
from .report import AccelLayerRow, AccelReport
from .simulator import SimResult, Simulator

FUNC_PREFIX = "tvm_mp.accel"


class AccelLayer:
    """One layer lowered for the accelerator, callable on float NumPy input (see the module docstring)."""

    def __init__(self, layer: QuantLayer, hw: HardwareConfig, mapping: LayerMapping | None = None,
                 objective: str = "energy"):
        act = layer.require_act()
        prec = layer.precision
        hw.check_precision(prec.w_bits, prec.a_bits)
        self.layer, self.hw, self.act = layer, hw, act
        shape = ConvShape.from_layer(layer.info)
        if mapping is None:
            mapping = search_mappings(shape, prec.w_bits, prec.a_bits, hw, OutputSpec(), objective).best.mapping
        self.mapping = mapping
        self.plan = LayerPlan(shape, prec.w_bits, prec.a_bits, hw, mapping, OutputSpec(), act.zero_point)
        self.program = lower(self.plan)
        corr = layer.bias_corr()
        self._dram, self._valid = pack_layer(self.plan, np.zeros(layer.info.input_shape, np.uint8), layer.w_q, corr)
        self._scale = layer.out_scale()
        self.last: SimResult | None = None
        self.calls = 0

    @property
    def name(self) -> str:
        return self.layer.name

    def run_codes(self, codes: np.ndarray) -> tuple[np.ndarray, SimResult]:
        """int32 ``acc + bias_corr`` of uint8 input codes, and the simulation's figures."""
        dram = dict(self._dram)
        dram["inp"] = pack_input(self.plan, codes)
        mem, result = Simulator(self.hw).run(self.program, dram, self._valid)
        acc = unpack_output(self.plan, mem["out"]).astype(np.int32)
        if self.layer.info.op == "dense":
            acc = acc.reshape(acc.shape[0], -1)
        return acc, result

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Float input -> float output, as the reference computes a layer with float edges."""
        acc, self.last = self.run_codes(self.act.quantize(x))
        self.calls += 1
        return scheme.dequantize_output(acc, 1, self._scale)

    def packed_function(self):
        """The function the Relax VM calls: ``f(input, output)`` (destination-passing style)."""

        def run(x, out):
            out.copyfrom(np.ascontiguousarray(self(x.numpy())))

        return run


def accel_calls(main: relax.Function, mod: tvm.IRModule, names: set[str]) -> set[str]:
    found = set()
    for block in main.body.blocks:
        for b in block.bindings:
            name = layer_name_of(b.value, mod)
            if name in names:
                found.add(name)
    return found


def _rewrite(mod: tvm.IRModule, names: set[str], replace) -> tvm.IRModule:
    """Put ``astype`` barriers around every call of a layer in ``names``; ``replace(name, call, x)`` gives the new
    call on the barrier-wrapped input ``x``."""

    @relax.expr_functor.mutator
    class Barrier(relax.PyExprMutator):
        def visit_var_binding_(self, binding):
            name = layer_name_of(binding.value, mod)
            if name not in names:
                super().visit_var_binding_(binding)
                return
            x = self.builder_.emit(relax.op.astype(self.visit_expr(binding.value.args[0]), "float32"),
                                   f"{name}_in")
            y = self.builder_.emit(replace(name, binding.value, x), f"{name}_out")
            out = relax.op.astype(y, "float32")
            if isinstance(binding.var, relax.DataflowVar):
                new = self.builder_.emit(out, _tvm.var_name(binding.var))
            else:
                new = self.builder_.emit_output(out, _tvm.var_name(binding.var))
            self.set_var_remap(binding.var, new)

    mutator = Barrier(mod)
    main = mutator.visit_expr(mod["main"])
    mutator.builder_.update_func(mod.get_global_var("main"), main)
    return mutator.builder_.get()


def isolate(mod: tvm.IRModule, layers: Iterable[str]) -> tvm.IRModule:
    """Give the named layers float edges (no-op ``astype`` on their input and output), in a module made by
    AnnotatePrecision (+ QuantizeWeights). Numerics of the float network are unchanged; the quantized reference
    and RewriteMixedPrecision then quantize these layers' inputs and dequantize their outputs."""
    ensure_ffi_registration()
    names = set(layers)
    functions = annotated_layer_functions(mod)
    unknown = sorted(names - set(functions))
    if unknown:
        raise Error(f"layer {unknown[0]!r} is not an annotated layer of the module; annotated layers: "
                    f"{', '.join(sorted(functions)) or '(none)'}")
    return _rewrite(mod, names, lambda name, call, x: relax.Call(call.op, [x], call.attrs))


class AccelSession:
    """The accelerator layers of one compiled model and the packed functions that run them."""

    def __init__(self, layers: Mapping[str, AccelLayer]):
        self.layers = dict(layers)
        self.prefix = f"{FUNC_PREFIX}.m{id(self):x}"
        self._registered: list[str] = []

    def function_name(self, layer: str) -> str:
        return f"{self.prefix}.{layer}"

    def register(self) -> None:
        """Register one packed function per accelerator layer with TVM's global function table."""
        for name, layer in self.layers.items():
            fname = self.function_name(name)
            tvm.register_global_func(fname, layer.packed_function(), override=True)
            self._registered.append(fname)

    def unregister(self) -> None:
        from tvm_ffi import remove_global_func

        for fname in self._registered:
            remove_global_func(fname)
        self._registered.clear()


def offload(mod: tvm.IRModule, layers: Iterable[str], hw: HardwareConfig | None = None,
            mappings: Mapping[str, LayerMapping] | None = None, objective: str = "energy"
            ) -> tuple[tvm.IRModule, AccelSession]:
    """Replace the calls of the named (calibrated, weight-quantized) layers by ``call_dps_packed`` to accelerator
    functions; returns the new module and the session holding the lowered layers (call ``session.register()``
    before running). Apply to the output of :func:`isolate` (or the module it was applied to: ``offload`` isolates
    the layers itself) and lower the rest with RewriteMixedPrecision."""
    ensure_ffi_registration()
    hw = hw or HardwareConfig.default()
    names = set(layers)
    functions = annotated_layer_functions(mod)
    unknown = sorted(names - set(functions))
    if unknown:
        raise Error(f"layer {unknown[0]!r} is not an annotated layer of the module; annotated layers: "
                    f"{', '.join(sorted(functions)) or '(none)'}")
    accel = {}
    for name in sorted(names):
        layer = read_layer(functions[name][1])
        accel[name] = AccelLayer(layer, hw, (mappings or {}).get(name), objective)
    session = AccelSession(accel)

    def call(name, _call, x):
        info = accel[name].layer.info
        return relax.call_dps_packed(session.function_name(name), [x], _tvm.tensor_type(info.output_shape,
                                                                                        "float32"))

    new = _rewrite(mod, names, call)
    return relax.transform.DeadCodeElimination(["main"])(new), session


def supported_layers(mod: tvm.IRModule, hw: HardwareConfig) -> list[str]:
    """Annotated layers whose precision the accelerator's datapath supports."""
    out = []
    for name, (_, func) in annotated_layer_functions(mod).items():
        prec = read_layer(func).precision
        try:
            hw.check_precision(prec.w_bits, prec.a_bits)
        except HardwareError:
            continue
        out.append(name)
    return sorted(out)


class OffloadedModel:
    """A compiled model whose accelerator layers run on the simulator. ``run`` goes through the Relax VM;
    ``reference`` is the NumPy reference of the same plan with the same float edges."""

    def __init__(self, compiled, session: AccelSession, hw: HardwareConfig, cpu_layers: tuple[str, ...]):
        self.compiled = compiled
        self.session = session
        self.hw = hw
        self.cpu_layers = cpu_layers

    @property
    def accel_layers(self) -> tuple[str, ...]:
        return tuple(sorted(self.session.layers))

    def run(self, *inputs: np.ndarray) -> np.ndarray:
        return self.compiled.run(*inputs)

    def reference(self, *inputs: np.ndarray) -> np.ndarray:
        return self.compiled.reference(*inputs)

    def accel_report(self, model: str = "model") -> AccelReport:
        """Per-layer cycles and energy of the last run (accelerator layers; CPU layers listed without figures)."""
        rows = []
        infos = {r.name: r for r in self.compiled.report.layers}
        for name in [r.name for r in self.compiled.report.layers]:
            layer = self.session.layers.get(name)
            if layer is None:
                rows.append(AccelLayerRow(name, infos[name].op, infos[name].precision, "cpu", infos[name].macs,
                                          None, None, None, "cpu"))
                continue
            if layer.last is None:
                raise Error("run the model once before asking for its accelerator report")
            res = layer.last
            rows.append(AccelLayerRow(name, layer.layer.info.op, f"w{layer.plan.w_bits}a{layer.plan.a_bits}",
                                      str(layer.mapping), layer.layer.info.macs, res.cycles, res.latency_us,
                                      res.energy, "simulator"))
        return AccelReport(model, self.hw.name, tuple(rows))

    def close(self) -> None:
        """Unregister the packed functions (the model cannot run afterwards)."""
        self.session.unregister()
