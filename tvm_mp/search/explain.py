"""Why each layer of a searched plan got its bits: the report's :class:`~tvm_mp.model.PlanExplanation`.

For every layer, from what the guided search already keeps (:class:`~tvm_mp.search.proxy.LayerNoise` of the
:class:`~tvm_mp.search.pareto.SearchContext`):

* **sensitivity**: the network's output noise ratio with the layer alone at :data:`SENSITIVITY_OPTION` (w4a8: one
  option for every layer, so the ranks compare layers), the exact single-layer measurement where the search made it,
  else the proxy ``gain x local``;
* **noise**: the same ratio at the layer's chosen option;
* **reason**: the chosen option against its best cheaper alternative on the budgeted quantity (the cheaper
  option, among the :data:`ALTERNATIVES` nearest in cost, that adds the least noise): how much of the budget it
  would have saved and how much output noise it would have added -- "kept at its most precise option" when no
  option has at least its weight and activation bits and more of one, "cheapest option within the noise budget"
  otherwise, "dominated" when the cheaper option adds no noise; or that the option is the layer's cheapest.

Computes at most one layer output per layer and alternative (on the proxy's few samples) beyond what the search
computed; no network run.
"""

from __future__ import annotations

import math

import numpy as np

from ..budget import Budget
from ..model import LayerWhy, PlanExplanation
from ..precision import Precision, PrecisionPlan

#: The option every layer's sensitivity is measured at.
SENSITIVITY_OPTION = Precision(4, 8)
#: Cheaper options (nearest in cost first) considered as the alternative a reason names.
ALTERNATIVES = 3


def _noise(proxy, name: str, options, prec: Precision) -> float:
    known = proxy.known_exact(name, prec)
    if known is not None:
        return float(known)
    return float(proxy.gain(name, options) * proxy.local(name, prec))


def _option_index(options, prec) -> int | None:
    if prec is None:
        return None
    key = str(prec)
    return next((k for k, o in enumerate(options) if o == prec or str(o) == key), None)


def _more_precise(a, b) -> bool:
    """``a`` has at least the weight and activation bits of ``b``, and more of one (integer options only)."""
    bits = [(getattr(p, "w_bits", None), getattr(p, "a_bits", None)) for p in (a, b)]
    if any(not isinstance(v, int) for pair in bits for v in pair):
        return False
    (wa, aa), (wb, ab) = bits
    return wa >= wb and aa >= ab and (wa, aa) != (wb, ab)


def _pct(x: float) -> str:
    return f"{100 * x:.2g} %" if x < 0.1 else f"{100 * x:.0f} %"


def explain_plan(ctx, plan: PrecisionPlan, budget: Budget | None = None) -> PlanExplanation:
    """The explanation of ``plan`` on the search context ``ctx`` (``budget``: the one the search met)."""
    space, costs, proxy = ctx.space, ctx.costs, ctx.proxy
    limits = costs.limits(budget) if budget is not None else {}
    quantity = next(iter(limits), "energy_uj")
    limit = limits.get(quantity)
    table = costs.array(quantity)
    names = list(space.names)
    index = [_option_index(space.options[i], plan.get(n)) for i, n in enumerate(names)]
    with ctx.scorer.evaluator.blas_single_thread():
        sens = [_noise(proxy, n, space.options[i], SENSITIVITY_OPTION) for i, n in enumerate(names)]
    order = np.argsort(-np.asarray(sens), kind="stable")
    rank = {names[int(i)]: r + 1 for r, i in enumerate(order)}
    n_layers = len(names)
    total = float(sum(table[i, j] for i, j in enumerate(index) if j is not None))
    scale = limit if limit else total
    unit = quantity.split("_")[0]
    rows = []
    for i, name in enumerate(names):
        opts = space.options[i]
        chosen = plan[name] if name in plan else None
        where = f"sensitivity rank {rank[name]}/{n_layers}"
        if chosen is None:
            rows.append(LayerWhy(name, "fp32", sens[i], rank[name], f"left fp32 by the plan ({where})"))
            continue
        j = index[i]
        with ctx.scorer.evaluator.blas_single_thread():
            mine = _noise(proxy, name, opts, chosen)
        if j is None:  # an option the search space does not hold: nothing to compare it with
            rows.append(LayerWhy(name, str(chosen), sens[i], rank[name], f"set by the plan ({where})", mine))
            continue
        cost = table[i]
        cheaper = [k for k in range(len(opts)) if math.isfinite(cost[k]) and cost[k] < cost[j] * (1 - 1e-9)]
        finer = any(_more_precise(o, opts[j]) for o in opts)
        if not cheaper:
            reason = (f"the cheapest of its {len(opts)} options on {unit}; it adds {mine:.2g} output noise "
                      f"({where})")
        else:
            near = sorted(cheaper, key=lambda k: (cost[j] - cost[k], str(opts[k])))[:ALTERNATIVES]
            with ctx.scorer.evaluator.blas_single_thread():
                alt = min(((_noise(proxy, name, opts, opts[k]), k) for k in near), key=lambda t: (t[0], t[1]))
            saved = (cost[j] - cost[alt[1]]) / scale if scale else 0.0
            added = alt[0] - mine
            trade = (f"{opts[alt[1]]} would save {_pct(saved)} of the {unit} "
                     f"{'budget' if limit else 'total'} but add {added:.2g} output noise")
            if added <= 0.0:
                reason = (f"dominated on {unit} ({where}): {opts[alt[1]]} would save {_pct(saved)} of the {unit} "
                          f"{'budget' if limit else 'total'} with no more output noise")
            elif not finer:
                reason = f"kept at its most precise option ({where}): {trade}"
            else:
                reason = f"cheapest option within the noise budget ({where}): {trade}"
        rows.append(LayerWhy(name, str(chosen), sens[i], rank[name], reason, mine))
    scorer = ctx.scorer
    budget_text = ", ".join(f"{m} <= {v:.4g}" for m, v in limits.items())
    return PlanExplanation(
        "budget search" if budget is not None else "plan", tuple(rows), str(SENSITIVITY_OPTION),
        f"output noise-to-signal ratio of the network with the layer alone at {SENSITIVITY_OPTION} "
        f"(first {proxy.samples} samples; exact where the search measured it, else the proxy gain x local noise)",
        budget=budget_text, score_name=scorer.name, fp32_score=float(scorer.fp32_score()),
        plan_score=float(scorer.score(plan)))
