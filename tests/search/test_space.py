import numpy as np
import pytest
import tvm
from hypothesis import given
from hypothesis import strategies as st

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
    with pytest.raises(PlanError, match=r"takes the layers \(tvm_mp.list_layers\(mod\)\), not a IRModule"):
        SearchSpace.build(tvm.IRModule())


# ---- number formats next to integer options -----------------------------------------------------------------------
from tvm_mp.search.space import FAMILIES, family, format_options, storage_key  # noqa: E402


def test_format_options_are_the_named_floats_and_clusters():
    opts = format_options()
    assert [str(o) for o in opts] == ["e5m10", "e8m7", "e4m3fn", "e5m2", "c4a8", "c8a8", "c16a8", "c32a8", "c64a8"]
    assert [family(o) for o in opts] == ["float"] * 4 + ["clustered"] * 5
    assert len(format_options(floats=("e3m4",), clusters=(8,), cluster_a_bits=(4, 8))) == 3
    with pytest.raises(PlanError, match="float format names"):
        format_options(floats=("w4a4",))


def test_integer_neighbours_are_unchanged_by_an_integer_only_space(layers):
    """A space of integer options has no cross-family jumps: its neighbours are the integer steps alone."""
    ints = SearchSpace.build(layers[:1]).neighbours()[0]
    mixed_space = SearchSpace.build(layers[:1], default_options() + format_options())
    mixed = mixed_space.neighbours()[0]
    opts = mixed_space.options[0]
    for j, near in enumerate(ints):
        assert mixed[j][: len(near)] == near  # integer steps first, then jumps
        assert all(family(opts[k]) != "integer" for k in mixed[j][len(near):])


FAMILY_OPTIONS = list(default_options(w_bits=(1, 2, 4, 8), a_bits=(2, 4, 8))) + list(
    format_options(floats=("fp16", "bf16", "fp8_e4m3", "fp8_e5m2", "e3m4"), clusters=(4, 8, 16, 32, 64),
                   cluster_a_bits=(4, 8)))


@given(st.lists(st.sampled_from(FAMILY_OPTIONS), min_size=1, max_size=14, unique_by=canonical))
def test_format_neighbours_step_within_a_family_or_jump_to_the_nearest_footprint(layers, chosen):
    space = SearchSpace.build(layers[:1], chosen)
    opts = [canonical(o) for o in space.options[0]]
    fams = {family(o) for o in opts}
    for j, near in enumerate(space.neighbours()[0]):
        c = opts[j]
        assert j not in near and len(set(near)) == len(near)
        for k in near:
            o = opts[k]
            if family(o) != family(c):  # a jump: the nearest option of that family in storage footprint
                here = storage_key(c)
                best = min(sum(abs(x - y) for x, y in zip(storage_key(p), here))
                           for p in opts if family(p) == family(o))
                assert sum(abs(x - y) for x, y in zip(storage_key(o), here)) == best
            elif c.kind == "float":  # adjacent in (total bits, mantissa bits)
                order = sorted((p for p in opts if p.kind == "float"), key=lambda p: (p.w_bits, p.man_bits, p.exp_bits))
                assert abs(order.index(c) - order.index(o)) == 1
            elif c.kind == "clustered":
                assert o.a_bits == c.a_bits or o.clusters == c.clusters
        jumped = {family(opts[k]) for k in near} - {family(c)}
        assert jumped == fams - {family(c)}  # one jump to every other family present
    assert set(FAMILIES) >= fams


def test_float_chain_is_e5m2_e4m3_bf16_fp16(layers):
    space = SearchSpace.build(layers[:1], format_options(clusters=()))
    names = [str(o) for o in space.options[0]]
    near = space.neighbours()[0]
    chain = {names[j]: sorted(names[k] for k in near[j]) for j in range(len(names))}
    assert chain == {"e5m2": ["e4m3fn"], "e4m3fn": ["e5m2", "e8m7"], "e8m7": ["e4m3fn", "e5m10"], "e5m10": ["e8m7"]}
