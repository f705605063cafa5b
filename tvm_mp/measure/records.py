"""Measurement records and their store: one append-only JSON-lines file (never pickle).

A :class:`Record` is a :class:`~tvm_mp.cost_models.base.Workload` with what was measured: latency samples (one
per timing repeat; median and spread derived), and where known energy (simulated or measured) and event counts.

The store is safe against the ways such files break:

* **one write per record**: each record is one line, written with a single ``os.write`` on an ``O_APPEND``
  descriptor, so it reaches the file (and other readers) at once; ``fsync=True`` also forces it to disk;
* **readable while written**: a reader takes complete lines only; a last line without its newline is a record
  still being written, or the remains of a writer that was killed -- skipped with a warning, never fatal;
  corrupt lines elsewhere are skipped with a warning too;
* **appending after a crash** first ends a partial last line, so the next record never merges into it;
* **deduplicated by key on load**: a workload measured twice keeps its newest record.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .._files import write_atomic
from ..cost_models.base import CostModelError, Workload, target_family
from ..cost_models.whole_model import RuntimeCalls
from ..errors import Error

#: Version of the line format; readers refuse lines from a newer version with a message.
FORMAT_VERSION = 1
SOURCES = ("local", "rpc", "simulator", "emulator")
#: The unit of records measured under emulation (dynamic instruction counts, not times).
EMULATED_UNIT = "emulated instructions"
ENERGY_BASES = ("simulated", "measured")



def _line(data: dict) -> bytes:
    """One record line: compact JSON with sorted keys."""
    return (json.dumps(data, separators=(",", ":"), sort_keys=True) + "\n").encode()


def _check_line(data) -> None:
    """A record line's JSON is an object of a format version this tvm-mp reads."""
    if not isinstance(data, (dict, Mapping)):
        raise RecordError("a record line must be a JSON object")
    version = data.get("v", FORMAT_VERSION)
    if version > FORMAT_VERSION:
        raise RecordError(f"record format v{version} is newer than this tvm-mp (v{FORMAT_VERSION}): upgrade tvm-mp")

class RecordError(Error):
    """A record or a records file cannot be used as given."""


class PartialRecordWarning(UserWarning):
    """Lines of a records file were skipped (a writer was interrupted, or is still writing)."""


