import numpy as np
import pytest

from tvm_mp import Budget, Precision
from tvm_mp.errors import CalibrationError, PlanError
from tvm_mp.search.annealing import AnnealConfig
from tvm_mp.search.budget import Measurement, _fit, compile_with_budget
from tvm_mp.search.costs import BudgetError
from tvm_mp.targets import parse

OPTIONS = [Precision(1, 1), Precision(2, 2), Precision(4, 4), Precision(8, 8)]


@pytest.mark.slow
def test_small_net_under_a_memory_budget(net, calib):
    budget = Budget(memory_kb=0.3)
    cm = compile_with_budget(net, budget, calibration=calib, options=OPTIONS, seed=0,
                             config=AnnealConfig(steps=100, restarts=0, max_evaluations=30, progress=False))
    out = cm.search
    assert out.meets_budget() and out.predicted["memory_kb"] <= 0.3
    assert cm.report.memory_kb == pytest.approx(out.predicted["memory_kb"])
    assert all(r.energy_uj is not None and r.latency_ms is not None for r in cm.report.layers)
    assert set(cm.plan) == {"conv2d_0", "conv2d_1", "conv2d_2", "conv2d_3", "dense_0"}
    assert out.metric == "agreement" and 0.0 <= out.search_score <= 1.0
    x = calib[0]
    np.testing.assert_allclose(cm.run(x), cm.reference(x), rtol=1e-5, atol=1e-4)
    assert out.to_dict()["meets_budget"] is True


def test_inputs_are_checked(net, calib):
    with pytest.raises(CalibrationError, match="calibration"):
        compile_with_budget(net, Budget(energy_uj=1.0))
    with pytest.raises(PlanError, match="Budget"):
        compile_with_budget(net, {"energy_uj": 1.0}, calibration=calib)
    with pytest.raises(BudgetError, match="smallest achievable"):
        compile_with_budget(net, Budget(memory_kb=0.01), calibration=calib, options=OPTIONS)
    assert (parse("host").cost_key == "llvm"
            and parse({"kind": "llvm", "mtriple": "aarch64-linux-gnu"}).cost_key == "aarch64")


FAST = AnnealConfig(steps=100, restarts=0, max_evaluations=30, progress=False)


def test_a_wrong_cost_model_is_corrected_by_measurement(net, calib):
    """The device runs slower than the cost model predicts: the first plan misses the latency budget by
    measurement, the search runs again on corrected costs, and the returned plan meets the budget as measured."""
    from tvm_mp.search.budget import Measurement
    from tvm_mp.search.pareto import search_context

    kwargs = dict(calibration=calib, options=OPTIONS, config=FAST, metric="sqnr_db")  # a graded score
    costs = search_context(net, calib, options=OPTIONS, metric="sqnr_db").costs
    lo = costs.minimum()["latency_ms"]
    free = compile_with_budget(net, Budget(latency_ms=1e3), measure=False, **kwargs)
    favourite = free.search.predicted["latency_ms"]  # what the search takes when latency does not bind
    assert favourite > lo
    # the favourite fits by the model's costs, under the first search's safety margin too (3 %), so the first
    # plan is the favourite whatever else the space holds
    budget = Budget(latency_ms=favourite / 0.97 * 1.001)
    factor = budget.latency_ms / lo  # measured, only the cheapest plans fit
    # the device runs every plan factor x slower than the search's table says (the report's total may differ from the
    # table's: its fixed terms are the built plan's, the table's those of the widest plan)
    device = lambda model: Measurement(  # noqa: E731
        factor * costs.totals(costs.space.index_of(model.plan))["latency_ms"], 0.0, "test device")
    cm = compile_with_budget(net, budget, measure=device, **kwargs)
    out = cm.search
    assert len(out.rounds) >= 2, "the first plan (searched on the model's costs) should have missed by measurement"
    first, last = out.rounds[0], out.rounds[-1]
    assert first.measured.latency_ms > budget.latency_ms and first.correction == 1.0
    assert last.correction == pytest.approx(first.measured.latency_ms / first.predicted_latency_ms, rel=1e-6)
    assert out.meets_budget_measured() is True and out.measured_latency_ms <= budget.latency_ms * (1 + 1e-9)
    assert out.to_dict()["meets_budget_measured"] is True and len(out.to_dict()["rounds"]) == len(out.rounds)
    assert "by measurement" in out.cost_model
    np.testing.assert_array_equal(cm.run(calib[0]), cm.reference(calib[0]))


