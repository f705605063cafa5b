"""What to measure for the cost models, and the measurement loops that fill a records file.

``tvm-mp cost-model collect`` runs them (:mod:`tvm_mp.measure.cost_model_cli`): :func:`collect` times kernels on
this host (:class:`~tvm_mp.measure.local.LocalSource`), :func:`retime` times them again and keeps the better pass,
:func:`collect_accel` runs the accelerator simulator (:class:`~tvm_mp.measure.source.SimulatorSource`). All are
resumable (workloads already in the file are skipped) and budgeted (no new work starts after ``budget_s``).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..cost_models.base import CostModelError, Workload
from ..layers import LayerInfo
from ..workload import ConvParams

MODEL_NAMES = ("resnet8", "ds_cnn", "mobilenet_v1_025", "fer_cnn", "digits_cnn")
EPILOGUE_P = {"acc": 0.25, "float": 0.25, "requant": 0.5}


# ---- what to measure ------------------------------------------------------------------------------------------
def layer_workload(layer: LayerInfo, w_bits: int, a_bits: int, kind: str, epilogue: str, target: str = "llvm",
                   device: str = "host") -> Workload:
    """The workload of ``layer`` at ``w_bits``/``a_bits`` with kernel ``kind`` (or "auto") and ``epilogue``."""
    return Workload(layer.op, layer.input_shape, layer.weight_shape, w_bits, a_bits, kind, layer.params, epilogue,
                    (), target, device)


def model_layer_shapes(names: Sequence[str] = MODEL_NAMES) -> list[LayerInfo]:
    """Every quantizable layer of the benchmark models (batch 1), origin ``"<model>/<layer>"``."""
    from ..frontend import load_onnx
    from ..layers import list_layers
    from ..models.builders import BUILDERS

    shapes = []
    for name in names:
        if name not in BUILDERS:
            raise CostModelError(f"unknown model {name!r}: use one of {', '.join(BUILDERS)}")
        builder = BUILDERS[name]
        mod = load_onnx(builder.build(0), shapes={builder.input_name: tuple(builder.input_shape)})
        for layer in list_layers(mod):
            shapes.append(dataclasses.replace(layer, name=f"{name}/{layer.name}", has_bias=False))
    return shapes


def random_layer_shapes(rng: np.random.Generator, count: int, min_macs: float = 2e3,
                        max_macs: float = 2.5e7, upper_same: bool = False) -> list[LayerInfo]:
    """``count`` random but plausible conv2d / depthwise / dense layers with MACs in [min_macs, max_macs].

    "Same" padding is centred (``(k - 1) // 2`` before, ``k // 2`` after). ``upper_same`` draws only conv2d and
    depthwise layers, all with the SAME_UPPER padding of models exported from TensorFlow/Keras (total padding
    from the stride and input size, the extra row/column at the bottom/right -- at stride 2 often ``(0, 0, 1, 1)``).
    """
    channels = [1, 3, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256]
    out = []
    while len(out) < count:
        op = rng.choice(["conv2d", "depthwise_conv2d"] if upper_same
                        else ["conv2d", "conv2d", "depthwise_conv2d", "dense"])
        if op == "dense":
            k = int(rng.choice([16, 32, 64, 100, 128, 256, 512, 1024, 2048, 4096, 9216]))
            oc = int(rng.choice([2, 7, 10, 12, 32, 64, 128, 256]))
            shape = LayerInfo.from_shapes("random", "dense", (1, k), (oc, k))
            macs = k * oc
        else:
            kh, kw = [(1, 1), (3, 3), (3, 3), (5, 5), (1, 3), (3, 1), (10, 4), (7, 7)][int(rng.integers(8))]
            h = int(rng.integers(max(kh, 3), 65))
            w = int(rng.integers(max(kw, 3), 65)) if rng.random() < 0.3 else h
            stride = int(rng.choice([1, 2] if upper_same else [1, 1, 2]))
            same = upper_same or rng.random() < 0.7
            pad = ((kh - 1) // 2, (kw - 1) // 2, kh // 2, kw // 2) if same else (0, 0, 0, 0)
            if same and upper_same:
                pad = _same_upper(h, kh, stride) + _same_upper(w, kw, stride)
                pad = (pad[0], pad[2], pad[1], pad[3])
            c = int(rng.choice(channels))
            if op == "depthwise_conv2d":
                groups, cg, oc = c, 1, c
                if c == 1:
                    continue
            else:
                groups, cg, oc = 1, c, int(rng.choice(channels[1:]))
            params = ConvParams((stride, stride), pad, (1, 1), groups)
            oh, ow = params.output_hw(h, w, kh, kw)
            if oh < 1 or ow < 1:
                continue
            shape = LayerInfo.from_shapes("random", str(op), (1, c, h, w), (oc, cg, kh, kw), params)
            macs = oc * oh * ow * cg * kh * kw
        if min_macs <= macs <= max_macs:
            out.append(shape)
    return out


def _same_upper(size: int, k: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of one spatial axis under SAME_UPPER: output ``ceil(size / stride)``."""
    total = max((-(-size // stride) - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def random_configs(rng: np.random.Generator, count: int) -> list[tuple[int, int, str, str]]:
    """``count`` distinct (w_bits, a_bits, kind, epilogue) drawn uniformly over bits 1..8 and both kinds."""
    seen: dict = {}
    epilogues = list(EPILOGUE_P)
    probs = np.array(list(EPILOGUE_P.values()))
    while len(seen) < count:
        cfg = (int(rng.integers(1, 9)), int(rng.integers(1, 9)), str(rng.choice(["bitserial", "packed"])),
               str(rng.choice(epilogues, p=probs)))
        seen.setdefault(cfg[:3], cfg)
    return list(seen.values())


def collection_plan(rng: np.random.Generator, model_shapes: Sequence[LayerInfo], random_shapes: Sequence[LayerInfo],
                    configs_per_model_layer: int = 14, configs_per_random_layer: int = 5,
                    target: str = "llvm", device: str = "host") -> list[tuple[Workload, list[str]]]:
    """(workload, origins) pairs, one per distinct workload key, in a random order (so a budget cut is fair)."""
    by_layer: dict[str, list] = {}
    for shape in list(model_shapes) + list(random_shapes):
        probe = layer_workload(shape, 8, 8, "packed", "acc", target, device)
        by_layer.setdefault(probe.layer_key, [shape, []])[1].append(shape.name)
    plan = []
    for shape, origins in by_layer.values():
        n_cfg = configs_per_model_layer if any(o != "random" for o in origins) else configs_per_random_layer
        for w_bits, a_bits, kind, epilogue in random_configs(rng, n_cfg):
            plan.append((layer_workload(shape, w_bits, a_bits, kind, epilogue, target, device), sorted(set(origins))))
    order = rng.permutation(len(plan))
    return [plan[i] for i in order]


def collect(records_path: str | Path, budget_s: float = 840.0, seed: int = 0, n_random: int = 260,
            configs_per_model_layer: int = 14, configs_per_random_layer: int = 5,
            models: Sequence[str] = MODEL_NAMES, log: Callable[[str], None] = print,
            n_random_upper_same: int = 150, n_random_more: Sequence[int] = (400, 400)) -> int:
    """Measure the plan on this host into ``records_path`` (resumable; stops starting new work after budget_s).

    Random layers: ``n_random`` with centred "same" padding, ``n_random_upper_same`` more with SAME_UPPER padding
    and sets of ``n_random_more`` more like the first, each later set from its own random stream (``[seed, 1]``,
    ``[seed, 2]``, ...) so that adding a set left the earlier ones unchanged.
    """
    from .local import LocalSource
    from .records import RecordStore

    start = time.monotonic()
    rng = np.random.default_rng(seed)
    plan = collection_plan(rng, model_layer_shapes(models), random_layer_shapes(rng, n_random),
                           configs_per_model_layer, configs_per_random_layer)
    rng_upper = np.random.default_rng([seed, 1])
    plan += collection_plan(rng_upper, [], random_layer_shapes(rng_upper, n_random_upper_same, upper_same=True),
                            configs_per_model_layer, configs_per_random_layer)
    for i, count in enumerate(n_random_more):
        rng_more = np.random.default_rng([seed, 2 + i])
        plan += collection_plan(rng_more, [], random_layer_shapes(rng_more, count), configs_per_model_layer,
                                configs_per_random_layer)
    store = RecordStore(records_path)
    done = store.keys()
    todo = [(w, o) for w, o in plan if w.key not in done]
    log(f"plan: {len(plan)} workloads, {len(plan) - len(todo)} already in {records_path}, budget {budget_s:.0f} s")
    source = LocalSource()
    origins = {w.key: o for w, o in todo}

    def until_budget(items):
        for wl, _ in items:
            if time.monotonic() - start > budget_s:
                return
            yield wl

    count = 0
    for record in source.measure_iter(until_budget(todo)):
        record = dataclasses.replace(record, meta={**record.meta, "origins": origins[record.key]})
        store.append(record)
        count += 1
        if count % 100 == 0:
            log(f"{count} measured, {time.monotonic() - start:.0f} s")
    log(f"measured {count} workloads in {time.monotonic() - start:.0f} s")
    return count


def _speed_scaled_ms(record) -> float:
    """Latency over the reference kernel's time around it (raw latency when it has none): comparable across
    passes run at different CPU speeds."""
    return record.latency_ms / (record.reference_ms or 1.0)


def retime(records_path: str | Path, passes: int = 2, budget_s: float = 900.0, seed: int = 0,
           log: Callable[[str], None] = print) -> int:
    """Measure every stored workload again until it has ``passes`` passes; keep the pass with the lower median.

    On a shared machine other processes can slow a whole timing down (their cache and memory traffic, not just
    their turns on the core); passes minutes apart rarely meet the same interference, and interference only adds
    time, so the lower median (relative to the reference kernel timed around it) is the better estimate. Resumable;
    compacts the file (one line per workload) at
    the end.
    """
    from .local import LocalSource
    from .records import RecordStore

    start = time.monotonic()
    store = RecordStore(records_path)
    records = {r.key: r for r in store.load()}
    todo = [r for r in records.values() if r.source == "local" and int(r.meta.get("passes", 1)) < passes]
    order = np.random.default_rng(seed).permutation(len(todo))
    todo = [todo[i] for i in order]
    log(f"retime: {len(todo)} of {len(records)} records need pass {passes}, budget {budget_s:.0f} s")

    def until_budget():
        for rec in todo:
            if time.monotonic() - start > budget_s:
                return
            yield rec.workload

    count = 0
    for new in LocalSource().measure_iter(until_budget()):
        old = records[new.key]
        if new.error is not None:
            continue
        better = new if _speed_scaled_ms(new) < _speed_scaled_ms(old) else old
        meta = {**better.meta, "origins": old.meta.get("origins", []), "passes": int(old.meta.get("passes", 1)) + 1,
                "pass_medians_ms": [float(f"{x:.6g}") for x in (*old.meta.get("pass_medians_ms", [old.latency_ms]),
                                                                  new.latency_ms)]}
        store.append(dataclasses.replace(better, meta=meta))
        count += 1
        if count % 100 == 0:
            log(f"{count} re-measured, {time.monotonic() - start:.0f} s")
    kept = store.compact()
    log(f"re-measured {count} workloads in {time.monotonic() - start:.0f} s; {kept} records after compaction")
    return count



ACCEL_DEVICE = "accel-sim"
ACCEL_BITS = (1, 2, 4, 8)


def accel_plan(rng: np.random.Generator, shapes: Sequence[LayerInfo], configs_per_layer: int = 4,
               mappings_per_config: int = 1, device: str = ACCEL_DEVICE) -> list[tuple[Workload, list[str]]]:
    """Accelerator workloads: per layer, precisions (mostly 1/2/4/8 bits) x (the best mapping, which names no
    knobs, plus ``mappings_per_config`` random feasible mappings named by knobs)."""
    from ..accel.hardware import HardwareConfig
    from ..accel.mapping import candidate_mappings, mapping_knobs, workload_output, workload_shape

    hw = HardwareConfig.default()
    by_layer: dict[str, list] = {}
    for shape in shapes:
        probe = layer_workload(shape, 8, 8, "auto", "acc", "accel", device)
        by_layer.setdefault(probe.layer_key, [shape, []])[1].append(shape.name)
    plan = []
    for shape, origins in by_layer.values():
        seen = set()
        for _ in range(configs_per_layer * 3):
            if len(seen) == configs_per_layer:
                break
            bits = ACCEL_BITS if rng.random() < 0.8 else tuple(range(1, 9))
            w_bits, a_bits = int(rng.choice(bits)), int(rng.choice(bits))
            epilogue = str(rng.choice(["acc", "requant"]))
            if (w_bits, a_bits, epilogue) in seen:
                continue
            seen.add((w_bits, a_bits, epilogue))
            wl = layer_workload(shape, w_bits, a_bits, "auto", epilogue, "accel", device)
            plan.append((wl, sorted(set(origins))))
            try:
                cands = candidate_mappings(workload_shape(wl), w_bits, a_bits, hw, workload_output(wl))
            except Exception:  # a precision the hardware refuses: the simulator records the error
                continue
            for i in rng.permutation(len(cands))[:mappings_per_config]:
                plan.append((wl.replace(knobs=mapping_knobs(cands[i])), sorted(set(origins))))
    order = rng.permutation(len(plan))
    return [plan[i] for i in order]


def collect_accel(records_path: str | Path, budget_s: float = 600.0, seed: int = 0, n_random: int = 120,
                  models: Sequence[str] = MODEL_NAMES, log: Callable[[str], None] = print) -> int:
    """Simulate accelerator workloads into ``records_path`` (resumable, budgeted like :func:`collect`)."""
    from .records import RecordStore
    from .source import SimulatorSource, accel_simulator

    start = time.monotonic()
    rng = np.random.default_rng(seed)
    shapes = model_layer_shapes(models) + random_layer_shapes(rng, n_random, max_macs=4e6)
    plan = accel_plan(rng, shapes)
    store = RecordStore(records_path)
    done = store.keys()
    todo = [(w, o) for w, o in plan if w.key not in done]
    log(f"accelerator plan: {len(plan)} workloads, {len(plan) - len(todo)} already in {records_path}")
    origins = {w.key: o for w, o in todo}

    def until_budget():
        for wl, _ in todo:
            if time.monotonic() - start > budget_s:
                return
            yield wl

    count = 0
    for record in SimulatorSource(accel_simulator(), ACCEL_DEVICE).measure_iter(until_budget()):
        store.append(dataclasses.replace(record, meta={**record.meta, "origins": origins[record.key]}))
        count += 1
        if count % 100 == 0:
            log(f"{count} simulated, {time.monotonic() - start:.0f} s")
    log(f"simulated {count} workloads in {time.monotonic() - start:.0f} s")
    return count
