"""The bad-input corpus: cases, the artifacts they share, and the rule that judges each outcome.

A case is a module-level function ``fn(art, *args)`` that acts as a user would (API call or ``tvm-mp`` command line)
on the shared :class:`Artifacts`; it runs in its own forked process (:mod:`tvm_mp.testing.isolate`) with a timeout.
``expect`` says the exact kind of outcome the product must give:

``error``      a :class:`tvm_mp.errors.Error` (of class ``error`` when given) whose message is one line and
               contains ``match`` (case-insensitive)
``ok``         accepted; the case function itself asserts that the result is right (e.g. ``run`` equals
               ``reference``), so a silent difference fails as ``raw AssertionError``
``warn``       accepted, with a warning whose message contains ``match``
``cli_error``  the command exits with code 2, prints ``tvm-mp: error: ...`` containing ``match`` and no traceback
``cli_ok``     the command exits with code 0 (``match``, if given, is in its stdout or stderr)

No case may end as ``raw``, ``hang`` or ``crash``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import pytest

from tvm_mp.testing.isolate import CliResult, Outcome

Expect = Literal["error", "ok", "warn", "cli_error", "cli_ok"]


@dataclass(frozen=True)
class Artifacts:
    """Files every case may use (built once per test session; cases must not modify them -- copy first)."""

    root: Path         # a scratch directory; cases write under root / "scratch" / <case id>
    onnx: Path         # the bundled digits CNN, input "input" (1, 1, 8, 8)
    compiled: Path     # that model compiled at w8a8 and exported (model.so, plan.json, report.json, ...)
    plan_json: Path    # a valid plan file for it (w4a4)
    calib_npy: Path    # a valid calibration array (16, 1, 8, 8)

    def scratch(self, name: str) -> Path:
        path = self.root / "scratch" / name
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass(frozen=True)
class Case:
    id: str
    fn: Callable[..., Any]
    expect: Expect
    match: str = ""
    error: str = ""
    args: tuple = ()
    timeout_s: float = 120.0

    def call(self, art: Artifacts):
        return functools.partial(self.fn, art, *self.args)


def cli_case(id: str, argv: list[str], match: str = "", expect: Expect = "cli_error",
             timeout_s: float = 120.0) -> Case:
    """A command-line case. Arguments may name the artifacts as ``{onnx}``, ``{compiled}``, ``{plan_json}``,
    ``{calib_npy}`` and the case's own scratch directory as ``{scratch}``."""
    return Case(id, _run_cli_case, expect, match, args=(id, tuple(argv)), timeout_s=timeout_s)


def _run_cli_case(art: Artifacts, id: str, argv: tuple[str, ...]) -> CliResult:
    from tvm_mp.testing.isolate import _run_cli

    names = dict(onnx=art.onnx, compiled=art.compiled, plan_json=art.plan_json, calib_npy=art.calib_npy,
                 scratch=art.scratch(id))
    return _run_cli([a.format(**names) for a in argv])


def judge(case: Case, outcome: Outcome) -> None:
    """Assert that ``outcome`` is the outcome ``case`` expects (the assertion message says what happened)."""
    got = outcome.describe()
    assert outcome.kind not in ("raw", "hang", "crash"), f"{case.id}: {got}"
    needle = case.match.lower()
    if case.expect == "error":
        assert outcome.kind == "error", f"{case.id}: expected a tvm-mp error, got {got}"
        assert outcome.message.strip() and "\n" not in outcome.message.strip(), f"{case.id}: not one line: {got}"
        assert "Traceback" not in outcome.message, got
        assert needle in outcome.message.lower(), f"{case.id}: {case.match!r} not in: {outcome.message}"
        if case.error:
            assert outcome.error_class == case.error, f"{case.id}: expected {case.error}, got {got}"
        return
    if case.expect in ("ok", "warn"):
        assert outcome.kind == "ok", f"{case.id}: expected acceptance, got {got}"
        if case.expect == "warn":
            assert any(needle in w.lower() for w in outcome.warnings), \
                f"{case.id}: no warning with {case.match!r}; warnings: {outcome.warnings}"
        return
    assert outcome.kind == "ok", f"{case.id}: the CLI runner itself failed: {got}"
    result: CliResult = outcome.value
    text = result.stdout + result.stderr
    assert "Traceback" not in text, f"{case.id}: traceback printed:\n{result.stderr}"
    if case.expect == "cli_ok":
        assert result.code == 0, f"{case.id}: exit {result.code}:\n{result.stderr}"
        assert needle in text.lower(), f"{case.id}: {case.match!r} not printed:\n{text}"
        return
    assert result.code == 2, f"{case.id}: exit {result.code}, expected 2:\n{result.stderr}"
    lines = [line for line in result.stderr.splitlines() if line.startswith("tvm-mp") and "error:" in line]
    assert lines, f"{case.id}: no 'tvm-mp: error:' line:\n{result.stderr}"
    assert needle in result.stderr.lower(), f"{case.id}: {case.match!r} not in:\n{result.stderr}"


def run_cases(isolator, art: Artifacts, cases: list[Case]) -> dict[str, Outcome]:
    """Every case of a module, two at a time, grouped by timeout; outcomes by case id."""
    ids = [c.id for c in cases]
    assert len(set(ids)) == len(ids), "duplicate case ids"
    outcomes: dict[str, Outcome] = {}
    for timeout in sorted({c.timeout_s for c in cases}):
        group = [c for c in cases if c.timeout_s == timeout]
        for case, outcome in zip(group, isolator.run_many([c.call(art) for c in group], timeout_s=timeout)):
            outcomes[case.id] = outcome
    return outcomes


def corpus_tests(cases: list[Case], prepare: Callable[[Artifacts], Any] | None = None):
    """The two pytest objects of a corpus module: a module-scoped ``outcomes`` fixture (``prepare(art)`` first, then
    every case in forked children) and the parametrized ``test_case`` judging each outcome. Use as
    ``outcomes, test_case = corpus_tests(CASES, prepare=...)`` at module level."""

    @pytest.fixture(scope="module")
    def outcomes(isolator, art):
        if prepare is not None:
            prepare(art)
        return run_cases(isolator, art, cases)

    @pytest.mark.parametrize("case", cases, ids=lambda c: c.id)
    def test_case(case, outcomes):
        judge(case, outcomes[case.id])

    return outcomes, test_case
