"""The accelerator as a compile target: ``tvm_mp.compile(mod, plan | budget, target="accel")``.

Flow (the compile driver calls :func:`offload_lowered` after RewriteMixedPrecision): the module is quantized and
lowered exactly as for the CPU, with integer edges between layers; then every integer layer whose precision the
accelerator's datapath supports has its kernel call replaced by ``R.call_dps_packed("tvm_mp.accel.<id>.<layer>",
codes)``. The packed function is the accelerator runtime: it packs the uint8 input codes into the DRAM image, runs
the layer's instruction stream on the bit-exact simulator, and returns what the CPU kernel returns -- uint8 codes
requantized on chip (``mul_shift``, zero point, clamp on the ALU) for an integer edge, or ``float32(acc') * scale``
clamped for a float edge (the host dequantizes the int32 accumulators the accelerator stores). The kernel's
epilogue (kind, clamp bounds, zero point) is read from the ``tvm_mp.epilogue`` attribute RewriteMixedPrecision puts
on it and its per-channel constants (bias correction, multiplier, shift, scale) from the kernel call's arguments,
so the accelerator computes the CPU kernel's arithmetic exactly.

Cycles and energy do not depend on the data, so the build simulates each layer once (zero input) for the report;
:attr:`AccelRuntime.last` holds the figures of the last inference. ``export`` writes ``accel/`` (the hardware
description, per-layer mapping and epilogue, the weights and constants, and each layer's instruction listing);
:func:`tvm_mp.load` reads it back and registers the packed functions again (same names: they are baked into
``model.so``).
"""

from __future__ import annotations

import functools
import json
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np
import tvm
from tvm import relax

from .. import _tvm
from .._files import write_atomic
from ..errors import Error, ensure_ffi_registration
from ..layers import annotated_layer_functions
from ..quantize.packing import container_bits
from ..quantize.qlayer import read_layer
from .hardware import HardwareConfig, HardwareError
from .lower import ConvShape, LayerMapping, LayerPlan, OutputSpec, lower, pack_input, pack_layer, unpack_output
from .mapping import search_mappings
from .simulator import SimResult, Simulator
from .tir_lower import tir_program, tir_supported

#: Attribute RewriteMixedPrecision puts on each integer kernel: its epilogue as JSON (kind, lo, hi, zero_point).
if TYPE_CHECKING:
    from .report import AccelReport

#: (The name :mod:`tvm_mp.passes.rewrite_mixed_precision` writes; this package does not import the passes.)
EPILOGUE_ATTR = "tvm_mp.epilogue"
FUNC_PREFIX = "tvm_mp.accel"
#: Sub-directory of an artifact holding the accelerator's part.
ARTIFACT_DIR = "accel"


@dataclass(frozen=True)
class LayerSpec:
    """One accelerator layer: its shape, precision, mapping and epilogue (``kind`` "requant" or "float")."""

    name: str
    op: str
    shape: ConvShape
    w_bits: int
    a_bits: int
    zero_point: int
    mapping: LayerMapping
    output: OutputSpec
    epilogue: Mapping
    out_shape: tuple[int, ...]

    @property
    def out_dtype(self) -> str:
        return "uint8" if self.epilogue["kind"] == "requant" else "float32"

    @property
    def precision(self) -> str:
        return f"w{self.w_bits}a{self.a_bits}"

    def to_dict(self) -> dict:
        s, p = self.shape, self.shape.params
        return {"name": self.name, "op": self.op, "w_bits": self.w_bits, "a_bits": self.a_bits,
                "zero_point": self.zero_point, "mapping": self.mapping.to_dict(),
                "output": {"kind": self.output.kind, "bits": self.output.bits, "zero_point": self.output.zero_point,
                           "lo": self.output.lo, "hi": self.output.hi},
                "epilogue": dict(self.epilogue), "out_shape": list(self.out_shape),
                "shape": {"n": s.n, "c": s.c, "h": s.h, "w": s.w, "oc": s.oc, "kh": s.kh, "kw": s.kw,
                          "strides": list(p.strides), "padding": list(p.padding), "dilation": list(p.dilation),
                          "groups": p.groups}}

    @classmethod
    def from_dict(cls, d: Mapping) -> "LayerSpec":
        from ..workload import ConvParams

        s = d["shape"]
        params = ConvParams(tuple(s["strides"]), tuple(s["padding"]), tuple(s["dilation"]), int(s["groups"]))
        shape = ConvShape(s["n"], s["c"], s["h"], s["w"], s["oc"], s["kh"], s["kw"], params)
        return cls(str(d["name"]), str(d["op"]), shape, int(d["w_bits"]), int(d["a_bits"]), int(d["zero_point"]),
                   LayerMapping(**d["mapping"]), OutputSpec(**d["output"]), dict(d["epilogue"]),
                   tuple(int(v) for v in d["out_shape"]))


