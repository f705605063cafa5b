"""Measure tvm-mp's kernels on this host: build the kernel of a workload, time it with ``time_evaluator``.

The kernel is exactly the one a compiled model runs for that layer (:mod:`tvm_mp.schedules.kernels` with the
default CPU schedule): bit-serial or packed, with the workload's epilogue (``acc`` -- the raw accumulator, as
tuning uses -- ``float`` or ``requant``). Inputs are random codes and random integer weights in the storage
format of :mod:`tvm_mp.quantize.packing` (values do not change the work these kernels do).
"""

from __future__ import annotations

import math
import platform
import time
from typing import Iterable, Iterator, Sequence

import numpy as np

from .. import _tvm
from ..cost_models.base import CostModelError, Workload, target_family
from ..quantize import packing, scheme
from ..targets import parse
from .records import Record
from .source import TimingConfig, check_device

KERNEL_NAME = "tvm_mp_measured"


def _epilogue(workload: Workload):
    from ..schedules.kernels import Epilogue

    if workload.epilogue == "acc":
        return Epilogue("acc")
    if workload.epilogue == "float":
        return Epilogue("float", 0.0, None)  # a ReLU clamp, as after most layers
    qmax = (1 << workload.a_bits) - 1
    return Epilogue("requant", 0, qmax, (qmax + 1) // 2)


def weight_storage_shape(workload: Workload) -> tuple[int, ...]:
    """Shape of the stored weights (bit-planes ``[OC, planes, words]`` or packed bytes ``[OC, bytes]``)."""
    oc, r = workload.weight_shape[0], workload.reduction
    if workload.kind == "bitserial":
        return (oc, 1 if workload.w_bits == 1 else workload.w_bits, -(-r // packing.WORD_BITS))
    return (oc, -(-r // (8 // packing.container_bits(workload.w_bits))))


def kernel_func(workload: Workload, name: str = KERNEL_NAME, schedule: bool = True):
    """The scheduled PrimFunc of ``workload`` (``schedule=False``: the plain compute, as event counting reads)."""
    from ..schedules.kernels import conv2d_kernel, dense_kernel

    wl = workload
    if wl.knobs:
        raise CostModelError(f"schedule knobs {dict(wl.knobs)} are not supported yet: the default schedule has none")
    data_shape = weight_storage_shape(wl)
    if wl.op == "dense":
        return dense_kernel(name, wl.kind, wl.w_bits, wl.a_bits, wl.input_shape, wl.weight_shape[0], _epilogue(wl),
                            data_shape, schedule)
    zero_point = (1 << wl.a_bits) // 2
    return conv2d_kernel(name, wl.kind, wl.w_bits, wl.a_bits, wl.input_shape, wl.weight_shape, wl.params, zero_point,
                         _epilogue(wl), data_shape, schedule)


def kernel_arguments(workload: Workload, rng: np.random.Generator) -> list[np.ndarray]:
    """NumPy arguments of the kernel, in order, the zeroed output last."""
    wl = workload
    lo, hi = scheme.weight_qrange(wl.w_bits)
    w_q = rng.integers(lo, hi + 1, wl.weight_shape)
    if wl.w_bits == 1:
        w_q = np.where(w_q >= 0, 1, -1)
    w_q = w_q.astype(np.int8)
    codes = rng.integers(0, 1 << wl.a_bits, wl.input_shape).astype(np.uint8)
    if wl.kind == "bitserial":
        weights = [packing.weight_bitplanes(w_q, wl.w_bits), packing.plane_coefficients(wl.w_bits)[0]]
    else:
        weights = [packing.pack_dense(w_q, wl.w_bits)]
    oc = wl.weight_shape[0]
    args = [codes, *weights]
    if wl.epilogue != "acc":
        args.append(rng.integers(-1000, 1000, oc).astype(np.int32))  # bias correction
    if wl.epilogue == "float":
        args.append(rng.uniform(1e-3, 1e-2, oc).astype(np.float32))
    elif wl.epilogue == "requant":
        args.extend(scheme.requant_multiplier(rng.uniform(1e-4, 1e-2, oc)))
    out_dtype = {"acc": np.int32, "float": np.float32, "requant": np.uint8}[wl.epilogue]
    args.append(np.zeros(wl.output_shape, dtype=out_dtype))
    return args


def build(workload: Workload, target=None):
    """Compile the workload's kernel for ``target`` (default: the workload's own target)."""
    import tvm

    return _tvm.build(tvm.IRModule({KERNEL_NAME: kernel_func(workload)}), parse(target or workload.target).tvm_target)


def kernel_fingerprint(workload: Workload) -> str:
    """Structural hash of the scheduled kernel: records made before a schedule or compute change differ in it."""
    import tvm_ffi

    return f"{tvm_ffi.structural_hash(kernel_func(workload)) & (2**64 - 1):016x}"


def time_function(module, dev, args, timing: TimingConfig, local: bool = True) -> tuple[list[float], dict]:
    """Warm up, pick ``number``, time ``repeat`` repeats (again while too spread, see :class:`TimingConfig`).

    Returns (samples in ms of the kept attempt, timing meta). ``local=False`` (RPC) always uses wall time.
    """
    module = getattr(module, "mod", module)  # tvm.compile's Executable wraps the runtime module
    func = module[KERNEL_NAME]
    for _ in range(timing.warmup_runs):
        func(*args)
    clock = timing.clock
    if clock == "auto":
        clock = "cpu" if local and _tvm.runtime_threads() == 1 else "wall"
    if clock == "cpu" and (not local or _tvm.runtime_threads() != 1):
        raise CostModelError("the 'cpu' clock needs a local TVM runtime with one thread (TVM_NUM_THREADS=1); "
                             "use clock='wall'")
    probe = module.time_evaluator(KERNEL_NAME, dev, number=1, repeat=1)(*args).mean
    target_s = timing.min_repeat_ms / 1e3
    number = int(min(timing.max_number, max(1, math.ceil(target_s / max(probe, 1e-9)))))
    best: list[float] | None = None
    attempts = 0
    for attempts in range(1, timing.max_attempts + 1):  # noqa: B007 - read after the loop (attempts made)
        if clock == "wall":
            result = module.time_evaluator(KERNEL_NAME, dev, number=number, repeat=timing.repeat)(*args)
            samples = [float(s) * 1e3 for s in result.results]
        else:
            # each evaluator call runs the kernel 1 + number times (the first call is its own warm-up)
            evaluator = module.time_evaluator(KERNEL_NAME, dev, number=number, repeat=1)
            samples = []
            for _ in range(timing.repeat):
                start = time.thread_time()
                evaluator(*args)
                samples.append((time.thread_time() - start) / (number + 1) * 1e3)
        if best is None or np.median(samples) < np.median(best):
            best = samples
        q1, q3 = np.percentile(samples, [25, 75])
        if (q3 - q1) <= timing.max_rel_spread * np.median(samples):
            break
    return best, {"number": number, "repeat": timing.repeat, "attempts": attempts, "clock": clock}


def host_description() -> dict:
    """CPU model and TVM thread count of this host (stored in each record's meta)."""
    import tvm

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": model, "threads": _tvm.runtime_threads(), "tvm": tvm.__version__}


#: The reference kernel: small, fixed, compute-bound (about 0.1 ms here).
REFERENCE_WORKLOAD = dict(op="dense", input_shape=(1, 512), weight_shape=(64, 512), w_bits=8, a_bits=8,
                          kind="packed", epilogue="acc")


class _Reference:
    """Times the reference kernel (ms, the same clock as the workloads); remembers the fastest in this process."""

    def __init__(self, timing: TimingConfig, dev):
        wl = Workload(**REFERENCE_WORKLOAD)
        self.module = build(wl)
        self.args = [_tvm.to_device(a, dev) for a in kernel_arguments(wl, np.random.default_rng(0))]
        self.timing = TimingConfig(warmup_runs=1, repeat=3, min_repeat_ms=2.0, max_attempts=1, clock=timing.clock,
                                   reference=False)
        self.dev = dev
        self.best = float("inf")
        self.warm_up()

    def warm_up(self, max_s: float = 2.0, settled: int = 3) -> None:
        """Run the reference until its time settles (first calls pay cold caches and page faults): ``settled``
        timings in a row within 3 % of the fastest, or ``max_s`` seconds."""
        start, streak = time.monotonic(), 0
        while time.monotonic() - start < max_s and streak < settled:
            streak = streak + 1 if self.time_ms() <= 1.03 * self.best else 0

    def time_ms(self) -> float:
        """The reference kernel's time now (median of its repeats)."""
        samples, _ = time_function(self.module, self.dev, self.args, self.timing)
        now = float(np.median(samples))
        self.best = min(self.best, now)
        return now

    def wait_for_nominal(self, tolerance: float, waits: int) -> float:
        """Time the reference, waiting (0.2 s, at most ``waits`` times) while it is slower than the fastest by more
        than ``tolerance``; returns the last time (ms)."""
        now = self.time_ms()
        for _ in range(waits):
            if now <= (1 + tolerance) * self.best:
                break
            time.sleep(0.2)
            now = self.time_ms()
        return now


class LocalSource:
    """Measures workloads on this host (target family x86_64 here, or whatever this host runs)."""

    name = "local"

    def __init__(self, timing: TimingConfig | None = None, device: str = "host"):
        self.timing = timing or TimingConfig()
        self.device = device
        self._host: dict | None = None
        self._reference: _Reference | None = None

    def measure_iter(self, workloads: Iterable[Workload]) -> Iterator[Record]:
        import tvm

        rng = np.random.default_rng(self.timing.seed)
        host_family = "aarch64" if platform.machine().lower() in ("aarch64", "arm64") else "x86_64"
        if self._host is None:
            self._host = host_description()
        dev = tvm.cpu()
        for wl in workloads:
            check_device(wl, self.device)
            if target_family(wl.target) != host_family:
                yield Record(wl, (), "local", error=f"target {wl.target!r} does not run on this {host_family} host; "
                                                   "measure it over RPC (tvm_mp.measure.rpc.RPCSource)")
                continue
            try:
                module = build(wl)
                args = [_tvm.to_device(a, dev) for a in kernel_arguments(wl, rng)]
                samples, meta = self._timed(module, dev, args)
            except Exception as err:  # build or run failure: recorded, the batch goes on
                yield Record(wl, (), "local", error=f"{type(err).__name__}: {_tvm.error_line(err)}")
                continue
            yield Record(wl, tuple(samples), "local", meta={**meta, **self._host, "kernel": kernel_fingerprint(wl)})

    def _timed(self, module, dev, args) -> tuple[list[float], dict]:
        """Time with the reference kernel timed just before and just after (see :class:`TimingConfig`)."""
        timing = self.timing
        if not timing.reference:
            return time_function(module, dev, args, timing)
        if self._reference is None:
            self._reference = _Reference(timing, dev)
        ref = self._reference
        before = ref.wait_for_nominal(timing.reference_tolerance, timing.reference_waits)
        samples, meta = time_function(module, dev, args, timing)
        after = ref.time_ms()
        if timing.reference_waits and after > (1 + timing.reference_tolerance) * ref.best:
            # slowed down while timing: once more at the usual speed, keep the faster
            before2 = ref.wait_for_nominal(timing.reference_tolerance, timing.reference_waits)
            again, meta2 = time_function(module, dev, args, timing)
            after2 = ref.time_ms()
            if np.median(again) < np.median(samples):
                samples, meta, before, after = again, meta2, before2, after2
        return samples, {**meta, "reference_ms": [float(f"{before:.6g}"), float(f"{after:.6g}")]}

    def measure(self, workloads: Sequence[Workload]) -> list[Record]:
        return list(self.measure_iter(workloads))
