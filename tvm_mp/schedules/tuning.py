"""Tuning: search a kernel's knobs by measuring, and a database that keeps the best config per workload.

The search is our own loop over the registry's config space (:meth:`ScheduleEntry.space`): every candidate is
built, checked bit-exact against the default config's output on random data, and timed with TVM's
``time_evaluator`` (median of repeats). The database is a JSON file keyed by target
(:attr:`tvm_mp.targets.CompileTarget.key`, the one key scheme of every database) and workload.

Builds read a :class:`DatabaseStack` (:func:`default_databases`): the user database that ``tvm-mp tune`` writes
(``$TVM_MP_HOME/tuning.json``, see :func:`tvm_mp.targets.user_database_path`), then the one shipped with tvm-mp;
the first with an entry for the kernel wins, else the schedule's defaults. Every lookup says where its config came
from (:data:`USER`, :data:`SHIPPED`, ``"tuned (FILE)"`` or :data:`DEFAULT`), which the compile report shows per
layer.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import _tvm
from .._files import write_atomic
from ..errors import Error
from ..targets import SHIPPED_DATABASE, normalize_key, parse, user_database_path
from .registry import ConvWorkload, KernelConfig, lookup

#: The database shipped with tvm-mp (written by ``python bench/kernels.py --tune``).
DEFAULT_DATABASE = SHIPPED_DATABASE
#: The field of a database entry tuned on emulated instruction counts (not a time).
EMULATED_KEY = "emulated_instructions"

#: Where a build's kernel config came from (``LayerReport.schedule_source``).
USER = "tuned (user database)"
SHIPPED = "tuned (shipped)"
DEFAULT = "default"


def target_key(target) -> str:
    """What identifies a target in the database (:attr:`tvm_mp.targets.CompileTarget.key`)."""
    return parse(target).key


class TuningDatabaseError(Error):
    """A tuning database file that cannot be read (not JSON, not a tvm-mp tuning database, a bad entry)."""


def _records_of(data, path: Path) -> dict:
    """The records of a database file's JSON, keys normalized (entries of keys written by older versions kept)."""
    records = data.get("records") if isinstance(data, dict) else None
    if not isinstance(records, dict) or not all(isinstance(v, dict) for v in records.values()):
        got = ("a dict without a records object" if isinstance(data, dict) and not isinstance(records, dict)
               else "records that are not grouped by target" if isinstance(data, dict) else type(data).__name__)
        raise TuningDatabaseError(f"{path} is not a tuning database (expected {{\"format\": 1, \"records\": "
                                  f"{{target: {{...}}}}}}, got {got}): give another file, or delete it to re-tune")
    out: dict = {}
    for key, entries in records.items():
        out.setdefault(normalize_key(key), {}).update(entries)
    return out


