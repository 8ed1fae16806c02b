"""What every quantization result is judged by: parity against the FP32 file and latency on the target.

Shared by the single modes and by ``auto``: default tolerances by task, the evaluation feeds, parity
on the target device, and interleaved latency of FP32 and the candidates in one process.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeai.bench import bench_matrix, time_loop
from edgeai.errors import EdgeAIError, QuantizationError
from edgeai.metrics import samples_needed
from edgeai.parity import Tolerance, compare
from edgeai.runtimes import load
from edgeai.speedup import SpeedDecision, measure_until_decided


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


DEFAULT_EVAL_SAMPLES = 16  # a cosine-only tolerance: a worst case over this many feeds


def default_eval_samples(tolerance: Any) -> int:
    """Evaluation feeds by default: enough that an agreement rate the tolerance asks for can be shown
    (``samples_needed(1.0, min_top1)``: 381 for 99% top-1 at 95% confidence), else 16."""
    rate = getattr(tolerance, "min_top1", None)
    needed = samples_needed(1.0, rate) if rate else None
    return max(DEFAULT_EVAL_SAMPLES, needed or 0)


def describe_evaluation(feeds: Any, specs: Sequence[Any], tolerance: Any, wanted: int) -> dict[str, Any]:
    """What the verdicts rest on: source, feeds, rows (samples along the batch axis) and, for an
    agreement rate, how many rows it needs; ``warning`` when the data has fewer."""
    axes = batch_axes(specs)
    rows = 0
    for feed in feeds:
        name = next((k for k in feed if k in axes), None)
        rows += int(np.shape(feed[name])[axes[name]]) if name is not None and np.ndim(feed[name]) > axes[name] else 1
    out: dict[str, Any] = {"source": getattr(feeds, "source", None), "kind": getattr(feeds, "kind", None),
                           "feeds": len(feeds), "rows": rows, "asked": wanted}
    rate = getattr(tolerance, "min_top1", None)
    if rate:
        needed = samples_needed(1.0, rate)
        out["rows_needed_for_top1"] = needed
        if needed is not None and rows < needed:
            out["warning"] = (f"top-1 agreement >= {rate:.0%} rests on {rows} rows; {needed} are needed to show it "
                              "at 95% confidence (give more evaluation data with --data)")
    return out


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


BATCH_NAMES = ("batch", "batch_size", "n", "b", "n_batch", "batchsize")


def batch_axes(specs: Sequence[Any]) -> dict[str, int]:
    """Input name -> the axis that is its batch, for inputs that have one.

    An axis is a batch axis when its symbolic name says so (``batch``, ``batch_size``, ``N``),
    wherever it sits (Silero's state is ``[2, batch, 128]``); failing that, when every input's
    first axis is the same symbol. Fixed axes (a model exported at batch 8) and other symbols
    (``seq``, ``frames``) are never batch axes: a feed keeps the size it was given there.
    """
    axes: dict[str, int] = {}
    for s in specs:
        for i, d in enumerate(s.shape):
            if isinstance(d, str) and d.lower() in BATCH_NAMES:
                axes[s.name] = i
                break
    if axes:
        return axes
    firsts = {s.shape[0] if s.rank else None for s in specs if s.rank}
    if len(firsts) == 1 and isinstance(next(iter(firsts)), str):
        return {s.name: 0 for s in specs if s.rank}
    return {}


def timing_feed(feeds: Sequence[dict], specs: Sequence[Any] | None = None) -> dict[str, np.ndarray]:
    """One request of the first evaluation feed: the latency an edge app sees per call.

    Inputs with a batch axis (see :func:`batch_axes`) are cut to batch 1 there; every other axis,
    and every input of a model without a batch axis (a fixed batch of 8, a first axis that is a
    sequence), keeps the shape the evaluation data has, which the model accepts.
    """
    axes = batch_axes(specs or [])
    out = {}
    for k, v in feeds[0].items():
        axis = axes.get(k)
        out[k] = np.take(v, [0], axis=axis) if axis is not None and np.ndim(v) > axis else v
    return out


def latencies(models: Sequence[tuple[str, Any]], feed: dict[str, np.ndarray], *, iterations: int = 100,
              rounds: int = 5, warmup: int = 5) -> dict[str, dict[str, Any]]:
    """p50 latency of each model and its speed-up over the first one, measured interleaved.

    Uses :func:`edgeai.bench.bench_matrix`: every round runs every model in turn, so load on the
    machine hits all of them alike. The speed-up is :mod:`edgeai.speedup`'s estimate over the
    per-round p50s (geometric mean with an interval), and the p50s reported are the geometric
    means of the per-round p50s, so ``fp32_p50 / p50 == speedup`` exactly.
    """
    result = bench_matrix(list(models), (1,), warmup=warmup, iterations=iterations, rounds=rounds,
                          baseline=models[0][0], inputs=feed)
    out: dict[str, dict[str, Any]] = {}
    for r in result.reports:
        est = result.intervals.get(f"{r.name}|{r.batch}")
        out[r.name] = {"p50_ms": None if est is None else round(est.candidate_ms, 5),
                       "speedup": None if est is None else round(est.speedup, 4),
                       "interval": None if est is None else [round(est.low, 4), round(est.high, 4)],
                       "estimate": est}
    return out


def _round_iterations(models: Sequence[Any], feed: dict[str, np.ndarray], round_s: float, most: int) -> int:
    """Runs per model per round: about ``round_s`` seconds for the slowest model, 3 to ``most``."""
    slowest = 0.0
    for m in models:
        for _ in range(2):  # warm: the first runs allocate
            m.run(feed)
        slowest = max(slowest, min(time_loop(lambda m=m: m.run(feed), iterations=3)) / 1e9)
    return int(min(most, max(3, round_s / max(slowest, 1e-6))))


def speed_decision(baseline: Any, candidate: Any, feed: dict[str, np.ndarray], min_speedup: float | None, *,
                   min_rounds: int = 5, max_rounds: int = 40, time_budget_s: float | None = 30.0,
                   round_s: float = 0.3, max_iterations: int = 100) -> SpeedDecision:
    """Is ``candidate`` at least ``min_speedup`` times faster than ``baseline`` on ``feed``?

    Interleaved rounds (:func:`interleaved_round`) decided by :func:`decide_rounds`.
    """
    iterations = _round_iterations([baseline, candidate], feed, round_s, max_iterations)
    return decide_rounds(interleaved_round(baseline, candidate, feed, iterations), min_speedup,
                         min_rounds=min_rounds, max_rounds=max_rounds, time_budget_s=time_budget_s)


def interleaved_round(baseline: Any, candidate: Any, feed: dict[str, np.ndarray],
                      iterations: int) -> Callable[[], tuple[float, float]]:
    """A round runner: ``iterations`` timed runs of each model, the order alternating between
    rounds; returns the two medians in ms."""
    turn = [0]

    def run_round() -> tuple[float, float]:
        pair = [baseline, candidate] if turn[0] % 2 == 0 else [candidate, baseline]
        turn[0] += 1
        times = [float(np.median(time_loop(lambda m=m: m.run(feed), iterations=iterations))) / 1e6 for m in pair]
        return (times[0], times[1]) if pair[0] is baseline else (times[1], times[0])

    return run_round


def decide_rounds(run_round: Callable[[], tuple[float, float]], min_speedup: float | None, *, min_rounds: int = 5,
                  max_rounds: int = 40, time_budget_s: float | None = 30.0) -> SpeedDecision:
    """``auto``'s speed gate over rounds from ``run_round`` (``(baseline_ms, candidate_ms)`` each).

    :func:`edgeai.speedup.measure_until_decided`: at least ``min_rounds`` rounds, then more while
    the interval straddles ``min_speedup``, up to ``max_rounds`` or ``time_budget_s`` (then
    ``undecided``). ``min_speedup=None`` runs ``min_rounds`` rounds and decides against 1.0, for
    the record only.
    """
    gate = 1.0 if min_speedup is None else min_speedup
    rounds = max(2, min_rounds)
    return measure_until_decided(run_round, gate, min_rounds=rounds,
                                 max_rounds=rounds if min_speedup is None else max(rounds, max_rounds),
                                 time_budget_s=time_budget_s)


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