@dataclass
class AccelKernel:
    """A lowered accelerator layer and its constants; ``run(codes)`` simulates it (see the module docstring)."""

    spec: LayerSpec
    hw: HardwareConfig
    arrays: Mapping[str, np.ndarray]  # w_q, bias_corr, and mult + shift (requant) or scale (float)
    last: SimResult | None = field(default=None, repr=False)
    calls: int = 0

    @functools.cached_property
    def plan(self) -> LayerPlan:
        s = self.spec
        return LayerPlan(s.shape, s.w_bits, s.a_bits, self.hw, s.mapping, s.output, s.zero_point)

    @property
    def lowering(self) -> str:
        """``"tir"``: the instruction stream is what the layer's scheduled, tensorized TIR pushes when run
        (:mod:`tir_lower`: every conv2d, depthwise, grouped and dense layer under any mapping); ``"generator"``:
        :func:`lower.lower` (kept for a plan :func:`tir_lower.tir_supported` refuses; none today)."""
        return "tir" if tir_supported(self.plan) else "generator"

    @functools.cached_property
    def program(self):
        return tir_program(self.plan) if self.lowering == "tir" else lower(self.plan)

    @functools.cached_property
    def _image(self) -> tuple[dict, dict]:
        a = self.arrays
        codes = np.full(self._in_shape, self.spec.zero_point, np.uint8)
        return pack_layer(self.plan, codes, a["w_q"], a["bias_corr"], a.get("mult"), a.get("shift"))

    @property
    def _in_shape(self) -> tuple[int, ...]:
        s = self.spec.shape
        return (s.n, s.c) if self.spec.op == "dense" else (s.n, s.c, s.h, s.w)

    def simulate(self, codes: np.ndarray) -> tuple[np.ndarray, SimResult]:
        """The stored output region of ``codes`` unpacked (int32 accumulators or codes), and the run's figures."""
        dram, valid = self._image
        dram = dict(dram)
        dram["inp"] = pack_input(self.plan, np.asarray(codes, np.uint8).reshape(self._in_shape))
        mem, result = Simulator(self.hw).run(self.program, dram, valid)
        return unpack_output(self.plan, mem["out"]), result

    def run(self, codes: np.ndarray) -> np.ndarray:
        """What the CPU kernel returns for ``codes``: uint8 codes (requant) or float32 (float epilogue)."""
        out, self.last = self.simulate(codes)
        self.calls += 1
        epi = self.spec.epilogue
        if epi["kind"] == "requant":
            y = out.astype(np.uint8)
        else:  # the host dequantizes: float32(acc') * scale, clamped, as the CPU kernel's epilogue does
            y = out.astype(np.int32).astype(np.float32) * self.arrays["scale"].astype(np.float32).reshape(
                [1, -1] + [1] * (out.ndim - 2))
            if epi.get("lo") is not None:
                y = np.maximum(y, np.float32(epi["lo"]))
            if epi.get("hi") is not None:
                y = np.minimum(y, np.float32(epi["hi"]))
            y = y.astype(np.float32)
        return np.ascontiguousarray(y.reshape(self.spec.out_shape))

    def packed_function(self):
        def call(x, out):
            out.copyfrom(self.run(x.numpy()))

        return call


