"""Where a whole model's time goes: tvm-mp (timed inside the running model) beside onnxruntime int8 (its profiler),
layer by layer, one thread.

For one model of ``tvm_mp.models.builders`` at one uniform plan, the tvm-mp build is timed with
:func:`tvm_mp.measure.in_model.measure_model` (each call's CPU time inside the model's VM, hook cost subtracted),
and the onnxruntime int8 model (static QDQ, per-channel, as in ``bench/kernels.py``) with onnxruntime's profiler
(``enable_profiling``: each node's kernel time, median over the profiled runs). The conv / dense layers are matched
in graph order (onnxruntime's fused ``QLinearConv`` / ``QLinearMatMul`` nodes against the model's layer kernels);
everything else is summed per kind (tvm-mp: quantize calls and the operators between layers; onnxruntime: the other
nodes). Each layer's achieved GMAC/s is given with its fraction of this core's measured int8 peak
(``bench/kernels.py``'s register-only loop).

    python bench/model_layers.py --model resnet18 --variant packed_w8a8 [--runs 10]

Writes ``docs/data/bench_model_layers_<model>_<variant>.json`` (rendered into docs/benchmarks.md by
``bench/kernels.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from models import _kernels_bench  # bench/models.py: this script's folder is on sys.path

HERE = Path(__file__).resolve().parent


def ort_profile(model, calib, x, runs: int, clocks: dict) -> list[tuple[str, str, float]]:
    """``[(node name, op type, median us)]`` of the onnxruntime int8 session, in execution order. The profiler
    reads wall time, which a loaded machine inflates by the waits for a core: ``clocks`` receives the process
    CPU time and the wall time per profiled run (``cpu_ms``, ``wall_ms``), from which the node times are scaled to
    CPU time (``node_scale``: the CPU time per run over the sum of the node medians)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        # the quantized model of bench/kernels.py's ort_sessions, in a session with the profiler on
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(tmp) / "ort")
        q8 = Path(tmp) / "q.onnx"
        q8.write_bytes(_quantized_bytes(model, calib))
        prof = ort.InferenceSession(str(q8), opts, providers=["CPUExecutionProvider"])
        feed = {prof.get_inputs()[0].name: x}
        for _ in range(3):
            prof.run(None, feed)
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(runs):
            prof.run(None, feed)
        clocks["cpu_ms"] = (time.process_time() - c0) / runs * 1e3
        clocks["wall_ms"] = (time.perf_counter() - t0) / runs * 1e3
        events = json.loads(Path(prof.end_profiling()).read_text())
    per_node: dict = {}
    order = []
    for ev in events:
        if ev.get("cat") != "Node" or not ev.get("name", "").endswith("_kernel_time"):
            continue
        name = ev["name"][: -len("_kernel_time")]
        if name not in per_node:
            per_node[name] = (ev.get("args", {}).get("op_name", "?"), [])
            order.append(name)
        per_node[name][1].append(float(ev["dur"]))
    # the first 3 runs are warm-up: keep the last ``runs`` samples of each node
    nodes = [(n, per_node[n][0], float(np.median(per_node[n][1][-runs:]))) for n in order]
    clocks["node_scale"] = clocks["cpu_ms"] * 1e3 / max(sum(us for _, _, us in nodes), 1e-9)
    return [(n, op, us * clocks["node_scale"]) for n, op, us in nodes]


