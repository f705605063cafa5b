import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tvm_mp import Precision, PrecisionPlan
from tvm_mp.errors import PlanError
from tvm_mp.search.pareto import ParetoFront, ParetoPoint, explore, non_dominated

OPTIONS = [Precision(1, 1), Precision(2, 2), Precision(2, 4, "bitserial"), Precision(8, 8)]


def _point(e, s, kind="mixed"):
    return ParetoPoint(PrecisionPlan({}), s, e, e, e, kind)


@given(st.lists(st.tuples(st.integers(1, 20), st.integers(0, 20)), min_size=1, max_size=30))
def test_non_dominated_is_exactly_the_front(pairs):
    pts = [_point(float(e), s / 20) for e, s in pairs]
    keep = set(non_dominated(pts, "energy_uj"))
    for i, p in enumerate(pts):
        dominated = any(q.energy_uj <= p.energy_uj and q.score >= p.score and
                        (q.energy_uj < p.energy_uj or q.score > p.score) for q in pts)
        if i in keep:
            assert not dominated
        elif not dominated:  # an exact duplicate of a kept point
            assert any(pts[k].energy_uj == p.energy_uj and pts[k].score == p.score for k in keep)


@pytest.fixture(scope="module")
def front(net, scorer):
    return _explore(net, scorer)


def _explore(net, scorer):
    from tvm_mp.search.annealing import AnnealConfig
    from tvm_mp.search.pareto import search_context

    ctx = search_context(net, scorer=scorer, options=OPTIONS)
    return explore(net, context=ctx, budgets=3, seed=0, progress=False,
                   config=AnnealConfig(steps=150, restarts=1, max_evaluations=40, progress=False))


def test_explore_finds_fronts_with_uniform_and_mixed_points(front):
    assert set(front.fronts) == {"energy_uj", "latency_ms", "memory_kb"}
    labels = {p.label for p in front.uniform()}
    assert {"w1a1", "w2a2", "w8a8"} <= labels
    energy = front.front("energy_uj")
    costs = [p.energy_uj for p in energy]
    scores = [p.score for p in energy]
    assert costs == sorted(costs) and scores == sorted(scores) and len(set(scores)) == len(scores)
    assert any(p.kind == "mixed" for p in front.points)
    assert front.metric == "agreement" and front.notes["candidates"] >= len(front.points)
    rows = front.dominance()
    assert len(rows) == len(front.uniform()) and all(isinstance(r["dominates"], bool) for r in rows)
    best = front.saving("w8a8", max_loss=1.0)
    assert best["cost"] == min(costs) and 0 <= best["saving"] < 1