class AccelRuntime:
    """The accelerator layers of one compiled model and the packed functions (the simulator) that run them."""

    def __init__(self, hw: HardwareConfig, kernels: Mapping[str, AccelKernel], prefix: str):
        self.hw = hw
        self.kernels = dict(kernels)
        self.prefix = prefix

    def function_name(self, layer: str) -> str:
        return f"{self.prefix}.{layer}"

    def register(self) -> None:
        """Register one packed function per layer (replacing any of the same name: a re-loaded artifact)."""
        for name, kernel in self.kernels.items():
            tvm.register_global_func(self.function_name(name), kernel.packed_function(), override=True)

    @property
    def last(self) -> dict[str, SimResult]:
        """Per layer, the figures of its last run (empty before the first)."""
        return {n: k.last for n, k in self.kernels.items() if k.last is not None}

    def profile(self) -> dict[str, SimResult]:
        """Per layer, cycles and energy of one run (they do not depend on the data: simulated on the zero point)."""
        out = {}
        for name, k in self.kernels.items():
            _, out[name] = k.simulate(np.full(k._in_shape, k.spec.zero_point, np.uint8))
        return out

    def report(self, model: str = "model", rows=()) -> "AccelReport":
        """An :class:`~tvm_mp.accel.report.AccelReport` (table, JSON, stacked-bar PNG) of the last run's figures
        (of :meth:`profile` before the first run); ``rows``: the compile report's rows, to list the layers left on
        the host CPU too."""
        from .report import AccelLayerRow, AccelReport

        figures = {**self.profile(), **self.last} if len(self.last) < len(self.kernels) else self.last
        out = []
        names = [r.name for r in rows] or list(self.kernels)
        info = {r.name: r for r in rows}
        for name in names:
            k = self.kernels.get(name)
            if k is None:
                r = info[name]
                out.append(AccelLayerRow(name, r.op, r.precision, "cpu", r.macs, None, None, None, "cpu"))
                continue
            res = figures[name]
            out.append(AccelLayerRow(name, k.spec.op, k.spec.precision, str(k.spec.mapping), k.spec.shape.macs,
                                     res.cycles, res.latency_us, res.energy, "simulator"))
        return AccelReport(model, self.hw.name, tuple(out))

    # -- artifact ------------------------------------------------------------------------------------------------
    def write(self, directory: Path) -> Path:
        directory = Path(directory) / ARTIFACT_DIR
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"prefix": self.prefix, "hardware": self.hw.to_dict(),
                "layers": [k.spec.to_dict() for k in self.kernels.values()]}
        write_atomic(directory / "accel.json", json.dumps(meta, indent=1))
        arrays = {f"{n}/{key}": np.asarray(v) for n, k in self.kernels.items() for key, v in k.arrays.items()}
        with open(directory / "weights.npz", "wb") as f:
            np.savez(f, **arrays)
        for name, k in self.kernels.items():
            write_atomic(directory / f"{name}.program.txt",
                         f"# lowered by: {k.lowering}\n" + k.program.listing() + "\n")
        return directory

    @classmethod
    def read(cls, directory: Path) -> "AccelRuntime":
        src = Path(directory) / ARTIFACT_DIR
        try:
            meta = json.loads((src / "accel.json").read_text())
            hw = HardwareConfig.from_dict(meta["hardware"])
            with np.load(src / "weights.npz") as data:
                arrays = {key: data[key] for key in data.files}
            kernels = {}
            for d in meta["layers"]:
                spec = LayerSpec.from_dict(d)
                mine = {key.split("/", 1)[1]: v for key, v in arrays.items() if key.split("/", 1)[0] == spec.name}
                kernels[spec.name] = AccelKernel(spec, hw, mine)
            return cls(hw, kernels, str(meta["prefix"]))
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, Error) as err:
            raise Error(f"{src} is damaged ({_tvm.error_line(err) if not isinstance(err, Error) else err}); "
                        "re-export the model") from None


def _kernel_call(value, lowered: tvm.IRModule):
    """``(callee name, args)`` of a ``call_tir`` binding value, else None."""
    if not isinstance(value, relax.Call) or not hasattr(value.op, "name") or value.op.name != "relax.call_tir":
        return None
    gv = value.args[0]
    if not isinstance(gv, tvm.ir.GlobalVar):
        return None
    return gv, list(value.args[1].fields)


