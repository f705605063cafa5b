"""Conv2d (kxk, strided, padded, dilated, grouped and depthwise) and dense layers lowered through TVM: TE compute,
an s_tir schedule tensorized into the accelerator's intrinsics, and a recorder that turns what the built TIR pushes
into the instruction stream the simulator runs. The compile target lowers every accelerator layer this way;
:func:`lower.lower` (the Python generator) stays as the reference the tests compare against.

* **Compute** (TE, int32 codes, on the block layouts of :mod:`lower` with a super-group axis ``g``):
  ``C[n, g, ob, y, x, b, o] = sum_{ib, ky, kx, i} A[n, g, ib, y // th, x // tw, (y % th)*sh + ky*dh,
  (x % tw)*sw + kx*dw, b, i] * W[g, ob, ib, ky, kx, o, i]`` (the GEMM on blocks, int32 accumulate; dense is a 1x1
  image; a grouped or depthwise layer is a dense GEMM per super-group on block-diagonal weights) and the epilogue
  ``E = C + bias`` (accumulator output) or ``E = clamp(((C + bias) * mult + 2**(shift-1)) >> shift + zp, lo, hi)``
  (code output). ``A`` is the input as the DMA delivers it: per spatial tile ``(y // th, x // tw)`` its window
  with halo and padding, in padded coordinates -- so a tile's staging copy is one block disjoint from the others,
  which the schedule can tensorize (with halos overlapping in one input tensor the copy's bindings cannot be
  blockized). The DMA intrinsic's runtime turns a tile into the valid DRAM window plus zero-point padding
  (:meth:`LayerPlan.window`).
* **Whole tiles.** The compute's domain is rounded up to whole tiles: output rows / columns to multiples of
  ``th`` / ``tw``, output / input channel blocks to multiples of ``toc`` / ``tic`` (and, within a last,
  smaller super-group, up to the largest one's blocks). So every mapping the search produces schedules -- a
  remainder tile is a whole tile of the TIR -- and the runtime clips each tile to the layer: a tail tile gets its
  real size (the GEMM's loop extents, the micro-op range of its ``toc' x tic'`` blocks, its DMA sizes), and a tile
  wholly outside the layer (only possible for channel blocks of a smaller last super-group) is dropped with the
  loads issued for it. This is what the generator does with its tail tiles, so the stream is the same.
* **Schedule** (``tvm.s_tir.Schedule``): the output-channel blocks are split by the mapping's ``toc``, the output
  rows / columns by ``th`` / ``tw`` and the input-channel blocks by ``tic``; the tile loops run super-groups
  outermost, then the mapping's ``order`` (``oc_sp``: output-channel tiles outer, ``sp_oc``: spatial tiles outer)
  with the reduction tiles innermost; the reduction's init is decomposed at the reduction-tile loop. The operands
  are staged by ``cache_read`` blocks placed (``compute_at``) under the innermost non-trivial loop they depend on
  -- so a tile is loaded again only when it changes, which is the residency rule of :func:`lower.lower` -- and
  the epilogue is ``reverse_compute_at`` the output tile.
* **Tensorize**: the inner GEMM tile -- ``toc x tic`` blocks, all ``kh x kw`` taps, ``th x tw`` pixels -- becomes
  the ``gemm`` intrinsic, the init the ``reset`` intrinsic, the staging copies the ``load_inp`` / ``load_wgt`` DMA
  intrinsics and the epilogue the ``alu_store`` intrinsic. Each intrinsic's implementation is one
  ``T.call_packed`` into the runtime with the DRAM offsets of the tile (taken from the buffer regions the schedule
  matched).
* **Runtime** (:class:`TirRecorder`): packed functions registered under a per-kernel prefix receive those calls
  in the order the compiled TIR makes them and build the instructions. The runtime owns what VTA's runtime owned:
  buffer slots (double buffering: slot = tile count mod slots), the micro-op table of each intrinsic and its
  prologue load, a zero-row sync LOAD for a step whose operands were resident, the expansion of an input-tile DMA
  into one 2-D LOAD per channel block with its padding, the clipping of tail tiles (above), and the dependency
  tokens (:func:`lower.link`). A GEMM computes on the tiles in the buffers: its position is that of the input and
  weight tiles last requested (the staged copies' own offsets are those of compacted scratch buffers). A DMA
  whose tile is already in its buffer is not issued again (only happens when a rounded-up super-group repeats a
  weight tile; the schedule's placement already avoids it otherwise).
* **Chained layers** (:mod:`chain`): the TIR is the same -- it stages per-tile input windows and ends each output
  tile in ``alu_store`` -- and the runtime decides where the data lives, as VTA's runtime decided the DMA. With
  ``plan.onchip_in`` the whole padded input image is resident: the prologue FILLs its padding border
  (:meth:`LayerPlan.fills`), an input-tile DMA issues nothing, and a GEMM's input position is the tile's window
  inside the image (batch block, super-group and input block, then the tile's first row and column times the
  stride). With ``plan.onchip_out`` an output tile's STOREs become FORWARDs into the next layer's image
  (:meth:`LayerPlan.forward_target`). The tokens are linked as for STOREs, so the stream equals :func:`lower.lower`.

The built function's operands are not read: the simulator gets the DRAM image from the host.
"""

