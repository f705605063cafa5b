"""Lower one conv2d / depthwise conv2d / dense layer to an accelerator instruction stream.

The layer is seen as a (grouped) convolution; a dense layer is a 1x1 convolution of a 1x1 image. The schedule:

1. **Channel blocking.** Channels are cut into blocks of BLOCK_IN' inputs (the GEMM's reduction width at this
   precision) and BLOCK_OUT outputs. Grouped and depthwise convolutions are handled in *super-groups*: the smallest
   number of consecutive groups whose channels fill whole blocks (16 channels of a depthwise conv at 8 bits, 32 at
   4 bits). Within a super-group the weight is block-diagonal, so one GEMM step computes BLOCK_OUT channels at once
   (the off-diagonal zeros are multiplied too: the datapath has no sparsity support).
2. **Tiling** (a :class:`LayerMapping`): an output tile is ``th x tw`` pixels by ``toc`` output-channel blocks; the
   reduction is split into input tiles of ``tic`` input-channel blocks. The loops run over super-groups, then
   output-channel tiles and spatial tiles in the mapping's ``order``, then input-channel tiles (innermost, so the
   accumulator tile stays on chip until its reduction ends).
3. **Tensorization.** The inner block -- an output tile's reduction over one input tile -- is one GEMM
   instruction: micro-ops enumerate (output block, input block, kernel tap) and the two-level loop walks the tile's
   rows and columns. Input tiles hold the spatial window with its halo and padding (filled with the zero point), so
   every tap reads the same buffer at a different offset.
4. **Residency and double buffering.** A tile is loaded only when it differs from the one already in its buffer
   (weights stay resident across spatial tiles when the whole reduction fits one input tile, inputs across
   output-channel tiles); with ``double_buffer`` each buffer has two slots so loads and stores overlap compute.
5. **Epilogue** on the ALU: add the bias correction (int32), and for code output the fixed-point requantization
   (``mul_shift``), zero point and clamp, then STORE narrows to the output width.

DRAM layouts (entries): input ``[batch block][super-group][input block][H][W]``, weights
``[super-group][output block][input block][KH*KW]``, output ``[batch block][super-group][output block][OH][OW]``.

**On-chip chaining** (:mod:`tvm_mp.accel.chain` decides where): a layer with an :class:`OnChipOutput` replaces its
STOREs by FORWARDs that write each output tile straight into the next layer's input image in the ``inp`` buffer,
in the next layer's entry format (its lanes and code width; an output block of BLOCK_OUT channels fills lanes
``[k * BLOCK_OUT, (k + 1) * BLOCK_OUT)`` of an input block). A layer with an :class:`OnChipInput` loads no input:
its whole (padded) input image is resident -- per batch block, super-group and input block an ``in_th x in_pitch``
image, the window the whole output needs -- and its GEMMs address each spatial tile's window inside it; it FILLs
the image's padding border with its zero point first (counted: one entry per cycle, the SRAM writes).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from ..errors import Error
from ..layers import LayerInfo
from ..quantize.packing import container_bits
from ..workload import ConvParams
from .hardware import HardwareConfig
from .isa import DATAFLOWS, Alu, Deps, Fill, Forward, Gemm, Load, Program, Region, Store

ORDERS = ("oc_sp", "sp_oc")


class MappingError(Error):
    """A mapping does not fit the hardware (buffer too small) or the layer (tile larger than the layer)."""


@dataclass(frozen=True)
class ConvShape:
    """A layer as a grouped NCHW/OIHW convolution (dense: ``h = w = kh = kw = 1``)."""

    n: int
    c: int
    h: int
    w: int
    oc: int
    kh: int
    kw: int
    params: ConvParams = ConvParams()

    def __post_init__(self) -> None:
        for name in ("n", "c", "h", "w", "oc", "kh", "kw"):
            if int(getattr(self, name)) < 1:
                raise MappingError(f"ConvShape.{name} must be >= 1, got {getattr(self, name)}")
        g = self.params.groups
        if self.c % g or self.oc % g:
            raise MappingError(f"groups={g} must divide the {self.c} input and {self.oc} output channels")
        if self.oh < 1 or self.ow < 1:
            raise MappingError("the kernel is larger than the padded input")

    @classmethod
    def from_layer(cls, info: LayerInfo) -> "ConvShape":
        if info.op == "dense":
            n, k = info.input_shape
            return cls(n, k, 1, 1, info.weight_shape[0], 1, 1)
        n, c, h, w = info.input_shape
        oc, _, kh, kw = info.weight_shape
        return cls(n, c, h, w, oc, kh, kw, info.params)

    @property
    def groups(self) -> int:
        return self.params.groups

    @property
    def cg(self) -> int:
        return self.c // self.groups

    @property
    def kg(self) -> int:
        return self.oc // self.groups

    @property
    def taps(self) -> int:
        return self.kh * self.kw

    @cached_property
    def out_hw(self) -> tuple[int, int]:
        return self.params.output_hw(self.h, self.w, self.kh, self.kw)

    @property
    def oh(self) -> int:
        return self.out_hw[0]

    @property
    def ow(self) -> int:
        return self.out_hw[1]

    @property
    def macs(self) -> int:
        return self.n * self.oc * self.oh * self.ow * self.cg * self.taps


@dataclass(frozen=True)
class LayerMapping:
    """How a layer is tiled onto the accelerator (see the module docstring).

    th, tw: output rows / columns per tile; toc: output-channel blocks per tile; tic: input-channel blocks per
    input tile; order: ``"oc_sp"`` (output-channel tiles outer: weights stay resident across spatial tiles) or
    ``"sp_oc"`` (spatial tiles outer: inputs stay resident across output-channel tiles); dataflow: the GEMM's
    register reuse, ``"weight"`` or ``"output"`` stationary; double_buffer: two slots per buffer (overlap) or one.
    """

    th: int
    tw: int
    toc: int
    tic: int
    order: str = "oc_sp"
    dataflow: str = "weight"
    double_buffer: bool = True

    def __post_init__(self) -> None:
        for name in ("th", "tw", "toc", "tic"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise MappingError(f"LayerMapping.{name}={value!r}: tile sizes are integers >= 1")
            object.__setattr__(self, name, int(value))
        if self.order not in ORDERS:
            raise MappingError(f"LayerMapping.order={self.order!r}: use one of {', '.join(ORDERS)}")
        if self.dataflow not in DATAFLOWS:
            raise MappingError(f"LayerMapping.dataflow={self.dataflow!r}: use one of {', '.join(DATAFLOWS)}")

    def __str__(self) -> str:
        return (f"{self.th}x{self.tw}px/{self.toc}oc/{self.tic}ic {self.order} {self.dataflow}-stat"
                f"{'' if self.double_buffer else ' single-buf'}")

    def to_dict(self) -> dict:
        return {"th": self.th, "tw": self.tw, "toc": self.toc, "tic": self.tic, "order": self.order,
                "dataflow": self.dataflow, "double_buffer": self.double_buffer}


@dataclass(frozen=True)
class OutputSpec:
    """What a layer stores: ``"acc"`` -- int32 accumulators with the bias correction added (the host dequantizes),
    or ``"codes"`` -- requantized codes of ``bits`` bits with ``zero_point`` clamped to ``[lo, hi]``."""

    kind: str = "acc"
    bits: int = 32
    zero_point: int = 0
    lo: int = 0
    hi: int = 255

    def __post_init__(self) -> None:
        if self.kind == "acc":
            if self.bits != 32:
                raise MappingError("accumulator output is 32 bits wide")
        elif self.kind == "codes":
            if self.bits not in (1, 2, 4, 8):
                raise MappingError(f"code output bits must be a container width (1, 2, 4, 8), got {self.bits}")
            qmax = (1 << self.bits) - 1
            if not (0 <= self.lo <= self.hi <= qmax) or not (0 <= self.zero_point <= qmax):
                raise MappingError(f"code output needs 0 <= lo <= hi <= {qmax} and a zero point in range")
        else:
            raise MappingError(f"OutputSpec.kind={self.kind!r}: use 'acc' or 'codes'")

    @classmethod
    def codes(cls, a_bits: int, zero_point: int = 0, lo: int = 0, hi: int | None = None) -> "OutputSpec":
        """Codes for a consumer with ``a_bits``-bit activations (stored in their container width)."""
        bits = container_bits(a_bits)
        return cls("codes", bits, zero_point, lo, (1 << a_bits) - 1 if hi is None else hi)

    @property
    def params_per_block(self) -> int:
        """Accumulator entries of per-channel parameters per output block: bias (+ multiplier, shift)."""
        return 1 if self.kind == "acc" else 3

    @property
    def alu_ops(self) -> tuple[str, ...]:
        return ("add",) if self.kind == "acc" else ("add", "mul_shift", "add_imm", "max_imm", "min_imm")


@dataclass(frozen=True)
class OnChipInput:
    """The layer's whole input is resident in the ``inp`` buffer from entry ``base`` (at the layer's precision),
    forwarded there by the previous layer (see the module docstring)."""

    base: int

    def __post_init__(self) -> None:
        if isinstance(self.base, bool) or not isinstance(self.base, (int, np.integer)) or self.base < 0:
            raise MappingError(f"OnChipInput.base={self.base!r}: an entry index >= 0")


@dataclass(frozen=True)
class OnChipOutput:
    """Where the layer FORWARDs its output: the next layer's resident input image (:meth:`to` builds it from the
    next layer's plan). ``base``: its first entry; ``lanes`` / ``bits``: the next layer's ``inp`` entry (lanes per
    batch row, code width); ``rows x pitch``: one image; ``pad_top`` / ``pad_left``: where output pixel (0, 0)
    lands; ``blocks``: images per batch block (super-groups x input blocks)."""

    base: int
    lanes: int
    bits: int
    rows: int
    pitch: int
    pad_top: int
    pad_left: int
    blocks: int

    @classmethod
    def to(cls, nxt: "LayerPlan") -> "OnChipOutput":
        if nxt.onchip_in is None:
            raise MappingError("the next layer's plan has no on-chip input")
        p = nxt.shape.params.padding
        return cls(nxt.onchip_in.base, nxt.bi, container_bits(nxt.a_bits), nxt.in_th, nxt.in_pitch, p[0], p[1],
                   nxt.nsg * nxt.icb_max)

    def image_entries(self, nb: int) -> int:
        return nb * self.blocks * self.rows * self.pitch


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def tile_sizes(total: int, tile: int) -> list[int]:
    """Sizes of the tiles that cut ``total`` into pieces of ``tile`` (the last may be smaller)."""
    full, rem = divmod(total, tile)
    return [tile] * full + ([rem] if rem else [])


def super_group_size(shape: ConvShape, bi: int, bo: int) -> int:
    """Groups per super-group: the fewest whose channels fill whole input and output blocks (at most all groups)."""
    for s in range(1, shape.groups + 1):
        if (s * shape.cg) % bi == 0 and (s * shape.kg) % bo == 0:
            return s
    return shape.groups


@dataclass(frozen=True)
class Step:
    """One compute step: super-group, output-channel tile, spatial tile and input-channel tile indices."""

    sg: int
    oc: int
    b: int
    h: int
    w: int
    ic: int


class LayerPlan:
    """The geometry of one layer under one mapping: blocks, tiles, buffer slots, DRAM layouts. Checks that the
    mapping fits the hardware; raises :class:`MappingError` with the fix otherwise."""

    def __init__(self, shape: ConvShape, w_bits: int, a_bits: int, hw: HardwareConfig, mapping: LayerMapping,
                 output: OutputSpec = OutputSpec(), zero_point: int = 0, check: bool = True,
                 onchip_in: OnChipInput | None = None, onchip_out: OnChipOutput | None = None):
        hw.check_precision(w_bits, a_bits)
        self.shape, self.hw, self.mapping, self.output = shape, hw, mapping, output
        self.zero_point = int(zero_point)  # input code of real 0: fills spatial padding
        self.w_bits, self.a_bits = w_bits, a_bits
        self.batch, self.bi, self.bo = hw.batch, hw.block_in_at(w_bits, a_bits), hw.block_out
        s = shape
        self.sg = super_group_size(s, self.bi, self.bo)
        self.sg_groups = tile_sizes(s.groups, self.sg)  # groups in each super-group
        self.nsg = len(self.sg_groups)
        self.icb = [_ceil(g * s.cg, self.bi) for g in self.sg_groups]  # input blocks per super-group
        self.ocb = [_ceil(g * s.kg, self.bo) for g in self.sg_groups]
        self.icb_max, self.ocb_max = max(self.icb), max(self.ocb)
        self.nb = _ceil(s.n, self.batch)
        m = mapping
        if m.th > s.oh or m.tw > s.ow or m.toc > self.ocb_max or m.tic > self.icb_max:
            raise MappingError(
                f"tile {m.th}x{m.tw}px/{m.toc}oc/{m.tic}ic is larger than the layer ({s.oh}x{s.ow}px, "
                f"{self.ocb_max} output and {self.icb_max} input blocks at w{w_bits}a{a_bits}): shrink it")
        sh, sw = s.params.strides
        dh, dw = s.params.dilation
        self.onchip_in, self.onchip_out = onchip_in, onchip_out
        if onchip_out is not None and output.kind != "codes":
            raise MappingError("only code outputs (an integer edge) are forwarded on chip")
        th, tw = (s.oh, s.ow) if onchip_in is not None else (m.th, m.tw)  # resident: the whole window
        self.in_th = (th - 1) * sh + (s.kh - 1) * dh + 1
        self.in_pitch = (tw - 1) * sw + (s.kw - 1) * dw + 1
        self.nbuf = 2 if m.double_buffer else 1
        self.inp_slot = m.tic * self.in_th * self.in_pitch
        if onchip_in is not None:
            self.inp_slot = self.icb_max * self.in_th * self.in_pitch  # one resident image per super-group
        self.wgt_slot = m.toc * m.tic * s.taps
        self.acc_slot = m.toc * m.th * m.tw
        self.param_entries = self.nsg * self.ocb_max * output.params_per_block
        self.param_base = self.nbuf * self.acc_slot
        self.uop_lists = self._uop_lists()
        self.uop_total = sum(len(u) for u in self.uop_lists.values())
        if check:
            self.check_capacity()

    # -- capacity ------------------------------------------------------------------------------------------------
    def needs(self) -> dict[str, int]:
        """Entries each buffer must hold."""
        inp = self.nbuf * self.inp_slot if self.onchip_in is None else self.onchip_in.base + self.resident_entries
        return {"inp": inp, "wgt": self.nbuf * self.wgt_slot,
                "acc": self.param_base + self.param_entries, "uop": self.uop_total}

    @property
    def resident_entries(self) -> int:
        """``inp`` entries of the whole padded input image (what an on-chip input occupies)."""
        return self.nb * self.nsg * self.icb_max * self.in_th * self.in_pitch

    def fills(self) -> list[Fill]:
        """The FILLs of the padding border of the resident input image (empty without an on-chip input)."""
        if self.onchip_in is None:
            return []
        s, (pt, pl) = self.shape, self.shape.params.padding[:2]
        rows, pitch = self.in_th, self.in_pitch
        vh, vw = max(0, min(s.h, rows - pt)), max(0, min(s.w, pitch - pl))
        top, left = min(pt, rows), min(pl, pitch)
        count, stride, base = self.nb * self.nsg * self.icb_max, rows * pitch, self.onchip_in.base
        strips = [(base, top, pitch), (base + (top + vh) * pitch, rows - top - vh, pitch),
                  (base + top * pitch, vh, left), (base + top * pitch + left + vw, vh, pitch - left - vw)]
        return [Fill(b, pitch, r, c, count, stride, self.zero_point) for b, r, c in strips if r > 0 and c > 0]

    def forward_target(self, b: int, block: int, oy: int, ox: int, rows: int, cols: int):
        """``(dst_base, lane0, rows, cols)`` of the FORWARD of output block ``block`` (global: super-group x
        output blocks) of batch block ``b``, pixels from ``(oy, ox)``, clipped to the next layer's image."""
        o = self.onchip_out
        ch = block * self.bo
        img = b * o.blocks + ch // o.lanes
        rows = max(0, min(rows, o.rows - o.pad_top - oy))
        cols = max(0, min(cols, o.pitch - o.pad_left - ox))
        dst = o.base + img * o.rows * o.pitch + (o.pad_top + oy) * o.pitch + o.pad_left + ox
        return dst, ch % o.lanes, rows, cols

    def over_capacity(self) -> list[str]:
        """Buffers this mapping overflows."""
        return [b for b, e in self.needs().items() if e > self.hw.capacity_entries(b, self.w_bits, self.a_bits)]

    def check_capacity(self) -> None:
        hw, w, a = self.hw, self.w_bits, self.a_bits
        for buf, entries in self.needs().items():
            cap = hw.capacity_entries(buf, w, a)
            if entries > cap:
                bits = hw.entry_bits(buf, w, a)
                hint = {"inp": "fewer rows/columns (th, tw) or input blocks (tic)",
                        "wgt": "fewer output (toc) or input (tic) blocks",
                        "acc": "a smaller output tile (th, tw, toc)",
                        "uop": "fewer blocks per tile (toc, tic)"}[buf]
                raise MappingError(
                    f"mapping {self.mapping} needs {entries} {buf} entries ({entries * bits // 8} bytes at "
                    f"w{w}a{a}) but the {buf} buffer holds {cap} ({hw.buffers[buf].size_bytes} bytes): use {hint}"
                    f"{' or single buffering' if self.nbuf == 2 and buf != 'uop' else ''}")

    # -- tiles ---------------------------------------------------------------------------------------------------
    def oc_tiles(self, sg: int) -> list[int]:
        return tile_sizes(self.ocb[sg], self.mapping.toc)

    def ic_tiles(self, sg: int) -> list[int]:
        return tile_sizes(self.icb[sg], self.mapping.tic)

    @cached_property
    def h_tiles(self) -> list[int]:
        return tile_sizes(self.shape.oh, self.mapping.th)

    @cached_property
    def w_tiles(self) -> list[int]:
        return tile_sizes(self.shape.ow, self.mapping.tw)

    def window(self, axis: int, tile: int) -> tuple[int, int, int, int]:
        """``(start, pad_before, valid, pad_after)`` of the input rows (axis 0) or columns (axis 1) a spatial tile
        needs: ``start`` is the first valid input index."""
        s = self.shape
        size = s.h if axis == 0 else s.w
        t = self.mapping.th if axis == 0 else self.mapping.tw
        out = (self.h_tiles if axis == 0 else self.w_tiles)[tile]
        stride = s.params.strides[axis]
        dil = s.params.dilation[axis]
        k = s.kh if axis == 0 else s.kw
        pad0 = s.params.padding[0] if axis == 0 else s.params.padding[1]
        first = tile * t * stride - pad0
        needed = (out - 1) * stride + (k - 1) * dil + 1
        lo, hi = max(first, 0), min(first + needed, size)
        valid = max(hi - lo, 0)
        before = min(lo - first, needed) if valid else needed
        return (lo if valid else 0), before, valid, needed - before - valid

    def steps(self):
        """Compute steps in program order."""
        spatial = list(itertools.product(range(self.nb), range(len(self.h_tiles)), range(len(self.w_tiles))))
        for sg in range(self.nsg):
            ocs, ics = range(len(self.oc_tiles(sg))), range(len(self.ic_tiles(sg)))
            outer = itertools.product(ocs, spatial) if self.mapping.order == "oc_sp" else \
                ((oc, sp) for sp, oc in itertools.product(spatial, ocs))
            for oc, (b, h, w) in outer:
                for ic in ics:
                    yield Step(sg, oc, b, h, w, ic)

    # -- micro-ops -----------------------------------------------------------------------------------------------
    def _variants(self) -> tuple[set, set]:
        gemm, toc = set(), set()
        for sg in range(self.nsg):
            for o in set(self.oc_tiles(sg)):
                toc.add(o)
                for i in set(self.ic_tiles(sg)):
                    gemm.add((o, i))
        return gemm, toc

    def _uop_lists(self) -> dict:
        s, m = self.shape, self.mapping
        dh, dw = s.params.dilation
        acc_blk = m.th * m.tw
        inp_blk = self.in_th * self.in_pitch
        gemm, tocs = self._variants()
        lists = {}
        for o, i in sorted(gemm):
            lists[("gemm", o, i)] = np.array(
                [(ob * acc_blk, ib * inp_blk + ky * dh * self.in_pitch + kx * dw,
                  (ob * i + ib) * s.taps + ky * s.kw + kx)
                 for ob in range(o) for ib in range(i) for ky in range(s.kh) for kx in range(s.kw)], dtype=np.int64)
        for o in sorted(tocs):
            lists[("reset", o)] = np.array([(ob * acc_blk, 0, 0) for ob in range(o)], dtype=np.int64)
            lists[("alu", o)] = np.array([(ob * acc_blk, ob * self.output.params_per_block, 0) for ob in range(o)],
                                         dtype=np.int64)
        return lists

    @cached_property
    def uop_offsets(self) -> dict:
        out, pos = {}, 0
        for key, arr in self.uop_lists.items():
            out[key] = (pos, pos + len(arr))
            pos += len(arr)
        return out

    def uop_table(self) -> np.ndarray:
        return np.concatenate(list(self.uop_lists.values()), axis=0)

    # -- regions -------------------------------------------------------------------------------------------------
    def regions(self) -> dict[str, Region]:
        s = self.shape
        return {
            "inp": Region("inp", self.nb * self.nsg * self.icb_max * s.h * s.w, container_bits(self.a_bits)),
            "wgt": Region("wgt", self.nsg * self.ocb_max * self.icb_max * s.taps, container_bits(self.w_bits)),
            "params": Region("acc", self.param_entries, 32),
            "uops": Region("uop", self.uop_total, 32),
            "out": Region("out", self.nb * self.nsg * self.ocb_max * s.oh * s.ow, self.output.bits),
        }


