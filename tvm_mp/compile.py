"""``tvm_mp.compile``: the public entry point. A plan goes straight to the compile driver; a budget goes through the
plan search first (which then calls the driver with its calibration and rounded weights)."""

from __future__ import annotations

from typing import Any, Iterable

from .budget import Budget
from .cost_models.select import resolve_cost_model
from .driver import build
from .errors import PlanError
from .kinds import DEFAULT_CALIBRATION_METHOD
from .model import CompiledModel
from .precision import PrecisionPlan
from .schedules.tuning import resolve as resolve_database
from .search.budget import compile_with_budget


def compile(mod, plan: PrecisionPlan | None = None, budget: Budget | None = None, target: Any = None,
            calibration: Iterable | None = None, accuracy_fn=None, calibration_method: str = DEFAULT_CALIBRATION_METHOD,
            percentile: float = 99.99, cost_model=None, database: Any = None) -> CompiledModel:
    """Quantize ``mod`` per ``plan``, lower its layers to integer kernels, build for ``target``.

    ``plan``: a :class:`PrecisionPlan`, or the ``pathlib.Path`` of a plan file (:meth:`PrecisionPlan.load`).

    ``mod``: a Relax ``IRModule`` with its weights bound: from :func:`tvm_mp.load_onnx`, TVM's
    ``relax.frontend.onnx.from_onnx``, a ``relax.frontend.nn`` export or TVMScript (canonicalized first).
    ``target``: None or ``"host"`` (this machine with its CPU features, the default), ``"llvm"`` (a generic CPU),
    ``"aarch64"``, ``"accel"`` (the simulated accelerator: its integer layers run on its bit-exact simulator, the
    report's figures are simulated; ``{"kind": "accel", "config": "my_accel.json"}`` for your hardware description,
    see :mod:`tvm_mp.accel.target`), a JSON dict or a ``tvm.target.Target`` (see :mod:`tvm_mp.targets`).
    ``calibration``: an iterable of input arrays (one-input models) or of ``{input name: array}`` dicts.
    ``accuracy_fn(compiled_model) -> float``, when given, fills ``report.accuracy``.
    ``budget=Budget(...)`` instead of ``plan``: search the best plan within the budget first (scored with
    ``accuracy_fn`` on each plan's NumPy reference, else top-1 agreement with fp32 on the calibration data), then
    compile it; see :mod:`tvm_mp.search.budget`. An impossible budget raises ``BudgetError`` with the smallest
    achievable value of each limit.
    ``cost_model``: what gives the report's (and the search's) latency and energy (default: the target's): a cost
    model object, a model file written by ``tvm-mp cost-model train`` (e.g. trained on the records ``tvm-mp tune``
    measured on the device), or ``"analytical"`` / ``"datapath"`` / ``"xgboost"``. ``report.cost_model`` names it
    and ``report.energy_basis`` / ``report.latency_basis`` say whether each figure is modelled or measured.
    ``database``: the tuning database the kernels' knobs come from: None (default) reads the user database that
    ``tvm-mp tune`` writes (``$TVM_MP_HOME/tuning.json``, see :func:`tvm_mp.targets.user_home`) and then the one
    shipped with tvm-mp, under the target's key; a path or ``TuningDatabase`` reads that one only; ``False``
    uses default knobs. Each layer's ``report.layers[i].schedule`` / ``schedule_source`` say which knobs its
    kernel was built with and where they came from.
    """
    if cost_model is not None:  # a model file or a name: read it first, so a bad one fails before calibrating
        cost_model = resolve_cost_model(cost_model)
    if database is not None:
        database = resolve_database(database)
    if budget is not None:
        if plan is not None:
            raise PlanError("give either plan=PrecisionPlan(...) or budget=Budget(...), not both")
        return compile_with_budget(mod, budget, target=target, calibration=calibration, accuracy_fn=accuracy_fn,
                                   calibration_method=calibration_method, percentile=percentile,
                                   cost_model=cost_model, database=database)
    return build(mod, plan, target, calibration=calibration, calibration_method=calibration_method,
                 percentile=percentile, accuracy_fn=accuracy_fn, cost_model=cost_model, database=database)
