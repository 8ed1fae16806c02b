"""The ``edgeai`` command line: one module per command; each parses options, makes one deferred
import of the API it calls, calls it, and renders the result through ``edgeai.summaries``.

Exit codes: 0 success, 1 a failed check (parity out of tolerance), 2 bad usage or bad input.
"""

from __future__ import annotations

from edgeai.cli import (  # noqa: F401  (each module registers its command)
    bench,
    check,
    demo,
    deploy,
    devices,
    export,
    fleet,
    generate,
    info,
    quantize,
    run,
)
from edgeai.cli.app import app, main

__all__ = ["app", "main"]
