"""Our schedule space against TVM's MetaSchedule on the same TE computes (issue 17, "what to build" 2).

For ImageNet-scale layers of ``bench/kernels.py``'s realistic set, at each variant (packed w8a8; bit-serial w1a1 /
w2a2 with ``--variants``), the kernel a tvm-mp build uses (:func:`tvm_mp.schedules.kernels.fast_conv2d` with the
config the build picks: tuning database, else defaults; pre-packed weights; int32 accumulator output) is:

* ``ours``: scheduled by our tiled schedule (``tvm_mp/schedules/tiled.py``);
* ``ms``: the *unscheduled* PrimFunc of the same compute, tuned by ``tvm.s_tir.meta_schedule.tune_tir`` (xgb cost
  model, evolutionary search, ``--trials`` measured candidates, one core). The rules are MetaSchedule's default
  LLVM rules plus ``MultiLevelTilingWithIntrin`` with our AVX2 dot intrinsic
  (``tvm_mp/schedules/intrinsics.py``) and the ``RewriteTensorize`` postprocessor; whether MetaSchedule can map
  the intrinsic onto the block (``get_auto_tensorize_mapping_info``) is recorded per layer.

The best MetaSchedule schedule is checked bit-exact against ours (same random codes and weights, same int32
output), then ``ours``, ``ms`` and onnxruntime int8 (the same layer as a one-layer QDQ model, ``bench/kernels.py``
helpers; its time includes quantizing the float input) are timed in one process, one thread, interleaved rounds
(median round). The onnxruntime time is a whole call (quantize + conv + dequantize); ``ours`` and ``ms`` time the
integer kernel alone (no quantize, no epilogue), called from Python.

    python bench/meta_schedule.py [--layers "64-64,256-256,..."] [--variants packed_w8a8] [--trials 64]

Writes ``docs/data/bench_meta_schedule.json`` (one entry per layer x variant, saved after each; ``--resume`` keeps
the entries already there; ``--out`` another file, for runs in parallel, joined by ``--merge FILE...``) and
``docs/bench_meta_schedule.md`` (with ``docs/data/bench_meta_schedule_notes.md``, the reading, appended).
``--ms-workdir DIR`` evaluates the records of a tuning run that was stopped (its MetaSchedule work directory)
instead of tuning.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TVM_NUM_THREADS", "1")  # before TVM starts its thread pool (and MS's runner inherits it)

import numpy as np  # noqa: E402
from models import _kernels_bench  # noqa: E402  (bench/models.py: this script's folder is on sys.path)

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs"
DATA = DOCS / "data" / "bench_meta_schedule.json"
NOTES = DOCS / "data" / "bench_meta_schedule_notes.md"
#: The layers compared (substrings of ``bench/kernels.py``'s REALISTIC names).
LAYERS = ("r18 conv3x3 64-64 56x56", "r18 conv3x3 256-256 14x14", "mv2 pointwise 96-576 14x14",
          "mv2 depthwise3x3 s2 144ch 56x56")


def ms_target(target):
    """The host target with ``num-cores`` 1 (MetaSchedule needs it; one core: no parallel loops, like our
    one-thread timing)."""
    import tvm

    attrs = {k: v for k, v in target.export().items() if k in ("kind", "mcpu", "mattr", "mtriple")}
    return tvm.target.Target({**attrs, "num-cores": 1})


def kernel_pair(info, w_bits: int, a_bits: int, kind: str, target, seed: int = 0):
    """``(work, config, config source, ours PrimFunc, unscheduled PrimFunc, operands, intrin name or None, zero
    point)`` of one layer."""
    from tvm_mp.schedules import kernels, tuning, x86

    work = kernels.conv_workload(kind, w_bits, a_bits, info.input_shape, info.weight_shape, info.params)
    config, source = kernels.config_for(work, target)
    rng = np.random.default_rng(seed)
    zp = int(rng.integers(0, 1 << a_bits))
    codes, data, _ = tuning.random_operands(work, zp, rng, config)
    args = (work, zp, kernels.Epilogue("acc"), data[0].shape, config, target)
    ours = kernels.fast_conv2d(*args, schedule=True)
    raw = kernels.fast_conv2d(*args, schedule=False)
    out = np.zeros((work.in_shape[0], work.weight_shape[0], *work.out_hw), np.int32)
    intrin = x86.dot_intrin(target, config, work)
    return work, config, source, ours, raw, [codes, *data, out], intrin, zp


def intrin_mappable(raw, intrin: str | None) -> dict:
    """Whether MetaSchedule's auto-tensorization can map ``intrin`` onto the accumulator block (what
    ``MultiLevelTilingWithIntrin`` checks first), and whether plain ``tile_with_tensor_intrin`` finds a loop
    mapping (what our schedule relies on)."""
    import tvm
    from tvm.s_tir import TensorIntrin
    from tvm.s_tir.schedule.analysis import get_auto_tensorize_mapping_info, get_tensorize_loop_mapping

    if intrin is None:
        return {"intrin": None}
    sch = tvm.s_tir.Schedule(raw)
    blocks = [b for b in ("dot_acc", "dw_acc", "bitserial_acc") if _has_block(sch, b)]
    if not blocks:
        return {"intrin": intrin, "block": None}
    block = sch.get_sblock(blocks[0])
    desc = TensorIntrin.get(intrin).desc
    return {"intrin": intrin, "block": blocks[0], "reads": [str(r) for r in sch.get(block).reads],
            "auto_tensorize_mapping": get_auto_tensorize_mapping_info(sch, block, desc) is not None,
            "loop_mapping": get_tensorize_loop_mapping(sch, block, desc) is not None}


def _has_block(sch, name: str) -> bool:
    try:
        sch.get_sblock(name)
        return True
    except Exception:  # no such block
        return False


def ms_space(intrin: str | None):
    """MetaSchedule's default LLVM rules, with the tensorize rule for ``intrin`` first (when given)."""
    from tvm.s_tir import meta_schedule as ms

    # the default LLVM rules, with explicit unrolling capped at 64 steps: at 512 a candidate's LLVM build took
    # over 3 minutes of wall time on this loaded host (every one of the first batch timed out)
    rules = [ms.schedule_rule.ParallelizeVectorizeUnroll(max_jobs_per_core=16, max_vectorize_extent=64,
                                                         unroll_max_steps=[0, 16, 64], unroll_explicit=True)
             if isinstance(r, ms.schedule_rule.ParallelizeVectorizeUnroll) else r
             for r in ms.schedule_rule.ScheduleRule.create("llvm")]
    post = list(ms.postproc.Postproc.create("llvm"))
    if intrin is not None:
        # our word intrinsic's description writes a local accumulator (our schedule caches the tile there); the
        # byte form writes any scope, as TVM's own x86 VNNI rule sets it up
        reuse = (ms.schedule_rule.ReuseType("may", [1, 2], "global") if intrin == BYTE_INTRIN
                 else ms.schedule_rule.ReuseType("must", [1], "local"))
        rules.insert(0, ms.schedule_rule.MultiLevelTilingWithIntrin(intrin, "SSRSRS", max_innermost_factor=64,
                                                                    reuse_write=reuse))
        post.append(ms.postproc.RewriteTensorize(vectorize_init_loop=True))
    return ms.space_generator.PostOrderApply(sch_rules=rules, postprocs=post, mutator_probs="llvm")


