"""Dense and 1x1 layers lowered through TVM: TE compute, an s_tir schedule tensorized into the accelerator's
intrinsics, and a recorder that turns what the built TIR pushes into the instruction stream the simulator runs.

This is the TIR-driven path of issue 15 for ``dense`` layers and 1x1, stride-1, unpadded convolutions (the compile
target uses it for dense layers; kxk / strided / padded / depthwise convolutions still go through
:func:`lower.lower`).

* **Compute** (TE, on the DRAM regions of :mod:`lower`, int32 codes): ``C[n, ob, y, x, b, o] = sum_{ib, i}
  A[n, ib, y, x, b, i] * W[ob, ib, o, i]`` (the GEMM on blocks, int32 accumulate; dense is a 1x1 image) and the
  epilogue ``E = C + bias`` (accumulator output) or ``E = clamp(((C + bias) * mult + 2**(shift-1)) >> shift + zp,
  lo, hi)`` (code output).
* **Schedule** (``tvm.s_tir.Schedule``): the output-channel blocks are split by the mapping's ``toc``, the output
  rows / columns by ``th`` / ``tw`` and the input-channel blocks by ``tic``; the tile loops run in the mapping's
  ``order`` (``oc_sp``: output-channel tiles outer, ``sp_oc``: spatial tiles outer) with the reduction tiles
  innermost; the reduction's init is decomposed at the reduction-tile loop. The operands are staged by
  ``cache_read`` blocks placed (``compute_at``) under the innermost non-trivial loop they depend on -- so a tile
  is loaded again only when it changes, which is the residency rule of :func:`lower.lower` -- and the epilogue
  is ``reverse_compute_at`` the output tile.
* **Tensorize**: the inner GEMM tile becomes the ``gemm`` intrinsic, the init the ``reset`` intrinsic, the staging
  copies the ``load_inp`` / ``load_wgt`` DMA intrinsics and the epilogue the ``alu_store`` intrinsic. Each
  intrinsic's implementation is one ``T.call_packed`` into the runtime with the tile's DRAM offsets (taken from the
  buffer regions the schedule matched) and sizes.
* **Runtime** (:class:`TirRecorder`): packed functions registered under a per-kernel prefix receive those calls
  in the order the compiled TIR makes them and build the instructions. The runtime owns what VTA's runtime owned:
  buffer slots (double buffering: slot = tile count mod slots), the micro-op table of each intrinsic and its
  prologue load, a zero-row sync LOAD for a step whose operands were resident, the expansion of an input-tile DMA
  into one 2-D LOAD per channel block, and the dependency tokens (:func:`lower.link`).

Only mappings whose tiles divide the layer are scheduled this way (:func:`tir_supported`); others keep
:func:`lower.lower`. The built function's operands are not read: the simulator gets the DRAM image from the host.
"""

from __future__ import annotations

import uuid

import numpy as np
import tvm
from tvm import s_tir, te

from ..errors import Error
from .isa import Alu, Gemm, Load, Program, Store
from .lower import LayerPlan, link


class TirLowerError(Error):
    """A layer or mapping the TIR-driven lowering does not handle: use :func:`tvm_mp.accel.lower.lower`."""


def tir_supported(plan: LayerPlan) -> bool:
    """True when ``plan`` is a dense layer or a 1x1, stride-1, unpadded, ungrouped convolution whose tiles divide
    the layer (``toc`` the output blocks, ``tic`` the input blocks, ``th`` / ``tw`` the output rows / columns)."""
    s, m = plan.shape, plan.mapping
    pointwise = s.kh == s.kw == 1 and tuple(s.params.strides) == (1, 1) and not any(s.params.padding)
    return (pointwise and s.groups == 1 and plan.nsg == 1 and plan.ocb_max % m.toc == 0
            and plan.icb_max % m.tic == 0 and s.oh % m.th == 0 and s.ow % m.tw == 0)


# -- intrinsics ---------------------------------------------------------------------------------------------------
def _strides(rank: int) -> str:
    return "[" + ", ".join("T.int32()" for _ in range(rank)) + "]"


def _buffer(var: str, handle: str, shape: tuple[int, ...]) -> str:
    return (f"    {var} = T.match_buffer({handle}, {shape}, \"int32\", offset_factor=1, "
            f"strides={_strides(len(shape))})\n")