def lower(plan: LayerPlan) -> Program:
    """The instruction stream of ``plan`` (see the module docstring)."""
    s, m, out = plan.shape, plan.mapping, plan.output
    steps = list(plan.steps())
    dist = plan.nbuf
    acc_blk = m.th * m.tw
    h_off = np.cumsum([0] + plan.h_tiles)
    w_off = np.cumsum([0] + plan.w_tiles)
    sh, sw = s.params.strides
    pp = out.params_per_block
    loads: list[list] = []
    computes: list[list] = []
    stores: list[list] = []  # per output tile
    prev_inp = prev_wgt = None
    g_inp = g_wgt = -1
    n_out = 0
    for k, st in enumerate(steps):
        oc_sizes, ic_sizes = plan.oc_tiles(st.sg), plan.ic_tiles(st.sg)
        toc_a, tic_a = oc_sizes[st.oc], ic_sizes[st.ic]
        ocb0, icb0 = st.oc * m.toc, st.ic * m.tic
        th_a, tw_a = plan.h_tiles[st.h], plan.w_tiles[st.w]
        step_loads = []
        if k == 0:
            step_loads.append(Load("uop", "uops", 0, plan.uop_total, 0, plan.uop_total, 1, plan.uop_total))
            step_loads.append(Load("acc", "params", 0, plan.param_entries, plan.param_base, plan.param_entries, 1,
                                   plan.param_entries))
            step_loads.extend(plan.fills())
        inp_id = (st.sg, st.b, st.h, st.w, st.ic)
        if plan.onchip_in is not None:  # resident: address the tile's window inside the image, load nothing
            img = ((st.b * plan.nsg + st.sg) * plan.icb_max + icb0) * plan.in_th * plan.in_pitch
            inp_base = (plan.onchip_in.base + img + int(h_off[st.h]) * sh * plan.in_pitch
                        + int(w_off[st.w]) * sw)
        elif inp_id != prev_inp:
            g_inp += 1
            base = (g_inp % dist) * plan.inp_slot
            y0, pt, vy, pb = plan.window(0, st.h)
            x0, pl, vx, pr = plan.window(1, st.w)
            for ib in range(tic_a):
                blk = ((st.b * plan.nsg + st.sg) * plan.icb_max + icb0 + ib) * s.h * s.w
                step_loads.append(Load("inp", "inp", blk + y0 * s.w + x0, s.w, base + ib * plan.in_th * plan.in_pitch,
                                       plan.in_pitch, vy if vx else 0, vx if vy else 0,
                                       pt if vx else pt + vy, pb, pl, pr if vy else pr + vx, plan.zero_point))
            prev_inp = inp_id
        if plan.onchip_in is None:
            inp_base = (g_inp % dist) * plan.inp_slot
        wgt_id = (st.sg, st.oc, st.ic)
        if wgt_id != prev_wgt:
            g_wgt += 1
            base = (g_wgt % dist) * plan.wgt_slot
            dram = ((st.sg * plan.ocb_max + ocb0) * plan.icb_max + icb0) * s.taps
            step_loads.append(Load("wgt", "wgt", dram, plan.icb_max * s.taps, base, tic_a * s.taps, toc_a,
                                   tic_a * s.taps))
            prev_wgt = wgt_id
        wgt_base = (g_wgt % dist) * plan.wgt_slot
        if not step_loads:
            step_loads.append(Load("inp", "inp", 0, 0, 0, 0, 0, 0))  # sync: passes tokens only
        loads.append(step_loads)

        first_ic, last_ic = st.ic == 0, st.ic == len(ic_sizes) - 1
        acc_base = (n_out % dist) * plan.acc_slot
        step_compute = []
        if first_ic:
            u0, u1 = plan.uop_offsets[("reset", toc_a)]
            step_compute.append(Gemm(u0, u1, th_a, tw_a, acc_base, 0, 0, (m.tw, 1), reset=True))
        u0, u1 = plan.uop_offsets[("gemm", toc_a, tic_a)]
        step_compute.append(Gemm(u0, u1, th_a, tw_a, acc_base, inp_base, wgt_base, (m.tw, 1),
                                 (sh * plan.in_pitch, sw), (0, 0), dataflow=m.dataflow))
        if last_ic:
            u0, u1 = plan.uop_offsets[("alu", toc_a)]
            src = plan.param_base + (st.sg * plan.ocb_max + ocb0) * pp
            for op in out.alu_ops:
                imm = {"add_imm": out.zero_point, "max_imm": out.lo, "min_imm": out.hi}.get(op, 0)
                step_compute.append(Alu(op, u0, u1, th_a, tw_a, acc_base, (m.tw, 1),
                                        src + (1 if op == "mul_shift" else 0), (0, 0), imm))
            oy0, ox0 = int(h_off[st.h]), int(w_off[st.w])
            tile_stores = []
            for ob in range(toc_a):
                if plan.onchip_out is not None:
                    o = plan.onchip_out
                    dst, lane0, rows, cols = plan.forward_target(st.b, st.sg * plan.ocb_max + ocb0 + ob, oy0, ox0,
                                                                 th_a, tw_a)
                    tile_stores.append(Forward(acc_base + ob * acc_blk, m.tw, rows, cols, dst, o.pitch, lane0,
                                               o.lanes, o.bits))
                    continue
                dram = (((st.b * plan.nsg + st.sg) * plan.ocb_max + ocb0 + ob) * s.oh + oy0) * s.ow + ox0
                tile_stores.append(Store("out", acc_base + ob * acc_blk, m.tw, th_a, tw_a, dram, s.ow))
            stores.append(tile_stores)
        computes.append((step_compute, first_ic, last_ic, n_out))
        if last_ic:
            n_out += 1

    return Program(tuple(link(loads, computes, stores, dist)), plan.w_bits, plan.a_bits, plan.regions())


