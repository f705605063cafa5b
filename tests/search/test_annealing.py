import numpy as np
import pytest

from tvm_mp import Budget, Precision
from tvm_mp.errors import Error, PlanError
from tvm_mp.search.annealing import AnnealConfig, anneal
from tvm_mp.search.costs import CostTable
from tvm_mp.search.greedy import greedy
from tvm_mp.search.ilp import solve_ilp
from tvm_mp.search.problem import AdditiveObjective, Problem, ScoreObjective
from tvm_mp.search.space import default_options


def test_annealing_reaches_the_ilp_optimum_on_an_additive_objective(additive):
    space, costs, table, budget = additive
    problem = Problem(space, costs, budget, AdditiveObjective(table))
    exact = solve_ilp(problem)
    found = anneal(problem, np.random.default_rng(0), AnnealConfig(steps=4000))
    assert found.feasible and exact.feasible
    assert found.objective <= exact.objective * 1.005
    assert found.budget_use["energy_uj"] <= 1.0 + 1e-9
    assert exact.objective <= greedy(problem).objective + 1e-12


def test_same_seed_same_plan(additive, scorer):
    space, costs, table, budget = additive
    problem = Problem(space, costs, budget, AdditiveObjective(table))
    cfg = AnnealConfig(steps=1500)
    a = anneal(problem, np.random.default_rng(7), cfg)
    b = anneal(problem, np.random.default_rng(7), cfg)
    assert a.plan == b.plan and a.objective == b.objective
    # the real (non-additive) score, guided by the table
    small = space.restricted([[space.options[i].index(p) for p in (Precision(2, 2), Precision(4, 4), Precision(8, 8))]
                              for i in range(space.n_layers)])
    scosts = CostTable.from_model(small)
    mid = (scosts.minimum()["energy_uj"] + scosts.totals([2] * 5)["energy_uj"]) / 2
    guide = np.tile([[3.0, 2.0, 1.0]], (5, 1))
    cfg = AnnealConfig(steps=120, restarts=1, progress=False)
    runs = [anneal(Problem(small, scosts, Budget(energy_uj=mid), ScoreObjective(scorer, small), guide),
                   np.random.default_rng(11), cfg) for _ in range(2)]
    assert runs[0].plan == runs[1].plan and runs[0].feasible


def test_without_a_guide_the_penalty_keeps_the_answer_feasible(additive):
    space, costs, table, budget = additive

    class Plain:
        additive = False
        evaluations = 0

        def value(self, index):
            return float(table[np.arange(len(index)), index].sum())

    problem = Problem(space, costs, budget, Plain())
    result = anneal(problem, np.random.default_rng(1), AnnealConfig(steps=2000, progress=False))
    assert result.feasible


def test_config_and_rng_are_checked(additive):
    space, costs, table, budget = additive
    problem = Problem(space, costs, budget, AdditiveObjective(table))
    with pytest.raises(Error, match="default_rng"):
        anneal(problem, 0)
    with pytest.raises(PlanError, match="steps"):
        AnnealConfig(steps=0)
    with pytest.raises(PlanError, match="move_weights"):
        AnnealConfig(move_weights=(0, 0, 0, 0))
    assert len(default_options()) >= 16


def test_mixed_format_space_anneals_to_the_ilp_optimum_and_repeats_with_the_seed(layers):
    """Float-format and clustered options next to integer ones: the local moves (family steps and cross-family
    jumps, no guide) reach the ILP optimum of an additive table, and the same seed gives the same plan."""
    from tvm_mp.search.space import SearchSpace, format_options

    space = SearchSpace.build(layers, list(default_options(w_bits=(1, 2, 4, 8), a_bits=(2, 4, 8)))
                              + list(format_options()))
    costs = CostTable.from_model(space)
    assert costs.model_name == "DatapathModel"
    rng = np.random.default_rng(5)
    bits = np.array([[min(o.w_bits, 8) + min(o.a_bits, 8) for o in opts] for opts in space.options], dtype=float)
    table = rng.uniform(0.5, 2.0, (space.n_layers, 1)) * 2.0**-bits + rng.uniform(0, 1e-3, bits.shape)
    lo = costs.minimum()["energy_uj"]
    hi = costs.totals(space.uniform_index(Precision.fp16()))["energy_uj"]
    problem = Problem(space, costs, Budget(energy_uj=lo + 0.3 * (hi - lo)), AdditiveObjective(table))
    exact = solve_ilp(problem)
    cfg = AnnealConfig(steps=4000, progress=False)
    a = anneal(problem, np.random.default_rng(3), cfg)
    b = anneal(problem, np.random.default_rng(3), cfg)
    assert a.plan == b.plan and a.feasible and exact.feasible
    assert a.objective <= exact.objective * 1.01
    assert any(not p.is_integer for _, p in exact.plan.items())  # the optimum uses a format somewhere