def test_a_budget_below_the_predicted_floor_is_measured_before_it_is_refused(net, calib):
    """The cost model over-predicts (the device runs 2x faster): the budget is below every plan's prediction, so
    the compile builds and measures the space's fastest plan, corrects the costs and searches again; the model it
    returns meets the budget by measurement. A budget below what the fastest plan measures is one clear error."""
    from tvm_mp.search.budget import Measurement, fastest_index
    from tvm_mp.search.pareto import search_context

    ctx = search_context(net, calib, options=OPTIONS, metric="sqnr_db")
    lo = ctx.costs.minimum()["latency_ms"]
    assert ctx.costs.totals(fastest_index(ctx.costs))["latency_ms"] == pytest.approx(lo)

    def fast(model):
        return Measurement(0.5 * ctx.costs.totals(ctx.space.index_of(model.plan))["latency_ms"], 0.0, "test device")

    budget = Budget(latency_ms=0.8 * lo)
    cm = compile_with_budget(net, budget, calibration=calib, config=FAST, measure=fast, context=ctx)
    out = cm.search
    assert [r.kind for r in out.rounds][:2] == ["fastest", "search"]
    assert out.rounds[0].measured.latency_ms == pytest.approx(0.5 * lo)
    assert out.rounds[1].correction == pytest.approx(0.5) and out.rounds[1].offset_ms == 0.0
    assert out.meets_budget_measured() is True and out.measured_latency_ms <= budget.latency_ms
    assert out.rounds[-1].kind == "search" and out.measured_latency_ms > 0.5 * lo  # a searched plan, not the floor
    assert out.to_dict()["rounds"][0]["kind"] == "fastest"
    with pytest.raises(BudgetError, match=r"by measurement: the fastest measured plan ran in [0-9.]+ ms") as err:
        compile_with_budget(net, Budget(latency_ms=0.4 * lo), calibration=calib, config=FAST, measure=fast,
                            context=ctx)
    assert "\n" not in str(err.value)


def test_a_plan_far_under_the_limit_is_searched_again_to_use_the_slack(net, calib):
    """The cost model over-predicts (the device runs 2x faster): the first plan meets the limit with half of it
    unused, so the costs are corrected and the search runs once more; the plan returned meets the limit by
    measurement and scores at least as well as the first one."""
    from tvm_mp.search.budget import UNDERUSED, Measurement
    from tvm_mp.search.pareto import search_context

    ctx = search_context(net, calib, options=OPTIONS, metric="sqnr_db")
    hi = ctx.costs.totals(ctx.costs.space.uniform_index(Precision(8, 8)))["latency_ms"]
    lo = ctx.costs.minimum()["latency_ms"]
    budget = Budget(latency_ms=0.5 * (lo + hi))

    def fast(model):
        return Measurement(0.5 * ctx.costs.totals(ctx.space.index_of(model.plan))["latency_ms"], 0.0, "test device")

    out = compile_with_budget(net, budget, calibration=calib, config=FAST, measure=fast, context=ctx).search
    assert [r.kind for r in out.rounds] == ["search", "search"]
    first, second = out.rounds
    assert first.measured.latency_ms < UNDERUSED * budget.latency_ms and first.correction == 1.0
    assert second.correction == pytest.approx(0.5) and second.measured.latency_ms > first.measured.latency_ms
    assert out.meets_budget_measured() is True
    assert out.search_score >= ctx.scorer.score(first.plan) - 1e-9


