"""On-chip chaining of consecutive accelerator layers: which edges keep their codes in the ``inp`` buffer.

An edge ``producer -> consumer`` between two accelerator layers stays on chip when

* the graph allows it: the consumer's input *is* the producer's output (no CPU op in between, e.g. no quantize of a
  float edge, no residual add or pooling), and nothing else reads it (no fan-out); the caller
  (:func:`tvm_mp.accel.target.offload_lowered`) checks that on the lowered Relax module;
* the layouts match: the producer stores codes of the width the consumer reads, with the consumer's zero point,
  and an output block of BLOCK_OUT channels lands inside one of the consumer's input blocks (their channel blocks
  line up: super-groups fill whole blocks on both sides);
* the buffers allow it: the consumer's whole padded input image (:attr:`LayerPlan.resident_entries`, at the
  consumer's entry width) fits in the ``inp`` buffer beside the input the producer itself is reading (its
  double-buffered tiles, or its own resident image when it is chained in turn). The image goes to the other end
  of the buffer from the producer's input. When it does not fit beside the producer's tiles, the producer's mapping
  is searched again in the space left (smaller input tiles), and taken if the analytical model says the chained
  pair costs less (by the objective) than the pair through DRAM.

Then the producer FORWARDs its output tiles into that image and the consumer loads no input (see
:mod:`tvm_mp.accel.lower`); the pair runs as one accelerator invocation and no DRAM traffic is counted for the
edge. :func:`plan_chain` decides along a run of layers and says, per edge, why it is not chained otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Collection, Sequence

from ..errors import Error
from ..quantize.packing import container_bits
from .lower import LayerMapping, LayerPlan, OnChipInput, OnChipOutput
from .mapping import AnalyticalModel, search_mappings


@dataclass(frozen=True)
class Edge:
    """An edge between two accelerator layers: ``onchip`` or the ``reason`` it goes through DRAM and the host."""

    producer: str
    consumer: str
    onchip: bool
    reason: str = ""

    def __post_init__(self) -> None:
        if self.onchip == bool(self.reason):
            raise ValueError("an edge is on chip without a reason, or off chip with one")

    def to_dict(self) -> dict:
        return {"producer": self.producer, "consumer": self.consumer, "onchip": self.onchip, "reason": self.reason}

    @classmethod
    def from_dict(cls, d) -> "Edge":
        return cls(str(d["producer"]), str(d["consumer"]), bool(d["onchip"]), str(d["reason"]))


def _replan(plan: LayerPlan, onchip_in: OnChipInput | None = None, onchip_out: OnChipOutput | None = None,
            check: bool = True, mapping: LayerMapping | None = None) -> LayerPlan:
    return LayerPlan(plan.shape, plan.w_bits, plan.a_bits, plan.hw, mapping or plan.mapping, plan.output,
                     plan.zero_point,
                     check=check, onchip_in=onchip_in if onchip_in is not None else plan.onchip_in,
                     onchip_out=onchip_out if onchip_out is not None else plan.onchip_out)


def _blocks_line_up(plan: LayerPlan, out: bool) -> bool:
    """Channel c sits in global block ``c // block`` (super-groups fill whole blocks, or there is one)."""
    s = plan.shape
    if plan.nsg == 1:
        return True
    return plan.sg * (s.kg if out else s.cg) == (plan.ocb_max * plan.bo if out else plan.icb_max * plan.bi)


def layout_mismatch(producer: LayerPlan, consumer: LayerPlan) -> str:
    """Why the producer's stored output cannot become the consumer's input image as is ("" if it can)."""
    out = producer.output
    if out.kind != "codes":
        return "float edge (the host dequantizes int32 accumulators)"
    if out.bits != container_bits(consumer.a_bits):
        return f"code widths differ ({out.bits}-bit output, {container_bits(consumer.a_bits)}-bit input)"
    if out.zero_point != consumer.zero_point:
        return f"zero points differ ({out.zero_point} stored, {consumer.zero_point} read)"
    if producer.shape.n != consumer.shape.n or producer.shape.oc != consumer.shape.c:
        return "shapes differ"
    ps, cs = producer.shape, consumer.shape
    if (ps.oh, ps.ow) != (cs.h, cs.w):
        return f"shapes differ ({ps.oh}x{ps.ow} output, {cs.h}x{cs.w} input)"
    if consumer.bi % producer.bo:
        return f"blocks differ ({producer.bo}-channel output blocks, {consumer.bi}-channel input blocks)"
    if not (_blocks_line_up(producer, True) and _blocks_line_up(consumer, False)):
        return "grouped channel blocks do not line up"
    return ""