def link(loads: list, computes: list, stores: list, dist: int) -> list:
    """Set the dependency tokens of a program given per step: its loads, ``(computes, first_ic, last_ic, output
    tile)``, and per output tile its stores; ``dist`` is the number of buffer slots. Load k waits compute k - dist;
    compute waits its load; the first compute of output tile o waits the store of tile o - dist; the store of tile o
    waits its compute. Returns the instructions in program order."""
    n_steps, n_out = len(loads), len(stores)
    program: list = []
    for k in range(n_steps):
        group = loads[k]
        group[0] = _with(group[0], Deps(pop_next=k >= dist))
        group[-1] = _with(group[-1], Deps(push_next=True))
        program.extend(group)
        comp, first_ic, last_ic, o = computes[k]
        comp[0] = _with(comp[0], Deps(pop_prev=True, pop_next=first_ic and o >= dist))
        comp[-1] = _with(comp[-1], Deps(push_prev=k + dist < n_steps, push_next=last_ic))
        program.extend(comp)
        if last_ic:
            group = stores[o]
            group[0] = _with(group[0], Deps(pop_prev=True))
            group[-1] = _with(group[-1], Deps(push_prev=o + dist < n_out))
            program.extend(group)
    return program


def _with(ins, deps: Deps):
    return replace(ins, deps=ins.deps.merged(deps))


