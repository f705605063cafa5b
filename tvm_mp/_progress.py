"""When to draw a progress bar: every tqdm bar of the library asks :func:`show_progress`.

``progress=False`` never draws one; ``True`` or ``None`` (automatic: long runs only) draw one only when stderr is a
terminal, so logs, pipes, tests and the documentation build never get bar fragments.
"""

from __future__ import annotations

import sys


def stderr_is_terminal() -> bool:
    try:
        return bool(sys.stderr is not None and sys.stderr.isatty())
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


def show_progress(progress: bool | None, long_run: bool = True) -> bool:
    """True when a bar should be drawn: ``progress`` is not False, stderr is a terminal, and (for ``None``) the
    run is long (``long_run``)."""
    if progress is False:
        return False
    if progress is None and not long_run:
        return False
    return stderr_is_terminal()
