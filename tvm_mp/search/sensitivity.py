"""Per-layer sensitivity: each layer quantized alone (the others in fp32) at each of its options, measured once.

For every layer ``l`` and option ``o`` of a :class:`~tvm_mp.search.space.SearchSpace`, the plan ``{l: o}`` is run by
a :class:`~tvm_mp.search.accuracy.Scorer`: the noise-to-signal ratio of the network's outputs against fp32
(``noise[l, o]``, on the scorer's noise samples) and, when asked for (``with_drop``), its score drop from fp32
(``drop[l, o]``, in the scorer's units). Quantization noise from different layers adds
up roughly independently at the output, so ``sum_l noise[l, o_l]`` is the additive objective that the ILP
(HAWQ-V3 style), the greedy descent (HAQ style) and the annealer's repair step use as a guide.

Measuring costs ``layers x options`` reference runs; :class:`Sensitivity` saves to / loads from JSON, and
:func:`measure_sensitivity` with ``cache_path`` reuses a file made for the same model, data and space.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._files import write_atomic
from .._progress import show_progress
from ..errors import Error
from ..precision import PrecisionPlan
from .accuracy import Scorer
from .space import SearchSpace

#: Number of reference runs above which measuring shows a progress bar.
PROGRESS_MIN_RUNS = 64


@dataclass(frozen=True, eq=False)
class Sensitivity:
    """``[layer, option]`` output noise ratios and (optionally) score drops; padding entries are inf."""

    space: SearchSpace
    noise: np.ndarray
    drop: np.ndarray | None = None
    baseline: float | None = None
    metric: str = ""
    fingerprint: str = ""

    def __post_init__(self) -> None:
        shape = (self.space.n_layers, self.space.max_options)
        valid = np.arange(shape[1])[None, :] < self.space.sizes[:, None]
        for name in ("drop", "noise"):
            if getattr(self, name) is None:
                continue
            arr = np.array(getattr(self, name), dtype=np.float64)
            if arr.shape != shape:
                raise Error(f"Sensitivity.{name} must have shape {shape} (layers x options), got {arr.shape}")
            if not np.isfinite(arr[valid]).all():
                raise Error(f"Sensitivity.{name} has non-finite entries: measure it again")
            arr[~valid] = np.inf
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    def table(self, kind: str = "noise") -> np.ndarray:
        """The additive objective table: "noise" (output noise ratio) or "drop" (score drop)."""
        if kind not in ("noise", "drop"):
            raise Error(f"unknown sensitivity table {kind!r}: use 'noise' or 'drop'")
        if getattr(self, kind) is None:
            raise Error("score drops were not measured: call measure_sensitivity(..., with_drop=True)")
        return getattr(self, kind)

    def to_json(self) -> str:
        rows = {}
        for i, (layer, opts) in enumerate(zip(self.space.layers, self.space.options)):
            rows[layer.name] = {str(o): {"noise": float(self.noise[i, j]),
                                         "drop": None if self.drop is None else float(self.drop[i, j])}
                                for j, o in enumerate(opts)}
        return json.dumps({"metric": self.metric, "baseline": self.baseline, "fingerprint": self.fingerprint,
                           "layers": rows}, indent=1)

    @classmethod
    def from_json(cls, text: str, space: SearchSpace) -> "Sensitivity":
        """Read a table written by :meth:`to_json` for the same layers and options as ``space``."""
        try:
            data = json.loads(text)
            rows = data["layers"]
            shape = (space.n_layers, space.max_options)
            drop, noise = np.full(shape, np.inf), np.full(shape, np.inf)
            has_drop = True
            for i, (layer, opts) in enumerate(zip(space.layers, space.options)):
                for j, o in enumerate(opts):
                    entry = rows[layer.name][str(o)]
                    noise[i, j] = entry["noise"]
                    if entry.get("drop") is None:
                        has_drop = False
                    else:
                        drop[i, j] = entry["drop"]
            baseline = data.get("baseline")
            return cls(space, noise, drop if has_drop else None, None if baseline is None else float(baseline),
                       str(data["metric"]), str(data["fingerprint"]))
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as err:
            raise Error(f"sensitivity JSON does not fit this search space ({err!s}); measure it again") from None


def fingerprint(scorer: Scorer, space: SearchSpace) -> str:
    """Identity of what a sensitivity table was measured on: model weights, data, metric and space."""
    h = hashlib.blake2b(digest_size=16)
    for name, match in sorted(scorer.evaluator.bank.matches.items()):
        h.update(repr((name, match.info)).encode())
        h.update(match.weight.tobytes())
        if match.bias is not None:
            h.update(match.bias.tobytes())
    h.update(scorer.name.encode())
    h.update(json.dumps(space.to_dict(), sort_keys=True).encode())
    for arrays in scorer.noise_data or []:
        for a in arrays:
            h.update(a.tobytes())
    for name in sorted(scorer.ranges):
        r = scorer.ranges[name]
        h.update(repr((name, r.lo, r.hi, r.clipped)).encode())
    return h.hexdigest()


def measure_sensitivity(scorer: Scorer, space: SearchSpace, cache_path: str | Path | None = None,
                        progress: bool | None = None, with_drop: bool = False) -> Sensitivity:
    """Run each layer alone at each option (see module docstring); reuse ``cache_path`` when it matches.
    Plans already run by ``scorer`` are not run again (the scorer memoizes them)."""
    fp = fingerprint(scorer, space) + ("+drop" if with_drop else "")
    if cache_path is not None and Path(cache_path).is_file():
        try:
            cached = Sensitivity.from_json(Path(cache_path).read_text(), space)
        except Error:
            cached = None
        if cached is not None and cached.fingerprint == fp:
            return cached
    baseline = scorer.fp32_score() if with_drop else None
    shape = (space.n_layers, space.max_options)
    drop, noise = np.full(shape, np.inf), np.full(shape, np.inf)
    runs = [(i, j) for i in range(space.n_layers) for j in range(len(space.options[i]))]
    show = show_progress(progress, len(runs) >= PROGRESS_MIN_RUNS)
    from tqdm.auto import tqdm

    for i, j in tqdm(runs, desc="sensitivity", disable=not show, leave=False):
        plan = PrecisionPlan({space.layers[i].name: space.options[i][j]})
        noise[i, j] = scorer.noise(plan)
        if with_drop:
            drop[i, j] = baseline - scorer.score(plan)
    result = Sensitivity(space, noise, drop if with_drop else None, baseline, scorer.name, fp)
    if cache_path is not None:
        Path(cache_path).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cache_path, result.to_json())
    return result