# -- data packing (host side) ------------------------------------------------------------------------------------
def _channel_maps(plan: LayerPlan):
    """For each super-group: (global input channels [C'], global output channels [OC'])."""
    s = plan.shape
    g0 = 0
    for groups in plan.sg_groups:
        cin = np.arange(g0 * s.cg, (g0 + groups) * s.cg)
        cout = np.arange(g0 * s.kg, (g0 + groups) * s.kg)
        yield g0, groups, cin, cout
        g0 += groups


def _pack_input(plan: LayerPlan, codes: np.ndarray, pad: int) -> np.ndarray:
    s = plan.shape
    rows = plan.nb * plan.batch
    padded = np.full((rows, s.c, s.h, s.w), pad, dtype=np.int32)
    padded[: s.n] = np.asarray(codes).reshape(s.n, s.c, s.h, s.w)
    region = np.full((plan.nb, plan.nsg, plan.icb_max, s.h, s.w, plan.batch, plan.bi), pad, dtype=np.int32)
    for sg, (_, _, cin, _) in enumerate(_channel_maps(plan)):
        blocks = np.full((rows, plan.icb_max * plan.bi, s.h, s.w), pad, dtype=np.int32)
        blocks[:, : len(cin)] = padded[:, cin]
        blocks = blocks.reshape(plan.nb, plan.batch, plan.icb_max, plan.bi, s.h, s.w)
        region[:, sg] = blocks.transpose(0, 2, 4, 5, 1, 3)
    return np.ascontiguousarray(region.reshape(-1, plan.batch, plan.bi))


