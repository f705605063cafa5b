"""The tutorials are documentation that must run: each one is executed (small sizes, < 2 min) and must write nothing
into the repository (its files go to a temporary directory).

With the ``docs`` extra installed (the README's test command), ``tests/test_docs.py``'s documentation build executes
every tutorial (sphinx-gallery) and checks that nothing in the repository or the tutorials folder changed, so the
scripts are not run a second time here; without it, they run here as scripts.
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests._snapshot import changes, snapshot

TUTORIALS = sorted((Path(__file__).resolve().parents[1] / "tutorials").glob("tutorial_*.py"))


DOCS_BUILD_RUNS_THEM = importlib.util.find_spec("sphinx_gallery") is not None


@pytest.mark.slow
@pytest.mark.skipif(DOCS_BUILD_RUNS_THEM, reason="executed by the documentation build (tests/test_docs.py)")
@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs_and_writes_nothing_into_the_repository(path, tmp_path):
    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    env = dict(os.environ, MPLBACKEND="Agg", TMPDIR=str(tmp))
    env.pop("TVM_MP_TUTORIAL_OUT", None)  # the tutorial's own default: a temporary directory
    before = snapshot()
    proc = subprocess.run([sys.executable, str(path)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert not changes(before, snapshot()), changes(before, snapshot())
    # nor into the working directory (sphinx-gallery runs tutorials from the tutorials folder)
    assert not list(cwd.iterdir()), list(cwd.iterdir())


def test_there_are_tutorials_and_the_gallery_header():
    assert TUTORIALS
    assert (TUTORIALS[0].parent / "README.txt").is_file()  # sphinx-gallery refuses a folder without it


def test_snapshot_sees_a_new_file(tmp_path):
    (tmp_path / "a.txt").write_text("a")
    before = snapshot(tmp_path)
    (tmp_path / "pareto.png").write_bytes(b"x")
    (tmp_path / "a.txt").write_text("bb")
    assert changes(before, snapshot(tmp_path)) == ["new: pareto.png", "changed: a.txt"]


def test_gallery_orders_tutorials_by_number():
    import importlib.util as iu

    spec = iu.spec_from_file_location("_sorting", TUTORIALS[0].parents[1] / "docs" / "_sorting.py")
    sorting = iu.module_from_spec(spec)
    spec.loader.exec_module(sorting)
    key = sorting.TutorialNumberSortKey("tutorials")
    names = sorted((p.name for p in TUTORIALS), key=key)
    numbers = [int(n.split("_")[1]) for n in names]
    assert numbers == sorted(numbers) and "tutorial_10_tune_then_compile.py" in names
