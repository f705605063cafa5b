"""Time a built model as it runs: the whole inference, and every call inside it (:class:`ModelRecord`).

The kernels are timed where they run -- inside the model's VM, with the edges, epilogues and cache state the
model gives them -- not rebuilt on their own. One inference is run with the VM's instrument hook, which is called
just before and just after every call the VM makes; the CPU time between the two is the call's time plus the
hook's own cost, which is measured on the cheapest VM instruction (``vm.builtin.null_value``) of the same runs
and subtracted. The whole inference is timed without the hook (``time_evaluator`` of ``main``, two call counts
differenced so the evaluator's own fixed cost drops out).

Clock: CPU time of the calling thread (``time.thread_time``), which other processes on a shared machine cannot
inflate the way they inflate wall time; it needs the TVM runtime on one thread (``TVM_NUM_THREADS=1``; with more
threads the wall clock is used, see :class:`InModelTiming`). Rounds
interleave the whole-model timing with hooked runs, so both see the same machine; the reference kernel of
:mod:`tvm_mp.measure.local` is timed before and after, so records can be put on one CPU-speed scale
(:func:`~tvm_mp.measure.records.normalize_models`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .. import _tvm
from ..cost_models.base import CostModelError
from ..cost_models.whole_model import RuntimeCalls, runtime_calls
from .records import ModelRecord


@dataclass(frozen=True)
class InModelTiming:
    """``rounds`` rounds, each one whole-model timing (at least ``min_whole_ms`` of inferences) and
    ``runs_per_round`` hooked inferences; ``warmup_runs`` inferences first; ``reference``: time the reference
    kernel before and after. ``clock``: "cpu" (the calling thread's CPU time; needs one TVM thread), "wall", or
    "auto" ("cpu" with one TVM thread, else "wall"). ``settle_waits``: before timing, wait (0.2 s, at most that
    many times) while the reference kernel is more than ``settle_tolerance`` slower than the fastest it has been
    in this process -- on a shared machine other tenants slow the CPU down for minutes at a time, and even its
    CPU clock then runs slow."""

    rounds: int = 9
    runs_per_round: int = 6
    min_whole_ms: float = 20.0
    warmup_runs: int = 3
    reference: bool = True
    clock: str = "auto"
    settle_waits: int = 25
    settle_tolerance: float = 0.1

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.runs_per_round < 1 or self.min_whole_ms <= 0 or self.warmup_runs < 0:
            raise CostModelError("InModelTiming needs rounds >= 1, runs_per_round >= 1, min_whole_ms > 0 and "
                                 "warmup_runs >= 0")
        if self.settle_waits < 0 or self.settle_tolerance < 0:
            raise CostModelError("InModelTiming needs settle_waits >= 0 and settle_tolerance >= 0")
        if self.clock not in ("auto", "cpu", "wall"):
            raise CostModelError(f"InModelTiming.clock={self.clock!r}: use 'auto', 'cpu' or 'wall'")

    def resolved_clock(self) -> str:
        if self.clock == "auto":
            return "cpu" if _tvm.runtime_threads() == 1 else "wall"
        if self.clock == "cpu" and _tvm.runtime_threads() != 1:
            raise CostModelError("the 'cpu' clock of in-model timing needs one TVM thread: run with "
                                 "TVM_NUM_THREADS=1, or use clock='wall'")
        return self.clock


def _layers_of(model) -> dict:
    """Layer name -> LayerInfo of the quantized layers of a compiled model."""
    from ..layers import annotated_layer_functions
    from ..quantize.qlayer import read_layer

    return {name: read_layer(func).info for name, (_, func) in
            annotated_layer_functions(model.quantized_module).items()}


def model_calls(model) -> RuntimeCalls:
    """The calls of a :class:`~tvm_mp.model.CompiledModel` built in this process (it needs ``model.lowered``)."""
    if model.lowered is None:
        raise CostModelError("this model was read back by tvm_mp.load and has no lowered module: compile it again")
    return runtime_calls(model.lowered, _layers_of(model), model.plan, model.target)


class _Hook:
    """The VM instrument: (CPU ns, symbol) of each call's start and end, for one inference at a time."""

    def __init__(self, clock: str):
        self.events: list = []
        self.clock = time.thread_time_ns if clock == "cpu" else time.perf_counter_ns

    def __call__(self, func, symbol, before, ret, *args):
        self.events.append((self.clock(), bool(before), str(symbol)))
        return 0

    def durations(self) -> list[tuple[str, float]]:
        """(symbol, ns) of each call of the last inference, in call order."""
        out, stack = [], []
        for t, before, sym in self.events:
            if before:
                stack.append((t, sym, len(out)))
                out.append(None)
            else:
                t0, s, slot = stack.pop()
                out[slot] = (s, float(t - t0))
        self.events.clear()
        return out


def _whole_ms(vm, dev, args, number: int, clock: str = "cpu") -> float:
    """ms of one inference: two evaluator calls (1 and ``number + 1`` inferences) timed and differenced, so the
    evaluator's own fixed cost (about 0.2 ms here) drops out."""
    now = time.thread_time if clock == "cpu" else time.perf_counter
    once = vm.time_evaluator("main", dev, number=1, repeat=1)
    many = vm.time_evaluator("main", dev, number=number + 1, repeat=1)
    t0 = now()
    once(*args)
    t1 = now()
    many(*args)
    t2 = now()
    return max((t2 - t1) - (t1 - t0), 1e-9) / number * 1e3


class InModelSource:
    """Times built models on this host (:meth:`measure`); keeps the reference kernel between models."""

    name = "local"

    def __init__(self, timing: InModelTiming | None = None):
        self.timing = timing or InModelTiming()
        self._reference = None
        self._host: dict | None = None

    def reference_ms(self, settle: bool = False) -> float | None:
        """The reference kernel's time now (None when ``timing.reference`` is off); ``settle``: first wait while
        the CPU runs slow (see :class:`InModelTiming`)."""
        import tvm

        if not self.timing.reference:
            return None
        if self._reference is None:
            from .local import _Reference
            from .source import TimingConfig

            self._reference = _Reference(TimingConfig(), tvm.cpu())
        if settle and self.timing.settle_waits:
            return self._reference.wait_for_nominal(self.timing.settle_tolerance, self.timing.settle_waits)
        return self._reference.time_ms()

    def measure(self, model, inputs: Sequence[np.ndarray], name: str, calls: RuntimeCalls | None = None,
                meta: dict | None = None) -> ModelRecord:
        """Time ``model`` (a host :class:`~tvm_mp.model.CompiledModel` from ``tvm_mp.compile``) on ``inputs``
        (one array per model input); ``name`` names the model in the record, ``meta`` is added to its meta."""
        import tvm

        from .local import host_description

        timing = self.timing
        if not model.target.is_host or model.executable is None:
            raise CostModelError(f"in-model timing runs models built for this machine; this one is for "
                                 f"{model.target}")
        clock = timing.resolved_clock()
        calls = calls or model_calls(model)
        dev = tvm.cpu()
        args = [_tvm.to_device(np.asarray(x), dev) for x in inputs]
        plain = _tvm.vm(model.executable, dev)
        hooked = _tvm.vm(model.executable, dev)
        hook = _Hook(clock)
        hooked.set_instrument(hook)
        main = hooked["main"]
        for _ in range(max(timing.warmup_runs, 1)):
            main(*args)
            plain["main"](*args)
            called = [s for s, _ in hook.durations() if not s.startswith("vm.builtin.")]
        expected = [c.func for c in calls.calls]
        if called != expected:
            raise CostModelError(f"the model called {called[:6]}... but its lowered module lists {expected[:6]}...: "
                                 "runtime_calls no longer matches tvm.compile; update "
                                 "tvm_mp._tvm.legalize_like_compile")
        ref_before = self.reference_ms(settle=True)
        number = _whole_number(plain, args, timing.min_whole_ms)
        per_call: list[list[float]] = [[] for _ in calls.calls]
        null_ns: list[float] = []
        whole: list[float] = []
        for _ in range(timing.rounds):
            whole.append(_whole_ms(plain, dev, args, number, clock))
            for _ in range(timing.runs_per_round):
                main(*args)
                k = 0
                for sym, ns in hook.durations():
                    if sym == "vm.builtin.null_value":
                        null_ns.append(ns)
                    elif not sym.startswith("vm.builtin."):
                        per_call[k].append(ns)
                        k += 1
        ref_after = self.reference_ms()
        hook_ns = float(np.median(null_ns)) if null_ns else 0.0
        call_ms, spread_ms = [], []
        for samples in per_call:
            ms = np.maximum(np.asarray(samples) - hook_ns, 0.0) / 1e6
            call_ms.append(float(np.median(ms)))
            q1, q3 = np.percentile(ms, [25, 75])
            spread_ms.append(float(q3 - q1))
        if self._host is None:
            self._host = host_description()
        info = {**self._host, "clock": clock, "rounds": timing.rounds, "runs_per_round": timing.runs_per_round,
                "whole_number": number, "hook_ns": round(hook_ns, 1), **(meta or {})}
        if ref_before is not None:
            info["reference_ms"] = [float(f"{ref_before:.6g}"), float(f"{ref_after:.6g}")]
        plan = {n: str(p) for n, p in model.plan.items()}
        return ModelRecord(name, plan, calls, tuple(call_ms), tuple(whole), "local", tuple(spread_ms),
                           model.target.cost_key, "host", info)

    def whole_ms(self, model, inputs: Sequence[np.ndarray], rounds: int | None = None) -> list[float]:
        """The whole-model time alone (ms, one value per round): e.g. to time a model again later."""
        import tvm

        dev = tvm.cpu()
        args = [_tvm.to_device(np.asarray(x), dev) for x in inputs]
        plain = _tvm.vm(model.executable, dev)
        for _ in range(max(self.timing.warmup_runs, 1)):
            plain["main"](*args)
        clock = self.timing.resolved_clock()
        number = _whole_number(plain, args, self.timing.min_whole_ms)
        return [_whole_ms(plain, dev, args, number, clock) for _ in range(rounds or self.timing.rounds)]


def _whole_number(vm, args, min_ms: float, most: int = 100_000) -> int:
    """Inferences per whole-model sample: enough for ``min_ms`` at the fastest of three single inferences (wall
    time: never shorter than the inference, so the count is never too large)."""
    main = vm["main"]
    once = []
    for _ in range(3):
        t0 = time.perf_counter()
        main(*args)
        once.append(time.perf_counter() - t0)
    return int(min(most, max(2, np.ceil(min_ms / 1e3 / max(min(once), 1e-7)))))


def measure_model(model, inputs: Sequence[np.ndarray], name: str, timing: InModelTiming | None = None,
                  calls: RuntimeCalls | None = None) -> ModelRecord:
    """One model timed with a fresh :class:`InModelSource` (see it)."""
    return InModelSource(timing).measure(model, inputs, name, calls)