def pack_input(plan: LayerPlan, codes: np.ndarray) -> np.ndarray:
    """NCHW codes -> the ``inp`` region ``[entries, BATCH, BLOCK_IN']``. Padding lanes and batch rows hold the
    zero point (they meet zero weights or are discarded)."""
    return _pack_input(plan, codes, plan.zero_point)


def input_mask(plan: LayerPlan) -> np.ndarray:
    """True where the ``inp`` region holds a real tensor element (what the DMA reads from DRAM)."""
    s = plan.shape
    return _pack_input(plan, np.ones((s.n, s.c, s.h, s.w), dtype=np.int32), 0).astype(bool)


def pack_weights(plan: LayerPlan, w_q: np.ndarray) -> np.ndarray:
    """Integer weights (OIHW or [OC, K]) -> the ``wgt`` region ``[entries, BLOCK_OUT, BLOCK_IN']``, block-diagonal
    within each super-group."""
    s = plan.shape
    w = np.asarray(w_q).reshape(s.oc, s.cg, s.kh, s.kw).astype(np.int32)
    region = np.zeros((plan.nsg, plan.ocb_max, plan.icb_max, s.taps, plan.bo, plan.bi), dtype=np.int32)
    for sg, (g0, groups, _cin, _cout) in enumerate(_channel_maps(plan)):
        dense = np.zeros((plan.ocb_max * plan.bo, plan.icb_max * plan.bi, s.kh, s.kw), dtype=np.int32)
        for g in range(groups):
            dense[g * s.kg:(g + 1) * s.kg, g * s.cg:(g + 1) * s.cg] = w[(g0 + g) * s.kg:(g0 + g + 1) * s.kg]
        dense = dense.reshape(plan.ocb_max, plan.bo, plan.icb_max, plan.bi, s.taps)
        region[sg] = dense.transpose(0, 2, 4, 1, 3)
    return np.ascontiguousarray(region.reshape(-1, plan.bo, plan.bi))


