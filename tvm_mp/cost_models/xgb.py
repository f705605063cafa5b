"""XGBoost cost model: learned from measurement records, on log targets, with per-prediction intervals.

What is learned is the *ratio* of the measured value to a physics prior, in log space:
``log(latency) - log(roofline latency)``, the roofline being an
:class:`~tvm_mp.cost_models.analytical.AnalyticalModel` calibrated (in log space) on the same training records.
The prior carries the scale (so layers larger than any measured one are still predicted sensibly: trees cannot
extrapolate, ratios need not); the trees learn what it misses (vectorization, bounds checks at padded borders,
loop overheads of short reductions, cache effects). docs/cost_models.md compares priors on held-out layers. Features:
workload sizes, precision, kernel kind, epilogue, target family, schedule knobs, and the
kernel's event counts (:mod:`tvm_mp.cost_models.features`).

Accelerator workloads (target family ``accel``) use the accelerator's own analytical mapping model
(:class:`tvm_mp.cost_models.accel.AccelCostModel`, for the hardware description the model was trained with) as
the prior of both latency and energy: the trees learn how the real device (or its simulator) departs from it.

Energy: CPU energy is modelled (event counts x table) and stays so. Records that carry energy (the accelerator
simulator, a power meter) train an energy booster the same way -- against the accelerator prior, or ``1 pJ x MACs``
for other targets; its predictions are labelled "learned".

Uncertainty: a second booster per target with XGBoost's quantile loss gives the 10 % and 90 % quantiles of the
ratio (``Estimate.latency_interval_ms``). Files: one JSON object holding the boosters in XGBoost's own JSON
format, the prior's parameters and the feature list (:meth:`XGBCostModel.save` / :meth:`XGBCostModel.load`).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .._files import write_atomic
from . import features as F
from .analytical import AnalyticalModel
from .base import KERNEL_KINDS, CostModelError, Estimate, Workload, require_kinds, target_family
from .energy_cpu import CpuEnergyModel
from .features import KernelCounter, feature_matrix, feature_names, knob_feature_names, raw_fields

FORMAT = "tvm-mp-xgb-cost-model"
FORMAT_VERSION = 1
DEFAULT_MODEL = "default_model.json"
#: Booster parameters (log-ratio regression); rounds and quantiles are arguments of :meth:`XGBCostModel.fit`.
DEFAULT_PARAMS: dict[str, Any] = {"max_depth": 7, "eta": 0.1, "subsample": 0.8, "colsample_bytree": 0.8,
                                  "min_child_weight": 4.0, "lambda": 1.0, "nthread": 2}
DEFAULT_ROUNDS = 250
DEFAULT_QUANTILE_ROUNDS = 100
QUANTILES = (0.1, 0.9)
PJ_PER_MAC_PRIOR = 1.0


def _xgb():
    try:
        import xgboost
    except ImportError:  # pragma: no cover - installed with the bench/test extras
        raise CostModelError("the XGBoost cost model needs the xgboost package: pip install xgboost-cpu") from None
    return xgboost


def _short_float32(values) -> list[float]:
    """Each value as the shortest decimal that reads back as the same float32 (XGBoost stores float32)."""
    return [float(np.format_float_positional(v, unique=True, trim="-")) for v in np.asarray(values, np.float32)]


def _booster_to_json(booster, compact: bool = False) -> dict:
    """The booster in XGBoost's JSON format.

    ``compact`` keeps prediction bit-identical and shrinks the file: per-node training statistics that prediction
    never reads (split gains, hessian sums, node weights) become 0, and split thresholds / leaf values are written
    as the shortest decimals that read back as the same float32.
    """
    obj = json.loads(bytes(booster.save_raw("json")))
    if compact:
        for tree in obj["learner"]["gradient_booster"]["model"]["trees"]:
            for name in ("loss_changes", "sum_hessian", "base_weights"):
                tree[name] = [0.0] * len(tree[name])
            tree["split_conditions"] = _short_float32(tree["split_conditions"])
    return obj


def _booster_from_json(obj: Mapping):
    xgb = _xgb()
    booster = xgb.Booster()
    booster.load_model(bytearray(json.dumps(obj, separators=(",", ":")).encode()))
    return booster


class XGBCostModel:
    """``predict(workloads) -> Estimate`` from boosters trained with :meth:`fit` (or loaded with :meth:`load`)."""

    def __init__(self, boosters: Mapping[str, Any], prior: AnalyticalModel, knob_names: Sequence[str] = (),
                 energy_families: Sequence[str] = (), info: Mapping[str, Any] | None = None, accel_prior=None,
                 feature_sets: Sequence[str] = ()):
        if "latency" not in boosters:
            raise CostModelError("an XGBCostModel needs at least a 'latency' booster")
        self.boosters = dict(boosters)
        self.prior = prior
        self.counter = prior.counter
        self.knob_names = tuple(knob_names)
        self.energy_families = tuple(energy_families)
        self.info = dict(info or {})
        self.feature_sets = tuple(feature_sets)
        self.feature_names = feature_names(self.knob_names, self.feature_sets)
        self._schedule_cache: dict = {}  # schedule look-ups of the "schedule" features, per workload
        self.families = tuple(self.info.get("families", ()))
        #: What the latency predictions count: "ms", or "emulated instructions" for a model trained on
        #: emulated records (``Estimate.latency_ms`` then holds instruction counts).
        self.unit = str(self.info.get("unit", "ms"))
        self.accel_prior = accel_prior  # AccelCostModel for "accel" workloads (None: no accelerator training data)

    # ---- training -------------------------------------------------------------------------------------------
    @classmethod
    def fit(cls, records, seed: int = 0, rounds: int = DEFAULT_ROUNDS, params: Mapping[str, Any] | None = None,
            quantile_rounds: int = DEFAULT_QUANTILE_ROUNDS, prior: AnalyticalModel | None = None,
            energy_model: CpuEnergyModel | None = None, counter: KernelCounter | None = None,
            accel_prior=None, feature_sets: Sequence[str] = (), weights=None) -> "XGBCostModel":
        """Train on successful ``records``. ``prior`` defaults to the analytical model calibrated on them;
        ``accel_prior`` (for accelerator records) to :class:`~tvm_mp.cost_models.accel.AccelCostModel` on the
        default hardware description.

        ``counter``: a :class:`KernelCounter` to share (its templates are read once per process otherwise).
        ``feature_sets``: optional feature groups (:data:`~tvm_mp.cost_models.features.FEATURE_SETS`);
        ``weights``: one training weight per successful record (None: all 1).
        """
        xgb = _xgb()
        records = [r for r in records if r.error is None]
        require_kinds([r.workload for r in records], KERNEL_KINDS, "XGBCostModel")
        if len(records) < 10:
            raise CostModelError(f"need at least 10 successful records to train, got {len(records)}")
        units = sorted({getattr(r, "unit", "ms") for r in records})
        if len(units) > 1:
            raise CostModelError(f"the records mix units ({', '.join(units)}): train on timed records or on "
                                 "emulated instruction counts, not both (give the records files of one target)")
        if prior is not None:
            counter = prior.counter
        elif energy_model is not None:
            counter = energy_model.counter
        counter = counter or KernelCounter()
        workloads = [r.workload for r in records]
        raw = raw_fields(workloads)
        schedule_cache: dict = {}
        ev = counter.events(raw)
        built = _built(workloads, raw, feature_sets, schedule_cache)
        ev_prior = _prior_events(counter, raw, ev, built)
        if prior is None:
            prior = AnalyticalModel.calibrated(records, AnalyticalModel(energy=energy_model, counter=counter),
                                               events=ev_prior)
        knob_names = knob_feature_names(workloads)
        x = feature_matrix(workloads, counter, knob_names, events=ev, raw=raw, feature_sets=feature_sets,
                           schedule_cache=schedule_cache, built=built)
        w = None
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != (len(records),) or not np.all(np.isfinite(w)) or np.any(w <= 0):
                raise CostModelError("XGBCostModel.fit: give one finite, positive weight per successful record")
        if accel_prior is None and any(target_family(w.target) == "accel" for w in workloads):
            from .accel import AccelCostModel

            accel_prior = AccelCostModel()
        prior_lat, prior_energy = _priors(prior, accel_prior, workloads, ev_prior)
        lat = np.array([getattr(r, "cost", r.latency_ms) for r in records])  # in units[0]
        y_lat = np.log(lat) - np.log(prior_lat)
        base = dict(DEFAULT_PARAMS)
        base.update(params or {})
        base["seed"] = int(seed)
        boosters = {}
        boosters["latency"], boosters["latency_q"] = cls._fit_pair(xgb, x, y_lat, base, rounds, quantile_rounds, w)
        has_energy = np.array([r.energy_uj is not None for r in records])
        energy_families: list[str] = []
        if has_energy.sum() >= 10:
            idx = np.flatnonzero(has_energy)
            sub = [workloads[i] for i in idx]
            energy = np.array([records[i].energy_uj for i in idx])
            y_e = np.log(np.maximum(energy, 1e-12)) - np.log(prior_energy[idx])
            boosters["energy"], boosters["energy_q"] = cls._fit_pair(xgb, x[idx], y_e, base, rounds, quantile_rounds)
            energy_families = sorted({target_family(w.target) for w in sub})
        info = {"records": len(records), "unit": units[0],
                "families": sorted({target_family(w.target) for w in workloads}),
                "devices": sorted({w.device for w in workloads}), "seed": int(seed), "rounds": rounds,
                "quantile_rounds": quantile_rounds, "params": {k: v for k, v in base.items()}}
        if accel_prior is not None:
            info["accel_prior"] = {"model": "tvm_mp.cost_models.accel.AccelCostModel",
                                   "objective": accel_prior.objective,
                                   "hardware": accel_prior.hw.to_dict()}
        model = cls(boosters, prior, knob_names, energy_families, info, accel_prior, feature_sets)
        model._schedule_cache = schedule_cache
        return model

    @staticmethod
    def _fit_pair(xgb, x, y, params, rounds, quantile_rounds, weights=None):
        data = xgb.DMatrix(x, label=y, weight=weights)
        mean = xgb.train({**params, "objective": "reg:squarederror"}, data, num_boost_round=rounds)
        qparams = {**params, "objective": "reg:quantileerror", "quantile_alpha": np.array(QUANTILES),
                   "max_depth": min(4, int(params.get("max_depth", 6)))}
        quant = xgb.train(qparams, data, num_boost_round=quantile_rounds)
        return mean, quant

    # ---- prediction -----------------------------------------------------------------------------------------
    def predict(self, workloads: Sequence[Workload]) -> Estimate:
        workloads = list(workloads)
        if not workloads:
            return Estimate(np.zeros(0), np.zeros(0), "modelled")
        require_kinds(workloads, KERNEL_KINDS, "XGBCostModel")
        raw = raw_fields(workloads)
        ev = self.counter.events(raw)
        built = _built(workloads, raw, self.feature_sets, self._schedule_cache)
        x = feature_matrix(workloads, self.counter, self.knob_names, events=ev, raw=raw,
                           feature_sets=self.feature_sets, schedule_cache=self._schedule_cache, built=built)
        ev_prior = _prior_events(self.counter, raw, ev, built)
        prior_lat, prior_energy = _priors(self.prior, self.accel_prior, workloads, ev_prior)
        ratio = self.boosters["latency"].inplace_predict(x)
        latency = prior_lat * np.exp(ratio)
        interval = None
        if "latency_q" in self.boosters:
            q = np.sort(np.asarray(self.boosters["latency_q"].inplace_predict(x)).reshape(len(workloads), -1), axis=1)
            interval = prior_lat[:, None] * np.exp(q[:, [0, -1]])
            interval = np.column_stack([np.minimum(interval[:, 0], latency), np.maximum(interval[:, 1], latency)])
        fams = np.array([target_family(w.target) for w in workloads])
        learned = np.isin(fams, self.energy_families) if "energy" in self.boosters else np.zeros(len(fams), bool)
        energy = np.zeros(len(workloads))
        energy_interval = None
        if (~learned).any():
            idx = np.flatnonzero(~learned)
            energy[idx] = self.prior.energy.energy_uj([workloads[i] for i in idx], {k: v[idx] for k, v in ev.items()})
        if learned.any():
            idx = np.flatnonzero(learned)
            prior_e = prior_energy[idx]
            energy[idx] = prior_e * np.exp(self.boosters["energy"].inplace_predict(x[idx]))
            if learned.all() and "energy_q" in self.boosters:
                q = np.sort(np.asarray(self.boosters["energy_q"].inplace_predict(x[idx])).reshape(len(idx), -1),
                            axis=1)
                lo_hi = prior_e[:, None] * np.exp(q[:, [0, -1]])
                energy_interval = np.column_stack([np.minimum(lo_hi[:, 0], energy), np.maximum(lo_hi[:, 1], energy)])
        basis = "learned" if learned.all() else "modelled" if not learned.any() else "mixed"
        return Estimate(latency, energy, basis, interval, energy_interval)

    # ---- files ----------------------------------------------------------------------------------------------
    def to_dict(self, compact: bool = False) -> dict:
        data = {"format": FORMAT, "version": FORMAT_VERSION, "feature_names": list(self.feature_names),
                "knob_names": list(self.knob_names), "energy_families": list(self.energy_families),
                "prior": self.prior.to_dict(), "info": self.info,
                "boosters": {name: _booster_to_json(b, compact) for name, b in self.boosters.items()}}
        if self.feature_sets:  # written only when used: files without it load in older tvm-mp versions
            data["feature_sets"] = list(self.feature_sets)
        return data

    def save(self, path: str | Path, compact: bool = True) -> Path:
        """Write the model as one JSON file (boosters in XGBoost's JSON format; ``compact``: see
        :func:`_booster_to_json`)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # replaced atomically and flushed to disk: a kill or a crash mid-save keeps the previous model
        return write_atomic(path, json.dumps(self.to_dict(compact), separators=(",", ":")), durable=True)

    @classmethod
    def from_dict(cls, data: Mapping, energy_model: CpuEnergyModel | None = None) -> "XGBCostModel":
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise CostModelError(f"not a tvm-mp XGBoost cost model (format {FORMAT!r} expected)")
        if int(data.get("version", 0)) > FORMAT_VERSION:
            raise CostModelError(f"cost model file version {data['version']} is newer than this tvm-mp: upgrade it")
        counter = energy_model.counter if energy_model is not None else KernelCounter()
        prior = AnalyticalModel.from_dict(data["prior"], energy_model or CpuEnergyModel(counter=counter), counter)
        accel_prior = None
        spec = data.get("info", {}).get("accel_prior")
        if spec is not None:
            from ..accel.hardware import HardwareConfig
            from .accel import AccelCostModel

            accel_prior = AccelCostModel(HardwareConfig.from_dict(spec["hardware"]), spec.get("objective", "energy"))
        model = cls({n: _booster_from_json(b) for n, b in data["boosters"].items()}, prior, data.get("knob_names", ()),
                    data.get("energy_families", ()), data.get("info", {}), accel_prior,
                    tuple(data.get("feature_sets", ())))
        if list(model.feature_names) != list(data.get("feature_names", [])):
            raise CostModelError("the model file was trained on other features than this tvm-mp computes: "
                                 "retrain it (tvm-mp cost-model train ...)")
        return model

    @classmethod
    def load(cls, path: str | Path, energy_model: CpuEnergyModel | None = None) -> "XGBCostModel":
        try:
            text = Path(path).read_text()
        except UnicodeDecodeError:
            raise CostModelError(f"cost model {path} is not a text (JSON) file: retrain it (tvm-mp cost-model train)"
                                 ) from None
        except OSError as err:
            raise CostModelError(f"cannot read cost model {path}: {err.strerror}") from None
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as err:
            raise CostModelError(f"cost model {path} is not valid JSON ({err}): retrain it (tvm-mp cost-model train)"
                                 ) from None
        try:
            return cls.from_dict(data, energy_model)
        except CostModelError:
            raise
        except Exception as err:  # a field missing or of the wrong type, or XGBoost refusing a booster
            raise CostModelError(f"cost model {path} is damaged ({type(err).__name__}: "
                                 f"{' '.join(str(err).split())[:200]}): retrain it (tvm-mp cost-model train)") from None

    @classmethod
    def default(cls, energy_model: CpuEnergyModel | None = None) -> "XGBCostModel":
        """The model shipped with tvm-mp, trained on this project's host measurements (docs/cost_models.md)."""
        text = resources.files("tvm_mp.cost_models").joinpath(DEFAULT_MODEL).read_text()
        return cls.from_dict(json.loads(text), energy_model)


