"""Calibration data: samples read through :mod:`edgeai.feeds` (every form users keep data in) and
collected into a list with a progress bar. ``None`` means ``random:32``, with a warning.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeai.errors import InputMismatchError
from edgeai.feeds import check_sample, is_random, load_samples, parse_random
from edgeai.progress import progress
from edgeai.specs import TensorSpec

__all__ = ["collect_samples", "load_samples", "check_sample", "is_random"]


def collect_samples(source: Any, specs: Sequence[TensorSpec], limit: int | None = None, *,
                    description: str = "calibration samples") -> list[dict[str, np.ndarray]]:
    """Read and check calibration samples into a list, with a progress bar over the samples.

    ``source`` is any form :func:`load_samples` takes; ``None`` means ``random:32`` (with a warning).
    """
    source = "random:32" if source is None else source
    total = _count(source, limit)
    samples = []
    with progress(description, total=total) as advance:
        for feed in load_samples(source, specs, limit=limit):
            samples.append(feed)
            advance()
    return samples


def _count(source: Any, limit: int | None) -> int | None:
    """How many samples a source will give, where that is cheap to know (for the progress bar)."""
    n: int | None = None
    if isinstance(source, (list, tuple)):
        n = len(source)
    elif is_random(source):
        with contextlib.suppress(InputMismatchError):  # a bad count is reported when samples are read
            n = parse_random(str(source), default=32)
    elif isinstance(source, (str, Path)) and Path(source).is_dir():
        n = sum(1 for p in Path(source).iterdir() if p.suffix in (".npy", ".npz"))
    if n is None:
        return limit
    return min(n, limit) if limit is not None else n