def _intrin_source(buffers: list[tuple[str, str, tuple]], loops: list[tuple[str, int, str]], stmt: str,
                   reads: list[str], writes: list[str], call: str | None, iters: tuple[str, ...] = ()) -> str:
    """TVMScript of an intrinsic's description (``call`` None) or implementation. ``loops``: ``(name, extent,
    'S'|'R')``; loops of extent 1 stay loops but get no block iterator (index 0), as the schedule's blockize
    leaves them."""
    handles = ", ".join(f"{h}: T.handle" for _, h, _ in buffers)
    src = f"@T.prim_func(s_tir=True)\ndef f({handles}):\n"
    for var, h, shape in buffers:
        src += _buffer(var, h, shape)
    src += "    with T.sblock(\"root\"):\n"
    src += f"        T.reads({', '.join(reads)})\n        T.writes({', '.join(writes)})\n"
    if call is not None:
        return src + f"        T.evaluate({call})\n"
    live = [(n, e, k) for n, e, k in loops if e > 1]
    if iters:  # block iterators in the compute's order (spatial, then reduction), not the loop order
        live.sort(key=lambda x: iters.index(x[0]))
    body = stmt
    for n, e, _ in loops:
        body = body.replace("{" + n + "}", ("v" + n) if e > 1 else "0")
    grid = ", ".join(str(e) for _, e, _ in loops)
    names = ", ".join(n for n, _, _ in loops)
    src += f"        for {names} in T.grid({grid}):\n"
    src += "            with T.sblock(\"update\"):\n"
    if live:
        vs = ", ".join("v" + n for n, _, _ in live)
        kinds = "".join(k for _, _, k in live)
        src += f"                {vs} = T.axis.remap(\"{kinds}\", [{', '.join(n for n, _, _ in live)}])\n"
    return src + "                " + body + "\n"


def _parse(src: str):
    return tvm.script.from_source(src)


def _full(shape: tuple[int, ...]) -> str:
    return ", ".join(f"0:{d}" for d in shape)


def _register(name: str, buffers, loops, stmt, reads, writes, call: str, iters: tuple[str, ...] = ()) -> None:
    desc = _parse(_intrin_source(buffers, loops, stmt, reads, writes, None, iters))
    impl = _parse(_intrin_source(buffers, loops, stmt, reads, writes, call, iters))
    s_tir.TensorIntrin.register(name, desc, impl, override=True)


