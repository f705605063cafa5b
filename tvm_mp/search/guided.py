"""The default budget search: integer programs on a cheap per-layer proxy, then a few real checks.

Scoring a plan for real (``accuracy_fn`` on the plan's NumPy reference) costs a network run over the user's
samples; on a 54-layer network that is seconds, so a search that scores hundreds of plans takes many minutes.
Here the real score is the judge of a handful of plans only:

1. **Options that make sense for real networks, in tiers.** Options another option beats (no more costly, at
   least as many bits) are dropped; the rest are split into tiers by their smallest weight and activation bits
   (default: ``w >= 2, a >= 4``; ``w >= 2, a >= 2``; everything). The search works in the first tier whose
   cheapest plan fits the budget with :data:`TIER_SLACK` to spare (else the first that fits) -- 1-bit weights and
   activations below 4 bits only when the budget needs them --
   and also tries the next tier's optimum, in case its few very low-bit layers are better than many low-bit ones.
2. **The proxy** (:mod:`tvm_mp.search.proxy`): ``noise[l, o]``, the output noise ratio layer ``l`` alone at option
   ``o`` causes; one layer computation per (layer, option) and one partial network run per layer, on a few
   samples, computed only for the tiers in play and kept by the :class:`~tvm_mp.search.pareto.SearchContext`.
3. **Candidates: the uniform anchor, then integer programs.** First the dearest uniform plan within the budget
   (each layer at one precision; where the pruning dropped it on a layer, the cheapest kept option with at least
   its bits) and its *upgrade*, the integer program restricted to options with at least the anchor's bits on every
   layer (the budget left over spent where the proxy says): the search never returns a plan scoring below the
   uniform plan it could have been (the proxy optima can collapse where the uniform plan does not: 4-bit
   activations on a few layers of the corpus' text recognizer). Then integer programs (``scipy.optimize.milp``)
   minimizing the summed proxy under the budget: the
   optimum of the tier, of the next tier, of the squared proxy (which spreads the noise over more layers rather
   than putting much of it in a few), and optima forced to differ from the earlier ones in at least
   ``diversity`` layers.
4. **Screening of the entries the proxy misreads** (``screen``): after a candidate is scored, its layers at
   *risky* options (fewer weight or activation bits than ``screen_below``, default 1-bit weights or activations,
   or in a space without such options the ones with its fewest weight and activation bits, e.g. w2a2:
   the proxy is first order, and such options hurt far more than linearly -- one w1a1 layer kills the CTC output
   of the corpus' text recognizer while its proxy noise is small) are tested for real in the reference plan (every
   other layer at its most precise option): all of them at once, and while a group scores more than
   ``screen_loss`` (a fraction of the reference plan's score) below the reference, its two halves (group testing:
   a few catastrophic entries among many cost a few evaluations each). A single entry that falls is excluded for
   its layer, with every option of the layer having no more weight and no more activation bits; the integer
   program is solved again without them (paying elsewhere) and the new plan screened, until a plan has no
   excluded entry. The repaired plan is checked in addition to the candidate it repairs (never instead: with
   screening on, every candidate the unscreened search checks is still checked). When the exclusions leave no
   plan within the budget, they are lifted one at a time, the least damaging (highest single-layer score) first.
   Scores are the scorer's (memoized): a later search on the same context reuses them.
5. **Real checks**: each candidate is scored for real; the best is refined by moves the proxy ranks -- the layer
   contributing most noise is given a less noisy option and the integer program re-balances the others within the
   budget -- while they improve the real score, until ``max_evaluations`` new plans were scored or the best plan
   scores as well as the fp32 network.

Deterministic: integer programs, screening and scores have no randomness (the ``rng`` is not used); the same inputs
give the same plan.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .._progress import show_progress
from ..budget import Budget
from ..errors import PlanError
from .costs import prune_dominated
from .ilp import solve_table
from .problem import Problem, ScoreObjective, SearchResult
from .space import is_integer

#: Rounds of replacing the proxy entries an integer program picks by their exact single-layer noise.
SETTLE_ROUNDS = 2
#: Entries weighing less than this fraction of the plan's total proxy are not worth a partial network run.
SETTLE_FRACTION = 0.05
#: The search works in the first tier whose cheapest plan leaves this fraction of the budget to spare (when one
#: does): at a budget equal to a tier's cheapest plan (uniform w4a4 on an accelerator) the tier allows that plan only.
TIER_SLACK = 0.01
#: Default option tiers: (smallest weight bits, smallest activation bits) of the integer options kept.
DEFAULT_TIERS = ((2, 4), (2, 2), (1, 1))
#: Default of ``GuidedConfig.screen_below``: options with fewer weight or activation bits are screened for real
#: (1-bit weights or activations: on the corpus' text recognizer one such layer of many zeroes the exact-string
#: accuracy; 2-3-bit options there and on the classifier lose accuracy together rather than alone, which single
#: checks cannot see and group checks on 40 samples paid 24 evaluations for without a better plan).
SCREEN_BELOW = (2, 2)


@dataclass(frozen=True)
class GuidedConfig:
    """Knobs of :func:`guided_search` (see module docstring).

    ``max_evaluations``: plans scored for real that were not scored before (the fp32 ceiling included).
    ``candidates``: integer-program plans checked before refining. ``diversity``: layers in which an alternative
    candidate differs from every earlier one. ``tiers``: (smallest w bits, smallest a bits) per tier, from the most
    conservative (a last tier with every option is always added). ``refine``: refine the best candidate with
    the remaining evaluations, stopping after ``patience`` moves in a row that do not improve it. ``progress``:
    None = a bar on a terminal for long searches. ``screen``: score risky entries of each candidate alone before the
    candidate (step 4 of the module docstring): options with fewer bits than ``screen_below`` (min w bits, min a
    bits); excluded when their single-layer score is more than ``screen_loss`` x |reference score| below the
    reference plan's; at most ``screen_evaluations`` group tests per search (not counted in ``max_evaluations``).
    ``screen_lowest``: when no option in play has fewer bits than ``screen_below`` (a space without 1-bit options,
    e.g. an accelerator's w8a8 / w4a8 / w4a4 / w2a2), screen the integer options with the fewest weight and
    activation bits in play instead. ``anchors``: check the dearest uniform plan within the budget and its upgrade
    first (step 3 of the module docstring).
    """

    max_evaluations: int = 10
    candidates: int = 4
    patience: int = 2
    diversity: int = 3
    tiers: tuple[tuple[int, int], ...] = DEFAULT_TIERS
    refine: bool = True
    progress: bool | None = None
    screen: bool = True
    screen_below: tuple[int, int] = SCREEN_BELOW
    screen_loss: float = 0.1
    screen_evaluations: int = 8
    anchors: bool = True
    screen_lowest: bool = True

    def __post_init__(self) -> None:
        for name in ("max_evaluations", "candidates", "diversity", "patience", "screen_evaluations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PlanError(f"GuidedConfig.{name}={value!r}: give a positive integer")
        tiers = tuple(tuple(int(b) for b in t) for t in self.tiers)
        if not tiers or any(len(t) != 2 or not (1 <= t[0] <= 8 and 1 <= t[1] <= 8) for t in tiers):
            raise PlanError(f"GuidedConfig.tiers={self.tiers!r}: give (min w bits, min a bits) pairs in 1..8, e.g. "
                            f"{DEFAULT_TIERS}")
        object.__setattr__(self, "tiers", tiers)
        below = tuple(self.screen_below) if isinstance(self.screen_below, (tuple, list)) else ()
        if len(below) != 2 or not all(isinstance(b, int) and not isinstance(b, bool) and 1 <= b <= 9 for b in below):
            raise PlanError(f"GuidedConfig.screen_below={self.screen_below!r}: give (min w bits, min a bits) in 1..9, "
                            f"e.g. {SCREEN_BELOW}")
        object.__setattr__(self, "screen_below", below)
        loss = self.screen_loss
        if isinstance(loss, bool) or not isinstance(loss, (int, float)) or not 0.0 <= loss < 1.0:
            raise PlanError(f"GuidedConfig.screen_loss={loss!r}: give a fraction of the reference score in [0, 1), "
                            f"e.g. 0.1")


def _tier_mask(space, tier: tuple[int, int]) -> np.ndarray:
    """``[L, O]`` options of the tier: integer ones with at least its bits, every number format; a layer with no
    such option keeps all of its options."""
    w_min, a_min = tier
    mask = np.zeros((space.n_layers, space.max_options), dtype=bool)
    for i, opts in enumerate(space.options):
        keep = [j for j, o in enumerate(opts) if not is_integer(o) or (o.w_bits >= w_min and o.a_bits >= a_min)]
        mask[i, keep or list(range(len(opts)))] = True
    return mask


def _uniform_anchor(full, space, norm: np.ndarray, allowed: np.ndarray):
    """``(precision, index)`` of the dearest uniform integer plan of ``full`` (the unpruned space) that fits the
    limits (``norm``: costs over limits of the pruned ``space``) using only ``allowed`` entries; a layer whose pruned
    options lack the precision takes the cheapest kept option with at least its bits. None when none fits."""
    best = None
    for prec in full.uniform_precisions():
        if not is_integer(prec):
            continue
        idx = np.zeros(space.n_layers, dtype=np.int64)
        for i, opts in enumerate(space.options):
            js = [j for j, o in enumerate(opts) if is_integer(o) and allowed[i, j] and o.w_bits >= prec.w_bits
                  and o.a_bits >= prec.a_bits]
            if not js:
                break
            idx[i] = min(js, key=lambda j, i=i, o=opts: (float(norm[:, i, j].sum()), -o[j].w_bits - o[j].a_bits, j))
        else:
            total = norm[:, np.arange(space.n_layers), idx].sum(axis=1)
            if (total <= 1.0 + 1e-9).all() and (best is None or total.sum() > best[0]):
                best = (float(total.sum()), prec, idx)
    return None if best is None else best[1:]


def _fits(problem: Problem, mask: np.ndarray, slack: float = 0.0) -> bool:
    """True when the cheapest options of ``mask`` meet every limit, ``slack`` (a fraction of it) to spare, each on
    its own (a quick necessary check)."""
    norm = np.where(mask[None], problem.normalized_costs, np.inf)
    return bool((norm.min(axis=2).sum(axis=1) <= 1.0 - slack + 1e-9).all())


def guided_search(ctx, budget: Budget, rng: np.random.Generator | None = None,
                  config: GuidedConfig | None = None) -> tuple[SearchResult, Problem]:
    """The plan scoring best within ``budget`` found by proxy integer programs and a few real checks (see module
    docstring). ``ctx``: a :class:`~tvm_mp.search.pareto.SearchContext`. Returns ``(SearchResult, Problem)``; the
    result's ``evaluations`` counts plans scored for the first time, ``notes`` say where the time went."""
    config = config or GuidedConfig()
    start = time.perf_counter()
    scorer = ctx.scorer
    evals0 = scorer.evaluations
    metrics = list(ctx.costs.limits(budget))
    space, costs = prune_dominated(ctx.space, ctx.costs, metrics)
    problem = Problem(space, costs, budget, ScoreObjective(scorer, space))
    masks = [_tier_mask(space, t) for t in config.tiers]
    masks.append(np.arange(space.max_options)[None, :] < space.sizes[:, None])  # everything, always last
    norm = problem.normalized_costs

    def feasible(mask) -> bool:  # one limit: the cheapest options say; several: an integer program
        return _fits(problem, mask) and (norm.shape[0] == 1 or solve_table(norm, np.where(mask, 0.0, np.inf))
                                         is not None)

    # a tier whose cheapest plan only just fits leaves its integer program no choice (that plan, near uniform): the
    # first tier is one with TIER_SLACK of the budget to spare, else the first that fits at all
    first = next((k for k, m in enumerate(masks) if _fits(problem, m, TIER_SLACK) and feasible(m)),
                 next((k for k, m in enumerate(masks) if feasible(m)), len(masks) - 1))
    second = next((k for k in range(first + 1, len(masks)) if (masks[k] != masks[first]).any()), None)
    in_play = masks[first] | (masks[second] if second is not None else False)

    proxy_start = time.perf_counter()
    table = np.full((space.n_layers, space.max_options), np.inf)
    exact = np.zeros(table.shape, dtype=bool)  # entries measured by a partial network run (proxy.exact)
    with scorer.evaluator.blas_single_thread():
        for i, (layer, opts) in enumerate(zip(space.layers, space.options)):
            cols = [j for j in range(len(opts)) if in_play[i, j]]
            gain = ctx.proxy.gain(layer.name, [opts[j] for j in cols])
            for j in cols:
                known = ctx.proxy.known_exact(layer.name, opts[j])  # measured by an earlier search: kept
                table[i, j] = gain * ctx.proxy.local(layer.name, opts[j]) if known is None else known
                exact[i, j] = known is not None
    proxy_seconds = time.perf_counter() - proxy_start

    tried: list[np.ndarray] = []
    checked: list[tuple[float, float, np.ndarray, str]] = []  # (score, proxy, index, how)
    ilp_seconds = 0.0

    finite = np.isfinite(table) & (table > 0)
    scale = float(table[finite].max()) if finite.any() else 1.0
    rows = np.arange(space.n_layers)
    exact_seconds = 0.0

    def ilp(mask, power=1, exclude=(), changes=1):
        """The integer program's plan on ``table ** power`` within ``mask``; the entries it picks that weigh (at
        least :data:`SETTLE_FRACTION` of its total) are replaced by their exact single-layer noise and the program
        solved again, up to :data:`SETTLE_ROUNDS` times."""
        nonlocal ilp_seconds, exact_seconds
        for round_ in range(SETTLE_ROUNDS + 1):
            tab = table if power == 1 else (table / scale) ** power
            t0 = time.perf_counter()
            idx = solve_table(norm, np.where(mask, tab, np.inf), exclude=exclude, min_changes=changes)
            ilp_seconds += time.perf_counter() - t0
            if idx is None or round_ == SETTLE_ROUNDS:
                return idx
            values = table[rows, idx]
            fresh = [i for i in rows if not exact[i, idx[i]] and values[i] >= SETTLE_FRACTION * values.sum()]
            if not fresh:
                return idx
            t0 = time.perf_counter()
            for i in fresh:
                table[i, idx[i]] = ctx.proxy.exact(space.layers[i].name, space.options[i][idx[i]])
                exact[i, idx[i]] = True
            exact_seconds += time.perf_counter() - t0
        return idx

    def proxy_of(idx) -> float:
        return float(table[np.arange(space.n_layers), idx].sum())

    screens = 0  # single-layer plans scored by the screening (not counted in max_evaluations)

    def budget_left() -> bool:
        return scorer.evaluations - evals0 - screens < config.max_evaluations

    # ---- screening (module docstring, step 4) ----
    banned = np.zeros(table.shape, dtype=bool)  # (layer, option) excluded by a collapsing single-layer score
    bans: list[tuple[float, np.ndarray]] = []  # (single-layer score, the entries it excludes), in force
    lifted: list[float] = []  # single-layer scores of the exclusions lifted to meet the budget
    tolerated = np.zeros(table.shape, dtype=bool)  # the entries of those exclusions
    safe = np.zeros(table.shape, dtype=bool)  # screened and kept (or with at least the bits of such an entry)
    w_bits = np.array([[o.w_bits if is_integer(o) else 99 for o in opts] + [99] * (space.max_options - len(opts))
                       for opts in space.options])
    a_bits = np.array([[o.a_bits if is_integer(o) else 99 for o in opts] + [99] * (space.max_options - len(opts))
                       for opts in space.options])
    risky = (w_bits < config.screen_below[0]) | (a_bits < config.screen_below[1])
    ints = in_play & (w_bits < 99)
    if config.screen_lowest and ints.any() and not (risky & ints).any():  # e.g. an accelerator's w2a2
        risky = ints & (w_bits <= w_bits[ints].min()) & (a_bits <= a_bits[ints].min())
    ref_idx = np.array([max(range(len(opts)), key=lambda j, o=opts: (is_integer(o[j]), w_bits[i, j] + a_bits[i, j],
                                                                      w_bits[i, j], -j))
                        for i, opts in enumerate(space.options)], dtype=np.int64)
    screen_log: list[tuple[list, list, float, bool]] = []  # (layers, options, group score, excluded)
    ref_score = None

    def scored(entries) -> float:
        """The real score of the reference plan with ``entries`` ((layer, option) pairs) put in."""
        nonlocal screens
        plan = ref_idx.copy()
        for i, j in entries:
            plan[i] = j
        before = scorer.evaluations
        value = scorer.score(space.plan(plan))
        screens += scorer.evaluations - before
        return float(value)

    def screen(idx) -> int:
        """Group tests of the unscreened risky entries of ``idx`` in the reference plan: all of them at once, and
        while a group's score falls more than ``screen_loss`` below the reference, its halves; a single entry that
        falls is excluded, with the options of its layer having no more bits. Returns how many were excluded."""
        nonlocal ref_score
        if not config.screen:
            return 0
        todo = [(int(i), int(idx[i])) for i in np.argsort(-table[rows, idx], kind="stable")
                if risky[i, idx[i]] and not (safe | banned | tolerated)[i, idx[i]]]
        if not todo:
            return 0
        if ref_score is None:
            ref_score = scored([])
        floor = ref_score - config.screen_loss * max(abs(ref_score), 1e-12)
        excluded = 0
        groups = [todo]
        while groups and screens < config.screen_evaluations:
            group = groups.pop(0)
            value = scored(group)
            if value >= floor:
                for i, j in group:
                    safe[i] |= (w_bits[i] >= w_bits[i, j]) & (a_bits[i] >= a_bits[i, j])
            elif len(group) == 1:
                i, j = group[0]
                row = np.zeros(table.shape, dtype=bool)
                row[i] = (w_bits[i] <= w_bits[i, j]) & (a_bits[i] <= a_bits[i, j])
                row[i, ref_idx[i]] = False  # the reference option always stays
                bans.append((value, row))
                banned[:] |= row
                excluded += 1
            else:
                half = len(group) // 2
                groups[:0] = [group[:half], group[half:]]
            screen_log.append(([space.layers[i].name for i, _ in group], [str(space.options[i][j]) for i, j in group],
                               value, bool(value < floor and len(group) == 1)))
        return excluded

    def candidate(mask, power=1, exclude=(), changes=1, widen=False):
        """The integer program's plan within ``mask`` minus the excluded entries, screened; solved again while the
        screening excludes entries of it. ``widen``: when the exclusions leave no plan within ``mask``, every
        option in play minus the exclusions, and failing that ``mask`` as it is (a plan is still returned)."""
        while True:
            idx = ilp(mask & ~banned, power, exclude, changes)
            if idx is None and widen and banned.any():
                idx = ilp(in_play & ~banned, power, exclude, changes)
                while idx is None and bans:  # the budget needs excluded entries: lift the least damaging first
                    k = max(range(len(bans)), key=lambda n: bans[n][0])
                    value, row = bans.pop(k)
                    lifted.append(float(value))
                    tolerated[:] |= row  # not screened again
                    banned[:] = np.logical_or.reduce([b for _, b in bans]) if bans else False
                    idx = ilp(in_play & ~banned, power, exclude, changes)
                if idx is None:
                    return ilp(mask, power, exclude, changes)
            if idx is None or not screen(idx):
                return idx

    def check(idx, how: str) -> None:
        if idx is None or any(np.array_equal(idx, t) for t in tried) or not budget_left():
            return
        tried.append(idx)
        checked.append((-problem.objective.value(idx), proxy_of(idx), idx, how))

    from tqdm.auto import tqdm

    bar = tqdm(total=config.max_evaluations, desc="search", leave=False,
               disable=not show_progress(config.progress, True))
    generators = [("tier optimum", masks[first], 1)]
    if second is not None:
        generators.append(("next tier optimum", masks[second], 1))
    generators.append(("squared proxy", masks[first], 2))
    plain = 0  # candidates of the integer programs as they are (the screened repairs come on top)

    def propose(idx, how, mask, power=1, exclude=(), changes=1) -> None:
        """Check ``idx`` as the integer program gives it, then -- when the screening excludes entries of it -- its
        repair (the program solved again without them); the repair never replaces the plan it repairs, so a
        screened search checks every candidate the unscreened one would."""
        nonlocal plain
        check(idx, how)
        plain += 1
        if config.screen:
            fixed = candidate(mask, power, exclude, changes, widen=True)
            if fixed is not None and not np.array_equal(fixed, idx):
                check(fixed, f"{how}, screened")
        bar.update(scorer.evaluations - evals0 - bar.n)

    if config.anchors:
        anchor = _uniform_anchor(ctx.space, space, norm, np.isfinite(table))
        if anchor is not None:
            prec, idx = anchor
            check(idx, f"uniform {prec}")
            up = (w_bits >= w_bits[rows, idx][:, None]) & (a_bits >= a_bits[rows, idx][:, None]) & in_play
            check(ilp(up & ~banned), f"uniform {prec}, upgraded")
            bar.update(scorer.evaluations - evals0 - bar.n)
    for how, mask, power in generators:
        if plain >= config.candidates:
            break
        idx = ilp(mask, power)
        if idx is not None:
            propose(idx, how, mask, power)
    while plain < config.candidates and budget_left():
        earlier = list(tried)
        idx = ilp(masks[first], exclude=earlier, changes=config.diversity)
        if idx is None:
            break
        propose(idx, f"alternative {plain}", masks[first], exclude=earlier, changes=config.diversity)
    if not checked:  # no plan of the space meets these limits together (check_budget says which)
        bar.close()
        idx = problem.repair(np.argmin(np.where(in_play & ~banned, table, np.inf), axis=1), cost_only=True)
        return problem.result("guided", idx, time.perf_counter() - start, scorer.evaluations - evals0,
                              notes={"stopped": "no feasible plan"}), problem

    def best():
        return max(checked, key=lambda c: (c[0], -c[1]))

    ceiling = None
    refined = misses = 0
    if config.refine:
        blocked: set = set()
        while budget_left():
            top = best()
            if ceiling is None:
                ceiling = scorer.fp32_score()
                bar.update(scorer.evaluations - evals0 - bar.n)
            if top[0] >= ceiling or not budget_left():
                break
            idx = top[2]
            contrib = table[np.arange(space.n_layers), idx]
            order = [int(i) for i in np.argsort(-contrib, kind="stable") if (int(i), tuple(idx)) not in blocked]
            moved = False
            if misses >= config.patience:
                break
            for layer in order:
                blocked.add((layer, tuple(idx)))
                mask = in_play.copy()
                mask[layer] &= (table[layer] < contrib[layer] * (1 - 1e-9)) & ~banned[layer]
                if not mask[layer].any():
                    continue
                cand = candidate(mask)
                if cand is None or any(np.array_equal(cand, t) for t in tried):
                    continue
                before = best()[0]
                check(cand, f"refine layer {space.layers[layer].name}")
                misses = misses + 1 if best()[0] <= before else 0
                refined += 1
                bar.update(scorer.evaluations - evals0 - bar.n)
                moved = True
                break
            if not moved:
                break
    bar.close()
    score, proxy_value, idx, how = best()
    notes = {"strategy": "guided", "tier": str(config.tiers[first]) if first < len(config.tiers) else "all",
             "chosen_by": how, "candidates": len(checked), "refined": refined,
             "proxy_seconds": round(proxy_seconds, 3), "ilp_seconds": round(ilp_seconds, 3),
             "exact_seconds": round(exact_seconds, 3), "exact_entries": int(exact.sum()),
             "proxy_objective": proxy_value, "fp32_score": ceiling,
             "proxy_entries": int(np.isfinite(table).sum()), "screen_groups": len(screen_log),
             "screen_evaluations": screens, "excluded": sum(1 for x in screen_log if x[3]),
             "reference_score": ref_score, "lifted": lifted,
             "screens": [list(x) for x in screen_log],
             "checked": [(h, sc, px, proxy_of(ix)) for sc, px, ix, h in checked]}
    history = -np.maximum.accumulate([c[0] for c in checked])  # best objective (minus the score) so far
    return problem.result("guided", idx, time.perf_counter() - start, scorer.evaluations - evals0,
                          history.tolist(), objective=-score, notes=notes), problem
