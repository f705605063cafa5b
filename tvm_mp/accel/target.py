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

**On-chip chaining** (:mod:`tvm_mp.accel.chain`): where one accelerator layer's codes feed only the next one
(no CPU op in between, no fan-out) and the next layer's padded input image fits in the ``inp`` buffer beside the
producer's own input, the run of layers becomes *one* packed call (``tvm_mp.accel.<id>.<first layer>``) returning
the last layer's output: each producer FORWARDs its output tiles into the next layer's input image on chip, so
neither a DRAM store nor a DRAM load (nor the host) touches that edge. :attr:`AccelRuntime.edges` says per edge
whether it stayed on chip and why not otherwise; the report adds what each on-chip edge saved.

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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping

import numpy as np
import tvm
from tvm import relax

from .. import _tvm
from .._files import write_atomic
from ..errors import Error, UnsupportedError, ensure_ffi_registration
from ..layers import annotated_layer_functions
from ..quantize.packing import container_bits
from ..quantize.qlayer import read_layer
from .chain import Edge, plan_chain
from .hardware import HardwareConfig, HardwareError
from .lower import (
    ConvShape,
    LayerMapping,
    LayerPlan,
    OnChipInput,
    OnChipOutput,
    OutputSpec,
    pack_input,
    pack_layer,
    unpack_output,
)
from .mapping import search_mappings
from .simulator import SimResult, Simulator
from .tir_lower import tir_program

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
    chain_in: int | None = None  # the input is resident on chip from this inp entry (the previous layer forwards it)

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
                "epilogue": dict(self.epilogue), "out_shape": list(self.out_shape), "chain_in": self.chain_in,
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
                   tuple(int(v) for v in d["out_shape"]),
                   None if d.get("chain_in") is None else int(d["chain_in"]))