def test_the_search_keeps_a_safety_margin_under_a_measured_latency_limit(net, calib):
    """Round 1 searches under the limit minus DEFAULT_MARGIN; a plan under the limit by its median but not by
    median + noise is searched again under a margin of twice the measured noise (and kept as the fallback)."""
    from tvm_mp.search.budget import DEFAULT_MARGIN, Measurement
    from tvm_mp.search.pareto import search_context

    ctx = search_context(net, calib, options=OPTIONS, metric="sqnr_db")
    hi = ctx.costs.totals(ctx.costs.space.uniform_index(Precision(8, 8)))["latency_ms"]
    budget = Budget(latency_ms=hi)
    plans = []

    def noisy(model):  # the first plan: under the limit by its median, over it by median + noise (in every timing
        t = model.report.latency_ms  # session); later plans steady
        key = str(model.plan)
        if not plans:
            plans.append(key)
        return Measurement(t, max(budget.latency_ms - t, 0.0) + 0.01 * budget.latency_ms if key == plans[0] else 0.0)

    out = compile_with_budget(net, budget, calibration=calib, config=FAST, measure=noisy, max_rounds=2,
                              context=ctx).search
    first, second = out.rounds

    def margin_taken(limit_ms, margin, costs):  # the margin, or half / a quarter / none when the costs cannot reach it
        lo = costs.minimum()["latency_ms"]
        if limit_ms is None:
            assert lo > budget.latency_ms * (1 - margin / 4)
            return
        taken = 1 - limit_ms / budget.latency_ms
        assert any(taken == pytest.approx(margin / k) for k in (1, 2, 4)), (taken, margin)
        assert taken == pytest.approx(margin) or lo > budget.latency_ms * (1 - 2 * taken)

    margin_taken(first.search_limit_ms, DEFAULT_MARGIN, ctx.costs)
    assert first.predicted_latency_ms <= first.search_limit_ms * (1 + 1e-6)
    assert not first.measured.surely_meets(budget.latency_ms) and first.measured.latency_ms <= budget.latency_ms
    assert len(first.measured.sessions_ms) == 2  # the miss was timed once more before the costs were corrected
    corrected = ctx.costs.scaled(latency_ms=second.correction)
    margin_taken(second.search_limit_ms, min(max(0.015, 2 * first.measured.relative_noise), 0.25), corrected)
    assert out.measured_latency_ms <= budget.latency_ms and out.meets_budget_measured() is True
    assert out.to_dict()["rounds"][1]["search_limit_ms"] == second.search_limit_ms
    assert out.to_dict()["rounds"][0]["search_limit_ms"] == first.search_limit_ms
    with pytest.raises(PlanError, match="margin"):
        compile_with_budget(net, budget, calibration=calib, context=ctx, margin=0.7)


def test_a_budget_no_measured_plan_meets_is_one_clear_error(net, calib):
    from tvm_mp.search.budget import Measurement

    slow = lambda model: Measurement(1000.0, 1.0, "test device")  # noqa: E731
    with pytest.raises(BudgetError, match=r"fastest measured plan ran in 1000 ms") as err:
        compile_with_budget(net, Budget(latency_ms=10.0), calibration=calib, options=OPTIONS, config=FAST,
                            measure=slow)
    assert "\n" not in str(err.value)


def test_host_measurement_reports_noise(net, calib):
    """On this host a generous latency budget is met by measurement at once; the noise is reported."""
    cm = compile_with_budget(net, Budget(latency_ms=1000.0), calibration=calib, options=OPTIONS, config=FAST)
    out = cm.search
    assert len(out.rounds) == 1 and out.measured_latency_ms > 0 and out.measurement_noise_ms >= 0
    assert out.meets_budget_measured() is True


def test_a_budget_compile_of_a_larger_network_uses_the_guided_search(net, calib, monkeypatch):
    from tvm_mp.search import pareto
    from tvm_mp.search.pareto import search_context

    monkeypatch.setattr(pareto, "ANNEAL_MAX_LAYERS", 4)  # the 5-layer net counts as large

    costs = search_context(net, calib, options=OPTIONS).costs
    lo = costs.minimum()["energy_uj"]
    hi = costs.totals(costs.space.uniform_index(Precision(8, 8)))["energy_uj"]
    cm = compile_with_budget(net, Budget(energy_uj=(lo + hi) / 2), calibration=calib, options=OPTIONS,
                             measure=False)
    out = cm.search
    assert out.result.method == "guided" and out.meets_budget()
    assert out.to_dict()["search"]["notes"]["strategy"] == "guided"
    why = cm.report.explanation  # the report explains the searched plan
    assert {r.name for r in why.layers} == {n for n, _ in cm.plan.items()} and why.source == "budget search"
    assert all(r.precision == str(cm.plan[r.name]) for r in why.layers)
    assert "why each layer got its bits" in str(cm.report)
    x = calib[0][:1]
    np.testing.assert_array_equal(cm.run(x), cm.reference(x))