def _bytes(bits: int) -> int:
    return -(-bits // 8)


def _place(c: LayerPlan, lo: int, hi: int) -> tuple[int | None, int]:
    """Where the consumer's resident image goes beside the producer's input (bits ``[lo, hi)`` of the buffer):
    ``(base entry or None if it does not fit, image entries)``."""
    hw = c.hw
    need = _replan(c, OnChipInput(0), check=False).resident_entries
    eb = hw.entry_bits("inp", c.w_bits, c.a_bits)
    cap = hw.capacity_entries("inp", c.w_bits, c.a_bits)
    if need * eb <= lo:
        return 0, need
    if (cap - need) * eb >= hi:
        return cap - need, need
    return None, need


def _refit(p: LayerPlan, free_bits: int, objective: str) -> LayerPlan | None:
    """The producer's best mapping when its input tiles may use only ``free_bits`` of the ``inp`` buffer."""
    hw = p.hw
    if free_bits < 8:
        return None
    try:
        small = replace(hw, buffers={**hw.buffers, "inp": replace(hw.buffers["inp"], size_bytes=free_bits // 8)})
        mapping = search_mappings(p.shape, p.w_bits, p.a_bits, small, p.output, objective).best.mapping
        return _replan(p, mapping=mapping)
    except Error:
        return None


def _cost(plans: Sequence[LayerPlan], objective: str) -> float:
    model = AnalyticalModel(plans[0].hw)
    ests = [model.estimate_plan(p) for p in plans]
    energy, cycles = sum(e.energy_uj for e in ests), sum(e.cycles for e in ests)
    return {"energy": energy, "latency": cycles}.get(objective, energy * cycles)


def plan_chain(names: Sequence[str], plans: Sequence[LayerPlan], linked: Sequence[str], objective: str = "energy",
               fixed: Collection[str] = ()) -> tuple[list[LayerPlan], list[Edge]]:
    """Decide the edges of a run of layers ``names[0] -> names[1] -> ...`` whose graph allows chaining where
    ``linked[i]`` is "" (else it is the graph's reason edge ``i`` is not a candidate). ``plans``: the layers'
    plans without chaining; a producer whose mapping is not in ``fixed`` may get a smaller one (module docstring).
    Returns the plans with their on-chip input / output (and any new mapping) set, and one :class:`Edge` per edge.
    """
    out = list(plans)
    edges = []
    hw = plans[0].hw
    size_bits = hw.buffers["inp"].size_bits
    lo, hi = 0, _own_input_bits(out[0])  # bits of the inp buffer the current producer reads its input from
    for i in range(len(out) - 1):
        p, c = out[i], out[i + 1]
        reason = linked[i] or layout_mismatch(p, c)
        base = None
        if not reason:
            base, need = _place(c, lo, hi)
            eb = hw.entry_bits("inp", c.w_bits, c.a_bits)
            if base is None:
                reason = (f"does not fit: the padded input image needs {_bytes(need * eb)} bytes, the inp buffer has "
                          f"{_bytes(size_bits - (hi - lo))} free beside {names[i]}'s input "
                          f"({_bytes(size_bits)} in all)")
                p2 = None
                if p.onchip_in is None and names[i] not in fixed:
                    p2 = _refit(p, size_bits - need * eb, objective)
                if p2 is not None:
                    base2, _ = _place(c, 0, _own_input_bits(p2))
                    c2 = _replan(c, OnChipInput(base2)) if base2 is not None else None
                    if c2 is not None and _cost([p2, c2], objective) < _cost([p, c], objective):
                        out[i], base, reason = p2, base2, ""
                    elif c2 is not None:
                        reason += f"; a mapping of {names[i]} that leaves room costs more than the edge saves"
        if reason:
            edges.append(Edge(names[i], names[i + 1], False, reason))
            lo, hi = 0, _own_input_bits(c)
            continue
        p = out[i]
        c = _replan(c, OnChipInput(base))
        out[i] = _replan(p, onchip_out=OnChipOutput.to(c))
        out[i + 1] = c
        edges.append(Edge(names[i], names[i + 1], True))
        eb = hw.entry_bits("inp", c.w_bits, c.a_bits)
        lo, hi = base * eb, (base + c.resident_entries) * eb
    return out, edges


def _own_input_bits(plan: LayerPlan) -> int:
    return plan.needs()["inp"] * plan.hw.entry_bits("inp", plan.w_bits, plan.a_bits)
