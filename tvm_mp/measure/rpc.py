"""Measure kernels on a device over TVM RPC (a board running ``python -m tvm.exec.rpc_server``).

The host builds each workload's kernel for the workload's target (cross-compiling with ``fcompile`` when the
target is not the host's, e.g. ``tvm.support.cc.cross_compiler("aarch64-linux-gnu-gcc")``), uploads it, and
times it on the device with the same procedure as :class:`~tvm_mp.measure.local.LocalSource`. One RPC session
serves many workloads. Every network step has a deadline (see :class:`RPCSource`): a frozen device or a silent
tracker ends a batch within a bound, keeping what was measured. The device key of the records is the RPC key.

:class:`LocalRPCCluster` starts a tracker and a server on this host as subprocesses (their own process groups,
stopped as groups): what the tests use, and a way to try the RPC path without a board.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from .. import _tvm
from .._rpc import Session, Tracker, connect, upload_and_run
from ..cost_models.base import CostModelError, Workload
from ..errors import RPCError
from .local import build, kernel_arguments, time_function
from .records import Record
from .source import TimingConfig, check_device


class RPCSource:
    """Measures workloads on the device registered under ``key`` with a tracker (or one reached directly).

    Give ``tracker=(host, port)`` for a tracker, or ``server=(host, port)`` for a server not registered with
    one (a server registered with a tracker refuses direct connections).

    Deadlines (every network step has one, :mod:`tvm_mp._rpc`): ``connect_timeout_s`` for each exchange with the
    tracker, for waiting for the device to be free and for the session handshake; ``step_timeout_s`` for one
    workload's upload, load and timing together. One session serves many workloads; it is renewed before the
    device's server would end it (``session_timeout_s``) and after any failure.

    When a workload's step misses its deadline or the connection breaks, the session is dropped and a new one is
    opened at once: if the device answers, that workload gets an error record (it is what stopped the device)
    and the batch goes on; if it does not, :class:`~tvm_mp.errors.RPCError` is raised -- the records yielded
    before are kept and the workload is not recorded, so running the collection again resumes there. A device
    that never answers ends a batch within ``step_timeout_s + 4 x connect_timeout_s`` (plus a build).
    """

    name = "rpc"

    def __init__(self, key: str, tracker: tuple[str, int] | None = None, server: tuple[str, int] | None = None,
                 timing: TimingConfig | None = None, session_timeout_s: float = 600.0,
                 fcompile: Callable | None = None, connect_timeout_s: float = 10.0, step_timeout_s: float = 120.0):
        if (tracker is None) == (server is None):
            raise CostModelError("RPCSource needs exactly one of tracker=(host, port) or server=(host, port)")
        if not isinstance(key, str) or not key:
            raise CostModelError("RPCSource needs the device key the server registered with (--key)")
        for name, value in (("session_timeout_s", session_timeout_s), ("connect_timeout_s", connect_timeout_s),
                            ("step_timeout_s", step_timeout_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value <= 0:
                raise CostModelError(f"RPCSource {name}={value!r}: give a number of seconds > 0")
        if step_timeout_s >= session_timeout_s:
            raise CostModelError(f"RPCSource step_timeout_s={step_timeout_s:g} must be below session_timeout_s="
                                 f"{session_timeout_s:g} (a session serves whole steps)")
        self.key = key
        self.device = key
        self.tracker = tracker
        self.server = server
        self.timing = timing or TimingConfig()
        self.session_timeout_s = float(session_timeout_s)
        self.connect_timeout_s = float(connect_timeout_s)
        self.step_timeout_s = float(step_timeout_s)
        self.fcompile = fcompile

    def connect(self) -> Session:
        """A session with the device, within ``2 x connect_timeout_s`` (tracker request, then handshake)."""
        if self.tracker is None:
            host, port = self.server
            return connect(host, int(port), "", self.session_timeout_s, self.connect_timeout_s)
        with Tracker(self.tracker[0], int(self.tracker[1]), self.connect_timeout_s) as tracker:
            host, port, matchkey = tracker.request(self.key, self.connect_timeout_s)
        return connect(host, port, matchkey, self.session_timeout_s, self.connect_timeout_s)

    def _time(self, session: Session, lib: Path, arrays: list) -> tuple[list[float], dict]:
        def run(rmod, dev):
            import tvm

            args = [tvm.runtime.tensor(a, dev) for a in arrays]
            return time_function(rmod, dev, args, self.timing, local=False)

        return upload_and_run(session, lib, run, self.step_timeout_s,
                              f"the {self.step_timeout_s:.3g} s a workload may take (step_timeout_s)")

    def measure_iter(self, workloads: Iterable[Workload]) -> Iterator[Record]:
        rng = np.random.default_rng(self.timing.seed)
        session, opened = None, 0.0
        with tempfile.TemporaryDirectory(prefix="tvm_mp_rpc_") as tmp:
            try:
                for index, wl in enumerate(workloads):
                    check_device(wl, self.device)
                    try:
                        module = build(wl)
                        lib = Path(tmp) / f"kernel_{index}.so"
                        if self.fcompile is not None:
                            module.export_library(str(lib), fcompile=self.fcompile)
                        else:
                            module.export_library(str(lib))
                        arrays = kernel_arguments(wl, rng)
                    except Exception as err:  # a workload that does not build becomes an error record
                        yield Record(wl, (), "rpc", error=f"{type(err).__name__}: {_tvm.error_line(err)}")
                        continue
                    if session is not None and time.monotonic() - opened + self.step_timeout_s \
                            > self.session_timeout_s:
                        session.close()  # the server would end it during this step
                        session = None
                    if session is None:
                        session, opened = self.connect(), time.monotonic()  # RPCError: nothing answers
                    try:
                        samples, meta = self._time(session, lib, arrays)
                    except RPCError as err:
                        session.close()
                        session = None
                        session, opened = self.connect(), time.monotonic()  # the device must answer again
                        yield Record(wl, (), "rpc", error=str(err))  # ... then this workload is what failed
                        continue
                    yield Record(wl, tuple(samples), "rpc", meta={**meta, "key": self.key})
            finally:
                if session is not None:
                    session.close()

    def measure(self, workloads: Sequence[Workload]) -> list[Record]:
        return list(self.measure_iter(workloads))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _wait_for_port(host: str, port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise CostModelError(f"nothing listens on {host}:{port} in time")


class LocalRPCCluster:
    """A TVM RPC tracker and one server on this host, as subprocesses (a context manager).

    ``with LocalRPCCluster("test") as cluster: RPCSource("test", tracker=cluster.tracker)``.
    """

    def __init__(self, key: str, host: str = "127.0.0.1", start_timeout_s: float = 60.0):
        self.key = key
        self.host = host
        self.start_timeout_s = start_timeout_s
        self.processes: list[subprocess.Popen] = []
        self.tracker: tuple[str, int] | None = None

    def _spawn(self, args: list[str]) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)  # own process group: servers fork workers
        self.processes.append(proc)
        return proc

    def start(self) -> "LocalRPCCluster":
        deadline = time.monotonic() + self.start_timeout_s
        port = free_port(self.host)
        self._spawn(["tvm.exec.rpc_tracker", "--host", self.host, "--port", str(port), "--port-end", str(port + 1)])
        _wait_for_port(self.host, port, deadline)
        self.tracker = (self.host, port)
        server_port = free_port(self.host)
        self._spawn(["tvm.exec.rpc_server", "--host", self.host, "--port", str(server_port), "--port-end",
                     str(server_port + 1), "--tracker", f"{self.host}:{port}", "--key", self.key])
        while time.monotonic() < deadline:
            try:
                with Tracker(*self.tracker, timeout_s=max(min(5.0, deadline - time.monotonic()), 0.1)) as tracker:
                    if self.key in tracker.summary().get("queue_info", {}):
                        return self
            except RPCError:  # tracker still starting
                pass
            if any(p.poll() is not None for p in self.processes):
                self.stop()
                raise CostModelError("the RPC tracker or server exited while starting")
            time.sleep(0.2)
        self.stop()
        raise CostModelError(f"the RPC server did not register key {self.key!r} within {self.start_timeout_s} s")

    def stop(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.processes.clear()

    def __enter__(self) -> "LocalRPCCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
