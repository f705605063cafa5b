"""RewriteMixedPrecision: lower annotated, weight-quantized layers to tvm-mp's integer kernels.

Rewrites: in ``main``, each call to a layer function becomes

* a ``call_tir`` to a quantize kernel (float input -> uint8 codes), unless the input already arrives as codes;
* a ``call_tir`` to the layer's integer kernel -- bit-serial (weights as bit-planes, activations bit-packed at run
  time) or packed (weights densely packed, unpacked in the inner loop) -- whose epilogue adds the bias in the
  integer domain and either dequantizes (float output, with a directly following ReLU/Clip fused as a clamp) or
  requantizes straight into the next layer's input codes (integer edge; ReLU/Clip become integer clamps and
  MaxPool/Reshape in between run on uint8 codes). The edge rule is :mod:`tvm_mp.quantize.graph`.

Weights become constants in their storage format: a w-bit layer stores about w/32 of its fp32 weight bytes.
Float-format and clustered layers (:mod:`tvm_mp.formats`) lower to their own kernels: a float-format layer takes and
gives float32 (its edges are float edges), a clustered layer is an integer layer whose kernel looks its products up.
Leaves alone: every op that is not a layer function call or part of an integer edge; layers without a precision
stay fp32. Afterwards the layer functions are unused and removed.

Must run after: AnnotatePrecision (with activation ranges) and QuantizeWeights. Idempotent: a module without
layer functions is returned unchanged.
"""

from __future__ import annotations

import json

import numpy as np
import tvm
from tvm import relax

from .. import _tvm
from ..errors import ensure_ffi_registration
from ..formats import lowering as format_lowering
from ..layers import annotated_layer_functions
from ..quantize import packing
from ..quantize.graph import analyze_outputs, integer_bounds, layer_name_of
from ..quantize.qlayer import QuantLayer, read_layer
from ..quantize.scheme import requant_multiplier
from ..schedules import kernels, tuning
from ..targets import parse

#: The attribute each integer kernel carries: its epilogue as JSON (``kind``, ``lo``, ``hi``, ``zero_point``), what a
#: back end replacing the kernel (the accelerator, :mod:`tvm_mp.accel.target`) must compute.
EPILOGUE_ATTR = "tvm_mp.epilogue"


def _plain(value):
    """A clamp bound as JSON: None, an int (code bounds) or a float (float32 bounds)."""
    if value is None:
        return None
    return int(value) if isinstance(value, (int, np.integer)) else float(value)


def weight_storage(layer: QuantLayer) -> list[np.ndarray]:
    """The weight constants a layer's kernel takes, in its storage format."""
    if format_lowering.is_format_layer(layer):  # float formats and clustered weights (tvm_mp.formats)
        return format_lowering.weight_storage(layer)
    bits = layer.precision.w_bits
    if layer.precision.resolved_kind == "bitserial":
        coef, _ = packing.plane_coefficients(bits)
        return [packing.weight_bitplanes(layer.w_q, bits), coef]
    return [packing.pack_dense(layer.w_q, bits)]


def kernel_workload(layer: QuantLayer):
    """The schedule registry's workload of ``layer``'s integer kernel."""
    info, prec = layer.info, layer.precision
    if info.op == "dense":
        return kernels.dense_workload(prec.resolved_kind, prec.w_bits, prec.a_bits, info.input_shape,
                                      info.weight_shape)
    return kernels.conv_workload(prec.resolved_kind, prec.w_bits, prec.a_bits, info.input_shape, info.weight_shape,
                                 info.params)


def kernel_config(layer: QuantLayer, target, database=None):
    """``(config, source)``: the schedule knobs of ``layer``'s fast kernel on ``target`` and where they came from
    (:func:`tvm_mp.schedules.kernels.config_for`); ``(None, "")`` without a target or for a float-format layer."""
    if target is None or not layer.precision.is_integer or format_lowering.is_format_layer(layer):
        return None, ""
    return kernels.config_for(kernel_workload(layer), target, database)


