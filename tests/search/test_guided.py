"""The default search: proxy integer programs and a few real checks; its integer program with exclusions."""

import numpy as np
import pytest

from tvm_mp import Budget, Precision
from tvm_mp.errors import PlanError
from tvm_mp.search.guided import GuidedConfig, guided_search
from tvm_mp.search.ilp import solve_table
from tvm_mp.search.pareto import explore, optimize, search_context
from tvm_mp.search.space import default_options

OPTIONS = [Precision(w, a) for w in (1, 2, 4, 8) for a in (1, 2, 4, 8)]


@pytest.fixture(scope="module")
def ctx(net, scorer):
    return search_context(net, scorer=scorer, options=OPTIONS, progress=False)


def _budget(ctx, frac):
    lo = ctx.costs.minimum()["energy_uj"]
    hi = ctx.costs.totals(ctx.space.uniform_index(Precision(8, 8)))["energy_uj"]
    return Budget(energy_uj=lo + frac * (hi - lo))


def test_guided_search_fits_the_budget_within_its_evaluations(ctx):
    config = GuidedConfig(max_evaluations=6)
    for frac in (0.1, 0.6):
        before = ctx.scorer.evaluations
        result, problem = guided_search(ctx, _budget(ctx, frac), None, config)
        assert result.feasible and result.method == "guided"
        assert result.evaluations == ctx.scorer.evaluations - before
        assert result.evaluations - result.notes["screen_evaluations"] <= 6  # screening has its own allowance
        assert result.objective == -ctx.scorer.score(result.plan)  # the real score of the plan returned
        assert result.notes["candidates"] >= 1 and result.notes["proxy_entries"] > 0
        assert max(-np.array(result.history)) == -result.objective  # the best checked plan is returned


def test_the_first_tier_that_fits_is_used(ctx):
    """A budget plans of w >= 2, a >= 4 can meet: no 1-bit weights, no activations below 4 bits."""
    costs = ctx.costs
    idx = ctx.space.uniform_index(Precision(2, 4))
    budget = Budget(energy_uj=costs.totals(idx)["energy_uj"] * 1.05)
    result, _ = guided_search(ctx, budget, None, GuidedConfig(max_evaluations=4, refine=False))
    assert result.notes["tier"] == "(2, 4)"
    assert all(p.w_bits >= 2 and p.a_bits >= 4 for _, p in result.plan.items())


def test_a_tier_whose_cheapest_plan_only_just_fits_is_skipped(ctx):
    """At a budget equal to the (2, 4) tier's cheapest plan that tier allows that plan only: the next one is used."""
    energy = ctx.costs.energy_uj
    cheapest = sum(min(energy[i, j] for j, o in enumerate(opts) if o.w_bits >= 2 and o.a_bits >= 4)
                   for i, opts in enumerate(ctx.space.options))
    result, _ = guided_search(ctx, Budget(energy_uj=float(cheapest)), None,
                              GuidedConfig(max_evaluations=2, refine=False, anchors=False, screen=False))
    assert result.notes["tier"] == "(2, 2)"


def test_the_dearest_uniform_plan_within_the_budget_is_checked(ctx):
    """A mixed plan never scores below the uniform plan it could have been (on the search's own score)."""
    costs = ctx.costs
    w4a4 = costs.totals(ctx.space.uniform_index(Precision(4, 4)))["energy_uj"]
    budget = Budget(energy_uj=w4a4 * 1.02)  # w4a4 (and every cheaper uniform plan) fits, w4a8 does not
    result, _ = guided_search(ctx, budget, None, GuidedConfig(max_evaluations=3, refine=False))
    how, score = result.notes["checked"][0][:2]
    assert how.startswith("uniform w") and -result.objective >= score
    assert Precision.parse(how.split()[1]) in ctx.space.uniform_precisions()
    plain, _ = guided_search(ctx, budget, None, GuidedConfig(max_evaluations=3, refine=False, anchors=False))
    assert not any(c[0].startswith("uniform") for c in plain.notes["checked"])


def test_same_inputs_same_plan(net, calib, scorer):
    plans = []
    for _ in range(2):
        fresh = search_context(net, calib, options=OPTIONS, progress=False)  # nothing cached between the two
        result, _ = optimize(fresh, _budget(fresh, 0.3), np.random.default_rng(0), GuidedConfig(max_evaluations=5))
        plans.append(result.plan)
    assert plans[0] == plans[1]


def test_the_default_search_is_guided_above_a_size_and_explore_uses_it(net, ctx, monkeypatch):
    from tvm_mp.search import pareto

    small, _ = optimize(ctx, _budget(ctx, 0.5), np.random.default_rng(0))  # 5 layers: annealing, as before
    assert small.method in ("annealing", "ilp")
    monkeypatch.setattr(pareto, "ANNEAL_MAX_LAYERS", 4)
    result, _ = optimize(ctx, _budget(ctx, 0.5), np.random.default_rng(0))
    assert result.method == "guided"
    front = explore(net, context=ctx, budgets=2, seed=0, progress=False, config=GuidedConfig(max_evaluations=4))
    assert front.uniform() and {p.kind for p in front.points} >= {"uniform"}
    assert all(run["feasible"] for run in front.notes["runs"])


def test_config_is_checked():
    for bad in ({"max_evaluations": 0}, {"candidates": True}, {"tiers": ((0, 4),)}, {"tiers": ()},
                {"patience": 1.5}):
        with pytest.raises(PlanError, match="GuidedConfig") as err:
            GuidedConfig(**bad)
        assert "\n" not in str(err.value)
    assert GuidedConfig(tiers=[[4, 8]]).tiers == ((4, 8),)
    with pytest.raises(PlanError, match="GuidedConfig or an AnnealConfig"):
        optimize(None, Budget(energy_uj=1.0), np.random.default_rng(0), config={"steps": 10})


def test_solve_table_respects_the_limit_exclusions_and_forbidden_options():
    rng = np.random.default_rng(0)
    cost = rng.uniform(0.05, 0.3, (1, 6, 3))  # one limit, 6 layers x 3 options (normalized: sum <= 1)
    table = rng.uniform(0.0, 1.0, (6, 3))
    best = solve_table(cost, table)
    assert cost[0, np.arange(6), best].sum() <= 1.0 + 1e-9
    import itertools

    feasible = [i for i in itertools.product(range(3), repeat=6) if cost[0, range(6), i].sum() <= 1.0]
    assert table[range(6), best].sum() == pytest.approx(min(table[range(6), i].sum() for i in feasible), rel=1e-3)
    other = solve_table(cost, table, exclude=[best], min_changes=2)
    assert (other != best).sum() >= 2
    masked = table.copy()
    masked[0, best[0]] = np.inf  # forbidden
    assert solve_table(cost, masked)[0] != best[0]
    assert solve_table(cost * 10.0, table) is None  # nothing fits


def test_default_options_space_searches_a_real_width_quickly(net, scorer):
    """The full default space (90 options per layer): tiers keep the integer program small, the search quick."""
    ctx90 = search_context(net, scorer=scorer, options=default_options(), progress=False)
    result, _ = guided_search(ctx90, _budget(ctx90, 0.5), None, GuidedConfig(max_evaluations=5))
    assert result.feasible and result.evaluations <= 5
