"""Random search: sample plans uniformly (each layer an option drawn at random), repair the ones over budget with
the cost-only repair (lower the layer that removes the most excess), keep the best feasible one."""

from __future__ import annotations

import time

import numpy as np

from ..errors import PlanError
from .problem import Problem, SearchResult, check_rng


def random_search(problem: Problem, rng: np.random.Generator, samples: int = 1000) -> SearchResult:
    """Best of ``samples`` random plans (repaired into the budget). Same generator state, same plan."""
    rng = check_rng(rng)
    if not isinstance(samples, int) or samples < 1:
        raise PlanError(f"random_search samples={samples!r}: give a positive integer")
    start = time.perf_counter()
    evals0 = problem.objective.evaluations
    best, best_value, history = None, np.inf, []
    for _ in range(samples):
        idx = rng.integers(0, problem.space.sizes)
        if not problem.feasible(idx):
            idx = problem.repair(idx, cost_only=True)
        if problem.feasible(idx):
            value = problem.objective.value(idx)
            if value < best_value:
                best, best_value = idx, value
        history.append(best_value)
    if best is None:
        best = problem.repair(rng.integers(0, problem.space.sizes))
    return problem.result("random", best, time.perf_counter() - start, problem.objective.evaluations - evals0,
                          history[:: max(1, len(history) // 200)])
