"""Latency benchmarks: a timing loop, its statistics, and a matrix over models x devices x batches.

Warm-up (and the first inference, the cold start) is reported apart from steady state. Timings use
``time.perf_counter_ns``. The matrix runs every config in ONE process and interleaves them in rounds,
so machine noise hits all configs alike; speedups are medians of per-round p50 ratios.
"""

from __future__ import annotations

import os
import platform
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeai.errors import EdgeAIError

PERCENTILES = (50, 90, 95, 99)


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
        if not samples_ns:
            raise EdgeAIError("no timed runs: increase iterations or duration")
        ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
        p = np.percentile(ms, PERCENTILES)
        return cls(len(ms), *(float(v) for v in p), float(ms.mean()), float(ms.std()), float(ms.min()),
                   float(ms.max()))

    def to_dict(self) -> dict[str, float]:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class BenchReport:
    """One config's result: steady-state stats, cold start, throughput, memory, and what ran."""

    name: str
    latency: LatencyStats
    batch: int
    streams: int
    throughput: float  # items per second (batch * runs / wall time), across all streams
    first_inference_ms: float  # the first run after loading, before warm-up
    load_time_s: float | None  # session creation / compile time
    peak_rss_mb: float
    runtime: dict[str, Any]  # RuntimeInfo.to_dict(): engine, devices in effect, precision, threads
    samples_ms: tuple[float, ...] = field(default=(), repr=False)
    status: str = "ok"  # or "unsupported: <reason>"

    def to_dict(self, samples: bool = False) -> dict[str, Any]:
        d = {"name": self.name, "status": self.status, "batch": self.batch, "streams": self.streams,
             "latency_ms": self.latency.to_dict() if self.latency else None,
             "throughput_items_s": round(self.throughput, 3), "first_inference_ms": round(self.first_inference_ms, 4),
             "load_time_s": self.load_time_s, "peak_rss_mb": round(self.peak_rss_mb, 1), "runtime": self.runtime}
        if samples:
            d["samples_ms"] = list(self.samples_ms)
        return d


def peak_rss_mb() -> float:
    try:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss / 1024 if platform.system() != "Darwin" else rss / 2**20
    except ImportError:  # Windows
        return float("nan")


def machine_info() -> dict[str, Any]:
    """CPU model, cores, features and engine versions: what makes results comparable across boxes."""
    from edgeai.cpu import cpu_info

    versions: dict[str, str] = {}
    for mod in ("onnxruntime", "openvino", "torch", "numpy"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            pass
    import edgeai

    return {"cpu": cpu_info().to_dict(), "platform": platform.platform(), "python": platform.python_version(),
            "edgeai": edgeai.__version__, "engines": versions,
            "env_threads": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ}}


def time_loop(fn: Callable[[], Any], *, iterations: int | None = None, duration: float | None = None,
              min_iterations: int = 10) -> list[int]:
    """Call ``fn`` repeatedly; return per-call nanoseconds. Stops at ``iterations`` or ``duration``."""
    if iterations is None and duration is None:
        raise EdgeAIError("give iterations or duration")
    clock = time.perf_counter_ns
    out: list[int] = []
    deadline = clock() + int(duration * 1e9) if duration else None
    limit = iterations if iterations is not None else 10**9
    while len(out) < limit:
        t0 = clock()
        fn()
        t1 = clock()
        out.append(t1 - t0)
        if deadline is not None and t1 >= deadline and len(out) >= min_iterations:
            break
    return out


def _with_batch(model: Any, inputs: Mapping[str, np.ndarray] | None, batch: int, seed: int = 0) -> dict:
    from edgeai.specs import make_inputs

    if inputs is not None:
        return dict(inputs)
    return make_inputs(model.inputs, {"batch": batch}, seed=seed)


def benchmark(model: Any, inputs: Mapping[str, np.ndarray] | None = None, *, warmup: int = 10,
              iterations: int | None = None, duration: float | None = None, batch: int = 1, streams: int = 1,
              name: str | None = None) -> BenchReport:
    """Time ``model.run`` on ``inputs`` (random at ``batch`` when None).

    Args:
        model: a :class:`~edgeai.Model` (or anything with ``run(feeds)``, ``inputs`` and ``describe()``).
        warmup: runs before timing (not timed); the very first run is reported as first inference.
        iterations / duration: stop after this many timed runs per stream, or after this many seconds.
            Default: 200 iterations.
        streams: threads running the same model at once (OpenVINO benchmark_app's streams); the stats
            are over all runs and throughput is aggregate.

    Returns:
        A :class:`BenchReport`.
    """
    if iterations is None and duration is None:
        iterations = 200
    if streams < 1 or warmup < 0 or (iterations is not None and iterations < 1):
        raise EdgeAIError("streams and iterations must be >= 1 and warmup >= 0")
    feeds = _with_batch(model, inputs, batch)
    items = next(iter(feeds.values())).shape[0] if feeds and next(iter(feeds.values())).ndim else 1
    t0 = time.perf_counter_ns()
    model.run(feeds)
    first_ms = (time.perf_counter_ns() - t0) / 1e6
    for _ in range(warmup):
        model.run(feeds)
    results: list[list[int]] = [[] for _ in range(streams)]
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            results[i] = time_loop(lambda: model.run(feeds), iterations=iterations, duration=duration)
        except BaseException as e:  # re-raised in the caller's thread
            errors.append(e)

    wall0 = time.perf_counter()
    if streams == 1:
        worker(0)
    else:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(streams)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    wall = time.perf_counter() - wall0
    if errors:
        raise errors[0]
    samples = [s for r in results for s in r]
    info = model.describe()
    return BenchReport(name or f"{info.engine}:{info.device}", LatencyStats.from_ns(samples), items, streams,
                       items * len(samples) / wall, first_ms, info.load_time_s, peak_rss_mb(), info.to_dict(),
                       tuple(round(s / 1e6, 5) for s in samples))