@dataclass
class TuningDatabase:
    """Best config per (target, workload), with the latency measured for it; ``save()`` writes it as JSON.
    ``label``: how a build's report names a config found here (default ``"tuned (FILE NAME)"``)."""

    path: Path | None = None
    records: dict = field(default_factory=dict)
    label: str = ""

    @classmethod
    def load(cls, path: str | Path, label: str = "") -> "TuningDatabase":
        """The database in ``path`` (empty when the file does not exist yet). A path that is a directory, an
        unreadable file, or JSON that is not a tuning database is a one-line :class:`Error` (never overwritten)."""
        if not isinstance(path, (str, os.PathLike)):
            raise Error(f"tuning database must be a file path, got {type(path).__name__}")
        path = Path(path)
        if path.is_dir():
            raise TuningDatabaseError(f"tuning database {path} is a directory: give a file, e.g. "
                                      f"{path / 'tuning.json'}")
        if not path.exists():
            return cls(path, {}, label)
        fix = "delete it to re-tune (or move it away)"
        try:
            data = json.loads(path.read_bytes())
        except OSError as err:
            raise TuningDatabaseError(f"cannot read tuning database {path}: {err.strerror or err}") from None
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
            raise TuningDatabaseError(f"tuning database {path} is not valid JSON ({err}): {fix}") from None
        if isinstance(data, dict) and (isinstance(data.get("format", 1), bool) or data.get("format", 1) != 1):
            raise TuningDatabaseError(f"tuning database {path} has format {data.get('format')!r}, this tvm-mp reads "
                                      f"format 1: {fix}")
        records = _records_of(data, path)
        for target, entries in records.items():
            if not all(isinstance(e, dict) and isinstance(e.get("config"), dict)
                       and (_is_latency(e.get("latency_us")) or _is_latency(e.get(EMULATED_KEY)))
                       for e in entries.values()):
                raise TuningDatabaseError(f"tuning database {path} is damaged: the entries of target {target!r} are "
                                          f"not {{workload: {{\"config\": {{...}}, \"latency_us\": number}}}}: {fix}")
        return cls(path, records, label)

    @classmethod
    def default(cls) -> "TuningDatabase":
        """The database shipped with tvm-mp."""
        return cls.load(DEFAULT_DATABASE, SHIPPED)

    @classmethod
    def user(cls) -> "TuningDatabase":
        """The user database (``$TVM_MP_HOME/tuning.json``; empty until ``tvm-mp tune`` writes it)."""
        return cls.load(user_database_path(), USER)

    @property
    def source(self) -> str:
        """How a report names a config found in this database."""
        if self.label:
            return self.label
        return f"tuned ({self.path.name})" if self.path is not None else "tuned (in memory)"

    def _entry(self, work: ConvWorkload, target) -> dict | None:
        return self.records.get(target_key(target), {}).get(work.key())

    def get(self, work: ConvWorkload, target) -> KernelConfig | None:
        rec = self._entry(work, target)
        if rec is None:
            return None
        try:
            return KernelConfig.from_dict(rec["config"])
        except (KeyError, TypeError) as err:
            where = self.path if self.path is not None else "the tuning database"
            raise TuningDatabaseError(f"{where} has a bad entry for {work.key()} ({err}): delete the entry or "
                                      "re-tune") from None

    def lookup(self, work: ConvWorkload, target) -> tuple[KernelConfig | None, str]:
        """``(config, source)``: this database's entry for ``work`` on ``target`` (None if none) and its label."""
        config = self.get(work, target)
        return config, (self.source if config is not None else DEFAULT)

    def latency_us(self, work: ConvWorkload, target) -> float | None:
        """The entry's measured latency (None without an entry, or for an entry measured in emulated
        instructions: see :meth:`emulated_instructions`)."""
        rec = self._entry(work, target)
        return None if rec is None or "latency_us" not in rec else float(rec["latency_us"])

    def emulated_instructions(self, work: ConvWorkload, target) -> int | None:
        """The entry's dynamic instruction count under emulation, when it was tuned that way (``tvm-mp tune
        --target aarch64`` without a device)."""
        rec = self._entry(work, target)
        return None if rec is None or EMULATED_KEY not in rec else int(rec[EMULATED_KEY])

    def put(self, work: ConvWorkload, target, config: KernelConfig, latency_us: float | None = None,
            emulated_instructions: int | None = None) -> None:
        """Store ``config`` for ``work`` with what it measured: ``latency_us`` or ``emulated_instructions``."""
        if (latency_us is None) == (emulated_instructions is None):
            raise ValueError("give one of latency_us or emulated_instructions")
        entry = {"config": config.to_dict()}
        if latency_us is not None:
            entry["latency_us"] = round(float(latency_us), 3)
        else:
            entry[EMULATED_KEY] = int(emulated_instructions)
        self.records.setdefault(target_key(target), {})[work.key()] = entry

    def save(self, path: str | Path | None = None) -> Path:
        """Write the database as JSON, atomically: a temporary file in the same directory is written, flushed to
        disk and renamed onto ``path``, so a reader (or a crash) sees the old file or the new one, never a part.
        A missing parent directory is created (the user database's on first use)."""
        out = Path(path or self.path or DEFAULT_DATABASE)
        if out.is_dir():
            raise Error(f"tuning database path {out} is a directory: give a file path, e.g. {out / 'tuning_db.json'}")
        if not out.parent.is_dir():
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise TuningDatabaseError(f"cannot create {out.parent} for the tuning database ({err.strerror}): "
                                          "set TVM_MP_HOME to a writable directory, or give --database FILE") from None
        text = json.dumps({"format": 1, "records": self.records}, indent=1, sort_keys=True) + "\n"
        return write_atomic(out, text, durable=True)


