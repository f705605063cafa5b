"""Simulated annealing over per-layer precisions, under a budget.

State: one option index per layer. Energy of a state: ``objective + penalty * violation`` where ``violation`` is the
summed relative excess over the budget's limits (0 when the plan fits); the best *feasible* state seen is the
answer (infeasible states may be crossed, never returned while a feasible one exists).

Moves (chosen at random with :attr:`AnnealConfig.move_weights`):

* ``step``  -- one layer one step cheaper or dearer (see below);
* ``jump``  -- one layer to any of its candidate options;
* ``swap``  -- two layers exchange their precisions (where each has the other's as a candidate);
* ``block`` -- 2-4 consecutive layers all one step dearer, or all one step cheaper.

With an additive guide (sensitivity), each layer's candidates are its efficient frontier -- the options no other
option beats in every limited cost and in the guide -- ordered by cost, and a step is the next option on that
chain; a candidate over budget is repaired (the least-guide change of another layer that makes it fit: an
exchange move). Without a guide a step is one bit more or less in w or a, and over-budget states pay the penalty.

Schedule: ``restarts + 1`` cycles of geometric cooling from the cycle's start temperature to
``t_end_ratio`` times it; each new cycle restarts from the best state at ``restart_decay`` times the previous
start temperature. Within a cycle, ``reheat_after`` steps without a new best reheat to the cycle's start
temperature. For cheap (additive) objectives each cycle ends with a polish: steepest descent over exchange moves
(every layer to every candidate, repaired by the others) from the best state. The run stops early after
``stop_after`` steps without a new best, or ``max_evaluations`` distinct plans for expensive objectives. The start
temperature, unless given, makes a median uphill move from
the initial state accepted with probability 1/2.

Randomness comes only from the ``numpy.random.Generator`` passed in: the same seed gives the same plan.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from .._progress import show_progress
from ..errors import PlanError
from .problem import Problem, SearchResult, check_rng
from .space import canonical

MOVES = ("step", "jump", "swap", "block")


@dataclass(frozen=True)
class AnnealConfig:
    """Knobs of :func:`anneal` (see module docstring). ``penalty`` None = automatic (10x the objective's spread
    per unit of relative violation); ``progress`` None = a progress bar for expensive objectives only."""

    steps: int = 30000
    t_start: float | None = None
    t_end_ratio: float = 1e-3
    restarts: int = 3
    restart_decay: float = 0.5
    reheat_after: int | None = 2000
    stop_after: int | None = None
    max_evaluations: int | None = None
    penalty: float | None = None
    move_weights: tuple[float, float, float, float] = (0.5, 0.2, 0.15, 0.15)
    repair: bool = True
    frontier: bool = True
    polish: bool = True
    progress: bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 1:
            raise PlanError(f"AnnealConfig.steps={self.steps!r}: give a positive integer")
        if self.t_start is not None and not (self.t_start > 0 and math.isfinite(self.t_start)):
            raise PlanError(f"AnnealConfig.t_start={self.t_start!r}: give a positive temperature or None (automatic)")
        if not (0 < self.t_end_ratio < 1):
            raise PlanError(f"AnnealConfig.t_end_ratio={self.t_end_ratio!r}: give a number in (0, 1)")
        if not isinstance(self.restarts, int) or self.restarts < 0:
            raise PlanError(f"AnnealConfig.restarts={self.restarts!r}: give a non-negative integer")
        if not (0 < self.restart_decay <= 1):
            raise PlanError(f"AnnealConfig.restart_decay={self.restart_decay!r}: give a number in (0, 1]")
        for name in ("reheat_after", "stop_after", "max_evaluations"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise PlanError(f"AnnealConfig.{name}={value!r}: give a positive integer or None")
        if self.penalty is not None and not (self.penalty > 0 and math.isfinite(self.penalty)):
            raise PlanError(f"AnnealConfig.penalty={self.penalty!r}: give a positive number or None (automatic)")
        w = tuple(float(x) for x in self.move_weights)
        if len(w) != len(MOVES) or min(w) < 0 or sum(w) <= 0:
            raise PlanError(f"AnnealConfig.move_weights needs {len(MOVES)} non-negative weights ({', '.join(MOVES)})")
        object.__setattr__(self, "move_weights", w)


class _Moves:
    """Neighbour moves over a search space.

    With a guide (additive sensitivity), each layer's options are reduced to its efficient frontier -- options no
    other option beats in every limited cost and in the guide -- and ordered by cost; "one step" is the next cheaper
    or dearer option on that chain. Without a guide, "one step" is one bit more or less in w or a.
    """

    def __init__(self, problem: Problem, rng: np.random.Generator, weights, frontier: bool):
        space = problem.space
        self.rng = rng
        self.n = space.n_layers
        self.canon = [[canonical(o) for o in opts] for opts in space.options]
        cost = problem.normalized_costs.sum(axis=0)  # [L, O]: the chain order
        self.chain = []
        for i, opts in enumerate(space.options):
            cands = list(range(len(opts)))
            if frontier and problem.guide is not None:
                cands = _frontier(problem.normalized_costs[:, i, : len(opts)], problem.guide[i, : len(opts)])
            cands.sort(key=lambda j: (cost[i, j], j))
            self.chain.append(cands)
        self.pos = [{j: k for k, j in enumerate(chain)} for chain in self.chain]
        self.cost = cost
        if frontier and problem.guide is not None:
            self.near = None
        else:
            self.near = space.neighbours()
            self.level = [[o.w_bits + o.a_bits for o in opts] for opts in space.options]
        self.where = [{self.canon[i][j]: j for j in chain} for i, chain in enumerate(self.chain)]
        p = np.asarray(weights, dtype=np.float64)
        if self.n < 2:
            p[2] = p[3] = 0.0
        self.p = p / p.sum()

    def start(self, idx: np.ndarray) -> np.ndarray:
        """Move every layer onto its chain (the chain option closest in cost)."""
        out = idx.copy()
        for i, j in enumerate(idx):
            if int(j) not in self.pos[i]:
                out[i] = min(self.chain[i], key=lambda k: abs(self.cost[i, k] - self.cost[i, int(j)]))
        return out

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        kind = int(self.rng.choice(len(MOVES), p=self.p))
        new = idx.copy()
        if kind == 2 and self._swap(new):
            return new
        if kind == 3 and self._block(new):
            return new
        layer = int(self.rng.integers(self.n))
        if kind == 0 and self._step(new, layer, None):
            return new
        chain = self.chain[layer]
        if len(chain) > 1:
            k = int(self.rng.integers(len(chain) - 1))
            new[layer] = chain[k] if chain[k] != new[layer] else chain[-1]
        return new

    def _step(self, new: np.ndarray, layer: int, up: bool | None) -> bool:
        cur = int(new[layer])
        if self.near is not None:
            near = self.near[layer][cur]
            if up is not None:
                here = self.level[layer][cur]
                near = [j for j in near if self.level[layer][j] != here and (self.level[layer][j] > here) == up]
            if not near:
                return False
            new[layer] = near[int(self.rng.integers(len(near)))]
            return True
        chain = self.chain[layer]
        k = self.pos[layer].get(cur)
        if k is None or len(chain) < 2:
            return False
        if up is None:
            up = bool(self.rng.integers(2)) if 0 < k < len(chain) - 1 else k == 0
        k2 = k + 1 if up else k - 1
        if not 0 <= k2 < len(chain):
            return False
        new[layer] = chain[k2]
        return True

    def _swap(self, new: np.ndarray) -> bool:
        a, b = (int(v) for v in self.rng.choice(self.n, size=2, replace=False))
        pa, pb = self.canon[a][new[a]], self.canon[b][new[b]]
        if pa == pb or pb not in self.where[a] or pa not in self.where[b]:
            return False
        new[a], new[b] = self.where[a][pb], self.where[b][pa]
        return True

    def _block(self, new: np.ndarray) -> bool:
        length = int(self.rng.integers(2, min(4, self.n) + 1))
        start = int(self.rng.integers(self.n - length + 1))
        up = bool(self.rng.integers(2))
        moved = False
        for layer in range(start, start + length):
            moved |= self._step(new, layer, up)
        return moved


def _frontier(costs: np.ndarray, guide: np.ndarray) -> list[int]:
    """Options not dominated in (every cost row, guide): ``costs`` is ``[K, O]``, ``guide`` ``[O]``."""
    vec = np.vstack([costs, guide[None, :]]).T  # [O, K+1]
    keep = []
    for j in range(vec.shape[0]):
        le = (vec <= vec[j]).all(axis=1)
        lt = (vec < vec[j]).any(axis=1)
        dominated = le & lt
        same = (vec == vec[j]).all(axis=1)
        same[j:] = False  # of identical options keep the first
        if not (dominated.any() or same.any()):
            keep.append(j)
    return keep


def _polish(problem: Problem, moves: _Moves, state: np.ndarray) -> np.ndarray:
    """Steepest descent over exchange moves (one layer to any candidate, the plan repaired into the budget by the
    others) until none improves. Cheap objectives only: one sweep evaluates every layer x candidate."""
    state = state.copy()
    value = problem.objective.value(state)
    for _ in range(4 * problem.space.n_layers):
        best, best_value = None, value
        for layer in range(problem.space.n_layers):
            for option in moves.chain[layer]:
                if option == state[layer]:
                    continue
                cand = state.copy()
                cand[layer] = option
                if not problem.feasible(cand):
                    cand = problem.repair(cand, frozen=[layer])
                    if not problem.feasible(cand):
                        continue
                v = problem.objective.value(cand)
                if v < best_value - 1e-12 * max(1.0, abs(best_value)):
                    best, best_value = cand, v
        if best is None:
            break
        state, value = best, best_value
    return state


def _spread(problem: Problem, samples: list[float]) -> float:
    obj = problem.objective
    if getattr(obj, "additive", False):
        t = np.where(np.isfinite(obj.table), obj.table, np.nan)
        return float(np.nansum(np.nanmax(t, axis=1) - np.nanmin(t, axis=1))) or 1.0
    finite = [s for s in samples if math.isfinite(s)]
    spread = (max(finite) - min(finite)) if len(finite) > 1 else 0.0
    return spread if spread > 0 else 1.0


def anneal(problem: Problem, rng: np.random.Generator, config: AnnealConfig | None = None,
           init=None) -> SearchResult:
    """Simulated annealing (see module docstring). ``init``: a starting index vector (repaired into the budget if
    needed); default the greedy plan when the problem has a guide, else a random state repaired into the budget."""
    rng = check_rng(rng)
    config = config or AnnealConfig()
    t0_wall = time.perf_counter()
    space = problem.space
    evals0 = problem.objective.evaluations
    if init is None and problem.guide is not None:
        from .greedy import greedy_index

        state = greedy_index(problem)
    elif init is None:
        state = problem.repair(rng.integers(0, space.sizes))
    else:
        state = problem.repair(np.array(init, dtype=np.int64))
    moves = _Moves(problem, rng, config.move_weights, config.frontier)
    state = moves.start(state)
    if not problem.feasible(state):
        state = problem.repair(state)
    value = problem.objective.value(state)
    viol = problem.violation(state)
    use_repair = config.repair and problem.guide is not None
    expensive = not getattr(problem.objective, "additive", False)

    def propose(current: np.ndarray) -> np.ndarray:
        cand = moves(current)
        if use_repair and not problem.feasible(cand):
            cand = problem.repair(cand, frozen=np.flatnonzero(cand != current))
        return cand

    # start temperature and penalty from a sample of moves around the initial state
    probe = [problem.objective.value(propose(state)) for _ in range(min(16 if expensive else 64, config.steps))]
    penalty = config.penalty if config.penalty is not None else 10.0 * _spread(problem, probe + [value])
    if config.t_start is not None:
        t_start = config.t_start
    else:
        ups = [p - value for p in probe if p > value and math.isfinite(p)]
        t_start = float(np.median(ups)) / math.log(2.0) if ups else 1e-3 * max(abs(value), 1e-6)

    energy = value + penalty * viol
    best_state, best_value = (state.copy(), value) if viol == 0.0 else (None, math.inf)
    fallback_state, fallback_energy = state.copy(), energy
    history = []
    cycles = config.restarts + 1
    per_cycle = max(1, config.steps // cycles)
    since_best = 0
    step = 0
    stopped = ""
    show = show_progress(config.progress, expensive and config.steps >= 200)
    from tqdm.auto import tqdm

    bar = tqdm(total=config.steps, desc="annealing", disable=not show, leave=False)
    for cycle in range(cycles):
        t_cycle = t_start * config.restart_decay**cycle
        if cycle > 0:
            restart = best_state if best_state is not None else fallback_state
            state = restart.copy()
            value = problem.objective.value(state)
            viol = problem.violation(state)
            energy = value + penalty * viol
        cool = config.t_end_ratio ** (1.0 / max(1, per_cycle - 1))
        temp = t_cycle
        for _ in range(per_cycle):
            step += 1
            cand = propose(state)
            c_value = problem.objective.value(cand)
            c_viol = problem.violation(cand)
            c_energy = c_value + penalty * c_viol
            delta = c_energy - energy
            if delta <= 0 or rng.random() < math.exp(-delta / temp):
                state, value, viol, energy = cand, c_value, c_viol, c_energy
                if viol == 0.0 and value < best_value:
                    best_state, best_value = state.copy(), value
                    since_best = -1
                elif best_state is None and energy < fallback_energy:
                    fallback_state, fallback_energy = state.copy(), energy
            since_best += 1
            history.append(best_value)
            temp *= cool
            if config.reheat_after is not None and since_best and since_best % config.reheat_after == 0:
                temp = t_cycle
            if step % 256 == 0:
                bar.update(256)
            if config.stop_after is not None and since_best >= config.stop_after:
                stopped = "no improvement"
                break
            if config.max_evaluations is not None and problem.objective.evaluations - evals0 >= config.max_evaluations:
                stopped = "evaluation limit"
                break
        if config.polish and not expensive and best_state is not None:
            polished = _polish(problem, moves, best_state)
            p_value = problem.objective.value(polished)
            if p_value < best_value:
                best_state, best_value = polished, p_value
        if stopped:
            break
    bar.close()
    final = best_state if best_state is not None else problem.repair(fallback_state)
    notes = {"t_start": t_start, "penalty": penalty, "steps": step, "stopped": stopped or "schedule done"}
    return problem.result("annealing", final, time.perf_counter() - t0_wall,
                          problem.objective.evaluations - evals0,
                          history[:: max(1, len(history) // 200)], notes=notes)
