"""Event counts of tvm-mp's kernels, read from the kernels themselves, and the feature matrix of learned models.

Counting works on the TIR of a kernel (``tvm_mp.schedules.kernels``), before scheduling, so it counts the work
the algorithm does rather than guessing it:

* every block's **iteration points** (the product of its loop extents) and, for reductions, its output points;
* per point, the **data operations** of the block's update -- every operation with a buffer value among its
  operands, common subexpressions counted once, index arithmetic not counted -- by class: 32-bit popcount,
  integer multiply / other integer op (32 and 64 bit), float multiply / other float op;
* per point, the **bytes loaded** (one load per distinct buffer element read; a reduction's own accumulator is a
  register) and, per output point, the **bytes stored**;
* per buffer, its **footprint**: arguments (codes, stored weights, epilogue parameters, output) and intermediates.

:func:`tir_events` walks a real PrimFunc. :class:`KernelCounter` gives the same numbers for thousands of
workloads per millisecond: the points and footprints are closed-form products of the workload's sizes (the
loops the TE computes build), and the per-point operations come from walking one small kernel of the same
structure (op family, kernel kind, weight container, epilogue), cached per counter. The tests check the two
agree exactly on random shapes and bit-widths.

Memory levels (a documented, simple model -- see docs/cost_models.md): every counted load/store is an L1 access;
L2 moves each buffer's footprint once (arguments) or twice (intermediates: written, then read); DRAM moves the
arguments' footprint once (cold caches, layer at a time).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from .base import EPILOGUES, KERNEL_KINDS, OPS, CostModelError, Workload, require_kinds, target_family

WORD_BITS = 32
#: Classes of kernel blocks, in the order the kernels compute them.
BLOCK_CLASSES = ("bitpack", "popcount_acc", "packed_acc", "act_sum", "offset", "epilogue")
#: TIR block name -> block class.
BLOCK_NAMES = {"bitpack": "bitpack", "bitserial_acc": "popcount_acc", "packed_acc": "packed_acc",
               "window_sum": "act_sum", "row_sum": "act_sum", "bitserial_offset": "offset",
               "dequantize": "epilogue", "requantize": "epilogue"}
#: Operation classes (per-event energies in :mod:`tvm_mp.cost_models.energy_cpu` use the same names).
OP_CLASSES = ("popcount", "int_mul", "int_alu", "int64_mul", "int64_alu", "float_mul", "float_alu")
#: Bytes at each memory level.
BYTE_EVENTS = ("l1_load_bytes", "l1_store_bytes", "l2_bytes", "dram_bytes")
#: Every event a kernel is counted in.
EVENTS = OP_CLASSES + BYTE_EVENTS + tuple(f"points_{c}" for c in BLOCK_CLASSES)

_TARGET_FAMILIES = ("x86_64", "aarch64", "accel")


def container_bits(bits: np.ndarray | int):
    """Bits per stored weight of the packed kernel (1, 2, 4 or 8), as :mod:`tvm_mp.quantize.packing`."""
    b = np.asarray(bits)
    return np.where(b == 1, 1, np.where(b == 2, 2, np.where(b <= 4, 4, 8)))


def op_class(op_name: str, dtype: str) -> str:
    """The class of one TIR operation (``Mul``/``Add``/``tirx.popcount``/...) of result type ``dtype``."""
    if op_name.endswith("popcount"):
        return "popcount"
    mul = op_name == "Mul"
    if dtype.startswith(("float", "bfloat")):
        return "float_mul" if mul else "float_alu"
    if dtype.endswith("64"):
        return "int64_mul" if mul else "int64_alu"
    return "int_mul" if mul else "int_alu"


# ---- walking a real PrimFunc ---------------------------------------------------------------------------------
_LEAVES = {"Var", "SizeVar", "IntImm", "FloatImm", "StringImm"}


def _kind(node) -> str:
    return type(node).__name__


def _is_load(node) -> bool:
    return _kind(node) in ("TensorLoad", "BufferLoad")


def _load_name(node) -> str:
    src = getattr(node, "source", None)
    return str(src.name if src is not None else node.buffer.name)


def _children(node) -> list:
    k = _kind(node)
    if _is_load(node) or k in _LEAVES:
        return []
    if k == "Cast":
        return [node.value]
    if k == "Select":
        return [node.condition, node.true_value, node.false_value]
    if k == "Not":
        return [node.a]
    if k == "Call":
        return list(node.args)
    if hasattr(node, "a") and hasattr(node, "b"):
        return [node.a, node.b]
    raise CostModelError(f"cannot count TIR expression of type {k}; extend tvm_mp.cost_models.features")


def _dtype_bits(dtype) -> int:
    text = str(dtype)
    digits = "".join(ch for ch in text.split("x")[0] if ch.isdigit())
    return int(digits) if digits else 32


def _count_update(value, self_name: str) -> tuple[Counter, dict[str, str]]:
    """Data operations (by class) and distinct loads (name -> dtype) of one point of a block's update."""
    import tvm_ffi

    ops: Counter = Counter()
    loads: dict[str, str] = {}
    seen: set = set()
    data_memo: dict = {}

    def has_data(node) -> bool:
        key = tvm_ffi.structural_hash(node)
        if key not in data_memo:
            data_memo[key] = _is_load(node) or any(has_data(c) for c in _children(node))
        return data_memo[key]

    def visit(node) -> None:
        key = tvm_ffi.structural_hash(node)
        if key in seen:
            return
        seen.add(key)
        if _is_load(node):
            name = _load_name(node)
            if name != self_name:
                loads[name] = str(node.ty.dtype)
            return
        if _kind(node) in _LEAVES or not has_data(node):
            return
        if _kind(node) != "Cast":  # conversions are free (register moves or folded)
            op = str(node.op.name) if _kind(node) == "Call" else _kind(node)
            ops[op_class(op, str(node.ty.dtype))] += 1
        for child in _children(node):
            visit(child)

    visit(value)
    return ops, loads


