"""Latency benchmarks: a timing loop, its statistics, and a matrix over models x devices x batches.

Cold start (loading: file parse + session creation / compile, then the first inference) is
reported apart from warm-up and from steady state. Timings use ``time.perf_counter_ns``. The matrix
runs every config in ONE process and interleaves them in rounds (rotating the order each round),
so machine noise hits all configs alike; a speed-up is the geometric mean of per-round p50 ratios with
a 95% interval over rounds (:mod:`edgeai.speedup`, the estimator ``quantize --mode auto`` decides with), and the
spread of the per-round p50s is the noise a later run is compared against (``edgeai.benchcompare``).

Timing on CUDA: ``Model.run`` returns host numpy arrays, so each timed call ends with the
device-to-host copy of the outputs, which waits for the GPU; no extra synchronization is needed.
(Untested here: this machine has no GPU.)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeai.device_strings import devices as available_devices
from edgeai.errors import DeviceUnavailableError, EdgeAIError, InputMismatchError
from edgeai.machine import (
    current_rss_mb,
    device_memory_mb,
    machine_info,
    peak_rss_mb,
    physical_cores,
)
from edgeai.onnxfile import save_onnx
from edgeai.runtimes import load, parse_device
from edgeai.specs import make_inputs
from edgeai.speedup import SpeedupEstimate, estimate_from_rounds
from edgeai.timing import (
    LatencyStats,
    StopRule,
    run_streams,
    time_loop,
    timing_overhead_ns,
)

__all__ = ["LatencyStats", "StopRule", "BenchConfig", "BenchReport", "MatrixResult", "benchmark", "bench_matrix",
           "batch_feeds", "time_loop", "timing_overhead_ns", "run_streams", "machine_info", "peak_rss_mb",
           "current_rss_mb", "device_memory_mb", "physical_cores"]

@dataclass(frozen=True)
class BenchConfig:
    """One model on one device with its load options: a row family of a matrix.

    ``model`` is an ``.onnx`` path (or, with ``device="torch"``, any model source), loaded (and timed)
    by the benchmark; or an already loaded :class:`~edgeai.Model`, whose engine load time is used.
    """

    name: str
    model: Any
    device: str = "cpu"
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        src = self.model if isinstance(self.model, (str, os.PathLike)) else getattr(self.model, "source", None)
        return {"name": self.name, "model": None if src is None else str(src), "device": self.device,
                "options": {k: (v if isinstance(v, (int, float, str, bool, type(None), dict, list)) else str(v))
                            for k, v in self.options.items()}}


@dataclass(frozen=True)
class BenchReport:
    """One config at one batch size: steady-state stats, cold start, warm-up, throughput, memory, what ran.

    ``status`` is ``ok``, ``unsupported: <reason>`` (the device, precision or batch size cannot be
    had; nothing else was run in its place) or ``failed: <reason>`` (the engine raised).
    """

    name: str
    latency: LatencyStats | None
    batch: int
    streams: int
    throughput: float  # items per second across all streams: batch * runs / wall time
    first_inference_ms: float | None  # first run at this batch size, before warm-up
    load_time_s: float | None  # session creation / compile, as the engine measured it
    peak_rss_mb: float  # process-wide peak so far
    runtime: dict[str, Any]  # RuntimeInfo.to_dict(): engine, devices in effect, precision, threads
    samples_ms: tuple[float, ...] = field(default=(), repr=False)
    status: str = "ok"
    load_ms: float | None = None  # wall time of edgeai.load (parse + session creation), when timed here
    # load_ms + the first inference after loading; for a Model loaded elsewhere, the engine's own load
    # time + the first inference in this benchmark (which is the true first only if it had not run).
    cold_start_ms: float | None = None
    warmup: LatencyStats | None = None  # the warm-up runs after the first inference
    round_p50_ms: tuple[float, ...] = ()  # p50 of each interleaved round: the measured noise
    model_rss_mb: float | None = None  # resident memory added by loading this model
    device_memory_mb: float | None = None
    config: dict[str, Any] = field(default_factory=dict)  # what was asked: model, device, options
    stop: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def noise(self) -> float | None:
        """Half the spread of the per-round p50s, relative to their median (None under 2 rounds)."""
        if len(self.round_p50_ms) < 2:
            return None
        r = np.asarray(self.round_p50_ms)
        return float((r.max() - r.min()) / 2 / np.median(r))

    def to_dict(self, samples: bool = False) -> dict[str, Any]:
        def rnd(v: float | None, k: int = 4) -> float | None:
            return None if v is None else round(float(v), k)

        d = {"name": self.name, "status": self.status, "batch": self.batch, "streams": self.streams,
             "latency_ms": self.latency.to_dict() if self.latency else None,
             "round_p50_ms": [round(v, 5) for v in self.round_p50_ms], "noise": rnd(self.noise),
             "throughput_items_s": rnd(self.throughput, 3), "load_ms": rnd(self.load_ms, 3),
             "load_time_s": rnd(self.load_time_s, 5), "first_inference_ms": rnd(self.first_inference_ms),
             "cold_start_ms": rnd(self.cold_start_ms, 3),
             "warmup_ms": self.warmup.to_dict() if self.warmup else None,
             "peak_rss_mb": rnd(self.peak_rss_mb, 1), "model_rss_mb": rnd(self.model_rss_mb, 1),
             "device_memory_mb": rnd(self.device_memory_mb, 1), "stop": self.stop, "config": self.config,
             "runtime": self.runtime}
        if samples:
            d["samples_ms"] = list(self.samples_ms)
        return d


# --- the machinery shared by benchmark() and bench_matrix() ------------------------------------------

@dataclass
class _Loaded:
    config: BenchConfig
    model: Any = None
    load_ms: float | None = None
    rss_mb: float | None = None
    status: str = "ok"
    first_run_ms: float | None = None  # the first inference after loading, at the first batch


@dataclass
class _Cell:
    loaded: _Loaded
    batch: int
    feeds: dict[str, Any] = field(default_factory=dict)
    items: int = 0
    status: str = "ok"
    first_ms: float | None = None
    warmup_ns: list[int] = field(default_factory=list)
    rounds: list[list[int]] = field(default_factory=list)
    walls: list[int] = field(default_factory=list)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


def _load(config: BenchConfig, strict: bool) -> _Loaded:
    out = _Loaded(config)
    if hasattr(config.model, "run") and hasattr(config.model, "describe"):
        out.model = config.model
        return out

    parse_device(config.device)  # an unknown device string is bad input, not an unsupported cell
    rss0 = current_rss_mb()
    t0 = time.perf_counter_ns()
    try:
        out.model = load(config.model, config.device, **dict(config.options))
    except DeviceUnavailableError as e:  # the device or precision cannot be had here: say so, run nothing else
        if strict:
            raise
        out.status = f"unsupported: {_first_line(e)}"
        return out
    out.load_ms = (time.perf_counter_ns() - t0) / 1e6
    out.rss_mb = current_rss_mb() - rss0
    return out


def batch_feeds(model: Any, batch: int, dims: Mapping[str, int] | None = None, seed: int = 0) -> dict[str, Any]:
    """Random feeds at ``batch``; an input whose batch axis is fixed at another size is an InputMismatchError."""
    sizes = dict(dims or {})
    for s in model.inputs:
        if s.rank and isinstance(s.shape[0], int) and s.shape[0] != batch:
            raise InputMismatchError(f"input {s.name!r} has a static batch of {s.shape[0]} ({s.dtype} "
                                     f"{s.shape_str()}); it cannot run batch {batch}. Load or export it with a "
                                     "dynamic batch axis, or benchmark that batch size only")
        if s.rank and isinstance(s.shape[0], str):
            sizes[s.shape[0]] = batch
    return make_inputs(model.inputs, {"batch": batch, **sizes}, seed=seed)


def _prepare(cell: _Cell, inputs: Mapping[str, Any] | None, dims: Mapping[str, int] | None, warmup: int,
             strict: bool) -> None:
    model = cell.loaded.model
    try:
        cell.feeds = dict(inputs) if inputs is not None else batch_feeds(model, cell.batch, dims, seed=cell.batch)
        first = next(iter(cell.feeds.values()), None)
        cell.items = int(first.shape[0]) if first is not None and getattr(first, "ndim", 0) else cell.batch
        t0 = time.perf_counter_ns()
        model.run(cell.feeds)
        cell.first_ms = (time.perf_counter_ns() - t0) / 1e6
        if cell.loaded.first_run_ms is None:
            cell.loaded.first_run_ms = cell.first_ms
        cell.warmup_ns = [time_loop(lambda: model.run(cell.feeds), iterations=1)[0] for _ in range(warmup)]
    except InputMismatchError as e:  # a static shape or fixed batch that this batch size does not fit
        if strict:
            raise
        cell.status = f"unsupported: {_first_line(e)}"
    except EdgeAIError as e:
        if strict:
            raise
        cell.status = f"failed: {_first_line(e)}"


def _report(cell: _Cell, streams: int, rule: StopRule) -> BenchReport:
    loaded = cell.loaded
    info = loaded.model.describe().to_dict() if loaded.model is not None else {}
    cold = None
    if loaded.first_run_ms is not None:
        load_ms = loaded.load_ms if loaded.load_ms is not None else (info.get("load_time_s") or 0.0) * 1e3
        cold = load_ms + loaded.first_run_ms
    common = {"load_ms": loaded.load_ms, "cold_start_ms": cold, "model_rss_mb": loaded.rss_mb,
              "config": loaded.config.to_dict(), "stop": rule.describe()}
    status = loaded.status if loaded.status != "ok" else cell.status
    if status != "ok":
        return BenchReport(loaded.config.name, None, cell.batch, streams, 0.0, cell.first_ms, info.get("load_time_s"),
                           peak_rss_mb(), info, status=status, **common)
    samples = [s for r in cell.rounds for s in r]
    stats = LatencyStats.from_ns(samples)
    throughput = cell.items * len(samples) / (sum(cell.walls) / 1e9)
    return BenchReport(loaded.config.name, stats, cell.items, streams, throughput, cell.first_ms,
                       info.get("load_time_s"), peak_rss_mb(), info, tuple(round(s / 1e6, 5) for s in samples),
                       warmup=LatencyStats.from_ns(cell.warmup_ns) if cell.warmup_ns else None,
                       round_p50_ms=tuple(round(float(np.median(r)) / 1e6, 5) for r in cell.rounds),
                       device_memory_mb=device_memory_mb(info), **common)


ENGINE_WARMUP = "each engine was warmed up on a dummy model first"


def _import_engines(configs: Sequence[BenchConfig]) -> None:
    """Import the engines and warm each one up before timing a load.

    Cold start measures loading *this* model, not ``import openvino`` nor the engine's one-time
    set-up (onnxruntime's first session costs ~100 ms more than the next, whichever model it is):
    without this the first config in the list would pay for every other one.
    """
    paths = [c for c in configs if isinstance(c.model, (str, os.PathLike))]
    if paths:
        available_devices()
    for device in dict.fromkeys(str(c.device) for c in paths if str(c.device).lower() != "torch"):
        _warm_up_engine(device)
    if any(str(c.device).lower() == "torch" for c in configs):
        import torch

        torch.nn.Linear(4, 4)(torch.zeros(1, 4))  # torch's first op pays its own one-time set-up


def _warm_up_engine(device: str) -> None:
    """Load and run a one-node model on ``device`` (errors are left to the real load to report)."""
    import tempfile

    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "warmup", [x], [y])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = min(proto.ir_version, onnx.IR_VERSION, 9)
    try:
        with tempfile.TemporaryDirectory(prefix=".edgeai-warmup-") as tmp:
            path = save_onnx(proto, os.path.join(tmp, "warmup.onnx"))
            load(path, device).run({"x": np.zeros((1, 4), np.float32)})
    except EdgeAIError:
        pass


def _same_device(device: str, model: Any) -> bool:
    try:
        return parse_device(device).device == parse_device(getattr(model, "device", device)).device
    except EdgeAIError:
        return False


def _check_counts(warmup: int, streams: int, rounds: int) -> None:
    if warmup < 0 or streams < 1 or rounds < 1:
        raise EdgeAIError(f"warmup must be >= 0, streams and rounds >= 1; got warmup={warmup}, streams={streams}, "
                          f"rounds={rounds}")


def benchmark(model: Any, inputs: Mapping[str, Any] | None = None, *, device: str | None = None, warmup: int = 10,
              iterations: int | None = None, duration: float | None = None, batch: int = 1, streams: int = 1,
              name: str | None = None, dims: Mapping[str, int] | None = None, **load_options: Any) -> BenchReport:
    """Time ``model.run`` on ``inputs`` (random at ``batch`` when None).

    Args:
        model: a loaded :class:`~edgeai.Model`, or an ``.onnx`` path that is loaded on ``device``
            (default ``cpu``) with ``load_options`` here, so that its cold start (load + first
            inference) is measured.
        warmup: runs after the first inference and before timing; reported as ``warmup`` stats.
        iterations / duration: timed runs per stream, or seconds; neither: 1000 runs or 10 s,
            whichever comes first (enough for a p99 backed by 10 runs on fast models).
        streams: threads running the same model at once (as OpenVINO's benchmark_app); the stats
            are over all runs and the throughput is aggregate.
        dims: sizes of symbolic dims other than the batch, e.g. ``{"seq": 128}``.

    Returns:
        A :class:`BenchReport` (cold start, warm-up, p50/p90/p95/p99/mean/std/min/max, items/s, memory).

    Raises:
        DeviceUnavailableError / InputMismatchError / EdgeAIError: the model cannot run as asked.
    """
    rule = StopRule.make(iterations, duration)
    _check_counts(warmup, streams, 1)
    if not isinstance(model, (str, os.PathLike)) and not hasattr(model, "run"):
        raise EdgeAIError(f"benchmark() takes a Model or an .onnx path; got {type(model).__name__}")
    if hasattr(model, "run") and (load_options or (device is not None and not _same_device(device, model))):
        raise EdgeAIError(f"device and load options apply when benchmark() loads a path; this Model is already "
                          f"loaded on {model.device}. Pass the .onnx path instead, or load it with those options")
    device = device or "cpu"
    _import_engines([BenchConfig("", model, device)])
    loaded = _load(BenchConfig(name or "", model, device, load_options), strict=True)
    cell = _Cell(loaded, batch)
    _prepare(cell, inputs, dims, warmup, strict=True)
    samples, wall = run_streams(lambda: loaded.model.run(cell.feeds), streams, rule)
    cell.rounds, cell.walls = [samples], [wall]
    if not name:
        info = loaded.model.describe()
        loaded.config = BenchConfig(f"{info.engine}:{info.device}", model, device, load_options)
    return _report(cell, streams, rule)


@dataclass(frozen=True)
class MatrixResult:
    """Every cell of a matrix run, with speedups against the baseline config at the same batch."""

    reports: tuple[BenchReport, ...]
    # "name|batch" -> speed-up over the baseline at the same batch: the geometric mean of per-round
    # p50 ratios (edgeai.speedup), the same estimator `edgeai quantize --mode auto` decides with
    speedups: dict[str, float]
    baseline: str | None
    rounds: int
    machine: dict[str, Any]
    timing_overhead_ns: float = float("nan")  # the timing loop's own cost per call, measured in this run
    settings: dict[str, Any] = field(default_factory=dict)  # warmup, stop rule, streams, threads, dims
    # "name|batch" -> 95% interval of the speed-up over the per-round ratios (2 rounds or more)
    speedup_intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    intervals: dict[str, SpeedupEstimate] = field(default_factory=dict)  # "name|batch" -> estimate + 95% interval

    def speedup(self, report: BenchReport) -> float | None:
        return self.speedups.get(f"{report.name}|{report.batch}")

    def speedup_interval(self, report: BenchReport) -> tuple[float, float] | None:
        """The 95% interval of ``speedup(report)`` (Student's t over log per-round ratios), if measured."""
        return self.speedup_intervals.get(f"{report.name}|{report.batch}")

    def interval(self, report: BenchReport) -> SpeedupEstimate | None:
        """The speed-up's estimate with its confidence interval over rounds (None for cells that did not run)."""
        return self.intervals.get(f"{report.name}|{report.batch}")

    def to_dict(self, samples: bool = False) -> dict[str, Any]:
        def row(r: BenchReport) -> dict[str, Any]:
            est, iv = self.interval(r), self.speedup_interval(r)
            return dict(r.to_dict(samples=samples), speedup=self.speedup(r), speedup_interval=list(iv) if iv else None,
                        speedup_estimate=None if est is None else est.to_dict())

        return {"kind": "edgeai.bench", "machine": self.machine, "baseline": self.baseline, "rounds": self.rounds,
                "timing_overhead_ns": round(self.timing_overhead_ns, 1), "settings": self.settings,
                "results": [row(r) for r in self.reports]}


def speedup_from_rounds(baseline_rounds_ns: Sequence[Sequence[int]],
                        candidate_rounds_ns: Sequence[Sequence[int]]) -> SpeedupEstimate:
    """The speed-up of a config over the baseline from their timed runs, round by round: the p50 of
    each round, paired by round, through :func:`edgeai.speedup.estimate_from_rounds` (geometric mean
    of per-round ratios, 95% t-interval), the estimator ``auto`` stores its decision with."""
    return estimate_from_rounds([max(float(np.median(r)), 1.0) / 1e6 for r in baseline_rounds_ns],
                                [max(float(np.median(r)), 1.0) / 1e6 for r in candidate_rounds_ns])


def bench_matrix(configs: Sequence[BenchConfig | tuple[str, Any]], batches: Sequence[int] = (1,), *,
                 warmup: int = 10, iterations: int | None = None, duration: float | None = None, rounds: int = 5,
                 streams: int = 1, baseline: str | None = None, inputs: Mapping[str, Any] | None = None,
                 dims: Mapping[str, int] | None = None, on_step: Callable[[], None] | None = None) -> MatrixResult:
    """Benchmark configs x batch sizes in one process, interleaved in rounds.

    Every config is loaded first (timed: that and its first inference are its cold start), then
    each round runs its share of the stop rule for every cell in turn, starting one cell later each
    round, so drift in the machine (thermal, other processes) lands on all cells alike. A cell that
    cannot run as asked is reported, never replaced: ``unsupported: <reason>`` when the device or
    precision is not available or the batch does not fit a static shape, ``failed: <reason>`` when
    the engine raised.

    Args:
        configs: :class:`BenchConfig` s, or ``(name, Model)`` pairs.
        batches: batch sizes; each config runs at each one.
        iterations / duration: per cell over all rounds, split evenly (iterations rounded up to a
            multiple of ``rounds``); neither: 1000 runs or 10 s per cell, at least 10 runs.
        baseline: the config name speedups are computed against (default: the first config).
        on_step: called after each load and each cell-round (for a progress bar).

    Raises:
        EdgeAIError: bad arguments, or no cell could run at all (the reasons are listed).
    """
    rule = StopRule.make(iterations, duration)
    _check_counts(warmup, streams, rounds)
    batches = list(dict.fromkeys(int(b) for b in batches))
    if not configs or not batches or min(batches) < 1:
        raise EdgeAIError(f"need at least one config and positive batch sizes; got {len(configs)} configs, "
                          f"batches {batches}")
    if inputs is not None and len(batches) > 1:
        raise EdgeAIError("fixed inputs have one batch size; give one batch size with inputs, or none for random "
                          "inputs at each batch size")
    cfgs = [c if isinstance(c, BenchConfig) else BenchConfig(c[0], c[1]) for c in configs]
    names = [c.name for c in cfgs]
    if len(set(names)) != len(names):
        raise EdgeAIError(f"config names must be unique; got {names}")
    if baseline is not None and baseline not in names:
        raise EdgeAIError(f"baseline {baseline!r} is not one of the configs {names}")
    step = on_step or (lambda: None)
    overhead = timing_overhead_ns()
    _import_engines(cfgs)
    cells: list[_Cell] = []
    for cfg in cfgs:
        loaded = _load(cfg, strict=False)
        for b in batches:
            cell = _Cell(loaded, b)
            if loaded.status == "ok":
                _prepare(cell, inputs, dims, warmup, strict=False)
            cells.append(cell)
        step()
    live = [c for c in cells if c.loaded.status == "ok" and c.status == "ok"]
    if not live:
        reasons = sorted({c.loaded.status if c.loaded.status != "ok" else c.status for c in cells})
        raise EdgeAIError("nothing could run: " + "; ".join(reasons))
    share = rule.split(rounds)
    for r in range(rounds):
        for cell in live[r % len(live):] + live[:r % len(live)]:
            samples, wall = run_streams(lambda c=cell: c.loaded.model.run(c.feeds), streams, share)
            cell.rounds.append(samples)
            cell.walls.append(wall)
            step()
    reports = tuple(_report(c, streams, rule) for c in cells)
    base = baseline or names[0]
    speedups: dict[str, float] = {}
    speedup_intervals: dict[str, tuple[float, float]] = {}
    intervals: dict[str, SpeedupEstimate] = {}
    by_key = {(c.loaded.config.name, c.batch): c for c in live}
    for cell in live:
        ref = by_key.get((base, cell.batch))
        if ref is None:
            continue
        key = f"{cell.loaded.config.name}|{cell.batch}"
        intervals[key] = est = speedup_from_rounds(ref.rounds, cell.rounds)
        speedups[key] = round(est.speedup, 3)
        if est.rounds >= 2 and cell is not ref:
            speedup_intervals[key] = (round(est.low, 3), round(est.high, 3))
    settings = {"warmup": warmup, "stop": rule.describe(), "stop_per_round": share.describe(), "streams": streams,
                "batches": batches, "dims": dict(dims or {}), "configs": [c.to_dict() for c in cfgs],
                "engine_warmup": ENGINE_WARMUP if any(isinstance(c.model, (str, os.PathLike)) for c in cfgs)
                else None}
    return MatrixResult(reports, speedups, base, rounds, machine_info(), overhead, settings,
                        speedup_intervals=speedup_intervals, intervals=intervals)
