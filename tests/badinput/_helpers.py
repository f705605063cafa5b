"""Helpers the corpus modules share for files: files written before a command line runs, and the one-line check
of --debug / internal errors (the digits module and other models are in ``_models``)."""

from __future__ import annotations

import json
from pathlib import Path

from ._corpus import Artifacts, Case, Expect, _run_cli_case


def literal(text: str) -> str:
    """``text`` as a command-line argument of :func:`~._corpus.cli_case` (its braces are not placeholders)."""
    return text.replace("{", "{{").replace("}", "}}")


def write(path: Path, content) -> Path:
    """Write ``content`` to ``path``: bytes or text as they are, ``None`` makes a directory, anything else JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if content is None:
        path.mkdir(exist_ok=True)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        path.write_text(json.dumps(content))
    return path


def _cli_with_files(art: Artifacts, id: str, files: tuple, argv: tuple):
    scratch = art.scratch(id)
    for name, content in files:
        write(scratch / name, content)
    return _run_cli_case(art, id, argv)


def file_cli_case(id: str, files: dict, argv: list[str], match: str = "", expect: Expect = "cli_error",
                  timeout_s: float = 120.0) -> Case:
    """A command line run after ``files`` (name -> content, see :func:`write`) are written into the case's scratch
    directory (``{scratch}`` in ``argv``)."""
    return Case(id, _cli_with_files, expect, match, args=(id, tuple(files.items()), tuple(argv)),
                timeout_s=timeout_s)


def one_error_line(result, code: int, needle: str) -> str:
    """Assert a CLI result ended with ``code`` and exactly one ``tvm-mp: ...`` line holding ``needle``, no
    traceback; return that line."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.code == code, (result.code, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("tvm-mp: "), result.stderr
    assert needle.lower() in lines[0].lower(), lines[0]
    return lines[0]
