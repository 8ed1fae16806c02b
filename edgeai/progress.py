"""Progress bars for long steps, and the console they draw on.

Foundation: any layer may show progress (calibration, a quantization search, a deploy pipeline).
A bar shows only on a terminal; ``--json`` and non-terminal output turn it off.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

_quiet = False


def set_quiet(quiet: bool) -> None:
    """--json and non-terminal output turn progress bars off."""
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    """Whether output should stay quiet (``--json``); libraries that print their own bars ask this."""
    return _quiet


def console(stderr: bool = False) -> Any:
    """A rich Console that prints plain text (no markup), 160 columns wide off a terminal."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, markup=False, soft_wrap=False, width=None if sys.stdout.isatty() else 160)


_active = False  # one progress display at a time: a stage inside a pipeline stays on the outer bar


@contextlib.contextmanager
def progress(description: str, total: int | None = None) -> Iterator[Callable[..., None]]:
    """A rich progress bar on a terminal; a no-op when output is not a terminal, --json is given, or
    another bar is already showing (so a pipeline keeps one display). ``advance(description=...)``
    may also rename the bar, to show the stage now running."""
    global _active
    if _quiet or _active or not sys.stderr.isatty():
        yield lambda description=None: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    _active = True
    try:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console(stderr=True), transient=True) as bar:
            task = bar.add_task(description, total=total)
            yield lambda description=None: bar.update(task, advance=1, description=description)
    finally:
        _active = False
