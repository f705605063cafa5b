import numpy as np
import pytest

from tvm_mp.errors import Error, PlanError
from tvm_mp.search.problem import AdditiveObjective, Problem
from tvm_mp.search.random_search import random_search


def test_random_search_is_feasible_and_seeded(additive):
    space, costs, table, budget = additive
    problem = Problem(space, costs, budget, AdditiveObjective(table))
    a = random_search(problem, np.random.default_rng(5), samples=60)
    b = random_search(problem, np.random.default_rng(5), samples=60)
    assert a.feasible and a.plan == b.plan and a.objective == b.objective
    assert a.evaluations <= 60
    more = random_search(problem, np.random.default_rng(5), samples=240)
    assert more.objective <= a.objective  # the same stream, four times longer: never worse
    with pytest.raises(PlanError, match="samples"):
        random_search(problem, np.random.default_rng(0), samples=0)
    with pytest.raises(Error, match="default_rng"):
        random_search(problem, 3)