@dataclass(frozen=True)
class Record:
    """One measured workload.

    ``latency_samples_ms``: one value per timing repeat (each the mean over ``number`` runs), at least one unless
    ``error`` says why the measurement failed. ``energy_uj`` with ``energy_basis`` "simulated" or "measured" when
    the source knows it (never for CPU energy, which is modelled, not measured). ``events``: event counts the
    source reports (e.g. the simulator's). ``meta``: how it was measured (threads, number, repeat, origins...).

    ``instructions``: for source "emulator" (``qemu-aarch64`` with tvm-mp's counting plugin), the dynamic
    instruction count of one call instead of latency samples; such a record's :attr:`unit` is
    ``"emulated instructions"`` and its :attr:`cost` is the count (never a time).
    """

    workload: Workload
    latency_samples_ms: tuple[float, ...]
    source: str
    energy_uj: float | None = None
    energy_basis: str | None = None
    events: Mapping[str, float] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    instructions: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.workload, Workload):
            raise RecordError("Record.workload must be a tvm_mp.cost_models.base.Workload")
        samples = tuple(float(s) for s in self.latency_samples_ms)
        object.__setattr__(self, "latency_samples_ms", samples)
        if self.source not in SOURCES:
            raise RecordError(f"Record.source={self.source!r}: use one of {', '.join(SOURCES)}")
        if self.instructions is not None:
            if (isinstance(self.instructions, bool) or not isinstance(self.instructions, (int, np.integer))
                    or self.instructions <= 0):
                raise RecordError(f"Record.instructions={self.instructions!r} must be a whole number > 0")
            if samples or self.source != "emulator":
                raise RecordError("instruction counts come from source 'emulator' and replace latency samples")
            object.__setattr__(self, "instructions", int(self.instructions))
        elif self.error is None:
            if not samples:
                raise RecordError("a successful record needs at least one latency sample (or an error message)")
            if any(not math.isfinite(s) or s <= 0 for s in samples):
                raise RecordError(f"latency samples must be finite and > 0 ms, got {samples}")
        if (self.energy_uj is None) != (self.energy_basis is None):
            raise RecordError("give energy_uj and energy_basis together (basis 'simulated' or 'measured')")
        if self.energy_uj is not None:
            if self.energy_basis not in ENERGY_BASES:
                raise RecordError(f"Record.energy_basis={self.energy_basis!r}: use one of {', '.join(ENERGY_BASES)}; "
                                  "modelled CPU energy is computed by the cost models, never stored as measured")
            if not math.isfinite(self.energy_uj) or self.energy_uj < 0:
                raise RecordError(f"Record.energy_uj={self.energy_uj!r} must be finite and >= 0")
        if self.events is not None:
            object.__setattr__(self, "events", {str(k): float(v) for k, v in self.events.items()})
        if not isinstance(self.meta, dict):
            object.__setattr__(self, "meta", dict(self.meta))

    @property
    def key(self) -> str:
        return self.workload.key

    @property
    def latency_ms(self) -> float:
        """Median of the samples (NaN for an emulated record: it has no time)."""
        return float(np.median(self.latency_samples_ms)) if self.latency_samples_ms else float("nan")

    @property
    def unit(self) -> str:
        """What :attr:`cost` counts: ``"ms"`` or ``"emulated instructions"``."""
        return EMULATED_UNIT if self.instructions is not None else "ms"

    @property
    def cost(self) -> float:
        """What the cost models train on, in :attr:`unit`: the median latency (ms) or the instruction count."""
        return float(self.instructions) if self.instructions is not None else self.latency_ms

    @property
    def reference_ms(self) -> float | None:
        """The reference kernel's time around this measurement (geometric mean of before and after), if timed."""
        ref = self.meta.get("reference_ms")
        return float(np.sqrt(ref[0] * ref[1])) if ref else None

    @property
    def latency_spread_ms(self) -> float:
        """Interquartile range of the samples (0 for a single sample)."""
        if len(self.latency_samples_ms) < 2:
            return 0.0
        q1, q3 = np.percentile(self.latency_samples_ms, [25, 75])
        return float(q3 - q1)

    def to_dict(self) -> dict:
        data: dict = {"v": FORMAT_VERSION, "workload": self.workload.to_dict(), "source": self.source,
                      "latency_samples_ms": [float(f"{s:.6g}") for s in self.latency_samples_ms]}
        if self.energy_uj is not None:
            data["energy_uj"] = self.energy_uj
            data["energy_basis"] = self.energy_basis
        if self.events is not None:
            data["events"] = {k: float(f"{v:.6g}") for k, v in self.events.items()}
        if self.meta:
            data["meta"] = dict(self.meta)
        if self.error is not None:
            data["error"] = self.error
        if self.instructions is not None:
            data["instructions"] = self.instructions
            data["unit"] = EMULATED_UNIT
        return data

    def to_line(self) -> bytes:
        return _line(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping, params_cache: dict | None = None) -> "Record":
        _check_line(data)
        if data.get("kind", "layer") != "layer":
            raise RecordError(f"a {data.get('kind')!r} record, not a layer record: read it with "
                              "RecordStore(path, ModelRecord)")
        try:
            workload = Workload.from_dict(data["workload"], params_cache)
            return cls(workload, tuple(data.get("latency_samples_ms", ())), data["source"], data.get("energy_uj"),
                       data.get("energy_basis"), data.get("events"), data.get("meta", {}), data.get("error"),
                       data.get("instructions"))
        except KeyError as err:
            raise RecordError(f"record field {err.args[0]!r} is missing") from None
        except CostModelError as err:
            raise RecordError(str(err)) from None


def _positive_times(values, name: str, allow_zero: bool = False) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise RecordError(f"ModelRecord.{name} must be numbers (ms), got {values!r}") from None
    if any(not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero) for v in out):
        raise RecordError(f"ModelRecord.{name} must be finite and {'>= 0' if allow_zero else '> 0'} ms")
    return out


