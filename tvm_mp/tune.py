"""``tvm_mp.tune``: tune the kernels of a plan on this machine or on devices attached over TVM RPC, without losing
a measurement.

Every distinct conv or dense workload (layer shape x precision x kernel kind) of a plan is a task; each task's
candidate schedules are knob configurations from the schedule registry (:mod:`tvm_mp.schedules.registry`). A measurement
job is one (task, config): the host builds (cross-compiles for the target), a device registered with a TVM RPC
tracker under the key runs and times it, and the result is appended to the record store at once (JSON lines,
flushed per record, :mod:`tvm_mp.measure.records`).

* Every device under the key is used in parallel: one worker thread per device, each asking the tracker for a
  session per job, so the tracker spreads jobs over whatever devices are alive.
* A device that dies, freezes or refuses mid-measurement costs only that job's attempt: it is retried on another
  device, and after ``RPCConfig.retries`` failed attempts it is recorded as failed (with the reason), never
  silently dropped.
* Every network step has a deadline (:class:`RPCConfig`, :mod:`tvm_mp._rpc`): a silent tracker or a frozen device
  ends the run within a bound (see :func:`tune`), with every record measured before it kept.
* Resume: a job whose successful record is already in the store is skipped, so killing the tuner (even with
  kill -9) and running the same command again continues where it stopped.
* At the end the fastest correct config of each task goes into the tuning database (written atomically: a kill
  keeps the previous file) -- by default the user database (``$TVM_MP_HOME/tuning.json``,
  :func:`tvm_mp.targets.user_database_path`) under the target's key -- which the next ``tvm_mp.compile`` of that
  target reads by default (no re-tuning).
* The records are measurement records (:mod:`tvm_mp.measure.records`): ``tvm-mp cost-model train --records`` takes
  them, so a model trained on a device's records costs plans for that device (``compile --cost-model``).
* Without ``rpc``, the jobs run on this machine (the target must be this machine): each candidate is also checked
  bit-exact against the default config's output before it can win.
* Without ``rpc`` for an aarch64 target, the jobs are cross-compiled with ``aarch64-linux-gnu-gcc`` and run under
  ``qemu-aarch64 -cpu max`` with tvm-mp's counting plugin (:mod:`tvm_mp.deploy.emulate`): the measure is the
  dynamic instruction count of one call, "emulated instructions" (records of source ``"emulator"`` with
  ``instructions``, database entries with ``emulated_instructions``; never a time), each candidate checked
  bit-exact against the default config's emulated output.
* Everything defaults to 127.0.0.1; nothing here opens a port.
"""

from __future__ import annotations

import math
import numbers
import queue
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tvm

from . import _tvm
from ._progress import show_progress
from .errors import Error, RPCError
from .layers import list_layers
from .precision import PrecisionPlan
from .targets import parse


class TuneError(Error):
    """Tuning cannot start: unreachable tracker, no device under the key, bad settings."""


