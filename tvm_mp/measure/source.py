"""The common interface of measurement sources, the timing settings, and the accelerator simulator as a source.

Every source has a ``device`` key and ``measure_iter(workloads)`` yielding one :class:`Record` per workload, in
order (``measure`` returns them as a list). Sources do not raise for a workload that fails to build or run: its
record carries the error, so a long collection goes on and never retries it. :func:`measure_into` appends each
record to a :class:`~tvm_mp.measure.records.RecordStore` as soon as it is measured.

Sources: :class:`~tvm_mp.measure.local.LocalSource` (this host), :class:`~tvm_mp.measure.rpc.RPCSource` (a device
over TVM RPC) and :class:`SimulatorSource` (the accelerator simulator: cycles -> latency, events -> energy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping, Protocol, Sequence, runtime_checkable

from ..cost_models.base import CostModelError, Workload
from ..errors import UnsupportedError
from .records import Record, RecordStore


@dataclass(frozen=True)
class TimingConfig:
    """How a kernel is timed with TVM's ``time_evaluator``.

    ``warmup_runs`` untimed calls first; then ``number`` is chosen so one repeat lasts at least ``min_repeat_ms``
    (at most ``max_number`` calls), and ``repeat`` repeats give the samples (median and spread in the record).
    On a shared machine other processes only ever add time: when the samples' interquartile range exceeds
    ``max_rel_spread`` of their median, the timing is repeated (at most ``max_attempts`` times) and the attempt
    with the lowest median is kept. ``seed`` seeds the random inputs (values do not change the work of these
    kernels, only their result).

    ``clock``: "wall" is ``time_evaluator``'s own wall-clock result; "cpu" is the CPU time of the calling thread
    around each ``time_evaluator`` repeat, which other processes sharing the cores cannot inflate (on a loaded
    2-core machine wall time was 2-3x the quiet figure while thread CPU time stayed within a few %); it is only
    valid when the TVM runtime runs kernels on the calling thread alone (one runtime thread). "auto" picks "cpu"
    for a local single-threaded runtime, "wall" otherwise (always "wall" over RPC).

    Reference kernel (local measurements, ``reference=True``): the CPU itself changes speed (on this virtual
    machine a fixed compute-bound kernel took 1.0x to 1.7x its fastest CPU time, for minutes at a stretch, with
    tight samples, even on an otherwise idle machine -- the host's other tenants). Just before and just after each
    workload, a small fixed kernel (:data:`~tvm_mp.measure.local.REFERENCE_WORKLOAD`) is timed and both times are
    stored in the record (``meta["reference_ms"]``), so the record can be put on one speed scale later
    (:func:`~tvm_mp.measure.records.normalize_latency`: measured x fastest reference / this record's reference;
    on 30 workloads timed five times each, minutes apart, this cut the spread between repeats from 14 % to 7 %
    (coefficient of variation)). ``reference_waits`` > 0 also waits (0.2 s, at most that many times) while the
    reference is more than ``reference_tolerance`` slower than the fastest it has been in this process.
    """

    warmup_runs: int = 1
    repeat: int = 7
    min_repeat_ms: float = 5.0
    max_number: int = 10_000
    max_rel_spread: float = 0.1
    max_attempts: int = 3
    clock: str = "auto"
    reference: bool = True
    reference_tolerance: float = 0.05
    reference_waits: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.reference_tolerance < 0 or self.reference_waits < 0:
            raise CostModelError("TimingConfig needs reference_tolerance >= 0 and reference_waits >= 0")
        if self.clock not in ("auto", "wall", "cpu"):
            raise CostModelError(f"TimingConfig.clock={self.clock!r}: use 'auto', 'wall' or 'cpu'")
        if (self.warmup_runs < 0 or self.repeat < 1 or self.max_number < 1 or self.min_repeat_ms < 0
                or self.max_attempts < 1 or self.max_rel_spread < 0):
            raise CostModelError("TimingConfig needs warmup_runs >= 0, repeat >= 1, max_number >= 1, "
                                 "min_repeat_ms >= 0, max_attempts >= 1 and max_rel_spread >= 0")


@runtime_checkable
class MeasureSource(Protocol):
    """What a measurement source offers."""

    name: str
    device: str

    def measure_iter(self, workloads: Iterable[Workload]) -> Iterator[Record]:
        ...

    def measure(self, workloads: Sequence[Workload]) -> list[Record]:
        ...


def check_device(workload: Workload, device: str) -> None:
    if workload.device != device:
        raise CostModelError(f"workload is for device {workload.device!r} but this source measures {device!r}: "
                             f"make it with device={device!r} (Workload.replace(device=...))")


def measure_into(source, workloads: Iterable[Workload], store: RecordStore, skip_existing: bool = True,
                 progress: Callable[[Record], None] | None = None) -> list[Record]:
    """Measure ``workloads`` with ``source``, appending each record to ``store`` as soon as it exists.

    With ``skip_existing``, workloads whose key is already in the store are not measured again (so an
    interrupted collection resumes where it stopped).
    """
    todo = list(workloads)
    if skip_existing:
        done = store.keys()
        todo = [w for w in todo if w.key not in done]
    out = []
    for record in source.measure_iter(todo):
        store.append(record)
        out.append(record)
        if progress is not None:
            progress(record)
    return out


# ---- the accelerator simulator as a source ---------------------------------------------------------------------
@dataclass(frozen=True)
class SimulatedLayer:
    """What a simulator reports for one layer: cycles at a clock, energy (µJ) and event counts."""

    cycles: int
    clock_mhz: float
    energy_uj: float
    events: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.cycles < 1 or self.clock_mhz <= 0 or self.energy_uj < 0:
            raise CostModelError("a simulated layer needs cycles >= 1, clock_mhz > 0 and energy_uj >= 0")

    @property
    def latency_ms(self) -> float:
        return self.cycles / (self.clock_mhz * 1e3)


@runtime_checkable
class LayerSimulator(Protocol):
    """An accelerator simulator that runs one layer workload (the adapter the accelerator package fills in)."""

    def simulate_layer(self, workload: Workload) -> SimulatedLayer:
        ...


class SimulatorSource:
    """The accelerator simulator as a measurement source: exact cycles and simulated energy, one sample each."""

    name = "simulator"

    def __init__(self, simulator: LayerSimulator, device: str = "accel-sim"):
        if not callable(getattr(simulator, "simulate_layer", None)):
            raise CostModelError("SimulatorSource needs an object with simulate_layer(workload) -> SimulatedLayer")
        self.simulator = simulator
        self.device = device

    def measure_iter(self, workloads: Iterable[Workload]) -> Iterator[Record]:
        for wl in workloads:
            check_device(wl, self.device)
            try:
                sim = self.simulator.simulate_layer(wl)
            except Exception as err:  # a failing layer becomes an error record; the batch goes on
                yield Record(wl, (), "simulator", error=f"{type(err).__name__}: {err}")
                continue
            yield Record(wl, (sim.latency_ms,), "simulator", sim.energy_uj, "simulated", dict(sim.events),
                         {"cycles": int(sim.cycles), "clock_mhz": sim.clock_mhz})

    def measure(self, workloads: Sequence[Workload]) -> list[Record]:
        return list(self.measure_iter(workloads))


def accel_simulator(**options) -> LayerSimulator:
    """The simulator of ``tvm_mp.accel`` behind :class:`LayerSimulator`.

    The accelerator package exposes ``simulate_layer(workload, **options)`` (or an object with that method
    as ``layer_simulator(**options)``); until it does, this raises with the reason.
    """
    try:
        from .. import accel
    except ImportError as err:  # pragma: no cover - the package exists in the tree
        raise UnsupportedError(f"the accelerator package cannot be imported: {err}") from None
    factory = getattr(accel, "layer_simulator", None)
    if factory is not None:
        return factory(**options)
    function = getattr(accel, "simulate_layer", None)
    if function is not None:
        class _Adapter:
            def simulate_layer(self, workload: Workload) -> SimulatedLayer:
                result = function(workload, **options)
                if isinstance(result, SimulatedLayer):
                    return result
                return SimulatedLayer(int(result["cycles"]), float(result["clock_mhz"]),
                                      float(result["energy_uj"]), dict(result.get("events", {})))

        return _Adapter()
    raise UnsupportedError("tvm_mp.accel does not expose a layer simulator yet (layer_simulator() or "
                           "simulate_layer(workload)); accelerator records cannot be produced")