@dataclass
class AccelKernel:
    """A lowered accelerator layer and its constants; ``run(codes)`` simulates it (see the module docstring)."""

    spec: LayerSpec
    hw: HardwareConfig
    arrays: Mapping[str, np.ndarray]  # w_q, bias_corr, and mult + shift (requant) or scale (float)
    last: SimResult | None = field(default=None, repr=False)
    calls: int = 0
    onchip_out: OnChipOutput | None = None  # where the layer forwards its output (chained to the next layer)

    @functools.cached_property
    def plan(self) -> LayerPlan:
        s = self.spec
        onchip_in = None if s.chain_in is None else OnChipInput(s.chain_in)
        return LayerPlan(s.shape, s.w_bits, s.a_bits, self.hw, s.mapping, s.output, s.zero_point,
                         onchip_in=onchip_in, onchip_out=self.onchip_out)

    @property
    def chained(self) -> bool:
        return self.spec.chain_in is not None or self.onchip_out is not None

    @functools.cached_property
    def program(self):
        """The layer's instruction stream as its scheduled, tensorized TIR pushes it when run (:mod:`tir_lower`:
        every conv2d, depthwise, grouped and dense layer under any mapping, chained or not: the recorder FORWARDs an
        on-chip output, FILLs and addresses a resident input). :func:`lower.lower` writes the same stream in Python;
        it is the reference the tests and ``bench/accel_tir.py`` compare with, never the compile's path."""
        return tir_program(self.plan)

    @functools.cached_property
    def _image(self) -> tuple[dict, dict]:
        a = self.arrays
        codes = np.full(self._in_shape, self.spec.zero_point, np.uint8)
        return pack_layer(self.plan, codes, a["w_q"], a["bias_corr"], a.get("mult"), a.get("shift"))

    @property
    def _in_shape(self) -> tuple[int, ...]:
        s = self.spec.shape
        return (s.n, s.c) if self.spec.op == "dense" else (s.n, s.c, s.h, s.w)

    def simulate(self, codes: np.ndarray | None, onchip_in: np.ndarray | None = None
                 ) -> tuple[np.ndarray, SimResult]:
        """The stored output region of ``codes`` unpacked (int32 accumulators or codes), and the run's figures."""
        out, result, _ = self.simulate_chained(codes, onchip_in)
        return out, result

    def simulate_chained(self, codes: np.ndarray | None, onchip_in: np.ndarray | None = None
                         ) -> tuple[np.ndarray, SimResult, np.ndarray | None]:
        """:meth:`simulate` as a link of a chain: ``onchip_in`` is the input image the previous layer forwarded
        (``codes`` None: the input is resident, nothing is packed into DRAM); returns also the image this layer
        forwards (None if it stores to DRAM)."""
        dram, valid = self._image
        dram = dict(dram)
        if codes is not None:
            dram["inp"] = pack_input(self.plan, np.asarray(codes, np.uint8).reshape(self._in_shape))
        if self.spec.chain_in is not None and onchip_in is None:
            raise Error(f"accelerator layer {self.spec.name} reads its input on chip: run it in its chain")
        mem, result, image = Simulator(self.hw).run_chained(self.program, dram, valid, onchip_in)
        return unpack_output(self.plan, mem["out"]), result, image

    def unchained(self, keep_in: bool = True, keep_out: bool = True) -> "AccelKernel":
        """This layer with its on-chip input (``keep_in`` False) and/or output (``keep_out`` False) through DRAM."""
        spec = self.spec if keep_in else replace(self.spec, chain_in=None)
        return AccelKernel(spec, self.hw, self.arrays, onchip_out=self.onchip_out if keep_out else None)

    def profile(self) -> SimResult:
        """Cycles and energy of one run on the zero point (data-independent); an on-chip input is a zero image."""
        image = None
        if self.spec.chain_in is not None:
            image = np.zeros((self.hw.capacity_entries("inp", self.spec.w_bits, self.spec.a_bits), self.hw.batch,
                              self.plan.bi))
        return self.simulate_chained(None, image)[1]

    def run(self, codes: np.ndarray) -> np.ndarray:
        """What the CPU kernel returns for ``codes``: uint8 codes (requant) or float32 (float epilogue)."""
        out, self.last = self.simulate(codes)
        self.calls += 1
        return self.finish(out)

    def finish(self, out: np.ndarray) -> np.ndarray:
        """The host's view of the unpacked output region (what the CPU kernel returns)."""
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

    def __init__(self, hw: HardwareConfig, kernels: Mapping[str, AccelKernel], prefix: str,
                 chains: tuple[tuple[str, ...], ...] = (), edges: tuple[Edge, ...] = ()):
        self.hw = hw
        self.kernels = dict(kernels)
        self.prefix = prefix
        self.chains = tuple(tuple(c) for c in chains)  # runs of layers with every edge on chip, in order
        self.edges = tuple(edges)  # every edge between accelerator layers, on chip or not (and why)
        self.link_chains()

    def link_chains(self) -> None:
        """Point each chained producer at its consumer's resident input image."""
        for chain in self.chains:
            for a, b in reversed(list(zip(chain, chain[1:]))):
                self.kernels[a] = replace(self.kernels[a], onchip_out=OnChipOutput.to(self.kernels[b].plan),
                                          last=None, calls=0)

    def function_name(self, layer: str) -> str:
        return f"{self.prefix}.{layer}"

    def chain_of(self, layer: str) -> tuple[str, ...]:
        """The chain ``layer`` heads (itself alone if none)."""
        return next((c for c in self.chains if c[0] == layer), (layer,))

    def run_chain(self, names: tuple[str, ...], codes: np.ndarray) -> np.ndarray:
        """One accelerator invocation of the chained layers ``names`` on ``codes``: the last layer's output."""
        image, out = None, None
        for i, name in enumerate(names):
            k = self.kernels[name]
            out, k.last, image = k.simulate_chained(codes if i == 0 else None, image)
            k.calls += 1
        return self.kernels[names[-1]].finish(out)

    def packed_function(self, layer: str):
        names = self.chain_of(layer)
        if len(names) == 1:
            return self.kernels[layer].packed_function()

        def call(x, out):
            out.copyfrom(self.run_chain(names, x.numpy()))

        return call

    def register(self) -> None:
        """Register one packed function per layer or chain (replacing any of the same name: a re-loaded
        artifact)."""
        inner = {n for c in self.chains for n in c[1:]}
        for name in self.kernels:
            if name not in inner:
                tvm.register_global_func(self.function_name(name), self.packed_function(name), override=True)

    @property
    def last(self) -> dict[str, SimResult]:
        """Per layer, the figures of its last run (empty before the first)."""
        return {n: k.last for n, k in self.kernels.items() if k.last is not None}

    def profile(self) -> dict[str, SimResult]:
        """Per layer, cycles and energy of one run (they do not depend on the data: simulated on the zero point)."""
        return {name: k.profile() for name, k in self.kernels.items()}

    def edge_savings(self, figures: Mapping[str, SimResult] | None = None) -> list[dict]:
        """Per edge: :class:`Edge` fields, and for an on-chip edge what it saves: the producer run storing to
        DRAM plus the consumer run loading from DRAM (each with its other edge and its mapping as built) minus both
        as built. (A producer whose mapping was re-searched to make room has its chained mapping on both sides: the
        whole-model comparison with the mappings an unchained build picks is ``bench/accel_chain.py``'s.)"""
        figures = figures or self.profile()
        out = []
        for e in self.edges:
            d = e.to_dict()
            if e.onchip:
                p, c = self.kernels[e.producer], self.kernels[e.consumer]
                off_p, off_c = p.unchained(keep_out=False).profile(), c.unchained(keep_in=False).profile()
                on_p, on_c = figures[e.producer], figures[e.consumer]
                d.update(dram_bytes_saved=(off_p.events.dram_bytes + off_c.events.dram_bytes
                                           - on_p.events.dram_bytes - on_c.events.dram_bytes),
                         energy_uj_saved=off_p.energy_uj + off_c.energy_uj - on_p.energy_uj - on_c.energy_uj,
                         dram_energy_uj_saved=(off_p.energy.components_uj["dram"] + off_c.energy.components_uj["dram"]
                                               - on_p.energy.components_uj["dram"]
                                               - on_c.energy.components_uj["dram"]),
                         cycles_saved=off_p.cycles + off_c.cycles - on_p.cycles - on_c.cycles)
            out.append(d)
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
        return AccelReport(model, self.hw.name, tuple(out), tuple(self.edge_savings(figures)))

    # -- artifact ------------------------------------------------------------------------------------------------
    def write(self, directory: Path) -> Path:
        directory = Path(directory) / ARTIFACT_DIR
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"prefix": self.prefix, "hardware": self.hw.to_dict(),
                "layers": [k.spec.to_dict() for k in self.kernels.values()],
                "chains": [list(c) for c in self.chains], "edges": [e.to_dict() for e in self.edges]}
        write_atomic(directory / "accel.json", json.dumps(meta, indent=1))
        arrays = {f"{n}/{key}": np.asarray(v) for n, k in self.kernels.items() for key, v in k.arrays.items()}
        with open(directory / "weights.npz", "wb") as f:
            np.savez(f, **arrays)
        for name, k in self.kernels.items():
            write_atomic(directory / f"{name}.program.txt",
                         "# lowered by: tir\n" + k.program.listing() + "\n")
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
            chains = tuple(tuple(str(n) for n in c) for c in meta.get("chains", ()))
            inner = {n for c in chains for n in c[1:]}
            if any((k.spec.chain_in is not None) != (n in inner) for n, k in kernels.items()):
                raise Error("its chains and its layers' on-chip inputs disagree")
            return cls(hw, kernels, str(meta["prefix"]), chains,
                       tuple(Edge.from_dict(e) for e in meta.get("edges", ())))
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


