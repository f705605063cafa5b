"""Analytical model of a layer on the accelerator (Timeloop / Accelergy style), and mapping search.

The model never builds instructions or touches data. From the layer shape, the precision, the hardware and a
:class:`~tvm_mp.accel.lower.LayerMapping` it derives in closed form

* how often each tile is (re)loaded -- a tile is reloaded whenever a loop it depends on advances, so its load
  count is the product of the trip counts of all loops down to the innermost non-trivial loop it depends on;
* the accesses of every buffer level (DRAM bytes, SRAM bits read and written per buffer), MACs and ALU work, with
  the register reuse of the GEMM dataflow;
* cycles, from per-step load, compute and store times in a three-stage pipeline: with single buffering each
  step waits for its loads and the previous store (exact); with double buffering a load overlaps the previous
  step's compute, ``T = L_0 + sum_k max(C_k, L_{k+1}) + S_last``, bounded below by the store stream, with stores
  charged half where they are a step's bottleneck (see :meth:`AnalyticalModel._cycles`).

The simulator (:mod:`tvm_mp.accel.simulator`) is the ground truth it is checked against (tests and
``bench/accel.py``: every layer of ResNet-8 and MobileNetV1-0.25 within 10 %).

Search: every mapping built from "balanced" tile sizes (``ceil(D / n)`` for each dimension), both loop orders
and both GEMM dataflows, that fits the buffers; lower bit-widths make entries hold more operands, so bigger tiles
fit and mappings impossible at 8 bits open up. :func:`joint_search` searches precision and mapping together.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from types import MappingProxyType
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..errors import Error
from ..layers import LayerInfo
from ..precision import Precision
from ..quantize.packing import container_bits
from .energy import EnergyBreakdown, Events, energy_of
from .hardware import BUFFERS, HardwareConfig, mac_key
from .lower import (
    ORDERS,
    ConvShape,
    LayerMapping,
    LayerPlan,
    MappingError,
    OnChipInput,
    OnChipOutput,
    OutputSpec,
    _ceil,
    super_group_size,
    tile_sizes,
)

OBJECTIVES = ("energy", "latency", "edp")


@dataclass(frozen=True)
class LayerEstimate:
    """The analytical model's (or the simulator's) figures for one layer under one mapping and precision."""

    mapping: LayerMapping
    w_bits: int
    a_bits: int
    cycles: int
    events: Events
    energy: EnergyBreakdown
    clock_mhz: float
    instructions: int = 0

    @property
    def energy_uj(self) -> float:
        return self.energy.total_uj

    @property
    def latency_us(self) -> float:
        return self.cycles / self.clock_mhz

    @property
    def precision(self) -> str:
        return f"w{self.w_bits}a{self.a_bits}"

    def score(self, objective: str) -> tuple:
        if objective == "energy":
            return (self.energy_uj, self.cycles)
        if objective == "latency":
            return (self.cycles, self.energy_uj)
        return (self.energy_uj * self.cycles, self.energy_uj)

    def to_dict(self) -> dict:
        return {"mapping": self.mapping.to_dict(), "precision": self.precision, "cycles": self.cycles,
                "latency_us": self.latency_us, "energy": self.energy.to_dict(), "events": self.events.to_dict(),
                "instructions": self.instructions}


class _Axis:
    """Per-tile quantities of one spatial axis: output sizes, valid (in-bounds) and needed input extents."""

    def __init__(self, plan: LayerPlan, axis: int):
        n = len(plan.h_tiles if axis == 0 else plan.w_tiles)
        self.out = np.array(plan.h_tiles if axis == 0 else plan.w_tiles, dtype=np.int64)
        win = [plan.window(axis, t) for t in range(n)]
        self.valid = np.array([w[2] for w in win], dtype=np.int64)
        self.needed = np.array([w[1] + w[2] + w[3] for w in win], dtype=np.int64)


class _Class:
    """A super-group size: its channel blocks, the real lanes of each block and the real weights of each pair of
    blocks (block-diagonal for grouped convolutions)."""

    def __init__(self, plan: LayerPlan, groups: int):
        s = plan.shape
        self.groups = groups
        self.c, self.oc = groups * s.cg, groups * s.kg
        self.icb, self.ocb = _ceil(self.c, plan.bi), _ceil(self.oc, plan.bo)
        self.in_lanes = np.minimum(plan.bi, self.c - plan.bi * np.arange(self.icb))
        self.out_lanes = np.minimum(plan.bo, self.oc - plan.bo * np.arange(self.ocb))
        nnz = np.zeros((self.ocb, self.icb), dtype=np.int64)
        for g in range(groups):
            o = np.bincount(np.arange(g * s.kg, (g + 1) * s.kg) // plan.bo, minlength=self.ocb)
            i = np.bincount(np.arange(g * s.cg, (g + 1) * s.cg) // plan.bi, minlength=self.icb)
            nnz += np.outer(o, i)
        self.nnz = nnz  # real weights per (output block, input block) and tap


class AnalyticalModel:
    """Closed-form accesses, energy and cycles of a layer under a mapping (see the module docstring)."""

    def __init__(self, hw: HardwareConfig):
        self.hw = hw

    def estimate(self, shape: ConvShape, w_bits: int, a_bits: int, mapping: LayerMapping,
                 output: OutputSpec = OutputSpec(), cycles: bool = True, onchip_in: OnChipInput | None = None,
                 onchip_out: OnChipOutput | None = None, zero_point: int = 0) -> LayerEstimate:
        """Figures of ``shape`` at ``w_bits`` x ``a_bits`` under ``mapping``; ``cycles=False`` skips the (slower)
        pipeline timing and reports 0 cycles. ``onchip_in`` / ``onchip_out``: the layer is chained (its input is
        resident on chip / it forwards its output, see :mod:`tvm_mp.accel.chain`)."""
        plan = LayerPlan(shape, w_bits, a_bits, self.hw, mapping, output, zero_point, onchip_in=onchip_in,
                         onchip_out=onchip_out)
        return self.estimate_plan(plan, cycles)

    def estimate_plan(self, plan: LayerPlan, cycles: bool = True) -> LayerEstimate:
        """:meth:`estimate` of a :class:`LayerPlan` (chained or not)."""
        mapping, w_bits, a_bits = plan.mapping, plan.w_bits, plan.a_bits
        events = self._events(plan)
        n_cycles = self._cycles(plan) if cycles else 0
        return LayerEstimate(mapping, w_bits, a_bits, n_cycles, events, energy_of(events, self.hw),
                             self.hw.clock_mhz, events.instructions)

    def _classes(self, plan: LayerPlan) -> list[tuple[_Class, int]]:
        counts: dict[int, int] = {}
        for g in plan.sg_groups:
            counts[g] = counts.get(g, 0) + 1
        return [(_Class(plan, g), n) for g, n in counts.items()]

    # -- accesses ----------------------------------------------------------------------------------------------------
    @staticmethod
    def reloads(order: str, noc: int, nsp: int, nic: int) -> tuple[int, int]:
        """How many times each input tile and each weight tile is loaded (see the module docstring)."""
        if order == "oc_sp":  # loops: oc tiles > spatial tiles > ic tiles
            r_inp = 1 if (nsp == 1 and nic == 1) else noc
            r_wgt = nsp if nic > 1 else 1
        else:  # spatial tiles > oc tiles > ic tiles
            r_inp = noc if nic > 1 else 1
            r_wgt = nsp if (nic > 1 or noc > 1) else 1
        return r_inp, r_wgt

    def _events(self, plan: LayerPlan) -> Events:
        hw, s, m, out = self.hw, plan.shape, plan.mapping, plan.output
        bits = {b: hw.entry_bits(b, plan.w_bits, plan.a_bits) for b in BUFFERS}
        ca, cw = container_bits(plan.a_bits), container_bits(plan.w_bits)
        lanes = hw.batch * hw.block_out * plan.bi
        hax, wax = _Axis(plan, 0), _Axis(plan, 1)
        nsp = plan.nb * len(hax.out) * len(wax.out)
        pix = plan.nb * s.oh * s.ow  # output entries per output block
        n_ops = len(out.alu_ops)
        src_per_uop = sum({"add": 1, "mul_shift": 2}.get(op, 0) for op in out.alu_ops)
        rd = {b: 0 for b in BUFFERS}
        wr = {b: 0 for b in BUFFERS}
        dram_rd = dram_wr = macs = 0
        alu: dict[str, int] = {}
        n_ins = 2  # micro-op and parameter loads
        fwd_h, fwd_w = _forwarded(plan)
        for cls, count in self._classes(plan):
            noc, nic = _ceil(cls.ocb, m.toc), _ceil(cls.icb, m.tic)
            r_inp, r_wgt = self.reloads(m.order, noc, nsp, nic)
            steps = s.taps * cls.ocb * cls.icb * pix  # GEMM steps (micro-op x loop iterations)
            gemm_uops = s.taps * cls.ocb * cls.icb * nsp
            c = count
            if plan.onchip_in is None:
                dram_rd += c * r_inp * s.n * cls.c * int(hax.valid.sum()) * int(wax.valid.sum()) * ca
                wr["inp"] += (c * r_inp * plan.nb * cls.icb * int(hax.needed.sum()) * int(wax.needed.sum())
                              * bits["inp"])
            dram_rd += c * r_wgt * cls.groups * s.kg * s.cg * s.taps * cw
            stored = out_entries = cls.ocb * pix
            if plan.onchip_out is None:
                dram_wr += c * s.n * cls.oc * s.oh * s.ow * out.bits
            else:  # FORWARD: the entries inside the next layer's image, into its inp buffer
                stored = cls.ocb * plan.nb * fwd_h * fwd_w
                wr["inp"] += c * stored * hw.batch * hw.block_out * plan.onchip_out.bits
            wr["wgt"] += c * r_wgt * cls.ocb * cls.icb * s.taps * bits["wgt"]
            macs += c * steps * lanes
            rd["inp"] += c * steps * bits["inp"]
            if m.dataflow == "weight":
                rd["wgt"] += c * gemm_uops * bits["wgt"]
                acc_rw, uop_reads = steps, gemm_uops
            else:
                rd["wgt"] += c * steps * bits["wgt"]
                acc_rw, uop_reads = out_entries * nic, steps
            rd["uop"] += c * (uop_reads + cls.ocb * nsp * (1 + n_ops)) * bits["uop"]  # + reset and ALU micro-ops
            # accumulator: GEMM read-modify-write, reset writes, ALU reads and writes, STORE reads
            rd["acc"] += c * (acc_rw + n_ops * out_entries + src_per_uop * cls.ocb * nsp + stored) * bits["acc"]
            wr["acc"] += c * (acc_rw + out_entries + n_ops * out_entries) * bits["acc"]
            for op in out.alu_ops:
                alu[op] = alu.get(op, 0) + c * out_entries * hw.batch * hw.block_out
            # every step loads something (a new input or weight tile), so no sync LOADs are needed -- except with
            # a resident input: then steps that keep their weight tile pass tokens with a sync LOAD
            inp_loads = r_inp * nsp * cls.icb if plan.onchip_in is None else noc * nsp * nic - r_wgt * noc * nic
            n_ins += c * (inp_loads + r_wgt * noc * nic + noc * nsp * nic + noc * nsp * (1 + n_ops)
                          + cls.ocb * nsp)
        dram_rd += plan.uop_total * bits["uop"] + plan.param_entries * bits["acc"]
        fills = plan.fills()
        wr["inp"] += sum(f.entries for f in fills) * bits["inp"]
        n_ins += len(fills)
        wr["uop"] += plan.uop_total * bits["uop"]
        wr["acc"] += plan.param_entries * bits["acc"]
        return Events(dram_rd, dram_wr, rd, wr, {mac_key(plan.w_bits, plan.a_bits): macs}, alu, n_ins)

    # -- cycles ------------------------------------------------------------------------------------------------------
    def _transfer(self, nbits) -> np.ndarray:
        """DMA cycles of transfers of ``nbits`` (0 for an empty transfer)."""
        d = self.hw.dram
        nbits = np.asarray(nbits, dtype=np.int64)
        return np.where(nbits > 0, d.latency_cycles + -(-nbits // (8 * d.bandwidth_bytes_per_cycle)), 0)

    def _class_steps(self, plan: LayerPlan, cls: _Class):
        """Per-step load and compute cycles and per-step store cycles (non-zero on the step that completes an
        output tile) of one super-group, in program order."""
        hw, s, m, out = self.hw, plan.shape, plan.mapping, plan.output
        ovh = hw.instruction_overhead_cycles
        ca, cw = container_bits(plan.a_bits), container_bits(plan.w_bits)
        hax, wax = _Axis(plan, 0), _Axis(plan, 1)
        ocs = np.array(tile_sizes(cls.ocb, m.toc), dtype=np.int64)
        ics = np.array(tile_sizes(cls.icb, m.tic), dtype=np.int64)
        noc, nic = len(ocs), len(ics)
        nth, ntw = len(hax.out), len(wax.out)
        batch_rows = np.minimum(hw.batch, s.n - hw.batch * np.arange(plan.nb))
        sp_b = np.repeat(np.arange(plan.nb), nth * ntw)
        sp_h = np.tile(np.repeat(np.arange(nth), ntw), plan.nb)
        sp_w = np.tile(np.arange(ntw), nth * plan.nb)
        nsp = len(sp_h)
        if m.order == "oc_sp":
            g_oc, g_sp, g_ic = np.meshgrid(np.arange(noc), np.arange(nsp), np.arange(nic), indexing="ij")
        else:
            g_sp, g_oc, g_ic = np.meshgrid(np.arange(nsp), np.arange(noc), np.arange(nic), indexing="ij")
        oc_i, sp_i, ic_i = g_oc.reshape(-1), g_sp.reshape(-1), g_ic.reshape(-1)
        b_i, h_i, w_i = sp_b[sp_i], sp_h[sp_i], sp_w[sp_i]
        e = hax.out[h_i] * wax.out[w_i]
        toc_a, tic_a = ocs[oc_i], ics[ic_i]
        new_inp = np.ones(len(oc_i), dtype=bool)
        new_inp[1:] = (sp_i[1:] != sp_i[:-1]) | (ic_i[1:] != ic_i[:-1])
        if plan.onchip_in is not None:
            new_inp[:] = False  # resident: nothing to load
        new_wgt = np.ones(len(oc_i), dtype=bool)
        new_wgt[1:] = (oc_i[1:] != oc_i[:-1]) | (ic_i[1:] != ic_i[:-1])
        # input loads: one LOAD per input block of the tile, each moving its real lanes
        blk = ic_i[:, None] * m.tic + np.arange(m.tic)[None, :]
        in_tile = np.arange(m.tic)[None, :] < tic_a[:, None]
        lanes = np.where(in_tile, cls.in_lanes[np.minimum(blk, cls.icb - 1)], 0)
        px = (hax.valid[h_i] * wax.valid[w_i] * batch_rows[b_i])[:, None]
        inp = np.where(in_tile, ovh + self._transfer(px * lanes * ca), 0).sum(axis=1)
        # weight loads: the real weights of the tile's block pairs
        csum = np.zeros((cls.ocb + 1, cls.icb + 1), dtype=np.int64)
        csum[1:, 1:] = cls.nnz.cumsum(0).cumsum(1)
        o0, i0 = oc_i * m.toc, ic_i * m.tic
        o1, i1 = o0 + toc_a, i0 + tic_a
        real_w = csum[o1, i1] - csum[o0, i1] - csum[o1, i0] + csum[o0, i0]
        wgt = ovh + self._transfer(real_w * s.taps * cw)
        load = np.where(new_inp, inp, 0) + np.where(new_wgt, wgt, 0)
        load = np.where(new_inp | new_wgt, load, ovh)  # a sync LOAD
        is_first, is_last = ic_i == 0, ic_i == nic - 1
        n_ops = len(out.alu_ops)
        comp = ovh + toc_a * tic_a * s.taps * e
        comp = comp + np.where(is_first, ovh + toc_a * e, 0)
        comp = comp + np.where(is_last, n_ops * (ovh + toc_a * e), 0)
        # stores: one per output block of the tile, each moving its real lanes
        oblk = oc_i[:, None] * m.toc + np.arange(m.toc)[None, :]
        out_tile = np.arange(m.toc)[None, :] < toc_a[:, None]
        olanes = np.where(out_tile, cls.out_lanes[np.minimum(oblk, cls.ocb - 1)], 0)
        opx = (e * batch_rows[b_i])[:, None]
        if plan.onchip_out is None:
            store = np.where(out_tile, ovh + self._transfer(opx * olanes * out.bits), 0).sum(axis=1)
        else:  # FORWARD: one entry per cycle, clipped to the next layer's image
            o = plan.onchip_out
            h0, w0 = np.cumsum([0] + list(hax.out))[h_i], np.cumsum([0] + list(wax.out))[w_i]
            kept = (np.clip(o.rows - o.pad_top - h0, 0, hax.out[h_i])
                    * np.clip(o.pitch - o.pad_left - w0, 0, wax.out[w_i]))
            store = np.where(out_tile, ovh + kept[:, None], 0).sum(axis=1)
        store = np.where(is_last, store, 0)
        return load, comp, store

    def _cycles(self, plan: LayerPlan) -> int:
        hw = self.hw
        ovh = hw.instruction_overhead_cycles
        per_class = {cls.groups: self._class_steps(plan, cls) for cls, _ in self._classes(plan)}
        parts = [per_class[g] for g in plan.sg_groups]
        load = np.concatenate([p[0] for p in parts])
        comp = np.concatenate([p[1] for p in parts])
        store = np.concatenate([p[2] for p in parts])
        bits_acc = hw.entry_bits("acc", plan.w_bits, plan.a_bits)
        load[0] += 2 * ovh + int(self._transfer(plan.uop_total * 32)) + int(self._transfer(plan.param_entries
                                                                                            * bits_acc))
        load[0] += sum(ovh + f.entries for f in plan.fills())
        nxt = np.append(load[1:], 0)
        if plan.nbuf == 1:
            # each step waits for its loads and, at an output tile boundary, the store of the previous tile: exact
            return int(load[0] + comp.sum() + np.maximum(nxt[:-1], store[:-1]).sum() + store[-1])
        # double buffering. Two lower bounds: a step's loads overlap the previous step's compute (stores hidden),
        # and the stores run back to back after the first output tile. When the bottleneck moves between stages
        # from step to step, neither is reached: the third term charges each step the mean of its slowest stage
        # without and with its store (two buffer slots absorb about half of a store that exceeds the step).
        mx = np.maximum(comp, nxt)
        pipe = load[0] + mx.sum() + store[-1]
        first_out = load[0] + comp[: int(np.flatnonzero(store)[0]) + 1].sum()
        mixed = load[0] + (mx.sum() + np.maximum(mx, store).sum()) / 2 + store[-1]
        return int(round(max(pipe, first_out + store.sum(), mixed)))


def _forwarded(plan: LayerPlan) -> tuple[int, int]:
    """Output rows and columns a chained layer forwards (those inside the next layer's image)."""
    o, s = plan.onchip_out, plan.shape
    if o is None:
        return s.oh, s.ow
    return max(0, min(s.oh, o.rows - o.pad_top)), max(0, min(s.ow, o.pitch - o.pad_left))


# -- search --------------------------------------------------------------------------------------------------------
def balanced_sizes(total: int) -> list[int]:
    """Distinct tile sizes ``ceil(total / n)``, largest first."""
    return sorted({_ceil(total, n) for n in range(1, total + 1)}, reverse=True)


def candidate_mappings(shape: ConvShape, w_bits: int, a_bits: int, hw: HardwareConfig,
                       output: OutputSpec = OutputSpec(), double_buffer: Sequence[bool] = (True,),
                       dataflows: Sequence[str] = ("weight", "output"), orders: Sequence[str] = ORDERS):
    """Every mapping of the search space that fits the buffers."""
    bi = hw.block_in_at(w_bits, a_bits)
    sg = super_group_size(shape, bi, hw.block_out)
    ocb = _ceil(sg * shape.kg, hw.block_out)
    icb = _ceil(sg * shape.cg, bi)
    sh, sw = shape.params.strides
    dh, dw = shape.params.dilation
    caps = {b: hw.capacity_entries(b, w_bits, a_bits) for b in BUFFERS}
    nsg = _ceil(shape.groups, sg)
    params = nsg * ocb * output.params_per_block
    out = []
    for db in double_buffer:
        nbuf = 2 if db else 1
        for th, tw, toc, tic in itertools.product(balanced_sizes(shape.oh), balanced_sizes(shape.ow),
                                                  balanced_sizes(ocb), balanced_sizes(icb)):
            in_th = (th - 1) * sh + (shape.kh - 1) * dh + 1
            in_pitch = (tw - 1) * sw + (shape.kw - 1) * dw + 1
            if nbuf * tic * in_th * in_pitch > caps["inp"] or nbuf * toc * tic * shape.taps > caps["wgt"] \
                    or nbuf * toc * th * tw + params > caps["acc"]:
                continue
            # micro-ops: at most 4 GEMM variants (full and edge tiles) and 2 x (reset + ALU) lists; this bound
            # may skip a mapping whose edge tiles would have needed fewer, never admits one that does not fit
            if 4 * toc * tic * shape.taps + 4 * toc > caps["uop"]:
                continue
            for order, df in itertools.product(orders, dataflows):
                out.append(LayerMapping(th, tw, toc, tic, order, df, db))
    return out


@dataclass(frozen=True)
class SearchResult:
    """The best mapping of a layer at one precision, and how many mappings were feasible."""

    best: LayerEstimate
    feasible: int
    evaluated: int

    @property
    def precision(self) -> str:
        return self.best.precision


class NoMappingError(Error):
    """No mapping of a layer fits the hardware at a precision."""


def search_mappings(shape: ConvShape, w_bits: int, a_bits: int, hw: HardwareConfig,
                    output: OutputSpec = OutputSpec(), objective: str = "energy",
                    double_buffer: Sequence[bool] = (True,), model: AnalyticalModel | None = None,
                    timed: int = 8) -> SearchResult:
    """The best mapping (by ``objective``: ``energy``, ``latency`` or ``edp``) of one layer at one precision.

    Energy needs only the access counts; for the ``energy`` objective the ``timed`` lowest-energy mappings get the
    pipeline timing too and ties are broken by cycles. The other objectives time every feasible mapping.
    """
    if objective not in OBJECTIVES:
        raise Error(f"unknown objective {objective!r}: use one of {', '.join(OBJECTIVES)}")
    model = model or AnalyticalModel(hw)
    hw.check_precision(w_bits, a_bits)
    cands = candidate_mappings(shape, w_bits, a_bits, hw, output, double_buffer)
    ests = []
    for mapping in cands:
        try:
            ests.append(model.estimate(shape, w_bits, a_bits, mapping, output, cycles=objective != "energy"))
        except MappingError:  # not expected: the filter above checks every buffer; kept as a safety net
            continue
    if not ests:
        raise NoMappingError(f"no mapping fits {hw.name} at w{w_bits}a{a_bits} for this layer "
                             f"({shape.c}->{shape.oc} channels, {shape.kh}x{shape.kw} kernel): enlarge the buffers")
    feasible = len(ests)
    if objective == "energy":
        ests.sort(key=lambda e: e.energy_uj)
        ests = [model.estimate(shape, w_bits, a_bits, e.mapping, output) for e in ests[:timed]]
    best = min(ests, key=lambda e: e.score(objective))
    return SearchResult(best, feasible, len(cands))


def joint_search(shape: ConvShape, precisions: Iterable[Precision | tuple[int, int]], hw: HardwareConfig,
                 output_bits: Mapping[str, int] | None = None, objective: str = "energy",
                 double_buffer: Sequence[bool] = (True,)) -> dict[str, SearchResult]:
    """Search precision and mapping together: the best mapping for every candidate precision (key ``w4a4``...).

    The overall best is ``min(result.values(), key=...)``; keeping every precision's best lets a caller trade it
    against accuracy. Output codes are stored at the layer's own activation width unless ``output_bits`` says
    otherwise (per precision key); ``output_bits[key] = 32`` stores int32 accumulators.
    """
    model = AnalyticalModel(hw)
    results = {}
    for p in precisions:
        w, a = (p.w_bits, p.a_bits) if isinstance(p, Precision) else p
        key = f"w{w}a{a}"
        bits = (output_bits or {}).get(key, a)
        output = OutputSpec() if bits == 32 else OutputSpec.codes(bits)
        results[key] = search_mappings(shape, w, a, hw, output, objective, double_buffer, model)
    return results


@dataclass(frozen=True)
class ModelSearch:
    """Per-layer best (precision, mapping) for a model, with totals."""

    layers: Mapping[str, LayerEstimate]
    hardware: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", MappingProxyType(dict(self.layers)))

    @property
    def energy_uj(self) -> float:
        return sum(e.energy_uj for e in self.layers.values())

    @property
    def cycles(self) -> int:
        return sum(e.cycles for e in self.layers.values())

    def precisions(self) -> dict[str, str]:
        return {n: e.precision for n, e in self.layers.items()}


def search_model(layers: Sequence[LayerInfo], hw: HardwareConfig,
                 precisions: Mapping[str, Sequence[Precision]] | Sequence[Precision],
                 objective: str = "energy", double_buffer: Sequence[bool] = (True,)) -> ModelSearch:
    """Joint precision + mapping search over a model's layers.

    ``precisions``: the candidate precisions of every layer (a list), or per layer name (a mapping -- e.g. the
    precisions an accuracy analysis allows). Layers form a chain in list order; a layer's output codes are stored at
    the activation width its successor chooses (the last layer stores int32 accumulators), so the choice is made by
    dynamic programming over the chain, exact for that cost.
    """
    names = [layer.name for layer in layers]
    if not isinstance(precisions, Mapping):
        precisions = {n: list(precisions) for n in names}
    cands = []
    for layer in layers:
        if layer.name not in precisions or not precisions[layer.name]:
            raise Error(f"no candidate precision for layer {layer.name!r}: give at least one")
        cands.append([(p.w_bits, p.a_bits) for p in precisions[layer.name]])
    model = AnalyticalModel(hw)
    mappings: dict = {}
    cache: dict = {}

    def best(i: int, wa: tuple[int, int], out_bits: int) -> LayerEstimate:
        """Best estimate of layer i at ``wa`` storing ``out_bits``-bit outputs. The code width adds the same
        energy to every mapping, so one search per output kind serves all widths (exact for the energy
        objective; for the others the mapping found for the first width is reused)."""
        shape = ConvShape.from_layer(layers[i])
        output = OutputSpec() if out_bits == 32 else OutputSpec.codes(out_bits)
        key = (shape, wa, output.kind)
        if key not in mappings:
            mappings[key] = search_mappings(shape, wa[0], wa[1], hw, output, objective, double_buffer,
                                            model).best.mapping
        ckey = (shape, wa, out_bits)
        if ckey not in cache:
            cache[ckey] = model.estimate(shape, wa[0], wa[1], mappings[key], output)
        return cache[ckey]

    # dp[i][choice] = best total score of layers i.. given layer i runs at `choice`
    n = len(layers)
    score_idx = 0 if objective != "latency" else 1
    dp: list[dict] = [dict() for _ in range(n)]
    for i in range(n - 1, -1, -1):
        for wa in cands[i]:
            if i == n - 1:
                est = best(i, wa, 32)
                dp[i][wa] = ((est.energy_uj, est.cycles)[score_idx], [est])
                continue
            options = []
            for nxt_wa, (tail, chain) in dp[i + 1].items():
                est = best(i, wa, nxt_wa[1])
                options.append(((est.energy_uj, est.cycles)[score_idx] + tail, [est] + chain))
            dp[i][wa] = min(options, key=lambda t: t[0])
    _, chain = min(dp[0].values(), key=lambda t: t[0])
    return ModelSearch({names[i]: chain[i] for i in range(n)}, hw.name)


# -- workloads: knobs and shapes of cost-model workloads (tvm_mp.cost_models.accel predicts them) ----------------------
#: Workload knobs naming a mapping (all of th, tw, toc, tic; order, dataflow and double_buffer are optional).
MAPPING_KNOBS = ("th", "tw", "toc", "tic", "order", "dataflow", "double_buffer")


def mapping_from_knobs(knobs) -> LayerMapping | None:
    """The mapping a workload's knobs name, or None when they name none (the knobs are ``(name, value)`` pairs
    or a mapping)."""
    k = dict(knobs.items() if isinstance(knobs, Mapping) else knobs or ())
    if not any(name in k for name in MAPPING_KNOBS):
        return None
    missing = [n for n in ("th", "tw", "toc", "tic") if n not in k]
    if missing:
        raise MappingError(f"a mapping in workload knobs needs th, tw, toc and tic; {missing[0]!r} is missing")
    db = k.get("double_buffer", 1)
    return LayerMapping(int(k["th"]), int(k["tw"]), int(k["toc"]), int(k["tic"]), str(k.get("order", "oc_sp")),
                        str(k.get("dataflow", "weight")), bool(int(db)) if not isinstance(db, str) else db == "true")


def mapping_knobs(mapping: LayerMapping) -> dict:
    """Workload knobs naming ``mapping`` (the inverse of :func:`mapping_from_knobs`)."""
    d = mapping.to_dict()
    d["double_buffer"] = int(d["double_buffer"])
    return d


def workload_shape(workload) -> ConvShape:
    """The :class:`ConvShape` of a :class:`tvm_mp.cost_models.base.Workload` (or anything with its fields)."""
    if workload.op == "dense":
        n, k = workload.input_shape
        return ConvShape(n, k, 1, 1, workload.weight_shape[0], 1, 1)
    n, c, h, w = workload.input_shape
    oc, _, kh, kw = workload.weight_shape
    return ConvShape(n, c, h, w, oc, kh, kw, workload.params)


def workload_output(workload) -> OutputSpec:
    """Requantized workloads store codes at their activation width; the others int32 accumulators (the host
    dequantizes a float output)."""
    return OutputSpec.codes(workload.a_bits) if workload.epilogue == "requant" else OutputSpec()