@dataclass(frozen=True)
class ModelRecord:
    """One built model (a model at a plan) timed as it runs: the whole inference and each call inside it.

    ``calls``: the calls one inference makes (:class:`~tvm_mp.cost_models.whole_model.RuntimeCalls`: layer
    kernels with their workloads, quantize calls, other operators); ``call_ms``: each call's median time inside the
    running model, in the same order (``call_spread_ms``: interquartile ranges); ``whole_samples_ms``: the whole
    inference, one value per timing round. ``plan``: layer name -> precision text (``"w4a8"``). ``meta``: how it
    was measured (clock, rounds, runs, the reference kernel's times ``reference_ms``, the host).
    """

    model: str
    plan: Mapping[str, str]
    calls: RuntimeCalls
    call_ms: tuple[float, ...]
    whole_samples_ms: tuple[float, ...]
    source: str = "local"
    call_spread_ms: tuple[float, ...] = ()
    target: str = "llvm"
    device: str = "host"
    meta: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise RecordError("ModelRecord.model must name the model")
        if not isinstance(self.plan, Mapping) or not self.plan:
            raise RecordError("ModelRecord.plan must map layer names to precision texts such as 'w4a4'")
        object.__setattr__(self, "plan", {str(k): str(v) for k, v in sorted(self.plan.items())})
        if not isinstance(self.calls, RuntimeCalls):
            raise RecordError("ModelRecord.calls must be RuntimeCalls")
        if self.source not in SOURCES:
            raise RecordError(f"ModelRecord.source={self.source!r}: use one of {', '.join(SOURCES)}")
        call_ms = _positive_times(self.call_ms, "call_ms", allow_zero=True)
        whole = _positive_times(self.whole_samples_ms, "whole_samples_ms")
        spread = _positive_times(self.call_spread_ms, "call_spread_ms", allow_zero=True)
        object.__setattr__(self, "call_ms", call_ms)
        object.__setattr__(self, "whole_samples_ms", whole)
        object.__setattr__(self, "call_spread_ms", spread)
        if self.error is None:
            if not whole:
                raise RecordError("a successful model record needs at least one whole-model sample")
            if len(call_ms) != len(self.calls.calls) or (spread and len(spread) != len(call_ms)):
                raise RecordError(f"ModelRecord has {len(self.calls.calls)} calls but {len(call_ms)} call times "
                                  f"(and {len(spread)} spreads)")
        if not isinstance(self.meta, dict):
            object.__setattr__(self, "meta", dict(self.meta))

    @property
    def plan_text(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.plan.items())

    @property
    def key(self) -> str:
        return f"model;{self.model};{self.plan_text};{self.target};{self.device}"

    @property
    def latency_ms(self) -> float:
        """Median of the whole-model samples."""
        return float(np.median(self.whole_samples_ms)) if self.whole_samples_ms else float("nan")

    @property
    def latency_spread_ms(self) -> float:
        if len(self.whole_samples_ms) < 2:
            return 0.0
        q1, q3 = np.percentile(self.whole_samples_ms, [25, 75])
        return float(q3 - q1)

    @property
    def reference_ms(self) -> float | None:
        """The reference kernel's time around this model: the faster of before and after (other processes only
        ever add time, and a model is timed in about a second, so the faster one is the CPU's speed then)."""
        ref = self.meta.get("reference_ms")
        return float(min(ref)) if ref else None

    def scaled(self, factor: float) -> "ModelRecord":
        """Every time multiplied by ``factor`` (a CPU-speed correction), noted in ``meta["speed_factor"]``."""
        return replace(self, call_ms=tuple(t * factor for t in self.call_ms),
                       call_spread_ms=tuple(t * factor for t in self.call_spread_ms),
                       whole_samples_ms=tuple(t * factor for t in self.whole_samples_ms),
                       meta={**self.meta, "speed_factor": round(float(factor), 4)})

    def layer_records(self) -> list[Record]:
        """One :class:`Record` per layer kernel: its workload (epilogue as built) and its time inside the model
        (what a per-layer cost model of models as built trains on). ``meta["origins"]`` is ``model/layer``."""
        out = []
        meta = {k: v for k, v in self.meta.items() if k in ("reference_ms", "speed_factor", "cpu", "threads", "tvm",
                                                             "clock")}
        for call, ms in zip(self.calls.calls, self.call_ms):
            if call.role != "layer" or ms <= 0:
                continue
            out.append(Record(call.workload, (ms,), self.source,
                              meta={**meta, "context": "model", "model": self.model, "plan": self.plan_text,
                                    "origins": [f"{self.model}/{call.layer}"]}))
        return out

    def to_dict(self) -> dict:
        data: dict = {"v": FORMAT_VERSION, "kind": "model", "model": self.model, "plan": dict(self.plan),
                      "calls": self.calls.to_dict(), "call_ms": [float(f"{t:.6g}") for t in self.call_ms],
                      "whole_samples_ms": [float(f"{t:.6g}") for t in self.whole_samples_ms],
                      "source": self.source, "target": self.target, "device": self.device}
        if self.call_spread_ms:
            data["call_spread_ms"] = [float(f"{t:.4g}") for t in self.call_spread_ms]
        if self.meta:
            data["meta"] = dict(self.meta)
        if self.error is not None:
            data["error"] = self.error
        return data

    def to_line(self) -> bytes:
        return _line(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping, params_cache: dict | None = None) -> "ModelRecord":
        _check_line(data)
        if data.get("kind") != "model":
            raise RecordError("not a model record (kind 'model'): read layer records with RecordStore(path)")
        try:
            return cls(data["model"], data["plan"], RuntimeCalls.from_dict(data["calls"], params_cache),
                       tuple(data.get("call_ms", ())), tuple(data.get("whole_samples_ms", ())),
                       data.get("source", "local"), tuple(data.get("call_spread_ms", ())),
                       data.get("target", "llvm"), data.get("device", "host"), data.get("meta", {}), data.get("error"))
        except KeyError as err:
            raise RecordError(f"model record field {err.args[0]!r} is missing") from None
        except CostModelError as err:
            raise RecordError(str(err)) from None