def timing_overhead_ns(iterations: int = 20000) -> float:
    """Median cost of the timing loop itself (timing an empty callable), in nanoseconds."""
    return float(np.median(time_loop(lambda: None, iterations=iterations)))


@dataclass(frozen=True)
class MatrixResult:
    """Every config of a matrix run, with speedups against the baseline config at the same batch."""

    reports: tuple[BenchReport, ...]
    speedups: dict[str, float]  # "name|batch" -> median over rounds of baseline p50 / config p50
    baseline: str | None
    rounds: int
    machine: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"machine": self.machine, "baseline": self.baseline, "rounds": self.rounds,
                "timing_overhead_ns": round(timing_overhead_ns(2000), 1),
                "results": [dict(r.to_dict(samples=False), speedup=self.speedups.get(f"{r.name}|{r.batch}"))
                            for r in self.reports]}


@dataclass
class _Config:
    name: str
    model: Any
    batch: int
    feeds: dict[str, np.ndarray]
    first_ms: float = 0.0
    rounds: list[list[int]] = field(default_factory=list)
    status: str = "ok"


def bench_matrix(models: Sequence[tuple[str, Any]], batches: Sequence[int] = (1,), *, warmup: int = 10,
                 iterations: int = 200, rounds: int = 5, baseline: str | None = None,
                 inputs: Mapping[str, np.ndarray] | None = None) -> MatrixResult:
    """Benchmark ``(name, Model)`` pairs at each batch size in one process, interleaved in rounds.

    Each round runs ``iterations // rounds`` timed calls of every config in turn, so drift in the
    machine (thermal, other processes) lands on all configs alike. A config that cannot run at a
    batch size (a static-shape model, say) is marked ``unsupported`` with the reason.
    """
    from edgeai.errors import EdgeAIError as _Err

    configs: list[_Config] = []
    for name, model in models:
        for b in batches:
            cfg = _Config(name, model, b, _with_batch(model, inputs, b, seed=b))
            try:
                t0 = time.perf_counter_ns()
                model.run(cfg.feeds)
                cfg.first_ms = (time.perf_counter_ns() - t0) / 1e6
                for _ in range(warmup):
                    model.run(cfg.feeds)
            except _Err as e:
                cfg.status = f"unsupported: {str(e).splitlines()[0][:160]}"
            configs.append(cfg)
    per_round = max(1, iterations // max(1, rounds))
    for _ in range(rounds):
        for cfg in configs:
            if cfg.status == "ok":
                cfg.rounds.append(time_loop(lambda c=cfg: c.model.run(c.feeds), iterations=per_round))
    reports = []
    for cfg in configs:
        info = cfg.model.describe().to_dict()
        if cfg.status != "ok":
            reports.append(BenchReport(cfg.name, None, cfg.batch, 1, 0.0, 0.0, info.get("load_time_s"),  # type: ignore[arg-type]
                                       peak_rss_mb(), info, (), cfg.status))
            continue
        samples = [s for r in cfg.rounds for s in r]
        stats = LatencyStats.from_ns(samples)
        reports.append(BenchReport(cfg.name, stats, cfg.batch, 1, cfg.batch * 1e3 / stats.mean, cfg.first_ms,
                                   info.get("load_time_s"), peak_rss_mb(), info,
                                   tuple(round(s / 1e6, 5) for s in samples)))
    base = baseline or (models[0][0] if models else None)
    speedups: dict[str, float] = {}
    by_key = {(c.name, c.batch): c for c in configs}
    for cfg in configs:
        ref = by_key.get((base, cfg.batch))
        if cfg.status != "ok" or ref is None or ref.status != "ok":
            continue
        ratios = [np.median(rb) / np.median(rc) for rb, rc in zip(ref.rounds, cfg.rounds, strict=True)]
        speedups[f"{cfg.name}|{cfg.batch}"] = round(float(np.median(ratios)), 3)
    return MatrixResult(tuple(reports), speedups, base, rounds, machine_info())