def chosen_layers(quantized: tvm.IRModule, hw: HardwareConfig, capable: set[str], layers: Iterable[str]) -> set[str]:
    """``layers`` checked: each a planned layer (annotated in ``quantized``) the datapath runs (in ``capable``)."""
    if isinstance(layers, str):
        raise UnsupportedError(f"accel_layers must be a list of layer names, got the string {layers!r}: "
                               f"write [{layers!r}]")
    chosen = {str(n) for n in layers}
    planned = annotated_layer_functions(quantized)
    for name in sorted(chosen):
        if name not in planned:
            raise UnsupportedError(f"layer {name!r} is not a planned layer of the module: the accelerator runs "
                                   f"quantized layers only; planned layers: {', '.join(sorted(planned)) or '(none)'}")
        if name not in capable:
            prec = read_layer(planned[name][1]).precision
            raise UnsupportedError(f"layer {name!r} ({prec}) cannot run on {hw.name} (integer precisions with "
                                   f"bits in {list(hw.supported_bits)} only): leave it out of accel_layers")
    return chosen


def _layer_of(value, lowered: tvm.IRModule, layers: Mapping) -> str | None:
    """The accelerator layer whose integer kernel ``value`` calls (None if it is no such call)."""
    found = _kernel_call(value, lowered)
    if found is None or not (found[0].name_hint.startswith("tvm_mp_") and found[0].name_hint.endswith("_kernel")):
        return None
    name = found[0].name_hint[len("tvm_mp_"):-len("_kernel")]
    if name not in layers:
        return None
    attrs = lowered[found[0]].attrs
    return name if attrs is not None and EPILOGUE_ATTR in attrs else None


