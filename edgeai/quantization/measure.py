"""What every quantization result is judged by: parity against the FP32 file and latency on the target.

Shared by the single modes and by ``auto``: default tolerances by task, the evaluation feeds, parity
on the target device, and interleaved latency of FP32 and the candidates in one process.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeai.bench import bench_matrix
from edgeai.errors import EdgeAIError, QuantizationError
from edgeai.parity import Tolerance, compare
from edgeai.runtimes import load


def default_tolerance(precision: str, task: str | None = None) -> Any:
    """INT8: cosine >= 0.995 on every output, plus top-1 agreement >= 99% for classifiers.

    ``task`` comes from the export's metadata. A known non-classification task (feature-extraction,
    text-generation, ...) drops the top-1 criterion: the argmax of an embedding means nothing. An
    unknown task keeps it, and parity applies it only to classifier-shaped outputs (2-D logits).
    """
    from dataclasses import replace

    tol = Tolerance.for_precision(precision)
    if task and "classification" not in task:
        tol = replace(tol, min_top1=None)
    return tol


def resolve_tolerance(tolerance: Any, precision: str, task: str | None = None) -> Any:
    """A Tolerance is used as given; a dict of limits (``{"min_cosine": 0.99}``) overrides only those
    limits on the default for ``precision`` and ``task``; None is the default."""
    if tolerance is None or isinstance(tolerance, dict):
        return default_tolerance(precision, task).with_overrides(**(tolerance or {}))
    return tolerance


def load_on(path: Path, device: str, what: str) -> Any:
    """Load a candidate on the target device; failing to compile or run there is a QuantizationError."""
    try:
        return load(path, device)
    except EdgeAIError as e:
        raise QuantizationError(f"the {what} model does not load on {device}: {e}") from e


def parity_on(reference: Any, candidate: Any, feeds: list[dict], tolerance: Any, what: str) -> Any:
    """``edgeai.compare`` of a loaded candidate against the loaded FP32 reference."""
    try:
        return compare(reference, candidate, feeds, tolerance=tolerance)
    except EdgeAIError as e:
        raise QuantizationError(f"the {what} model does not run on {candidate.device}: {e}") from e


def timing_feed(feeds: Sequence[dict]) -> dict[str, np.ndarray]:
    """Batch 1 of the first evaluation feed: the latency an edge app sees per request."""
    return {k: (v[:1] if np.ndim(v) else v) for k, v in feeds[0].items()}


def latencies(models: Sequence[tuple[str, Any]], feed: dict[str, np.ndarray], *, iterations: int = 100,
              rounds: int = 5, warmup: int = 5) -> dict[str, dict[str, float | None]]:
    """p50 latency of each model and its speedup over the first one, measured interleaved.

    Uses :func:`edgeai.bench.bench_matrix`: every round runs every model in turn, so load on the
    machine hits all of them alike, and the speedup is the median of per-round p50 ratios.
    """
    result = bench_matrix(list(models), (1,), warmup=warmup, iterations=iterations, rounds=rounds,
                          baseline=models[0][0], inputs=feed)
    out: dict[str, dict[str, float | None]] = {}
    for r in result.reports:
        p50 = r.latency.p50 if r.latency is not None else None
        out[r.name] = {"p50_ms": None if p50 is None else round(p50, 4),
                       "speedup": result.speedups.get(f"{r.name}|1")}
    return out


@contextlib.contextmanager
def quiet_ort_quantization() -> Iterator[None]:
    """onnxruntime.quantization logs advice on the root logger ("consider pre-processing", axis
    warnings for 1-D weights) that edgeai has already acted on; keep it off users' terminals."""

    def drop(record: logging.LogRecord) -> bool:
        return "/onnxruntime/quantization/" not in record.pathname.replace("\\", "/")

    root = logging.getLogger()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)
