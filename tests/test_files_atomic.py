"""Files tvm-mp rewrites are replaced atomically (tvm_mp/_files.py): a writer SIGKILLed mid-write leaves the
previous file whole. Real killed processes: a cost-model save and an artifact export (report.json), each stopped
inside the write of its replacement and killed there. (The tuning database has its own test with kills at random
moments: tests/schedules/test_tuning_atomic.py.)"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap

import pytest

from tvm_mp._files import FileWriteError, atomic_path, write_atomic

# ---- the helper ---------------------------------------------------------------------------------------------


def test_write_atomic_replaces_and_keeps_permissions(tmp_path):
    path = tmp_path / "a.json"
    write_atomic(path, '{"v": 1}')
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # what a plain open() gives
    path.chmod(0o640)
    write_atomic(path, b'{"v": 2}', durable=True)
    assert path.read_text() == '{"v": 2}' and stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_write_atomic_refuses_with_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    with pytest.raises(FileWriteError, match="is a directory"):
        write_atomic(tmp_path, "x")
    with pytest.raises(FileWriteError, match="does not exist") as info:
        write_atomic(tmp_path / "missing" / "a.json", "x")
    assert "\n" not in str(info.value)
    path = tmp_path / "a.json"
    write_atomic(path, "old")

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(FileWriteError, match="No space left on device") as info:
        write_atomic(path, "new")
    assert isinstance(info.value, OSError) and "unchanged" in str(info.value)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_atomic_path_keeps_the_suffix_and_the_old_file_on_failure(tmp_path):
    path = tmp_path / "plot.png"
    with atomic_path(path) as tmp:
        assert tmp.name == "plot.png" and tmp.parent.parent == tmp_path  # writers choose the format by suffix
        tmp.write_bytes(b"first")
    assert path.read_bytes() == b"first"
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("the writer failed")
    assert path.read_bytes() == b"first"
    with pytest.raises(FileWriteError, match="no file"):
        with atomic_path(path):
            pass
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]


# ---- killed writers -----------------------------------------------------------------------------------------
#: A writer process: writes the original file and prints "saved"; then the next save stops inside the write of
#: its temporary file (after half of the bytes), prints "stalled" and waits to be killed.
WRITER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path

    scenario, path = sys.argv[1], Path(sys.argv[2])

    if scenario == "cost-model":
        from tvm_mp.cost_models.xgb import XGBCostModel

        model = XGBCostModel.default()
        model.save(path)

        def save(i):
            model.info["save"] = i
            model.save(path)
    else:  # an artifact export: report.json is what a kill must not break
        import numpy as np
        import tvm_mp
        from tvm_mp.models import digits_cnn_path

        mod = tvm_mp.load_onnx(digits_cnn_path(), shapes={"input": (1, 1, 8, 8)})
        x = np.random.default_rng(0).normal(size=(4, 1, 8, 8)).astype(np.float32)
        cm = tvm_mp.compile(mod, plan=tvm_mp.PrecisionPlan.uniform(mod, tvm_mp.Precision(8, 8)), calibration=[x])
        cm.export(path.parent)

        def save(i):
            from dataclasses import replace
            cm.report = replace(cm.report, latency_ms=float(i))
            cm.export(path.parent)

    print("saved", flush=True)
    real_write = os.write
    marker = "." + path.name + "."  # the temporary beside the destination

    def write(fd, data):
        try:
            name = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            name = ""
        if marker in os.path.basename(name) and len(data) > 1:
            real_write(fd, bytes(data[: len(data) // 2]))
            print("stalled", flush=True)
            time.sleep(600)
        return real_write(fd, data)

    os.write = write
    save(1)
    print("not stalled", flush=True)
""")


def _start(scenario: str, path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, scenario, str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _expect(proc: subprocess.Popen, word: str) -> None:
    line = proc.stdout.readline().strip()
    if line != word:
        proc.kill()
        raise AssertionError(f"writer printed {line!r}, expected {word!r}: {proc.communicate()[1][-2000:]}")


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    proc.stdout.close()
    proc.stderr.close()


@pytest.mark.slow
def test_writers_killed_inside_the_write_keep_the_previous_file(tmp_path):
    """A cost-model save and an artifact export (both at once: each is mostly start-up), each killed mid-write."""
    paths = {"cost-model": tmp_path / "cm" / "model.json", "export": tmp_path / "artifact" / "report.json"}
    procs, originals = {}, {}
    try:
        for scenario, path in paths.items():
            path.parent.mkdir()
            procs[scenario] = _start(scenario, path)
        for scenario, proc in procs.items():
            _expect(proc, "saved")
            originals[scenario] = paths[scenario].read_bytes()
            _expect(proc, "stalled")  # half of the new content is in the temporary file now
            _kill(proc)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for scenario, path in paths.items():
        assert path.read_bytes() == originals[scenario], scenario  # byte for byte
        json.loads(originals[scenario])
        if scenario == "export":  # an export is written in a temporary directory beside the artifact first
            tmp_dirs = [p for p in path.parent.parent.iterdir() if p.name.startswith(f".{path.parent.name}.tmp-")]
            assert len(tmp_dirs) == 1 and not list(path.parent.glob(".*.tmp")), tmp_dirs
            leftovers = [p.name for p in tmp_dirs[0].iterdir() if p.name.startswith(f".{path.name}.")]
        else:
            leftovers = [p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}.")]
        assert len(leftovers) == 1 and leftovers[0].endswith(".tmp")  # the killed write's temporary only
    import tvm_mp

    assert tvm_mp.load(paths["export"].parent).report is not None  # the artifact still loads
