import numpy as np
import pytest

from tvm_mp import Budget
from tvm_mp.errors import PlanError
from tvm_mp.search.problem import AdditiveObjective, Problem


def test_violation_and_repair(additive):
    space, costs, table, budget = additive
    problem = Problem(space, costs, budget, AdditiveObjective(table))
    dearest = np.argmax(np.where(np.isfinite(costs.energy_uj), costs.energy_uj, -1), axis=1)
    assert problem.violation(dearest) > 0 and not problem.feasible(dearest)
    fixed = problem.repair(dearest)
    assert problem.feasible(fixed) and problem.violation(fixed) == 0.0
    assert costs.totals(fixed)["energy_uj"] <= budget.energy_uj * (1 + 1e-9)
    cheap = problem.repair(dearest, cost_only=True)
    assert problem.feasible(cheap)
    # a layer held frozen is changed only if the others cannot make the plan fit
    mins = np.min(costs.energy_uj, axis=1)
    top = costs.energy_uj[np.arange(space.n_layers), dearest]
    last = space.n_layers - 1
    roomy = Problem(space, costs, Budget(energy_uj=mins.sum() - mins[last] + top[last]), AdditiveObjective(table))
    held = roomy.repair(dearest, frozen=[last])
    assert held[last] == dearest[last] and roomy.feasible(held)
    big = int(np.argmax(top))  # its dearest option alone is over that budget
    assert top[big] + mins.sum() - mins[big] > roomy.budget.energy_uj
    forced = roomy.repair(dearest, frozen=[big])
    assert forced[big] != dearest[big] and roomy.feasible(forced)
    result = problem.result("check", fixed, 0.0, 1)
    assert result.to_dict()["feasible"] and result.budget_use["energy_uj"] <= 1 + 1e-9


def test_problem_checks_its_parts(additive, layers):
    space, costs, table, budget = additive
    with pytest.raises(PlanError, match="Budget"):
        Problem(space, costs, {"energy_uj": 1}, AdditiveObjective(table))
    with pytest.raises(PlanError, match="value"):
        Problem(space, costs, budget, object())
    with pytest.raises(PlanError, match="guide"):
        Problem(space, costs, Budget(memory_kb=1.0), AdditiveObjective(table), guide=np.zeros((2, 2)))
