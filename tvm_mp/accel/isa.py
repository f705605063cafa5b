"""The accelerator's instruction set: LOAD, GEMM, ALU, STORE (and FORWARD, FILL for on-chip layer chaining), with
dependency tokens between three queues.

Decoupled access-execute, as in VTA. LOADs run on the load module, GEMM and ALU on the compute module, STOREs on the
store module; each module executes its own instructions in program order, concurrently with the others. Four
token FIFOs order them:

* load -> compute (``push_next`` on a LOAD, ``pop_prev`` on a GEMM/ALU): "the tile you need is in the buffer";
* compute -> load (``push_prev`` on a GEMM/ALU, ``pop_next`` on a LOAD): "that buffer slot is free again";
* compute -> store (``push_next`` on a GEMM/ALU, ``pop_prev`` on a STORE): "the output tile is ready";
* store -> compute (``push_prev`` on a STORE, ``pop_next`` on a GEMM/ALU): "that accumulator slot is free again".

Tokens are untagged: an instruction that pops waits for the oldest unconsumed token of that FIFO.

Addresses count *entries*, the unit each buffer is organised in (see :meth:`HardwareConfig.entry_bits`):
an ``inp`` entry is BATCH x BLOCK_IN' activation codes, a ``wgt`` entry a BLOCK_OUT x BLOCK_IN' weight matrix, an
``acc`` entry BATCH x BLOCK_OUT int32 accumulators, a ``uop`` entry one micro-op. BLOCK_IN' is BLOCK_IN times the
lanes of the precision mode, so an entry holds more operands at lower precision.

GEMM and ALU loop over micro-ops (``uop_begin .. uop_end``) and a two-level loop (``extent_outer`` x
``extent_inner``). For micro-op ``u = (dst, src, wgt)`` and loop indices ``(i, j)`` the addresses are
``base + u.field + i * factor[0] + j * factor[1]``. ``dataflow`` gives the loop order of a GEMM and so which operand
the core keeps in its registers: ``"weight"`` runs the micro-op loop outermost (the weight matrix is read once per
micro-op and reused over the (i, j) loop; the accumulator is read and written every step), ``"output"`` runs it
innermost (the accumulator entry stays in a register while consecutive micro-ops with the same ``dst`` accumulate
into it; weights and inputs are read every step).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Union

import numpy as np

from ..errors import Error
from .hardware import ALU_OPS, BUFFERS

#: DRAM region kinds: which buffer a region is loaded into (or stored from, for "out").
REGION_KINDS = ("inp", "wgt", "acc", "uop", "out")
DATAFLOWS = ("weight", "output")


class ProgramError(Error):
    """An instruction or program is malformed, or a program misbehaves when simulated (deadlock, overflow)."""


@dataclass(frozen=True)
class Deps:
    """Dependency flags of one instruction (see the module docstring)."""

    pop_prev: bool = False
    pop_next: bool = False
    push_prev: bool = False
    push_next: bool = False

    def merged(self, other: "Deps") -> "Deps":
        return Deps(self.pop_prev or other.pop_prev, self.pop_next or other.pop_next,
                    self.push_prev or other.push_prev, self.push_next or other.push_next)

    def __str__(self) -> str:
        flags = [n for n in ("pop_prev", "pop_next", "push_prev", "push_next") if getattr(self, n)]
        return ",".join(flags) if flags else "-"


NO_DEPS = Deps()


def _check_ints(obj, names, minimum=0) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ProgramError(f"{type(obj).__name__}.{name}={value!r}: must be an integer >= {minimum}")


@dataclass(frozen=True)
class Load:
    """2-D DMA from a DRAM region into a buffer, with a border of ``pad_value`` entries.

    Copies ``rows x cols`` entries starting at ``dram_base`` (consecutive rows ``dram_row_stride`` entries apart) to
    SRAM rows ``sram_row_pitch`` entries apart, surrounded by ``pad_top/bottom`` rows and ``pad_left/right`` columns
    filled with ``pad_value``. A LOAD of zero rows moves nothing and only passes tokens (a sync, as VTA does).
    """

    buffer: str
    region: str
    dram_base: int
    dram_row_stride: int
    sram_base: int
    sram_row_pitch: int
    rows: int
    cols: int
    pad_top: int = 0
    pad_bottom: int = 0
    pad_left: int = 0
    pad_right: int = 0
    pad_value: int = 0
    deps: Deps = NO_DEPS

    def __post_init__(self) -> None:
        if self.buffer not in BUFFERS:
            raise ProgramError(f"LOAD into unknown buffer {self.buffer!r}: use one of {', '.join(BUFFERS)}")
        _check_ints(self, ("dram_base", "dram_row_stride", "sram_base", "sram_row_pitch", "rows", "cols", "pad_top",
                           "pad_bottom", "pad_left", "pad_right"))
        if self.sram_entries and self.sram_row_pitch < self.pad_left + self.cols + self.pad_right:
            raise ProgramError("LOAD sram_row_pitch is narrower than one padded row")

    @property
    def unit(self) -> str:
        return "load"

    @property
    def dram_entries(self) -> int:
        return self.rows * self.cols

    @property
    def sram_entries(self) -> int:
        """Entries written to the buffer (the copied block and its padding)."""
        return (self.pad_top + self.rows + self.pad_bottom) * (self.pad_left + self.cols + self.pad_right)


class _MicroOpLoop:
    """Compute instructions run micro-ops ``[uop_begin, uop_end)`` over a two-level loop on the compute unit."""

    @property
    def unit(self) -> str:
        return "compute"

    @property
    def uops(self) -> int:
        return self.uop_end - self.uop_begin

    @property
    def steps(self) -> int:
        return self.uops * self.extent_outer * self.extent_inner


@dataclass(frozen=True)
class Gemm(_MicroOpLoop):
    """``acc[dst] += inp[src] . wgt[wgt]^T`` over micro-ops and a two-level loop; ``reset`` writes zeros to ``dst``
    instead (no input or weight read)."""

    uop_begin: int
    uop_end: int
    extent_outer: int
    extent_inner: int
    dst_base: int
    src_base: int
    wgt_base: int
    dst_factor: tuple[int, int]
    src_factor: tuple[int, int] = (0, 0)
    wgt_factor: tuple[int, int] = (0, 0)
    reset: bool = False
    dataflow: str = "weight"
    deps: Deps = NO_DEPS

    def __post_init__(self) -> None:
        _check_ints(self, ("uop_begin", "uop_end", "extent_outer", "extent_inner", "dst_base", "src_base", "wgt_base"))
        if self.uop_end <= self.uop_begin:
            raise ProgramError("GEMM needs at least one micro-op (uop_end > uop_begin)")
        if self.dataflow not in DATAFLOWS:
            raise ProgramError(f"GEMM dataflow {self.dataflow!r}: use one of {', '.join(DATAFLOWS)}")


@dataclass(frozen=True)
class Alu(_MicroOpLoop):
    """Vector ALU on accumulator entries, 32-bit lanes, over micro-ops and a two-level loop.

    ``add``: ``dst += src`` (wrapping int32). ``add_imm``: ``dst += imm``; ``max_imm`` / ``min_imm``: ``dst =
    max/min(dst, imm)``. ``mul_shift``: ``dst = (dst * src + 2**(s-1)) >> s`` with ``s`` the entry after ``src``,
    in 64-bit, the fixed-point requantization of :func:`tvm_mp.quantize.scheme.requantize`. ``add_imm`` and
    ``mul_shift`` saturate to int32 (so a later clamp to code range gives what 64-bit arithmetic gives).
    A micro-op's ``wgt`` field is unused.
    """

    op: str
    uop_begin: int
    uop_end: int
    extent_outer: int
    extent_inner: int
    dst_base: int
    dst_factor: tuple[int, int]
    src_base: int = 0
    src_factor: tuple[int, int] = (0, 0)
    imm: int = 0
    deps: Deps = NO_DEPS

    def __post_init__(self) -> None:
        if self.op not in ALU_OPS:
            raise ProgramError(f"unknown ALU op {self.op!r}: use one of {', '.join(ALU_OPS)}")
        _check_ints(self, ("uop_begin", "uop_end", "extent_outer", "extent_inner", "dst_base", "src_base"))
        if self.uop_end <= self.uop_begin:
            raise ProgramError("ALU needs at least one micro-op (uop_end > uop_begin)")

    @property
    def reads_src(self) -> int:
        """Source entries one micro-op reads (the shift of ``mul_shift`` is a second entry)."""
        return {"add": 1, "mul_shift": 2}.get(self.op, 0)


@dataclass(frozen=True)
class Store:
    """2-D DMA of ``rows x cols`` accumulator entries to a DRAM ``out`` region, narrowed to the region's bits."""

    region: str
    sram_base: int
    sram_row_pitch: int
    rows: int
    cols: int
    dram_base: int
    dram_row_stride: int
    deps: Deps = NO_DEPS

    def __post_init__(self) -> None:
        _check_ints(self, ("sram_base", "sram_row_pitch", "rows", "cols", "dram_base", "dram_row_stride"))

    @property
    def unit(self) -> str:
        return "store"

    @property
    def entries(self) -> int:
        return self.rows * self.cols


