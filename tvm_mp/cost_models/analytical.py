"""Analytical cost model: roofline latency + event energy, from the kernel's own event counts.

Latency of one kernel call (ns)::

    overhead + max( sum_c points_c * ns_per_point_c + ops * ns_per_op ,   (compute)
                    l2_bytes / l2_gbps ,  dram_bytes / dram_gbps )         (memory roofs)

``points_c`` are the iteration points of each block class of the kernel and ``ops`` its data operations
(:mod:`tvm_mp.cost_models.features`). Out of the box the parameters are first-principles guesses
(:meth:`RooflineParams.first_principles`: every operation costs ``1 / (clock * ops_per_cycle)``);
:meth:`RooflineParams.calibrate` fits the overhead, per-point and per-operation costs to measured records (least
squares on log ratios by default), which is the form used as the baseline against learned models and as their
prior.
Energy is the modelled CPU energy (:class:`~tvm_mp.cost_models.energy_cpu.CpuEnergyModel`), labelled "modelled".
:class:`AnalyticalModel` reads tvm-mp's integer kernels (``bitserial``, ``packed``); it refuses float-format and
clustered workloads with a ``CostModelError`` naming the kind.

:class:`DatapathModel` costs **every** kind -- integer, float formats, clustered weights -- on one scale, so a
search can mix them: a datapath that computes in each layer's own format (the setting of
:mod:`tvm_mp.formats.energy`). Energy per layer (pJ), the same formula for every kind::

    MACs x op_energy(format).mac_pj   +   sram_read_pj(stored weight bits + input elements x activation bits)

``op_energy``: a ``w x a``-bit integer multiply (+ int32 add), an eXmY float multiply (+ fp32 add), a clustered
layer's int8-centroid x ``a``-bit multiply (+ int32 add); stored weight bits: ``w_bits`` per integer weight, the
8/16/32-bit container of a float format, ``ceil(log2 K)``-bit indices + K int8 centroids; activation bits:
``a_bits``, or a float format's total bits. Figures: 45 nm, ISSCC 2014 keynote (see
:mod:`tvm_mp.formats.energy`); labelled "modelled". Latency (ns), a roofline of the same datapath::

    overhead + max(MACs / (macs_per_cycle x clock_ghz),  (stored weight bits + input bits) / 8 / sram_gbps)

one MAC per lane per cycle whatever the format (assumed: the datapath supports each format natively), so formats
differ in latency through the bytes they move. Neither number is a CPU figure: do not compare them with
:class:`AnalyticalModel`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
from scipy.optimize import least_squares, nnls

from .base import KERNEL_KINDS, WORKLOAD_KINDS, CostModelError, Estimate, Workload, require_kinds, target_family
from .energy_cpu import CpuEnergyModel
from .features import BLOCK_CLASSES, OP_CLASSES, KernelCounter


@dataclass(frozen=True)
class RooflineParams:
    """Latency parameters of one target family (all finite, >= 0; bandwidths > 0)."""

    name: str
    overhead_us: float
    ns_per_point: Mapping[str, float] = field(default_factory=lambda: {c: 0.0 for c in BLOCK_CLASSES})
    ns_per_op: float = 0.0
    l2_gbps: float = 100.0
    dram_gbps: float = 10.0
    notes: str = ""

    def __post_init__(self) -> None:
        points = {c: float(self.ns_per_point.get(c, 0.0)) for c in BLOCK_CLASSES}
        unknown = set(self.ns_per_point) - set(BLOCK_CLASSES)
        if unknown:
            raise CostModelError(f"RooflineParams.ns_per_point has unknown block classes {sorted(unknown)}; "
                                 f"use {', '.join(BLOCK_CLASSES)}")
        object.__setattr__(self, "ns_per_point", points)
        for name, value in [("overhead_us", self.overhead_us), ("ns_per_op", self.ns_per_op), *points.items()]:
            if not np.isfinite(value) or value < 0:
                raise CostModelError(f"RooflineParams {name}={value!r}: give a finite, non-negative number")
        for name in ("l2_gbps", "dram_gbps"):
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise CostModelError(f"RooflineParams.{name}={value!r}: give a positive bandwidth in GB/s")

    @classmethod
    def first_principles(cls, name: str, clock_ghz: float, ops_per_cycle: float, overhead_us: float = 2.0,
                         l2_gbps: float = 100.0, dram_gbps: float = 10.0) -> "RooflineParams":
        """Every data operation costs ``1 / (clock_ghz * ops_per_cycle)`` ns; no per-point costs."""
        if clock_ghz <= 0 or ops_per_cycle <= 0:
            raise CostModelError("first_principles needs a positive clock_ghz and ops_per_cycle")
        return cls(name, overhead_us, ns_per_op=1.0 / (clock_ghz * ops_per_cycle), l2_gbps=l2_gbps,
                   dram_gbps=dram_gbps, notes=f"first principles: {clock_ghz} GHz x {ops_per_cycle} ops/cycle")

    def to_dict(self) -> dict:
        return {"name": self.name, "overhead_us": self.overhead_us, "ns_per_point": dict(self.ns_per_point),
                "ns_per_op": self.ns_per_op, "l2_gbps": self.l2_gbps, "dram_gbps": self.dram_gbps,
                "notes": self.notes}

    @classmethod
    def from_dict(cls, data: Mapping) -> "RooflineParams":
        try:
            return cls(**dict(data))
        except TypeError as err:
            raise CostModelError(f"roofline parameters: {err}") from None

    def latency_ns(self, events: Mapping[str, np.ndarray]) -> np.ndarray:
        compute = np.zeros(events["l2_bytes"].shape[0])
        for c in BLOCK_CLASSES:
            compute += events[f"points_{c}"] * self.ns_per_point[c]
        compute += sum(events[op] for op in OP_CLASSES) * self.ns_per_op
        memory = np.maximum(events["l2_bytes"] / self.l2_gbps, events["dram_bytes"] / self.dram_gbps)
        return self.overhead_us * 1e3 + np.maximum(compute, memory)

    @classmethod
    def calibrate(cls, name: str, events: Mapping[str, np.ndarray], latency_ms: np.ndarray,
                  base: "RooflineParams | None" = None, method: str = "log") -> "RooflineParams":
        """Fit the overhead, the per-point cost of each block class and a per-operation cost to measured latencies.

        ``method="log"`` (default) minimizes the squared log ratio (scipy ``least_squares`` on log-parameters,
        started from the relative fit); ``"relative"`` minimizes the squared relative error by non-negative least
        squares (lower MAPE on its own, but biased low: over-predictions cost more than under-predictions).
        Memory roofs keep ``base``'s bandwidths (the kernels measured here are compute-bound).
        """
        if method not in ("log", "relative"):
            raise CostModelError(f"calibration method {method!r}: use 'log' or 'relative'")
        t_ns = np.asarray(latency_ms, dtype=np.float64) * 1e6
        n_params = len(BLOCK_CLASSES) + 2
        if t_ns.ndim != 1 or t_ns.shape[0] < n_params or np.any(t_ns <= 0):
            raise CostModelError(f"calibration needs at least {n_params} positive latencies")
        columns = [np.full_like(t_ns, 1e3)]  # overhead, in µs
        columns += [events[f"points_{c}"].astype(np.float64) for c in BLOCK_CLASSES]
        columns.append(sum(events[op] for op in OP_CLASSES).astype(np.float64))
        design = np.column_stack(columns)
        scale = np.maximum(design.max(axis=0), 1e-30)
        unit = design / scale
        coef, _ = nnls(unit / t_ns[:, None], np.ones_like(t_ns), maxiter=50 * design.shape[1])
        if method == "log":
            start = np.log(np.maximum(coef, 1e-6))
            fit = least_squares(lambda lc: np.log(unit @ np.exp(lc)) - np.log(t_ns), start)
            coef = np.exp(fit.x)
        coef = coef / scale
        base = base or cls(name, 0.0)
        return cls(name, float(coef[0]), {c: float(v) for c, v in zip(BLOCK_CLASSES, coef[1:-1])}, float(coef[-1]),
                   base.l2_gbps, base.dram_gbps, notes=f"calibrated ({method}) on {t_ns.shape[0]} measured records")


def default_roofline() -> dict[str, RooflineParams]:
    """Uncalibrated first-principles parameters per target family (assumed clocks and issue widths)."""
    return {
        "x86_64": RooflineParams.first_principles("x86_64", clock_ghz=2.6, ops_per_cycle=2.0, overhead_us=2.0,
                                                  l2_gbps=100.0, dram_gbps=10.0),
        "aarch64": RooflineParams.first_principles("aarch64", clock_ghz=1.5, ops_per_cycle=1.0, overhead_us=5.0,
                                                   l2_gbps=30.0, dram_gbps=4.0),
    }


class AnalyticalModel:
    """Roofline latency + modelled event energy; ``predict(workloads) -> Estimate``."""

    def __init__(self, roofline: Mapping[str, RooflineParams] | None = None,
                 energy: CpuEnergyModel | None = None, counter: KernelCounter | None = None):
        self.roofline = dict(default_roofline() if roofline is None else roofline)
        self.counter = counter or (energy.counter if energy is not None else KernelCounter())
        self.energy = energy or CpuEnergyModel(counter=self.counter)

    def latency_ms(self, workloads: Sequence[Workload], events: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        workloads = list(workloads)
        require_kinds(workloads, KERNEL_KINDS, type(self).__name__)
        ev = events if events is not None else self.counter.events(workloads)
        fams = np.array([target_family(w.target) for w in workloads])
        out = np.zeros(len(workloads))
        for fam in np.unique(fams):
            params = self.roofline.get(str(fam))
            if params is None:
                raise CostModelError(f"no roofline parameters for target family {fam!r}; "
                                     f"known: {', '.join(self.roofline)}")
            mask = fams == fam
            out[mask] = params.latency_ns({k: v[mask] for k, v in ev.items()}) / 1e6
        return out

    def predict(self, workloads: Sequence[Workload]) -> Estimate:
        workloads = list(workloads)
        require_kinds(workloads, KERNEL_KINDS, type(self).__name__)
        ev = self.counter.events(workloads)
        return Estimate(self.latency_ms(workloads, ev), self.energy.energy_uj(workloads, ev), "modelled")

    @classmethod
    def calibrated(cls, records, base: "AnalyticalModel | None" = None, method: str = "log",
                   events: Mapping[str, np.ndarray] | None = None) -> "AnalyticalModel":
        """A copy of ``base`` (default: uncalibrated) with each target family's roofline fitted to ``records``.
        ``events``: the successful records' events to fit on (default: ``base.counter``'s counts)."""
        base = base or cls()
        records = [r for r in records if r.error is None]
        if not records:
            raise CostModelError("no successful records to calibrate on")
        workloads = [r.workload for r in records]
        ev = base.counter.events(workloads) if events is None else events
        lat = np.array([getattr(r, "cost", r.latency_ms) for r in records])  # ms, or emulated instructions
        fams = np.array([target_family(w.target) for w in workloads])
        roofline = dict(base.roofline)
        for fam in np.unique(fams):
            mask = fams == fam
            roofline[str(fam)] = RooflineParams.calibrate(str(fam), {k: v[mask] for k, v in ev.items()}, lat[mask],
                                                          roofline.get(str(fam)), method)
        return cls(roofline, base.energy, base.counter)

    def to_dict(self) -> dict:
        return {name: p.to_dict() for name, p in self.roofline.items()}

    @classmethod
    def from_dict(cls, data: Mapping, energy: CpuEnergyModel | None = None,
                  counter: KernelCounter | None = None) -> "AnalyticalModel":
        return cls({name: RooflineParams.from_dict(p) for name, p in data.items()}, energy, counter)


@dataclass(frozen=True)
class DatapathParams:
    """Roofline of the format-aware datapath (assumed figures: a small accelerator-class datapath).

    ``macs_per_cycle``: MAC lanes, one MAC each per cycle in any format; ``clock_ghz``; ``sram_gbps``: on-chip
    operand bandwidth (bytes per ns); ``overhead_us``: fixed cost per layer."""

    clock_ghz: float = 1.0
    macs_per_cycle: int = 16
    sram_gbps: float = 16.0
    overhead_us: float = 0.0

    def __post_init__(self) -> None:
        for name in ("clock_ghz", "macs_per_cycle", "sram_gbps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
                raise CostModelError(f"DatapathParams.{name}={value!r}: give a finite, positive number")
        if not np.isfinite(self.overhead_us) or self.overhead_us < 0:
            raise CostModelError(f"DatapathParams.overhead_us={self.overhead_us!r}: give a finite number >= 0")


class DatapathModel:
    """Every kind (integer, float formats, clustered) on one modelled scale: ``predict(workloads) -> Estimate``.

    See the module docstring for the formulas. ``figures``: a :class:`tvm_mp.formats.energy.EnergyFigures`
    (default: 45 nm); ``params``: a :class:`DatapathParams`.
    """

    basis = "modelled"

    def __init__(self, figures=None, params: DatapathParams | None = None):
        from ..formats.energy import EnergyFigures

        if figures is not None and not isinstance(figures, EnergyFigures):
            raise CostModelError("DatapathModel(figures=...) takes a tvm_mp.formats.energy.EnergyFigures")
        if params is not None and not isinstance(params, DatapathParams):
            raise CostModelError("DatapathModel(params=...) takes a DatapathParams")
        self.figures = figures or EnergyFigures()
        self.params = params or DatapathParams()

    def breakdown_pj(self, workloads: Sequence[Workload]) -> dict[str, np.ndarray]:
        """``{"compute": pJ, "memory": pJ}`` per workload."""
        from ..formats.energy import datapath_energy_pj

        workloads = list(workloads)
        require_kinds(workloads, WORKLOAD_KINDS, type(self).__name__)
        parts = [datapath_energy_pj(w.macs, int(np.prod(w.input_shape)), w.weight_count, w.precision, self.figures)
                 for w in workloads]
        return {"compute": np.array([p[0] for p in parts], dtype=np.float64),
                "memory": np.array([p[1] for p in parts], dtype=np.float64)}

    def bits_moved(self, workloads: Sequence[Workload]) -> np.ndarray:
        """Stored weight bits + input activation bits of each workload (what the memory term reads)."""
        from ..formats.energy import activation_bits, storage_bits

        return np.array([storage_bits(w.weight_count, w.precision) + int(np.prod(w.input_shape))
                         * activation_bits(w.precision) for w in workloads], dtype=np.float64)

    def latency_ms(self, workloads: Sequence[Workload]) -> np.ndarray:
        workloads = list(workloads)
        require_kinds(workloads, WORKLOAD_KINDS, type(self).__name__)
        p = self.params
        macs = np.array([w.macs for w in workloads], dtype=np.float64)
        compute_ns = macs / (p.macs_per_cycle * p.clock_ghz)
        memory_ns = self.bits_moved(workloads) / 8.0 / p.sram_gbps
        return (p.overhead_us * 1e3 + np.maximum(compute_ns, memory_ns)) / 1e6

    def energy_uj(self, workloads: Sequence[Workload]) -> np.ndarray:
        parts = self.breakdown_pj(workloads)
        return (parts["compute"] + parts["memory"]) / 1e6

    def predict(self, workloads: Sequence[Workload]) -> Estimate:
        workloads = list(workloads)
        return Estimate(self.latency_ms(workloads), self.energy_uj(workloads), "modelled",
                        notes={"model": "format-aware datapath (tvm_mp.formats.energy figures)"})
