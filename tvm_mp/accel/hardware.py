"""The accelerator's hardware description: a frozen, self-validating value type loaded from JSON.

A VTA-like design with a precision-scalable GEMM core. At 8-bit operands the core computes, every cycle,
``BATCH x BLOCK_IN x BLOCK_OUT`` multiply-accumulates. Its 8-bit multipliers split into lanes (Bit Fusion style): with
both operands at most 4 bits each multiplier does two products per cycle, at most 2 bits four, 1 bit eight, so the
reduction width of one GEMM step is ``BLOCK_IN * lanes`` with ``lanes = 8 / container(max(w_bits, a_bits))``
(containers are 1, 2, 4 or 8 bits; a 3-bit operand runs in the 4-bit mode). Operands are stored in SRAM and DRAM in
their own container width, so a lower bit-width packs more operands into every buffer word.

``default.json`` next to this file holds the default description with the 45 nm energy figures it derives from
(Horowitz, ISSCC 2014) and how each number was derived. Load your own with :meth:`HardwareConfig.from_json`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from ..errors import Error
from ..quantize.packing import container_bits

#: Buffers every description must give, in the order reports list them.
BUFFERS = ("inp", "wgt", "acc", "uop")
#: Datapath modes the fused multiplier can be built with.
MODE_BITS = (1, 2, 4, 8)
#: ALU operations of the ISA (see :mod:`tvm_mp.accel.isa`); each needs an energy entry.
ALU_OPS = ("add", "add_imm", "max_imm", "min_imm", "mul_shift")
#: Accumulator lane width in bits.
ACC_BITS = 32
#: Bits of one micro-op (a (dst, src, wgt) index triple, as VTA packs it into 32 bits).
UOP_BITS = 32

_TOP_KEYS = {"name", "source", "clock_mhz", "gemm", "supported_bits", "instruction_overhead_cycles",
             "instruction_bytes", "buffers", "dram",
             "mac_energy_pj", "alu_energy_pj", "reference_figures_pj", "derivation"}


class HardwareError(Error):
    """The hardware description is invalid (zero-size buffer, unsupported precision, missing energy entry...)."""


def mac_key(w_bits: int, a_bits: int) -> str:
    """Energy-table key of the datapath mode running ``w_bits`` x ``a_bits`` operands, e.g. ``w4a8``."""
    return f"w{container_bits(w_bits)}a{container_bits(a_bits)}"


def _positive_number(where: str, value: Any, example: str, integer: bool = False) -> float | int:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if integer:
        ok = ok and float(value).is_integer()
    if not ok:
        kind = "positive integer" if integer else "positive number"
        raise HardwareError(f"{where}={value!r} is invalid: give a {kind}, e.g. {example}")
    return int(value) if integer else float(value)


def _nonnegative_int(where: str, value: Any, example: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise HardwareError(f"{where}={value!r} is invalid: give an integer >= 0, e.g. {example}")
    return value


@dataclass(frozen=True)
class BufferSpec:
    """One on-chip SRAM: its size and the energy of reading / writing one word of ``word_bits``."""

    size_bytes: int
    word_bits: int
    read_energy_pj: float
    write_energy_pj: float
    name: str = "buffer"

    def __post_init__(self) -> None:
        object.__setattr__(self, "size_bytes", _positive_number(f"buffers.{self.name}.size_bytes", self.size_bytes,
                                                                "16384", integer=True))
        object.__setattr__(self, "word_bits", _positive_number(f"buffers.{self.name}.word_bits", self.word_bits, "32",
                                                               integer=True))
        for key in ("read_energy_pj", "write_energy_pj"):
            object.__setattr__(self, key, _positive_number(f"buffers.{self.name}.{key}", getattr(self, key), "5.0"))

    @property
    def size_bits(self) -> int:
        return self.size_bytes * 8

    def to_dict(self) -> dict:
        return {"size_bytes": self.size_bytes, "word_bits": self.word_bits, "read_energy_pj": self.read_energy_pj,
                "write_energy_pj": self.write_energy_pj}


@dataclass(frozen=True)
class DramSpec:
    """Off-chip memory: bandwidth and latency seen by the load and store modules, energy per byte."""

    bandwidth_bytes_per_cycle: int
    latency_cycles: int
    read_energy_pj_per_byte: float
    write_energy_pj_per_byte: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "bandwidth_bytes_per_cycle", _positive_number(
            "dram.bandwidth_bytes_per_cycle", self.bandwidth_bytes_per_cycle, "8", integer=True))
        object.__setattr__(self, "latency_cycles", _nonnegative_int("dram.latency_cycles", self.latency_cycles, "40"))
        for key in ("read_energy_pj_per_byte", "write_energy_pj_per_byte"):
            object.__setattr__(self, key, _positive_number(f"dram.{key}", getattr(self, key), "160.0"))

    def to_dict(self) -> dict:
        return {"bandwidth_bytes_per_cycle": self.bandwidth_bytes_per_cycle, "latency_cycles": self.latency_cycles,
                "read_energy_pj_per_byte": self.read_energy_pj_per_byte,
                "write_energy_pj_per_byte": self.write_energy_pj_per_byte}


@dataclass(frozen=True)
class HardwareConfig:
    """A complete accelerator description (see the module docstring). All fields are validated on creation."""

    name: str
    clock_mhz: float
    batch: int
    block_in: int
    block_out: int
    supported_bits: tuple[int, ...]
    buffers: Mapping[str, BufferSpec]
    dram: DramSpec
    mac_energy_pj: Mapping[str, float]
    alu_energy_pj: Mapping[str, float]
    instruction_overhead_cycles: int = 4
    instruction_bytes: int = 16
    source: str = ""
    reference_figures_pj: Mapping[str, float] = field(default_factory=dict, compare=False)
    derivation: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise HardwareError("hardware name must be a non-empty string, e.g. \"my-accel\"")
        object.__setattr__(self, "clock_mhz", _positive_number("clock_mhz", self.clock_mhz, "250"))
        for key, example in (("batch", "1"), ("block_in", "16"), ("block_out", "16")):
            object.__setattr__(self, key, _positive_number(f"gemm.{key}", getattr(self, key), example, integer=True))
        object.__setattr__(self, "instruction_overhead_cycles", _nonnegative_int(
            "instruction_overhead_cycles", self.instruction_overhead_cycles, "4"))
        object.__setattr__(self, "instruction_bytes", _positive_number(
            "instruction_bytes", self.instruction_bytes, "16", integer=True))
        bits = self.supported_bits
        if isinstance(bits, (str, bytes)) or not hasattr(bits, "__iter__"):
            raise HardwareError(f"supported_bits={bits!r} must be a list of bit-widths chosen from {list(MODE_BITS)}")
        bits = tuple(bits)
        bad = [b for b in bits if isinstance(b, bool) or b not in MODE_BITS]
        if bad or not bits:
            raise HardwareError(
                f"supported_bits={list(bits)} is invalid: the fused datapath splits an 8-bit multiplier into 1, 2, 4 "
                f"or 8-bit lanes, so list values from {list(MODE_BITS)}" + (f" (remove {bad[0]!r})" if bad else ""))
        object.__setattr__(self, "supported_bits", tuple(sorted(set(bits), reverse=True)))
        if not isinstance(self.buffers, Mapping):
            raise HardwareError("buffers must map each of inp, wgt, acc, uop to {size_bytes, word_bits, ...}")
        missing = [b for b in BUFFERS if b not in self.buffers]
        if missing:
            raise HardwareError(f"buffer {missing[0]!r} is missing: describe all of {', '.join(BUFFERS)}")
        extra = [b for b in self.buffers if b not in BUFFERS]
        if extra:
            raise HardwareError(f"unknown buffer {extra[0]!r}: the accelerator has only {', '.join(BUFFERS)}")
        bufs = {}
        for key in BUFFERS:
            spec = self.buffers[key]
            if isinstance(spec, Mapping):
                spec = _buffer_from_dict(key, spec)
            if not isinstance(spec, BufferSpec):
                raise HardwareError(f"buffers.{key} must be a BufferSpec or a mapping")
            bufs[key] = replace(spec, name=key) if spec.name != key else spec
        object.__setattr__(self, "buffers", MappingProxyType(bufs))
        if isinstance(self.dram, Mapping):
            object.__setattr__(self, "dram", _dram_from_dict(self.dram))
        if not isinstance(self.dram, DramSpec):
            raise HardwareError("dram must be a DramSpec or a mapping {bandwidth_bytes_per_cycle, latency_cycles, ...}")
        object.__setattr__(self, "mac_energy_pj", self._energy_table(
            "mac_energy_pj", self.mac_energy_pj,
            [f"w{w}a{a}" for w in self.supported_bits for a in self.supported_bits], "pJ per multiply-accumulate"))
        object.__setattr__(self, "alu_energy_pj", self._energy_table(
            "alu_energy_pj", self.alu_energy_pj, list(ALU_OPS), "pJ per 32-bit lane operation"))
        object.__setattr__(self, "reference_figures_pj", MappingProxyType(dict(self.reference_figures_pj or {})))
        object.__setattr__(self, "derivation", tuple(self.derivation or ()))
        # the smallest useful buffers: one entry of each kind at the widest operands
        for key, bits_needed in (("inp", self.batch * self.block_in * 8), ("wgt", self.block_out * self.block_in * 8),
                                 ("acc", self.batch * self.block_out * ACC_BITS), ("uop", UOP_BITS)):
            if self.buffers[key].size_bits < bits_needed:
                raise HardwareError(
                    f"buffers.{key}.size_bytes={self.buffers[key].size_bytes} cannot hold one {key} entry "
                    f"({bits_needed // 8} bytes at this GEMM shape): make it at least {bits_needed // 8}")

    @staticmethod
    def _energy_table(where: str, table: Any, needed: list[str], unit: str) -> Mapping[str, float]:
        if not isinstance(table, Mapping):
            raise HardwareError(f"{where} must map names to energies in {unit}")
        for key in needed:
            if key not in table:
                raise HardwareError(f"{where} has no entry {key!r}: add its energy in {unit} (every supported "
                                    f"mode needs one), or drop the precision from supported_bits")
        clean = {}
        for key, value in table.items():
            clean[str(key)] = _positive_number(f"{where}[{key!r}]", value, "0.3")
        return MappingProxyType(clean)

    # -- loading -------------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping) -> "HardwareConfig":
        if not isinstance(data, Mapping):
            raise HardwareError("a hardware description is a JSON object; see tvm_mp/accel/default.json")
        unknown = sorted(set(data) - _TOP_KEYS)
        if unknown:
            raise HardwareError(f"unknown field {unknown[0]!r} in the hardware description; known fields: "
                                f"{', '.join(sorted(_TOP_KEYS))}")
        for key in ("name", "clock_mhz", "gemm", "supported_bits", "buffers", "dram", "mac_energy_pj",
                    "alu_energy_pj"):
            if key not in data:
                raise HardwareError(f"the hardware description lacks {key!r}; see tvm_mp/accel/default.json")
        gemm = data["gemm"]
        if not isinstance(gemm, Mapping) or set(gemm) != {"batch", "block_in", "block_out"}:
            raise HardwareError('gemm must be {"batch": B, "block_in": I, "block_out": O}, e.g. {"batch": 1, '
                                '"block_in": 16, "block_out": 16}')
        return cls(name=data["name"], clock_mhz=data["clock_mhz"], batch=gemm["batch"], block_in=gemm["block_in"],
                   block_out=gemm["block_out"], supported_bits=data["supported_bits"], buffers=data["buffers"],
                   dram=data["dram"], mac_energy_pj=data["mac_energy_pj"], alu_energy_pj=data["alu_energy_pj"],
                   instruction_overhead_cycles=data.get("instruction_overhead_cycles", 4),
                   instruction_bytes=data.get("instruction_bytes", 16),
                   source=str(data.get("source", "")), reference_figures_pj=data.get("reference_figures_pj", {}),
                   derivation=tuple(data.get("derivation", ())))

    @classmethod
    def from_json(cls, path_or_text: str | Path) -> "HardwareConfig":
        """Load a description from a JSON file path or a JSON string."""
        text = str(path_or_text)
        if not text.lstrip().startswith("{"):
            p = Path(text)
            if not p.is_file():
                raise HardwareError(f"hardware description {text!r} not found: give a JSON file path or JSON text")
            text = p.read_text()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise HardwareError(f"hardware description is not valid JSON ({err}); see tvm_mp/accel/default.json") \
                from None
        return cls.from_dict(data)

    @classmethod
    def default(cls) -> "HardwareConfig":
        """The description in ``default.json`` (45 nm figures)."""
        return cls.from_json(resources.files(__package__).joinpath("default.json").read_text())

    def to_dict(self) -> dict:
        return {
            "name": self.name, "source": self.source, "clock_mhz": self.clock_mhz,
            "gemm": {"batch": self.batch, "block_in": self.block_in, "block_out": self.block_out},
            "supported_bits": list(self.supported_bits),
            "instruction_overhead_cycles": self.instruction_overhead_cycles,
            "instruction_bytes": self.instruction_bytes,
            "buffers": {k: v.to_dict() for k, v in self.buffers.items()}, "dram": self.dram.to_dict(),
            "mac_energy_pj": dict(self.mac_energy_pj), "alu_energy_pj": dict(self.alu_energy_pj),
            "reference_figures_pj": dict(self.reference_figures_pj), "derivation": list(self.derivation),
        }

    def with_changes(self, **changes) -> "HardwareConfig":
        """A copy with some fields replaced (validated again); buffers may be given as a partial mapping."""
        if "buffers" in changes:
            merged = {k: v.to_dict() for k, v in self.buffers.items()}
            for key, spec in changes["buffers"].items():
                merged[key] = {**merged.get(key, {}), **(spec.to_dict() if isinstance(spec, BufferSpec) else spec)}
            changes["buffers"] = merged
        return replace(self, **changes)

    # -- precision modes -----------------------------------------------------------------------------------------
    def check_precision(self, w_bits: int, a_bits: int) -> None:
        """Raise :class:`HardwareError` unless the datapath has a mode for ``w_bits`` x ``a_bits``."""
        for role, bits in (("weight", w_bits), ("activation", a_bits)):
            if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
                raise HardwareError(f"{role} bits {bits!r} are out of range: use 1..8")
            mode = container_bits(bits)
            if mode not in self.supported_bits:
                raise HardwareError(
                    f"{self.name} cannot run {role}s at {bits} bits: that needs the {mode}-bit mode and the datapath "
                    f"supports {list(self.supported_bits)}; choose one of those bit-widths or add {mode} to "
                    f"supported_bits (with its mac_energy_pj entries)")

    def lanes(self, w_bits: int, a_bits: int) -> int:
        """Products per 8-bit multiplier per cycle in the mode for ``w_bits`` x ``a_bits``."""
        self.check_precision(w_bits, a_bits)
        return 8 // container_bits(max(w_bits, a_bits))

    def block_in_at(self, w_bits: int, a_bits: int) -> int:
        """Reduction width of one GEMM step at this precision."""
        return self.block_in * self.lanes(w_bits, a_bits)

    def macs_per_cycle(self, w_bits: int, a_bits: int) -> int:
        return self.batch * self.block_in_at(w_bits, a_bits) * self.block_out

    def entry_bits(self, buffer: str, w_bits: int, a_bits: int) -> int:
        """Bits of one entry of ``buffer`` at this precision (inp: BATCH x BLOCK_IN' codes, wgt: BLOCK_OUT x
        BLOCK_IN' weights, acc: BATCH x BLOCK_OUT int32, uop: one micro-op)."""
        bi = self.block_in_at(w_bits, a_bits)
        if buffer == "inp":
            return self.batch * bi * container_bits(a_bits)
        if buffer == "wgt":
            return self.block_out * bi * container_bits(w_bits)
        if buffer == "acc":
            return self.batch * self.block_out * ACC_BITS
        if buffer == "uop":
            return UOP_BITS
        raise HardwareError(f"unknown buffer {buffer!r}: use one of {', '.join(BUFFERS)}")

    def capacity_entries(self, buffer: str, w_bits: int, a_bits: int) -> int:
        """Entries of ``buffer`` at this precision."""
        return self.buffers[buffer].size_bits // self.entry_bits(buffer, w_bits, a_bits)

    def cycles_to_us(self, cycles: float) -> float:
        return float(cycles) / self.clock_mhz


def _buffer_from_dict(name: str, data: Mapping) -> BufferSpec:
    keys = {"size_bytes", "word_bits", "read_energy_pj", "write_energy_pj"}
    unknown = sorted(set(data) - keys)
    if unknown:
        raise HardwareError(f"unknown field {unknown[0]!r} in buffers.{name}; use {', '.join(sorted(keys))}")
    missing = sorted(keys - set(data))
    if missing:
        raise HardwareError(f"buffers.{name} lacks {missing[0]!r}; give size_bytes, word_bits, read_energy_pj and "
                            f"write_energy_pj (energy per word in pJ)")
    return BufferSpec(data["size_bytes"], data["word_bits"], data["read_energy_pj"], data["write_energy_pj"], name)


def _dram_from_dict(data: Mapping) -> DramSpec:
    keys = {"bandwidth_bytes_per_cycle", "latency_cycles", "read_energy_pj_per_byte", "write_energy_pj_per_byte"}
    unknown = sorted(set(data) - keys)
    if unknown:
        raise HardwareError(f"unknown field {unknown[0]!r} in dram; use {', '.join(sorted(keys))}")
    missing = sorted(keys - set(data))
    if missing:
        raise HardwareError(f"dram lacks {missing[0]!r}; give {', '.join(sorted(keys))}")
    return DramSpec(**{k: data[k] for k in keys})