def pack_params(plan: LayerPlan, bias_corr: np.ndarray, mult: np.ndarray | None = None,
                shift: np.ndarray | None = None) -> np.ndarray:
    """Per-channel parameters -> the ``params`` region: per output block ``bias`` (and ``mult``, ``shift`` for code
    output), each broadcast over BATCH rows."""
    pp = plan.output.params_per_block
    cols = [np.asarray(bias_corr, dtype=np.int64)]
    if pp == 3:
        if mult is None or shift is None:
            raise MappingError("code output needs the requantization multiplier and shift per channel")
        cols += [np.asarray(mult, dtype=np.int64), np.asarray(shift, dtype=np.int64)]
    region = np.zeros((plan.nsg, plan.ocb_max, pp, plan.batch, plan.bo), dtype=np.int64)
    for sg, (_, _, _, cout) in enumerate(_channel_maps(plan)):
        for p, col in enumerate(cols):
            lanes = np.full(plan.ocb_max * plan.bo, 1 if p == 2 else 0, dtype=np.int64)  # padding: shift 1
            lanes[: len(cout)] = col[cout]
            region[sg, :, p] = lanes.reshape(plan.ocb_max, 1, plan.bo)
    return region.reshape(-1, plan.batch, plan.bo)


def unpack_output(plan: LayerPlan, region: np.ndarray) -> np.ndarray:
    """The ``out`` region -> NCHW (conv) or ``[N, OC]`` (dense) array."""
    s = plan.shape
    r = np.asarray(region).reshape(plan.nb, plan.nsg, plan.ocb_max, s.oh, s.ow, plan.batch, plan.bo)
    r = r.transpose(0, 5, 1, 2, 6, 3, 4).reshape(plan.nb * plan.batch, plan.nsg, plan.ocb_max * plan.bo, s.oh, s.ow)
    out = np.empty((plan.nb * plan.batch, s.oc, s.oh, s.ow), dtype=r.dtype)
    for sg, (_, _, _, cout) in enumerate(_channel_maps(plan)):
        out[:, cout] = r[:, sg, : len(cout)]
    return out[: s.n]


