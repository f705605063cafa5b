"""Reports that explain a plan: per-layer sensitivity, why each layer got its bits, scores; carried in the Report."""

import json

import numpy as np
import pytest

from tvm_mp import Budget, Precision, PrecisionPlan
from tvm_mp.errors import Error
from tvm_mp.model import LayerReport, LayerWhy, PlanExplanation, Report
from tvm_mp.search.explain import SENSITIVITY_OPTION, explain_plan
from tvm_mp.search.pareto import search_context

OPTIONS = [Precision(1, 1), Precision(2, 2), Precision(4, 4), Precision(8, 8)]


@pytest.fixture(scope="module")
def explained(net, calib):
    ctx = search_context(net, calib, options=OPTIONS, progress=False)
    names = list(ctx.space.names)
    cheapest = ctx.space.options[1][int(np.argmin(ctx.costs.memory_kb[1]))]
    plan = PrecisionPlan({names[0]: Precision(8, 8), names[1]: cheapest,
                          **{n: Precision(2, 2) for n in names[2:-1]}})  # the last layer left fp32
    budget = Budget(memory_kb=ctx.costs.totals(ctx.space.uniform_index(Precision(8, 8)))["memory_kb"])
    return ctx, plan, explain_plan(ctx, plan, budget)


def test_every_layer_has_a_sensitivity_rank_and_a_reason(explained):
    ctx, plan, exp = explained
    names = list(ctx.space.names)
    assert [r.name for r in exp.layers] == names
    assert sorted(r.rank for r in exp.layers) == list(range(1, len(names) + 1))
    by_rank = sorted(exp.layers, key=lambda r: r.rank)
    assert all(a.sensitivity >= b.sensitivity for a, b in zip(by_rank, by_rank[1:]))  # rank 1 = most sensitive
    # the sensitivity is the layer-alone output noise at the common option (exact or the proxy's estimate)
    for r in exp.layers:
        exact = ctx.proxy.exact(r.name, SENSITIVITY_OPTION)
        assert r.sensitivity == pytest.approx(exact, rel=5.0, abs=1e-9)
    first, second, last = exp.layers[0], exp.layers[1], exp.layers[-1]
    assert (first.precision, last.precision) == ("w8a8", "fp32")
    assert first.reason.startswith("kept at its most precise option") and "would save" in first.reason
    assert "of the memory budget" in first.reason and f"rank {first.rank}/{len(names)}" in first.reason
    assert second.reason.startswith("the cheapest of its 4 options on memory")
    assert last.reason.startswith("left fp32") and last.noise is None
    for i, r in enumerate(exp.layers[2:-1], start=2):  # w2a2: cheaper options (w1a1), more precise ones (w4a4)
        mem = ctx.costs.memory_kb[i]
        expect = ("cheapest option within the noise budget", "dominated on memory") if mem[0] < mem[1] else (
            "the cheapest of its",)
        assert r.reason.startswith(expect) and r.noise > 0, r.reason
    assert all(f"rank {r.rank}/{len(names)}" in r.reason for r in exp.layers)
    assert exp.source == "budget search" and exp.budget.startswith("memory_kb <= ")
    assert exp.fp32_score == ctx.scorer.fp32_score() and exp.plan_score == ctx.scorer.score(plan)


def test_explanation_travels_in_the_report_json_and_text(explained):
    _, _, exp = explained
    row = LayerReport("conv2d_0", "relax.nn.conv2d", "w8a8", "packed", 10, 10, 40)
    report = Report((row,), 0.1, explanation=exp)
    data = json.loads(json.dumps(report.to_dict()))
    assert Report.from_dict(data) == report
    text = str(report)
    assert "why each layer got its bits (budget search, memory_kb <= " in text
    assert all(r.reason in text for r in exp.layers)
    assert Report.from_dict(Report((row,), 0.1).to_dict()).explanation is None
    data["explanation"]["layers"][0]["rank"] = 0
    with pytest.raises(Error, match="not a tvm-mp report") as err:
        Report.from_dict(data)
    assert "\n" not in str(err.value)


def test_explanation_records_validate():
    with pytest.raises(Error, match="rank"):
        LayerWhy("a", "w8a8", 0.1, 0, "why")
    with pytest.raises(Error, match="sensitivity"):
        LayerWhy("a", "w8a8", float("nan"), 1, "why")
    with pytest.raises(Error, match="LayerWhy"):
        PlanExplanation("plan", ("not a row",), "w4a8", "basis")
    with pytest.raises(Error, match="explanation"):
        Report((), 0.0, explanation={"source": "plan"})
    assert np.isfinite(LayerWhy("a", "w8a8", 0.0, 1, "why").sensitivity)
