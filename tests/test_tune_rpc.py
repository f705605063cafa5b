"""RPC tuning against a real tracker and two real servers on 127.0.0.1 (subprocesses): a server killed mid-run,
a tuner killed with SIGKILL and resumed, an unreachable tracker."""

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


@pytest.fixture
def cluster():
    """A tracker and two servers under one key, all on 127.0.0.1."""
    from tvm import rpc

    port = free_port()
    procs = [spawn(["tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(port), "--port-end",
                    str(port + 1)])]
    servers = []
    deadline = time.monotonic() + 60
    try:
        for _ in range(2):
            sport = free_port()
            servers.append(spawn(["tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", str(sport), "--port-end",
                                  str(sport + 1), "--tracker", f"127.0.0.1:{port}", "--key", KEY]))
        while time.monotonic() < deadline:
            try:
                info = rpc.connect_tracker("127.0.0.1", port).summary()["queue_info"].get(KEY, {})
                if info.get("free", 0) == 2:
                    break
            except Exception:  # tracker starting
                pass
            time.sleep(0.3)
        else:
            pytest.fail("tracker and servers did not come up")
        yield ("127.0.0.1", port), servers
    finally:
        for proc in servers + procs:
            if proc.poll() is None:
                kill_group(proc)


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