#: The byte-operand form of our AVX2 split dot intrinsic (registered by :func:`ensure_byte_intrin`).
BYTE_INTRIN = "tvm_mp_bench_u8s8_dot_8x4_avx2_bytes"


def ensure_byte_intrin() -> str:
    """Register (idempotent) the AVX2 split u8 x s8 dot of ``tvm_mp.schedules.intrinsics`` with its codes as a
    ``uint8 [8, 4]`` operand instead of eight ``uint32`` words. Same instructions, same bytes in memory; but the
    description indexes every operand by the loop variables only, which MetaSchedule's auto-tensorization needs
    (our word form selects the byte by shifting with the reduction variable, which its comparator cannot map)."""
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    if TensorIntrin.get(BYTE_INTRIN, allow_missing=True) is not None:
        return BYTE_INTRIN

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (8, 4), "uint8", offset_factor=1)
        B = T.match_buffer(b, (4,), "int8", offset_factor=1)
        C = T.match_buffer(c, (8,), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:8], A[0:8, 0:4], B[0:4])
            T.writes(C[0:8])
            for i, k in T.grid(8, 4):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + T.Cast("int32", A[vi, vk]) * T.Cast("int32", B[vk])

    ones = T.Broadcast(T.int16(1), 16)

    def madd(codes, weights):
        prod = T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.ub.sw"), codes, weights,
                                       dtype="int16x16")
        return T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"), prod, ones,
                                       dtype="int32x8")

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (8, 4), "uint8", offset_factor=1)
        B = T.match_buffer(b, (4,), "int8", offset_factor=1)
        C = T.match_buffer(c, (8,), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:8], A[0:8, 0:4], B[0:4])
            T.writes(C[0:8])
            codes = A.vload([0, 0], "uint8x32")
            weights = T.reinterpret(T.broadcast(T.reinterpret(B.vload([0], "int8x4"), dtype="int32"), 8),
                                    dtype="int8x32")
            C[T.ramp(T.int32(0), 1, 8)] = C.vload([0], "int32x8") + madd(
                T.bitwise_and(codes, T.Broadcast(T.uint8(0x7F), 32)), weights) + madd(
                T.bitwise_and(codes, T.Broadcast(T.uint8(0x80), 32)), weights)

    TensorIntrin.register(BYTE_INTRIN, desc, impl)
    return BYTE_INTRIN