def kernel_weight_storage(layer: QuantLayer, config) -> list[np.ndarray]:
    """The weight constants in the layout the kernel of ``config`` reads (:func:`weight_storage` without one)."""
    if config is None:
        return weight_storage(layer)
    return kernels.weight_data(kernel_workload(layer), layer.w_q, config)


def layer_kernel(layer: QuantLayer, epi: kernels.Epilogue, storage: list[np.ndarray], schedule: bool = True,
                 target=None, config=None):
    """The PrimFunc computing ``layer`` with epilogue ``epi`` (the fast kernel of ``target`` when given)."""
    prec = layer.precision
    info = layer.info
    name = f"tvm_mp_{info.name}_kernel"
    if format_lowering.is_format_layer(layer):
        return format_lowering.layer_kernel(layer, epi, storage, schedule)
    fast = target if config is not None else None
    if info.op == "dense":
        return kernels.dense_kernel(name, prec.resolved_kind, prec.w_bits, prec.a_bits, info.input_shape,
                                    info.out_channels, epi, storage[0].shape, schedule, target=fast, config=config)
    return kernels.conv2d_kernel(name, prec.resolved_kind, prec.w_bits, prec.a_bits, info.input_shape,
                                 info.weight_shape, info.params, layer.require_act().zero_point, epi,
                                 storage[0].shape, schedule, target=fast, config=config)


def with_schedule_attrs(func, config, source: str):
    """``func`` marked with the knobs it was built with (``tvm_mp.schedule``, JSON) and where they came from
    (``tvm_mp.schedule_source``): what the compile report reads back per layer (:func:`schedule_of`)."""
    if config is None:
        return func
    return func.with_attr("tvm_mp.schedule", json.dumps(config.to_dict(), sort_keys=True)).with_attr(
        "tvm_mp.schedule_source", source)


def schedule_of(lowered: tvm.IRModule, layer_name: str) -> tuple[dict | None, str]:
    """``(knobs, source)`` of the kernel a lowered module built for ``layer_name`` (``(None, "")`` when it has no
    tunable kernel: reference-layout, float-format or fp32 layers)."""
    name = f"tvm_mp_{layer_name}_kernel"
    gvs = [gv for gv in lowered.get_global_vars() if gv.name_hint == name]
    if not gvs:
        return None, ""
    attrs = lowered[gvs[0]].attrs
    if attrs is None or "tvm_mp.schedule" not in attrs:
        return None, ""
    return json.loads(str(attrs["tvm_mp.schedule"])), str(attrs["tvm_mp.schedule_source"])


