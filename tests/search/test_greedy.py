import numpy as np
import pytest

from tvm_mp import Budget
from tvm_mp.errors import PlanError
from tvm_mp.search.greedy import greedy
from tvm_mp.search.problem import AdditiveObjective, Problem


def test_greedy_lowers_the_least_sensitive_layers_until_the_budget_holds(additive):
    space, costs, table, budget = additive
    problem = Problem(space, costs, budget, AdditiveObjective(table))
    result = greedy(problem)
    assert result.feasible and result.method == "greedy"
    assert result.objective == pytest.approx(table[np.arange(space.n_layers), list(result.index)].sum())
    # with no real limit, greedy keeps every layer at its least sensitive option
    loose = Problem(space, costs, Budget(energy_uj=costs.maximum()["energy_uj"] * 2), AdditiveObjective(table))
    best = np.nanmin(np.where(np.isfinite(table), table, np.nan), axis=1)
    np.testing.assert_allclose(table[np.arange(space.n_layers), list(greedy(loose).index)], best)


def test_greedy_needs_a_guide(additive):
    space, costs, table, budget = additive

    class Opaque:
        additive = False
        evaluations = 0

        def value(self, index):
            return 0.0

    with pytest.raises(PlanError, match="guide"):
        greedy(Problem(space, costs, budget, Opaque()))