@dataclass(frozen=True)
class Forward:
    """On-chip STORE (layer chaining): ``rows x cols`` accumulator entries, narrowed to ``bits``-bit codes, written
    into the *next* layer's input buffer image instead of DRAM.

    The next layer runs at its own precision, so its ``inp`` entries hold ``lanes`` codes per batch row: the
    BLOCK_OUT codes of one accumulator entry go to lanes ``[lane0, lane0 + BLOCK_OUT)`` of the entry at
    ``dst_base + r * dst_row_pitch + c`` (entries of the next layer's buffer). Runs on the store module, one entry
    per cycle; no DRAM traffic.
    """

    sram_base: int
    sram_row_pitch: int
    rows: int
    cols: int
    dst_base: int
    dst_row_pitch: int
    lane0: int
    lanes: int
    bits: int
    deps: Deps = NO_DEPS

    def __post_init__(self) -> None:
        _check_ints(self, ("sram_base", "sram_row_pitch", "rows", "cols", "dst_base", "dst_row_pitch", "lane0"))
        _check_ints(self, ("lanes", "bits"), minimum=1)
        if self.bits not in (1, 2, 4, 8):
            raise ProgramError(f"FORWARD of {self.bits}-bit codes: use a container width (1, 2, 4, 8)")

    @property
    def unit(self) -> str:
        return "store"

    @property
    def entries(self) -> int:
        return self.rows * self.cols


