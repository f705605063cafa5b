"""Emulated instruction counts of a whole compiled aarch64 model as measurement records.

:func:`model_records` builds the model's standalone bundle, runs one inference under ``qemu-aarch64 -cpu max``
with tvm-mp's counting plugin (:func:`tvm_mp.deploy.aarch64.measure`) and turns the count of each layer kernel
*inside the running model* into a :class:`~tvm_mp.measure.records.Record` of source ``"emulator"`` (the layer's
workload as built, ``instructions``, unit "emulated instructions"): records ``tvm-mp cost-model train --records``
takes, next to those ``tvm-mp tune --target aarch64`` writes for isolated kernels. The per-model total is in the
figures. Counts, never times.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .records import Record

#: The device of records counted under qemu-aarch64 (as ``tvm-mp tune --target aarch64`` writes them).
EMULATED_DEVICE = "qemu-aarch64"


def model_records(model, x: np.ndarray, name: str = "model", directory: str | Path | None = None
                  ) -> tuple[dict, list[Record]]:
    """``(figures, records)`` of one emulated inference of the aarch64 :class:`~tvm_mp.model.CompiledModel`
    ``model`` on ``x``: ``figures`` as :func:`tvm_mp.deploy.aarch64.measure` reports them (``instructions`` per
    inference, ``kernel_instructions`` per kernel, ``equals_reference``...), ``records`` one per layer kernel
    (``meta["origins"]`` is ``name/layer``)."""
    from ..cost_models.base import CostModelError
    from ..cost_models.whole_model import runtime_calls
    from ..deploy.aarch64 import measure
    from ..deploy.emulate import BASIS
    from .in_model import _layers_of

    if model.lowered is None:
        raise CostModelError("this model was read back by tvm_mp.load and has no lowered module: compile it again")
    if model.target.arch != "aarch64":
        raise CostModelError(f"emulated counts are for aarch64 models; this one is for {model.target}: compile "
                             "with target='aarch64'")
    calls = runtime_calls(model.lowered, _layers_of(model), model.plan, model.target, device=EMULATED_DEVICE)
    figures, output = measure(model, x, directory)
    figures["equals_reference"] = bool(np.array_equal(output, model.reference(x)))
    counts = figures["kernel_instructions"]
    records = []
    for call in calls.calls:
        n = counts.get(call.func, 0)
        if call.role == "layer" and n > 0:
            records.append(Record(call.workload, (), "emulator", instructions=n,
                                  meta={"context": "model", "model": name, "basis": BASIS,
                                        "origins": [f"{name}/{call.layer}"]}))
    return figures, records
