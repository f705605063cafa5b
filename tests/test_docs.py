"""The documentation builds with warnings as errors, executing every tutorial (sphinx-gallery), and the build
writes nothing into the repository: docs/ and tutorials/ are copied into a temporary directory and built there."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests._snapshot import ROOT, changes, snapshot

TUTORIALS = sorted((ROOT / "tutorials").glob("tutorial_*.py"))


@pytest.mark.slow
def test_docs_build_with_warnings_as_errors(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT / "docs", src / "docs", ignore=shutil.ignore_patterns("_build", "auto_tutorials",
                                                                              "sg_execution_times.rst"))
    shutil.copytree(ROOT / "tutorials", src / "tutorials", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "html"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               TMPDIR=str(tmp_path), MPLBACKEND="Agg")
    before = snapshot()
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                           str(src / "docs"), str(out)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert not changes(before, snapshot()), changes(before, snapshot())
    assert sorted(p.name for p in (src / "tutorials").iterdir() if p.name != "__pycache__") == sorted(
        p.name for p in (ROOT / "tutorials").iterdir() if p.name != "__pycache__")  # tutorials wrote nothing there
    for tutorial in TUTORIALS:
        page = (out / "auto_tutorials" / f"{tutorial.stem}.html").read_text()
        assert "sphx-glr-script-out" in page, tutorial.stem  # executed, its output captured
        assert not re.search(r"\d+it/s|\d+%\|", page), f"{tutorial.stem}: a progress bar in the page"
        assert "Warning:" not in page, f"{tutorial.stem}: a warning in the page"
    figures = {p.name for p in (out / "_images").glob("sphx_glr_tutorial_*_0*.png")}
    for stem in ("tutorial_1_quick_start", "tutorial_3_pareto_and_operating_points",
                 "tutorial_5_accelerator_energy"):
        assert f"sphx_glr_{stem}_001.png" in figures, figures  # matplotlib figures captured
    api = (out / "api.html").read_text()
    assert "tvm_mp.compile" in api and "tvm_mp.passes.AnnotatePrecision" in api and "tvm_mp.driver" in api
    assert (out / "design.html").is_file() and (out / "benchmarks.html").is_file()
