import numpy as np
import pytest
from hypothesis import given, strategies as st

from tvm_mp import Precision, PrecisionPlan
from tvm_mp.errors import PlanError
from tvm_mp.search.space import SearchSpace, canonical, default_options


def test_default_options_cover_every_bit_pair_and_bitserial_variants():
    opts = default_options()
    autos = [o for o in opts if o.kind == "auto"]
    assert len(autos) == 64
    forced = [o for o in opts if o.kind == "bitserial"]
    assert forced and all(Precision(o.w_bits, o.a_bits).resolved_kind == "packed" for o in forced)
    assert all(o.w_bits * o.a_bits <= 16 for o in forced)
    assert len({canonical(o) for o in opts}) == len(opts)


@given(st.data())
def test_plan_and_index_round_trip(layers, data):
    space = SearchSpace.build(layers, [Precision(w, a) for w in (1, 2, 4, 8) for a in (2, 8)])
    index = np.array([data.draw(st.integers(0, n - 1)) for n in space.sizes])
    plan = space.plan(index)
    assert isinstance(plan, PrecisionPlan) and set(plan) == set(space.names)
    np.testing.assert_array_equal(space.index_of(plan), index)


def test_auto_and_resolved_kind_are_the_same_option(layers):
    space = SearchSpace.build(layers, [Precision(2, 2), Precision(8, 8)])
    forced = PrecisionPlan({n: Precision(2, 2, "bitserial") for n in space.names})
    np.testing.assert_array_equal(space.index_of(forced), np.zeros(space.n_layers))
    assert space.uniform_index(Precision(8, 8, "packed")).tolist() == [1] * space.n_layers
    assert space.uniform_index(Precision(4, 4)) is None


def test_neighbours_are_one_bit_apart_or_other_kind(layers):
    space = SearchSpace.build(layers[:1])
    opts = space.options[0]
    for j, near in enumerate(space.neighbours()[0]):
        assert near, f"{opts[j]} has no neighbour"
        for k in near:
            a, b = canonical(opts[j]), canonical(opts[k])
            dist = abs(a.w_bits - b.w_bits) + abs(a.a_bits - b.a_bits)
            assert dist == 1 or (dist == 0 and a.kind != b.kind)


def test_errors_name_the_fix(layers):
    space = SearchSpace.build(layers, [Precision(4, 4)])
    with pytest.raises(PlanError, match="one integer per layer"):
        space.plan([0])
    with pytest.raises(PlanError, match="out of range"):
        space.plan([1] * space.n_layers)
    with pytest.raises(PlanError, match="not an option"):
        space.index_of(PrecisionPlan.uniform(layers, Precision(2, 2)))
    with pytest.raises(PlanError, match="same precision twice"):
        SearchSpace.build(layers, [Precision(2, 2), Precision(2, 2, "bitserial")])
    with pytest.raises(PlanError, match="no options given"):
        SearchSpace.build(layers, {"conv2d_0": [Precision(2, 2)]})
