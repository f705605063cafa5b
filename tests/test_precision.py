import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tvm_mp import Budget, Precision, PrecisionPlan
from tvm_mp.errors import PlanError

precisions = st.builds(Precision, st.integers(1, 8), st.integers(1, 8),
                       st.sampled_from(["auto", "bitserial", "packed"]))


@given(st.dictionaries(st.from_regex(r"(conv2d|dense)_[0-9]{1,2}", fullmatch=True), precisions, max_size=12))
def test_plan_json_round_trip(entries):
    plan = PrecisionPlan(entries)
    assert PrecisionPlan.from_json(plan.to_json()) == plan
    assert dict(plan.items()) == entries


@given(precisions)
def test_auto_kind_rule(p):
    expected = p.kind if p.kind != "auto" else ("bitserial" if p.w_bits * p.a_bits <= 4 else "packed")
    assert p.resolved_kind == expected
    assert Precision.parse(str(p)) == p


def test_frozen():
    p = Precision(4, 4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.w_bits = 2
    plan = PrecisionPlan({"conv2d_0": p})
    with pytest.raises(TypeError):
        plan.precisions["conv2d_1"] = p


@pytest.mark.parametrize("bad", ["w0a4", "w9a4", "4a4", "wxa4", "w4a4/fast"])
def test_parse_errors(bad):
    with pytest.raises(PlanError):
        Precision.parse(bad)


def test_plan_from_bad_json():
    with pytest.raises(PlanError, match="not valid JSON"):
        PrecisionPlan.from_json("{")
    with pytest.raises(PlanError, match='"layers"'):
        PrecisionPlan.from_json('{"conv2d_0": {"w_bits": 4}}')
    with pytest.raises(PlanError, match="a_bits is missing"):
        PrecisionPlan.from_json('{"layers": {"conv2d_0": {"w_bits": 4}}}')


def test_plan_checks_names_against_model_layers():
    with pytest.raises(PlanError, match="conv2d_5.*conv2d_0, dense_0"):
        PrecisionPlan({"conv2d_5": Precision(2, 2)}, layers=("conv2d_0", "dense_0"))
    with pytest.raises(PlanError, match="unknown precision field"):
        PrecisionPlan({"conv2d_0": {"w_bits": 2, "a_bits": 2, "weight_bits": 3}})


@pytest.mark.parametrize("kwargs", [{}, {"energy_uj": 0}, {"latency_ms": -1.0}, {"memory_kb": float("nan")},
                                    {"energy_uj": "5"}])
def test_budget_validation(kwargs):
    with pytest.raises(PlanError):
        Budget(**kwargs)
    assert Budget(energy_uj=2.5).energy_uj == 2.5
