"""Greedy descent (HAQ style): start with every layer at its least sensitive option, then lower the layer whose
change costs the least sensitivity per unit of budget excess removed, until the budget holds.

The sensitivity is the problem's additive guide (:mod:`tvm_mp.search.sensitivity`); the returned objective is the
problem's own objective at the plan found (e.g. real accuracy), so greedy is comparable with the other searches.
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import PlanError
from .problem import Problem, SearchResult


def greedy(problem: Problem) -> SearchResult:
    """Greedy descent (see module docstring); needs ``problem.guide`` (or an additive objective)."""
    if problem.guide is None:
        raise PlanError("greedy search needs a per-layer sensitivity guide: build the Problem with guide=table")
    start = time.perf_counter()
    evals0 = problem.objective.evaluations
    idx = greedy_index(problem)
    return problem.result("greedy", idx, time.perf_counter() - start, problem.objective.evaluations - evals0 + 1)


def greedy_index(problem: Problem) -> np.ndarray:
    """The greedy plan's index vector (no objective evaluation)."""
    guide = problem.guide
    # least sensitive option per layer; among ties the cheapest (normalized over the limited metrics)
    cheapness = problem.normalized_costs.sum(axis=0)
    return problem.repair(_argmin_ties(guide, cheapness), one_shot=False)


def _argmin_ties(primary: np.ndarray, secondary: np.ndarray) -> np.ndarray:
    out = np.zeros(primary.shape[0], dtype=np.int64)
    for i in range(primary.shape[0]):
        row = primary[i]
        best = np.flatnonzero(row <= row.min() + 1e-15 * max(1.0, abs(row.min())))
        out[i] = best[np.argmin(secondary[i, best])]
    return out