def _built(workloads: Sequence[Workload], raw: Mapping[str, np.ndarray], feature_sets: Sequence[str],
           cache: dict) -> Mapping[str, np.ndarray] | None:
    """The workloads' :func:`features.built_fields` with the ``"built"`` feature set (None without it), computed once
    for both the feature matrix and the latency prior."""
    return F.built_fields(workloads, raw, cache) if "built" in feature_sets and len(workloads) else None


def _prior_events(counter: KernelCounter, raw: Mapping[str, np.ndarray], events: Mapping[str, np.ndarray],
                  built: Mapping[str, np.ndarray] | None) -> Mapping:
    """The events the latency prior reads: the counted ``events``, or with ``built`` (:func:`_built`) the
    accumulate and bit-packing blocks counted as the build lays them out (:func:`built_block_points`)."""
    if built is None:
        return events
    return counter.events(raw, points=F.built_block_points(raw, built))


def _priors(prior: AnalyticalModel, accel_prior, workloads: Sequence[Workload],
            ev: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(latency ms, energy µJ) priors: ``accel_prior`` (the accelerator's mapping model) for ``accel`` workloads,
    the calibrated roofline ``prior`` and ``PJ_PER_MAC_PRIOR`` for the others."""
    is_accel = np.array([target_family(w.target) == "accel" for w in workloads], dtype=bool)
    if is_accel.any() and accel_prior is None:
        raise CostModelError("this cost model was trained without accelerator records, so it cannot predict "
                             "accelerator workloads: train it on records from the accelerator simulator")
    lat = np.zeros(len(workloads))
    energy = _energy_prior_uj(workloads, ev)
    for rows, accel in ((np.flatnonzero(~is_accel), False), (np.flatnonzero(is_accel), True)):
        if not rows.size:
            continue
        sub = [workloads[i] for i in rows]
        if accel:
            est = accel_prior.predict(sub)
            lat[rows], energy[rows] = est.latency_ms, est.energy_uj
        else:
            lat[rows] = prior.latency_ms(sub, {k: v[rows] for k, v in ev.items()})
    return lat, energy


def _energy_prior_uj(workloads: Sequence[Workload], events: Mapping[str, np.ndarray]) -> np.ndarray:
    """Scale of learned energies: ``PJ_PER_MAC_PRIOR`` pJ per MAC (at least one MAC)."""
    macs = np.array([w.macs for w in workloads], dtype=np.float64)
    return np.maximum(macs, 1.0) * PJ_PER_MAC_PRIOR * 1e-6
