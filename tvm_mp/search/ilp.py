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
from .costs import FIT_RTOL
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


def solve_table(norm: np.ndarray, table: np.ndarray, exclude=(), min_changes: int = 1,
                time_limit_s: float = 2.0, mip_rel_gap: float = 1e-3) -> np.ndarray | None:
    """The index vector minimizing ``sum table[l, index[l]]`` with every row of ``sum norm[k, l, index[l]] <= 1``;
    options whose ``table`` entry is inf are not allowed. ``exclude``: index vectors the result must differ from in
    at least ``min_changes`` layers each. Optimal within ``mip_rel_gap`` (the table is a proxy: a closer optimum is
    not a better plan) or the best plan found in ``time_limit_s``; None when no allowed plan fits (or none was found
    in time)."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    table = np.asarray(table, dtype=np.float64)
    n_layers = table.shape[0]
    cells = [(i, j) for i in range(n_layers) for j in range(table.shape[1]) if np.isfinite(table[i, j])]
    if not cells or len({i for i, _ in cells}) < n_layers:
        return None
    rows = np.array([i for i, _ in cells])
    opts = np.array([j for _, j in cells])
    onehot = np.zeros((n_layers, len(cells)))
    onehot[rows, np.arange(len(cells))] = 1.0
    constraints = [LinearConstraint(onehot, 1.0, 1.0)]
    if norm.shape[0]:
        constraints.append(LinearConstraint(norm[:, rows, opts], -np.inf, 1.0 + FIT_RTOL))
    for ex in exclude:
        same = (opts == np.asarray(ex)[rows]).astype(np.float64)
        constraints.append(LinearConstraint(same[None, :], -np.inf, n_layers - min_changes))
    for slack in (FIT_RTOL, -1e-6):  # the solver's own tolerance may overshoot a limit: then once more, tighter
        if norm.shape[0]:
            constraints[1] = LinearConstraint(norm[:, rows, opts], -np.inf, 1.0 + slack)
        res = milp(table[rows, opts], integrality=np.ones(len(cells)), bounds=Bounds(0, 1),
                   constraints=constraints,
                   options={"time_limit": float(time_limit_s), "mip_rel_gap": float(mip_rel_gap)})
        if res.x is None:
            return None
        chosen = np.rint(res.x) > 0.5
        idx = np.zeros(n_layers, dtype=np.int64)
        idx[rows[chosen]] = opts[chosen]
        if (norm[:, np.arange(n_layers), idx].sum(axis=1) <= 1.0 + FIT_RTOL).all():
            return idx
    return None
