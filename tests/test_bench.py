"""Benchmark statistics and reports on real runs (small iteration counts; no timed assertions)."""

import json

import numpy as np

import edgeai
from edgeai.bench import LatencyStats, bench_matrix, timing_overhead_ns


def test_stats_are_consistent():
    s = LatencyStats.from_ns([1_000_000 * i for i in range(1, 101)])
    assert s.n == 100 and s.min == 1.0 and s.max == 100.0
    assert s.p50 <= s.p90 <= s.p95 <= s.p99 <= s.max
    assert s.mean == 50.5


def test_benchmark_real_model(zoo_onnx):
    m = edgeai.load(zoo_onnx("cnn"))
    r = edgeai.benchmark(m, warmup=2, iterations=20, batch=4)
    assert r.latency.n == 20 and r.batch == 4 and r.throughput > 0
    assert r.first_inference_ms > 0 and r.runtime["engine"] == "onnxruntime"
    streams = edgeai.benchmark(m, warmup=1, iterations=10, streams=2)
    assert streams.latency.n == 20 and streams.streams == 2
    json.dumps(r.to_dict())


def test_matrix_interleaves_and_computes_speedups(zoo_onnx):
    a = edgeai.load(zoo_onnx("cnn"))
    b = edgeai.load(zoo_onnx("cnn"), "openvino:CPU") if "openvino:CPU" in edgeai.devices() else a
    result = bench_matrix([("ort", a), ("ov", b)], [1, 4], warmup=1, iterations=20, rounds=4)
    assert len(result.reports) == 4
    assert result.speedups["ort|1"] == 1.0 and result.speedups["ort|4"] == 1.0
    assert all(np.isfinite(v) and v > 0 for v in result.speedups.values())
    assert result.to_dict()["machine"]["cpu"]["cores"] >= 1


def test_timing_overhead_is_measured():
    assert 0 < timing_overhead_ns(1000) < 1e6