def normalize_models(records: Iterable[ModelRecord], nominal_ms: float | None = None) -> list[ModelRecord]:
    """Model records on one CPU-speed scale (as :func:`normalize_latency` for layer records): every time x
    ``nominal_ms`` / the record's reference time; ``nominal_ms`` defaults to a low percentile of the records'."""
    records = list(records)
    nominal = nominal_ms if nominal_ms is not None else nominal_reference_ms(records)
    return [r if r.reference_ms is None or nominal is None else r.scaled(nominal / r.reference_ms) for r in records]


#: Percentile of the reference kernel's times taken as the CPU's nominal (fast) speed by :func:`normalize_latency`.
NOMINAL_PERCENTILE = 5.0


def nominal_reference_ms(records: Iterable[Record | ModelRecord]) -> float | None:
    """The reference time that stands for the CPU's fast speed: a low percentile over ``records`` (None when no
    record carries reference timings)."""
    refs = [r.reference_ms for r in records if r.reference_ms is not None]
    return float(np.percentile(refs, NOMINAL_PERCENTILE)) if refs else None


def normalize_latency(records: Iterable[Record], nominal_ms: float | None = None) -> list[Record]:
    """Records put on one CPU-speed scale: samples x ``nominal_ms`` / the record's reference time.

    A host whose speed changes over minutes (shared or virtual machines) makes the same kernel measure up to
    1.7x apart; the reference kernel timed around each measurement (see
    :class:`~tvm_mp.measure.source.TimingConfig`) says how fast the CPU ran then. ``nominal_ms`` defaults to
    :func:`nominal_reference_ms` of these records. Records without reference timings (other sources, older
    records) are returned unchanged; each scaled record notes its factor in ``meta["speed_factor"]``.
    """
    records = list(records)
    nominal = nominal_ms if nominal_ms is not None else nominal_reference_ms(records)
    out = []
    for r in records:
        ref = r.reference_ms
        if ref is None or nominal is None or not r.latency_samples_ms:
            out.append(r)
            continue
        factor = nominal / ref
        out.append(replace(r, latency_samples_ms=tuple(x * factor for x in r.latency_samples_ms),
                           meta={**r.meta, "speed_factor": round(factor, 4)}))
    return out


