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
    """The default for ``precision``: the same one ``edgeai check`` applies to that precision in
    effect (:meth:`Tolerance.for_precision`), so quantize and check give one verdict on one data set.

    INT8 and FP16 are judged by each output's task metric, by kind (top-1 for class scores,
    decision and absolute difference for probabilities, relative error for regressions, cosine and
    relative error for hidden states); ``task`` is not needed here: the judge reads the export's
    task and ``output_kinds`` from the file.
    """
    return Tolerance.for_precision(precision)


def resolve_tolerance(tolerance: Any, precision: str, task: str | None = None) -> Any:
    """A Tolerance is used as given; a dict of limits (``{"min_cosine": 0.99}``, ``{"kinds":
    {"logits": "classification"}}``, ``{"thresholds": {"max_abs_diff": 0.05}}``) overrides only
    those on the default for ``precision``; None is the default."""
    if tolerance is None or isinstance(tolerance, dict):
        return default_tolerance(precision, task).with_overrides(**(tolerance or {}))
    return tolerance


def parity_record(report: Any) -> dict[str, Any]:
    """What a quantized file's metadata (and a bundle's manifest) keeps of a parity report: the
    verdict, the data and sample count it rests on, the worst output's numbers, the warnings."""
    worst = report.worst
    return {"passed": report.passed, "verdict": report.verdict(), "data": report.data, "samples": report.samples,
            "warnings": list(report.warnings), "cosine": round(worst.cosine, 6),
            "top1": None if worst.top1 is None else round(worst.top1, 4),
            "kinds": {o.name: o.kind for o in report.outputs},
            "failures": [f"{o.name}: {f}" for o in report.outputs for f in o.failures]}


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