def _quantized_bytes(model, calib) -> bytes:
    import logging

    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{model.graph.input[0].name: c} for c in calib])

        def get_next(self):
            return next(self.items, None)

    logging.getLogger().setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        f32, q8 = Path(tmp) / "m.onnx", Path(tmp) / "q.onnx"
        onnx.save(model, str(f32))
        quantize_static(str(f32), str(q8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        return q8.read_bytes()


def _node_shapes(model) -> dict:
    """Conv / Gemm node name -> (input shape without the batch, weight shape) in the float model (Gemm weights as
    (out, in))."""
    import onnx
    from onnx import numpy_helper

    inferred = onnx.shape_inference.infer_shapes(model)
    dims = {v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim)
            for v in list(inferred.graph.value_info) + list(inferred.graph.input)}
    weights = {t.name: numpy_helper.to_array(t).shape for t in model.graph.initializer}
    out = {}
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul") and len(node.input) > 1 and node.input[1] in weights:
            w = weights[node.input[1]]
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            if node.op_type != "Conv" and not trans_b:
                w = w[::-1]
            out[node.name] = (tuple(dims.get(node.input[0], ()))[1:], tuple(w))  # (the batch may be symbolic)
    return out


def run(args) -> dict:
    import tvm_mp
    from tvm_mp import Precision, PrecisionPlan
    from tvm_mp.measure.in_model import InModelTiming, measure_model
    from tvm_mp.models.builders import BUILDERS

    kb = _kernels_bench()
    load_start = os.getloadavg()
    b = BUILDERS[args.model]
    model = b.build(0)
    shape = tuple(b.input_shape)
    calib = kb.calibration_inputs(shape, n=4, seed=1)
    x = calib[0]
    mod = tvm_mp.load_onnx(model, shapes={b.input_name: shape})
    layers = tvm_mp.list_layers(mod)
    w, a, kind = kb.ALL_VARIANTS[args.variant]
    t0 = time.perf_counter()
    cm = tvm_mp.compile(mod, plan=PrecisionPlan.uniform(mod, Precision(w, a, kind)), calibration=calib,
                        target="host")
    compile_s = time.perf_counter() - t0
    peaks = kb.measure_peaks()
    rec = measure_model(cm, [x], args.model, InModelTiming(rounds=args.rounds, runs_per_round=3, reference=False))
    ours_layers = {}
    other = {}
    for call, ms in zip(rec.calls.calls, rec.call_ms):
        if call.role == "layer":
            ours_layers[call.layer] = ours_layers.get(call.layer, 0.0) + ms * 1e3
        else:
            key = call.family
            other[key] = other.get(key, 0.0) + ms * 1e3
    result = {"command": "python bench/model_layers.py " + " ".join(sys.argv[1:]), "date": time.strftime(
        "%Y-%m-%d %H:%M"), "model": args.model, "variant": args.variant, "peaks": peaks, "compile_s": compile_s,
        "rows": [{"layer": info.name, "op": info.op, "input_shape": list(info.input_shape),
                  "weight_shape": list(info.weight_shape), "macs": int(info.macs),
                  "tvm_mp_us": ours_layers.get(info.name)} for info in layers],
        "tvm_mp_other_us": other, "tvm_mp_whole_ms": float(np.median(rec.whole_samples_ms)),
        "load_start": load_start}
    return add_ort(result, model, calib, x, args.runs)


def add_ort(result: dict, model, calib, x, runs: int) -> dict:
    """``result`` with onnxruntime int8's profile added (per layer row, the other nodes, the clocks)."""
    clocks: dict = {}
    ort_nodes = ort_profile(model, calib, x, runs, clocks)
    layer_ops = ("QLinearConv", "QLinearMatMul", "QGemm", "MatMulInteger", "ConvInteger", "Conv", "Gemm", "MatMul")
    ort_layers = [(n, op, us) for n, op, us in ort_nodes if op in layer_ops]
    ort_other: dict = {}
    for _, op, us in ort_nodes:
        if op not in layer_ops:
            ort_other[op] = ort_other.get(op, 0.0) + us
    rows = result["rows"]
    # onnxruntime runs the layers in its own order (a block's 1x1 shortcut conv is not where our graph order puts
    # it): each fused node is matched by its source node's shapes, rows of one shape taking that shape's nodes
    shapes = _node_shapes(model)
    by_shape: dict = {}
    for n, _op, us in ort_layers:
        key = shapes.get(re.sub(r"_token_\d+$", "", n))
        by_shape.setdefault(key, []).append((n, us))
    matched = True
    for row in rows:
        queue = by_shape.get((tuple(row["input_shape"])[1:], tuple(row["weight_shape"])), [])
        node, us = queue.pop(0) if queue else (None, None)
        matched &= node is not None
        row["ort_int8_us"], row["ort_node"] = us, node
        for key in ("tvm_mp_us", "ort_int8_us"):
            if row[key]:
                row[key.replace("_us", "_gmacs")] = row["macs"] / (row[key] * 1e-6) / 1e9
    result.update({"matched_in_order": matched, "ort_other_us": ort_other, "ort_clocks": clocks,
                   "ort_int8_nodes_total_us": float(sum(us for _, _, us in ort_nodes)),
                   "load_end": os.getloadavg()})
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--variant", default="packed_w8a8")
    parser.add_argument("--runs", type=int, default=10, help="profiled onnxruntime runs")
    parser.add_argument("--rounds", type=int, default=5, help="in-model timing rounds of the tvm-mp build")
    parser.add_argument("--ort-only", action="store_true",
                        help="redo only onnxruntime's profile of a saved run (the tvm-mp part kept)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TVM_NUM_THREADS", "1")
    kb = _kernels_bench()
    path = kb.DATA / f"bench_model_layers_{args.model}_{args.variant}.json"
    if args.ort_only:
        from tvm_mp.models.builders import BUILDERS

        result = json.loads(path.read_text())
        b = BUILDERS[args.model]
        model = b.build(0)
        calib = kb.calibration_inputs(tuple(b.input_shape), n=4, seed=1)
        result["load_start"] = os.getloadavg()
        result = add_ort(result, model, calib, calib[0], args.runs)
        result["command"] += f"; onnxruntime re-profiled: python bench/model_layers.py {' '.join(sys.argv[1:])} " \
                             f"({time.strftime('%Y-%m-%d %H:%M')})"
    else:
        result = run(args)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}; {kb.write_markdown()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