def weight_mask(plan: LayerPlan) -> np.ndarray:
    """True where the ``wgt`` region holds a real weight (not a lane or block-diagonal zero)."""
    s = plan.shape
    return pack_weights(plan, np.ones((s.oc, s.cg, s.kh, s.kw), dtype=np.int32)).astype(bool)


def output_mask(plan: LayerPlan) -> np.ndarray:
    """True where the ``out`` region holds a real output element."""
    s = plan.shape
    mask = np.zeros((plan.nb, plan.batch, plan.nsg, plan.ocb_max * plan.bo), dtype=bool)
    for sg, (_, _, _, cout) in enumerate(_channel_maps(plan)):
        mask[:, :, sg, : len(cout)] = True
    mask = mask.reshape(plan.nb * plan.batch, plan.nsg, plan.ocb_max * plan.bo)
    mask[s.n:] = False
    mask = mask.reshape(plan.nb, plan.batch, plan.nsg, plan.ocb_max, plan.bo)
    full = np.broadcast_to(mask.transpose(0, 2, 3, 1, 4)[:, :, :, None, None],
                           (plan.nb, plan.nsg, plan.ocb_max, s.oh, s.ow, plan.batch, plan.bo))
    return np.ascontiguousarray(full.reshape(-1, plan.batch, plan.bo))