def _seconds(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise TuneError(f"RPCConfig.{name}={value!r}: give a number of seconds > 0")
    return float(value)


@dataclass(frozen=True)
class RPCConfig:
    """Where the devices are (a TVM RPC tracker and the key the devices registered with), and the deadlines.

    ``connect_timeout_s`` bounds each exchange with the tracker (connection, handshake, summary) and the session
    handshake with a device; a worker waits at most ``2 x connect_timeout_s`` for a device to be free and answer.
    ``session_timeout_s`` bounds one job on a device: upload, load and the timed run together (the device's
    server also ends the session after it). ``retries``: other attempts a job gets after a failed one.
    See :func:`tune` for what happens when a deadline passes.
    """

    device_key: str
    tracker_host: str = "127.0.0.1"
    tracker_port: int = 9190
    session_timeout_s: float = 120.0
    retries: int = 2
    connect_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not isinstance(self.device_key, str) or not self.device_key.strip():
            raise TuneError("RPCConfig.device_key is empty: give the --key the devices' rpc_server registered with")
        if not isinstance(self.tracker_host, str) or not self.tracker_host.strip():
            raise TuneError(f"RPCConfig.tracker_host={self.tracker_host!r}: give a host name or address")
        if (isinstance(self.tracker_port, bool) or not isinstance(self.tracker_port, numbers.Integral)
                or not 0 < self.tracker_port < 65536):
            raise TuneError(f"RPCConfig.tracker_port={self.tracker_port!r} is not a port number (1..65535)")
        if isinstance(self.retries, bool) or not isinstance(self.retries, numbers.Integral) or self.retries < 0:
            raise TuneError(f"RPCConfig.retries={self.retries!r}: give a whole number >= 0")
        object.__setattr__(self, "tracker_port", int(self.tracker_port))
        object.__setattr__(self, "retries", int(self.retries))
        object.__setattr__(self, "session_timeout_s", _seconds("session_timeout_s", self.session_timeout_s))
        object.__setattr__(self, "connect_timeout_s", _seconds("connect_timeout_s", self.connect_timeout_s))

    @classmethod
    def parse(cls, tracker: str, key: str, **kw) -> "RPCConfig":
        host, sep, port = str(tracker).strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise TuneError(f"cannot read tracker address {tracker!r}: write it as HOST:PORT, e.g. 127.0.0.1:9190")
        return cls(key, host.strip("[]"), int(port), **kw)


@dataclass
class TuneResult:
    """What a tuning run did. ``best``: task key -> (config dict, its cost in ``unit``: median latency in "us", or
    "emulated instructions" for an emulated run); ``failures``: record key -> why that job failed (also in its
    record)."""

    tasks: int
    jobs: int
    measured: int = 0
    skipped: int = 0
    failed: int = 0
    best: dict = field(default_factory=dict)
    failures: dict = field(default_factory=dict)
    records_path: Path | None = None
    database_path: Path | None = None
    unit: str = "us"

    def count(self, record) -> None:
        """Count a job's record: measured, or failed with its reason."""
        if record.error is None:
            self.measured += 1
        else:
            self.failed += 1
            self.failures[record.key] = record.error

    @property
    def all_failed(self) -> bool:
        """True when jobs ran and every one of them failed (none measured now, none measured before)."""
        return self.failed > 0 and self.measured == 0 and self.skipped == 0

    def failure_summary(self) -> str:
        """One line: the most common reason jobs failed, how many times, and how many other reasons there were."""
        reasons: dict[str, int] = {}
        for why in self.failures.values():
            line = " ".join(str(why).split())
            reasons[line] = reasons.get(line, 0) + 1
        if not reasons:
            return "no reason recorded"
        reason, count = max(reasons.items(), key=lambda kv: kv[1])
        others = len(reasons) - 1
        return (f"{count} x {reason[:300]}" + (f"; and {others} other reason{'s' if others > 1 else ''} (see the "
                                                 "records)" if others else ""))


def _todo(tasks, compile_target, trials: int, seed: int, store, device: str, result) -> list[tuple]:
    """The jobs of a tuning run measured on ``device`` as ``(work, config, workload)``: ``trials`` candidate configs
    per task (seeded), less those ``store`` holds a good record of (counted in ``result.jobs`` and
    ``result.skipped``)."""
    rng = np.random.default_rng(seed)
    done = {r.key for r in store.load() if r.error is None}
    todo = []
    for work in tasks:
        for config in _candidates(work, compile_target.tvm_target, trials, rng):
            result.jobs += 1
            workload = _record_workload(work, config, compile_target.cost_key, device)
            if workload.key in done:
                result.skipped += 1
            else:
                todo.append((work, config, workload))
    return todo


def _device_reason(message: str, target, key: str) -> str:
    """Why a job failed on the device, in words: a library the device cannot load (most often one built for another
    architecture: an x86 RPC server given an aarch64 library) says so and what to do."""
    if "Failed to load dynamic shared library" in message or "wrong ELF class" in message:
        where = message.split(" failed:", 1)[0].removeprefix("run on ") if " failed:" in message else "the device"
        return (f"{where} could not load the {target.arch} kernel library: is the RPC server under key {key!r} an "
                f"{target.arch} device? (a server on another architecture cannot run it; for aarch64 without a "
                "board, tune without --key: tvm-mp counts emulated instructions under qemu)")
    return message


@dataclass
class _Job:
    work: Any  # registry.ConvWorkload
    config: Any  # registry.KernelConfig
    workload: Any  # cost_models.base.Workload (the record key)
    attempts: int = 0
    errors: list = field(default_factory=list)


def _record_workload(work, config, target_name: str, device: str):
    from .cost_models.base import Workload

    knobs = {k: (int(v) if isinstance(v, bool) else v) for k, v in config.to_dict().items()}
    return Workload(work.op, work.in_shape, work.weight_shape, work.w_bits, work.a_bits, work.kind, work.params,
                    "acc", knobs, target_name, device)


def plan_tasks(mod: tvm.IRModule, plan: PrecisionPlan) -> list:
    """Distinct conv and dense workloads of the plan's integer layers (float formats and clustered weights have no
    knobs)."""
    from .schedules import kernels

    seen, tasks = set(), []
    for layer in list_layers(mod):
        prec = plan.get(layer.name)
        if prec is None or not prec.is_integer:
            continue
        if layer.op == "dense":  # the workloads builds look up (RewriteMixedPrecision)
            work = kernels.dense_workload(prec.resolved_kind, prec.w_bits, prec.a_bits, layer.input_shape,
                                          layer.weight_shape)
        else:
            work = kernels.conv_workload(prec.resolved_kind, prec.w_bits, prec.a_bits, layer.input_shape,
                                         layer.weight_shape, layer.params)
        if work.key() not in seen:
            seen.add(work.key())
            tasks.append(work)
    return tasks


def _candidates(work, target, trials: int, rng: np.random.Generator) -> list:
    from .schedules.registry import lookup

    entry = lookup(work.op, work.kind, target)
    default = entry.default(work, target)
    space = [c for c in entry.space(work, target) if c != default]
    if len(space) > trials - 1:
        idx = rng.choice(len(space), size=max(0, trials - 1), replace=False)
        space = [space[i] for i in sorted(idx)]
    return [default] + space


def _build(work, config, compile_target, path: Path, fcompile):
    from .schedules.tuning import accumulator_kernel

    func, operands = accumulator_kernel(work, config, compile_target.tvm_target, np.random.default_rng(1))
    lib = _tvm.build(tvm.IRModule({"k": func}), compile_target.tvm_target)
    if fcompile is None:  # cross-linked for another architecture (aarch64-linux-gnu-gcc)
        compile_target.export_library(lib, path)
    else:
        lib.export_library(str(path), fcompile=fcompile)
    return operands


def _tracker(rpc_config: RPCConfig) -> int:
    """How many devices are registered under the key (the tracker's summary, within ``connect_timeout_s``)."""
    from ._rpc import Tracker

    try:
        with Tracker(rpc_config.tracker_host, rpc_config.tracker_port, rpc_config.connect_timeout_s) as tracker:
            summary = tracker.summary()
    except RPCError as err:
        raise TuneError(f"{err}: check that a TVM RPC tracker runs there (`python -m tvm.exec.rpc_tracker --host "
                        f"{rpc_config.tracker_host} --port {rpc_config.tracker_port}`) or give another "
                        "--rpc-tracker") from None
    servers = [s for s in summary.get("server_info", []) if str(s.get("key", "")).split(":")[-1] ==
               rpc_config.device_key or rpc_config.device_key in str(s.get("key", ""))]
    queue_info = summary.get("queue_info", {}).get(rpc_config.device_key, {})
    n = max(len(servers), int(queue_info.get("free", 0)) + int(queue_info.get("pending", 0)))
    if n == 0:
        keys = sorted(summary.get("queue_info", {}))
        raise TuneError(f"no device registered under key {rpc_config.device_key!r} with the tracker; keys there: "
                        f"{', '.join(keys) or '(none)'}")
    return n


def tune(mod: tvm.IRModule, plan: PrecisionPlan, target: Any = None, rpc: RPCConfig | None = None,
         trials: int = 8, records: str | Path = "tvm_mp_records.jsonl", database: str | Path | None = None,
         seed: int = 0, number: int = 20, repeat: int = 3, fcompile=None, progress: bool = True) -> TuneResult:
    """Tune the plan's conv and dense kernels on the devices behind ``rpc``, or on this machine without ``rpc``
    (see the module docstring).

    ``trials``: configs per task (the default config first, then a seeded sample of the space).
    ``records``: the JSON-lines record store (appended; existing successful records are skipped).
    ``database``: tuning database to update (default: the user database, ``$TVM_MP_HOME/tuning.json``, which
    the next ``tvm_mp.compile`` of ``target`` reads).
    ``fcompile``: cross-compiler for the target (default: the target's own, e.g. ``aarch64-linux-gnu-gcc`` for
    aarch64, found on PATH).

    Deadlines (``C`` = ``rpc.connect_timeout_s``, ``S`` = ``rpc.session_timeout_s``), each step ending with a
    one-line reason when it passes:

    * the tracker: connecting, its handshake and its summary, before any job, each within ``C``; a tracker that
      is unreachable, silent or not a TVM tracker raises :class:`TuneError` after at most ``C`` seconds;
    * a session for a job: the tracker handing out a free device within ``C``, then the device's handshake
      within ``C`` (a device that takes the request but does not answer is left out and, while the first ``C``
      lasts, another one is asked for); a worker that gets no answering device stops, leaving its job to the
      others;
    * a job on a device: upload, load and the timed run together within ``S``; a job whose device does not
      answer in time (or dies, or refuses) is retried on another device, and after ``rpc.retries`` retries it
      is recorded as failed with the reasons.

    When no worker is left, the jobs still waiting are recorded as failed ("no device under key ... answered")
    and the run ends normally: the tuning database is written from the records that were measured. So once
    every device stops answering (frozen, unplugged, tracker gone), the run ends within ``S + 4C`` seconds plus
    the build time of the jobs in flight (the job running then: at most ``2C`` to open its session and ``S`` to
    run; then one more ``2C`` attempt to find a device). Every record measured before is kept, and running the
    same call again retries only what was not measured.
    """
    from .measure.records import Record, RecordStore
    from .schedules.tuning import TuningDatabase

    if trials < 1:
        raise TuneError(f"trials must be >= 1, got {trials}")
    plan.validate_for([layer.name for layer in list_layers(mod)])
    compile_target = parse(target)
    if not compile_target.builds_with_tvm:
        raise TuneError(f"tune measures TVM kernels; {compile_target.name} is a C target (its report "
                        "carries emulated instruction counts)")
    TuningDatabase.load(_database_path(database, compile_target))  # a damaged database fails now, not after measuring
    if rpc is None:
        if compile_target.arch == "aarch64":
            return _tune_emulated(mod, plan, compile_target, trials, records, database, seed, progress)
        return _tune_local(mod, plan, compile_target, trials, records, database, seed, number, repeat, progress)
    if fcompile is None and not compile_target.is_host:
        compile_target.check_cross_compiler()  # one line naming the Debian package, before any job
    target_name = compile_target.cost_key
    n_devices = _tracker(rpc)
    rng = np.random.default_rng(seed)
    tasks = plan_tasks(mod, plan)
    store = RecordStore(records)
    done = {r.key for r in store.load() if r.error is None}
    jobs, result = [], TuneResult(len(tasks), 0, records_path=Path(records))
    for work in tasks:
        for config in _candidates(work, compile_target.tvm_target, trials, rng):
            job = _Job(work, config, _record_workload(work, config, target_name, rpc.device_key))
            result.jobs += 1
            if job.workload.key in done:
                result.skipped += 1
            else:
                jobs.append(job)
    pending: queue.Queue = queue.Queue()
    for job in jobs:
        pending.put(job)
    lock = threading.Lock()
    remaining = [len(jobs)]
    bar = _progress(len(jobs), progress)

    def finish(job, record):
        with lock:
            store.append(record)
            remaining[0] -= 1
            result.count(record)
            bar.update(1)

    last_open_error = [""]

    def open_session():
        """A session on a free device under the key, or None when none answers: the tracker has
        ``connect_timeout_s`` to hand out a free device, the device ``connect_timeout_s`` for its handshake.

        The tracker hands out each free device once; a device that takes the request but does not finish the
        handshake (frozen) is left out and, while the first ``connect_timeout_s`` lasts, another one is asked for.
        So this ends within ``2 x connect_timeout_s``."""
        from ._rpc import Tracker, connect

        requests_until = time.monotonic() + rpc.connect_timeout_s
        while True:
            left = requests_until - time.monotonic()
            if left <= 0:
                return None
            try:
                with Tracker(rpc.tracker_host, rpc.tracker_port, left) as tracker:
                    host, port, matchkey = tracker.request(rpc.device_key,
                                                           max(requests_until - time.monotonic(), 0.05))
            except RPCError as err:  # tracker gone or silent, or no device free in time: this worker stops
                last_open_error[0] = str(err)
                return None
            try:
                return connect(host, port, matchkey, rpc.session_timeout_s, rpc.connect_timeout_s)
            except RPCError as err:  # this device did not answer: ask the tracker for another
                last_open_error[0] = str(err)

    def measure(session, lib: Path, args) -> list[float]:
        """Upload, load and time one job; the three steps share the job's ``session_timeout_s``."""
        from ._rpc import upload_and_run

        def run(rmod, dev):
            dargs = [tvm.runtime.tensor(a, dev) for a in args]
            timer = rmod.time_evaluator("k", dev, number=number, repeat=repeat)
            return [float(t) * 1e3 for t in timer(*dargs).results]

        return upload_and_run(session, lib, run, rpc.session_timeout_s,
                              f"the {rpc.session_timeout_s:.3g} s a job may take (session_timeout_s)")

    def worker(index: int):
        with tempfile.TemporaryDirectory(prefix=f"tvm_mp_tune_{index}_") as tmp:
            while True:
                with lock:
                    if remaining[0] == 0:
                        return
                try:
                    job = pending.get(timeout=0.5)
                except queue.Empty:
                    continue
                lib = Path(tmp) / f"k{job.attempts}_{abs(hash(job.workload.key))}.so"
                try:
                    args = _build(job.work, job.config, compile_target, lib, fcompile)
                except Exception as err:  # a config the schedule cannot build: a failed record, not a retry
                    finish(job, Record(job.workload, (), "rpc", error=f"build: {_tvm.error_line(err)}"))
                    continue
                session = open_session()  # one session per job: the tracker spreads jobs over live devices
                if session is None:  # no device answers this worker: leave the job to the others
                    pending.put(job)
                    return
                try:
                    samples = measure(session, lib, args)
                except Error as err:  # the device died, froze or refused: retry elsewhere, then record it
                    job.attempts += 1
                    job.errors.append(_device_reason(str(err), compile_target, rpc.device_key))
                    if job.attempts > rpc.retries:
                        reason = "; ".join(dict.fromkeys(job.errors))  # each distinct reason once, the first kept
                        reason = reason if len(reason) <= 500 else reason[:497] + "..."
                        finish(job, Record(job.workload, (), "rpc", error=reason))
                    else:
                        pending.put(job)
                    continue
                finally:
                    session.close()
                finish(job, Record(job.workload, tuple(samples), "rpc",
                                   meta={"key": rpc.device_key, "number": number, "repeat": repeat}))

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n_devices)]
    for t in threads:
        t.start()
    while True:
        with lock:
            if remaining[0] == 0:
                break
        if not any(t.is_alive() for t in threads):  # every device gone: record what is left as failed
            while True:
                try:
                    job = pending.get_nowait()
                except queue.Empty:
                    break
                reasons = "; ".join(why for why in [*job.errors, last_open_error[0]][-3:] if why)
                finish(job, Record(job.workload, (), "rpc", error=f"no device under key {rpc.device_key!r} "
                                   f"answered: {reasons[-450:] or 'no worker left'}"))
            break
        time.sleep(0.1)
    bar.close()
    return _save_best(store, tasks, rpc.device_key, compile_target, database, result)