def byte_view_direct(work, zero_point: int, weight_data_shape, config):
    """The packed ``direct`` kernel's compute (stride 1, groups 1) read through byte views: channel quads as
    ``uint8 [N, C4, 1, L, 4]`` (the bytes of ``quads``' words) and weights as ``int8 [OC, KH, KW, C4, 4]`` (the
    bytes of ``wunpack``'s rows). Same operands and int32 output as :func:`tvm_mp.schedules.kernels.fast_conv2d`."""
    from tvm import te, tirx

    from tvm_mp.schedules import computes as C

    n, c, h, w = work.in_shape
    oc, _, kh, kw = work.weight_shape
    p = work.params
    fp = C.flat_plane((h, w), (kh, kw), p.padding, p.dilation, config.lanes, p.strides)
    if fp.phases != 1 or p.groups != 1 or work.kind != "packed":
        raise ValueError("the byte view covers stride-1 packed convs without groups")
    codes = te.placeholder((n, c, h, w), "uint8", "codes")
    packed = te.placeholder(tuple(weight_data_shape), "uint8", "packed_weights")
    padded = C.flat_padded(codes, fp, zero_point)
    c4 = -(-c // 4)
    quads = te.compute((n, c4, 1, fp.length, 4), lambda a, q4, ph, l, q: tirx.if_then_else(
        q4 * 4 + q < c, padded[a, tirx.min(q4 * 4 + q, c - 1), ph, l], tirx.const(0, "uint8")), name="quads8")
    wk = C.unpack_weights(packed, work.w_bits, oc, kh * kw * c4 * 4)
    wk5 = te.compute((oc, kh, kw, c4, 4), lambda o, y, x, r, q: wk[o, ((y * kw + x) * c4 + r) * 4 + q], name="wk5")
    ky, kx = te.reduce_axis((0, kh), "ky"), te.reduce_axis((0, kw), "kx")
    rc, q = te.reduce_axis((0, c4), "rc"), te.reduce_axis((0, 4), "q")
    acc = te.compute((n, oc, fp.p_out), lambda a, o, pp: te.sum(
        quads[a, rc, 0, pp + fp.tap_offset(ky, kx), q].astype("int32") * wk5[o, ky, kx, rc, q].astype("int32"),
        axis=[ky, kx, rc, q]), name="dot_acc")
    out = C.crop_flat(acc, *work.out_hw, fp.wq)
    return te.create_prim_func([codes, packed, out])


def ms_tune(raw, target, trials: int, intrin: str | None, seed: int = 0, population: int = 32,
            workdir: str | None = None):
    """``(best PrimFunc, trace text, tuning seconds, MS's measured best us, trials run)``."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    mod = tvm.IRModule({"main": raw})
    t0 = time.perf_counter()
    if workdir is not None:  # a stopped run's records (``--ms-workdir``): no tuning
        db = ms.database.JSONDatabase(str(Path(workdir) / "database_workload.json"),
                                      str(Path(workdir) / "database_tuning_record.json"), allow_missing=False)
        records = db.get_all_tuning_records()
        sch = ms.tir_integration.compile_tir(db, mod, target)
        return _best(sch, records, _logged_seconds(Path(workdir) / "logs"))
    with tempfile.TemporaryDirectory() as wd:
        db = ms.tune_tir(mod, target, wd, max_trials_global=trials, num_trials_per_iter=8,
                         builder=ms.builder.LocalBuilder(max_workers=1, timeout_sec=120),
                         runner=ms.runner.LocalRunner(timeout_sec=120, evaluator_config=ms.runner.EvaluatorConfig(
                             number=3, repeat=1, min_repeat_ms=20)),
                         cost_model="xgb", space=ms_space(intrin), num_tuning_cores=1, seed=seed,
                         strategy=ms.search_strategy.EvolutionarySearch(
                             population_size=population, init_min_unmeasured=8, genetic_num_iters=2))
        records = db.get_all_tuning_records()
        sch = ms.tir_integration.compile_tir(db, mod, target)
    return _best(sch, records, time.perf_counter() - t0)


def _logged_seconds(logs: Path) -> float:
    """Seconds from a tuning run's first log line to its last measured trial (MetaSchedule's log timestamps)."""
    import re
    from datetime import datetime

    stamps = [datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S") for f in logs.glob("*.log")
              for line in f.read_text().splitlines()
              if (m := re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) ", line))
              and ("Logging directory" in line or "Trial #" in line)]
    return (max(stamps) - min(stamps)).total_seconds() if stamps else float("nan")


def _best(sch, records, seconds):
    runs = [float(np.mean([float(c) for c in r.run_secs])) * 1e6 for r in records if r.run_secs]
    runs = [t for t in runs if t < 1e9]  # (failed builds / runs are recorded as 1e10 s)
    if sch is None:
        return None, "", seconds, None, len(records)
    return sch.mod["main"], str(sch.trace), seconds, (min(runs) if runs else None), len(records)
    # (the number of valid trials is len(runs); failures are in the work directory's task log)


def run(args) -> list[dict]:
    import tvm

    from tvm_mp import _tvm

    kb = _kernels_bench()
    target = kb.parse("host").tvm_target
    mst = ms_target(target)
    path = Path(args.out)
    saved = json.loads(path.read_text()) if args.resume and path.exists() else {}
    rows = saved.get("rows", [])
    done = {(r["name"], r["variant"]) for r in rows}
    layers = kb.realistic_layers(args.layers or ",".join(LAYERS))
    variants = args.variants.split(",")
    out = {"command": "python bench/meta_schedule.py " + " ".join(sys.argv[1:]), "machine": kb.machine_description(),
           "load_start": saved.get("load_start", list(os.getloadavg())), "trials": args.trials, "rows": rows,
           "date": time.strftime("%Y-%m-%d %H:%M")}
    peaks = saved.get("peaks") or kb.measure_peaks(repeats=7)
    out["peaks"] = peaks
    for idx, (name, info) in enumerate(layers):
        for variant in variants:
            if (name, variant) in done:
                continue
            w, a, kind = kb.REALISTIC_VARIANTS[variant]
            work, config, source, ours, raw, operands, intrin, zp = kernel_pair(info, w, a, kind, target, seed=idx)
            mapping = intrin_mappable(raw, intrin)
            print(f"[{name} {variant}] config {config} ({source}); intrinsic: {mapping}", flush=True)
            load_tune = os.getloadavg()
            lib_ours = _tvm.build(tvm.IRModule({"main": ours}), target)
            dev = [_tvm.to_device(x) for x in operands]
            lib_ours["main"](*dev)
            expected = dev[-1].numpy().copy()
            callables = {"ours": _kernel_call(lib_ours, operands)}
            tuned: dict = {}
            for form in args.ms.split(","):
                if form == "bytes":  # the byte view with the byte-operand intrinsic (packed direct convs only)
                    if not (kind == "packed" and config.algorithm == "direct" and info.params.strides == (1, 1)
                            and info.params.groups == 1):
                        continue
                    func, form_intrin = byte_view_direct(work, zp, operands[1].shape, config), ensure_byte_intrin()
                else:
                    func, form_intrin = raw, intrin
                best, trace, tune_s, ms_us, n_trials = ms_tune(func, mst, args.trials, form_intrin, seed=idx,
                                                               workdir=args.ms_workdir)
                print(f"  MetaSchedule ({form}): {n_trials} trials in {tune_s:.0f} s, its best {ms_us} us",
                      flush=True)
                exact = None
                if best is not None:
                    lib_ms = _tvm.build(tvm.IRModule({"main": best}), mst)
                    dev_ms = [_tvm.to_device(x) for x in operands]
                    lib_ms["main"](*dev_ms)
                    exact = bool(np.array_equal(dev_ms[-1].numpy(), expected))
                    if exact:
                        callables["ms" if form == "default" else f"ms_{form}"] = _kernel_call(lib_ms, operands)
                tuned[form] = {"trials": n_trials, "tune_s": tune_s, "tuner_best_us": ms_us, "bit_exact": exact,
                               "tensorized": best is not None and "pmadd" in best.script(), "trace": trace}
            model = kb.layer_onnx(info, seed=idx)
            calib = kb.calibration_inputs(info.input_shape)
            ort = kb.ort_sessions(model, calib)["ort_int8"]
            callables["ort_int8"] = kb.make_callable("ort_int8", ort, calib[0])
            cpu: dict = {}
            times = kb.interleaved_median_us(callables, args.repeats, target_s=0.02, cpu_out=cpu)
            row = {"name": name, "variant": variant, "macs": int(info.macs), "config": config.to_dict(),
                   "config_source": source, "intrinsic": mapping, "ms": tuned, "latency_us": times, "cpu_us": cpu,
                   "gmacs": {k: info.macs / (t * 1e-6) / 1e9 for k, t in times.items()},
                   "gmacs_cpu": {k: info.macs / (t * 1e-6) / 1e9 for k, t in cpu.items()},
                   "load_before_tuning": list(load_tune),
                   "faster": min((k for k in times if k != "ort_int8"), key=lambda k: times[k])}
            print("  " + " ".join(f"{k}={v:.0f}us ({row['gmacs'][k]:.1f} GMAC/s)" for k, v in times.items())
                  + f"; bit-exact {exact}; faster: {row['faster']}", flush=True)
            rows.append(row)
            out["load_end"] = list(os.getloadavg())
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(out, indent=1) + "\n")
    out["load_end"] = list(os.getloadavg())
    path.write_text(json.dumps(out, indent=1) + "\n")
    return rows


def _kernel_call(lib, operands):
    from tvm_mp import _tvm

    dev = [_tvm.to_device(x) for x in operands]
    fn = lib["main"]
    return lambda: fn(*dev)


def merge(paths: list[str]) -> dict:
    """One result from several runs' JSON files (rows in file order; loads: the first start, the last end)."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    out = dict(parts[0])
    out["rows"] = [r for part in parts for r in part["rows"]]
    out["commands"] = [part["command"] for part in parts]
    out["dates"] = [part["date"] for part in parts]
    out["loads"] = [(part["load_start"], part.get("load_end")) for part in parts]
    out["trials_per_run"] = [part["trials"] for part in parts]
    return out


