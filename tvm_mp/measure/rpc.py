"""Measure kernels on a device over TVM RPC (a board running ``python -m tvm.exec.rpc_server``).

The host builds each workload's kernel for the workload's target (cross-compiling with ``fcompile`` when the
target is not the host's, e.g. ``tvm.support.cc.cross_compiler("aarch64-linux-gnu-gcc")``), uploads it, and
times it on the device with the same procedure as :class:`~tvm_mp.measure.local.LocalSource`. One RPC session
serves a whole batch. The device key of the records is the RPC key.

:class:`LocalRPCCluster` starts a tracker and a server on this host as subprocesses (their own process groups,
stopped as groups): what the tests use, and a way to try the RPC path without a board.
"""

from __future__ import annotations

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
from ..cost_models.base import CostModelError, Workload
from .local import build, kernel_arguments, time_function
from .records import Record
from .source import TimingConfig, check_device


class RPCSource:
    """Measures workloads on the device registered under ``key`` with a tracker (or one reached directly).

    Give ``tracker=(host, port)`` for a tracker, or ``server=(host, port)`` for a server not registered with
    one (a server registered with a tracker refuses direct connections).
    """

    name = "rpc"

    def __init__(self, key: str, tracker: tuple[str, int] | None = None, server: tuple[str, int] | None = None,
                 timing: TimingConfig | None = None, session_timeout_s: float = 600.0,
                 fcompile: Callable | None = None):
        if (tracker is None) == (server is None):
            raise CostModelError("RPCSource needs exactly one of tracker=(host, port) or server=(host, port)")
        if not key:
            raise CostModelError("RPCSource needs the device key the server registered with (--key)")
        self.key = key
        self.device = key
        self.tracker = tracker
        self.server = server
        self.timing = timing or TimingConfig()
        self.session_timeout_s = session_timeout_s
        self.fcompile = fcompile

    def connect(self):
        from tvm import rpc

        if self.tracker is not None:
            client = rpc.connect_tracker(*self.tracker)
            return client.request(self.key, session_timeout=self.session_timeout_s)
        return rpc.connect(*self.server, session_timeout=self.session_timeout_s)

    def measure_iter(self, workloads: Iterable[Workload]) -> Iterator[Record]:
        import tvm

        rng = np.random.default_rng(self.timing.seed)
        remote = None
        with tempfile.TemporaryDirectory(prefix="tvm_mp_rpc_") as tmp:
            for index, wl in enumerate(workloads):
                check_device(wl, self.device)
                try:
                    if remote is None:
                        remote = self.connect()
                    module = build(wl)
                    lib = Path(tmp) / f"kernel_{index}.so"
                    if self.fcompile is not None:
                        module.export_library(str(lib), fcompile=self.fcompile)
                    else:
                        module.export_library(str(lib))
                    remote.upload(str(lib))
                    rmod = remote.load_module(lib.name)
                    dev = remote.cpu()
                    args = [tvm.runtime.tensor(a, dev) for a in kernel_arguments(wl, rng)]
                    samples, meta = time_function(rmod, dev, args, self.timing, local=False)
                except Exception as err:  # a failing workload becomes an error record; the batch goes on
                    yield Record(wl, (), "rpc", error=f"{type(err).__name__}: {_tvm.error_line(err)}")
                    continue
                yield Record(wl, tuple(samples), "rpc", meta={**meta, "key": self.key})

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
        from tvm import rpc

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
                if self.key in rpc.connect_tracker(*self.tracker).summary().get("queue_info", {}):
                    return self
            except Exception:  # tracker still starting
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