def _database_path(database: str | Path | None, compile_target) -> Path:
    return Path(database) if database is not None else compile_target.user_database


def _save_best(store, tasks, device: str, compile_target, database, result: TuneResult) -> TuneResult:
    """Put the fastest measured config of each task on ``device`` into the tuning database (merged into what the
    file holds) and save it atomically."""
    from .schedules.registry import KernelConfig
    from .schedules.tuning import TuningDatabase

    db_path = _database_path(database, compile_target)
    db = TuningDatabase.load(db_path)
    by_task: dict = {}
    for rec in store.load():
        if rec.error is None and rec.workload.device == device:
            by_task.setdefault(_task_key(rec.workload), []).append(rec)
    for work in tasks:
        recs = by_task.get(work.key())
        if not recs:
            continue
        best = min(recs, key=lambda r: r.cost)
        knobs = dict(best.workload.knobs)
        config = KernelConfig(**{k: (bool(v) if k in ("use_dot", "parallel") else v) for k, v in knobs.items()})
        if best.instructions is not None:  # emulated: a count, stored and reported as such
            db.put(work, compile_target, config, emulated_instructions=best.instructions)
            result.best[work.key()] = (config.to_dict(), best.instructions)
            result.unit = best.unit
        else:
            db.put(work, compile_target, config, best.latency_ms * 1e3)
            result.best[work.key()] = (config.to_dict(), best.latency_ms * 1e3)
    result.database_path = db.save(db_path)
    return result