def _fmt_load(load) -> str:
    return " / ".join(f"{x:.1f}" for x in load) if load else "?"


def render(data: dict, data_file: Path = DATA, notes: bool = True) -> str:
    m = data["machine"]
    rows = data["rows"]
    commands = data.get("commands", [data["command"]])
    out = ["# Our schedules against MetaSchedule (issue 17)", "",
           "Generated by `bench/meta_schedule.py` (method in its docstring); data in "
           f"`{data_file.resolve().relative_to(DOCS.parent)}`.", ""]
    out += [f"- Machine: {machine_text(m)}",
            "- Runs (one thread; load average 1/5/15 min at start -> end of each run): " + "; ".join(
                f"`{c}` ({_fmt_load(a)} -> {_fmt_load(b)})" for c, (a, b) in
                zip(commands, data.get("loads", [(data["load_start"], data.get("load_end"))]))),
            "- MetaSchedule: `tune_tir`, xgb cost model, evolutionary search (population 32, 2 genetic iterations, "
            "8 candidates per batch; explicit unrolling capped at 64 steps, builds time out after 120 s), "
            "measured trials per layer and form as in the table, one core (`num-cores` 1), same LLVM target as ours "
            f"(mcpu {m.get('llvm_mcpu', '?')}). Forms: **ms** = the unscheduled PrimFunc of the very compute our "
            "build uses, default LLVM rules plus `MultiLevelTilingWithIntrin` with our dot intrinsic for this CPU "
            "(named per layer below: AVX2 or VNNI) and `RewriteTensorize`; **ms_bytes** = the same compute read "
            "through byte views (channel quads as `uint8 [.., 4]`, weights as `int8 [OC, KH, KW, C4, 4]`: the same "
            "bytes in memory) with a byte-operand form of the same instruction sequence, which MetaSchedule's "
            "auto-tensorizer can map (see below).",
            "- Timing: one process, interleaved rounds, median round (wall) and median process CPU time per call "
            "(the machine is shared: CPU time is what the call costs, wall time includes waits for a core). "
            "`ours` / `ms*`: the integer kernel alone (pre-packed weights, int32 accumulator), called from Python; "
            "`ort int8`: onnxruntime's whole QDQ call (quantize + QLinearConv + dequantize + ReLU), one thread.",
            "- Every MetaSchedule result is checked bit-exact against ours (same random codes and weights, same "
            "int32 output) before it is timed; a result that is not exact is not timed.", ""]
    out += ["| layer | variant | MACs | ours: CPU us (GMAC/s) | ms: CPU us (GMAC/s) | ms_bytes: CPU us (GMAC/s) | "
            "ort int8 CPU us | MS trials / tuning s (ms; ms_bytes) | bit-exact | faster (CPU) | faster (wall) |",
            "|---|---|---:|---:|---:|---:|---:|---|---|---|---|"]
    for r in rows:
        cpu, g = r["cpu_us"], r["gmacs_cpu"]
        ms = r.get("ms", {})

        def cell(k, cpu=cpu, g=g):
            return f"{cpu[k]:.0f} ({g[k]:.1f})" if k in cpu else "—"

        tun = "; ".join(f"{v['trials']} / {v['tune_s']:.0f}" for v in ms.values())
        exact = "; ".join(f"{k}: {v['bit_exact']}" for k, v in ms.items())
        faster_cpu = min((k for k in cpu if k != "ort_int8"), key=lambda k: cpu[k])
        out.append(f"| {r['name']} | {r['variant']} | {r['macs'] / 1e6:.1f} M | {cell('ours')} | {cell('ms')} | "
                   f"{cell('ms_bytes')} | {cpu['ort_int8']:.0f} | {tun} | {exact} | {faster_cpu} | {r['faster']} |")
    out += ["", "Wall-clock medians (us), same rounds:", "", "| layer | variant | ours | ms | ms_bytes | ort int8 |",
            "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        t = r["latency_us"]
        out.append(f"| {r['name']} | {r['variant']} | " + " | ".join(
            f"{t[k]:.0f}" if k in t else "—" for k in ("ours", "ms", "ms_bytes", "ort_int8")) + " |")
    out += ["", "## Can MetaSchedule use our dot intrinsic?", "",
            "Per layer, `get_auto_tensorize_mapping_info` (what `MultiLevelTilingWithIntrin` checks before it "
            "tiles) and `get_tensorize_loop_mapping` (what our schedule's `tensorize` relies on) for the build's "
            "accumulator block and our intrinsic:", "",
            "| layer | variant | block | intrinsic | MS auto-tensorize mapping | loop mapping | ms tensorized | "
            "ms_bytes tensorized |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        i = r["intrinsic"]
        ms = r.get("ms", {})
        out.append(f"| {r['name']} | {r['variant']} | {i.get('block')} | {i.get('intrin')} | "
                   f"{i.get('auto_tensorize_mapping', '—')} | {i.get('loop_mapping', '—')} | "
                   f"{ms.get('default', {}).get('tensorized', '—')} | {ms.get('bytes', {}).get('tensorized', '—')} |")
    out += [""]
    if notes and NOTES.exists():  # the reading of the run, written by hand
        out += [NOTES.read_text().rstrip(), ""]
    return "\n".join(out)


def machine_text(m: dict) -> str:
    keys = ("cpu_model", "cores", "flags_of_interest", "llvm_mcpu", "packages")
    return "; ".join(f"{k}: {m[k]}" for k in keys if k in m) or json.dumps(m)[:300]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", default="", help="comma-separated substrings of bench/kernels.py REALISTIC names")
    ap.add_argument("--variants", default="packed_w8a8")
    ap.add_argument("--trials", type=int, default=64)
    ap.add_argument("--ms", default="default,bytes", help="MetaSchedule forms: default (our compute, default LLVM "
                    "rules + our word intrinsic's rule), bytes (the byte view with the byte-operand intrinsic)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--ms-workdir", default=None, help="evaluate the records of a stopped tuning run's work "
                    "directory instead of tuning (one layer, one form)")
    ap.add_argument("--out", default=str(DATA), help="the JSON written (and read by --resume)")
    ap.add_argument("--render", action="store_true", help="only regenerate the markdown from the JSON")
    ap.add_argument("--merge", nargs="*", default=None, help="merge these runs' JSON files into the data file")
    ap.add_argument("--page", default=None, help="render --out into this markdown page (another CPU's results, e.g. "
                    "docs/bench_meta_schedule_znver4.md), not the data file into docs/bench_meta_schedule.md")
    args = ap.parse_args()
    if args.merge:
        DATA.write_text(json.dumps(merge(args.merge), indent=1) + "\n")
    elif not args.render:
        run(args)
    source = Path(args.out) if args.page else DATA
    page = Path(args.page) if args.page else DOCS / "bench_meta_schedule.md"
    page.write_text(render(json.loads(source.read_text()), source, notes=args.page is None))


if __name__ == "__main__":
    main()
