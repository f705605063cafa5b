"""Events (what the accelerator did) and their energy (Accelergy style: count x energy per action).

The simulator and the analytical model both produce :class:`Events`; :func:`energy_of` prices them with the
hardware description's energy table. Components of the breakdown: ``dram``, one ``<buffer>_sram`` per buffer,
``mac``, ``alu`` and ``fetch`` (instructions read from DRAM).

DRAM traffic counts the bits of real tensor elements only: the DMA engine reads a compactly stored tensor and fills
the padding lanes of an entry (channels beyond the tensor, the zeros of a block-diagonal grouped weight) itself.
On-chip buffers hold whole entries, so SRAM traffic counts whole entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from .hardware import BUFFERS, HardwareConfig, HardwareError

#: Breakdown components in report order.
COMPONENTS = ("dram",) + tuple(f"{b}_sram" for b in BUFFERS) + ("mac", "alu", "fetch")


def _frozen(mapping: Mapping | None) -> Mapping:
    return MappingProxyType({k: v for k, v in dict(mapping or {}).items() if v})


def _add_maps(a: Mapping, b: Mapping) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


@dataclass(frozen=True)
class Events:
    """Counts of the actions priced by the energy model.

    ``dram_read_bits`` / ``dram_write_bits``: data moved to and from DRAM; ``sram_read_bits`` / ``sram_write_bits``:
    bits read from / written to each buffer (an access of one entry counts the entry's bits); ``macs``:
    multiply-accumulates per datapath mode (``w4a4``...); ``alu_lane_ops``: 32-bit lane operations per ALU op;
    ``instructions``: instructions fetched.
    """

    dram_read_bits: int = 0
    dram_write_bits: int = 0
    sram_read_bits: Mapping[str, int] = field(default_factory=dict)
    sram_write_bits: Mapping[str, int] = field(default_factory=dict)
    macs: Mapping[str, int] = field(default_factory=dict)
    alu_lane_ops: Mapping[str, int] = field(default_factory=dict)
    instructions: int = 0

    def __post_init__(self) -> None:
        for name in ("sram_read_bits", "sram_write_bits", "macs", "alu_lane_ops"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        for name in ("dram_read_bits", "dram_write_bits", "instructions"):
            if getattr(self, name) < 0:
                raise ValueError(f"Events.{name} cannot be negative")

    def __add__(self, other: "Events") -> "Events":
        return Events(self.dram_read_bits + other.dram_read_bits, self.dram_write_bits + other.dram_write_bits,
                      _add_maps(self.sram_read_bits, other.sram_read_bits),
                      _add_maps(self.sram_write_bits, other.sram_write_bits), _add_maps(self.macs, other.macs),
                      _add_maps(self.alu_lane_ops, other.alu_lane_ops), self.instructions + other.instructions)

    @property
    def dram_bytes(self) -> float:
        return (self.dram_read_bits + self.dram_write_bits) / 8

    def sram_accesses(self, hw: HardwareConfig) -> dict[str, float]:
        """Word accesses (reads + writes) per buffer, in the buffer's ``word_bits``."""
        return {b: (self.sram_read_bits.get(b, 0) + self.sram_write_bits.get(b, 0)) / hw.buffers[b].word_bits
                for b in BUFFERS}

    def counts(self) -> dict[str, int]:
        """Flat dict of every count (for comparing two sources of events)."""
        out = {"dram_read_bits": self.dram_read_bits, "dram_write_bits": self.dram_write_bits,
               "instructions": self.instructions}
        for b in BUFFERS:
            out[f"{b}_read_bits"] = self.sram_read_bits.get(b, 0)
            out[f"{b}_write_bits"] = self.sram_write_bits.get(b, 0)
        out["macs"] = sum(self.macs.values())
        out["alu_lane_ops"] = sum(self.alu_lane_ops.values())
        return out

    def to_dict(self) -> dict:
        return {"dram_read_bits": self.dram_read_bits, "dram_write_bits": self.dram_write_bits,
                "sram_read_bits": dict(self.sram_read_bits), "sram_write_bits": dict(self.sram_write_bits),
                "macs": dict(self.macs), "alu_lane_ops": dict(self.alu_lane_ops), "instructions": self.instructions}


@dataclass(frozen=True)
class EnergyBreakdown:
    """Energy per component in µJ."""

    components_uj: Mapping[str, float]

    def __post_init__(self) -> None:
        object.__setattr__(self, "components_uj", MappingProxyType(
            {c: float(self.components_uj.get(c, 0.0)) for c in COMPONENTS}))

    @property
    def total_uj(self) -> float:
        return float(sum(self.components_uj.values()))

    def __add__(self, other: "EnergyBreakdown") -> "EnergyBreakdown":
        return EnergyBreakdown({c: self.components_uj[c] + other.components_uj[c] for c in COMPONENTS})

    def to_dict(self) -> dict:
        return {"total_uj": self.total_uj, **{f"{c}_uj": v for c, v in self.components_uj.items()}}


def energy_of(events: Events, hw: HardwareConfig) -> EnergyBreakdown:
    """Price ``events`` with ``hw``'s energy table."""
    pj = {c: 0.0 for c in COMPONENTS}
    pj["dram"] = (events.dram_read_bits * hw.dram.read_energy_pj_per_byte
                  + events.dram_write_bits * hw.dram.write_energy_pj_per_byte) / 8
    pj["fetch"] = events.instructions * hw.instruction_bytes * hw.dram.read_energy_pj_per_byte
    for b in BUFFERS:
        spec = hw.buffers[b]
        pj[f"{b}_sram"] = (events.sram_read_bits.get(b, 0) * spec.read_energy_pj
                           + events.sram_write_bits.get(b, 0) * spec.write_energy_pj) / spec.word_bits
    for mode, count in events.macs.items():
        if mode not in hw.mac_energy_pj:
            raise HardwareError(f"mac_energy_pj has no entry {mode!r}: add its energy in pJ per multiply-accumulate")
        pj["mac"] += count * hw.mac_energy_pj[mode]
    for op, count in events.alu_lane_ops.items():
        if op not in hw.alu_energy_pj:
            raise HardwareError(f"alu_energy_pj has no entry {op!r}: add its energy in pJ per lane operation")
        pj["alu"] += count * hw.alu_energy_pj[op]
    return EnergyBreakdown({c: v * 1e-6 for c, v in pj.items()})