@dataclass(frozen=True)
class Fill:
    """Write ``value`` into ``count`` blocks (``block_stride`` entries apart) of ``rows x cols`` ``inp`` entries
    (rows ``row_pitch`` apart): the padding border of an input image another layer forwarded on chip. Runs on the
    load module, one entry per cycle; no DRAM traffic."""

    base: int
    row_pitch: int
    rows: int
    cols: int
    count: int
    block_stride: int
    value: int = 0
    deps: Deps = NO_DEPS

    def __post_init__(self) -> None:
        _check_ints(self, ("base", "row_pitch", "rows", "cols", "count", "block_stride", "value"))

    @property
    def unit(self) -> str:
        return "load"

    @property
    def entries(self) -> int:
        return self.rows * self.cols * self.count


Instruction = Union[Load, Gemm, Alu, Store, Forward, Fill]


@dataclass(frozen=True)
class Region:
    """A named DRAM array: ``entries`` entries of the given ``kind``; ``bits`` is the width of one element (the
    container of codes / weights, 32 for accumulators, the output width for ``out``)."""

    kind: str
    entries: int
    bits: int

    def __post_init__(self) -> None:
        if self.kind not in REGION_KINDS:
            raise ProgramError(f"unknown region kind {self.kind!r}: use one of {', '.join(REGION_KINDS)}")
        _check_ints(self, ("entries", "bits"), minimum=1)


@dataclass(frozen=True)
class Program:
    """An instruction stream for one layer at one precision, and the DRAM regions it reads and writes."""

    instructions: tuple[Instruction, ...]
    w_bits: int
    a_bits: int
    regions: Mapping[str, Region] = field(default_factory=dict)

    def count(self) -> dict[str, int]:
        """Instructions per kind."""
        out: dict[str, int] = {}
        for ins in self.instructions:
            key = type(ins).__name__.upper()
            out[key] = out.get(key, 0) + 1
        return out

    def listing(self, limit: int = 50) -> str:
        """A readable listing of the first ``limit`` instructions."""
        lines = []
        for k, ins in enumerate(self.instructions[:limit]):
            lines.append(f"{k:>5} {_short(ins)}")
        if len(self.instructions) > limit:
            lines.append(f"... {len(self.instructions) - limit} more")
        return "\n".join(lines)


def _short(ins: Instruction) -> str:
    if isinstance(ins, Load):
        return (f"LOAD  {ins.buffer}<-{ins.region}[{ins.dram_base}] {ins.rows}x{ins.cols} "
                f"pad=({ins.pad_top},{ins.pad_bottom},{ins.pad_left},{ins.pad_right}) sram={ins.sram_base} "
                f"[{ins.deps}]")
    if isinstance(ins, Gemm):
        what = "RESET" if ins.reset else f"GEMM/{ins.dataflow}"
        return (f"{what:<5} uops={ins.uop_begin}:{ins.uop_end} loop={ins.extent_outer}x{ins.extent_inner} "
                f"dst={ins.dst_base} src={ins.src_base} wgt={ins.wgt_base} [{ins.deps}]")
    if isinstance(ins, Alu):
        return (f"ALU   {ins.op} uops={ins.uop_begin}:{ins.uop_end} loop={ins.extent_outer}x{ins.extent_inner} "
                f"dst={ins.dst_base} src={ins.src_base} imm={ins.imm} [{ins.deps}]")
    if isinstance(ins, Forward):
        return (f"FWD   next.inp[{ins.dst_base}] lane{ins.lane0}/{ins.lanes} <- "
                f"acc[{ins.sram_base}] {ins.rows}x{ins.cols} u{ins.bits} [{ins.deps}]")
    if isinstance(ins, Fill):
        return (f"FILL  inp[{ins.base}] {ins.count}x{ins.rows}x{ins.cols} = {ins.value} [{ins.deps}]")
    return (f"STORE {ins.region}[{ins.dram_base}] <- acc[{ins.sram_base}] {ins.rows}x{ins.cols} [{ins.deps}]")
