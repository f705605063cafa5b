"""Screening in the guided search: a layer whose low-bit options kill the task (as one w1a1 layer kills the CTC output
of the corpus' text recognizer) while its proxy noise stays small is excluded by its real single-layer score, and
the integer program pays elsewhere."""

import numpy as np
import pytest

from tvm_mp import Precision
from tvm_mp.errors import PlanError
from tvm_mp.search.accuracy import Scorer
from tvm_mp.search.guided import GuidedConfig, guided_search
from tvm_mp.search.pareto import search_context

OPTIONS = [Precision(w, a) for w in (1, 2, 4, 8) for a in (1, 2, 4, 8)]


class KillerTask:
    """1 minus the outputs' noise ratio against fp32 (at most 0.04 off: every layer alone stays within the screening's
    10 %), except that ``layer`` at 1-bit weights or activations scores 0 (a catastrophic layer the output-noise
    proxy does not see)."""

    def __init__(self, net, layer=None, bits=2, both=False):
        self.layer = layer
        self.bits = bits  # the layer's options with fewer weight or (``both``: and) activation bits kill the task
        self.both = both
        self.x = np.random.default_rng(5).normal(0.0, 1.0, (16, 2, 8, 8)).astype(np.float32)
        self.fp32 = None

    def __call__(self, model) -> float:
        prec = model.plan.get(self.layer) if self.layer else None
        low = (prec.w_bits < self.bits, prec.a_bits < self.bits) if prec is not None else (False, False)
        if all(low) if self.both else any(low):
            return 0.0
        out = np.asarray(model.run(self.x), dtype=np.float64)
        return 1.0 - min(0.04, float(np.sum((out - self.fp32) ** 2) / np.sum(self.fp32**2)))


@pytest.fixture(scope="module")
def task(net, calib):
    from tvm_mp import PrecisionPlan

    t = KillerTask(net)
    ref = Scorer(net, calib).model(PrecisionPlan({}))
    t.fp32 = np.asarray(ref.run(t.x), dtype=np.float64)
    return t


def _context(net, calib, task, base):
    """A context with a fresh scorer of ``task`` (nothing scored) on ``base``'s calibration ranges and costs."""
    from tvm_mp.search.pareto import SearchContext

    scorer = Scorer(net, calib, accuracy_fn=task, ranges=base.scorer.ranges)
    return SearchContext(scorer, base.space, base.costs, progress=False)


@pytest.fixture(scope="module")
def base(net, calib):
    """The small net's space with energy proportional to w x a bits (the same weight on every layer)."""
    from tvm_mp.search.costs import CostTable
    from tvm_mp.search.pareto import SearchContext

    ctx = search_context(net, calib, options=OPTIONS, progress=False)
    space = ctx.space
    bits = np.array([[o.w_bits * o.a_bits / 64.0 for o in opts] for opts in space.options])
    costs = CostTable(space, bits, bits, np.array([[o.w_bits / 8.0 for o in opts] for opts in space.options]))
    return SearchContext(ctx.scorer, space, costs, progress=False)


def test_a_collapsing_layer_is_excluded_and_paid_for_elsewhere(net, calib, task, base):
    from tvm_mp import Budget

    budget = Budget(energy_uj=0.05 * base.space.n_layers)  # 0.05 x uniform w8a8
    plain = GuidedConfig(max_evaluations=4, screen=False, refine=False, anchors=False)
    result, _ = guided_search(_context(net, calib, task, base), budget, None, plain)
    low = [n for n, p in result.plan.items() if p.w_bits < 2 or p.a_bits < 2]
    assert low, "the budget should need a risky option somewhere"
    task.layer = low[0]  # from now on that layer's risky options kill the task
    ctx = _context(net, calib, task, base)
    blind, _ = guided_search(ctx, budget, None, plain)
    assert ctx.scorer.score(blind.plan) == 0.0  # unscreened, the search keeps the killing layer and scores 0
    ctx = _context(net, calib, task, base)
    screened, _ = guided_search(ctx, budget, None, GuidedConfig(max_evaluations=4, refine=False, anchors=False))
    kept = screened.plan[task.layer]
    assert kept.w_bits >= 2 and kept.a_bits >= 2  # the killing options were excluded
    assert -screened.objective == ctx.scorer.score(screened.plan) > 0.0
    assert base.costs.fits(base.space.index_of(screened.plan), budget)
    notes = screened.notes
    assert notes["excluded"] >= 1 and any(s[0] == [task.layer] and s[3] for s in notes["screens"])
    assert notes["screen_evaluations"] <= GuidedConfig().screen_evaluations
    assert screened.evaluations - notes["screen_evaluations"] <= 4


def test_screen_config_is_checked():
    for bad in ({"screen_loss": 1.5}, {"screen_loss": True}, {"screen_below": (0, 4)}, {"screen_below": 4},
                {"screen_evaluations": 0}):
        with pytest.raises(PlanError, match="GuidedConfig") as err:
            GuidedConfig(**bad)
        assert "\n" not in str(err.value)
    assert GuidedConfig(screen_below=[2, 2]).screen_below == (2, 2)


def test_exclusions_the_budget_cannot_do_without_are_lifted(net, calib, task, base):
    from tvm_mp import Budget

    assert task.layer is not None  # set by the test above (same module)
    budget = Budget(energy_uj=0.1)  # the others at w1a1 leave the killing layer less than its cheapest safe option
    ctx = _context(net, calib, task, base)
    result, _ = guided_search(ctx, budget, None, GuidedConfig(max_evaluations=3, refine=False, screen_evaluations=24))
    assert result.feasible and base.costs.fits(base.space.index_of(result.plan), budget)
    lifted = result.notes["lifted"]
    assert lifted and set(lifted) == {0.0}  # the killing layer's exclusions were lifted: a plan is still returned


def test_a_space_without_1_bit_options_screens_its_lowest_bits(net, calib, task, base):
    """An accelerator-like space (2, 4, 8 bits): w2a2 is what the proxy misreads there; a layer it kills is excluded."""
    from tvm_mp import Budget
    from tvm_mp.search.costs import CostTable
    from tvm_mp.search.pareto import SearchContext

    ctx = search_context(net, scorer=base.scorer, options=[Precision(w, a) for w in (2, 4, 8) for a in (2, 4, 8)],
                         progress=False)
    bits = np.array([[o.w_bits * o.a_bits / 64.0 for o in opts] for opts in ctx.space.options])
    low = SearchContext(ctx.scorer, ctx.space, CostTable(ctx.space, bits, bits, bits), progress=False)
    killer = KillerTask(net, bits=3, both=True)  # only w2a2 kills
    killer.fp32 = task.fp32
    budget = Budget(energy_uj=0.1 * low.space.n_layers)  # below uniform w2a4: w2a2 somewhere
    off = GuidedConfig(max_evaluations=4, refine=False, anchors=False, screen_lowest=False)
    plain, _ = guided_search(_context(net, calib, killer, low), budget, None, off)
    killer.layer = next(n for n, p in plain.plan.items() if p.w_bits == 2 and p.a_bits == 2)
    c = _context(net, calib, killer, low)
    blind, _ = guided_search(c, budget, None, off)
    assert c.scorer.score(blind.plan) == 0.0 and blind.notes["screen_evaluations"] == 0
    c = _context(net, calib, killer, low)
    screened, _ = guided_search(c, budget, None, GuidedConfig(max_evaluations=4, refine=False, anchors=False))
    assert screened.plan[killer.layer] != Precision(2, 2) and c.scorer.score(screened.plan) > 0.0
    assert low.costs.fits(low.space.index_of(screened.plan), budget)