class TirLayer:
    """One dense or pointwise-conv layer scheduled and built through TVM (see the module docstring); ``run``
    executes the built TIR and returns the :class:`Program` its packed calls pushed."""

    def __init__(self, plan: LayerPlan, prefix: str | None = None):
        if not tir_supported(plan):
            raise TirLowerError(f"the TIR-driven lowering handles dense and 1x1 stride-1 unpadded conv layers whose "
                                f"tiles divide the layer; mapping {plan.mapping} on this layer does not: use "
                                "accel.lower.lower")
        self.plan = plan
        self.prefix = prefix or f"tvm_mp.accel.tir.k{uuid.uuid4().hex[:12]}"
        self.recorder = TirRecorder(plan)
        self._built = None

    # -- shapes ----------------------------------------------------------------------------------------------------
    @property
    def dims(self) -> dict[str, int]:
        p, m = self.plan, self.plan.mapping
        return {"nb": p.nb, "icb": p.icb_max, "ocb": p.ocb_max, "H": p.shape.h, "W": p.shape.w, "B": p.batch,
                "BI": p.bi, "BO": p.bo, "toc": m.toc, "tic": m.tic, "th": m.th, "tw": m.tw,
                "pp": p.output.params_per_block}

    def compute(self):
        """The TE tensors ``(A, W, P, C, E)`` (a 1x1 stride-1 convolution: output pixels = input pixels)."""
        d, out = self.dims, self.plan.output
        A = te.placeholder((d["nb"], d["icb"], d["H"], d["W"], d["B"], d["BI"]), "int32", name="A")
        W = te.placeholder((d["ocb"], d["icb"], d["BO"], d["BI"]), "int32", name="W")
        P = te.placeholder((d["ocb"], d["pp"], d["B"], d["BO"]), "int32", name="P")
        ib = te.reduce_axis((0, d["icb"]), "ib")
        i = te.reduce_axis((0, d["BI"]), "i")
        C = te.compute((d["nb"], d["ocb"], d["H"], d["W"], d["B"], d["BO"]),
                       lambda n, ob, y, x, b, o: te.sum(A[n, ib, y, x, b, i] * W[ob, ib, o, i], axis=[ib, i]),
                       name="C")
        if out.kind == "acc":
            E = te.compute(C.shape, lambda n, ob, y, x, b, o: C[n, ob, y, x, b, o] + P[ob, 0, b, o], name="E")
        else:
            E = te.compute(C.shape, lambda n, ob, y, x, b, o: _requant(C[n, ob, y, x, b, o] + P[ob, 0, b, o],
                                                                       P[ob, 1, b, o], P[ob, 2, b, o], out),
                           name="E")
        return A, W, P, C, E

    # -- intrinsics ------------------------------------------------------------------------------------------------
    def _register_intrinsics(self) -> dict[str, str]:
        d, pre, out = self.dims, self.prefix, self.plan.output
        toc, tic, th, tw, B, BI, BO, pp = (d[k] for k in ("toc", "tic", "th", "tw", "B", "BI", "BO", "pp"))
        a_t, w_t, c_t = (1, tic, th, tw, B, BI), (toc, tic, BO, BI), (1, toc, th, tw, B, BO)
        names = {k: f"{pre}.{k}" for k in ("gemm", "reset", "load_inp", "load_wgt", "alu_store")}
        _register(names["gemm"], [("A", "a", a_t), ("W", "w", w_t), ("C", "c", c_t)],
                  [("ob", toc, "S"), ("ib", tic, "R"), ("y", th, "S"), ("x", tw, "S"), ("b", B, "S"),
                   ("o", BO, "S"), ("i", BI, "R")],
                  "C[0, {ob}, {y}, {x}, {b}, {o}] = C[0, {ob}, {y}, {x}, {b}, {o}] + "
                  "A[0, {ib}, {y}, {x}, {b}, {i}] * W[{ob}, {ib}, {o}, {i}]",
                  [f"C[{_full(c_t)}]", f"A[{_full(a_t)}]", f"W[{_full(w_t)}]"], [f"C[{_full(c_t)}]"],
                  f"T.call_packed(\"{names['gemm']}\", A.elem_offset, W.elem_offset, C.elem_offset, {toc}, {tic})",
                  iters=("ob", "y", "x", "b", "o", "ib", "i"))
        _register(names["reset"], [("C", "c", c_t)],
                  [("ob", toc, "S"), ("y", th, "S"), ("x", tw, "S"), ("b", B, "S"), ("o", BO, "S")],
                  "C[0, {ob}, {y}, {x}, {b}, {o}] = 0", [], [f"C[{_full(c_t)}]"],
                  f"T.call_packed(\"{names['reset']}\", C.elem_offset, {toc})")
        _register(names["load_inp"], [("A", "a", a_t), ("S", "s", a_t)],
                  [("n", 1, "S"), ("ib", tic, "S"), ("y", th, "S"), ("x", tw, "S"), ("b", B, "S"), ("i", BI, "S")],
                  "S[0, {ib}, {y}, {x}, {b}, {i}] = A[0, {ib}, {y}, {x}, {b}, {i}]", [f"A[{_full(a_t)}]"],
                  [f"S[{_full(a_t)}]"], f"T.call_packed(\"{names['load_inp']}\", A.elem_offset, {tic})")
        _register(names["load_wgt"], [("W", "w", w_t), ("S", "s", w_t)],
                  [("ob", toc, "S"), ("ib", tic, "S"), ("o", BO, "S"), ("i", BI, "S")],
                  "S[{ob}, {ib}, {o}, {i}] = W[{ob}, {ib}, {o}, {i}]", [f"W[{_full(w_t)}]"], [f"S[{_full(w_t)}]"],
                  f"T.call_packed(\"{names['load_wgt']}\", W.elem_offset, {toc}, {tic})")
        p_t = (toc, pp, B, BO)
        acc = "C[0, {ob}, {y}, {x}, {b}, {o}] + P[{ob}, 0, {b}, {o}]"
        expr = acc if out.kind == "acc" else _requant_script(acc, "P[{ob}, 1, {b}, {o}]", "P[{ob}, 2, {b}, {o}]", out)
        _register(names["alu_store"], [("C", "c", c_t), ("P", "p", p_t), ("E", "e", c_t)],
                  [("n", 1, "S"), ("ob", toc, "S"), ("y", th, "S"), ("x", tw, "S"), ("b", B, "S"), ("o", BO, "S")],
                  "E[0, {ob}, {y}, {x}, {b}, {o}] = " + expr,
                  [f"C[{_full(c_t)}]", f"P[{_full(p_t)}]"], [f"E[{_full(c_t)}]"],
                  f"T.call_packed(\"{names['alu_store']}\", C.elem_offset, E.elem_offset, {toc})")
        return names

    # -- schedule --------------------------------------------------------------------------------------------------
    def schedule(self) -> s_tir.Schedule:
        """The tiled, staged and tensorized schedule (module docstring)."""
        A, W, P, C, E = self.compute()
        names = self._register_intrinsics()
        d, m = self.dims, self.plan.mapping
        sch = s_tir.Schedule(te.create_prim_func([A, W, P, E]))
        c = sch.get_sblock("C")
        n, ob, y, x, b, o, ib, i = sch.get_loops(c)
        obo, obi = sch.split(ob, [None, m.toc])
        yo, yi = sch.split(y, [None, m.th])
        xo, xi = sch.split(x, [None, m.tw])
        ibo, ibi = sch.split(ib, [None, m.tic])
        loops = {"n": n, "obo": obo, "yo": yo, "xo": xo, "ibo": ibo}
        extent = {"n": d["nb"], "obo": d["ocb"] // m.toc, "yo": d["H"] // m.th, "xo": d["W"] // m.tw,
                  "ibo": d["icb"] // m.tic}
        outer = ["obo", "n", "yo", "xo"] if m.order == "oc_sp" else ["n", "yo", "xo", "obo"]
        nest = outer + ["ibo"]
        sch.reorder(*[loops[k] for k in nest], obi, ibi, yi, xi, b, o, i)
        # the epilogue runs once per output tile: under the innermost output-tile loop
        sch.reverse_compute_at(sch.get_sblock("E"), loops[outer[-1]], preserve_unit_loops=True)
        for operand, deps, intrin, rank in ((0, {"n", "yo", "xo", "ibo"}, names["load_inp"], 6),
                                            (1, {"obo", "ibo"}, names["load_wgt"], 4)):
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
            self._built = tvm.compile(self.schedule().mod, target="llvm")
        return self._built

    def run(self) -> Program:
        """Execute the built TIR (the operands are not read: the intrinsics push instructions) and return the
        program it pushed."""
        ex = self.build()
        d, dev = self.dims, tvm.cpu()
        args = [np.zeros(shape, "int32") for shape in (
            (d["nb"], d["icb"], d["H"], d["W"], d["B"], d["BI"]), (d["ocb"], d["icb"], d["BO"], d["BI"]),
            (d["ocb"], d["pp"], d["B"], d["BO"]), (d["nb"], d["ocb"], d["H"], d["W"], d["B"], d["BO"]))]
        self.recorder.start()
        ex["main"](*[tvm.runtime.tensor(a, dev) for a in args])
        return self.recorder.finish()


def _requant(acc, mult, shift, out):
    x = acc.astype("int64") * mult.astype("int64") + (tvm.tirx.const(1, "int64") << (shift.astype("int64") - 1))
    x = (x >> shift.astype("int64")) + tvm.tirx.const(out.zero_point, "int64")
    return tvm.te.max(tvm.te.min(x, tvm.tirx.const(out.hi, "int64")), tvm.tirx.const(out.lo, "int64")).astype("int32")


def _requant_script(acc: str, mult: str, shift: str, out) -> str:
    x = (f"T.Cast(\"int64\", {acc}) * T.Cast(\"int64\", {mult}) + T.shift_left(T.int64(1), "
         f"T.Cast(\"int64\", {shift}) - T.int64(1))")
    x = f"T.shift_right({x}, T.Cast(\"int64\", {shift})) + T.int64({out.zero_point})"
    return f"T.Cast(\"int32\", T.max(T.min({x}, T.int64({out.hi})), T.int64({out.lo})))"


_LOAD_ORDER = {"uop": 0, "acc": 1, "inp": 2, "wgt": 3}
_INTRINSICS = ("gemm", "reset", "load_inp", "load_wgt", "alu_store")


class TirRecorder:
    """The accelerator runtime the TIR calls: builds the instruction stream from the intrinsic calls in the order
    they arrive (see the module docstring for what it decides itself)."""

    def __init__(self, plan: LayerPlan):
        self.plan = plan
        self.start()

    def start(self) -> None:
        self.loads: list[list] = [[]]
        self.computes: list = []
        self.stores: list[list] = []
        self.pending_reset = None
        self.tiles = {"inp": -1, "wgt": -1, "acc": -1}
        self.first = True

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

    def _prologue(self) -> None:
        p = self.plan
        if self.first:
            self.loads[-1][:0] = [Load("uop", "uops", 0, p.uop_total, 0, p.uop_total, 1, p.uop_total),
                                  Load("acc", "params", 0, p.param_entries, p.param_base, p.param_entries, 1,
                                       p.param_entries)]
            self.first = False

    def _load_inp(self, dram_offset, tic) -> None:
        p, m, s = self.plan, self.plan.mapping, self.plan.shape
        entry = int(dram_offset) // (p.batch * p.bi)  # ((n * icb + ib0) * H + y0) * W + x0
        blk, y, x = entry // (s.h * s.w), (entry // s.w) % s.h, entry % s.w
        self.tiles["inp"] += 1
        base = self._base("inp")
        y0, pt, vy, pb = p.window(0, y // m.th)
        x0, pl, vx, pr = p.window(1, x // m.tw)
        for ib in range(int(tic)):
            self.loads[-1].append(Load("inp", "inp", (blk + ib) * s.h * s.w + y0 * s.w + x0, s.w,
                                       base + ib * p.in_th * p.in_pitch, p.in_pitch, vy if vx else 0,
                                       vx if vy else 0, pt if vx else pt + vy, pb, pl, pr if vy else pr + vx,
                                       p.zero_point))

    def _load_wgt(self, dram_offset, toc, tic) -> None:
        p = self.plan
        entry = int(dram_offset) // (p.bo * p.bi)
        self.tiles["wgt"] += 1
        taps = p.shape.taps
        self.loads[-1].append(Load("wgt", "wgt", entry * taps, p.icb_max * taps, self._base("wgt"),
                                   int(tic) * taps, int(toc), int(tic) * taps))

    def _reset(self, acc_offset, toc) -> None:
        p, m = self.plan, self.plan.mapping
        self.tiles["acc"] += 1
        u0, u1 = p.uop_offsets[("reset", int(toc))]
        self.pending_reset = Gemm(u0, u1, m.th, m.tw, self._base("acc"), 0, 0, (m.tw, 1), reset=True)

    def _gemm(self, inp_offset, wgt_offset, acc_offset, toc, tic) -> None:
        p, m = self.plan, self.plan.mapping
        sh, sw = p.shape.params.strides
        self._prologue()
        if not self.loads[-1]:
            self.loads[-1].append(Load("inp", "inp", 0, 0, 0, 0, 0, 0))  # sync: passes tokens only
        # the DMA queue issues a step's loads micro-ops/params first, then input, then weight tiles, whatever
        # loop level of the TIR issued them (a stable order: the same stream as lower.lower)
        self.loads[-1].sort(key=lambda ins: _LOAD_ORDER[ins.buffer])
        u0, u1 = p.uop_offsets[("gemm", int(toc), int(tic))]
        step = [self.pending_reset] if self.pending_reset is not None else []
        step.append(Gemm(u0, u1, m.th, m.tw, self._base("acc"), self._base("inp"), self._base("wgt"), (m.tw, 1),
                         (sh * p.in_pitch, sw), (0, 0), dataflow=m.dataflow))
        self.computes.append([step, self.pending_reset is not None, False, self.tiles["acc"]])
        self.pending_reset = None
        self.loads.append([])

    def _alu_store(self, acc_offset, out_offset, toc) -> None:
        p, m, out, s = self.plan, self.plan.mapping, self.plan.output, self.plan.shape
        toc = int(toc)
        entry = int(out_offset) // (p.batch * p.bo)  # ((n * ocb + ob0) * OH + y0) * OW + x0 (C may be compacted)
        ocb0 = (entry // (s.oh * s.ow)) % p.ocb_max
        u0, u1 = p.uop_offsets[("alu", toc)]
        src = p.param_base + ocb0 * out.params_per_block
        acc_base = self._base("acc")
        step = self.computes[-1]
        for op in out.alu_ops:
            imm = {"add_imm": out.zero_point, "max_imm": out.lo, "min_imm": out.hi}.get(op, 0)
            step[0].append(Alu(op, u0, u1, m.th, m.tw, acc_base, (m.tw, 1), src + (1 if op == "mul_shift" else 0),
                               (0, 0), imm))
        step[2] = True
        self.stores.append([Store("out", acc_base + ob * m.th * m.tw, m.tw, m.th, m.tw, entry + ob * s.oh * s.ow,
                                  s.ow) for ob in range(toc)])

    def finish(self) -> Program:
        """The program pushed since :meth:`start`, with its dependency tokens."""
        p = self.plan
        loads = self.loads[:-1]
        computes = [tuple(c) for c in self.computes]
        if len(loads) != len(computes) or not computes or not computes[-1][2]:
            raise TirLowerError("the TIR run pushed an incomplete program (a GEMM without its loads or epilogue)")
        return Program(tuple(link(loads, computes, self.stores, p.nbuf)), p.w_bits, p.a_bits, p.regions())


def tir_program(plan: LayerPlan, prefix: str | None = None) -> Program:
    """The instruction stream of ``plan`` as its scheduled, tensorized and built TIR pushes it (the recorder's
    packed functions are removed again afterwards: the built module is not kept)."""
    layer = TirLayer(plan, prefix)
    try:
        return layer.run()
    finally:
        layer.recorder.unregister(layer.prefix)