#: The device name of records measured on this machine (as :mod:`tvm_mp.measure.local` writes them).
LOCAL_DEVICE = "host"


def _tune_local(mod, plan, compile_target, trials: int, records, database, seed: int, number: int, repeat: int,
                progress: bool) -> TuneResult:
    """:func:`tune` on this machine: each job built and timed here, in order; a candidate whose output differs from
    the default config's on the same operands is recorded as failed (a schedule bug), never chosen."""
    from .measure.records import Record, RecordStore
    from .schedules.registry import lookup
    from .schedules.tuning import measure_kernel

    if not compile_target.is_host:
        raise TuneError(f"tuning for {compile_target} needs the device: give rpc=RPCConfig(...) (tvm-mp tune "
                        "--rpc-tracker HOST:PORT --key KEY), or tune target host (or aarch64, counted under qemu)")
    if number < 1 or repeat < 1:
        raise TuneError(f"number and repeat must be >= 1, got {number} and {repeat}")
    store = RecordStore(records)
    tasks = plan_tasks(mod, plan)
    result = TuneResult(len(tasks), 0, records_path=Path(records))
    todo = _todo(tasks, compile_target, trials, seed, store, LOCAL_DEVICE, result)
    bar = _progress(len(todo), progress)
    expected: dict = {}  # task key -> the default config's output
    meta = {"key": LOCAL_DEVICE, "number": number, "repeat": repeat}
    tvm_target = compile_target.tvm_target
    for work, config, workload in todo:
        default = lookup(work.op, work.kind, tvm_target).default(work, tvm_target)
        try:
            if work.key() not in expected and config != default:  # the default config was measured before
                expected[work.key()] = measure_kernel(work, default, tvm_target, 1, 1, np.random.default_rng(1))[1]
            samples_us, out = measure_kernel(work, config, tvm_target, repeat, number, np.random.default_rng(1))
            if config == default:  # the first job of a task: its output is what the others must give
                expected[work.key()] = out
        except Exception as err:  # a knob combination the schedule cannot build: a failed record
            record = Record(workload, (), "local", error=f"build: {_tvm.error_line(err)}")
        else:
            if np.array_equal(out, expected[work.key()]):
                record = Record(workload, tuple(t / 1e3 for t in samples_us), "local", meta=meta)
            else:
                record = Record(workload, (), "local", error="output differs from the default config's: a "
                                "schedule bug")
        store.append(record)
        result.count(record)
        bar.update(1)
    bar.close()
    return _save_best(store, tasks, LOCAL_DEVICE, compile_target, database, result)