class RecordStore:
    """An append-only JSON-lines file of :class:`Record` (see the module docstring for its guarantees), or of
    :class:`ModelRecord` with ``record_type=ModelRecord``."""

    def __init__(self, path: str | Path, fsync: bool = False, record_type: type | None = None):
        self.path = Path(path)
        self.fsync = fsync
        self.record_type = record_type or Record
        if self.record_type not in (Record, ModelRecord):
            raise RecordError("RecordStore stores Record or ModelRecord objects")

    def _open_for_append(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size:
                with open(self.path, "rb") as fh:
                    fh.seek(size - 1)
                    if fh.read(1) != b"\n":  # a writer died mid-line: end that line so ours stays whole
                        _write_all(fd, b"\n")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def append(self, record: Record) -> None:
        """Append one record: one ``os.write`` of one whole line (and an fsync if the store was asked to)."""
        self.extend([record])

    def extend(self, records: Iterable[Record]) -> int:
        """Append records, each as one write of one line; returns how many were written."""
        fd = self._open_for_append()
        count = 0
        try:
            for record in records:
                if not isinstance(record, self.record_type):
                    raise RecordError(f"this RecordStore stores {self.record_type.__name__} objects, got "
                                      f"{type(record).__name__}")
                _write_all(fd, record.to_line())
                if self.fsync:
                    os.fsync(fd)
                count += 1
        finally:
            os.close(fd)
        return count

    def load(self, dedup: bool = True, include_errors: bool = False) -> list[Record]:
        """Every complete record (newest per key when ``dedup``), skipping partial/corrupt lines with a warning."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except IsADirectoryError:
            raise RecordError(f"records path {self.path} is a directory: give a records file, e.g. "
                              f"{self.path / 'records.jsonl'}") from None
        except OSError as err:
            raise RecordError(f"cannot read records file {self.path}: {err.strerror or err}") from None
        lines = data.split(b"\n")
        tail = lines.pop()  # after the last newline: b"" when the file ends cleanly
        bad: list[int] = []
        records: dict[str, Record] | list[Record] = {} if dedup else []
        params_cache: dict = {}
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = self.record_type.from_dict(json.loads(line), params_cache)
            except (ValueError, RecordError, Error, TypeError, AttributeError, KeyError, RecursionError) as err:
                if isinstance(err, RecordError) and "newer than this tvm-mp" in str(err):
                    raise
                bad.append(number)
                continue
            if record.error is not None and not include_errors:
                continue
            if dedup:
                records[record.key] = record
            else:
                records.append(record)
        if tail.strip():
            warnings.warn(f"{self.path}: skipped a partial last line ({len(tail)} bytes; a writer was interrupted "
                          "or is still writing)", PartialRecordWarning, stacklevel=2)
        if bad:
            shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
            warnings.warn(f"{self.path}: skipped {len(bad)} unreadable line(s) (line {shown})", PartialRecordWarning,
                          stacklevel=2)
        return list(records.values()) if dedup else list(records)

    def compact(self) -> int:
        """Rewrite the file with one line per key (the newest), atomically (temporary file + rename).

        Partial or unreadable lines are dropped (with the load's warning). Returns the number of records kept.
        Do not compact while another process appends to the same file: its new lines could be lost.
        """
        records = self.load(include_errors=True)
        write_atomic(self.path, b"".join(record.to_line() for record in records), durable=True)
        return len(records)

    def keys(self) -> set[str]:
        """Keys of the records already stored (to skip measuring them again)."""
        return {r.key for r in self.load(include_errors=True)}


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def load_records(path: str | Path, device: str | None = None, target_families: Sequence[str] | None = None,
                 normalize: bool = True) -> list[Record]:
    """Successful and failed records of ``path`` (optionally one device / target families only), as the cost
    models train on them (:mod:`tvm_mp.cost_models.train`).

    ``normalize``: host timings are put on one CPU-speed scale with the reference kernel timed around each
    (:func:`normalize_latency`), which is what models train and are judged on.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = RecordStore(path).load()
    if not records and caught:
        raise CostModelError(f"{path} is not a records file: no line of it is a measurement record "
                             f"({len(caught)} warning(s), first: {caught[0].message})")
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if device is not None:
        records = [r for r in records if r.workload.device == device]
    if target_families is not None:
        records = [r for r in records if target_family(r.workload.target) in target_families]
    if not records:
        raise CostModelError(f"no usable records in {path}: run `tvm-mp cost-model collect` first")
    return normalize_latency(records) if normalize else records