from __future__ import annotations

import uuid

import numpy as np
import tvm
from tvm import s_tir, te

from ..errors import Error
from .isa import Alu, Forward, Gemm, Load, Program, Store
from .lower import LayerPlan, link


class TirLowerError(Error):
    """The TIR run of a layer did not push a complete program (an internal inconsistency, not a user error)."""


def _ceil_to(a: int, b: int) -> int:
    return -(-a // b) * b


# -- intrinsics ---------------------------------------------------------------------------------------------------
def _full(buf):
    return buf[tuple(slice(0, int(d)) for d in buf.shape)]


def _register(name: str, buffers: list[tuple[str, tuple]], loops: list[tuple[str, int, str]], body, reads: list[str],
              writes: list[str], args: list[str], iters: tuple[str, ...] = ()) -> None:
    """Register the tensor intrinsic ``name``. Its description (built with TVMScript's IR builder: the parser costs
    ~0.1 s a function) is one block over ``loops`` (``(name, extent, 'S'|'R')``; loops of extent 1 stay loops but
    get no block iterator (index 0), as the schedule's blockize leaves them) whose statement is ``body(buffers,
    index) -> (buffer, indices, value)``; its implementation is the same root block calling ``T.call_packed(name,
    *args)``, an ``args`` entry ``"<buffer>.elem_offset"`` or an integer. Buffers match any strides and offset."""
    from tvm.script.ir_builder import IRBuilder
    from tvm.script.ir_builder import tirx as T

    def build(implement: bool):
        with IRBuilder() as ib:
            with T.prim_func(s_tir=True):
                T.func_name("f")
                handles = [T.arg(var.lower(), T.handle()) for var, _ in buffers]
                bufs = {}
                for (var, shape), h in zip(buffers, handles):
                    bufs[var] = T.match_buffer(h, shape, "int32", offset_factor=1,
                                               strides=[T.int32() for _ in shape])
                    IRBuilder.name(var, bufs[var])
                with T.sblock("root"):
                    T.reads([_full(bufs[b]) for b in reads])
                    T.writes([_full(bufs[b]) for b in writes])
                    if implement:
                        values = [bufs[a.split(".")[0]].elem_offset if "." in a else int(a) for a in args]
                        T.evaluate(tvm.tirx.call_packed(name, *values))
                    else:
                        live = [(n, k) for n, e, k in loops if e > 1]
                        if iters:  # block iterators in the compute's order (spatial, then reduction)
                            live.sort(key=lambda x: iters.index(x[0]))
                        with T.grid(*[e for _, e, _ in loops]) as loop_vars:
                            loop_vars = [loop_vars] if isinstance(loop_vars, tvm.tirx.Var) else list(loop_vars)
                            by_name = {n: v for (n, _, _), v in zip(loops, loop_vars)}
                            with T.sblock("update"):
                                index = {n: 0 for n, _, _ in loops}
                                if live:
                                    vs = T.axis.remap("".join(k for _, k in live), [by_name[n] for n, _ in live])
                                    vs = [vs] if isinstance(vs, tvm.tirx.Var) else list(vs)
                                    index.update({n: v for (n, _), v in zip(live, vs)})
                                buf, indices, value = body(bufs, index)
                                T.buffer_store(buf, value, indices)
        return ib.get()

    s_tir.TensorIntrin.register(name, build(False), build(True), override=True)


class TirLayer:
    """One layer scheduled and built through TVM (see the module docstring); ``run`` executes the built TIR and
    returns the :class:`Program` its packed calls pushed."""

    def __init__(self, plan: LayerPlan, prefix: str | None = None):
        self.plan = plan
        self.prefix = prefix or f"tvm_mp.accel.tir.k{uuid.uuid4().hex[:12]}"
        self.recorder = TirRecorder(plan, self.dims)
        self._built = None

    # -- shapes ----------------------------------------------------------------------------------------------------
    @property
    def dims(self) -> dict[str, int]:
        """Extents of the compute's (rounded-up) domain and the tile sizes."""
        p, m, s = self.plan, self.plan.mapping, self.plan.shape
        sh, sw = s.params.strides
        dh, dw = s.params.dilation
        oh, ow = _ceil_to(s.oh, m.th), _ceil_to(s.ow, m.tw)
        # a tile's input window (for an on-chip input the plan's in_th x in_pitch is the whole resident image: the
        # TIR still stages per-tile windows, the runtime addresses them inside the image)
        in_th, in_tw = (m.th - 1) * sh + (s.kh - 1) * dh + 1, (m.tw - 1) * sw + (s.kw - 1) * dw + 1
        return {"nb": p.nb, "ng": p.nsg, "icb": _ceil_to(p.icb_max, m.tic), "ocb": _ceil_to(p.ocb_max, m.toc),
                "OH": oh, "OW": ow, "KH": s.kh, "KW": s.kw, "sh": sh, "sw": sw, "dh": dh, "dw": dw, "B": p.batch,
                "BI": p.bi, "BO": p.bo, "toc": m.toc, "tic": m.tic, "th": m.th, "tw": m.tw, "in_th": in_th,
                "in_tw": in_tw, "pp": p.output.params_per_block}

    def shapes(self) -> dict[str, tuple[int, ...]]:
        d = self.dims
        return {"A": (d["nb"], d["ng"], d["icb"], d["OH"] // d["th"], d["OW"] // d["tw"], d["in_th"], d["in_tw"],
                      d["B"], d["BI"]),
                "W": (d["ng"], d["ocb"], d["icb"], d["KH"], d["KW"], d["BO"], d["BI"]),
                "P": (d["ng"], d["ocb"], d["pp"], d["B"], d["BO"]),
                "E": (d["nb"], d["ng"], d["ocb"], d["OH"], d["OW"], d["B"], d["BO"])}

    def compute(self):
        """The TE tensors ``(A, W, P, C, E)``."""
        d, out, sh = self.dims, self.plan.output, self.shapes()
        A = te.placeholder(sh["A"], "int32", name="A")
        W = te.placeholder(sh["W"], "int32", name="W")
        P = te.placeholder(sh["P"], "int32", name="P")
        ib = te.reduce_axis((0, d["icb"]), "ib")
        ky = te.reduce_axis((0, d["KH"]), "ky")
        kx = te.reduce_axis((0, d["KW"]), "kx")
        i = te.reduce_axis((0, d["BI"]), "i")
        C = te.compute(sh["E"], lambda n, g, ob, y, x, b, o: te.sum(
            A[n, g, ib, y // d["th"], x // d["tw"], y % d["th"] * d["sh"] + ky * d["dh"],
              x % d["tw"] * d["sw"] + kx * d["dw"], b, i] * W[g, ob, ib, ky, kx, o, i],
            axis=[ib, ky, kx, i]), name="C")
        if out.kind == "acc":
            E = te.compute(C.shape, lambda n, g, ob, y, x, b, o: C[n, g, ob, y, x, b, o] + P[g, ob, 0, b, o],
                           name="E")
        else:
            E = te.compute(C.shape, lambda n, g, ob, y, x, b, o: _requant(
                C[n, g, ob, y, x, b, o] + P[g, ob, 0, b, o], P[g, ob, 1, b, o], P[g, ob, 2, b, o], out), name="E")
        return A, W, P, C, E

    # -- intrinsics ------------------------------------------------------------------------------------------------
    def _register_intrinsics(self) -> dict[str, str]:
        d, pre, out = self.dims, self.prefix, self.plan.output
        toc, tic, th, tw, B, BI, BO, pp = (d[k] for k in ("toc", "tic", "th", "tw", "B", "BI", "BO", "pp"))
        KH, KW, sh, sw, dh, dw = (d[k] for k in ("KH", "KW", "sh", "sw", "dh", "dw"))
        a_t = (1, 1, tic, 1, 1, d["in_th"], d["in_tw"], B, BI)
        w_t, c_t, p_t = (1, toc, tic, KH, KW, BO, BI), (1, 1, toc, th, tw, B, BO), (1, toc, pp, B, BO)
        names = {k: f"{pre}.{k}" for k in _INTRINSICS}

        def c_idx(v):
            return [0, 0, v["ob"], v["y"], v["x"], v["b"], v["o"]]

        def gemm(bf, v):
            a = bf["A"][0, 0, v["ib"], 0, 0, v["y"] * sh + v["ky"] * dh, v["x"] * sw + v["kx"] * dw, v["b"], v["i"]]
            w = bf["W"][0, v["ob"], v["ib"], v["ky"], v["kx"], v["o"], v["i"]]
            return bf["C"], c_idx(v), bf["C"][tuple(c_idx(v))] + a * w

        def epilogue(bf, v):
            acc = bf["C"][tuple(c_idx(v))] + bf["P"][0, v["ob"], 0, v["b"], v["o"]]
            if out.kind != "acc":
                acc = _requant(acc, bf["P"][0, v["ob"], 1, v["b"], v["o"]], bf["P"][0, v["ob"], 2, v["b"], v["o"]], out)
            return bf["E"], c_idx(v), acc

        def a_idx(v):
            return [0, 0, v["ib"], 0, 0, v["y"], v["x"], v["b"], v["i"]]

        def w_idx(v):
            return [0, v["ob"], v["ib"], v["ky"], v["kx"], v["o"], v["i"]]

        _register(names["gemm"], [("A", a_t), ("W", w_t), ("C", c_t)],
                  [("ob", toc, "S"), ("ib", tic, "R"), ("ky", KH, "R"), ("kx", KW, "R"), ("y", th, "S"),
                   ("x", tw, "S"), ("b", B, "S"), ("o", BO, "S"), ("i", BI, "R")], gemm, ["C", "A", "W"], ["C"],
                  [str(toc), str(tic)], iters=("ob", "y", "x", "b", "o", "ib", "ky", "kx", "i"))
        _register(names["reset"], [("C", c_t)],
                  [("ob", toc, "S"), ("y", th, "S"), ("x", tw, "S"), ("b", B, "S"), ("o", BO, "S")],
                  lambda bf, v: (bf["C"], c_idx(v), tvm.tirx.const(0, "int32")), [], ["C"], [str(toc)])
        _register(names["load_inp"], [("A", a_t), ("S", a_t)],
                  [("n", 1, "S"), ("g", 1, "S"), ("ib", tic, "S"), ("ty", 1, "S"), ("tx", 1, "S"),
                   ("y", d["in_th"], "S"), ("x", d["in_tw"], "S"), ("b", B, "S"), ("i", BI, "S")],
                  lambda bf, v: (bf["S"], a_idx(v), bf["A"][tuple(a_idx(v))]), ["A"], ["S"],
                  ["A.elem_offset", str(tic)])
        _register(names["load_wgt"], [("W", w_t), ("S", w_t)],
                  [("g", 1, "S"), ("ob", toc, "S"), ("ib", tic, "S"), ("ky", KH, "S"), ("kx", KW, "S"),
                   ("o", BO, "S"), ("i", BI, "S")],
                  lambda bf, v: (bf["S"], w_idx(v), bf["W"][tuple(w_idx(v))]), ["W"], ["S"],
                  ["W.elem_offset", str(toc), str(tic)])
        _register(names["alu_store"], [("C", c_t), ("P", p_t), ("E", c_t)],
                  [("n", 1, "S"), ("g", 1, "S"), ("ob", toc, "S"), ("y", th, "S"), ("x", tw, "S"), ("b", B, "S"),
                   ("o", BO, "S")], epilogue, ["C", "P"], ["E"], ["E.elem_offset", str(toc)])
        return names

    # -- schedule --------------------------------------------------------------------------------------------------
    def schedule(self) -> s_tir.Schedule:
        """The tiled, staged and tensorized schedule (module docstring)."""
        A, W, P, C, E = self.compute()
        names = self._register_intrinsics()
        d, m = self.dims, self.plan.mapping
        sch = s_tir.Schedule(te.create_prim_func([A, W, P, E]))
        c = sch.get_sblock("C")
        n, g, ob, y, x, b, o, ib, ky, kx, i = sch.get_loops(c)
        obo, obi = sch.split(ob, [None, m.toc])
        yo, yi = sch.split(y, [None, m.th])
        xo, xi = sch.split(x, [None, m.tw])
        ibo, ibi = sch.split(ib, [None, m.tic])
        loops = {"g": g, "n": n, "obo": obo, "yo": yo, "xo": xo, "ibo": ibo}
        extent = {"g": d["ng"], "n": d["nb"], "obo": d["ocb"] // m.toc, "yo": d["OH"] // m.th,
                  "xo": d["OW"] // m.tw, "ibo": d["icb"] // m.tic}
        outer = ["g"] + (["obo", "n", "yo", "xo"] if m.order == "oc_sp" else ["n", "yo", "xo", "obo"])
        nest = outer + ["ibo"]
        sch.reorder(*[loops[k] for k in nest], obi, ibi, ky, kx, yi, xi, b, o, i)
        # the epilogue runs once per output tile: under the innermost output-tile loop
        sch.reverse_compute_at(sch.get_sblock("E"), loops[outer[-1]], preserve_unit_loops=True)
        for operand, deps, intrin, rank in ((0, {"g", "n", "yo", "xo", "ibo"}, names["load_inp"], 9),
                                            (1, {"g", "obo", "ibo"}, names["load_wgt"], 7)):
            stage = sch.cache_read(c, operand, "global")
            at = [k for k in nest if k in deps and extent[k] > 1]
            if at:  # reloaded exactly when the tile changes (no non-trivial loop it depends on: loaded once)
                sch.compute_at(stage, loops[at[-1]], preserve_unit_loops=True)
            sch.tensorize(sch.get_loops(stage)[-rank], intrin)  # the copy's own loops: one tile
        init = sch.decompose_reduction(c, ibo)
        sch.tensorize(sch.get_loops(init)[len(outer)], names["reset"])
        sch.tensorize(obi, names["gemm"])
        sch.tensorize(sch.get_loops(sch.get_sblock("E"))[len(outer)], names["alu_store"])
        return sch

    def build(self):
        if self._built is None:
            self.recorder.register(self.prefix)
            # LLVM's optimizations are skipped: the function only makes a few packed calls per tile (0.04 s vs 0.16 s)
            self._built = tvm.compile(self.schedule().mod, target=tvm.target.Target({"kind": "llvm", "opt-level": 0}))
        return self._built

    def run(self) -> Program:
        """Execute the built TIR (the operands are not read: the intrinsics push instructions) and return the
        program it pushed."""
        ex = self.build()
        dev = tvm.cpu()
        sh = self.shapes()
        self.recorder.start()
        ex["main"](*[tvm.runtime.empty(sh[k], "int32", dev) for k in ("A", "W", "P", "E")])
        return self.recorder.finish()


def _requant(acc, mult, shift, out):
    x = acc.astype("int64") * mult.astype("int64") + (tvm.tirx.const(1, "int64") << (shift.astype("int64") - 1))
    x = (x >> shift.astype("int64")) + tvm.tirx.const(out.zero_point, "int64")
    return tvm.te.max(tvm.te.min(x, tvm.tirx.const(out.hi, "int64")), tvm.tirx.const(out.lo, "int64")).astype("int32")


def _unravel(offset, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(v) for v in np.unravel_index(int(offset), shape))


_LOAD_ORDER = {"uop": 0, "acc": 1, "inp": 2, "wgt": 3}
_INTRINSICS = ("gemm", "reset", "load_inp", "load_wgt", "alu_store")


class TirRecorder:
    """The accelerator runtime the TIR calls: builds the instruction stream from the intrinsic calls in the order
    they arrive (see the module docstring for what it decides itself). ``dims``: :attr:`TirLayer.dims`."""

    def __init__(self, plan: LayerPlan, dims: dict[str, int]):
        self.plan, self.dims = plan, dims
        d = dims
        self.a_shape = (d["nb"], d["ng"], d["icb"], d["OH"] // d["th"], d["OW"] // d["tw"], d["in_th"], d["in_tw"],
                        d["B"], d["BI"])
        self.w_shape = (d["ng"], d["ocb"], d["icb"], d["KH"], d["KW"], d["BO"], d["BI"])
        self.e_shape = (d["nb"], d["ng"], d["ocb"], d["OH"], d["OW"], d["B"], d["BO"])
        self.start()

    def start(self) -> None:
        self.loads: list[list] = []
        self.computes: list = []
        self.stores: list[list] = []
        self.pending: list[tuple[str, tuple]] = []  # tile requests since the last GEMM: (buffer, tile id)
        self.current: dict[str, tuple | None] = {"inp": None, "wgt": None}  # last requested tile per buffer
        self.resident: dict[str, tuple | None] = {"inp": None, "wgt": None}  # last loaded tile per buffer
        self.pending_reset = False
        self.tiles = {"inp": -1, "wgt": -1, "acc": -1}

    def register(self, prefix: str) -> None:
        for name in _INTRINSICS:
            tvm.register_global_func(f"{prefix}.{name}", getattr(self, "_" + name), override=True)

    def unregister(self, prefix: str) -> None:
        from tvm_ffi import remove_global_func

        for name in _INTRINSICS:
            if tvm.get_global_func(f"{prefix}.{name}", allow_missing=True) is not None:
                remove_global_func(f"{prefix}.{name}")

    def _base(self, buf: str) -> int:
        slot = {"inp": self.plan.inp_slot, "wgt": self.plan.wgt_slot, "acc": self.plan.acc_slot}[buf]
        return (self.tiles[buf] % self.plan.nbuf) * slot

    # -- packed functions (called by the built TIR) ----------------------------------------------------------------
    def _load_inp(self, dram_offset, tic) -> None:
        n, g, ib0, h, w = _unravel(dram_offset, self.a_shape)[:5]
        tile = (g, n, h, w, ib0 // int(tic))
        self.current["inp"] = tile
        self.pending.append(("inp", tile))

    def _load_wgt(self, dram_offset, toc, tic) -> None:
        g, ob0, ib0, _, _, _, _ = _unravel(dram_offset, self.w_shape)
        tile = (g, ob0 // int(toc), ib0 // int(tic))
        self.current["wgt"] = tile
        self.pending.append(("wgt", tile))

    def _reset(self, toc) -> None:
        self.pending_reset = True

    def _gemm(self, toc, tic) -> None:
        p, m, s = self.plan, self.plan.mapping, self.plan.shape
        g, n, h, w, ic = self.current["inp"]
        gw, oc, icw = self.current["wgt"]
        if (g, ic) != (gw, icw):
            raise TirLowerError("the TIR run computed on an input and a weight tile of different blocks")
        requests, self.pending = self.pending, []
        oc_sizes, ic_sizes = p.oc_tiles(g), p.ic_tiles(g)
        if oc >= len(oc_sizes) or ic >= len(ic_sizes):  # a tile wholly outside a smaller last super-group
            return
        toc_a, tic_a = oc_sizes[oc], ic_sizes[ic]
        th_a, tw_a = p.h_tiles[h], p.w_tiles[w]
        step_loads = []
        if not self.loads:  # the prologue: micro-ops and per-channel parameters
            step_loads.append(Load("uop", "uops", 0, p.uop_total, 0, p.uop_total, 1, p.uop_total))
            step_loads.append(Load("acc", "params", 0, p.param_entries, p.param_base, p.param_entries, 1,
                                   p.param_entries))
            step_loads.extend(p.fills())  # an on-chip input: its image's padding border first
        # the DMA queue issues a step's loads micro-ops/params first, then input, then weight tiles, whatever loop
        # level of the TIR issued them (a stable order: the same stream as lower.lower)
        for buf, tile in sorted(requests, key=lambda r: _LOAD_ORDER[r[0]]):
            if tile == self.resident[buf] or (buf == "inp" and p.onchip_in is not None):
                continue  # already in its buffer, or the input is the resident image: no DMA
            self.resident[buf] = tile
            self.tiles[buf] += 1
            base = self._base(buf)
            if buf == "inp":
                tg, tn, tth, ttw, tic_i = tile
                y0, pt, vy, pb = p.window(0, tth)
                x0, pl, vx, pr = p.window(1, ttw)
                for ib in range(p.ic_tiles(tg)[tic_i]):
                    blk = ((tn * p.nsg + tg) * p.icb_max + tic_i * m.tic + ib) * s.h * s.w
                    step_loads.append(Load("inp", "inp", blk + y0 * s.w + x0, s.w, base + ib * p.in_th * p.in_pitch,
                                           p.in_pitch, vy if vx else 0, vx if vy else 0, pt if vx else pt + vy, pb,
                                           pl, pr if vy else pr + vx, p.zero_point))
            else:
                tg, toc_i, tic_i = tile
                t_o, t_i = p.oc_tiles(tg)[toc_i], p.ic_tiles(tg)[tic_i]
                dram = ((tg * p.ocb_max + toc_i * m.toc) * p.icb_max + tic_i * m.tic) * s.taps
                step_loads.append(Load("wgt", "wgt", dram, p.icb_max * s.taps, base, t_i * s.taps, t_o,
                                       t_i * s.taps))
        if not step_loads:
            step_loads.append(Load("inp", "inp", 0, 0, 0, 0, 0, 0))  # sync: passes tokens only
        self.loads.append(step_loads)
        step = []
        first = self.pending_reset
        if first:
            self.tiles["acc"] += 1
            u0, u1 = p.uop_offsets[("reset", toc_a)]
            step.append(Gemm(u0, u1, th_a, tw_a, self._base("acc"), 0, 0, (m.tw, 1), reset=True))
            self.pending_reset = False
        sh, sw = s.params.strides
        if p.onchip_in is None:
            inp_base = self._base("inp")
        else:  # the tile's window inside the resident image (per batch block, super-group and input block)
            img = ((n * p.nsg + g) * p.icb_max + ic * m.tic) * p.in_th * p.in_pitch
            inp_base = p.onchip_in.base + img + h * m.th * sh * p.in_pitch + w * m.tw * sw
        u0, u1 = p.uop_offsets[("gemm", toc_a, tic_a)]
        step.append(Gemm(u0, u1, th_a, tw_a, self._base("acc"), inp_base, self._base("wgt"), (m.tw, 1),
                         (sh * p.in_pitch, sw), (0, 0), dataflow=m.dataflow))
        self.computes.append([step, first, False, self.tiles["acc"], (g, oc, n, h, w)])

    def _alu_store(self, out_offset, toc) -> None:
        p, m, out, s = self.plan, self.plan.mapping, self.plan.output, self.plan.shape
        n, g, ob0, y0, x0, _, _ = _unravel(out_offset, self.e_shape)
        oc, h, w = ob0 // int(toc), y0 // m.th, x0 // m.tw
        self.pending_reset = False
        if oc >= len(p.oc_tiles(g)):  # an output tile wholly outside a smaller last super-group
            return
        step = self.computes[-1] if self.computes else None
        if step is None or step[4] != (g, oc, n, h, w) or step[2]:
            raise TirLowerError("the TIR run stored an output tile it did not compute")
        toc_a, th_a, tw_a = p.oc_tiles(g)[oc], p.h_tiles[h], p.w_tiles[w]
        u0, u1 = p.uop_offsets[("alu", toc_a)]
        src = p.param_base + (g * p.ocb_max + ob0) * out.params_per_block
        acc_base = self._base("acc")
        for op in out.alu_ops:
            imm = {"add_imm": out.zero_point, "max_imm": out.lo, "min_imm": out.hi}.get(op, 0)
            step[0].append(Alu(op, u0, u1, th_a, tw_a, acc_base, (m.tw, 1), src + (1 if op == "mul_shift" else 0),
                               (0, 0), imm))
        step[2] = True
        oy0, ox0 = h * m.th, w * m.tw
        if p.onchip_out is None:
            self.stores.append([Store("out", acc_base + ob * m.th * m.tw, m.tw, th_a, tw_a,
                                      (((n * p.nsg + g) * p.ocb_max + ob0 + ob) * s.oh + oy0) * s.ow + ox0, s.ow)
                                for ob in range(toc_a)])
            return
        o, tile_stores = p.onchip_out, []  # FORWARD each output block into the next layer's resident image
        for ob in range(toc_a):
            dst, lane0, rows, cols = p.forward_target(n, g * p.ocb_max + ob0 + ob, oy0, ox0, th_a, tw_a)
            tile_stores.append(Forward(acc_base + ob * m.th * m.tw, m.tw, rows, cols, dst, o.pitch, lane0, o.lanes,
                                       o.bits))
        self.stores.append(tile_stores)

    def finish(self) -> Program:
        """The program pushed since :meth:`start`, with its dependency tokens."""
        p = self.plan
        computes = [tuple(c[:4]) for c in self.computes]
        if len(self.loads) != len(computes) or not computes or not computes[-1][2] or \
                sum(c[2] for c in computes) != len(self.stores):
            raise TirLowerError("the TIR run pushed an incomplete program (a GEMM without its loads or epilogue)")
        return Program(tuple(link(self.loads, computes, self.stores, p.nbuf)), p.w_bits, p.a_bits, p.regions())


def tir_program(plan: LayerPlan, prefix: str | None = None) -> Program:
    """The instruction stream of ``plan`` as its scheduled, tensorized and built TIR pushes it (the recorder's
    packed functions are removed again afterwards: the built module is not kept)."""
    layer = TirLayer(plan, prefix)
    try:
        return layer.run()
    finally:
        layer.recorder.unregister(layer.prefix)
