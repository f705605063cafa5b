"""TuningDatabase.save is atomic: a writer SIGKILLed at any moment leaves a database that parses and keeps its
entries; a directory path is refused with one line."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tvm_mp.errors import Error
from tvm_mp.schedules.tuning import TuningDatabase

TARGET = "llvm|x86_64|znver4|"  # a key as tvm_mp.targets.tuning_key writes it (load normalizes older ones)
N_ORIGINAL = 50
KILLS = 20
EXTRA = 200  # entries each writer adds to the N_ORIGINAL
NOTE = 20_000  # characters in each added entry (4 MB a save)

#: A fork server: imports tvm-mp once (a few seconds), then for every "go" line forks a writer that loads the
#: database and saves it with many more entries in a loop forever. It prints the writer's pid, waits for it and
#: prints how it ended ("signal 9" when the test killed it, "exit <code>" when it stopped by itself).
SERVER = textwrap.dedent("""
    import os, sys
    from tvm_mp.schedules.tuning import TuningDatabase

    path, target, EXTRA, NOTE = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    note = "x" * NOTE

    def writer():
        db = TuningDatabase.load(path)
        round = 0
        while True:
            round += 1
            # EXTRA entries of NOTE characters each (a few MB): most of a save is writing the file, not json.dumps,
            # so the kills land in the middle of writes
            extra = {f"conv2d|extra|round{round}|{i}": {"config": {"lanes": i % 64, "note": note},
                                                          "latency_us": float(i)} for i in range(EXTRA)}
            db.records[target] = {k: v for k, v in db.records[target].items() if "|extra|" not in k}
            db.records[target].update(extra)
            db.save()

    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            break
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                writer()
            except BaseException as err:
                print(f"writer failed: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
                code = 1
            finally:
                os._exit(code)
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            print(f"signal {os.WTERMSIG(status)}", flush=True)
        else:
            print(f"exit {os.WEXITSTATUS(status)}", flush=True)
""")


def _original_records() -> dict:
    return {TARGET: {f"conv2d|original|{i}": {"config": {"lanes": 8, "oc_block": i % 7}, "latency_us": i + 0.5}
                     for i in range(N_ORIGINAL)}}


def _read_line(proc: subprocess.Popen, deadline: float) -> str:
    line = proc.stdout.readline()
    assert line, f"fork server ended: {proc.stderr.read() if proc.poll() is not None else ''}"
    assert time.monotonic() < deadline, "fork server too slow"
    return line.strip()


def test_save_survives_sigkill_at_random_moments(tmp_path):
    path = tmp_path / "tuning_db.json"
    original = _original_records()
    TuningDatabase(path, json.loads(json.dumps(original))).save()
    rng = np.random.default_rng(20240611)
    deadline = time.monotonic() + 120
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(path), TARGET, str(EXTRA), str(NOTE)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    grown = 0
    try:
        assert _read_line(proc, deadline) == "ready"
        for _ in range(KILLS):
            proc.stdin.write("go\n")
            proc.stdin.flush()
            pid = int(_read_line(proc, deadline))
            time.sleep(float(rng.uniform(0.0, 0.25)))
            os.kill(pid, signal.SIGKILL)
            assert _read_line(proc, deadline) == f"signal {signal.SIGKILL}"  # killed, not failed by itself

            data = json.loads(path.read_text())  # parses after every kill
            assert data["format"] == 1
            records = data["records"][TARGET]
            for key, rec in original[TARGET].items():
                assert records.get(key) == rec
            if len(records) > N_ORIGINAL:
                grown += 1
                assert len(records) == N_ORIGINAL + EXTRA  # a whole save, never a part of one
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        proc.stdin.close()
    assert grown > 0  # the writers did replace the file (the kills were not all before the first save)
    # A kill between creating and renaming the temporary file leaves it behind, never the database half written.
    leftovers = [p.name for p in tmp_path.iterdir() if p != path]
    assert all(name.startswith(".tuning_db.json.") and name.endswith(".tmp") for name in leftovers)


def test_save_refuses_a_directory(tmp_path):
    db = TuningDatabase(None, _original_records())
    with pytest.raises(Error) as info:
        db.save(tmp_path)
    msg = str(info.value)
    assert "directory" in msg and str(tmp_path) in msg
    assert "\n" not in msg
    assert list(tmp_path.iterdir()) == []  # nothing written next to it


def test_save_round_trip_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "db.json"
    db = TuningDatabase(path, _original_records())
    assert db.save() == path
    assert TuningDatabase.load(path).records == _original_records()
    db.records[TARGET]["conv2d|more|0"] = {"config": {}, "latency_us": 1.0}
    db.save()
    assert TuningDatabase.load(path).records == db.records
    assert [p.name for p in tmp_path.iterdir()] == ["db.json"]


def test_save_keeps_file_permissions(tmp_path):
    path = tmp_path / "db.json"
    TuningDatabase(path, _original_records()).save()
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # as a plain open() creates it, not 0600
    path.chmod(0o640)
    TuningDatabase(path, _original_records()).save()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_failed_save_keeps_the_old_file_and_removes_its_temporary(tmp_path, monkeypatch):
    path = tmp_path / "db.json"
    TuningDatabase(path, _original_records()).save()
    before = path.read_bytes()

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    db = TuningDatabase(path, {TARGET: {"conv2d|other|0": {"config": {}, "latency_us": 2.0}}})
    with pytest.raises(OSError, match="disk full"):
        db.save()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["db.json"]
