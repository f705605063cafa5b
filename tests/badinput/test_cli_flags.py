"""The command line's manners: a user mistake is one ``tvm-mp: error:`` line and exit code 2 (argparse's usage
errors too); a bug is one ``tvm-mp: internal error:`` line and exit code 1; ``--debug`` (before or after the
command) prints the full traceback instead; the file system refusing a path is a user error, Ctrl-C exit 130."""


from ._corpus import Case, cli_case, corpus_tests
from ._helpers import file_cli_case, one_error_line

BAD_PLAN = ["compile", "{onnx}", "--shape", "input=1,1,8,8", "--calibration", "{calib_npy}", "--plan", "w9a4",
            "-o", "{scratch}/out"]


def _run(art, id, argv):
    from ._corpus import _run_cli_case

    return _run_cli_case(art, id, tuple(argv))


def _debug_traceback(art, id, argv, error_class):
    """``--debug``: the error is re-raised, so the traceback (ending in the error) is printed; exit code 1."""
    result = _run(art, id, argv)
    assert result.code == 1, (result.code, result.stderr)
    assert "Traceback (most recent call last)" in result.stderr, result.stderr
    assert f"{error_class}:" in result.stderr.strip().splitlines()[-1], result.stderr
    assert "tvm-mp: error:" not in result.stderr and "internal error" not in result.stderr, result.stderr
    return result.code


_RAISE = {
    "bug": lambda: {}["missing"],
    "zero": lambda: 1 / 0,
    "permission": lambda: (_ for _ in ()).throw(PermissionError(13, "Permission denied", "/srv/out/model.so")),
    "no-space": lambda: (_ for _ in ()).throw(OSError(28, "No space left on device")),
    "interrupt": lambda: (_ for _ in ()).throw(KeyboardInterrupt()),
    "multiline": lambda: (_ for _ in ()).throw(__import__("tvm_mp").Error("first line\n  second line")),
}


def _patched(art, id, raise_kind, debug, code, needle):
    """``tvm-mp report DIR`` whose command raises ``raise_kind`` (a bug, the file system, Ctrl-C, ...)."""
    import tvm_mp.cli

    def command(args):
        _RAISE[raise_kind]()

    tvm_mp.cli.cmd_report = command  # this process is a fork of its own: nothing else sees the patch
    result = _run(art, id, ["report", "{scratch}"] + (["--debug"] if debug else []))
    if debug:
        assert result.code == 1 and "Traceback (most recent call last)" in result.stderr, result.stderr
        return result.code
    return one_error_line(result, code, needle)


def _debug_case(id, argv, error_class):
    return Case(id, _debug_traceback, "ok", args=(id, tuple(argv), error_class))


def _patched_case(id, raise_kind, code, needle, debug=False):
    return Case(id, _patched, "ok", args=(id, raise_kind, debug, code, needle))


CASES = [
    # -- --debug, before or after the command ---------------------------------------------------------------------
    _debug_case("debug-before-command", ["--debug"] + BAD_PLAN, "PlanError"),
    _debug_case("debug-after-command", BAD_PLAN + ["--debug"], "PlanError"),
    _debug_case("debug-with-verbose", ["-v", "--debug", "report", "{scratch}"], "Error"),
    _debug_case("debug-cost-model-command", ["cost-model", "eval", "--records", "{scratch}", "--debug"],
                "CostModelError"),
    _debug_case("debug-target", ["--debug", "compile", "{onnx}", "--plan", "w4a4", "--calibration", "digits",
                                 "-o", "{scratch}/o", "--target", "cuda"], "TargetError"),
    cli_case("no-debug-one-line", BAD_PLAN, "1 to 8"),
    # -- bugs and the environment ---------------------------------------------------------------------------------
    _patched_case("internal-error-key", "bug", 1, "tvm-mp: internal error: KeyError: 'missing' (rerun with --debug"),
    _patched_case("internal-error-zero", "zero", 1, "internal error: ZeroDivisionError: division by zero"),
    _patched_case("internal-error-debug", "zero", 1, "", debug=True),
    _patched_case("permission-denied", "permission", 2, "tvm-mp: error: Permission denied: /srv/out/model.so"),
    _patched_case("disk-full", "no-space", 2, "tvm-mp: error: No space left on device"),
    _patched_case("interrupted", "interrupt", 130, "tvm-mp: interrupted"),
    _patched_case("error-made-one-line", "multiline", 2, "tvm-mp: error: first line second line"),
    # -- argparse's own usage errors are exit 2 with one error line -------------------------------------------------
    cli_case("usage-no-command", [], "required"),
    cli_case("usage-unknown-command", ["compiel", "{onnx}"], "invalid choice"),
    cli_case("usage-unknown-option", ["layers", "{onnx}", "--shapes", "input=1,1,8,8"], "unrecognized arguments"),
    cli_case("usage-missing-output", ["compile", "{onnx}", "--plan", "w4a4"], "-o/--output"),
    cli_case("usage-bad-int", ["tune", "{onnx}", "--plan", "w2a2", "--key", "k", "--trials", "many"],
             "invalid int value"),
    cli_case("usage-bad-choice", ["compile", "{onnx}", "--plan", "w4a4", "-o", "x", "--calibration-method", "max"],
             "invalid choice"),
    cli_case("usage-cost-model-no-command", ["cost-model"], "required"),
    cli_case("version", ["--version"], "tvm-mp ", expect="cli_ok"),
    # -- -v / -q keep the one error line ----------------------------------------------------------------------------
    cli_case("quiet-still-errors", ["-q"] + BAD_PLAN, "1 to 8"),
    cli_case("quiet-after-command", BAD_PLAN + ["-q"], "1 to 8"),
    cli_case("verbose-after-command", BAD_PLAN + ["-vv"], "1 to 8"),
    # -- output paths -----------------------------------------------------------------------------------------------
    file_cli_case("explore-output-is-a-file", {"taken": "x"},
                  ["explore", "{onnx}", "--calibration", "digits", "-o", "{scratch}/taken"], "is a file"),
    file_cli_case("explore-output-under-a-file", {"taken": "x"},
                  ["explore", "{onnx}", "--calibration", "digits", "-o", "{scratch}/taken/front"],
                  "cannot create the output directory"),
    file_cli_case("demo-output-is-a-file", {"taken": "x"}, ["demo", "-o", "{scratch}/taken"], "is a file"),
]


outcomes, test_case = corpus_tests(CASES)