def _tune_emulated(mod, plan, compile_target, trials: int, records, database, seed: int, progress: bool
                   ) -> TuneResult:
    """:func:`tune` for an aarch64 target without a device: each job cross-compiled, run once under qemu-aarch64
    and counted (emulated instructions); a candidate whose output differs from the default config's is recorded
    as failed, never chosen."""
    from .deploy import emulate
    from .measure.emulated import EMULATED_DEVICE
    from .measure.records import EMULATED_UNIT, Record, RecordStore
    from .schedules.registry import lookup
    from .schedules.tuning import accumulator_kernel

    compile_target.check_cross_compiler()
    emulate.require(emulate.QEMU, emulate.HOST_CC)  # one line naming the Debian package, before any job
    store = RecordStore(records)
    tasks = plan_tasks(mod, plan)
    result = TuneResult(len(tasks), 0, records_path=Path(records), unit=EMULATED_UNIT)
    todo = _todo(tasks, compile_target, trials, seed, store, EMULATED_DEVICE, result)
    bar = _progress(len(todo), progress)
    tvm_target = compile_target.tvm_target
    expected: dict = {}
    meta = {"key": EMULATED_DEVICE, "basis": emulate.BASIS}

    def run(work, config, directory: Path):
        func, operands = accumulator_kernel(work, config, tvm_target, np.random.default_rng(1))
        directory.mkdir(parents=True, exist_ok=True)
        lib = compile_target.export_library(_tvm.build(tvm.IRModule({"k": func}), tvm_target), directory / "k.so")
        out = operands[-1]
        return emulate.count_kernel(lib, "k", operands[:-1], out.shape, out.dtype, directory)

    with tempfile.TemporaryDirectory(prefix="tvm_mp_tune_qemu_") as tmp:
        for index, (work, config, workload) in enumerate(todo):
            default = lookup(work.op, work.kind, tvm_target).default(work, tvm_target)
            try:
                if work.key() not in expected and config != default:
                    expected[work.key()] = run(work, default, Path(tmp) / f"d{index}")[1]
                counts, out = run(work, config, Path(tmp) / f"j{index}")
                if config == default:
                    expected[work.key()] = out
            except Error:  # a missing tool or plugin: stop with its one line (records measured so far kept)
                raise
            except Exception as err:  # a knob combination the schedule cannot build: a failed record
                record = Record(workload, (), "emulator", error=f"build: {_tvm.error_line(err)}")
            else:
                if np.array_equal(out, expected[work.key()]):
                    record = Record(workload, (), "emulator", meta=meta, instructions=counts.total)
                else:
                    record = Record(workload, (), "emulator", error="output differs from the default config's: a "
                                    "schedule bug")
            store.append(record)
            result.count(record)
            bar.update(1)
    bar.close()
    return _save_best(store, tasks, EMULATED_DEVICE, compile_target, database, result)


def _task_key(workload) -> str:
    from .schedules.registry import ConvWorkload

    return ConvWorkload(workload.op, workload.kind, workload.w_bits, workload.a_bits, workload.input_shape,
                        workload.weight_shape, workload.params).key()


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _progress(total: int, enabled: bool):
    if not show_progress(enabled) or total == 0:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc="tvm-mp tune", unit="job")
