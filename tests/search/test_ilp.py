import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tvm_mp import Budget, Precision
from tvm_mp.cost_models.base import Estimate
from tvm_mp.search.costs import CostTable
from tvm_mp.search.ilp import solve_ilp
from tvm_mp.search.problem import AdditiveObjective, Problem
from tvm_mp.search.space import SearchSpace

OPTIONS = [Precision(1, 1), Precision(2, 2), Precision(4, 4), Precision(8, 8)]


class RandomModel:
    def __init__(self, seed):
        self.seed = seed

    def predict(self, workloads):
        rng = np.random.default_rng(self.seed)
        e = rng.uniform(1, 10, len(workloads))
        return Estimate(rng.uniform(1, 10, len(workloads)), e)


@settings(max_examples=15)
@given(seed=st.integers(0, 10**6), frac=st.floats(0.0, 1.0))
def test_ilp_is_the_brute_force_optimum(layers, seed, frac):
    space = SearchSpace.build(layers[:4], OPTIONS)
    costs = CostTable.from_model(space, RandomModel(seed))
    table = np.random.default_rng(seed + 1).uniform(0, 1, (4, 4))
    lo, hi = costs.minimum()["energy_uj"], costs.maximum()["energy_uj"]
    budget = Budget(energy_uj=lo + frac * (hi - lo), latency_ms=costs.maximum()["latency_ms"] * 0.8)
    problem = Problem(space, costs, budget, AdditiveObjective(table))
    best = None
    for idx in itertools.product(range(4), repeat=4):
        if problem.feasible(np.array(idx)):
            value = table[range(4), idx].sum()
            best = value if best is None else min(best, value)
    result = solve_ilp(problem)
    if best is None:
        assert not result.feasible
    else:
        assert result.feasible and abs(result.objective - best) <= 1e-9