def _vars(expr) -> list:
    """The variables ``expr`` reads (call arguments, tuple fields)."""
    if isinstance(expr, relax.Var):
        return [expr]
    if isinstance(expr, relax.Tuple):
        return [v for f in expr.fields for v in _vars(f)]
    if isinstance(expr, relax.Call):
        return [v for a in expr.args for v in _vars(a)]
    if isinstance(expr, relax.TupleGetItem):
        return _vars(expr.tuple_value)
    return []


def _op_name(value) -> str:
    if isinstance(value, relax.Call):
        if hasattr(value.op, "name") and value.op.name == "relax.call_tir":  # a kernel, or a legalized op
            return str(value.args[0].name_hint).removeprefix("tvm_mp_").rstrip("0123456789") or "call_tir"
        if hasattr(value.op, "name"):
            return str(value.op.name).removeprefix("relax.")
    return type(value).__name__


def accel_edges(main: relax.Function, lowered: tvm.IRModule, layers: Mapping) -> tuple[dict, list[Edge]]:
    """The graph's side of chaining (:mod:`tvm_mp.accel.chain`): ``{consumer: producer}`` for the edges where an
    accelerator layer's output is the next one's input and read by nothing else, and an off-chip :class:`Edge`
    for every other producer -> consumer pair (fan-out, or the CPU ops in between)."""
    defs, uses, accel = {}, {}, {}
    for block in main.body.blocks:
        for b in block.bindings:
            defs[b.var] = b.value
            for v in _vars(b.value):
                uses[v] = uses.get(v, 0) + 1
            name = _layer_of(b.value, lowered, layers)
            if name is not None:
                accel[b.var] = name
    for v in _vars(main.body.body):
        uses[v] = uses.get(v, 0) + 1
    direct, edges = {}, []
    for var, consumer in accel.items():
        x = _kernel_call(defs[var], lowered)[1][0]
        if x in accel:
            if uses.get(x, 0) > 1:
                edges.append(Edge(accel[x], consumer, False, f"fan-out: {accel[x]}'s output feeds {uses[x]} ops"))
            else:
                direct[consumer] = accel[x]
            continue
        ops, producers, frontier, seen = [], [], [x], set()
        while frontier and len(seen) < 64:
            v = frontier.pop()
            if v in seen or v not in defs:
                continue
            seen.add(v)
            if v in accel:
                producers.append(accel[v])
                continue
            ops.append(_op_name(defs[v]))
            frontier.extend(_vars(defs[v]))
        for p in sorted(set(producers)):
            var = next(v for v, n in accel.items() if n == p)
            why = f"CPU ops in between: {', '.join(sorted(set(ops)))}"
            if uses.get(var, 0) > 1:
                why = f"fan-out: {p}'s output feeds {uses[var]} ops; {why}"
            edges.append(Edge(p, consumer, False, why))
    return direct, edges


