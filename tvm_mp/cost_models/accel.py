"""The accelerator's analytical mapping model behind the cost-model interface.

:mod:`tvm_mp.accel.mapping` models the hardware; this adapter answers ``predict(workloads) -> Estimate`` with it,
so the accelerator package itself knows nothing of cost models. ``predict_chain(workloads, links)`` prices layers
whose edges may stay on chip the way the build decides and runs them (:func:`tvm_mp.accel.chain.plan_chain`).
"""

from __future__ import annotations

import numpy as np

from ..accel.chain import plan_chain
from ..accel.hardware import HardwareConfig
from ..accel.lower import LayerPlan, OutputSpec
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

    def estimate(self, workload, output: OutputSpec | None = None) -> LayerEstimate:
        """The workload's figures at its mapping knobs or best mapping; ``output``: what it stores (default: codes
        at its own activation width for a requantized workload)."""
        shape, output = workload_shape(workload), output or workload_output(workload)
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

    def predict_chain(self, workloads, links):
        """:meth:`predict` where ``links`` (pairs of workload indices ``(producer, consumer)``: the producer's
        codes are the consumer's input and nothing else's) may keep their edge on chip, decided as the build
        decides it (fit, layouts, a smaller producer mapping when it pays); also returns how many links stayed on
        chip."""
        workloads = list(workloads)
        ests = [self.estimate(w) for w in workloads]
        nxt = dict(links)
        plans = []
        for i, (w, e) in enumerate(zip(workloads, ests)):
            output = workload_output(w)
            if i in nxt and output.kind == "codes":  # a linked producer stores its consumer's codes
                output = OutputSpec.codes(workloads[nxt[i]].a_bits)
                e = ests[i] = self.estimate(w, output)
            plans.append(LayerPlan(workload_shape(w), w.w_bits, w.a_bits, self.hw, e.mapping, output))
        heads = [i for i in nxt if i not in set(nxt.values())]
        onchip = 0
        for head in heads:
            run = [head]
            while run[-1] in nxt and len(run) <= len(workloads):
                run.append(nxt[run[-1]])
            fixed = {str(i) for i in run if mapping_from_knobs(workloads[i].knobs) is not None}
            chained, edges = plan_chain([str(i) for i in run], [plans[i] for i in run], [""] * (len(run) - 1),
                                        self.objective, fixed)
            onchip += sum(e.onchip for e in edges)
            for i, plan in zip(run, chained):
                if plan.onchip_in is not None or plan.onchip_out is not None:
                    ests[i] = self.model.estimate_plan(plan)
        return Estimate(np.array([e.latency_us / 1000.0 for e in ests]), np.array([e.energy_uj for e in ests]),
                        "modelled", notes={"hardware": self.hw.name, "model": "tvm_mp.accel.mapping",
                                           "onchip_edges": onchip})
