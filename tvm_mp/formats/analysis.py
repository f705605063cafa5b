"""Per-model statistics of the formats: pair counts of clustered layers on data, modelled energy of a plan.

:func:`clustered_pair_counts` runs the NumPy reference of a quantized module (the one ``CompiledModel``
checks against) and, for every clustered layer, counts how often each (weight index, activation code) pair is
multiplied; :func:`plan_energy` prices a plan per layer with :mod:`tvm_mp.formats.energy`, clustered layers
optionally with a PE holding an associative memory whose hit rate was measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
import tvm

from ..layers import LayerInfo, annotated_layer_functions
from ..precision import PrecisionPlan
from ..quantize.calibrate import normalize_batches
from ..quantize.clustering import HitStats, hit_statistics, pair_counts
from ..quantize.interpreter import Interpreter
from ..quantize.qlayer import read_layer
from .energy import AssociativePE, EnergyFigures, LayerEnergy, layer_energy


def clustered_pair_counts(quantized: tvm.IRModule, batches: Iterable) -> dict[str, np.ndarray]:
    """Layer name -> int64 ``[clusters, 2**a_bits]`` MAC counts of every clustered layer of ``quantized`` (a module
    after AnnotatePrecision with activation ranges and QuantizeWeights) over the input ``batches``."""
    layers = {name: read_layer(func) for name, (_, func) in annotated_layer_functions(quantized).items()}
    clustered = {n: layer for n, layer in layers.items() if layer.precision.kind == "clustered"}
    counts = {n: np.zeros((layer.precision.clusters, 1 << layer.precision.a_bits), np.int64)
              for n, layer in clustered.items()}

    def record(name: str, x: np.ndarray) -> None:
        layer = clustered.get(name)
        if layer is None:
            return
        act = layer.require_act()
        codes = x if x.dtype == np.uint8 else act.quantize(x)
        params = None if layer.info.op == "dense" else layer.info.params
        counts[name] += pair_counts(codes, layer.clustered, act.bits, params, act.zero_point)

    interp = Interpreter(quantized, quantized=True, on_layer_input=record)
    for arrays in normalize_batches(quantized, batches):
        interp.run(arrays)
    return counts


@dataclass(frozen=True)
class ClusteredLayerStats:
    """Hit rates of one clustered layer and the energy per MAC of its PE with and without the memory."""

    name: str
    hits: HitStats
    hit_pj: float
    miss_pj: float
    mac_pj: float  # with the associative memory, at the measured exact hit rate
    multiply_mac_pj: float  # the same PE without the memory (its multiplier every time)


def clustered_stats(plan: PrecisionPlan, fit_counts: Mapping[str, np.ndarray], eval_counts: Mapping[str, np.ndarray],
                    entries: int, top_bits: int, figures: EnergyFigures | None = None,
                    zero_points: Mapping[str, int] | None = None, multiplier: str = "integer"
                    ) -> dict[str, ClusteredLayerStats]:
    """Hit statistics (memory filled from ``fit_counts``, measured on ``eval_counts``) and PE energies per layer
    (``multiplier``: the PE's own multiplier, see :meth:`AssociativePE.for_clustered`)."""
    out = {}
    for name, counts in eval_counts.items():
        prec = plan[name]
        hits = hit_statistics(fit_counts[name], counts, prec.a_bits, entries, top_bits,
                              (zero_points or {}).get(name, 0))
        pe = AssociativePE.for_clustered(prec, entries, figures=figures, multiplier=multiplier)
        out[name] = ClusteredLayerStats(name, hits, pe.hit_pj, pe.miss_pj, pe.mac_pj(hits.exact_hit_rate),
                                        pe.multiply.mac_pj)
    return out


def plan_energy(layers: Iterable[LayerInfo], plan: PrecisionPlan, figures: EnergyFigures | None = None,
                mac_pj: Mapping[str, float] | None = None) -> list[LayerEnergy]:
    """Modelled energy of every layer under ``plan`` (layers absent from it in fp32); ``mac_pj`` overrides the
    per-MAC energy of some layers (e.g. clustered layers with an associative memory)."""
    mac_pj = dict(mac_pj or {})
    return [layer_energy(info, plan.get(info.name), figures, mac_pj.get(info.name)) for info in layers]