def offload_lowered(lowered: tvm.IRModule, quantized: tvm.IRModule, hw: HardwareConfig,
                    mappings: Mapping[str, LayerMapping] | None = None, objective: str = "energy",
                    chain: bool = True, layers: Iterable[str] | None = None) -> tuple[tvm.IRModule, AccelRuntime]:
    """Replace the integer kernels of the layers the accelerator runs by packed calls to it (module docstring).
    ``mappings``: layer -> mapping (default: the analytical model's best for ``objective``); ``chain``: keep
    consecutive layers' codes on chip where the buffers allow (one packed call per chain); ``layers``: the
    layers to run on the accelerator (default: every integer layer whose precision the datapath runs); the other
    planned layers stay integer kernels on the host CPU."""
    ensure_ffi_registration()
    names = set(accel_layer_names(quantized, hw))
    if layers is not None:
        names = chosen_layers(quantized, hw, names, layers)
    layers = {n: read_layer(f) for n, (_, f) in annotated_layer_functions(quantized).items() if n in names}
    mappings = dict(mappings or {})
    main = lowered["main"]
    kernels: dict[str, AccelKernel] = {}
    for block in main.body.blocks:
        for binding in block.bindings:
            name = _layer_of(binding.value, lowered, layers)
            if name is None:
                continue
            gv, args = _kernel_call(binding.value, lowered)
            layer = layers[name]
            epi = json.loads(str(lowered[gv].attrs[EPILOGUE_ATTR]))
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
            kernels[name] = AccelKernel(spec, hw, arrays)
    direct, edges = accel_edges(main, lowered, kernels)
    chains = []
    consumers = {p: c for c, p in direct.items()}
    for head in [n for n in kernels if n in consumers and n not in direct]:
        run = [head]
        while run[-1] in consumers:
            run.append(consumers[run[-1]])
        if not chain:
            edges.extend(Edge(a, b, False, "chaining off") for a, b in zip(run, run[1:]))
            continue
        plans, run_edges = plan_chain(run, [kernels[n].plan for n in run], [""] * (len(run) - 1), objective,
                                      fixed=set(mappings))
        edges.extend(run_edges)
        for name, plan in zip(run, plans):
            base = None if plan.onchip_in is None else plan.onchip_in.base
            if base is not None or plan.mapping != kernels[name].spec.mapping:
                kernels[name] = AccelKernel(replace(kernels[name].spec, chain_in=base, mapping=plan.mapping), hw,
                                            kernels[name].arrays)
        current = [run[0]]
        for e, nxt in zip(run_edges, run[1:]):
            if e.onchip:
                current.append(nxt)
                continue
            if len(current) > 1:
                chains.append(tuple(current))
            current = [nxt]
        if len(current) > 1:
            chains.append(tuple(current))
    order = {n: i for i, n in enumerate(kernels)}
    edges.sort(key=lambda e: (order[e.consumer], order[e.producer]))
    runtime = AccelRuntime(hw, kernels, f"{FUNC_PREFIX}.m{uuid.uuid4().hex[:12]}", tuple(chains), tuple(edges))
    inner = {n for c in chains for n in c[1:]}

    @relax.expr_functor.mutator
    class Offload(relax.PyExprMutator):
        def visit_var_binding_(self, binding):
            name = _layer_of(binding.value, lowered, layers)
            if name is None:
                super().visit_var_binding_(binding)
                return
            if name in inner:  # runs inside its chain's call; its output var is the chain's or unused
                return
            run = runtime.chain_of(name)
            tail_var = binding.var
            if len(run) > 1:
                tail_var = next(v for v, n in _accel_vars(main, lowered, layers).items() if n == run[-1])
            spec = runtime.kernels[run[-1]].spec
            x = self.visit_expr(_kernel_call(binding.value, lowered)[1][0])
            call = relax.call_dps_packed(runtime.function_name(name), [x],
                                         _tvm.tensor_type(spec.out_shape, spec.out_dtype))
            if isinstance(tail_var, relax.DataflowVar):
                new = self.builder_.emit(call, _tvm.var_name(tail_var))
            else:
                new = self.builder_.emit_output(call, _tvm.var_name(tail_var))
            self.set_var_remap(tail_var, new)

    mutator = Offload(lowered)
    new_main = mutator.visit_expr(main)
    mutator.builder_.update_func(lowered.get_global_var("main"), new_main)
    new = relax.transform.DeadCodeElimination(["main"])(mutator.builder_.get())
    return new, runtime


def _accel_vars(main: relax.Function, lowered: tvm.IRModule, layers: Mapping) -> dict:
    return {b.var: n for block in main.body.blocks for b in block.bindings
            if (n := _layer_of(b.value, lowered, layers)) is not None}
