"""Exact reference for additive objectives: an integer linear program (as HAWQ-V3 allocates bits).

Binary ``x[l, o]`` = layer ``l`` takes option ``o``. Minimize ``sum table[l, o] * x[l, o]`` subject to one option
per layer and, for each limit of the budget, ``sum cost[l, o] * x[l, o] <= limit``. Solved with
``scipy.optimize.milp`` (HiGHS branch and bound), which proves optimality: this is the yardstick the annealer is
measured against on additive objectives.
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import PlanError
from .problem import Problem, SearchResult


def solve_ilp(problem: Problem, table: np.ndarray | None = None, time_limit_s: float | None = None,
              mip_rel_gap: float = 0.0) -> SearchResult:
    """Optimal plan for the additive ``table`` (default: the problem's additive objective, else its guide).

    The result's ``objective`` is the problem's objective at that plan; ``notes["ilp_objective"]`` is the table
    sum, ``notes["status"]`` the solver's message. If no plan fits the budget, the result has ``feasible=False``.
    """
    if table is None:
        table = problem.objective.table if getattr(problem.objective, "additive", False) else problem.guide
    if table is None:
        raise PlanError("the ILP needs an additive table: an AdditiveObjective or a guide (sensitivity) table")
    from scipy.optimize import Bounds, LinearConstraint, milp  # scipy.optimize takes ~1 s to import: on use

    table = np.asarray(table, dtype=np.float64)
    start = time.perf_counter()
    space = problem.space
    cells = [(i, j) for i in range(space.n_layers) for j in range(int(space.sizes[i]))]
    n = len(cells)
    c = np.array([table[i, j] for i, j in cells])
    if not np.isfinite(c).all():
        raise PlanError("the ILP table has non-finite entries for real options")
    rows = np.zeros((space.n_layers, n))
    for k, (i, _) in enumerate(cells):
        rows[i, k] = 1.0
    constraints = [LinearConstraint(rows, 1.0, 1.0)]
    limits = problem.limits
    if limits:
        a = np.array([[problem.costs.array(m)[i, j] / lim for i, j in cells] for m, lim in limits.items()])
        constraints.append(LinearConstraint(a, -np.inf, 1.0))
    options = {"mip_rel_gap": mip_rel_gap}
    if time_limit_s is not None:
        options["time_limit"] = float(time_limit_s)
    res = milp(c, integrality=np.ones(n), bounds=Bounds(0, 1), constraints=constraints, options=options)
    seconds = time.perf_counter() - start
    if res.x is None:
        idx = problem.repair(np.argmin(np.where(np.isfinite(table), table, np.inf), axis=1), cost_only=True)
        return problem.result("ilp", idx, seconds, 0, notes={"status": res.message, "ilp_objective": float("nan")})
    x = np.rint(res.x)
    idx = np.zeros(space.n_layers, dtype=np.int64)
    for k, (i, j) in enumerate(cells):
        if x[k] > 0.5:
            idx[i] = j
    return problem.result("ilp", idx, seconds, 1, notes={"status": res.message, "ilp_objective": float(res.fun),
                                                         "optimal": bool(res.status == 0)})
