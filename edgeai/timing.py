"""The timing loop and its statistics: what every latency number in edgeai is measured with.

Timings use ``time.perf_counter_ns``. A :class:`StopRule` ends a loop after a number of iterations
or a duration; :func:`run_streams` runs the loop in parallel streams (throughput hints).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeai.errors import EdgeAIError

PERCENTILES = (50, 90, 95, 99)
#: Default stop rule: 1000 timed runs per config (p99 then rests on its 10 slowest runs) or 10 s,
#: whichever comes first, and never fewer than MIN_ITERATIONS.
AUTO_ITERATIONS = 1000
AUTO_SECONDS = 10.0
MIN_ITERATIONS = 10


@dataclass(frozen=True)
class LatencyStats:
    """Per-run latencies in milliseconds."""

    n: int
    p50: float
    p90: float
    p95: float
    p99: float
    mean: float
    std: float
    min: float
    max: float

    @classmethod
    def from_ns(cls, samples_ns: Sequence[int]) -> LatencyStats:
        """Statistics of per-run nanoseconds (linear-interpolated percentiles, population std)."""
        if len(samples_ns) == 0:
            raise EdgeAIError("no timed runs: increase iterations or duration")
        ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
        p = np.percentile(ms, PERCENTILES)
        return cls(len(ms), *(float(v) for v in p), float(ms.mean()), float(ms.std()), float(ms.min()),
                   float(ms.max()))

    @property
    def p99_reliable(self) -> bool:
        """True when at least 10 runs lie above p99; with fewer, p99 is close to the single max."""
        return self.n >= 1000

    def to_dict(self) -> dict[str, float]:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class StopRule:
    """When a timed loop stops: after ``iterations`` runs, after ``duration`` seconds, or both (first wins)."""

    iterations: int | None
    duration: float | None
    min_iterations: int = MIN_ITERATIONS  # with a duration: never stop before this many runs

    @classmethod
    def make(cls, iterations: int | None = None, duration: float | None = None) -> StopRule:
        """``iterations`` or ``duration`` (not both); neither: the default of 1000 runs or 10 s."""
        if iterations is not None and duration is not None:
            raise EdgeAIError(f"give iterations or duration, not both (got iterations={iterations}, "
                              f"duration={duration}); or neither for the default ({AUTO_ITERATIONS} runs or "
                              f"{AUTO_SECONDS:g} s)")
        if iterations is None and duration is None:
            return cls(AUTO_ITERATIONS, AUTO_SECONDS)
        if (iterations is not None and iterations < 1) or (duration is not None and duration <= 0):
            raise EdgeAIError(f"iterations must be >= 1 and duration > 0; got iterations={iterations}, "
                              f"duration={duration}")
        return cls(iterations, duration)

    def split(self, rounds: int) -> StopRule:
        """The share of one round when the budget is spread over ``rounds`` interleaved rounds."""
        return StopRule(None if self.iterations is None else max(1, -(-self.iterations // rounds)),
                        None if self.duration is None else self.duration / rounds,
                        max(1, -(-self.min_iterations // rounds)))

    def describe(self) -> str:
        parts = ([f"{self.iterations} runs"] if self.iterations else []) + \
                ([f"{self.duration:g} s"] if self.duration else [])
        return " or ".join(parts) + (", whichever first" if len(parts) == 2 else "")


def time_loop(fn: Callable[[], Any], *, iterations: int | None = None, duration: float | None = None,
              min_iterations: int = MIN_ITERATIONS) -> list[int]:
    """Call ``fn`` repeatedly; return per-call nanoseconds.

    Stops after ``iterations`` calls, or once ``duration`` seconds have passed and at least
    ``min_iterations`` calls were made; with both, whichever comes first.
    """
    if iterations is None and duration is None:
        raise EdgeAIError("give iterations or duration")
    clock = time.perf_counter_ns
    out: list[int] = []
    deadline = clock() + int(duration * 1e9) if duration else None
    limit = iterations if iterations is not None else 2**62
    floor = min(min_iterations, limit)
    while len(out) < limit:
        t0 = clock()
        fn()
        t1 = clock()
        out.append(t1 - t0)
        if deadline is not None and t1 >= deadline and len(out) >= floor:
            break
    return out


def timing_overhead_ns(iterations: int = 20000) -> float:
    """Median cost of the timing loop itself (timing an empty callable), in nanoseconds."""
    return float(np.median(time_loop(lambda: None, iterations=iterations)))


def run_streams(fn: Callable[[], Any], streams: int, rule: StopRule) -> tuple[list[int], int]:
    """Run ``fn`` under ``rule`` in ``streams`` threads started together; (all samples, wall ns)."""
    if streams == 1:
        t0 = time.perf_counter_ns()
        samples = time_loop(fn, iterations=rule.iterations, duration=rule.duration, min_iterations=rule.min_iterations)
        return samples, time.perf_counter_ns() - t0
    results: list[list[int]] = [[] for _ in range(streams)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(streams + 1)

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = time_loop(fn, iterations=rule.iterations, duration=rule.duration,
                                   min_iterations=rule.min_iterations)
        except BaseException as e:  # re-raised in the caller's thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(streams)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter_ns()
    for t in threads:
        t.join()
    wall = time.perf_counter_ns() - t0
    if errors:
        raise errors[0]
    return [s for r in results for s in r], wall