def _is_latency(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and value >= 0


@dataclass(frozen=True)
class DatabaseStack:
    """Tuning databases a build reads in order: the first with an entry for a kernel gives its config."""

    databases: tuple[TuningDatabase, ...]

    def get(self, work: ConvWorkload, target) -> KernelConfig | None:
        return self.lookup(work, target)[0]

    def lookup(self, work: ConvWorkload, target) -> tuple[KernelConfig | None, str]:
        for db in self.databases:
            config = db.get(work, target)
            if config is not None:
                return config, db.source
        return None, DEFAULT


def default_databases() -> DatabaseStack:
    """What a build reads when given no database: the user database, then the shipped one."""
    return DatabaseStack((TuningDatabase.user(), TuningDatabase.default()))


def resolve(database) -> DatabaseStack | TuningDatabase | bool:
    """The database(s) a build reads: None -> :func:`default_databases`; False -> none (default knobs); a
    :class:`TuningDatabase` or :class:`DatabaseStack` as given; a path -> that file (which must exist)."""
    if database is None:
        return default_databases()
    if database is False or isinstance(database, (TuningDatabase, DatabaseStack)):
        return database
    if isinstance(database, (str, Path)):
        path = Path(database)
        if not path.is_file():
            raise TuningDatabaseError(f"tuning database {path} not found: give a file written by `tvm-mp tune` "
                                      "(or omit it to use the user and shipped databases)")
        return TuningDatabase.load(path)
    raise Error(f"database must be a TuningDatabase, a path or False, got {type(database).__name__}")



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
    return codes, kernels.weight_data(work, w_q, config), w_q


def accumulator_kernel(work: ConvWorkload, config: KernelConfig, target, rng: np.random.Generator):
    """``(PrimFunc "k", [operands..., zero output])``: the int32-accumulator kernel of ``config`` for ``work`` (conv
    or dense) on random operands drawn from ``rng``: what tuning builds, times and checks."""
    from . import kernels

    zp = int(rng.integers(0, 1 << work.a_bits))
    codes, data, _ = random_operands(work, zp, rng, config)
    if work.op == "dense":
        func = kernels.dense_kernel("k", work.kind, work.w_bits, work.a_bits, work.in_shape, work.weight_shape[0],
                                    kernels.Epilogue("acc"), data[0].shape, target=target, config=config)
        out_shape = (work.in_shape[0], work.weight_shape[0])
    else:
        func = kernels.conv2d_kernel("k", work.kind, work.w_bits, work.a_bits, work.in_shape, work.weight_shape,
                                     work.params, zp, kernels.Epilogue("acc"), data[0].shape, target=target,
                                     config=config)
        out_shape = (work.in_shape[0], work.weight_shape[0], *work.out_hw)
    return func, [codes, *data, np.zeros(out_shape, np.int32)]


#: Seconds a kernel runs before it is timed. The first kernel timed in a fresh process ran 2.5x slow for all its
#: repeats (MobileNetV2's first conv, packed w8a8 im2col: 377 us, then 147 us in every later interleaved round;
#: the CPU leaving an idle state), and a tuner times the default config first.
WARM_UP_S = 0.05


def warm_up(kernel, args, seconds: float = WARM_UP_S) -> None:
    """Run ``kernel(*args)`` for about ``seconds`` (at least once)."""
    end = time.perf_counter() + seconds
    kernel(*args)
    while time.perf_counter() < end:
        kernel(*args)


def measure_kernel(work: ConvWorkload, config: KernelConfig, target, repeat: int = 5, number: int = 50,
                   rng: np.random.Generator | None = None) -> tuple[list[float], np.ndarray]:
    """Latency samples (us, one per repeat) of the accumulator kernel of ``config`` on this host, and its output
    (for checks)."""
    import tvm

    func, operands = accumulator_kernel(work, config, target, rng or np.random.default_rng(0))
    lib = _tvm.build(tvm.IRModule({"k": func}), target)
    args = [_tvm.to_device(a) for a in operands]
    warm_up(lib["k"], args)
    timer = lib.mod.time_evaluator("k", tvm.cpu(), number=number, repeat=repeat)
    return [float(t) * 1e6 for t in timer(*args).results], args[-1].numpy()


def measure_conv(work: ConvWorkload, config: KernelConfig, target, repeat: int = 5, number: int = 50,
                 rng: np.random.Generator | None = None) -> tuple[float, np.ndarray]:
    """Median latency (us) of the accumulator kernel of ``config`` on the host, and its output (for checks); any
    op (conv or dense)."""
    samples, out = measure_kernel(work, config, target, repeat, number, rng)
    return float(np.median(samples)), out


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