def _leaf_blocks(func) -> list[tuple[object, list[int]]]:
    out = []

    def rec(stmt, extents):
        k = _kind(stmt)
        if k == "SBlockRealize":
            rec(stmt.block, extents)
        elif k == "SBlock":
            if stmt.name_hint == "root":
                rec(stmt.body, extents)
            else:
                out.append((stmt, extents))
        elif k == "For":
            rec(stmt.body, extents + [int(stmt.extent)])
        elif k == "SeqStmt":
            for s in stmt.seq:
                rec(s, extents)
        else:
            raise CostModelError(f"cannot count TIR statement {k}: tir_events takes unscheduled tvm-mp kernels")

    rec(func.body, [])
    return out


def _footprint(shape, dtype) -> int:
    return math.prod(int(s) for s in shape) * _dtype_bits(dtype) // 8


def tir_events(func) -> dict[str, int]:
    """Events (:data:`EVENTS`) of one unscheduled tvm-mp kernel PrimFunc (``schedule=False``)."""
    events = Counter({name: 0 for name in EVENTS})
    args = sum(_footprint(p.ty.shape, p.ty.dtype) for p in func.params)
    root = func.body.block
    inter = sum(_footprint(b.shape, b.dtype) for b in root.alloc_buffers)
    for block, extents in _leaf_blocks(func):
        cls = BLOCK_NAMES.get(block.name_hint)
        if cls is None:
            raise CostModelError(f"unknown kernel block {block.name_hint!r}: add it to features.BLOCK_NAMES")
        store = block.body
        points = math.prod(extents)
        spatial = math.prod(int(iv.dom.extent) for iv in block.iter_vars if int(iv.iter_type) == 0)
        ops, loads = _count_update(store.value, str(store.buffer.name))
        for name, count in ops.items():
            events[name] += count * points
        events["l1_load_bytes"] += points * sum(_dtype_bits(dt) // 8 for dt in loads.values())
        events["l1_store_bytes"] += spatial * _dtype_bits(store.buffer.dtype) // 8
        events[f"points_{cls}"] += points
    events["l2_bytes"] = args + 2 * inter
    events["dram_bytes"] = args
    return dict(events)


# ---- closed form ---------------------------------------------------------------------------------------------
_OP_ID = {op: i for i, op in enumerate(OPS)}
_KIND_ID = {k: i for i, k in enumerate(KERNEL_KINDS)}
_EPI_ID = {e: i for i, e in enumerate(EPILOGUES)}
RAW_FIELDS = ("op", "kind", "epilogue", "n", "c", "h", "w", "oc", "kh", "kw", "sh", "sw", "pt", "pl", "pb", "pr",
              "dh", "dw", "g", "oh", "ow", "w_bits", "a_bits")


def raw_fields(workloads: Sequence[Workload]) -> dict[str, np.ndarray]:
    """Integer arrays of every workload's sizes (dense as a 1x1 conv on a 1x1 image with C = K).

    Integer kernel kinds only: the features describe the bit-serial / packed kernels (the number-format kinds
    are refused with a :class:`CostModelError`)."""
    require_kinds(workloads, KERNEL_KINDS, "the kernel features (and so the XGBoost cost model)")
    rows = []
    for wl in workloads:
        ins, wts = wl.input_shape, wl.weight_shape
        if wl.op == "dense":
            rows.append((_OP_ID["dense"], _KIND_ID[wl.kind], _EPI_ID[wl.epilogue], ins[0], ins[1], 1, 1, wts[0],
                         1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, wl.w_bits, wl.a_bits))
        else:
            p = wl.params
            out = wl.output_shape
            rows.append((_OP_ID[wl.op], _KIND_ID[wl.kind], _EPI_ID[wl.epilogue], ins[0], ins[1], ins[2], ins[3],
                         wts[0], wts[2], wts[3], *p.strides, *p.padding, *p.dilation, p.groups, out[2], out[3],
                         wl.w_bits, wl.a_bits))
    arr = np.array(rows, dtype=np.int64).reshape(len(rows), len(RAW_FIELDS))
    return {name: arr[:, i] for i, name in enumerate(RAW_FIELDS)}


def _structure_keys(raw: Mapping[str, np.ndarray]) -> np.ndarray:
    """Integer id of the (op family, kind, weight class, epilogue) structure of each workload."""
    family = (raw["op"] == _OP_ID["dense"]).astype(np.int64)
    bitserial = raw["kind"] == _KIND_ID["bitserial"]
    wclass = np.where(bitserial, np.where(raw["w_bits"] == 1, 1, 2), container_bits(raw["w_bits"]))
    return ((family * 2 + raw["kind"]) * 16 + wclass) * 4 + raw["epilogue"]


def _encode_key(family: str, kind: str, wclass: int, epi: str) -> int:
    """The structure id of :func:`_structure_keys` for one structure (the inverse of :func:`_decode_key`)."""
    return ((int(family == "dense") * 2 + _KIND_ID[kind]) * 16 + wclass) * 4 + _EPI_ID[epi]


def _decode_key(key: int) -> tuple[str, str, int, str]:
    epi = EPILOGUES[key % 4]
    key //= 4
    wclass = key % 16
    key //= 16
    kind = KERNEL_KINDS[key % 2]
    family = "dense" if key // 2 else "conv2d"
    return family, kind, wclass, epi


@dataclass(frozen=True)
class _Template:
    """Per-point operations and bytes of each block class of one kernel structure."""

    ops: Mapping[str, Mapping[str, int]]  # block class -> op class -> count per point
    load_bytes: Mapping[str, int]  # block class -> bytes loaded per point
    store_bytes: Mapping[str, int]  # block class -> bytes stored per output point


def _canonical_kernel(family: str, kind: str, wclass: int, epi: str):
    """A small unscheduled kernel with the given structure (what the template is read from)."""
    from ..schedules.kernels import Epilogue, conv2d_kernel, dense_kernel
    from ..workload import ConvParams

    w_bits = wclass if kind == "packed" else (1 if wclass == 1 else 2)
    epilogue = {"acc": Epilogue("acc"), "float": Epilogue("float", 0.0, None),
                "requant": Epilogue("requant", 0, 3, 1)}[epi]
    r = 18
    if kind == "bitserial":
        data_shape = (2, 1 if w_bits == 1 else w_bits, 1)
    else:
        data_shape = (2, -(-r // (8 // wclass)))
    if family == "dense":
        return dense_kernel("count", kind, w_bits, 2, (1, r), 2, epilogue, data_shape, schedule=False)
    return conv2d_kernel("count", kind, w_bits, 2, (1, 2, 5, 5), (2, 2, 3, 3), ConvParams((1, 1), (1, 1, 1, 1)),
                         1, epilogue, data_shape, schedule=False)


def _template_of(func) -> _Template:
    ops: dict = {}
    load_bytes: dict = {}
    store_bytes: dict = {}
    for block, _ in _leaf_blocks(func):
        cls = BLOCK_NAMES.get(block.name_hint)
        if cls is None:
            raise CostModelError(f"unknown kernel block {block.name_hint!r}: add it to features.BLOCK_NAMES")
        store = block.body
        counted, loads = _count_update(store.value, str(store.buffer.name))
        ops[cls] = dict(counted)
        load_bytes[cls] = sum(_dtype_bits(dt) // 8 for dt in loads.values())
        store_bytes[cls] = _dtype_bits(store.buffer.dtype) // 8
    return _Template(ops, load_bytes, store_bytes)


def block_points(raw: Mapping[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Closed-form (iteration points, output points) of every block class, per workload (0 where absent)."""
    n, oc, g, oh, ow = raw["n"], raw["oc"], raw["g"], raw["oh"], raw["ow"]
    a = raw["a_bits"]
    cg = raw["c"] // g
    r = cg * raw["kh"] * raw["kw"]
    words = (r + WORD_BITS - 1) // WORD_BITS
    planes = np.where(raw["w_bits"] == 1, 1, raw["w_bits"])
    bitserial = raw["kind"] == _KIND_ID["bitserial"]
    binary = bitserial & (raw["w_bits"] == 1)
    out = n * oc * oh * ow
    zero = np.zeros_like(out)
    pack_out = n * a * g * oh * ow * words
    return {
        "bitpack": (np.where(bitserial, pack_out * WORD_BITS, 0), np.where(bitserial, pack_out, 0)),
        "popcount_acc": (np.where(bitserial, out * planes * a * words, 0), np.where(bitserial, out, 0)),
        "packed_acc": (np.where(bitserial, 0, out * r), np.where(bitserial, 0, out)),
        "act_sum": (np.where(binary, n * g * oh * ow * r, 0), np.where(binary, n * g * oh * ow, 0)),
        "offset": (np.where(binary, out, 0), np.where(binary, out, 0)),
        "epilogue": (np.where(raw["epilogue"] == _EPI_ID["acc"], zero, out),) * 2,
    }


def unpack_points(raw: Mapping[str, np.ndarray]) -> np.ndarray:
    """Weights each workload's built kernel unpacks per call: packed kernels with sub-byte containers unpack
    their ``OC x R`` weights once per call (the ``wunpack`` block of :mod:`tvm_mp.schedules.computes`, ``R`` padded
    to whole packing blocks), not once per MAC as the unscheduled compute reads them; 0 for other kernels."""
    from ..schedules.computes import PACK_BLOCK

    cw = container_bits(raw["w_bits"])
    step = (8 // cw) * PACK_BLOCK
    r = (raw["c"] // raw["g"]) * raw["kh"] * raw["kw"]
    sub_byte = (raw["kind"] == _KIND_ID["packed"]) & (cw < 8)
    return np.where(sub_byte, raw["oc"] * (-(-r // step) * step), 0)


def footprints(raw: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form bytes of the kernel arguments and of its intermediate buffers, per workload."""
    n, c, oc, g, oh, ow = raw["n"], raw["c"], raw["oc"], raw["g"], raw["oh"], raw["ow"]
    r = (c // g) * raw["kh"] * raw["kw"]
    words = (r + WORD_BITS - 1) // WORD_BITS
    planes = np.where(raw["w_bits"] == 1, 1, raw["w_bits"])
    bitserial = raw["kind"] == _KIND_ID["bitserial"]
    binary = bitserial & (raw["w_bits"] == 1)
    epi = raw["epilogue"]
    out = n * oc * oh * ow
    per_byte = 8 // container_bits(raw["w_bits"])
    weights = np.where(bitserial, oc * planes * words * 4 + planes * 4, oc * ((r + per_byte - 1) // per_byte))
    params = np.select([epi == _EPI_ID["float"], epi == _EPI_ID["requant"]], [oc * 8, oc * 20], 0)
    out_bytes = np.where(epi == _EPI_ID["requant"], out, out * 4)
    args = n * c * raw["h"] * raw["w"] + weights + params + out_bytes
    # intermediates: every block output except the last one (the kernel's output argument)
    inter = np.where(bitserial, n * raw["a_bits"] * g * oh * ow * words * 4, 0)
    inter += np.where(binary, n * g * oh * ow * 4 + out * 4, 0)  # window sum + accumulator before the offset
    last_is_acc = epi == _EPI_ID["acc"]
    inter += np.where(last_is_acc, 0, out * 4)  # accumulator (or offset result) before the epilogue
    return args, inter


class KernelCounter:
    """Events of many workloads at once (closed form + per-structure templates read from the TIR, cached here)."""

    def __init__(self) -> None:
        self._templates: dict[int, _Template] = {}

    def template(self, key: int) -> _Template:
        if key not in self._templates:
            self._templates[key] = _template_of(_canonical_kernel(*_decode_key(int(key))))
        return self._templates[key]

    def events(self, workloads: Sequence[Workload] | Mapping[str, np.ndarray],
               points: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
               unpack_per_mac: bool = False) -> dict[str, np.ndarray]:
        """``{event: int64 array}`` for :data:`EVENTS`, one entry per workload. ``points``: block points to count
        instead of :func:`block_points` (e.g. :func:`built_block_points`).

        Sub-byte packed weights are unpacked once per weight (:func:`unpack_points`: one load, the unpacking
        operations and one store per weight), as the built kernels do; ``unpack_per_mac=True`` counts the
        unpacking in every MAC instead, as the unscheduled compute (:func:`tir_events`) reads it."""
        raw = workloads if isinstance(workloads, Mapping) else raw_fields(workloads)
        count = raw["n"].shape[0]
        out = {name: np.zeros(count, dtype=np.int64) for name in EVENTS}
        points = block_points(raw) if points is None else points
        keys = _structure_keys(raw)
        unpacks = None if unpack_per_mac else unpack_points(raw)
        for key in np.unique(keys):
            mask = keys == key
            tpl = self.template(int(key))
            family, kind, wclass, epi = _decode_key(int(key))
            mac = None
            if unpacks is not None and kind == "packed" and wclass < 8:
                # the MAC of 8-bit weights; what the sub-byte template does beyond it is the unpacking
                mac = self.template(_encode_key(family, kind, 8, epi)).ops["packed_acc"]
                u = unpacks[mask]
                for op, per in tpl.ops["packed_acc"].items():
                    out[op][mask] += (per - mac.get(op, 0)) * u
                out["l1_load_bytes"][mask] += u
                out["l1_store_bytes"][mask] += u
            for cls, (pts, spatial) in points.items():
                if cls not in tpl.ops:
                    continue
                p, s = pts[mask], spatial[mask]
                for op, per in (mac if mac is not None and cls == "packed_acc" else tpl.ops[cls]).items():
                    out[op][mask] += per * p
                out["l1_load_bytes"][mask] += tpl.load_bytes[cls] * p
                out["l1_store_bytes"][mask] += tpl.store_bytes[cls] * s
        for cls, (pts, _) in points.items():
            out[f"points_{cls}"] = pts
        args, inter = footprints(raw)
        out["l2_bytes"] = args + 2 * inter
        out["dram_bytes"] = args
        return out


# ---- feature matrix of learned models -------------------------------------------------------------------------
_SIZE_FEATURES = ("n", "c", "h", "w", "oc", "kh", "kw", "sh", "sw", "dh", "dw", "g", "oh", "ow", "w_bits", "a_bits")


def knob_feature_names(workloads: Sequence[Workload]) -> list[str]:
    """Knob columns for a training set: ``name`` for numeric knobs, ``name=value`` for each string value."""
    names = set()
    for wl in workloads:
        for k, v in wl.knobs:
            names.add(k if isinstance(v, (int, float)) else f"{k}={v}")
    return sorted(names)


#: Optional feature groups (a model file lists the ones it was trained with; none = the original features).
#: ``"schedule"``: the kernel variant the build picks for the workload (:func:`schedule_fields`); ``"built"``: the
#: work of that variant as the build lays it out and tiles it (:func:`built_fields`) -- with it, the XGBoost
#: model's roofline prior also counts the accumulate and bit-packing points as built (:func:`built_block_points`).
FEATURE_SETS = ("schedule", "built")
#: Algorithms of the CPU schedules (``tvm_mp.schedules.registry.algorithms_for``).
ALGORITHMS = ("direct", "direct64", "im2col", "depthwise", "dense")
_SCHEDULE_FEATURES = tuple(f"algo={a}" for a in ALGORITHMS) + (
    "oc_block", "p_unroll", "dot_split", "algo_words", "algo_word_fill", "log2_algo_popcount_points",
    "log2_weight_bytes", "log2_act_bytes")
_BUILT_FEATURES = ("built_pixel_fill", "built_oc_block", "built_p_unroll", "log2_built_acc_points",
                   "built_acc_ratio", "log2_built_pack_points", "built_epilogue_lanes", "built_epilogue_tail")


def _check_sets(feature_sets: Sequence[str]) -> tuple[str, ...]:
    sets = tuple(str(s) for s in feature_sets)
    unknown = [s for s in sets if s not in FEATURE_SETS]
    if unknown:
        raise CostModelError(f"unknown feature set(s) {', '.join(unknown)}: this tvm-mp has {', '.join(FEATURE_SETS)}")
    return sets


def feature_names(knob_names: Sequence[str] = (), feature_sets: Sequence[str] = ()) -> tuple[str, ...]:
    names = [f"op={o}" for o in OPS] + [f"kind={k}" for k in KERNEL_KINDS] + [f"epilogue={e}" for e in EPILOGUES]
    names += [f"target={t}" for t in _TARGET_FAMILIES]
    names += list(_SIZE_FEATURES) + ["pad_top", "pad_left", "pad_bottom", "pad_right", "padded_sides",
                                     "kernel_area", "cg", "kg", "reduction", "words", "word_fill", "full_words",
                                     "planes", "container", "log2_macs", "log2_out", "log2_out_hw"]
    names += [f"log2_{e}" for e in EVENTS]
    sets = _check_sets(feature_sets)
    if "schedule" in sets:
        names += list(_SCHEDULE_FEATURES)
    if "built" in sets:
        names += list(_BUILT_FEATURES)
    names += [f"knob:{k}" for k in knob_names]
    return tuple(names)


def _default_config(wl: Workload, cache: dict):
    """(algorithm, oc_block, p_unroll, lanes, parallel, dot form) of the schedule's default config for ``wl`` on its
    target (dot form: dense, ``kernels.dense_dot``; depthwise, ``kernels.window_dot``)
    (None when the target has no CPU schedule). Tuned configs are not looked up: a tuning database is the build's,
    not the workload's. Cached without the bit-widths, but for the one property of them a dot form depends on: the
    CPU schedules pick the algorithm and tiling from the shapes and the kernel kind (the bit-widths choose only the
    dot-product intrinsic, and whether a dot form runs: dense with one-byte weights, ``kernels.dense_dot``; the
    depthwise window form on aarch64 with codes below 128, ``arm_cpu.has_window_dot``), and a look-up takes
    milliseconds.

    A workload of device ``"host"`` whose target is this machine's cost key (``"llvm"`` on x86-64) was built for
    ``target="host"``: its config is looked up for the host target (its vector width: 8 int32 lanes with AVX2,
    where plain ``"llvm"`` has 4)."""
    dot_bits = container_bits(wl.w_bits) == 8 if wl.op == "dense" else wl.a_bits <= 7
    key = (wl.op, wl.kind, wl.input_shape, wl.weight_shape, wl.params, wl.target, wl.device, dot_bits)
    if key not in cache:
        from ..schedules.kernels import conv_workload, dense_dot, dense_workload, window_dot
        from ..schedules.registry import lookup
        from ..targets import parse

        try:
            if ("target", wl.target, wl.device) not in cache:  # parsing a target takes milliseconds: once per cache
                if "host_key" not in cache:
                    cache["host_key"] = parse("host").cost_key
                host = wl.device == "host" and wl.target == cache["host_key"]
                cache[("target", wl.target, wl.device)] = parse("host" if host else wl.target).tvm_target
            target = cache[("target", wl.target, wl.device)]
            if wl.op == "dense":
                work = dense_workload(wl.kind, wl.w_bits, wl.a_bits, wl.input_shape, wl.weight_shape)
            else:
                work = conv_workload(wl.kind, wl.w_bits, wl.a_bits, wl.input_shape, wl.weight_shape, wl.params)
            cfg = lookup(work.op, work.kind, target).default(work, target)
            dot = dense_dot(work, cfg) if wl.op == "dense" else window_dot(work, cfg, target)
            cache[key] = (cfg.algorithm, cfg.oc_block, cfg.p_unroll, cfg.lanes, bool(cfg.parallel), dot)
        except Exception:  # no CPU schedule for this target (an accelerator): the columns stay missing
            cache[key] = None
    return cache[key]


def schedule_fields(workloads: Sequence[Workload], raw: Mapping[str, np.ndarray],
                    cache: dict | None = None) -> list[np.ndarray]:
    """The ``"schedule"`` feature columns: the algorithm the build picks (one-hot), its tiling, whether a packed
    kernel takes the exact split dot (8-bit codes x 8-bit weights), the words a bit-serial output point reduces
    over *as that algorithm packs them* (direct: a word per kernel tap and 32 channels, direct64: per 64
    channels; im2col and dense: the whole window packed densely) and how full they are, the popcount points with
    those words, and the weight and activation footprints."""
    cache = {} if cache is None else cache
    n = len(workloads)
    algo = np.full(n, "", dtype=object)
    ocb = np.full(n, np.nan)
    pun = np.full(n, np.nan)
    for i, wl in enumerate(workloads):
        found = _default_config(wl, cache)
        if found is not None:
            algo[i], ocb[i], pun[i] = found[:3]
    cg = raw["c"] // raw["g"]
    taps = raw["kh"] * raw["kw"]
    r = cg * taps
    per_tap64 = taps * ((cg + 63) // 64) * 2  # in 32-bit words, to compare with the others
    words = np.where(algo == "direct", taps * ((cg + WORD_BITS - 1) // WORD_BITS),
                     np.where(algo == "direct64", per_tap64,
                              np.where(algo == "depthwise", taps, (r + WORD_BITS - 1) // WORD_BITS))).astype(np.float64)
    bitserial = raw["kind"] == _KIND_ID["bitserial"]
    planes = np.where(raw["w_bits"] == 1, 1, raw["w_bits"]) * raw["a_bits"]
    out = raw["n"] * raw["oc"] * raw["oh"] * raw["ow"]
    pop = np.where(bitserial, out * planes * words, 0).astype(np.float64)
    split = (~bitserial) & (raw["w_bits"] == 8) & (raw["a_bits"] == 8)
    weight_bytes = raw["oc"] * r * np.where(bitserial, np.where(raw["w_bits"] == 1, 1, raw["w_bits"]),
                                            container_bits(raw["w_bits"])) / 8.0
    act_bytes = raw["n"] * raw["c"] * raw["h"] * raw["w"] * np.where(bitserial, raw["a_bits"] / 8.0, 1.0)
    cols = [(algo == a).astype(np.float64) for a in ALGORITHMS]
    cols += [ocb, pun, split.astype(np.float64), np.where(bitserial, words, np.nan),
             np.where(bitserial, r / np.maximum(words * WORD_BITS, 1), np.nan), np.log2(1.0 + pop),
             np.log2(1.0 + weight_bytes), np.log2(1.0 + act_bytes)]
    return cols


def _fit_pow2(want: int, extent: int) -> int:
    """Largest power of two <= ``want`` dividing ``extent`` (the tile the schedule really uses: see
    ``tvm_mp.schedules.tiled._fit``)."""
    b = max(1, int(want))
    while b > 1 and extent % b:
        b //= 2
    return b


def _pow2_ge(n: int) -> int:
    p = 1
    while p < n:
        p *= 2
    return p


def built_fields(workloads: Sequence[Workload], raw: Mapping[str, np.ndarray],
                 cache: dict | None = None) -> dict[str, np.ndarray]:
    """The work of each workload's kernel as the build lays it out (the default config's algorithm on its target;
    NaN where the target has no CPU schedule), read off the kernel geometry of :mod:`tvm_mp.schedules`:

    - ``pixels``: output positions computed per output channel: ``direct`` / ``direct64`` compute the flat
      padded phase plane (``OH x row pitch``, rounded up to the vector lanes), ``im2col`` ``OH*OW`` rounded up to
      the lanes, ``depthwise`` each row padded to its vector (stride-1 rows shorter than a vector: unpadded,
      :func:`~tvm_mp.schedules.computes.depthwise_row_pitch`; an odd row count of short rows rounded up to even,
      :func:`~tvm_mp.schedules.computes.depthwise_acc_rows`); ``pixel_fill`` = ``OH*OW / pixels``;
    - ``oc_block`` / ``p_unroll``: the register tile the schedule really uses (the config's, halved until it
      divides the loop it tiles);
    - ``acc_points``: iteration points of the accumulate block as built: packed, MACs over the padded reduction
      (channels to quads per tap for ``direct``, the window to quads for ``im2col``, the reduction to the vector
      width for dense); bit-serial, popcounts over the words that algorithm packs (a word per tap and 32 channels
      for ``direct``, per 64 for ``direct64``, the dense window for ``im2col``) x weight planes x activation
      bits; bit-serial ``depthwise`` decodes its planes and does integer MACs;
    - ``pack_points``: bit-serial bit-packing points as built (bits gathered into words; into bytes where a
      ``direct`` kernel's plane is the codes), 0 for packed kernels;
    - ``epilogue_lanes`` / ``epilogue_tail``: the conv epilogue's vector width as a fraction of the target's lanes,
      and the fraction of its elements left to a scalar tail (the loop it vectorizes: a row; rows shorter than a
      vector fused with the rows of their channel, or with the channel loop when vectors then still stay inside
      one channel: ``tvm_mp.schedules.tiled``; full vectors, then the remainder in vectors of its binary digits,
      where no power of two fills a vector and the loop is a row or the accumulator's rows are as long as the
      output's: ``epilogue_partitioned``).
    """
    cache = {} if cache is None else cache
    n_wl = len(workloads)
    out = {k: np.full(n_wl, np.nan) for k in ("pixels", "pixel_fill", "oc_block", "p_unroll", "acc_points",
                                               "pack_points", "epilogue_lanes", "epilogue_tail")}
    out["int_macs"] = np.zeros(n_wl, dtype=bool)  # bit-serial depthwise: the accumulate is integer MACs
    if n_wl:
        from ..schedules.computes import depthwise_acc_rows, depthwise_row_pitch, flat_plane, window_lanes
        from ..schedules.tiled import epilogue_partitioned, epilogue_row_pieces, pow2_lanes
    for i, wl in enumerate(workloads):
        found = _default_config(wl, cache)
        if found is None:
            continue
        algo, ocb, pun, lanes, parallel, dot_form = found
        n, c, h, w, oc = (int(raw[k][i]) for k in ("n", "c", "h", "w", "oc"))
        kh, kw, g, oh, ow = (int(raw[k][i]) for k in ("kh", "kw", "g", "oh", "ow"))
        bitserial = wl.kind == "bitserial"
        planes = (1 if wl.w_bits == 1 else wl.w_bits) * wl.a_bits
        cg = c // g
        r = cg * kh * kw
        pack = 0
        if algo == "dense" and dot_form:  # a lane per output feature, the reduction in quads
            pixels, eff_pu, dense_rows = 1, pun, False
            acc = n * (-(-oc // lanes) * lanes) * (-(-r // 4) * 4)
        elif algo == "dense":
            length = -(-r // WORD_BITS) if bitserial else r
            vw = min(lanes, _pow2_ge(length))
            red = -(-length // vw) * vw
            pixels, eff_pu, dense_rows = 1, pun, False  # no conv epilogue rows
            acc = n * oc * (planes * red if bitserial else red)
            pack = n * wl.a_bits * red * min(WORD_BITS, r) if bitserial else 0
        elif algo in ("direct", "direct64"):
            p = wl.params
            fp = flat_plane((h, w), (kh, kw), p.padding, p.dilation, lanes, p.strides)
            pixels = fp.p_out
            dense_rows = fp.wq == ow
            eff_pu = _fit_pow2(pun, pixels // lanes)
            cwords = -(-cg // WORD_BITS)
            if not bitserial:
                acc = n * oc * pixels * kh * kw * (-(-cg // 4) * 4)
            else:
                words = -(-cwords // 2) if algo == "direct64" else cwords
                acc = n * oc * pixels * planes * kh * kw * words
                if algo == "direct" and fp.is_codes:  # packed a byte of 8 channels at a time (computes.plane_bits)
                    pack = n * wl.a_bits * -(-cg // 8) * fp.phases * fp.length * min(8, cg)
                else:
                    pack = n * wl.a_bits * cwords * fp.phases * fp.length * min(WORD_BITS, cg)
        elif algo == "im2col":
            pixels = -(-(oh * ow) // lanes) * lanes
            dense_rows = True
            eff_pu = _fit_pow2(pun, pixels // lanes)
            if not bitserial:
                acc = n * oc * pixels * (-(-r // 4) * 4)
            else:
                words = -(-r // WORD_BITS)
                acc = n * oc * pixels * planes * words
                pack = n * g * words * wl.a_bits * pixels * min(WORD_BITS, r)
        elif dot_form:  # depthwise window form: rows in vectors of window_lanes, kernel rows in tap quads
            window = window_lanes(ow, lanes)
            pixels = oh * (-(-ow // window) * window)
            eff_pu = 1
            acc = n * oc * pixels * kh * (-(-kw // 4) * 4)
            out["int_macs"][i] = bitserial
        else:  # depthwise
            owp = depthwise_row_pitch(ow, wl.params.strides, lanes)
            pixels = depthwise_acc_rows(oh, owp, wl.params.strides, lanes) * owp
            dense_rows = owp == ow
            eff_pu = 1
            acc = n * oc * pixels * kh * kw
            out["int_macs"][i] = bitserial
        if algo == "depthwise" and dot_form:  # each row: vectors of window lanes, the rest in binary digits
            vec, tail = min(window, 1 << (ow.bit_length() - 1)), (ow % 2) / ow
        elif epilogue_row_pieces(ow, lanes, algo in ("direct", "direct64"), dense_rows):  # a row's binary digits
            vec, tail = 1 << (ow.bit_length() - 1), (ow % 2) / ow
        else:
            ext = ow  # the epilogue loop that is vectorized
            fused = algo != "dense" and ow < lanes
            if fused:  # rows fused with the rows of their channel
                ext = oh * ow
            elif algo == "dense":
                ext = n * oc
            vec = pow2_lanes(ext, lanes)
            if algo != "dense" and (dense_rows or not fused) and epilogue_partitioned(ext, lanes):
                vec = lanes  # full vectors, then the remainder in vectors of its binary digits
            tail = (ext % vec) / ext
        out["epilogue_lanes"][i] = vec / lanes
        out["epilogue_tail"][i] = tail
        out["pixels"][i] = pixels
        out["pixel_fill"][i] = oh * ow / pixels
        out["oc_block"][i] = _fit_pow2(ocb, oc)
        out["p_unroll"][i] = eff_pu
        out["acc_points"][i] = acc
        out["pack_points"][i] = pack
    return out


def built_block_points(raw: Mapping[str, np.ndarray], built: Mapping[str, np.ndarray]
                       ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """:func:`block_points` with the accumulate and bit-packing blocks counted as built (:func:`built_fields`);
    workloads without a CPU schedule keep the counted points."""
    points = {k: (v[0].copy(), v[1].copy()) for k, v in block_points(raw).items()}
    known = np.isfinite(built["acc_points"])
    bitserial = raw["kind"] == _KIND_ID["bitserial"]
    int_macs = known & built["int_macs"]
    acc = np.where(known, built["acc_points"], 0).astype(np.int64)
    computed = (raw["n"] * raw["oc"] * np.where(known, built["pixels"], 0)).astype(np.int64)
    pop_pts, pop_out = points["popcount_acc"]
    pk_pts, pk_out = points["packed_acc"]
    sel = known & bitserial & ~int_macs
    pop_pts[sel], pop_out[sel] = acc[sel], computed[sel]
    pop_pts[int_macs], pop_out[int_macs] = 0, 0
    sel = known & (~bitserial | int_macs)
    pk_pts[sel], pk_out[sel] = acc[sel], computed[sel]
    bp_pts, bp_out = points["bitpack"]
    sel = known & bitserial
    pack = np.where(known, built["pack_points"], 0).astype(np.int64)
    bp_pts[sel] = pack[sel]
    bp_out[sel] = pack[sel] // WORD_BITS
    return points


def feature_matrix(workloads: Sequence[Workload], counter: KernelCounter, knob_names: Sequence[str] = (),
                   events: Mapping[str, np.ndarray] | None = None,
                   raw: Mapping[str, np.ndarray] | None = None, feature_sets: Sequence[str] = (),
                   schedule_cache: dict | None = None, built: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """float32 ``[n, len(feature_names(knob_names))]``: one-hot categories, sizes, log2 event counts, knobs.

    ``knob_names`` (see :func:`knob_feature_names`): a numeric knob is one column, a string knob one 0/1 column
    per value seen in training; knobs a workload does not set are NaN (XGBoost's missing value). ``events`` /
    ``raw``: the workloads' events and raw fields when the caller has them already. ``feature_sets``: optional
    groups of :data:`FEATURE_SETS` (``schedule_cache``: a dict that keeps the schedule look-ups between calls;
    ``built``: the workloads' :func:`built_fields` when the caller has them already).
    """
    feature_sets = _check_sets(feature_sets)
    workloads = list(workloads)
    raw = raw if raw is not None else raw_fields(workloads)
    ev = events if events is not None else counter.events(raw)
    n = len(workloads)
    cols = []
    for i in range(len(OPS)):
        cols.append(raw["op"] == i)
    for i in range(len(KERNEL_KINDS)):
        cols.append(raw["kind"] == i)
    for i in range(len(EPILOGUES)):
        cols.append(raw["epilogue"] == i)
    fams = np.array([target_family(wl.target) for wl in workloads]) if n else np.zeros(0, dtype=str)
    for fam in _TARGET_FAMILIES:
        cols.append(fams == fam)
    for name in _SIZE_FEATURES:
        cols.append(raw[name])
    cg = raw["c"] // raw["g"]
    r = cg * raw["kh"] * raw["kw"]
    words = (r + WORD_BITS - 1) // WORD_BITS
    out = raw["n"] * raw["oc"] * raw["oh"] * raw["ow"]
    pads = [raw["pt"], raw["pl"], raw["pb"], raw["pr"]]  # a padded side keeps a bounds check in the inner loop
    cols += pads + [sum((p > 0).astype(np.int64) for p in pads), raw["kh"] * raw["kw"], cg, raw["oc"] // raw["g"],
                    r, words, r / (words * WORD_BITS), (r % WORD_BITS) == 0,
                    np.where(raw["w_bits"] == 1, 1, raw["w_bits"]), container_bits(raw["w_bits"]),
                    np.log2(out * r), np.log2(out), np.log2(raw["oh"] * raw["ow"])]
    for name in EVENTS:
        cols.append(np.log2(1.0 + ev[name]))
    if "schedule" in feature_sets:
        cols += schedule_fields(workloads, raw, schedule_cache)
    if "built" in feature_sets:
        built = built if built is not None else built_fields(workloads, raw, schedule_cache)
        counted = np.where(raw["kind"] == _KIND_ID["bitserial"], ev["points_popcount_acc"], ev["points_packed_acc"])
        cols += [built["pixel_fill"], built["oc_block"], built["p_unroll"], np.log2(1.0 + built["acc_points"]),
                 built["acc_points"] / np.maximum(counted, 1), np.log2(1.0 + built["pack_points"]),
                 built["epilogue_lanes"], built["epilogue_tail"]]
    for knob in knob_names:  # "name" for a numeric knob, "name=value" for one value of a string knob
        name, _, value = knob.partition("=")
        col = np.full(n, np.nan)
        for i, wl in enumerate(workloads):
            for k, v in wl.knobs:
                if k != name:
                    continue
                if value:
                    col[i] = float(str(v) == value)
                elif isinstance(v, (int, float)):
                    col[i] = float(v)
        cols.append(col)
    return np.column_stack([np.asarray(c, dtype=np.float32) for c in cols]) if n else np.zeros(
        (0, len(feature_names(knob_names, feature_sets))), dtype=np.float32)