def output_spec(epilogue: Mapping) -> OutputSpec:
    """What the accelerator stores for a kernel epilogue: codes in the narrowest container holding ``hi`` (the
    consumer's activation width), or int32 accumulators for a float edge."""
    if epilogue["kind"] != "requant":
        return OutputSpec()
    lo, hi, zp = int(epilogue["lo"]), int(epilogue["hi"]), int(epilogue["zero_point"])
    bits = container_bits(max(1, hi.bit_length(), zp.bit_length()))
    return OutputSpec("codes", bits, zp, lo, hi)


def accel_layer_names(quantized: tvm.IRModule, hw: HardwareConfig) -> list[str]:
    """Annotated integer layers (not float formats or clustered weights) whose precision the datapath runs."""
    out = []
    for name, (_, func) in annotated_layer_functions(quantized).items():
        layer = read_layer(func)
        if layer.precision.kind in ("float", "clustered") or not layer.precision.is_integer:
            continue
        try:
            hw.check_precision(layer.precision.w_bits, layer.precision.a_bits)
        except HardwareError:
            continue
        out.append(name)
    return sorted(out)


def offload_lowered(lowered: tvm.IRModule, quantized: tvm.IRModule, hw: HardwareConfig,
                    mappings: Mapping[str, LayerMapping] | None = None, objective: str = "energy"
                    ) -> tuple[tvm.IRModule, AccelRuntime]:
    """Replace the integer kernels of the layers the accelerator runs by packed calls to it (module docstring).
    ``mappings``: layer -> mapping (default: the analytical model's best for ``objective``)."""
    ensure_ffi_registration()
    names = set(accel_layer_names(quantized, hw))
    layers = {n: read_layer(f) for n, (_, f) in annotated_layer_functions(quantized).items() if n in names}
    runtime = AccelRuntime(hw, {}, f"{FUNC_PREFIX}.m{uuid.uuid4().hex[:12]}")
    mappings = dict(mappings or {})

    @relax.expr_functor.mutator
    class Offload(relax.PyExprMutator):
        def visit_var_binding_(self, binding):
            found = _kernel_call(binding.value, lowered)
            name = None
            if found is not None and found[0].name_hint.startswith("tvm_mp_") and \
                    found[0].name_hint.endswith("_kernel"):
                name = found[0].name_hint[len("tvm_mp_"):-len("_kernel")]
            attrs = lowered[found[0]].attrs if name in layers else None
            if name not in layers or attrs is None or EPILOGUE_ATTR not in attrs:
                super().visit_var_binding_(binding)
                return
            gv, args = found
            layer = layers[name]
            epi = json.loads(str(attrs[EPILOGUE_ATTR]))
            consts = [_tvm.const_value(a) for a in args[1:]]
            arrays = {"w_q": np.asarray(layer.w_q), "bias_corr": consts[-3 if epi["kind"] == "requant" else -2]}
            if epi["kind"] == "requant":
                arrays["mult"], arrays["shift"] = consts[-2], consts[-1]
            else:
                arrays["scale"] = consts[-1]
            prec = layer.precision
            shape = ConvShape.from_layer(layer.info)
            output = output_spec(epi)
            mapping = mappings.get(name) or search_mappings(shape, prec.w_bits, prec.a_bits, hw, output,
                                                            objective).best.mapping
            spec = LayerSpec(name, layer.info.op, shape, prec.w_bits, prec.a_bits, layer.require_act().zero_point,
                             mapping, output, epi, tuple(layer.info.output_shape))
            runtime.kernels[name] = AccelKernel(spec, hw, arrays)
            x = self.visit_expr(args[0])
            call = relax.call_dps_packed(runtime.function_name(name), [x],
                                         _tvm.tensor_type(spec.out_shape, spec.out_dtype))
            if isinstance(binding.var, relax.DataflowVar):
                new = self.builder_.emit(call, _tvm.var_name(binding.var))
            else:
                new = self.builder_.emit_output(call, _tvm.var_name(binding.var))
            self.set_var_remap(binding.var, new)

    mutator = Offload(lowered)
    main = mutator.visit_expr(lowered["main"])
    mutator.builder_.update_func(lowered.get_global_var("main"), main)
    new = relax.transform.DeadCodeElimination(["main"])(mutator.builder_.get())
    return new, runtime
