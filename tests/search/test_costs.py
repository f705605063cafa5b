import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tvm_mp import Budget, Precision
from tvm_mp.cost_models.base import Estimate
from tvm_mp.passes.rewrite_mixed_precision import weight_storage
from tvm_mp.quantize.qlayer import QuantLayer
from tvm_mp.search.costs import BudgetError, CostTable, check_budget, prune_dominated, weight_bytes
from tvm_mp.search.space import SearchSpace


class TableModel:
    """A cost model whose energy/latency are w_bits * a_bits * MACs (and a counter of predict calls)."""

    def __init__(self):
        self.calls = 0

    def predict(self, workloads):
        self.calls += 1
        e = np.array([w.w_bits * w.a_bits * w.macs * 1e-6 for w in workloads])
        return Estimate(e / 10.0, e)


@given(w=st.integers(1, 8), a=st.integers(1, 8), kind=st.sampled_from(["auto", "bitserial", "packed"]),
       which=st.integers(0, 4))
def test_weight_bytes_equal_the_stored_constant(layers, w, a, kind, which):
    layer = layers[which]
    prec = Precision(w, a, kind)
    w_q = np.zeros(layer.weight_shape, dtype=np.int8)
    stored = weight_storage(QuantLayer(layer, Precision(w, a, prec.resolved_kind), None, w_q,
                                       np.ones(layer.out_channels, np.float32), None))[0]
    assert weight_bytes(layer, prec) == stored.nbytes


def test_table_is_one_batch_and_totals_add_up(layers):
    space = SearchSpace.build(layers, [Precision(2, 2), Precision(4, 4), Precision(8, 8)])
    model = TableModel()
    costs = CostTable.from_model(space, model)
    assert model.calls == 1
    idx = np.array([0, 1, 2, 0, 1])
    totals = costs.totals(idx)
    expect = sum(p.w_bits * p.a_bits * layer.macs * 1e-6
                 for layer, p in zip(layers, space.plan(idx).precisions.values()))
    assert totals["energy_uj"] == pytest.approx(expect)
    assert totals["latency_ms"] == pytest.approx(expect / 10)
    assert totals["memory_kb"] == pytest.approx(sum(weight_bytes(l, p) for l, p in
                                                    zip(layers, space.plan(idx).precisions.values())) / 1024)
    assert costs.minimum()["energy_uj"] == pytest.approx(costs.totals([0] * 5)["energy_uj"])
    assert costs.fits(idx, Budget(energy_uj=expect)) and not costs.fits(idx, Budget(energy_uj=expect * 0.99))


def test_pruning_keeps_cheaper_or_more_accurate_options(layers):
    opts = [Precision(8, a) for a in range(1, 9)] + [Precision(2, 2), Precision(1, 1)]
    space = SearchSpace.build(layers, opts)
    costs = CostTable.from_model(space)  # the analytical model: packed w8aX cost the same for every a
    pruned, pcosts = prune_dominated(space, costs, ["energy_uj"])
    kept = [str(o) for o in pruned.options[0]]
    assert "w8a8" in kept and "w8a3" not in kept and "w1a1" in kept
    assert pcosts.energy_uj.shape == (pruned.n_layers, pruned.max_options)


def test_impossible_budget_gives_the_smallest_achievable_values(layers):
    space = SearchSpace.build(layers, [Precision(2, 2), Precision(8, 8)])
    costs = CostTable.from_model(space, TableModel())
    mins = costs.minimum()
    with pytest.raises(BudgetError) as err:
        check_budget(costs, Budget(energy_uj=mins["energy_uj"] / 2))
    text = str(err.value)
    assert f"energy {mins['energy_uj']:.4g} uJ" in text and f"memory {mins['memory_kb']:.4g} kB" in text
    assert "\n" not in text
    check_budget(costs, Budget(energy_uj=mins["energy_uj"]))  # exactly the minimum fits


class ConflictModel:
    """Energy falls with more bits, memory rises: each limit alone can be met, both at their minimum cannot."""

    def predict(self, workloads):
        e = np.array([(10 - w.w_bits) * w.macs * 1e-6 for w in workloads])
        return Estimate(e, e)


def test_limits_met_alone_but_not_together(layers):
    space = SearchSpace.build(layers, [Precision(2, 2), Precision(8, 8)])
    costs = CostTable.from_model(space, ConflictModel())
    mins = costs.minimum()
    check_budget(costs, Budget(energy_uj=mins["energy_uj"]))
    check_budget(costs, Budget(memory_kb=mins["memory_kb"]))
    with pytest.raises(BudgetError, match="together"):
        check_budget(costs, Budget(energy_uj=mins["energy_uj"], memory_kb=mins["memory_kb"]))


# ---- number formats in the cost table -----------------------------------------------------------------------------
from tvm_mp.cost_models.analytical import AnalyticalModel, DatapathModel  # noqa: E402
from tvm_mp.cost_models.base import CostModelError  # noqa: E402
from tvm_mp.formats.energy import layer_energy, stored_weight_bytes  # noqa: E402
from tvm_mp.search.costs import default_cost_model  # noqa: E402
from tvm_mp.search.space import default_options, format_options  # noqa: E402


def test_default_model_is_the_cpu_model_for_integers_and_the_datapath_model_once_formats_appear(layers):
    ints = SearchSpace.build(layers, [Precision(2, 2), Precision(8, 8)])
    mixed = SearchSpace.build(layers, [Precision(2, 2), Precision(8, 8)] + list(format_options()))
    assert isinstance(default_cost_model(ints, "aarch64"), AnalyticalModel)
    assert isinstance(default_cost_model(mixed), DatapathModel)
    table = CostTable.from_model(mixed)
    assert table.model_name == "DatapathModel" and table.energy_basis == "modelled"
    for i, layer in enumerate(layers):  # every option, integer ones included, on the formats' one scale
        for j, prec in enumerate(mixed.options[i]):
            assert table.energy_uj[i, j] == pytest.approx(layer_energy(layer, prec).energy_uj, rel=1e-12)
            assert table.memory_kb[i, j] == weight_bytes(layer, prec) / 1024.0
            if not prec.is_integer:
                assert weight_bytes(layer, prec) == stored_weight_bytes(layer, prec)
    with pytest.raises(CostModelError, match="cannot cost kind 'float'"):
        CostTable.from_model(mixed, AnalyticalModel())
    assert CostTable.from_model(ints, target="aarch64").model_name == "AnalyticalModel"  # integers: the target's


def test_pruning_never_drops_format_options(layers):
    space = SearchSpace.build(layers, list(default_options(w_bits=(2, 4, 8), a_bits=(4, 8))) + list(format_options()))
    pruned, _ = prune_dominated(space, CostTable.from_model(space), ["energy_uj"])
    for before, after in zip(space.options, pruned.options):
        assert [o for o in before if not o.is_integer] == [o for o in after if not o.is_integer]
