import json

import pytest
from hypothesis import given, strategies as st

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
