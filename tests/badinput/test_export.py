"""``CompiledModel.export`` to every kind of destination.

Class: the rule is "a new directory (parents are created), an empty one, or a previous export, which is replaced
as a whole"; a directory holding other files is refused and left untouched, as are a path that is or is under a
file and a place that cannot be written. Everything is written next to the destination first, so a failed export
never leaves a half-written artifact. The cases export the loaded digits model (export copies its model.so).
"""

import os

import pytest

from ._corpus import Case, cli_case, judge, run_cases
from ._models import exact, loaded, samples


def _roundtrip(out, art):
    import tvm_mp

    model = tvm_mp.load(out)
    x = samples(art)
    exact(model.run(x), loaded(art).run(x))
    exact(model.reference(x), loaded(art).reference(x))


def _leftovers(parent):
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name)


def _export_new(art, cid, sub):
    out = art.scratch(cid) / sub
    got = loaded(art).export(out)
    assert got == out
    _roundtrip(out, art)
    assert not _leftovers(out.parent), _leftovers(out.parent)
    return sorted(p.name for p in out.iterdir())


def _export_twice(art):
    out = art.scratch("export-twice") / "art"
    model = loaded(art)
    model.export(out)
    first = (out / "plan.json").read_text()
    model.export(out)
    assert (out / "plan.json").read_text() == first
    _roundtrip(out, art)
    assert not _leftovers(out.parent)
    return "ok"


def _export_over_previous_with_bundle(art):
    """A previous export's files are all replaced: a bundle/ another target left behind is removed."""
    out = art.scratch("export-over-bundle") / "art"
    model = loaded(art)
    model.export(out)
    (out / "bundle").mkdir()
    (out / "bundle" / "model.c").write_text("/* from an aarch64 export */")
    model.export(out)
    assert not (out / "bundle").exists()
    _roundtrip(out, art)
    return "ok"


def _export_into_existing_empty(art):
    out = art.scratch("export-empty-dir") / "empty"
    out.mkdir()
    loaded(art).export(out)
    _roundtrip(out, art)
    return "ok"


def _export_refused_untouched(art, cid, setup):
    """The export is refused and what was there is left as it was."""
    import tvm_mp

    base = art.scratch(cid)
    out = setup(base)
    before = {p.name: p.read_bytes() for p in base.rglob("*") if p.is_file()}
    try:
        loaded(art).export(out)
    except tvm_mp.Error:
        after = {p.name: p.read_bytes() for p in base.rglob("*") if p.is_file()}
        assert after == before, "a refused export changed the files there"
        assert not _leftovers(base)
        raise
    raise AssertionError("export accepted")


def foreign_file(base):
    out = base / "results"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    return out


def foreign_subdir(base):
    out = base / "results"
    (out / "data").mkdir(parents=True)
    (out / "data" / "x.npy").write_bytes(b"\x93NUMPY")
    return out


def previous_plus_foreign(base):
    out = base / "art"
    out.mkdir()
    for name in ("plan.json", "report.json", "model.so"):
        (out / name).write_text("old")
    (out / "train.py").write_text("print('mine')")
    return out


def a_file(base):
    out = base / "artifact"
    out.write_text("a file")
    return out


def under_a_file(base):
    (base / "artifact").write_text("a file")
    return base / "artifact" / "sub" / "dir"


def _export_to(art, path):
    loaded(art).export(path)


def _export_read_only(art):
    """A read-only directory (chmod 500): refused. Root writes through the mode bits, so as root the export is
    expected to work instead (see test_case's skip)."""
    base = art.scratch("export-read-only") / "ro"
    base.mkdir(exist_ok=True)
    os.chmod(base, 0o500)
    try:
        loaded(art).export(base / "art")
    finally:
        os.chmod(base, 0o700)


def _export_after_failed(art):
    """An export refused over a previous one (a stray file there) leaves the previous export loadable."""
    import tvm_mp

    out = art.scratch("export-after-failed") / "art"
    model = loaded(art)
    model.export(out)
    (out / "stray.txt").write_text("x")
    try:
        model.export(out)
    except tvm_mp.Error:
        pass
    else:
        raise AssertionError("export among foreign files accepted")
    (out / "stray.txt").unlink()
    _roundtrip(out, art)
    return "ok"


CASES = [
    Case("export-new-nested", _export_new, "ok", args=("export-new", "a/b/c")),
    Case("export-twice", _export_twice, "ok"),
    Case("export-over-previous-bundle", _export_over_previous_with_bundle, "ok"),
    Case("export-existing-empty", _export_into_existing_empty, "ok"),
    Case("export-after-refused", _export_after_failed, "ok"),
    Case("export-foreign-file", _export_refused_untouched, "error", "not a tvm-mp export",
         args=("export-foreign", foreign_file)),
    Case("export-foreign-subdir", _export_refused_untouched, "error", "data",
         args=("export-foreign-dir", foreign_subdir)),
    Case("export-previous-plus-foreign", _export_refused_untouched, "error", "train.py",
         args=("export-prev-foreign", previous_plus_foreign)),
    Case("export-to-a-file", _export_refused_untouched, "error", "is a file", args=("export-file", a_file)),
    Case("export-under-a-file", _export_refused_untouched, "error", "is a file", args=("export-under", under_a_file)),
    Case("export-into-proc", _export_to, "error", "cannot write", args=("/proc/tvm-mp-export",)),
    Case("export-under-proc-self", _export_to, "error", "cannot write", args=("/proc/self/tvm-mp/art",)),
    Case("export-read-only-dir", _export_read_only, "error", "cannot write"),
    Case("export-none", _export_to, "error", "directory path", args=(None,)),
    Case("export-empty-string", _export_to, "error", "directory path", args=("",)),
    Case("export-int", _export_to, "error", "directory path", args=(3,)),
    cli_case("cli-compile-output-not-empty", ["compile", "{onnx}", "--shape", "input=1,1,8,8", "--plan", "w8a8",
                                              "--calibration", "{calib_npy}", "-o", "{scratch}/../.."],
             "not a tvm-mp export"),
    cli_case("cli-compile-output-is-file", ["compile", "{onnx}", "--shape", "input=1,1,8,8", "--plan", "w8a8",
                                            "--calibration", "{calib_npy}", "-o", "{calib_npy}"], "is a file"),
]

#: Cases that need a user the file mode bits bind (root writes into a chmod 500 directory).
NOT_AS_ROOT = {"export-read-only-dir"}


@pytest.fixture(scope="module")
def outcomes(isolator, art):
    root = os.geteuid() == 0
    return run_cases(isolator, art, [c for c in CASES if not (root and c.id in NOT_AS_ROOT)])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_case(case, outcomes):
    if case.id in NOT_AS_ROOT and os.geteuid() == 0:
        pytest.skip("running as root: chmod does not stop root's writes (export-into-proc covers an unwritable "
                    "place)")
    judge(case, outcomes[case.id])
