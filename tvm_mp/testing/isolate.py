"""Run one user action in its own process with a timeout, and say what kind of outcome it had.

The bad-input corpus (``tests/badinput/``) runs a few hundred user mistakes through the API and the CLI. Each one
must run in a fresh process (a crash, a hang or a leaked global must not touch the next case), but starting Python
and importing TVM costs about 4 s. So a *fork server* imports ``tvm_mp`` once, and each case is a fork of it: a
case costs its own work plus a few milliseconds. The fork server never runs a TVM kernel itself (TVM's thread pool
does not survive a fork), only the children do.

A case is a picklable callable (a module-level function, or a :func:`functools.partial` of one). Its outcome is an
:class:`Outcome`:

``ok``      returned normally (the return value, if it pickles, is kept; warnings raised are recorded)
``error``   raised a :class:`tvm_mp.errors.Error` (a mistake reported the product's way)
``raw``     raised any other exception (a defect: a traceback would reach the user)
``hang``    still running at the timeout (killed)
``crash``   the process died (signal or ``os._exit``) without a result

:func:`cli` wraps a ``tvm-mp`` command line as a case: it runs :func:`tvm_mp.cli.main` with stdout and stderr
captured at the file-descriptor level and returns a :class:`CliResult`.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Literal

OutcomeKind = Literal["ok", "error", "raw", "hang", "crash"]
#: Imported once by the fork server: what nearly every case imports (the corpus modules import pytest; load_onnx
#: imports onnxslim, ~1.5 s with its sympy). A module missing here is skipped by multiprocessing.
PRELOAD = ["tvm", "tvm_mp", "tvm_mp.cli", "tvm_mp.driver", "numpy", "pytest", "onnxslim"]


@dataclass(frozen=True)
class Outcome:
    """What one case did. ``error_class`` is the exception's class name (``error``/``raw``), ``message`` its text
    (or why the process ended), ``warnings`` the messages of every warning raised, ``value`` what the case
    returned (``ok``), ``seconds`` its wall time."""

    kind: OutcomeKind
    error_class: str = ""
    message: str = ""
    warnings: tuple[str, ...] = ()
    value: Any = None
    seconds: float = 0.0
    trace: str = field(default="", repr=False)

    def describe(self) -> str:
        text = f"{self.kind}"
        if self.error_class:
            text += f" {self.error_class}"
        if self.message:
            text += f": {self.message}"
        if self.trace:
            text += "\n" + self.trace
        return text


@dataclass(frozen=True)
class CliResult:
    """A ``tvm-mp`` command line's exit code and what it printed."""

    code: int
    stdout: str
    stderr: str


def _child(call: Callable[[], Any], conn) -> None:
    from tvm_mp.errors import Error

    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = call()
            result = dict(kind="ok", value=value)
        except Error as err:
            result = dict(kind="error", error_class=type(err).__name__, message=str(err))
        except BaseException as err:  # noqa: B036 -- every escape is an outcome to classify
            result = dict(kind="raw", error_class=type(err).__name__, message=str(err),
                          trace=traceback.format_exc())
    result["warnings"] = tuple(str(w.message) for w in caught)
    result["seconds"] = time.perf_counter() - start
    try:
        conn.send(result)
    except Exception:  # the return value does not pickle: keep the kind, drop the value
        result["value"] = repr(result.get("value"))[:200]
        conn.send(result)
    conn.close()
    os._exit(0)  # no atexit handlers, no TVM teardown in a forked child


class Isolator:
    """A fork server that runs cases, at most ``jobs`` at a time. Use as a context manager (or call
    :meth:`close`)."""

    def __init__(self, jobs: int = 2, preload: Iterable[str] = PRELOAD):
        self.jobs = jobs
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(list(preload))

    def run(self, call: Callable[[], Any], timeout_s: float = 60.0) -> Outcome:
        return self.run_many([call], timeout_s)[0]

    def run_many(self, calls: list[Callable[[], Any]], timeout_s: float = 60.0) -> list[Outcome]:
        """Run every call in its own process, ``jobs`` at a time; outcomes in the order of ``calls``."""
        outcomes: list[Outcome | None] = [None] * len(calls)
        pending = list(enumerate(calls))
        running: dict[int, tuple[Any, Any, float]] = {}
        while pending or running:
            while pending and len(running) < self.jobs:
                index, call = pending.pop(0)
                recv, send = self._ctx.Pipe(duplex=False)
                proc = self._ctx.Process(target=_child, args=(call, send), daemon=True)
                proc.start()
                send.close()
                running[index] = (proc, recv, time.perf_counter())
            for index, (proc, recv, start) in list(running.items()):
                outcome = None
                if recv.poll():
                    try:
                        data = recv.recv()
                        outcome = Outcome(**data)
                    except EOFError:
                        outcome = None
                    proc.join(10)
                    if outcome is None:
                        outcome = Outcome("crash", message=f"exit code {proc.exitcode}")
                elif not proc.is_alive():
                    proc.join()
                    outcome = Outcome("crash", message=f"exit code {proc.exitcode}",
                                      seconds=time.perf_counter() - start)
                elif time.perf_counter() - start > timeout_s:
                    proc.kill()
                    proc.join()
                    outcome = Outcome("hang", message=f"still running after {timeout_s:g} s",
                                      seconds=time.perf_counter() - start)
                if outcome is not None:
                    recv.close()
                    outcomes[index] = outcome
                    del running[index]
            if running:
                time.sleep(0.01)
        return outcomes  # type: ignore[return-value]

    def close(self) -> None:
        """Nothing to release per run: the fork server lives as long as this Python process (multiprocessing
        stops it at exit)."""

    def __enter__(self) -> "Isolator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _run_cli(argv: list[str], cwd: str | None = None) -> CliResult:
    from tvm_mp.cli import main

    if cwd is not None:
        os.chdir(cwd)  # a forked child: the server's directory is untouched
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        import sys

        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        sys.stdout = io.TextIOWrapper(os.fdopen(os.dup(1), "wb"), write_through=True)
        sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(2), "wb"), write_through=True)
        try:
            try:
                code = main(argv)
            except SystemExit as stop:  # argparse usage errors
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            except BaseException:  # noqa: B036 -- an escaping exception is printed like Python would
                traceback.print_exc()
                code = 1
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        out.seek(0)
        err.seek(0)
        return CliResult(int(code or 0), out.read(), err.read())


def cli(*argv: str, cwd: str | os.PathLike | None = None):
    """A case that runs ``tvm-mp ARGV...`` (in directory ``cwd``) and returns its :class:`CliResult`."""
    import functools

    return functools.partial(_run_cli, [str(a) for a in argv], None if cwd is None else str(cwd))
