"""Tuning: search a kernel's knobs by measuring, and a database that keeps the best config per workload.

The search is our own loop over the registry's config space (:meth:`ScheduleEntry.space`): every candidate is
built, checked bit-exact against the default config's output on random data, and timed with TVM's
``time_evaluator`` (median of repeats). The database is a JSON file keyed by target and workload; builds look it
up before falling back to defaults, so a tuned workload is never re-tuned.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import _tvm
from .._files import write_atomic
from ..errors import Error
from ..targets import SHIPPED_DATABASE, parse
from .registry import ConvWorkload, KernelConfig, lookup

#: The database shipped with tvm-mp (written by ``python bench/kernels.py --tune``).
DEFAULT_DATABASE = SHIPPED_DATABASE


def target_key(target) -> str:
    """What identifies a target in the database (:attr:`tvm_mp.targets.CompileTarget.key`)."""
    return parse(target).key


@dataclass
class TuningDatabase:
    """Best config per (target, workload), with the latency measured for it; ``save()`` writes it as JSON."""

    path: Path | None = None
    records: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> "TuningDatabase":
        """The database in ``path`` (empty when the file does not exist yet). A path that is a directory, an
        unreadable file, or JSON that is not a tuning database is a one-line :class:`Error` (never overwritten)."""
        if not isinstance(path, (str, os.PathLike)):
            raise Error(f"tuning database must be a file path, got {type(path).__name__}")
        path = Path(path)
        if not path.exists():
            return cls(path, {})
        if path.is_dir():
            raise Error(f"tuning database path {path} is a directory: give a file path, e.g. "
                        f"{path / 'tuning_db.json'}")
        fix = "delete it to re-tune (or move it away)"
        try:
            data = json.loads(path.read_bytes())
        except OSError as err:
            raise Error(f"cannot read tuning database {path}: {err.strerror or err}") from None
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
            raise Error(f"tuning database {path} is not valid JSON ({err}): {fix}") from None
        records = data.get("records") if isinstance(data, dict) else None
        if not isinstance(records, dict):
            raise Error(f"{path} is not a tuning database (expected {{\"format\": 1, \"records\": {{...}}}}, got "
                        f"{type(data).__name__}{' without a records object' if isinstance(data, dict) else ''}): "
                        f"{fix}")
        if isinstance(data.get("format", 1), bool) or data.get("format", 1) != 1:
            raise Error(f"tuning database {path} has format {data.get('format')!r}, this tvm-mp reads format 1: "
                        f"{fix}")
        for target, entries in records.items():
            if not isinstance(entries, dict) or not all(
                    isinstance(e, dict) and isinstance(e.get("config"), dict) and _is_latency(e.get("latency_us"))
                    for e in entries.values()):
                raise Error(f"tuning database {path} is damaged: the entries of target {target!r} are not "
                            f"{{workload: {{\"config\": {{...}}, \"latency_us\": number}}}}: {fix}")
        return cls(path, records)

    @classmethod
    def default(cls) -> "TuningDatabase":
        return cls.load(DEFAULT_DATABASE)

    def get(self, work: ConvWorkload, target) -> KernelConfig | None:
        rec = self.records.get(target_key(target), {}).get(work.key())
        return None if rec is None else KernelConfig.from_dict(rec["config"])

    def latency_us(self, work: ConvWorkload, target) -> float | None:
        rec = self.records.get(target_key(target), {}).get(work.key())
        return None if rec is None else float(rec["latency_us"])

    def put(self, work: ConvWorkload, target, config: KernelConfig, latency_us: float) -> None:
        self.records.setdefault(target_key(target), {})[work.key()] = {
            "config": config.to_dict(), "latency_us": round(float(latency_us), 3)}

    def save(self, path: str | Path | None = None) -> Path:
        """Write the database as JSON, atomically: a temporary file in the same directory is written, flushed to
        disk and renamed onto ``path``, so a reader (or a crash) sees the old file or the new one, never a part."""
        out = Path(path or self.path or DEFAULT_DATABASE)
        if out.is_dir():
            raise Error(f"tuning database path {out} is a directory: give a file path, e.g. {out / 'tuning_db.json'}")
        text = json.dumps({"format": 1, "records": self.records}, indent=1, sort_keys=True) + "\n"
        return write_atomic(out, text, durable=True)


def _is_latency(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and value >= 0


def random_operands(work: ConvWorkload, zero_point: int, rng: np.random.Generator, config: KernelConfig | None):
    """Random codes and weights for ``work``: (codes, weight data in ``config``'s layout, w_q)."""
    from . import kernels

    lo = -1 if work.w_bits == 1 else -((1 << (work.w_bits - 1)) - 1)
    hi = -lo
    w_q = rng.integers(lo, hi + 1, work.weight_shape)
    if work.w_bits == 1:
        w_q = np.where(w_q >= 0, 1, -1)
    w_q = w_q.astype(np.int8)
    codes = rng.integers(0, 1 << work.a_bits, work.in_shape).astype(np.uint8)
    if work.op == "dense":
        from .kernels import weight_data_dense

        return codes, weight_data_dense(work.kind, w_q, work.w_bits), w_q
    return codes, kernels.conv2d_weight_data(work.kind, w_q, work.w_bits, config), w_q


def measure_conv(work: ConvWorkload, config: KernelConfig, target, repeat: int = 5, number: int = 50,
                 rng: np.random.Generator | None = None) -> tuple[float, np.ndarray]:
    """Median latency (us) of the accumulator kernel of ``config`` on the host, and its output (for checks)."""
    import tvm

    from . import kernels

    rng = rng or np.random.default_rng(0)
    zp = int(rng.integers(0, 1 << work.a_bits))
    codes, data, _ = random_operands(work, zp, rng, config)
    func = kernels.conv2d_kernel("k", work.kind, work.w_bits, work.a_bits, work.in_shape, work.weight_shape,
                                 work.params, zp, kernels.Epilogue("acc"), data[0].shape, target=target,
                                 config=config)
    lib = _tvm.build(tvm.IRModule({"k": func}), target)
    oh, ow = work.out_hw
    out = _tvm.to_device(np.zeros((work.in_shape[0], work.weight_shape[0], oh, ow), np.int32))
    args = [_tvm.to_device(a) for a in [codes, *data]] + [out]
    timer = lib.mod.time_evaluator("k", tvm.cpu(), number=number, repeat=repeat)
    res = timer(*args)
    return float(np.median(res.results)) * 1e6, out.numpy()


def tune_conv(work: ConvWorkload, target, database: TuningDatabase, max_trials: int | None = None,
              rng: np.random.Generator | None = None, log=None) -> tuple[KernelConfig, float]:
    """Try the registry's config space for ``work`` (all of it, or ``max_trials`` drawn with ``rng``), keep the
    fastest config whose output equals the default config's, store it in ``database`` and return it."""
    target = parse(target).tvm_target
    entry = lookup(work.op, work.kind, target)
    default = entry.default(work, target)
    space = [c for c in entry.space(work, target) if c != default]
    rng = rng or np.random.default_rng(0)
    if max_trials is not None and len(space) > max_trials - 1:
        idx = rng.choice(len(space), size=max(0, max_trials - 1), replace=False)
        space = [space[i] for i in sorted(idx)]
    best_t, expected = measure_conv(work, default, target, rng=np.random.default_rng(1))
    best = default
    for config in space:
        try:
            t, out = measure_conv(work, config, target, rng=np.random.default_rng(1))
        except Exception as err:  # a knob combination the schedule cannot apply: skip it
            if log:
                log(f"  skip {config}: {_tvm.error_line(err)}")
            continue
        if not np.array_equal(out, expected):
            raise Error(f"config {config} gives a different result for {work.key()}: a schedule bug")
        if log:
            log(f"  {t:9.2f} us  {config}")
        if t < best_t:
            best, best_t = config, t
    database.put(work, target, best, best_t)
    return best, best_t
