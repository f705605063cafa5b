"""What a run wrote into the repository: a snapshot of every file (path, mtime, size) outside caches."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Directories no tutorial or build output is judged by (caches of Python and the tools).
SKIP_DIRS = {".git", "__pycache__", ".pytest_cache", ".hypothesis", ".ruff_cache"}


def snapshot(root: Path = ROOT) -> dict[str, tuple[int, int]]:
    files = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for name in filenames:
            path = Path(dirpath) / name
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            files[str(path.relative_to(root))] = (st.st_mtime_ns, st.st_size)
    return files


def changes(before: dict, after: dict) -> list[str]:
    """Files that appeared, changed or disappeared between two snapshots."""
    out = [f"new: {p}" for p in sorted(set(after) - set(before))]
    out += [f"changed: {p}" for p in sorted(set(after) & set(before)) if after[p] != before[p]]
    out += [f"removed: {p}" for p in sorted(set(before) - set(after))]
    return out
