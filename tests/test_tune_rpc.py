"""RPC tuning against a real tracker and real servers on 127.0.0.1 (subprocesses): a server killed mid-run, a
tuner killed with SIGKILL and resumed, an unreachable tracker, and servers frozen with SIGSTOP (before the run, and
mid-run): every RPC step (request, handshake, upload, run) ends at its deadline and the run within its bound."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import tvm_mp
from tvm_mp import Precision, PrecisionPlan
from tvm_mp.measure.rpc import free_port
from tvm_mp.models import digits_cnn_path
from tvm_mp.tune import RPCConfig, TuneError, tune

pytestmark = [pytest.mark.external, pytest.mark.slow]
KEY = "tvm-mp-test"


def spawn(args):
    return subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def kill_group(proc, sig=signal.SIGKILL):
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def tracker():
    """One tracker on 127.0.0.1 for the module; each test registers its own servers with it."""
    from tvm_mp.measure.rpc import _wait_for_port

    port = free_port()
    proc = spawn(["tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(port), "--port-end", str(port + 1)])
    try:
        _wait_for_port("127.0.0.1", port, time.monotonic() + 60)
        yield ("127.0.0.1", port)
    finally:
        kill_group(proc)


def free_devices(tracker, key: str) -> int:
    from tvm_mp._rpc import Tracker

    with Tracker(*tracker, timeout_s=5) as client:
        return int(client.summary()["queue_info"].get(key, {}).get("free", 0))


@pytest.fixture
def make_servers(tracker):
    """``make_servers(n, key)``: n rpc_server processes registered under ``key`` (killed as groups at the end,
    frozen or not)."""
    started = []

    def make(n: int, key: str) -> list:
        procs = []
        for _ in range(n):
            sport = free_port()
            procs.append(spawn(["tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", str(sport), "--port-end",
                                str(sport + 1), "--tracker", f"{tracker[0]}:{tracker[1]}", "--key", key]))
        started.extend(procs)
        deadline = time.monotonic() + 90
        while free_devices(tracker, key) < n:
            assert time.monotonic() < deadline, "the servers did not register with the tracker"
            time.sleep(0.2)
        return procs

    yield make
    for proc in started:
        if proc.poll() is None:
            kill_group(proc)


@pytest.fixture
def cluster(tracker, make_servers):
    """A tracker and two servers under one key, all on 127.0.0.1."""
    return tracker, make_servers(2, KEY)


@pytest.fixture(scope="module")
def digits_mod():
    return tvm_mp.load_onnx(digits_cnn_path(), shapes={"input": (1, 1, 8, 8)})


def lines(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []


def wait_for_records(path: Path, n: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while len(lines(path)) < n:
        assert time.monotonic() < deadline, f"fewer than {n} records after {timeout} s"
        time.sleep(0.2)


def test_server_killed_mid_run_loses_nothing(cluster, digits_mod, tmp_path):
    tracker, servers = cluster
    plan = PrecisionPlan({"conv2d_0": Precision(2, 2), "conv2d_1": Precision(2, 2)})
    records = tmp_path / "records.jsonl"
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("r", tune(
        digits_mod, plan, rpc=RPCConfig(KEY, *tracker, retries=2, connect_timeout_s=5), trials=4,
        records=records, number=5, repeat=2, progress=False)))
    thread.start()
    wait_for_records(records, 2)
    before = lines(records)[:2]
    kill_group(servers[0])  # one device dies mid-run
    thread.join(timeout=600)
    assert not thread.is_alive()
    result = out["r"]
    got = lines(records)
    assert got[:2] == before  # what was measured before the kill is kept as written
    assert len(got) == result.jobs == 8  # every job has exactly one record: measured or failed with the reason
    assert len({json.dumps(r["workload"], sort_keys=True) for r in got}) == 8
    assert result.measured + result.failed == 8 and result.measured >= 6  # the live device took over
    assert all(("error" in r) != bool(r["latency_samples_ms"]) for r in got)
    assert set(result.best) and result.database_path.exists()
    print(f"jobs {result.jobs}: measured {result.measured}, failed {result.failed}")


def test_tuner_killed_then_resumed_skips_measured(cluster, tmp_path):
    tracker, _ = cluster
    records = tmp_path / "records.jsonl"
    cmd = [sys.executable, "-m", "tvm_mp.cli", "tune", str(digits_cnn_path()), "--shape", "input=1,1,8,8",
           "--plan", "w2a2", "--rpc-tracker", f"{tracker[0]}:{tracker[1]}", "--key", KEY, "--trials", "3",
           "--records", str(records), "--database", str(tmp_path / "tuning_db.json"), "--quiet"]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    wait_for_records(records, 2)
    os.killpg(first.pid, signal.SIGKILL)  # kill -9 the tuner
    first.wait()
    kept = len(lines(records))
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    got = lines(records)
    keys = [json.dumps(r["workload"], sort_keys=True) for r in got if "error" not in r]
    assert len(keys) == len(set(keys)) == 12  # 3 conv and 1 dense task x 3 configs, none measured twice
    assert f"already measured {kept}" in second.stdout
    assert (tmp_path / "tuning_db.json").exists()


def test_unreachable_tracker_is_one_line(tmp_path):
    port = free_port()  # nothing listens there
    proc = subprocess.run([sys.executable, "-m", "tvm_mp.cli", "tune", str(digits_cnn_path()), "--shape",
                           "input=1,1,8,8", "--plan", "w2a2", "--rpc-tracker", f"127.0.0.1:{port}", "--key", KEY,
                           "--records", str(tmp_path / "r.jsonl")], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "cannot reach the RPC tracker" in err


def test_rpc_config_validation():
    with pytest.raises(TuneError, match="--key"):
        RPCConfig("")
    with pytest.raises(TuneError, match="HOST:PORT"):
        RPCConfig.parse("localhost", "k")
    assert RPCConfig.parse("127.0.0.1:9190", "k").tracker_port == 9190


# ---- frozen servers (SIGSTOP: the process and its session workers stop; the kernel keeps their sockets open) --
def freeze(proc) -> None:
    os.killpg(proc.pid, signal.SIGSTOP)


def _kernel_library(path: Path) -> Path:
    import tvm
    from tvm import te

    a = te.placeholder((64,), name="a")
    b = te.compute((64,), lambda i: a[i] + 1.0, name="b")
    func = te.create_prim_func([a, b]).with_attr("global_symbol", "k")
    tvm.compile(tvm.IRModule({"k": func}), "llvm").export_library(str(path))
    return path


def _expect_timeout(fn, timeout_s: float, step: str) -> None:
    from tvm_mp.errors import RPCError

    start = time.monotonic()
    with pytest.raises(RPCError) as info:
        fn()
    took = time.monotonic() - start
    assert took < timeout_s + 3, f"{step} took {took:.1f} s"  # the deadline, plus the shutdown grace
    assert step in str(info.value) and "within" in str(info.value) and "\n" not in str(info.value)


def test_each_rpc_step_times_out_on_a_frozen_server(tracker, make_servers, tmp_path):
    """Session request, handshake, upload and run each end at their deadline when the server is frozen."""
    import numpy as np

    from tvm_mp import _rpc

    key = "tvm-mp-frozen-steps"
    servers = make_servers(2, key)
    lib = _kernel_library(tmp_path / "k.so")

    def session():
        with _rpc.Tracker(*tracker, timeout_s=5) as client:
            host, port, matchkey = client.request(key, 10)
        return _rpc.connect(host, port, matchkey, 60, 10), port

    def run(remote):
        import tvm

        dev = remote.cpu()
        mod = remote.load_module("k.so")
        args = [tvm.runtime.tensor(np.zeros(64, np.float32), dev) for _ in range(2)]
        return mod.time_evaluator("k", dev, number=2, repeat=2)(*args).results

    first, first_port = session()
    second, _ = session()
    assert free_devices(tracker, key) == 0
    by_port = {}
    for proc in servers:  # which process serves which session: the server's --port
        by_port[int(proc.args[proc.args.index("--port") + 1])] = proc
    freeze(by_port[first_port])
    _expect_timeout(lambda: first.call("upload", lambda r: r.upload(str(lib)), 1.0), 1.0, "upload")
    second.call("upload", lambda r: r.upload(str(lib)), 10)
    assert len(second.call("run", run, 30)) == 2  # the other device works
    freeze(next(p for port, p in by_port.items() if port != first_port))
    _expect_timeout(lambda: second.call("run", run, 1.0), 1.0, "run")
    # no device is free (both handed out, both frozen): the request waits only as long as it was told
    with _rpc.Tracker(*tracker, timeout_s=5) as client:
        _expect_timeout(lambda: client.request(key, 1.0), 1.0, "request")
    # a new handshake with a frozen server
    _expect_timeout(lambda: _rpc.connect("127.0.0.1", first_port, "", 60, 1.0), 1.0, "handshake")
    assert not [t for t in threading.enumerate() if t.name.startswith("tvm_mp-rpc")]  # no thread left behind


def test_frozen_servers_before_and_mid_run_end_in_bound_and_keep_records(tracker, make_servers, digits_mod,
                                                                          tmp_path):
    """Two servers: one frozen before the run (registered and free at the tracker, never answers: the jobs go to
    the other), then the other frozen after two records: the run ends within its documented bound, every record
    measured before is kept, every other job is recorded as failed with the reason."""
    key = "tvm-mp-frozen"
    frozen_first, live = make_servers(2, key)
    freeze(frozen_first)
    plan = PrecisionPlan({"conv2d_0": Precision(2, 2), "conv2d_1": Precision(2, 2)})
    records = tmp_path / "records.jsonl"
    connect_s, session_s = 2.0, 4.0
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("r", tune(
        digits_mod, plan, rpc=RPCConfig(key, *tracker, connect_timeout_s=connect_s, session_timeout_s=session_s),
        trials=4, records=records, number=5, repeat=2, progress=False)), daemon=True)
    thread.start()
    wait_for_records(records, 2)
    before = lines(records)
    assert all("error" not in r for r in before)  # measured on the live server despite the frozen one
    freeze(live)
    frozen_at = time.monotonic()
    # the documented bound: S + 4C after the last device stops answering, plus the builds of the jobs in flight
    bound = session_s + 4 * connect_s
    thread.join(timeout=bound + 60)
    assert not thread.is_alive(), "tune did not end"
    took = time.monotonic() - frozen_at
    result = out["r"]
    got = lines(records)
    assert got[: len(before)] == before  # nothing measured before the freeze is lost
    assert len(got) == result.jobs == 8 and result.measured >= 2
    assert result.measured + result.failed == 8 and result.failed >= 1
    failed = [r for r in got if "error" in r]
    assert all("within" in r["error"] for r in failed), failed  # each with the reason
    assert result.database_path.exists() and result.best  # the measured configs reached the database
    assert took < bound + 20, f"ended {took:.1f} s after the freeze (bound {bound} s + builds)"
    print(f"ended {took:.1f} s after the freeze; measured {result.measured}, failed {result.failed}; "
          f"a reason: {failed[0]['error']}")