def test_the_correction_fits_a_line_through_the_plans_around_the_limit_and_not_a_steep_one():
    def m(ms):
        return Measurement(ms, 0.0)

    # measured = 0.5 x predicted + 0.1 through plans under (1.0 -> 0.6) and over (1.4 -> 0.8) a 0.7 ms limit
    scale, offset = _fit([(1.0, m(0.6)), (1.4, m(0.8)), (3.0, m(2.0))], 0.7)
    assert scale == pytest.approx(0.5) and offset == pytest.approx(0.1)
    # nothing under the limit: the ratio of the plan measured closest to it
    assert _fit([(1.0, m(0.9)), (2.0, m(1.6))], 0.7) == (pytest.approx(0.9), 0.0)
    # two plans predicted 0.5 % apart, measured 10 % apart (timing noise): slope 18x the ratio -> the ratio
    scale, offset = _fit([(1.000, m(0.66)), (1.005, m(0.726))], 0.7)
    assert offset == 0.0 and scale == pytest.approx(0.726 / 1.005)  # the plan measured closest to the limit


def test_a_miss_is_timed_once_more_and_the_faster_session_counts():
    """A session slowed by another tenant of the host misses the limit; the second session meets it and counts. A
    plan that meets the limit at once is timed once; a confirmed miss keeps both sessions."""
    from tvm_mp.search.budget import Measurement, measure_confirmed

    sessions = iter([Measurement(0.26, 0.002), Measurement(0.199, 0.001)])
    got = measure_confirmed(lambda model: next(sessions), None, 0.203)
    assert got.latency_ms == 0.199 and got.noise_ms == 0.001 and got.sessions_ms == (0.26, 0.199)
    assert got.surely_meets(0.203)
    calls = []
    once = measure_confirmed(lambda model: calls.append(1) or Measurement(0.19, 0.001), None, 0.203)
    assert len(calls) == 1 and once.sessions_ms == ()
    slow = iter([Measurement(0.25, 0.001), Measurement(0.26, 0.001)])
    missed = measure_confirmed(lambda model: next(slow), None, 0.203)
    assert missed.latency_ms == 0.25 and missed.sessions_ms == (0.25, 0.26) and not missed.meets(0.203)
    # not strict (an independent check): within the limit by median - noise is no miss
    sessions = iter([Measurement(0.205, 0.003)])
    assert measure_confirmed(lambda model: next(sessions), None, 0.203, strict=False).latency_ms == 0.205


def test_a_plan_that_collapses_the_score_is_returned_with_a_warning(net, calib):
    x = calib[0][:2]
    exact = {}

    def accuracy_fn(model):  # 1 for the fp32 network's outputs, 0 for any quantized plan's
        y = np.asarray(model.run(x))
        exact.setdefault("fp32", y)
        return float(np.array_equal(y, exact["fp32"]))

    from tvm_mp.search.pareto import search_context

    ctx = search_context(net, calib, options=OPTIONS, accuracy_fn=accuracy_fn)
    assert ctx.scorer.fp32_score() == 1.0  # scored first: the fp32 outputs are the reference
    costs = ctx.costs
    lo = costs.minimum()["energy_uj"]
    hi = costs.totals(costs.space.uniform_index(Precision(8, 8)))["energy_uj"]
    with pytest.warns(UserWarning, match="does not tolerate"):
        cm = compile_with_budget(net, Budget(energy_uj=(lo + hi) / 2), calibration=calib, context=ctx,
                                 measure=False)
    assert cm.search.search_score == 0.0


