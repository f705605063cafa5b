"""Collect measurements, train and evaluate cost models, regenerate the shipped default model.

Command line (``tvm-mp cost-model ...``, or ``python -m tvm_mp.cost_models.train ...``)::

    collect  --records docs/data/host_kernels.jsonl [--budget-s 840] [--seed 0]
    train    --records docs/data/host_kernels.jsonl --out model.json [--seed 0]
    eval     --records docs/data/host_kernels.jsonl [--model model.json] [--report-dir docs/cost_model_eval]
    default  --records docs/data/host_kernels.jsonl      (retrains tvm_mp/cost_models/default_model.json)

Evaluation never splits random rows of the same layer: records are grouped by layer shape
(:attr:`Workload.layer_key`) and whole groups are held out -- either a random fifth of the layer shapes
(``--split shapes``) or every layer of one model at a time (``--split models``: the model's layers and any other
record of the same shape are held out together). It reports Spearman's rho, MAPE and top-k recall (for each
held-out layer, how many of its k fastest measured configurations the model also ranks in its top k) for the
XGBoost model and for the calibrated analytical baseline, as a markdown table and a predicted-vs-measured
scatter plot (PNG).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ..workload import ConvParams
from .base import CostModelError, Workload, target_family
from .xgb import DEFAULT_QUANTILE_ROUNDS, DEFAULT_ROUNDS

MODEL_NAMES = ("resnet8", "ds_cnn", "mobilenet_v1_025", "fer_cnn", "digits_cnn")
DEFAULT_RECORDS = Path("docs/data/host_kernels.jsonl")
#: Regenerates the shipped default model from the shipped records.
DEFAULT_COMMAND = "python -m tvm_mp.cost_models.train default --records docs/data/host_kernels.jsonl"
EPILOGUE_P = {"acc": 0.25, "float": 0.25, "requant": 0.5}


# ---- what to measure ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerShape:
    """A layer without precision: op, input and weight shapes, conv geometry; ``origin`` says where it is from."""

    op: str
    input_shape: tuple[int, ...]
    weight_shape: tuple[int, ...]
    params: ConvParams | None
    origin: str

    def workload(self, w_bits: int, a_bits: int, kind: str, epilogue: str, target: str = "llvm",
                 device: str = "host") -> Workload:
        return Workload(self.op, self.input_shape, self.weight_shape, w_bits, a_bits, kind, self.params, epilogue,
                        (), target, device)


def model_layer_shapes(names: Sequence[str] = MODEL_NAMES) -> list[LayerShape]:
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
            shapes.append(LayerShape(layer.op, tuple(layer.input_shape), tuple(layer.weight_shape), layer.params,
                                     f"{name}/{layer.name}"))
    return shapes


def random_layer_shapes(rng: np.random.Generator, count: int, min_macs: float = 2e3,
                        max_macs: float = 2.5e7, upper_same: bool = False) -> list[LayerShape]:
    """``count`` random but plausible conv2d / depthwise / dense layers with MACs in [min_macs, max_macs].

    "Same" padding is centred (``(k - 1) // 2`` before, ``k // 2`` after). ``upper_same`` draws only conv2d and
    depthwise layers, all with the SAME_UPPER padding of models exported from TensorFlow/Keras (total padding
    from the stride and input size, the extra row/column at the bottom/right -- at stride 2 often ``(0, 0, 1, 1)``).
    """
    channels = [1, 3, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256]
    out = []
    while len(out) < count:
        op = rng.choice(["conv2d", "depthwise_conv2d"] if upper_same else ["conv2d", "conv2d", "depthwise_conv2d", "dense"])
        if op == "dense":
            k = int(rng.choice([16, 32, 64, 100, 128, 256, 512, 1024, 2048, 4096, 9216]))
            oc = int(rng.choice([2, 7, 10, 12, 32, 64, 128, 256]))
            shape = LayerShape("dense", (1, k), (oc, k), None, "random")
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
            shape = LayerShape(str(op), (1, c, h, w), (oc, cg, kh, kw), params, "random")
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


def collection_plan(rng: np.random.Generator, model_shapes: Sequence[LayerShape], random_shapes: Sequence[LayerShape],
                    configs_per_model_layer: int = 14, configs_per_random_layer: int = 5,
                    target: str = "llvm", device: str = "host") -> list[tuple[Workload, list[str]]]:
    """(workload, origins) pairs, one per distinct workload key, in a random order (so a budget cut is fair)."""
    by_layer: dict[str, list] = {}
    for shape in list(model_shapes) + list(random_shapes):
        probe = shape.workload(8, 8, "packed", "acc", target, device)
        by_layer.setdefault(probe.layer_key, [shape, []])[1].append(shape.origin)
    plan = []
    for shape, origins in by_layer.values():
        n_cfg = configs_per_model_layer if any(o != "random" for o in origins) else configs_per_random_layer
        for w_bits, a_bits, kind, epilogue in random_configs(rng, n_cfg):
            plan.append((shape.workload(w_bits, a_bits, kind, epilogue, target, device), sorted(set(origins))))
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
    from ..measure.local import LocalSource
    from ..measure.records import RecordStore

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
    time, so the lower median (relative to the reference kernel timed around it) is the better estimate. Resumable; compacts the file (one line per workload) at
    the end.
    """
    from ..measure.local import LocalSource
    from ..measure.records import RecordStore

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


def accel_plan(rng: np.random.Generator, shapes: Sequence[LayerShape], configs_per_layer: int = 4,
               mappings_per_config: int = 1, device: str = ACCEL_DEVICE) -> list[tuple[Workload, list[str]]]:
    """Accelerator workloads: per layer, precisions (mostly 1/2/4/8 bits) x (the best mapping, which names no
    knobs, plus ``mappings_per_config`` random feasible mappings named by knobs)."""
    from ..accel.hardware import HardwareConfig
    from ..accel.mapping import candidate_mappings, mapping_knobs, workload_output, workload_shape

    hw = HardwareConfig.default()
    by_layer: dict[str, list] = {}
    for shape in shapes:
        probe = shape.workload(8, 8, "auto", "acc", "accel", device)
        by_layer.setdefault(probe.layer_key, [shape, []])[1].append(shape.origin)
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
            wl = shape.workload(w_bits, a_bits, "auto", epilogue, "accel", device)
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
    from ..measure.records import RecordStore
    from ..measure.source import SimulatorSource, accel_simulator

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

# ---- splits by workload ---------------------------------------------------------------------------------------
def model_of_origin(origin: str) -> str | None:
    return origin.split("/", 1)[0] if "/" in origin else None


def shape_folds(records: Sequence, n_folds: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index arrays, whole layer shapes held out in each fold (sklearn's GroupKFold, shuffled)."""
    from sklearn.model_selection import GroupKFold

    groups = [r.workload.layer_key for r in records]
    if len(set(groups)) < n_folds:
        raise CostModelError(f"need at least {n_folds} distinct layer shapes to hold out, got {len(set(groups))}")
    folds = GroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return [(np.asarray(tr), np.asarray(te)) for tr, te in folds.split(np.zeros(len(records)), groups=groups)]


def model_folds(records: Sequence) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Model name -> (train, test): the test holds every record of a shape that occurs in that model."""
    shapes_of: dict[str, set] = {}
    for r in records:
        for origin in r.meta.get("origins", ()):
            model = model_of_origin(origin)
            if model is not None:
                shapes_of.setdefault(model, set()).add(r.workload.layer_key)
    folds = {}
    keys = np.array([r.workload.layer_key for r in records])
    for model, shapes in sorted(shapes_of.items()):
        test = np.isin(keys, sorted(shapes))
        folds[model] = (np.flatnonzero(~test), np.flatnonzero(test))
    return folds


# ---- metrics --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Metrics:
    """Agreement of predictions with measurements on held-out workloads."""

    spearman: float
    mape_pct: float
    topk_recall: float  # mean over held-out layers with more than k configurations
    k: int
    count: int
    layers: int  # layers that entered the top-k recall

    def row(self) -> str:
        return f"{self.spearman:.4f} | {self.mape_pct:.2f} | {self.topk_recall:.3f} | {self.count}"


def metrics(predicted: np.ndarray, measured: np.ndarray, groups: Sequence[str], k: int = 3) -> Metrics:
    """Spearman's rho, MAPE (%) and top-k recall per group (the k smallest measured vs the k smallest predicted)."""
    from scipy.stats import spearmanr

    predicted = np.asarray(predicted, dtype=np.float64)
    measured = np.asarray(measured, dtype=np.float64)
    if predicted.shape != measured.shape or predicted.ndim != 1 or predicted.size < 2:
        raise CostModelError("metrics need two 1-D arrays of the same length (at least 2 values)")
    rho = float(spearmanr(predicted, measured).statistic)
    mape = float(np.mean(np.abs(predicted - measured) / measured) * 100.0)
    groups = np.asarray(groups)
    recalls = []
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        if idx.size <= k:
            continue
        true_top = set(idx[np.argsort(measured[idx], kind="stable")[:k]])
        pred_top = set(idx[np.argsort(predicted[idx], kind="stable")[:k]])
        recalls.append(len(true_top & pred_top) / k)
    recall = float(np.mean(recalls)) if recalls else float("nan")
    return Metrics(rho, mape, recall, k, int(predicted.size), len(recalls))


# ---- training and held-out evaluation -------------------------------------------------------------------------
def load_records(path: str | Path, device: str | None = None, target_families: Sequence[str] | None = None,
                 normalize: bool = True):
    """Successful and failed records of ``path`` (optionally one device / target families only).

    ``normalize``: host timings are put on one CPU-speed scale with the reference kernel timed around each
    (:func:`~tvm_mp.measure.records.normalize_latency`), which is what models train and are judged on.
    """
    from ..measure.records import RecordStore, normalize_latency

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = RecordStore(path).load()
    if not records and caught:
        raise CostModelError(f"{path} is not a records file: no line of it is a measurement record "
                             f"({len(caught)} warning(s), first: {caught[0].message})")
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if device is not None:
        records = [r for r in records if r.workload.device == device]
    if target_families is not None:
        records = [r for r in records if target_family(r.workload.target) in target_families]
    if not records:
        raise CostModelError(f"no usable records in {path}: run `tvm-mp cost-model collect` first")
    return normalize_latency(records) if normalize else records


def train_model(records: Sequence, seed: int = 0, rounds: int = DEFAULT_ROUNDS, quantile_rounds: int = DEFAULT_QUANTILE_ROUNDS, params=None,
                counter=None, accel_prior=None):
    """An XGBoost model on ``records``. ``accel_prior``: an :class:`~tvm_mp.accel.mapping.AccelCostModel` to share
    (it remembers each layer's best mapping, the slow part of predicting accelerator workloads)."""
    from .xgb import XGBCostModel

    return XGBCostModel.fit(records, seed=seed, rounds=rounds, quantile_rounds=quantile_rounds, params=params,
                            counter=counter, accel_prior=accel_prior)


@dataclass
class HeldOut:
    """Out-of-fold predictions of one split: measured and predicted latency (and energy) per record.

    The baseline is the analytical model of the records' target: the roofline calibrated on the fold's training
    part for CPUs, the accelerator package's own mapping model (``tvm_mp.accel.mapping.AccelCostModel``) for the
    accelerator. Energy arrays are NaN where the records carry no energy (CPU energy is modelled, not measured).
    """

    name: str
    measured_ms: np.ndarray
    xgb_ms: np.ndarray
    analytical_ms: np.ndarray
    groups: list
    fold_of: list
    interval_ms: np.ndarray | None = None
    measured_uj: np.ndarray | None = None
    xgb_uj: np.ndarray | None = None
    analytical_uj: np.ndarray | None = None
    baseline_name: str = "analytical (calibrated)"
    extra_ms: dict = dataclasses.field(default_factory=dict)  # other baselines: name -> latency predictions


def _baseline(train: Sequence, test_wl: Sequence[Workload], counter, accel_model=None
              ) -> tuple[np.ndarray, np.ndarray, str, dict]:
    """(latency ms, energy µJ, name, other baselines' latency by name) of the analytical baseline on ``test_wl``:
    ``accel_model`` (the accelerator's mapping model, shared across folds) for accelerator workloads, else the
    roofline calibrated on ``train`` (and, as another baseline, the same calibrated on relative error)."""
    from .analytical import AnalyticalModel

    if {target_family(w.target) for w in test_wl} == {"accel"}:
        est = accel_model.predict(test_wl)
        return est.latency_ms, est.energy_uj, "accelerator mapping model", {}
    model = AnalyticalModel.calibrated(train, AnalyticalModel(counter=counter))
    relative = AnalyticalModel.calibrated(train, AnalyticalModel(counter=counter), method="relative")
    extra = {"analytical (calibrated, relative error)": relative.latency_ms(test_wl)}
    return model.latency_ms(test_wl), np.full(len(test_wl), np.nan), "analytical (calibrated)", extra


def held_out(records: Sequence, folds: Iterable[tuple[str, np.ndarray, np.ndarray]], name: str, seed: int = 0,
             rounds: int = DEFAULT_ROUNDS, quantile_rounds: int = DEFAULT_QUANTILE_ROUNDS, log: Callable[[str], None] = print) -> HeldOut:
    """Train on each fold's train part (XGBoost, and the baseline where it needs training), predict its test part."""
    from .features import KernelCounter

    counter = KernelCounter()
    accel_model = None
    extra: dict = {}
    n = len(records)
    xgb_ms, ana_ms = np.full(n, np.nan), np.full(n, np.nan)
    interval = np.full((n, 2), np.nan)
    xgb_uj, ana_uj = np.full(n, np.nan), np.full(n, np.nan)
    fold_of = [""] * n
    baseline_name = "analytical (calibrated)"
    if any(target_family(r.workload.target) == "accel" for r in records):
        from ..accel.mapping import AccelCostModel

        accel_model = AccelCostModel()  # one instance: the baseline and the learned model's prior share it
    for fold, train_idx, test_idx in folds:
        train = [records[i] for i in train_idx]
        test_wl = [records[i].workload for i in test_idx]
        model = train_model(train, seed, rounds, quantile_rounds, counter=counter, accel_prior=accel_model)
        est = model.predict(test_wl)
        xgb_ms[test_idx] = est.latency_ms
        if est.latency_interval_ms is not None:
            interval[test_idx] = est.latency_interval_ms
        if est.energy_basis in ("learned", "mixed"):
            xgb_uj[test_idx] = est.energy_uj
        ana_ms[test_idx], ana_uj[test_idx], baseline_name, others = _baseline(train, test_wl, counter, accel_model)
        for label, pred in others.items():
            extra.setdefault(label, np.full(n, np.nan))[test_idx] = pred
        for i in test_idx:
            fold_of[i] = fold
        log(f"  {name} fold {fold}: train {len(train_idx)}, test {len(test_idx)}")
    keep = np.flatnonzero(~np.isnan(xgb_ms))
    measured = np.array([r.latency_ms for r in records])
    energy = np.array([np.nan if r.energy_uj is None else r.energy_uj for r in records])
    return HeldOut(name, measured[keep], xgb_ms[keep], ana_ms[keep], [records[i].workload.layer_key for i in keep],
                   [fold_of[i] for i in keep], interval[keep], energy[keep], xgb_uj[keep], ana_uj[keep],
                   baseline_name, {label: pred[keep] for label, pred in extra.items()})


def evaluate_records(records: Sequence, seed: int = 0, n_folds: int = 5, rounds: int = DEFAULT_ROUNDS,
                     quantile_rounds: int = DEFAULT_QUANTILE_ROUNDS, splits: Sequence[str] = ("shapes", "models"),
                     log: Callable[[str], None] = print) -> list[HeldOut]:
    """Held-out predictions for each requested split ("shapes": GroupKFold on layer shapes; "models")."""
    results = []
    if "shapes" in splits:
        folds = [(str(i), tr, te) for i, (tr, te) in enumerate(shape_folds(records, n_folds, seed))]
        results.append(held_out(records, folds, "held-out layer shapes", seed, rounds, quantile_rounds, log))
    if "models" in splits:
        folds = [(m, tr, te) for m, (tr, te) in model_folds(records).items()]
        if folds:
            results.append(held_out(records, folds, "held-out models", seed, rounds, quantile_rounds, log))
    return results


def _rows(res: HeldOut, quantity: str, k: int) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(row label, model label, predicted, measured) for latency or energy (energy only where measured)."""
    if quantity == "latency":
        return [(res.name, "xgboost", res.xgb_ms, res.measured_ms),
                (res.name, res.baseline_name, res.analytical_ms, res.measured_ms)] + [
                (res.name, label, pred, res.measured_ms) for label, pred in res.extra_ms.items()]
    if res.measured_uj is None or np.isnan(res.measured_uj).all():
        return []
    out = []
    for label, pred in (("xgboost", res.xgb_uj), (res.baseline_name, res.analytical_uj)):
        if pred is not None and not np.isnan(pred).all():
            out.append((res.name, label, pred, res.measured_uj))
    return out


def report_table(results: Sequence[HeldOut], k: int = 3) -> tuple[str, dict]:
    """Markdown table (and the same figures as a dict) of XGBoost vs the analytical baseline per split."""
    lines = [f"| quantity | split | model | Spearman rho | MAPE % | top-{k} recall | n |",
             "|---|---|---|---|---|---|---|"]
    data: dict = {}
    for res in results:
        entry: dict = {}
        for quantity in ("latency", "energy"):
            for split, label, pred, meas in _rows(res, quantity, k):
                m = metrics(pred, meas, res.groups, k)
                entry.setdefault(quantity, {})[label] = dataclasses.asdict(m)
                lines.append(f"| {quantity} | {split} | {label} | {m.row()} |")
        if res.interval_ms is not None and not np.isnan(res.interval_ms).all():
            inside = (res.measured_ms >= res.interval_ms[:, 0]) & (res.measured_ms <= res.interval_ms[:, 1])
            entry["latency_interval_coverage_10_90"] = float(inside.mean())
        if res.name == "held-out models":
            per = {}
            for fold in sorted(set(res.fold_of)):
                idx = np.array([f == fold for f in res.fold_of])
                if idx.sum() < 2:
                    continue
                groups = list(np.asarray(res.groups)[idx])
                for quantity in ("latency", "energy"):
                    for _, label, pred, meas in _rows(res, quantity, k):
                        m = metrics(pred[idx], meas[idx], groups, k)
                        per.setdefault(fold, {}).setdefault(quantity, {})[label] = dataclasses.asdict(m)
                        lines.append(f"| {quantity} | {fold} only | {label} | {m.row()} |")
            entry["per_model"] = per
        data[res.name] = entry
    return "\n".join(lines), data


def scatter_plot(results: Sequence[HeldOut], path: str | Path) -> Path:
    """Predicted vs measured (log-log): a latency panel per split, and an energy panel where energy was measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for res in results:
        for quantity, unit in (("latency", "ms"), ("energy", "µJ")):
            rows = _rows(res, quantity, 3)[:2]
            if rows:
                panels.append((res, quantity, unit, rows))
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 5.5), squeeze=False)
    for ax, (res, quantity, unit, rows) in zip(axes[0], panels):
        measured = rows[0][3]
        values = np.concatenate([measured] + [r[2] for r in rows])
        values = values[np.isfinite(values) & (values > 0)]
        lo, hi = values.min() * 0.7, values.max() * 1.4
        ax.plot([lo, hi], [lo, hi], color="0.5", lw=1, ls="--", label="ideal")
        for (_, label, pred, meas), color, alpha in zip(rows[::-1], ("tab:orange", "tab:blue"), (0.45, 0.6)):
            ax.scatter(meas, pred, s=6, alpha=alpha, color=color, label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        what = "median of repeats, speed-normalized" if quantity == "latency" else "simulated"
        ax.set_xlabel(f"measured {quantity} ({unit}, {what})")
        ax.set_ylabel(f"predicted {quantity} ({unit})")
        ax.set_title(f"{quantity}, {res.name} ({measured.size} workloads)")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def evaluate_model_file(model_path: str | Path | None, records: Sequence, k: int = 3) -> tuple[str, dict]:
    """Metrics of a fixed, already-trained model on ``records`` (e.g. new measurements)."""
    from .analytical import AnalyticalModel
    from .xgb import XGBCostModel

    model = XGBCostModel.default() if model_path is None else XGBCostModel.load(model_path)
    workloads = [r.workload for r in records]
    measured = np.array([r.latency_ms for r in records])
    groups = [w.layer_key for w in workloads]
    mx = metrics(model.predict(workloads).latency_ms, measured, groups, k)
    ma = metrics(AnalyticalModel.from_dict(model.prior.to_dict()).latency_ms(workloads), measured, groups, k)
    table = "\n".join([f"| model | Spearman rho | MAPE % | top-{k} recall | n |", "|---|---|---|---|---|",
                       f"| xgboost | {mx.row()} |", f"| its analytical prior | {ma.row()} |"])
    return table, {"xgboost": dataclasses.asdict(mx), "analytical prior": dataclasses.asdict(ma)}


def write_default(records_path: str | Path, seed: int = 0, rounds: int = DEFAULT_ROUNDS, quantile_rounds: int = DEFAULT_QUANTILE_ROUNDS,
                  out: str | Path | None = None) -> Path:
    """Retrain the shipped default model on ``records_path``."""
    records = load_records(records_path)
    model = train_model(records, seed, rounds, quantile_rounds)
    model.info["trained_on"] = str(records_path)
    model.info["command"] = DEFAULT_COMMAND
    target = Path(out) if out is not None else Path(__file__).with_name("default_model.json")
    return model.save(target)


# ---- command line ---------------------------------------------------------------------------------------------
def add_commands(sub) -> None:
    """Add ``collect | train | eval | default`` to an argparse sub-parser group (``tvm-mp cost-model`` uses it)."""
    c = sub.add_parser("collect", help="measure kernels on this host into a records file")
    c.add_argument("--records", type=Path, default=DEFAULT_RECORDS)
    c.add_argument("--budget-s", type=float, default=840.0, help="stop starting measurements after this long")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--random-layers", type=int, default=None,
                   help="random layer shapes besides the models' (default 260 host, 120 accelerator)")
    c.add_argument("--source", choices=["host", "accel"], default="host",
                   help="host: time kernels here; accel: run the accelerator simulator")
    c.add_argument("--passes", type=int, default=2, help="host: time every workload this many times (min kept)")
    t = sub.add_parser("train", help="train an XGBoost model on a records file")
    t.add_argument("--records", type=Path, default=DEFAULT_RECORDS)
    t.add_argument("--out", type=Path, required=True)
    e = sub.add_parser("eval", help="held-out evaluation (or evaluate a trained model with --model)")
    e.add_argument("--records", type=Path, default=DEFAULT_RECORDS)
    e.add_argument("--model", type=Path, default=None, help="evaluate this trained model instead of cross-training")
    e.add_argument("--default-model", action="store_true", help="evaluate the shipped default model")
    e.add_argument("--split", choices=["shapes", "models", "both"], default="both")
    e.add_argument("--folds", type=int, default=5)
    e.add_argument("--k", type=int, default=3)
    e.add_argument("--report-dir", type=Path, default=None, help="write table.md, metrics.json, scatter.png here")
    d = sub.add_parser("default", help="retrain tvm_mp/cost_models/default_model.json")
    d.add_argument("--records", type=Path, default=DEFAULT_RECORDS)
    for p in (t, e, d):
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
        p.add_argument("--quantile-rounds", type=int, default=DEFAULT_QUANTILE_ROUNDS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tvm-mp cost-model",
                                     description="Collect measurements, train and evaluate tvm-mp cost models.")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def _existing_records(path: Path) -> Path:
    if not Path(path).is_file():
        raise CostModelError(f"records file {path} does not exist: collect some first "
                             f"(tvm-mp cost-model collect --records {path}) or pass --records")
    return path


def run(args: argparse.Namespace) -> int:
    """Run one parsed command (raises :class:`CostModelError` on a user error)."""
    if args.command == "collect":
        if args.source == "accel":
            collect_accel(args.records, args.budget_s, args.seed, args.random_layers or 120)
        else:
            collect(args.records, args.budget_s, args.seed, args.random_layers or 260)
            if args.passes > 1:
                retime(args.records, args.passes, args.budget_s, args.seed + 1)
    elif args.command == "train":
        model = train_model(load_records(_existing_records(args.records)), args.seed, args.rounds,
                            args.quantile_rounds)
        path = model.save(args.out)
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB, {model.info['records']} records)")
    elif args.command == "default":
        path = write_default(_existing_records(args.records), args.seed, args.rounds, args.quantile_rounds)
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    elif args.command == "eval":
        records = load_records(_existing_records(args.records))
        if args.model is not None or args.default_model:
            table, data = evaluate_model_file(args.model, records, args.k)
            results = []
        else:
            splits = ("shapes", "models") if args.split == "both" else (args.split,)
            results = evaluate_records(records, args.seed, args.folds, args.rounds, args.quantile_rounds, splits)
            table, data = report_table(results, args.k)
        print(table)
        if args.report_dir is not None:
            args.report_dir.mkdir(parents=True, exist_ok=True)
            (args.report_dir / "table.md").write_text(table + "\n")
            (args.report_dir / "metrics.json").write_text(json.dumps(data, indent=2) + "\n")
            if results:
                scatter_plot(results, args.report_dir / "scatter.png")
            print(f"wrote {args.report_dir}/")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except CostModelError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
