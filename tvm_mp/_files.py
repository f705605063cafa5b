"""Atomic file writes: a reader, a crash or a SIGKILL sees the old file or the new one, never a part of either.

Every file tvm-mp rewrites (the tuning database, cost models, artifact directories, reports, plots, Pareto fronts,
record-store compaction) goes through :func:`write_atomic` (the bytes or text are known) or :func:`atomic_path` (a
library writes the file itself: ``export_library``, ``savefig``). Both write beside the destination, in the same
directory (so the rename never crosses a file system), then ``os.replace`` it onto the destination, which POSIX
makes atomic. The replaced file's permission bits are kept; a new file gets what a plain ``open`` would give.

``durable=True`` also ``fsync``s the file before the rename and the directory after it, so the new content survives
a power loss, not only a killed process (a few milliseconds a file: used for the files that hold measurements --
tuning database, cost models, records). A kill between writing and renaming leaves a hidden temporary beside the
destination (``.NAME.*.tmp``), never the destination half written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import Error


class FileWriteError(Error, OSError):
    """A file cannot be written (missing or read-only directory, a directory in the way, disk full)."""


def _umask() -> int:
    """The process umask, read without changing it (os.umask's read-and-restore races with other threads)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _mode_for(out: Path) -> int | None:
    """Permission bits the new file gets: those of the file it replaces, or None when there is none."""
    try:
        return out.stat().st_mode & 0o7777
    except FileNotFoundError:
        return None


def _check_destination(out: Path) -> None:
    if out.is_dir():
        raise FileWriteError(f"cannot write {out}: it is a directory; give a file path")
    if not out.parent.is_dir():
        what = "is not a directory" if out.parent.exists() else "does not exist"
        raise FileWriteError(f"cannot write {out}: its directory {out.parent} {what}")


def _fail(out: Path, err: OSError) -> FileWriteError:
    reason = err.strerror or str(err)
    return FileWriteError(f"cannot write {out}: {reason} (the previous file, if any, is unchanged)")


def fsync_dir(directory: str | Path) -> None:
    """Flush a directory entry change (a rename) to disk; a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: str | Path, data: bytes | str, durable: bool = False, encoding: str = "utf-8") -> Path:
    """Replace ``path`` with ``data`` atomically (see the module docstring); returns the path.

    Raises :class:`FileWriteError` (one line) when the file cannot be written; the old file is then unchanged and
    no temporary is left behind.
    """
    out = Path(path)
    _check_destination(out)
    payload = data.encode(encoding) if isinstance(data, str) else bytes(data)
    mode = _mode_for(out)
    if mode is None:
        mode = 0o666 & ~_umask()
    tmp_name = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, out)
        tmp_name = None
    except OSError as err:
        raise _fail(out, err) from None
    finally:
        if tmp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
    if durable:
        fsync_dir(out.parent)
    return out


@contextlib.contextmanager
def atomic_path(path: str | Path, durable: bool = False) -> Iterator[Path]:
    """A path to write instead of ``path``; when the block ends without an exception, it replaces ``path``.

    The temporary has the destination's own name (inside a hidden directory beside it), so writers that choose
    the format by the suffix (``savefig``, ``export_library``) write what they would have written to ``path``.
    """
    out = Path(path)
    _check_destination(out)
    try:
        workdir = tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    except OSError as err:
        raise _fail(out, err) from None
    tmp = Path(workdir) / out.name
    try:
        yield tmp
        if not tmp.is_file():
            raise FileWriteError(f"cannot write {out}: the writer produced no file")
        try:
            mode = _mode_for(out)
            if mode is not None:
                os.chmod(tmp, mode)
            if durable:
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            os.replace(tmp, out)
        except OSError as err:
            raise _fail(out, err) from None
        if durable:
            fsync_dir(out.parent)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