def test_json_and_plot(front, tmp_path):
    text = front.to_json(tmp_path / "pareto.json")
    again = ParetoFront.from_json(text)
    assert again.points == front.points and again.fronts == front.fronts
    data = json.loads(text)
    assert {"energy_uj", "accuracy", "kind"} <= set(data["points"][0])  # what tvm_mp.reporting reads
    png = front.plot(tmp_path / "pareto.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(PlanError, match="uniform plan"):
        front.saving("w3a7")


def test_same_seed_same_front(net, scorer, front):
    again = _explore(net, scorer)
    assert [p.plan for p in again.front("energy_uj")] == [p.plan for p in front.front("energy_uj")]


# ---- a space mixing number formats with integer layers -----------------------------------------------------------
import numpy as np  # noqa: E402

from tvm_mp.search.costs import weight_bytes  # noqa: E402
from tvm_mp.search.pareto import plan_mix  # noqa: E402

INTEGER = [Precision(2, 2), Precision(4, 4), Precision(8, 8)]
FLOATS = [Precision.fp16(), Precision.fp8_e4m3(), Precision.fp8_e5m2()]
CLUSTERS = [Precision.clustered(4, 8), Precision.clustered(16, 8), Precision.clustered(8, 4)]
#: Per layer: conv2d_0 integer only, conv2d_1 float only, conv2d_2 clustered only, the rest everything -- so every
#: plan the search returns holds integer, float and clustered layers.
MIXED = {"conv2d_0": INTEGER, "conv2d_1": FLOATS, "conv2d_2": CLUSTERS, "conv2d_3": INTEGER + FLOATS + CLUSTERS,
         "dense_0": INTEGER + FLOATS + CLUSTERS}


def _explore_mixed(net, scorer):
    from tvm_mp.search.annealing import AnnealConfig
    from tvm_mp.search.pareto import search_context

    ctx = search_context(net, scorer=scorer, options=MIXED)
    return explore(net, context=ctx, budgets=3, seed=0, axes=("energy_uj", "memory_kb"), progress=False,
                   config=AnnealConfig(steps=150, restarts=1, max_evaluations=30, progress=False))


@pytest.fixture(scope="module")
def mixed_front(net, scorer):
    return _explore_mixed(net, scorer)


def test_mixed_explore_marks_format_mixes_and_is_deterministic(net, scorer, mixed_front, tmp_path):
    assert mixed_front.notes["cost_model"] == "DatapathModel" and mixed_front.energy_basis == "modelled"
    front = mixed_front.front("energy_uj")
    assert front and all(p.mix == "integer+float+clustered" for p in front)
    assert plan_mix(PrecisionPlan({"a": Precision(4, 4), "b": Precision.fp16()})) == "integer+float"
    data = json.loads(mixed_front.to_json())
    assert {p["mix"] for p in data["points"]} == {p.mix for p in mixed_front.points}
    assert ParetoFront.from_json(mixed_front.to_json()).points == mixed_front.points
    png = mixed_front.plot(tmp_path / "mixed.png", title="mixed")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = _explore_mixed(net, scorer)
    assert [p.plan for p in again.front("energy_uj")] == [p.plan for p in front]
    assert [p.plan for p in again.front("memory_kb")] == [p.plan for p in mixed_front.front("memory_kb")]


def test_uniform_format_plans_are_reference_points(net, scorer, calib):
    from tvm_mp.search.pareto import search_context

    options = INTEGER + FLOATS + CLUSTERS
    ctx = search_context(net, scorer=scorer, options=options)
    front = explore(net, context=ctx, budgets={"energy_uj": []}, seed=0, progress=False)
    labels = {p.label: p.mix for p in front.uniform()}
    assert labels == {str(o): ("integer" if o.is_integer else o.kind) for o in options}


def test_a_searched_mixed_plan_compiles_and_equals_its_reference_exactly(net, scorer, calib, mixed_front):
    import tvm_mp

    point = max(mixed_front.front("energy_uj"), key=lambda p: p.score)
    assert {p.kind for _, p in point.plan.items()} >= {"float", "clustered"}
    assert any(p.is_integer for _, p in point.plan.items())
    cm = tvm_mp.compile(net, plan=point.plan, calibration=calib)
    x = calib[1]
    out = cm.run(x)
    assert np.array_equal(out.view(np.uint32), cm.reference(x).view(np.uint32))
    # the search scored this plan on the same numbers, and costed the weights the artifact stores
    assert np.array_equal(scorer.model(point.plan).run(x).view(np.uint32), out.view(np.uint32))
    layers = {info.name: info for info in tvm_mp.list_layers(net)}
    for row in cm.report.layers:
        assert row.weight_bytes == weight_bytes(layers[row.name], point.plan[row.name]), row.name
    assert cm.report.memory_kb == pytest.approx(point.memory_kb, rel=1e-12)


def test_mixed_search_never_ends_below_the_integer_only_search(net, scorer):
    import numpy as np

    from tvm_mp import Budget
    from tvm_mp.search.annealing import AnnealConfig
    from tvm_mp.search.pareto import integer_start, optimize, search_context

    config = AnnealConfig(steps=100, restarts=1, max_evaluations=20, progress=False)
    mixed = search_context(net, scorer=scorer, options=INTEGER + FLOATS + CLUSTERS)
    integer_only = search_context(net, scorer=scorer, options=INTEGER)
    lo, hi = integer_only.costs.minimum()["energy_uj"], integer_only.costs.maximum()["energy_uj"]
    for limit in (lo * 1.05, float(np.sqrt(lo * hi))):
        budget = Budget(energy_uj=limit)
        problem = mixed.problem(budget)
        alt = integer_start(mixed, problem, np.random.default_rng(1), config)
        assert alt is not None and all(prec.is_integer for _, prec in problem.space.plan(alt).items())
        result, _ = optimize(mixed, budget, np.random.default_rng(0), config)
        ref, _ = optimize(integer_only, budget, np.random.default_rng(0), config)
        assert result.feasible and result.objective <= ref.objective  # scores: minus top-1 agreement
        assert integer_start(integer_only, integer_only.problem(budget), np.random.default_rng(0), config) is None
