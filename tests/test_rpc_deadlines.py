"""Every network step of the RPC client ends by its deadline (tvm_mp/_rpc.py), against peers that misbehave on
127.0.0.1: a silent tracker, a port nobody listens on, something that is not a tracker, and a device that takes the
connection and never answers (what a frozen rpc_server looks like from the client). The same against real TVM
servers frozen with SIGSTOP is in tests/test_tune_rpc.py."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import pytest

from tvm_mp import _rpc
from tvm_mp.errors import RPCError
from tvm_mp.measure.rpc import free_port
from tvm_mp.testing.fake_rpc import FakeTracker, SilentServer

SLACK_S = 1.5  # scheduling on a loaded 2-core machine


def _timed(fn):
    start = time.monotonic()
    with pytest.raises(RPCError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message
    return time.monotonic() - start, message


def test_silent_tracker_ends_within_the_timeout():
    with SilentServer() as silent:
        took, message = _timed(lambda: _rpc.Tracker(silent.host, silent.port, 0.5))
    assert took < 0.5 + SLACK_S
    assert "did not answer the handshake within 0.5 s" in message and silent.address in message


def test_closed_port_and_a_peer_that_is_not_a_tracker():
    port = free_port()
    took, message = _timed(lambda: _rpc.Tracker("127.0.0.1", port, 5))
    assert took < SLACK_S and "cannot reach the RPC tracker" in message

    listener = socket.create_server(("127.0.0.1", 0))
    def babble():  # answers the magic with something else
        conn, _ = listener.accept()
        conn.recv(4)
        conn.sendall(b"HTTP")
    threading.Thread(target=babble, daemon=True).start()
    try:
        _, message = _timed(lambda: _rpc.Tracker("127.0.0.1", listener.getsockname()[1], 5))
    finally:
        listener.close()
    assert "not a TVM RPC tracker" in message


def test_request_for_a_key_nobody_serves_ends_within_the_wait():
    with FakeTracker("board") as tracker:
        with _rpc.Tracker(tracker.host, tracker.port, 2) as client:
            assert client.summary()["queue_info"]["board"]["free"] == 0
            took, message = _timed(lambda: client.request("other-key", 0.5))
    assert took < 0.5 + SLACK_S and "'other-key'" in message and "within 0.5 s" in message


def test_frozen_device_handshake_is_cut_and_leaves_no_thread():
    with SilentServer() as device, FakeTracker("board", [(device.host, device.port)]) as tracker:
        with _rpc.Tracker(tracker.host, tracker.port, 2) as client:
            host, port, matchkey = client.request("board", 2)
        assert (host, port) == (device.host, device.port)
        took, message = _timed(lambda: _rpc.connect(host, port, matchkey, 10, 0.5))
    assert took < 0.5 + SLACK_S
    assert f"the session handshake with the device at {device.address} did not finish within 0.5 s" in message
    # the blocked TVM call failed as soon as its socket was shut down: its thread is gone
    assert not [t for t in threading.enumerate() if t.name.startswith("tvm_mp-rpc")]


def test_bounded_step_turns_errors_into_one_line():
    def boom():
        raise RuntimeError("Traceback (most recent call last):\n  ...\nValueError: bad thing happened")

    _, message = _timed(lambda: _rpc.bounded(boom, 1, lambda: None, "upload on the device at x:1"))
    assert message.startswith("upload on the device at x:1 failed:")


#: A process that tunes against a fake tracker whose one device never answers: the tuner must record the jobs
#: as failed with the reason, end within its bound and exit normally (no thread left blocked in TVM's client).
TUNE_FROZEN = """
import json, sys, time
import tvm_mp
from tvm_mp.models import digits_cnn_path
from tvm_mp.tune import RPCConfig, tune
host, port, records = sys.argv[1], int(sys.argv[2]), sys.argv[3]
mod = tvm_mp.load_onnx(digits_cnn_path(), shapes={"input": (1, 1, 8, 8)})
plan = tvm_mp.PrecisionPlan({"conv2d_0": tvm_mp.Precision(2, 2)})
start = time.monotonic()
result = tune(mod, plan, rpc=RPCConfig("board", host, port, connect_timeout_s=0.5, session_timeout_s=2), trials=2,
              records=records, progress=False)
print(json.dumps({"seconds": time.monotonic() - start, "jobs": result.jobs, "failed": result.failed,
                  "failures": list(result.failures.values())}), flush=True)
"""


@pytest.mark.slow
def test_tuner_with_a_frozen_device_ends_and_exits(tmp_path):
    records = tmp_path / "records.jsonl"
    with SilentServer() as device, FakeTracker("board", [(device.host, device.port)]) as tracker:
        proc = subprocess.run([sys.executable, "-c", TUNE_FROZEN, tracker.host, str(tracker.port), str(records)],
                              capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr  # a thread still blocked at exit would abort the interpreter
    assert "terminate called" not in proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["failed"] == out["jobs"] == 2
    # bound: S + 4C plus the build of the job in flight; here no session ever opens: about 2C
    assert out["seconds"] < 2 + 4 * 0.5 + 20
    assert all("did not finish within" in reason for reason in out["failures"]), out["failures"]
    lines = [json.loads(ln) for ln in records.read_text().splitlines()]
    assert len(lines) == 2 and all("did not finish within" in r["error"] for r in lines)