@tvm.transform.module_pass(opt_level=0, name="RewriteMixedPrecision")
class RewriteMixedPrecision:
    """Replace layer functions by integer kernels (see module docstring)."""

    def __init__(self, schedule: bool = True, target=None, database=None):
        self.schedule = schedule
        self.target = target  # None: the current tvm.target.Target context, if any, else reference-layout kernels
        self.database = database  # tuning database(s) (None: the user database, then the one shipped with tvm-mp)

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        ensure_ffi_registration()
        functions = annotated_layer_functions(mod)
        if not functions:
            return mod
        layers = {name: read_layer(func) for name, (_, func) in functions.items()}
        for layer in layers.values():
            if layer.precision.kind != "float":  # float-format layers take float input: no quantization
                layer.require_act()
        main = mod["main"]
        outputs = analyze_outputs(main, mod)
        taken = {b.var: out for out in outputs.values() for b in out.chain}
        consumer_of = {}
        for out in outputs.values():
            if out.integer:
                consumer_of[out.producer] = layers[out.consumer_layer]
        schedule = self.schedule
        target = self.target if self.target is not None else tvm.target.Target.current(allow_none=True)
        target = parse(target).tvm_target if (target is not None and schedule) else None
        database = tuning.resolve(self.database) if target is not None else None  # read once per module
        llvm = target is not None and target.kind.name == "llvm"

        @relax.expr_functor.mutator
        class Lower(relax.PyExprMutator):
            def visit_var_binding_(self, binding):
                value = binding.value
                if binding.var in taken:
                    out = taken[binding.var]
                    src = self.visit_expr(value.args[0])
                    op = value.op.name
                    if out.integer and op == "relax.nn.max_pool2d":
                        self._bind(binding.var, relax.Call(value.op, [src], value.attrs))
                    elif out.integer and op == "relax.reshape":
                        self._bind(binding.var, relax.op.reshape(src, value.args[1]))
                    else:  # ReLU / Clip folded into the producer's clamp
                        self.set_var_remap(binding.var, src)
                    return
                name = layer_name_of(value, mod)
                if name is None:
                    super().visit_var_binding_(binding)
                    return
                self._bind(binding.var, self._lower_layer(layers[name], binding.var, value))

            def _bind(self, var, expr):
                if isinstance(var, relax.DataflowVar):
                    new = self.builder_.emit(expr, var.name)
                else:
                    new = self.builder_.emit_output(expr, var.name)
                self.set_var_remap(var, new)

            def _lower_float_format(self, layer: QuantLayer, var, call):
                """A float-format layer: float32 in, float32 out, the following ReLU/Clip fused as a clamp."""
                out = outputs[var]
                storage = weight_storage(layer)
                kfunc = layer_kernel(layer, kernels.Epilogue("float", out.float_lo, out.float_hi), storage,
                                     schedule)
                kgv = self.builder_.add_func(kfunc, f"tvm_mp_{layer.name}_kernel")
                args = [self.visit_expr(call.args[0])] + [_tvm.const(a) for a in storage]
                args.append(_tvm.const(format_lowering.float_bias(layer)))
                return relax.call_tir(kgv, args, _tvm.tensor_type(layer.info.output_shape, "float32"))

            def _lower_layer(self, layer: QuantLayer, var, call):
                if layer.precision.kind == "float":
                    return self._lower_float_format(layer, var, call)
                act = layer.require_act()
                x = self.visit_expr(call.args[0])
                if _tvm.expr_dtype(x) != "uint8":
                    qname = f"tvm_mp_{layer.name}_quantize"
                    qfunc = kernels.quantize_kernel(qname, layer.info.input_shape, act.inv_scale, act.zero_point,
                                                    act.qmax, schedule, llvm=llvm)
                    qgv = self.builder_.add_func(qfunc, qname)
                    x = self.builder_.emit(
                        relax.call_tir(qgv, [x], _tvm.tensor_type(layer.info.input_shape, "uint8")),
                        f"{layer.name}_codes")
                out = outputs[var]
                params = [layer.bias_corr()]
                if out.integer:
                    cact = consumer_of[var].require_act()
                    lo, hi = integer_bounds(out.chain, cact)
                    epi = kernels.Epilogue("requant", lo, hi, cact.zero_point)
                    mult, shift = requant_multiplier(layer.out_scale().astype(np.float64) / cact.scale)
                    params += [mult, shift]
                    dtype = "uint8"
                else:
                    epi = kernels.Epilogue("float", out.float_lo, out.float_hi)
                    params.append(layer.out_scale())
                    dtype = "float32"
                config, source = kernel_config(layer, target, database)
                storage = kernel_weight_storage(layer, config)
                kfunc = with_schedule_attrs(layer_kernel(layer, epi, storage, schedule, target, config), config,
                                            source)
                kfunc = kfunc.with_attr(EPILOGUE_ATTR, json.dumps(
                    {"kind": epi.kind, "lo": _plain(epi.lo), "hi": _plain(epi.hi), "zero_point": int(epi.zero_point)}))
                kgv = self.builder_.add_func(kfunc, f"tvm_mp_{layer.name}_kernel")
                args = [x] + [_tvm.const(a) for a in storage + params]
                return relax.call_tir(kgv, args, _tvm.tensor_type(layer.info.output_shape, dtype))

        mutator = Lower(mod)
        new_main = mutator.visit_expr(main)
        mutator.builder_.update_func(mod.get_global_var("main"), new_main)
        return relax.transform.DeadCodeElimination(["main"])(mutator.builder_.get())
