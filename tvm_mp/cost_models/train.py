"""Train and evaluate cost models on measurement records, regenerate the shipped default model.

Records come in as sequences (read them with :func:`tvm_mp.measure.records.load_records`); this module never
measures. The command line is ``tvm-mp cost-model collect | train | eval | default``
(:mod:`tvm_mp.measure.cost_model_cli`).

Evaluation never splits random rows of the same layer: records are grouped by layer shape
(:attr:`Workload.layer_key`) and whole groups are held out -- either a random fifth of the layer shapes
(``--split shapes``) or every layer of one model at a time (``--split models``: the model's layers and any other
record of the same shape are held out together). It reports Spearman's rho, MAPE and top-k recall (for each
held-out layer, how many of its k fastest measured configurations the model also ranks in its top k) for the
XGBoost model and for the calibrated analytical baseline, as a markdown table and a predicted-vs-measured
scatter plot (PNG).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .._files import atomic_path
from .base import CostModelError, Workload, target_family
from .xgb import DEFAULT_QUANTILE_ROUNDS, DEFAULT_ROUNDS

#: How the shipped default model is regenerated (stored in its ``info``).
DEFAULT_COMMAND = "tvm-mp cost-model default --records docs/data/host_kernels.jsonl"


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
def train_model(records: Sequence, seed: int = 0, rounds: int = DEFAULT_ROUNDS,
                quantile_rounds: int = DEFAULT_QUANTILE_ROUNDS, params=None, counter=None, accel_prior=None):
    """An XGBoost model on ``records``. ``accel_prior``: an :class:`~tvm_mp.cost_models.accel.AccelCostModel` to share
    (it remembers each layer's best mapping, the slow part of predicting accelerator workloads)."""
    from .xgb import XGBCostModel

    return XGBCostModel.fit(records, seed=seed, rounds=rounds, quantile_rounds=quantile_rounds, params=params,
                            counter=counter, accel_prior=accel_prior)


@dataclass
class HeldOut:
    """Out-of-fold predictions of one split: measured and predicted latency (and energy) per record.

    The baseline is the analytical model of the records' target: the roofline calibrated on the fold's training
    part for CPUs, the accelerator package's own mapping model (``tvm_mp.cost_models.accel.AccelCostModel``) for the
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
             rounds: int = DEFAULT_ROUNDS, quantile_rounds: int = DEFAULT_QUANTILE_ROUNDS,
             log: Callable[[str], None] = print) -> HeldOut:
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
        from .accel import AccelCostModel

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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
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


def write_default(records: Sequence, trained_on: str | Path, seed: int = 0, rounds: int = DEFAULT_ROUNDS,
                  quantile_rounds: int = DEFAULT_QUANTILE_ROUNDS, out: str | Path | None = None) -> Path:
    """Retrain the shipped default model on ``records`` (read from the file ``trained_on``)."""
    model = train_model(records, seed, rounds, quantile_rounds)
    model.info["trained_on"] = str(trained_on)
    model.info["command"] = DEFAULT_COMMAND
    target = Path(out) if out is not None else Path(__file__).with_name("default_model.json")
    return model.save(target)
