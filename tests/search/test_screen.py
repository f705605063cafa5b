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

    def __init__(self, net, layer=None):
        self.layer = layer
        self.x = np.random.default_rng(5).normal(0.0, 1.0, (16, 2, 8, 8)).astype(np.float32)
        self.fp32 = None

    def __call__(self, model) -> float:
        prec = model.plan.get(self.layer) if self.layer else None
        if prec is not None and (prec.w_bits < 2 or prec.a_bits < 2):
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
