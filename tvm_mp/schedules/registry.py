"""Which schedule builds a kernel: the registry ``(op, kind, target family) -> ScheduleEntry``, its knobs and their
defaults.

A kernel's *knobs* (:class:`KernelConfig`) are the algorithm / data layout, the register tile (output channels x
vectors of pixels), the vector width and whether a dot-product instruction (x86 VNNI ``vpdpbusd``, ARM ``sdot``)
is used. Every entry gives a default config without tuning (:meth:`ScheduleEntry.default`) and the space a tuner
searches (:meth:`ScheduleEntry.space`); :mod:`tvm_mp.schedules.tuning` stores the best config per workload so
later builds reuse it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Callable

from ..errors import UnsupportedError
from ..kinds import KERNEL_KINDS, check
from ..quantize.packing import container_bits
from ..targets import parse
from ..workload import ConvParams

ALGORITHMS = ("direct", "im2col", "depthwise", "dense", "direct64")
FAMILIES = ("x86_64", "aarch64", "generic")


@dataclass(frozen=True)
class KernelConfig:
    """The knobs of one kernel schedule.

    ``algorithm``: ``direct`` (conv on the flattened padded stride-phase planes, weights re-laid out in
    (ky, kx, c) order), ``im2col`` (run-time im2col, weights in the standard (c, ky, kx) order; any stride / groups),
    ``depthwise`` (one input channel per group on the padded plane: integer MACs, strided convs reading column
    phases; or, with ``use_dot``, the window form), ``dense``, or ``direct64`` (bit-serial ``direct`` on 64-bit
    words, channels padded to 64 per tap: on AVX2 a 64-bit lane's popcount widens in one ``vpsadbw``; ``lanes``
    then counts 64-bit lanes).
    ``oc_block`` x ``p_unroll`` is the register tile (output channels x vectors of ``lanes`` int32 pixels);
    ``use_dot``: tensorize the 4-way u8 x s8 dot product (packed kernels; ``depthwise``, either kind: the window
    form, ``kernels.window_dot``, where the target has it); ``parallel``: spread the outer tile loop
    over the runtime's threads.
    """

    algorithm: str
    lanes: int = 16
    oc_block: int = 4
    p_unroll: int = 1
    use_dot: bool = False
    parallel: bool = True

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise UnsupportedError(f"unknown kernel algorithm {self.algorithm!r}: use one of {', '.join(ALGORITHMS)}")
        for name in ("lanes", "oc_block", "p_unroll"):
            value = getattr(self, name)
            if value < 1 or value & (value - 1):
                raise UnsupportedError(f"KernelConfig.{name} must be a power of two >= 1, got {value}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "KernelConfig":
        return cls(**data)


@dataclass(frozen=True)
class ConvWorkload:
    """What a kernel computes: op ("conv2d" | "depthwise_conv2d" | "dense"), kind, bits and shapes."""

    op: str
    kind: str
    w_bits: int
    a_bits: int
    in_shape: tuple[int, ...]
    weight_shape: tuple[int, ...]  # OIHW, or (OC, K) for dense
    params: ConvParams | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "in_shape", tuple(int(v) for v in self.in_shape))
        object.__setattr__(self, "weight_shape", tuple(int(v) for v in self.weight_shape))
        check(self.kind, KERNEL_KINDS, "kernel kind", UnsupportedError)
        if self.op != "dense" and self.params is None:
            raise UnsupportedError(f"a {self.op} workload needs ConvParams")

    @classmethod
    def from_layer(cls, layer, kind: str, w_bits: int, a_bits: int) -> "ConvWorkload":
        """The kernel workload of a :class:`~tvm_mp.layers.LayerInfo` at ``kind`` and bit-widths."""
        return cls(layer.op, kind, int(w_bits), int(a_bits), layer.input_shape, layer.weight_shape, layer.params)

    @property
    def is_depthwise(self) -> bool:
        return (self.op != "dense" and self.weight_shape[1] == 1 and self.params.groups == self.in_shape[1]
                and self.params.groups > 1)

    @property
    def out_hw(self) -> tuple[int, int]:
        return self.params.output_hw(self.in_shape[2], self.in_shape[3], self.weight_shape[2], self.weight_shape[3])

    @property
    def macs(self) -> int:
        if self.op == "dense":
            return self.in_shape[0] * self.weight_shape[0] * self.weight_shape[1]
        oh, ow = self.out_hw
        oc, cg, kh, kw = self.weight_shape
        return self.in_shape[0] * oc * oh * ow * cg * kh * kw

    def key(self) -> str:
        p = self.params
        geo = "" if p is None else f"|s{p.strides}|p{p.padding}|d{p.dilation}|g{p.groups}"
        return (f"{self.op}|{self.kind}|w{self.w_bits}a{self.a_bits}|in{self.in_shape}|w{self.weight_shape}{geo}"
                .replace(" ", ""))


def target_family(target) -> str:
    """The schedule family of a target: its architecture (``"x86_64"``, ``"aarch64"``, ``"generic"``; None ->
    ``"generic"``), read from :class:`~tvm_mp.targets.CompileTarget`."""
    if target is None:
        return "generic"
    return parse(target).arch


def target_has(target, feature: str) -> bool:
    """True when the LLVM target has ``feature`` (e.g. ``avx512vnni``, ``dotprod``) from its mcpu and mattr."""
    return target is not None and parse(target).has(feature)


@dataclass(frozen=True)
class ScheduleEntry:
    """One registered schedule: its default config and its search space for a workload on a target."""

    name: str
    default: Callable[[ConvWorkload, object], KernelConfig]
    space: Callable[[ConvWorkload, object], list[KernelConfig]]


_REGISTRY: dict[tuple[str, str, str], ScheduleEntry] = {}


def register(op: str, kind: str, family: str, entry: ScheduleEntry) -> None:
    _REGISTRY[(op, kind, family)] = entry


def lookup(op: str, kind: str, target) -> ScheduleEntry:
    """The schedule entry for ``(op, kind, family(target))`` (falls back to the ``generic`` family)."""
    _ensure_registered()
    family = target_family(target)
    for fam in (family, "generic"):
        entry = _REGISTRY.get((op, kind, fam))
        if entry is not None:
            return entry
    raise UnsupportedError(f"no schedule registered for {op} / {kind} on {family}")


def entries() -> dict[tuple[str, str, str], ScheduleEntry]:
    _ensure_registered()
    return dict(_REGISTRY)


def _ensure_registered() -> None:
    if _REGISTRY:
        return
    from . import arm_cpu, x86

    for module, family in ((x86, "x86_64"), (arm_cpu, "aarch64"), (x86, "generic")):
        for op in ("conv2d", "depthwise_conv2d", "dense"):
            for kind in KERNEL_KINDS:
                register(op, kind, family, ScheduleEntry(f"{family}.{op}.{kind}", module.default_config,
                                                         module.config_space))


def algorithms_for(work: ConvWorkload) -> list[str]:
    """Algorithms able to compute ``work`` (the first is the usual choice)."""
    if work.op == "dense":
        return ["dense"]
    p = work.params
    algos = []
    if work.is_depthwise:
        algos.append("depthwise")
    if p.groups == 1:
        algos.append("direct")
    algos.append("im2col")
    if p.groups == 1 and work.kind == "bitserial":
        algos.append("direct64")
    return algos


def one_byte_weights(work: ConvWorkload) -> bool:
    """Packed weights stored one per byte (5-8 bits): what the dense kernel's dot form reads in place
    (``kernels.dense_dot``)."""
    return work.kind == "packed" and container_bits(work.w_bits) == 8


def tiling_space(work: ConvWorkload, lanes: int, use_dot: bool, parallels: tuple[bool, ...]) -> list[KernelConfig]:
    """The configs a tuner tries on a CPU: per algorithm, output-channel blocks x pixel unrolls (dense: output
    features x reduction unrolls; depthwise has one tiling), each with every threading choice in ``parallels``."""
    out = []
    for algo in algorithms_for(work):
        if algo == "depthwise":  # integer MACs, and with use_dot the window form (kernels.window_dot)
            out += [KernelConfig(algo, lanes=lanes, oc_block=1, p_unroll=1, use_dot=dot, parallel=par)
                    for dot in ((False, True) if use_dot else (False,)) for par in parallels]
            continue
        if algo == "dense":
            out += [KernelConfig(algo, lanes=lanes, oc_block=ob, p_unroll=pu, parallel=par)
                    for ob in (1, 2, 4, 8) for pu in (1, 2, 4) for par in parallels]
            if use_dot and lanes == 16 and one_byte_weights(work):
                out += [KernelConfig(algo, lanes=lanes, oc_block=ob, p_unroll=pu, use_dot=True, parallel=par)
                        for ob in (1, 2, 4, 8) for pu in (1, 2, 4) for par in parallels]  # the dot form
            continue
        dot = use_dot and work.kind == "packed"
        for ob in (1, 2, 4, 8, 16, 32):
            for pu in (1, 2, 4):
                out += [KernelConfig(algo, lanes=lanes, oc_block=ob, p_unroll=pu, use_dot=dot, parallel=par)
                        for par in parallels]
    return out


def legal(config: KernelConfig, work: ConvWorkload) -> bool:
    return config.algorithm in algorithms_for(work)


def with_defaults(config: KernelConfig, **changes) -> KernelConfig:
    return replace(config, **changes)