def pack_layer(plan: LayerPlan, codes: np.ndarray, w_q: np.ndarray, bias_corr: np.ndarray,
               mult: np.ndarray | None = None, shift: np.ndarray | None = None) -> tuple[dict, dict]:
    """The DRAM image of one layer (``{region: array}``) and its validity masks (``{region: bool array}``)."""
    dram = {"inp": pack_input(plan, codes), "wgt": pack_weights(plan, w_q),
            "params": pack_params(plan, bias_corr, mult, shift), "uops": plan.uop_table()}
    valid = {"inp": input_mask(plan), "wgt": weight_mask(plan), "out": output_mask(plan)}
    return dram, valid


def default_mapping(shape: ConvShape, w_bits: int, a_bits: int, hw: HardwareConfig,
                    output: OutputSpec = OutputSpec()) -> LayerMapping:
    """A mapping that fits, without search: start from the whole layer in one tile and shrink the dimension that
    loads the overflowing buffer most until everything fits."""
    bi = hw.block_in_at(w_bits, a_bits)
    sg = super_group_size(shape, bi, hw.block_out)
    th, tw = shape.oh, shape.ow
    toc = _ceil(sg * shape.kg, hw.block_out)
    tic = _ceil(sg * shape.cg, bi)
    while True:
        mapping = LayerMapping(th, tw, toc, tic)
        plan = LayerPlan(shape, w_bits, a_bits, hw, mapping, output, check=False)
        over = plan.over_capacity()
        if not over:
            return mapping
        buf = over[0]
        # which dimensions shrink this buffer, in order of preference
        options = {"inp": ("tic", "th", "tw"), "wgt": ("tic", "toc"), "acc": ("th", "toc", "tw"),
                   "uop": ("tic", "toc")}[buf]
        sizes = {"th": th, "tw": tw, "toc": toc, "tic": tic}
        dim = next((d for d in options if sizes[d] > 1), None)
        if dim is None:
            plan.check_capacity()  # raises with the buffer and the fix
        sizes[dim] = _ceil(sizes[dim], 2)
        th, tw, toc, tic = sizes["th"], sizes["tw"], sizes["toc"], sizes["tic"]
