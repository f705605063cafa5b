"""Modelled CPU energy: event counts of the kernel x per-event energies from a table. Never a measurement.

There is no power meter here, so energy on CPUs is *modelled*, and every figure this module produces is
labelled so (``Estimate.energy_basis == "modelled"``). The count side comes from the kernel itself
(:mod:`tvm_mp.cost_models.features`: data operations by class and data type, bytes at each memory level); the
energy side is a table, one per target family, that a user replaces with figures for their own board
(:meth:`CpuEnergyTable.from_json`).

    energy = sum_op count_op * op_pj
           + (sum_op count_op / simd_lanes) * instruction_pj      (fetch/decode/issue, shared by a vector's lanes)
           + l1 read/write bytes * l1_*_byte_pj + l2 bytes * l2_byte_pj + DRAM bytes * dram_byte_pj

Default tables: per-operation and per-access energies from the 45 nm figures of the ISSCC 2014 keynote
"Computing's energy problem (and what we can do about it)": 32-bit integer add 0.1 pJ, 32-bit integer multiply
3.1 pJ, 32-bit float add 0.9 pJ, 32-bit float multiply 3.7 pJ; a 64-bit read from an 8 KB SRAM 10 pJ, from a
32 KB SRAM 20 pJ, from a 1 MB SRAM 100 pJ; DRAM 1.3-2.6 nJ per 64 bits. Derived and assumed entries say so in
their ``notes``. These are order-of-magnitude figures for an old process, useful for *comparing* precisions
and kernels, not for predicting a battery's life.

Integer kernels only (``bitserial``, ``packed``): float-format and clustered workloads are refused with a
``CostModelError`` naming the kind (the event counter does not read those kernels); cost them with
:class:`~tvm_mp.cost_models.analytical.DatapathModel`, which prices every kind on one scale.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .base import KERNEL_KINDS, CostModelError, Workload, require_kinds, target_family
from .features import OP_CLASSES, KernelCounter

PJ_PER_UJ = 1e6


@dataclass(frozen=True)
class CpuEnergyTable:
    """Energy per event on one CPU, in picojoules. Every field must be finite and >= 0 (``simd_lanes`` >= 1)."""

    name: str
    popcount_pj: float  # one 32-bit popcount
    int_alu_pj: float  # one 32-bit integer add / logic / shift / compare / select
    int_mul_pj: float  # one 32-bit integer multiply
    int64_alu_pj: float
    int64_mul_pj: float
    float_alu_pj: float  # fp32 add / min / max
    float_mul_pj: float  # fp32 multiply
    instruction_pj: float  # fetch, decode, issue and register file, per instruction
    simd_lanes: int  # 32-bit operations per instruction (vector width / 32 bits)
    l1_read_byte_pj: float
    l1_write_byte_pj: float
    l2_byte_pj: float
    dram_byte_pj: float
    notes: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise CostModelError("CpuEnergyTable.name must be a non-empty string (e.g. the board's name)")
        for f in fields(self):
            if f.name in ("name", "notes"):
                continue
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
                raise CostModelError(f"CpuEnergyTable.{f.name}={value!r}: give a finite, non-negative number")
        if int(self.simd_lanes) != self.simd_lanes or self.simd_lanes < 1:
            raise CostModelError(f"CpuEnergyTable.simd_lanes={self.simd_lanes!r}: give an integer >= 1 "
                                 "(vector register width in bits / 32)")

    def op_pj(self, op_class: str) -> float:
        return float(getattr(self, f"{op_class}_pj"))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: Mapping) -> "CpuEnergyTable":
        if not isinstance(data, Mapping):
            raise CostModelError("an energy table must be a JSON object with the CpuEnergyTable fields")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        missing = sorted(n for n in names - set(data) if n != "notes")
        if unknown or missing:
            raise CostModelError(f"energy table: unknown field(s) {unknown}, missing field(s) {missing}; "
                                 f"the fields are {sorted(names)}")
        return cls(**dict(data))

    @classmethod
    def from_json(cls, path_or_text: str | Path) -> "CpuEnergyTable":
        """Load a table from a JSON file (or JSON text): e.g. figures measured on your own board."""
        text = str(path_or_text)
        if not text.lstrip().startswith("{"):
            try:
                text = Path(path_or_text).read_text()
            except OSError as err:
                raise CostModelError(f"cannot read energy table {path_or_text}: {err.strerror}") from None
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as err:
            raise CostModelError(f"energy table is not valid JSON ({err})") from None


_SOURCE = "ISSCC 2014 keynote 'Computing's energy problem' (45 nm)"
_COMMON = dict(
    popcount_pj=0.1,  # assumed: a 32-input adder tree, counted like a 32-bit add
    int_alu_pj=0.1,
    int_mul_pj=3.1,
    int64_alu_pj=0.2,  # assumed: twice the 32-bit add
    int64_mul_pj=12.4,  # assumed: multiplier energy grows with the square of the width
    float_alu_pj=0.9,
    float_mul_pj=3.7,
    l1_read_byte_pj=2.5,  # 20 pJ per 64-bit read from a 32 KB SRAM
    l1_write_byte_pj=2.5,
    l2_byte_pj=12.5,  # 100 pJ per 64-bit read from a 1 MB SRAM
    dram_byte_pj=160.0,  # 1.3 nJ per 64 bits
)


def default_tables() -> dict[str, CpuEnergyTable]:
    """The shipped tables, by target family (``x86_64`` host, ``aarch64`` Cortex-A class)."""
    return {
        "x86_64": CpuEnergyTable(
            "x86_64", instruction_pj=70.0, simd_lanes=4,
            notes=f"operations and SRAM/DRAM accesses from {_SOURCE}; instruction overhead assumed (order of "
                  "magnitude of fetch/decode/issue on an out-of-order core); 4 lanes = 128-bit SSE, what the "
                  "generic llvm target emits", **_COMMON),
        "aarch64": CpuEnergyTable(
            "aarch64", instruction_pj=30.0, simd_lanes=4,
            notes=f"operations and SRAM/DRAM accesses from {_SOURCE}; instruction overhead assumed lower than "
                  "x86 (simpler in-order or small out-of-order Cortex-A cores); 4 lanes = 128-bit NEON",
            **_COMMON),
    }


class CpuEnergyModel:
    """Modelled energy (µJ) of workloads on a CPU: :func:`tvm_mp.cost_models.features` events x a table.

    ``tables`` maps a target family ("x86_64", "aarch64") to its :class:`CpuEnergyTable`; the defaults are
    :func:`default_tables`. The counter (and its per-structure cache) may be shared with other models.
    """

    basis = "modelled"

    def __init__(self, tables: Mapping[str, CpuEnergyTable] | None = None, counter: KernelCounter | None = None):
        self.tables = dict(default_tables() if tables is None else tables)
        for fam, table in self.tables.items():
            if not isinstance(table, CpuEnergyTable):
                raise CostModelError(f"energy table for {fam!r} must be a CpuEnergyTable")
        self.counter = counter or KernelCounter()

    def _table_for(self, family: str) -> CpuEnergyTable:
        if family in self.tables:
            return self.tables[family]
        if family == "accel":
            raise CostModelError("CPU energy tables do not apply to the accelerator: use the simulator's energy "
                                 "(tvm_mp.measure.source.SimulatorSource) or a model trained on it")
        raise CostModelError(f"no CPU energy table for target family {family!r}; give one in tables=")

    def breakdown_pj(self, workloads: Sequence[Workload], events: Mapping[str, np.ndarray] | None = None
                     ) -> dict[str, np.ndarray]:
        """Energy per component (pJ): each op class, ``instruction``, ``l1``, ``l2``, ``dram``.

        Integer kernels only: the event counter reads tvm-mp's integer kernels, so a float-format or clustered
        workload raises :class:`CostModelError` naming its kind (see ``DatapathModel`` for those)."""
        workloads = list(workloads)
        require_kinds(workloads, KERNEL_KINDS, type(self).__name__)
        ev = events if events is not None else self.counter.events(workloads)
        fams = [target_family(w.target) for w in workloads]
        parts = {name: np.zeros(len(workloads)) for name in (*OP_CLASSES, "instruction", "l1", "l2", "dram")}
        for fam in sorted(set(fams)):
            table = self._table_for(fam)
            mask = np.array([f == fam for f in fams])
            total_ops = np.zeros(int(mask.sum()))
            for op in OP_CLASSES:
                count = ev[op][mask].astype(np.float64)
                parts[op][mask] = count * table.op_pj(op)
                total_ops += count
            parts["instruction"][mask] = total_ops / table.simd_lanes * table.instruction_pj
            parts["l1"][mask] = (ev["l1_load_bytes"][mask] * table.l1_read_byte_pj
                                 + ev["l1_store_bytes"][mask] * table.l1_write_byte_pj)
            parts["l2"][mask] = ev["l2_bytes"][mask] * table.l2_byte_pj
            parts["dram"][mask] = ev["dram_bytes"][mask] * table.dram_byte_pj
        return parts

    def energy_uj(self, workloads: Sequence[Workload], events: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Modelled energy per workload in µJ."""
        parts = self.breakdown_pj(workloads, events)
        return np.sum(list(parts.values()), axis=0) / PJ_PER_UJ if parts else np.zeros(0)
