"""Cycle-counting, bit-exact simulator of the accelerator's instruction stream, vectorized with NumPy.

Function: every instruction is executed on NumPy arrays standing for the SRAM buffers (a GEMM instruction is one
batched matrix product over all its micro-ops and loop steps), in an order the dependency tokens allow, so a
program with a missing token computes garbage and the tests see it.

Time: the load, compute and store modules each run their instructions in order; an instruction starts when its
module is free and the tokens it pops have been pushed, and lasts

* LOAD / STORE: ``overhead + latency + ceil(bytes / bandwidth)`` (a sync LOAD: ``overhead``);
* GEMM / ALU: ``overhead + steps`` (one micro-op x loop step per cycle, fully pipelined).

So with double-buffered programs, loads and stores overlap compute. The program's cycle count is the time the last
module finishes.

Events (for energy): DRAM bytes; SRAM bits read and written per buffer (a GEMM reads the weight entry once per
micro-op under the weight-stationary dataflow and keeps the accumulator entry in a register across consecutive
micro-ops with the same destination under the output-stationary one, see :mod:`tvm_mp.accel.isa`); MACs per
datapath mode (every lane of every step, padding lanes included: the hardware does that work); ALU lane ops.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import numpy as np

from .energy import EnergyBreakdown, Events, energy_of
from .hardware import BUFFERS, HardwareConfig, mac_key
from .isa import Alu, Fill, Forward, Gemm, Load, Program, ProgramError, Store
from .lower import ConvShape, LayerMapping, LayerPlan, OutputSpec, default_mapping, lower, pack_layer, unpack_output

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
UNITS = ("load", "compute", "store")


def _wrap32(x: np.ndarray) -> np.ndarray:
    return ((x + 2**31) & 0xFFFFFFFF) - 2**31


def _sat32(x: np.ndarray) -> np.ndarray:
    return np.clip(x, INT32_MIN, INT32_MAX)


def runs(values: np.ndarray) -> int:
    """Number of runs of equal consecutive values."""
    values = np.asarray(values)
    return 0 if values.size == 0 else int(np.count_nonzero(values[1:] != values[:-1])) + 1


@dataclass(frozen=True)
class SimResult:
    """Cycles, per-module busy cycles, instruction counts, events and energy of one program run."""

    cycles: int
    busy_cycles: Mapping[str, int]
    instructions: Mapping[str, int]
    events: Events
    energy: EnergyBreakdown
    clock_mhz: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "busy_cycles", MappingProxyType(dict(self.busy_cycles)))
        object.__setattr__(self, "instructions", MappingProxyType(dict(self.instructions)))

    @property
    def latency_us(self) -> float:
        return self.cycles / self.clock_mhz

    @property
    def energy_uj(self) -> float:
        return self.energy.total_uj

    def to_dict(self) -> dict:
        return {"cycles": self.cycles, "latency_us": self.latency_us, "busy_cycles": dict(self.busy_cycles),
                "instructions": dict(self.instructions), "events": self.events.to_dict(),
                "energy": self.energy.to_dict()}


@dataclass
class _Counters:
    dram_read_bits: int = 0
    dram_write_bits: int = 0
    read_bits: dict = field(default_factory=lambda: {b: 0 for b in BUFFERS})
    write_bits: dict = field(default_factory=lambda: {b: 0 for b in BUFFERS})
    macs: dict = field(default_factory=dict)
    alu: dict = field(default_factory=dict)


class Simulator:
    """Runs :class:`~tvm_mp.accel.isa.Program` s on a :class:`HardwareConfig`.

    ``run(program, dram, valid)`` takes the DRAM regions as NumPy arrays (``{name: array [entries, ...]}``, shapes
    as :mod:`tvm_mp.accel.lower` packs them) and, optionally, masks of the elements each region really stores
    (``{name: bool array}``; the DMA moves only those, a region without a mask is moved whole), and returns
    ``(dram after the run, SimResult)``.
    """

    def __init__(self, hw: HardwareConfig):
        self.hw = hw

    # -- set-up ----------------------------------------------------------------------------------------------------
    def _buffers(self, w_bits: int, a_bits: int) -> dict[str, np.ndarray]:
        hw = self.hw
        bi = hw.block_in_at(w_bits, a_bits)
        return {
            "inp": np.zeros((hw.capacity_entries("inp", w_bits, a_bits), hw.batch, bi), dtype=np.float64),
            "wgt": np.zeros((hw.capacity_entries("wgt", w_bits, a_bits), hw.block_out, bi), dtype=np.float64),
            "acc": np.zeros((hw.capacity_entries("acc", w_bits, a_bits), hw.batch, hw.block_out), dtype=np.int64),
            "uop": np.zeros((hw.capacity_entries("uop", w_bits, a_bits), 3), dtype=np.int64),
        }

    def run(self, program: Program, dram: Mapping[str, np.ndarray],
            valid: Mapping[str, np.ndarray] | None = None) -> tuple[dict[str, np.ndarray], SimResult]:
        mem, result, _ = self.run_chained(program, dram, valid)
        return mem, result

    def run_chained(self, program: Program, dram: Mapping[str, np.ndarray],
                    valid: Mapping[str, np.ndarray] | None = None, onchip_in: np.ndarray | None = None
                    ) -> tuple[dict[str, np.ndarray], SimResult, np.ndarray | None]:
        """:meth:`run` as one layer of a chain: ``onchip_in`` is the ``inp`` buffer image the previous layer's
        FORWARD instructions wrote (None: the buffer starts empty); returns also the image this program's FORWARDs
        wrote for the next layer (None if it has none)."""
        hw = self.hw
        w_bits, a_bits = program.w_bits, program.a_bits
        hw.check_precision(w_bits, a_bits)
        self._bits = {b: hw.entry_bits(b, w_bits, a_bits) for b in BUFFERS}
        self._mode = mac_key(w_bits, a_bits)
        self._lanes = hw.batch * hw.block_out * hw.block_in_at(w_bits, a_bits)
        self._regions = program.regions
        self._valid = dict(valid or {})
        mem = {name: np.array(arr, copy=True) for name, arr in dram.items()}
        for name, region in program.regions.items():
            if region.kind != "out" and name not in mem:
                raise ProgramError(f"the program reads DRAM region {name!r} but it was not given")
            if region.kind == "out" and name not in mem:
                mem[name] = np.zeros((region.entries, hw.batch, hw.block_out), dtype=np.int64)
        bufs = self._buffers(w_bits, a_bits)
        if onchip_in is not None:
            if onchip_in.shape != bufs["inp"].shape:
                raise ProgramError(f"the on-chip input image has shape {onchip_in.shape}, the inp buffer at "
                                   f"w{w_bits}a{a_bits} {bufs['inp'].shape}: the chained layers' layouts differ")
            bufs["inp"][:] = onchip_in
        bufs["next"] = None
        c = _Counters()
        queues = {u: [ins for ins in program.instructions if ins.unit == u] for u in UNITS}
        ptr = {u: 0 for u in UNITS}
        clock = {u: 0 for u in UNITS}
        busy = {u: 0 for u in UNITS}
        # token FIFOs, named by (from, to), holding the push times
        fifo = {k: deque() for k in (("load", "compute"), ("compute", "load"), ("compute", "store"),
                                     ("store", "compute"))}
        prev = {"load": None, "compute": "load", "store": "compute"}
        nxt = {"load": "compute", "compute": "store", "store": None}
        remaining = len(program.instructions)
        while remaining:
            progressed = False
            for unit in UNITS:
                q = queues[unit]
                while ptr[unit] < len(q):
                    ins = q[ptr[unit]]
                    d = ins.deps
                    need = []
                    if d.pop_prev:
                        if prev[unit] is None:
                            raise ProgramError(f"{type(ins).__name__} on the {unit} module cannot pop_prev")
                        need.append((prev[unit], unit))
                    if d.pop_next:
                        if nxt[unit] is None:
                            raise ProgramError(f"{type(ins).__name__} on the {unit} module cannot pop_next")
                        need.append((nxt[unit], unit))
                    if any(not fifo[k] for k in need):
                        break
                    start = max([clock[unit]] + [fifo[k].popleft() for k in need])
                    duration = self._execute(ins, bufs, mem, c)
                    end = start + duration
                    clock[unit] = end
                    busy[unit] += duration
                    if d.push_prev:
                        fifo[(unit, prev[unit])].append(end)
                    if d.push_next:
                        fifo[(unit, nxt[unit])].append(end)
                    ptr[unit] += 1
                    remaining -= 1
                    progressed = True
            if not progressed:
                stuck = {u: type(queues[u][ptr[u]]).__name__ for u in UNITS if ptr[u] < len(queues[u])}
                raise ProgramError(f"deadlock: every module waits for a token ({stuck}); the program's dependency "
                                   "flags do not match")
        events = Events(c.dram_read_bits, c.dram_write_bits, c.read_bits, c.write_bits, c.macs, c.alu,
                        len(program.instructions))
        result = SimResult(max(clock.values()), busy, program.count(), events, energy_of(events, hw), hw.clock_mhz)
        return mem, result, bufs["next"]

    # -- instructions ----------------------------------------------------------------------------------------------
    def _execute(self, ins, bufs, mem, c: _Counters) -> int:
        if isinstance(ins, Load):
            return self._load(ins, bufs, mem, c)
        if isinstance(ins, Gemm):
            return self._gemm(ins, bufs, c)
        if isinstance(ins, Alu):
            return self._alu(ins, bufs, c)
        if isinstance(ins, Store):
            return self._store(ins, bufs, mem, c)
        if isinstance(ins, Forward):
            return self._forward(ins, bufs, c)
        if isinstance(ins, Fill):
            return self._fill(ins, bufs, c)
        raise ProgramError(f"unknown instruction {ins!r}")

    def _transfer_cycles(self, nbits: int) -> int:
        """Cycles of a DMA moving ``nbits`` (0 for an empty transfer)."""
        dram = self.hw.dram
        return dram.latency_cycles + -(-nbits // (8 * dram.bandwidth_bytes_per_cycle)) if nbits else 0

    def _dram_bits(self, name: str, idx: np.ndarray, entry_elements: int) -> int:
        """Bits the DMA moves for DRAM entries ``idx`` of region ``name`` (valid elements only)."""
        region = self._regions[name]
        if region.kind == "uop":
            return idx.size * region.bits
        mask = self._valid.get(name)
        count = int(mask[idx].sum()) if mask is not None else idx.size * entry_elements
        return count * region.bits

    def _load(self, ins: Load, bufs, mem, c: _Counters) -> int:
        overhead = self.hw.instruction_overhead_cycles
        if ins.sram_entries == 0:
            return overhead
        buf = bufs[ins.buffer]
        region = self._regions[ins.region]
        if region.kind != ins.buffer:
            raise ProgramError(f"LOAD into {ins.buffer} from region {ins.region!r} of kind {region.kind}")
        src = mem[ins.region]
        nrows = ins.pad_top + ins.rows + ins.pad_bottom
        ncols = ins.pad_left + ins.cols + ins.pad_right
        rows = ins.sram_base + np.arange(nrows)[:, None] * ins.sram_row_pitch + np.arange(ncols)[None, :]
        if rows.max() >= len(buf):
            raise ProgramError(f"LOAD writes {ins.buffer} entry {rows.max()} beyond the buffer ({len(buf)} entries)")
        block = np.full((nrows, ncols) + buf.shape[1:], ins.pad_value, dtype=buf.dtype)
        nbits = 0
        if ins.rows and ins.cols:
            idx = ins.dram_base + np.arange(ins.rows)[:, None] * ins.dram_row_stride + np.arange(ins.cols)[None, :]
            block[ins.pad_top:ins.pad_top + ins.rows, ins.pad_left:ins.pad_left + ins.cols] = src[idx]
            nbits = self._dram_bits(ins.region, idx, int(np.prod(buf.shape[1:])))
        buf[rows] = block
        c.dram_read_bits += nbits
        c.write_bits[ins.buffer] += ins.sram_entries * self._bits[ins.buffer]
        return overhead + self._transfer_cycles(nbits)

    def _indices(self, base: int, field_values: np.ndarray, factor, eo: int, ei: int) -> np.ndarray:
        """``[U, eo, ei]`` addresses ``base + field + i * factor[0] + j * factor[1]``."""
        off = np.arange(eo)[:, None] * factor[0] + np.arange(ei)[None, :] * factor[1]
        return base + field_values[:, None, None] + off[None]

    def _gemm(self, ins: Gemm, bufs, c: _Counters) -> int:
        bits = self._bits
        uops = bufs["uop"][ins.uop_begin:ins.uop_end]
        eo, ei = ins.extent_outer, ins.extent_inner
        dst = self._indices(ins.dst_base, uops[:, 0], ins.dst_factor, eo, ei)
        acc = bufs["acc"]
        c.read_bits["uop"] += ins.uops * bits["uop"] * (ins.extent_outer * ins.extent_inner
                                                         if ins.dataflow == "output" and not ins.reset else 1)
        if dst.max() >= len(acc) or dst.min() < 0:
            raise ProgramError("GEMM addresses an accumulator entry outside the buffer")
        if ins.reset:
            acc[dst.reshape(-1)] = 0
            c.write_bits["acc"] += ins.steps * bits["acc"]
            return self.hw.instruction_overhead_cycles + ins.steps
        src = self._indices(ins.src_base, uops[:, 1], ins.src_factor, eo, ei)
        x = bufs["inp"][src.reshape(len(uops), eo * ei)]  # [U, E, batch, bi]
        if ins.wgt_factor == (0, 0):
            w = bufs["wgt"][ins.wgt_base + uops[:, 2]]  # [U, bo, bi]
            u, e, b, i = x.shape
            prod = np.matmul(x.reshape(u, e * b, i), w.transpose(0, 2, 1)).reshape(u, e, b, -1)
        else:
            wi = self._indices(ins.wgt_base, uops[:, 2], ins.wgt_factor, eo, ei)
            w = bufs["wgt"][wi.reshape(len(uops), eo * ei)]  # [U, E, bo, bi]
            prod = np.einsum("uebi,uepi->uebp", x, w)
        flat_dst = dst.reshape(len(uops), eo * ei)
        # micro-ops that share a destination pattern are summed first (exact in float64: |sum| < 2**53)
        keys, inverse = np.unique(uops[:, 0], return_inverse=True)
        for k in range(len(keys)):
            sel = np.flatnonzero(inverse == k)
            total = np.rint(prod[sel].sum(axis=0)).astype(np.int64)
            d = flat_dst[sel[0]]
            if len(np.unique(d)) == len(d):
                acc[d] = _wrap32(acc[d] + total)
            else:
                tmp = np.zeros_like(acc)
                np.add.at(tmp, d, total)
                touched = np.unique(d)
                acc[touched] = _wrap32(acc[touched] + tmp[touched])
        steps = ins.steps
        c.macs[self._mode] = c.macs.get(self._mode, 0) + steps * self._lanes
        c.read_bits["inp"] += steps * bits["inp"]
        if ins.dataflow == "weight":
            wgt_reads = ins.uops if ins.wgt_factor == (0, 0) else steps
            acc_rw = steps
        else:
            wgt_reads = steps
            acc_rw = eo * ei * runs(uops[:, 0])
        c.read_bits["wgt"] += wgt_reads * bits["wgt"]
        c.read_bits["acc"] += acc_rw * bits["acc"]
        c.write_bits["acc"] += acc_rw * bits["acc"]
        return self.hw.instruction_overhead_cycles + steps

    def _alu(self, ins: Alu, bufs, c: _Counters) -> int:
        bits = self._bits
        acc = bufs["acc"]
        uops = bufs["uop"][ins.uop_begin:ins.uop_end]
        eo, ei = ins.extent_outer, ins.extent_inner
        dst = self._indices(ins.dst_base, uops[:, 0], ins.dst_factor, eo, ei).reshape(-1)
        if len(np.unique(dst)) != len(dst):
            raise ProgramError("an ALU instruction writes the same accumulator entry twice")
        src = self._indices(ins.src_base, uops[:, 1], ins.src_factor, eo, ei).reshape(-1)
        if max(dst.max(), src.max() + 1) >= len(acc):
            raise ProgramError("ALU addresses an accumulator entry outside the buffer")
        v = acc[dst]
        if ins.op == "add":
            v = _wrap32(v + acc[src])
        elif ins.op == "add_imm":
            v = _sat32(v + ins.imm)
        elif ins.op == "max_imm":
            v = np.maximum(v, ins.imm)
        elif ins.op == "min_imm":
            v = np.minimum(v, ins.imm)
        else:  # mul_shift
            mult, shift = acc[src], acc[src + 1]
            if (shift < 1).any() or (shift > 62).any() or (mult < 0).any() or (mult > INT32_MAX).any():
                raise ProgramError("mul_shift needs multipliers in [0, 2**31) and shifts in [1, 62]")
            v = _sat32((v * mult + (np.int64(1) << (shift - 1))) >> shift)
        acc[dst] = v
        steps = ins.steps
        src_reads = ins.reads_src * (ins.uops if ins.src_factor == (0, 0) else steps)
        c.read_bits["acc"] += (steps + src_reads) * bits["acc"]
        c.write_bits["acc"] += steps * bits["acc"]
        c.read_bits["uop"] += ins.uops * bits["uop"]
        c.alu[ins.op] = c.alu.get(ins.op, 0) + steps * self.hw.batch * self.hw.block_out
        return self.hw.instruction_overhead_cycles + steps

    def _store(self, ins: Store, bufs, mem, c: _Counters) -> int:
        region = self._regions[ins.region]
        if region.kind != "out":
            raise ProgramError(f"STORE to region {ins.region!r} of kind {region.kind}; stores write 'out' regions")
        acc = bufs["acc"]
        src = ins.sram_base + np.arange(ins.rows)[:, None] * ins.sram_row_pitch + np.arange(ins.cols)[None, :]
        dst = ins.dram_base + np.arange(ins.rows)[:, None] * ins.dram_row_stride + np.arange(ins.cols)[None, :]
        values = acc[src]
        if region.bits < 32 and ((values < 0).any() or (values >= (1 << region.bits)).any()):
            raise ProgramError(f"STORE of {region.bits}-bit codes holds values outside [0, {(1 << region.bits) - 1}]")
        mem[ins.region][dst] = values
        nbits = self._dram_bits(ins.region, dst, self.hw.batch * self.hw.block_out)
        c.read_bits["acc"] += ins.entries * self._bits["acc"]
        c.dram_write_bits += nbits
        return self.hw.instruction_overhead_cycles + self._transfer_cycles(nbits)

    def _forward(self, ins: Forward, bufs, c: _Counters) -> int:
        hw = self.hw
        if ins.lane0 + hw.block_out > ins.lanes:
            raise ProgramError(f"FORWARD to lanes {ins.lane0}..{ins.lane0 + hw.block_out - 1} of a {ins.lanes}-lane "
                               "entry")
        nxt = bufs["next"]
        if nxt is None:
            entries = hw.buffers["inp"].size_bytes * 8 // (hw.batch * ins.lanes * ins.bits)
            nxt = bufs["next"] = np.zeros((entries, hw.batch, ins.lanes), dtype=np.float64)
        elif nxt.shape[2] != ins.lanes:
            raise ProgramError("FORWARD instructions of one program disagree on the next layer's lanes")
        if ins.entries:
            acc = bufs["acc"]
            src = ins.sram_base + np.arange(ins.rows)[:, None] * ins.sram_row_pitch + np.arange(ins.cols)[None, :]
            dst = ins.dst_base + np.arange(ins.rows)[:, None] * ins.dst_row_pitch + np.arange(ins.cols)[None, :]
            if dst.max() >= len(nxt):
                raise ProgramError(f"FORWARD writes next-layer inp entry {dst.max()} beyond the buffer ({len(nxt)})")
            values = acc[src]
            if (values < 0).any() or (values >= (1 << ins.bits)).any():
                raise ProgramError(f"FORWARD of {ins.bits}-bit codes holds values outside [0, {(1 << ins.bits) - 1}]")
            nxt[dst, :, ins.lane0:ins.lane0 + hw.block_out] = values
        c.read_bits["acc"] += ins.entries * self._bits["acc"]
        c.write_bits["inp"] += ins.entries * hw.batch * hw.block_out * ins.bits
        return hw.instruction_overhead_cycles + ins.entries

    def _fill(self, ins: Fill, bufs, c: _Counters) -> int:
        if ins.entries:
            buf = bufs["inp"]
            idx = (ins.base + np.arange(ins.count)[:, None, None] * ins.block_stride
                   + np.arange(ins.rows)[None, :, None] * ins.row_pitch + np.arange(ins.cols)[None, None, :])
            if idx.max() >= len(buf):
                raise ProgramError(f"FILL writes inp entry {idx.max()} beyond the buffer ({len(buf)} entries)")
            buf[idx.reshape(-1)] = ins.value
        c.write_bits["inp"] += ins.entries * self._bits["inp"]
        return self.hw.instruction_overhead_cycles + ins.entries


def run_layer(shape: ConvShape, w_bits: int, a_bits: int, codes: np.ndarray, w_q: np.ndarray,
              bias_corr: np.ndarray, hw: HardwareConfig, mapping: LayerMapping | None = None,
              output: OutputSpec = OutputSpec(), zero_point: int = 0, mult: np.ndarray | None = None,
              shift: np.ndarray | None = None, program: Program | None = None,
              plan: LayerPlan | None = None) -> tuple[np.ndarray, SimResult]:
    """Lower one layer, pack its operands, simulate, unpack.

    ``codes``: uint8 input codes (NCHW, or ``[N, K]`` for dense) with ``zero_point``; ``w_q``: integer weights
    (OIHW or ``[OC, K]``); ``bias_corr``: int32 per output channel (:func:`tvm_mp.quantize.scheme.bias_correction`).
    Returns int32 ``acc + bias_corr`` (``output.kind == "acc"``) or uint8 codes (``"codes"``, with ``mult`` and
    ``shift`` from :func:`tvm_mp.quantize.scheme.requant_multiplier`), shaped like the layer's output.
    Pass ``plan`` / ``program`` to reuse a lowering across calls.
    """
    if plan is None:
        mapping = mapping or default_mapping(shape, w_bits, a_bits, hw, output)
        plan = LayerPlan(shape, w_bits, a_bits, hw, mapping, output, zero_point)
    if program is None:
        program = lower(plan)
    dram, valid = pack_layer(plan, codes, w_q, bias_corr, mult, shift)
    mem, result = Simulator(hw).run(program, dram, valid)
    out = unpack_output(plan, mem["out"])
    out = out.astype(np.int32) if plan.output.kind == "acc" else out.astype(np.uint8)
    if np.ndim(codes) == 2:  # dense
        out = out.reshape(out.shape[0], -1)
    return out, result


def simulate_layer(workload, hardware: HardwareConfig | None = None, seed: int = 0,
                   objective: str = "energy") -> dict:
    """Simulate one :class:`tvm_mp.cost_models.base.Workload` on random operands (seeded) and return
    ``{"cycles", "clock_mhz", "energy_uj", "events"}``, what :mod:`tvm_mp.measure.source` records.

    The mapping is the one the workload's knobs name (see :data:`tvm_mp.accel.mapping.MAPPING_KNOBS`), else the
    analytical model's best for ``objective``. Cycles and energy do not depend on the operand values.
    """
    from ..quantize.scheme import weight_qrange
    from .mapping import mapping_from_knobs, search_mappings, workload_output, workload_shape

    hw = hardware or HardwareConfig.default()
    shape, output = workload_shape(workload), workload_output(workload)
    w_bits, a_bits = workload.w_bits, workload.a_bits
    mapping = mapping_from_knobs(workload.knobs)
    if mapping is None:
        mapping = search_mappings(shape, w_bits, a_bits, hw, output, objective).best.mapping
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 1 << a_bits, size=tuple(workload.input_shape)).astype(np.uint8)
    lo, hi = weight_qrange(w_bits)
    w_q = rng.integers(lo, hi + 1, size=(shape.oc, shape.cg, shape.kh, shape.kw)).astype(np.int8)
    if w_bits == 1:
        w_q = np.where(w_q >= 0, 1, -1).astype(np.int8)
    bias = np.zeros(shape.oc, dtype=np.int32)
    mult = np.full(shape.oc, 1 << 30, dtype=np.int64)  # scale 2**-32: codes land at the zero point
    shift = np.full(shape.oc, 62, dtype=np.int64)
    _, result = run_layer(shape, w_bits, a_bits, codes, w_q, bias, hw, mapping, output, 0, mult, shift)
    events = result.events.counts()
    events.update({f"energy_{k}": v for k, v in result.energy.to_dict().items()})
    return {"cycles": result.cycles, "clock_mhz": hw.clock_mhz, "energy_uj": result.energy_uj, "events": events,
            "mapping": str(mapping)}
