"""A VTA-like, precision-scalable accelerator: hardware description, ISA, simulator, energy model, lowering,
analytical mapping model and search, the ``"accel"`` compile target and reports. See ``docs/accelerator.md``.

Modules: :mod:`.hardware` (``HardwareConfig``), :mod:`.isa`, :mod:`.simulator` (``Simulator``, ``run_layer``),
:mod:`.energy`, :mod:`.lower` (``LayerMapping``, ``LayerPlan``, ``lower``), :mod:`.tir_lower`, :mod:`.chain`,
:mod:`.mapping` (``AnalyticalModel``, ``search_mappings``, ``joint_search``, ``search_model``), :mod:`.target`
(``offload_lowered``, ``AccelRuntime``: what ``tvm_mp.compile(..., target="accel")`` builds with; the older
``tvm_mp.driver.compile_offloaded`` is an alias of it), :mod:`.report`.
The mapping model behind the cost-model interface (``AccelCostModel``) is :mod:`tvm_mp.cost_models.accel`: this
package is the hardware and imports no cost model, measurement or search.
"""


def simulate_layer(workload, **options) -> dict:
    """Simulate one cost-model workload (the hook :func:`tvm_mp.measure.source.accel_simulator` looks for)."""
    from .simulator import simulate_layer as _simulate

    return _simulate(workload, **options)
