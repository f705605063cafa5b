"""The accelerator's analytical mapping model behind the cost-model interface.

:mod:`tvm_mp.accel.mapping` models the hardware; this adapter answers ``predict(workloads) -> Estimate`` with it,
so the accelerator package itself knows nothing of cost models.
"""

from __future__ import annotations

import numpy as np

from ..accel.hardware import HardwareConfig
from ..accel.mapping import (
    AnalyticalModel,
    LayerEstimate,
    mapping_from_knobs,
    search_mappings,
    workload_output,
    workload_shape,
)
from .base import Estimate


class AccelCostModel:
    """The analytical model behind the cost-model interface: ``predict(workloads) -> Estimate``.

    Each workload runs at the mapping its knobs name (:data:`~tvm_mp.accel.mapping.MAPPING_KNOBS`), or at the
    best mapping for ``objective`` when they name none. Energy is "modelled" (event counts x the hardware's energy
    table).
    """

    def __init__(self, hw: HardwareConfig | None = None, objective: str = "energy"):
        self.hw = hw or HardwareConfig.default()
        self.objective = objective
        self.model = AnalyticalModel(self.hw)
        self._best: dict = {}

    def estimate(self, workload) -> LayerEstimate:
        shape, output = workload_shape(workload), workload_output(workload)
        mapping = mapping_from_knobs(workload.knobs)
        if mapping is None:
            key = (shape, workload.w_bits, workload.a_bits, output)
            if key not in self._best:
                self._best[key] = search_mappings(shape, workload.w_bits, workload.a_bits, self.hw, output,
                                                  self.objective, model=self.model).best
            return self._best[key]
        return self.model.estimate(shape, workload.w_bits, workload.a_bits, mapping, output)

    def predict(self, workloads):
        ests = [self.estimate(w) for w in workloads]
        return Estimate(np.array([e.latency_us / 1000.0 for e in ests]), np.array([e.energy_uj for e in ests]),
                        "modelled", notes={"hardware": self.hw.name, "model": "tvm_mp.accel.mapping"})