def test_when_the_search_that_used_the_slack_misses_the_compile_goes_on(net, calib):
    """The first plan runs at half its predicted latency (the costs over-predict it: slack left), the plan the
    search on halved costs picks runs over the limit: the compile does not stop at the first plan but corrects the
    costs by both measurements and goes on (before, it returned the first plan at once); what it returns meets the
    limit by measurement and scores at least as well as the first plan."""
    from tvm_mp.search.budget import Measurement
    from tvm_mp.search.pareto import search_context

    ctx = search_context(net, calib, options=OPTIONS, metric="sqnr_db")
    hi = ctx.costs.totals(ctx.costs.space.uniform_index(Precision(8, 8)))["latency_ms"]
    lo = ctx.costs.minimum()["latency_ms"]
    limit = 0.5 * (lo + hi)
    order: list = []

    def device(model):  # the second plan measured runs over the limit, every other one at half its prediction
        key = ctx.space.key(ctx.space.index_of(model.plan))
        if key not in order:
            order.append(key)
        p = ctx.costs.totals(ctx.space.index_of(model.plan))["latency_ms"]
        return Measurement(1.02 * limit if order.index(key) == 1 else p / 2, 0.0, "test device")

    out = compile_with_budget(net, Budget(latency_ms=limit), calibration=calib, config=FAST, measure=device,
                              context=ctx).search
    first, second = out.rounds[:2]
    assert first.measured.latency_ms < 0.9 * limit and second.measured.latency_ms > limit
    assert len(out.rounds) >= 3  # the compile went on after the miss
    assert out.meets_budget_measured() is True
    assert out.search_score >= ctx.scorer.score(first.plan) - 1e-9


def test_searched_plans_that_miss_are_blended_toward_the_floor_before_the_floor_is_returned(net, calib, monkeypatch):
    """Every searched plan measures just over the limit (the device slows exactly the plans the searches return)
    and the space's fastest plan is under it: before returning the fastest plan, the compile builds the best-scoring
    searched plan with its costliest layers moved to their fastest options (a "blend" round); it meets the limit by
    measurement and scores better than the fastest plan, so it is returned."""
    from dataclasses import replace

    from tvm_mp.search import budget as budget_module
    from tvm_mp.search.budget import Measurement, fastest_index
    from tvm_mp.search.costs import CostTable
    from tvm_mp.search.pareto import search_context

    base = search_context(net, calib, options=OPTIONS, metric="sqnr_db")
    c = base.costs  # latencies that grow with the bits (this host's tiny layers are near flat): a floor to blend to
    latency = np.outer(np.arange(1, c.space.n_layers + 1), [1.0, 2.0, 4.0, 8.0]) * 1e-3
    ctx = replace(base, costs=CostTable(c.space, c.energy_uj, latency, c.memory_kb, c.energy_basis, "synthetic",
                                        c.model, 0.0))
    hi = ctx.costs.totals(ctx.costs.space.uniform_index(Precision(8, 8)))["latency_ms"]
    lo = ctx.costs.minimum()["latency_ms"]
    budget = Budget(latency_ms=lo + 0.6 * (hi - lo))
    searched = set()
    optimize = budget_module.optimize

    def recording(*args, **kwargs):
        result, rest = optimize(*args, **kwargs)
        searched.add(ctx.space.key(ctx.space.index_of(result.plan)))
        return result, rest

    monkeypatch.setattr(budget_module, "optimize", recording)

    def device(model):
        index = ctx.space.index_of(model.plan)
        table = ctx.costs.totals(index)["latency_ms"]
        missed = ctx.space.key(index) in searched  # a searched plan measures just over the limit
        return Measurement(max(table, 1.02 * budget.latency_ms) if missed else table, 0.0, "test device")

    cm = compile_with_budget(net, budget, calibration=calib, config=FAST, measure=device, context=ctx, max_rounds=2)
    out = cm.search
    kinds = [r.kind for r in out.rounds]
    assert kinds == ["search", "fastest", "search", "blend"], kinds
    assert out.meets_budget_measured() is True and out.measured_latency_ms <= budget.latency_ms
    floor_plan = ctx.space.plan(fastest_index(ctx.costs))
    assert cm.plan != floor_plan and out.search_score > ctx.scorer.score(floor_plan)
    assert out.to_dict()["rounds"][-1]["kind"] == "blend"
    np.testing.assert_array_equal(cm.run(calib[0]), cm.reference(calib[0]))
