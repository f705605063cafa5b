"""Per-layer, per-option costs: energy and latency from a cost model, weight memory from the storage formats.

Costs are additive over layers (layers run one after another; their weights are stored side by side), so a plan's
totals are sums of table entries. The cost model is anything with ``predict(workloads) -> Estimate``
(:mod:`tvm_mp.cost_models.base`). All layer/option workloads go to the model in one batch.

Default model (:func:`default_cost_model`), chosen by what the space holds:

* integer options only: :class:`~tvm_mp.cost_models.analytical.AnalyticalModel` -- roofline latency and modelled
  CPU energy counted from tvm-mp's integer kernels (unchanged behaviour);
* any float-format or clustered option: :class:`~tvm_mp.cost_models.analytical.DatapathModel` for **every**
  option of the space, integer ones included, so all options sit on one comparable scale. Its energy basis is
  "modelled": per layer, MACs x the energy of one MAC in the layer's own format (:func:`tvm_mp.formats.energy.
  op_energy`: ``w x a``-bit integer multiply + int32 add; eXmY float multiply + fp32 add; int8 centroid x
  ``a``-bit multiply + int32 add for clustered weights), plus one on-chip SRAM read of the stored weight bits and
  the input activation bits (``sram_read_pj``, 8 KB-class SRAM) -- the memory traffic is priced by the same rule
  for integer and format options. Latency is the datapath roofline (MACs per cycle vs bytes moved). These
  figures are not CPU figures: never compare a mixed table's energy with an integer-only table built with the
  CPU model (the table's ``model_name`` says which one it is).

A model that cannot cost an option's kind raises ``CostModelError`` naming it (e.g. AnalyticalModel or the
learned model given a float option): pass ``cost_model=DatapathModel()`` or drop the format options.

Weight memory is the bytes of the weight constant a kernel stores (what ``CompiledModel.report`` counts):
bit-planes of ``ceil(R / 32)`` 32-bit words per plane for bit-serial kernels, ``ceil(R / (8 // c))`` bytes per
output channel for packed kernels with a ``c``-bit container; float formats their 8/16/32-bit containers;
clustered layers the packed index stream (plus one padding word) and the K int8 centroids
(:func:`tvm_mp.formats.energy.stored_weight_bytes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..budget import Budget
from ..cost_models import select
from ..cost_models.base import Workload
from ..errors import PlanError
from ..kinds import COST_METRICS
from ..layers import LayerInfo
from ..precision import Precision
from ..quantize.packing import WORD_BITS, container_bits
from ..targets import parse
from .space import SearchSpace, is_integer

#: Cost quantities and the Budget field limiting each.
METRICS = COST_METRICS
#: Tolerance when checking a total against a limit (relative), so a plan sitting exactly on a limit fits.
FIT_RTOL = 1e-9


def weight_bytes(layer: LayerInfo, precision: Precision) -> int:
    """Bytes of the weight constants a kernel of ``precision`` stores for ``layer`` (every kind; equal to the
    layer's ``weight_bytes`` in ``CompiledModel.report``)."""
    if precision.kind in ("float", "clustered"):
        from ..formats.energy import stored_weight_bytes

        return stored_weight_bytes(layer, precision)
    oc = layer.out_channels
    r = layer.reduction
    if precision.resolved_kind == "bitserial":
        planes = 1 if precision.w_bits == 1 else precision.w_bits
        return oc * planes * (-(-r // WORD_BITS)) * (WORD_BITS // 8)
    per_byte = 8 // container_bits(precision.w_bits)
    return oc * (-(-r // per_byte))


def default_cost_model(space: SearchSpace | None = None, target=None):
    """The model for ``space`` on ``target`` (:func:`tvm_mp.cost_models.select.default_cost_model`): the
    target's model if every option is an integer one (or no space is given), else
    :class:`~tvm_mp.cost_models.analytical.DatapathModel` for all options."""
    options = [o for opts in space.options for o in opts] if space is not None else []
    return select.default_cost_model(parse(target), options)


@dataclass(frozen=True, eq=False)
class CostTable:
    """``[layer, option]`` arrays of energy (µJ), latency (ms) and weight memory (kB); padding entries are inf.

    ``energy_basis`` is the cost model's label for its energy figures ("modelled" for CPU energy).
    """

    space: SearchSpace
    energy_uj: np.ndarray
    latency_ms: np.ndarray
    memory_kb: np.ndarray
    energy_basis: str = "modelled"
    model_name: str = ""
    model: object = None  # the cost model that filled the table (the driver reports with the same one)
    #: Per-inference latency outside the layers (quantize calls, other operators, VM overhead) that a whole-model
    #: predictor adds (:meth:`with_fixed_latency`): already spread over the layers' latency entries, kept for reports.
    fixed_latency_ms: float = 0.0

    def __post_init__(self) -> None:
        shape = (self.space.n_layers, self.space.max_options)
        for name in METRICS:
            arr = np.array(getattr(self, name), dtype=np.float64)
            if arr.shape != shape:
                raise PlanError(f"CostTable.{name} must have shape {shape} (layers x options), got {arr.shape}")
            valid = np.arange(shape[1])[None, :] < self.space.sizes[:, None]
            if not np.isfinite(arr[valid]).all() or (arr[valid] < 0).any():
                raise PlanError(f"CostTable.{name} has negative or non-finite costs: check the cost model")
            arr[~valid] = np.inf
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @classmethod
    def from_model(cls, space: SearchSpace, model=None, target=None,
                   epilogues: Mapping[str, str] | None = None,
                   links: Sequence[tuple[str, str]] = ()) -> "CostTable":
        """Ask ``model`` (default: :func:`default_cost_model`) about every layer at every option, in one batch.

        ``epilogues``: layer name -> "requant" (integer output edge) or "float"; default "requant".
        ``links``: ``(producer, consumer)`` layers whose integer edge has no CPU op in between; a model with
        ``predict_chain`` (the accelerator's) prices them with the edge on chip where it would be -- per option,
        with the linked neighbours at the same option (the table is per layer; the simulator checks the build).
        """
        target = parse(target)
        if isinstance(model, (str, Path)):  # a model file or a name (select.resolve_cost_model)
            model = select.resolve_cost_model(model)
        model = model if model is not None else default_cost_model(space, target)
        if not hasattr(model, "predict"):
            raise PlanError(f"cost model {type(model).__name__} has no predict(workloads) method")
        epilogues = dict(epilogues or {})
        workloads, where = [], []
        for i, (layer, opts) in enumerate(zip(space.layers, space.options)):
            for j, prec in enumerate(opts):
                workloads.append(Workload.from_layer(layer, prec, epilogue=epilogues.get(layer.name, "requant"),
                                                     target=target.cost_key))
                where.append((i, j))
        est = model.predict(workloads)
        if len(est) != len(workloads):
            raise PlanError(f"cost model {type(model).__name__} returned {len(est)} estimates for "
                            f"{len(workloads)} workloads")
        shape = (space.n_layers, space.max_options)
        energy, latency, memory = np.full(shape, np.inf), np.full(shape, np.inf), np.full(shape, np.inf)
        for k, (i, j) in enumerate(where):
            energy[i, j] = est.energy_uj[k]
            latency[i, j] = est.latency_ms[k]
            memory[i, j] = weight_bytes(space.layers[i], space.options[i][j]) / 1024.0
        if links and callable(getattr(model, "predict_chain", None)):
            cls._chained(space, model, workloads, where, links, energy, latency)
        return cls(space, energy, latency, memory, est.energy_basis, select.cost_model_name(model), model)

    @staticmethod
    def _chained(space: SearchSpace, model, workloads, where, links, energy, latency) -> None:
        """Overwrite the entries of linked layers with ``model.predict_chain`` at each option they share."""
        row = {name: i for i, name in enumerate(space.names)}
        pairs = [(row[a], row[b]) for a, b in links if a in row and b in row]
        at = {(i, space.options[i][j]): k for k, (i, j) in enumerate(where)}
        for prec in {p for opts in space.options for p in opts}:
            chosen = [(at[(a, prec)], at[(b, prec)]) for a, b in pairs if (a, prec) in at and (b, prec) in at]
            if not chosen:
                continue
            ks = sorted({k for pair in chosen for k in pair})
            pos = {k: n for n, k in enumerate(ks)}
            est = model.predict_chain([workloads[k] for k in ks], [(pos[a], pos[b]) for a, b in chosen])
            for n, k in enumerate(ks):
                i, j = where[k]
                energy[i, j], latency[i, j] = est.energy_uj[n], est.latency_ms[n]

    # ---- totals ------------------------------------------------------------------------------------------
    def array(self, metric: str) -> np.ndarray:
        if metric not in METRICS:
            raise PlanError(f"unknown cost {metric!r}: use one of {', '.join(METRICS)}")
        return getattr(self, metric)

    def totals(self, index: Sequence[int]) -> dict[str, float]:
        """Total energy, latency and memory of an index vector."""
        idx = self.space._check_index(index)
        rows = np.arange(self.space.n_layers)
        return {m: float(self.array(m)[rows, idx].sum()) for m in METRICS}

    def layer_costs(self, index: Sequence[int]) -> list[dict[str, float]]:
        rows = range(self.space.n_layers)
        return [{m: float(self.array(m)[i, int(index[i])]) for m in METRICS} for i in rows]

    def minimum(self) -> dict[str, float]:
        """The smallest total each cost can reach on its own (every layer at its cheapest option for it)."""
        return {m: float(np.min(self.array(m), axis=1).sum()) for m in METRICS}

    def maximum(self) -> dict[str, float]:
        return {m: float(np.max(np.where(np.isfinite(self.array(m)), self.array(m), -np.inf), axis=1).sum())
                for m in METRICS}

    def limits(self, budget: Budget) -> dict[str, float]:
        """The limits a budget sets (only the ones it sets)."""
        if not isinstance(budget, Budget):
            raise PlanError(f"expected a tvm_mp.Budget, got {type(budget).__name__}")
        return {m: float(getattr(budget, m)) for m in METRICS if getattr(budget, m) is not None}

    def fits(self, index: Sequence[int], budget: Budget) -> bool:
        totals = self.totals(index)
        return all(totals[m] <= lim * (1 + FIT_RTOL) for m, lim in self.limits(budget).items())

    def budget_use(self, index: Sequence[int], budget: Budget) -> dict[str, float]:
        """Fraction of each set limit that a plan uses (1.0 = exactly on the limit)."""
        totals = self.totals(index)
        return {m: totals[m] / lim for m, lim in self.limits(budget).items()}

    def scaled(self, **factors: float) -> "CostTable":
        """The table with each named metric multiplied by its factor (e.g. ``latency_ms=1.4``: latencies corrected by
        a measurement), labelled as corrected."""
        arrays = {m: self.array(m) for m in METRICS}
        for m, f in factors.items():
            if m not in METRICS or not (isinstance(f, (int, float)) and f > 0 and np.isfinite(f)):
                raise PlanError(f"scaled({m}={f!r}): give a cost metric and a positive finite factor")
            arrays[m] = arrays[m] * float(f)
        name = self.model_name + "".join(f", {m} x{f:.3g} by measurement" for m, f in factors.items())
        return CostTable(self.space, arrays["energy_uj"], arrays["latency_ms"], arrays["memory_kb"], self.energy_basis,
                         name, self.model, self.fixed_latency_ms * float(factors.get("latency_ms", 1.0)))

    def with_fixed_latency(self, fixed_ms: float) -> "CostTable":
        """The table with ``fixed_ms`` of per-inference latency outside the layers (what a whole-model predictor
        adds: quantize calls, other operators, VM overhead) spread evenly over the layers: every plan takes one option
        per layer, so every plan's latency total grows by exactly ``fixed_ms`` and every search, bound and budget
        check sees whole-inference latency without knowing of the term."""
        fixed_ms = float(fixed_ms)
        if not np.isfinite(fixed_ms) or fixed_ms < 0:
            raise PlanError(f"with_fixed_latency({fixed_ms!r}): give a non-negative finite latency in ms")
        share = fixed_ms / max(self.space.n_layers, 1)
        return CostTable(self.space, self.energy_uj, self.latency_ms + share, self.memory_kb, self.energy_basis,
                         self.model_name, self.model, self.fixed_latency_ms + fixed_ms)

    def restricted(self, keep: Sequence[Sequence[int]]) -> "CostTable":
        """The table of :meth:`SearchSpace.restricted` with the same ``keep``."""
        space = self.space.restricted(keep)
        shape = (space.n_layers, space.max_options)
        out = {}
        for m in METRICS:
            arr = np.full(shape, np.inf)
            for i, k in enumerate(keep):
                arr[i, : len(k)] = self.array(m)[i, list(k)]
            out[m] = arr
        return CostTable(space, out["energy_uj"], out["latency_ms"], out["memory_kb"], self.energy_basis,
                         self.model_name, self.model, self.fixed_latency_ms)


def prune_dominated(space: SearchSpace, costs: CostTable, metrics: Sequence[str] = METRICS
                    ) -> tuple[SearchSpace, CostTable]:
    """Drop options another option of the same layer beats: no more costly in any of ``metrics`` and with at
    least as many weight and activation bits (assumed at least as accurate). Keeps the space's order. Only
    integer options are compared (more bits of a float format or more clusters are not assumed more accurate
    than an integer option): float-format and clustered options are never dropped."""
    for m in metrics:
        costs.array(m)
    keep = []
    for i, opts in enumerate(space.options):
        n = len(opts)
        c = np.stack([costs.array(m)[i, :n] for m in metrics], axis=1) if metrics else np.zeros((n, 0))
        w = np.array([o.w_bits for o in opts])
        a = np.array([o.a_bits for o in opts])
        integer = np.array([is_integer(o) for o in opts])
        # [k, j]: option k dominates option j (no more costly anywhere, at least as many bits; strictly better
        # somewhere, or equal in everything and listed first)
        no_worse = ((c[:, None, :] <= c[None, :, :]).all(axis=2) & (w[:, None] >= w[None, :])
                    & (a[:, None] >= a[None, :]) & integer[:, None] & integer[None, :])
        strictly = (w[:, None] > w[None, :]) | (a[:, None] > a[None, :]) | (c[:, None, :] < c[None, :, :]).any(axis=2)
        first = np.arange(n)[:, None] < np.arange(n)[None, :]
        dominates = no_worse & (strictly | first) & ~np.eye(n, dtype=bool)
        keep.append([j for j in range(n) if not dominates[:, j].any()])
    return space.restricted(keep), costs.restricted(keep)


class BudgetError(PlanError):
    """No plan of the search space meets the budget (by the cost model's estimate)."""


def _fmt(metric: str, value: float) -> str:
    unit = metric.rsplit("_", 1)[1].replace("uj", "uJ").replace("kb", "kB")
    return f"{metric.rsplit('_', 1)[0]} {value:.4g} {unit}"


def check_budget(costs: CostTable, budget: Budget) -> None:
    """Raise :class:`BudgetError` if no plan meets ``budget``, giving the smallest achievable value of each limit
    (each on its own), and saying so when the limits are achievable one by one but not together."""
    limits = costs.limits(budget)
    mins = costs.minimum()
    smallest = ", ".join(_fmt(m, mins[m]) for m in METRICS)
    source = f"{costs.model_name or 'cost model'}, energy {costs.energy_basis}"
    over = [m for m, lim in limits.items() if mins[m] > lim * (1 + FIT_RTOL)]
    if over:
        asked = ", ".join(f"{m}={limits[m]:.4g}" for m in over)
        raise BudgetError(f"no plan meets {asked}: the smallest achievable values are {smallest} ({source}); "
                          f"raise {' and '.join(over)} to at least that, or allow lower precisions")
    if len(limits) > 1:
        from scipy.optimize import Bounds, LinearConstraint, milp

        space = costs.space
        cells = [(i, j) for i in range(space.n_layers) for j in range(int(space.sizes[i]))]
        onehot = np.zeros((space.n_layers, len(cells)))
        for k, (i, _) in enumerate(cells):
            onehot[i, k] = 1.0
        a = np.array([[costs.array(m)[i, j] / lim for i, j in cells] for m, lim in limits.items()])
        res = milp(np.zeros(len(cells)), integrality=np.ones(len(cells)), bounds=Bounds(0, 1),
                   constraints=[LinearConstraint(onehot, 1, 1), LinearConstraint(a, -np.inf, 1 + FIT_RTOL)])
        if res.x is None:
            asked = ", ".join(f"{m}={v:.4g}" for m, v in limits.items())
            raise BudgetError(f"no plan meets {asked} together, though each limit alone can be met (smallest "
                              f"achievable: {smallest}; {source}): raise one of the limits")
