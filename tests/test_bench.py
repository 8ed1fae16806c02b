"""Benchmark statistics, reports and the bench CLI on real runs (small iteration counts; no timed assertions).

The one comparison that depends on speed (--compare-to flagging a slowed config) uses a config that
does about two orders of magnitude more work, not a patched delay, so it holds on a loaded machine.
"""

import csv
import io
import json

import numpy as np
import pytest

import edgeai
from edgeai.bench import (
    BenchConfig,
    LatencyStats,
    StopRule,
    bench_matrix,
    time_loop,
    timing_overhead_ns,
)
from edgeai.benchcompare import compare_runs
from edgeai.errors import EdgeAIError, InputMismatchError

OPENVINO = "openvino:CPU" in edgeai.devices()
needs_openvino = pytest.mark.skipif(not OPENVINO, reason="OpenVINO CPU is not available here")


def test_stats_are_consistent():
    s = LatencyStats.from_ns([1_000_000 * i for i in range(1, 101)])
    assert s.n == 100 and s.min == 1.0 and s.max == 100.0
    assert s.p50 <= s.p90 <= s.p95 <= s.p99 <= s.max
    assert s.mean == 50.5 and s.p50 == 50.5
    assert s.std == pytest.approx(np.std(np.arange(1, 101)))
    assert not s.p99_reliable and LatencyStats.from_ns([1] * 1000).p99_reliable
    with pytest.raises(EdgeAIError, match="no timed runs"):
        LatencyStats.from_ns([])


def test_stop_rules():
    assert StopRule.make() == StopRule(1000, 10.0)  # the honest default: p99 on 10 runs, or 10 s
    assert StopRule.make(iterations=100).split(3).iterations == 34
    assert StopRule.make(duration=1.0).split(4).duration == 0.25
    with pytest.raises(EdgeAIError, match="not both"):
        StopRule.make(iterations=10, duration=1.0)
    with pytest.raises(EdgeAIError):
        StopRule.make(iterations=0)
    assert len(time_loop(lambda: None, iterations=7)) == 7
    assert len(time_loop(lambda: None, duration=0.01)) >= 10  # at least min_iterations


def test_timing_overhead_is_measured():
    assert 0 < timing_overhead_ns(1000) < 1e6


def test_benchmark_path_measures_cold_start_warmup_and_streams(zoo_onnx):
    r = edgeai.benchmark(zoo_onnx("cnn"), device="cpu", warmup=3, iterations=20, batch=4, threads=1)
    assert r.ok and r.latency.n == 20 and r.batch == 4 and r.throughput > 0
    assert r.load_ms > 0 and r.first_inference_ms > 0
    assert r.cold_start_ms == pytest.approx(r.load_ms + r.first_inference_ms)
    assert r.warmup.n == 3 and r.runtime["engine"] == "onnxruntime" and r.runtime["threads"] == 1
    assert r.model_rss_mb is not None and r.peak_rss_mb > 0 and r.device_memory_mb is None
    m = edgeai.load(zoo_onnx("cnn"))
    streams = edgeai.benchmark(m, warmup=1, iterations=10, streams=2)
    assert streams.latency.n == 20 and streams.streams == 2 and streams.load_ms is None
    timed = edgeai.benchmark(m, duration=0.05, warmup=0)
    assert timed.latency.n >= 10 and timed.stop == "0.05 s"
    json.dumps(r.to_dict(samples=True))


def test_benchmark_raises_when_the_batch_cannot_run(zoo_onnx, tmp_path):
    import onnx

    proto = onnx.load(str(zoo_onnx("cnn")))
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1  # a static batch of 1
    onnx.save(proto, str(tmp_path / "static.onnx"))
    with pytest.raises(InputMismatchError, match="static batch of 1"):
        edgeai.benchmark(tmp_path / "static.onnx", batch=4, iterations=5)


@pytest.fixture(scope="module")
def matrix(zoo_onnx):
    """A real matrix: ORT, OpenVINO f32 and bf16, an ORT bf16 request (unsupported) and an OpenVINO
    load compiled for batch 1 asked to run batch 4 (unsupported)."""
    cnn = zoo_onnx("cnn")
    configs = [BenchConfig("ort", cnn, "cpu", {"threads": 1}),
               BenchConfig("ort-bf16", cnn, "cpu", {"threads": 1, "precision": "bf16"})]
    if OPENVINO:
        configs += [BenchConfig("ov", cnn, "openvino:CPU", {"threads": 1}),
                    BenchConfig("ov-static", cnn, "openvino:CPU",
                                {"threads": 1, "static_shapes": {"pixel_values": [1, 1, 28, 28]}})]
    return bench_matrix(configs, [1, 4], warmup=2, iterations=24, rounds=3)


def test_matrix_interleaves_and_computes_speedups(matrix):
    by = {(r.name, r.batch): r for r in matrix.reports}
    assert matrix.baseline == "ort" and matrix.speedups["ort|1"] == 1.0 and matrix.speedups["ort|4"] == 1.0
    ort = by[("ort", 4)]
    assert ort.ok and ort.latency.n == 24 and len(ort.round_p50_ms) == 3 and ort.noise is not None
    assert ort.cold_start_ms > ort.load_ms > 0 and ort.runtime["threads"] == 1
    assert all(np.isfinite(v) and v > 0 for v in matrix.speedups.values())
    d = matrix.to_dict()
    assert d["machine"]["cpu"]["cores"] >= 1 and d["machine"]["engines"]["onnxruntime"]
    assert d["timing_overhead_ns"] > 0 and d["settings"]["stop"] == "24 runs"
    json.loads(json.dumps(d))


def test_matrix_marks_unsupported_cells_with_the_reason(matrix):
    by = {(r.name, r.batch): r for r in matrix.reports}
    for b in (1, 4):  # onnxruntime has no bf16 switch: reported, not silently run at f32
        assert by[("ort-bf16", b)].status.startswith("unsupported: onnxruntime runs the graph at its own precision")
        assert f"ort-bf16|{b}" not in matrix.speedups
    if OPENVINO:
        assert by[("ov", 4)].ok and by[("ov", 1)].runtime["precision"] == "f32"
        assert by[("ov-static", 1)].ok
        assert by[("ov-static", 4)].status.startswith("unsupported: input 'pixel_values' has a static batch of 1")


def test_report_formats(matrix, tmp_path):
    from edgeai.report import (
        bench_csv,
        bench_markdown,
        bench_notes,
        bench_table,
        latency_plot,
        render_text,
    )

    text = render_text(bench_table(matrix))
    assert "speedup vs ort" in text and "unsupported [1]" in text and "cold start ms" in text
    notes = "\n".join(bench_notes(matrix))
    assert "[1] unsupported: onnxruntime runs the graph at its own precision" in notes
    assert "timing-loop overhead" in notes and "p99*" in notes
    rows = list(csv.DictReader(io.StringIO(bench_csv(matrix))))
    assert len(rows) == len(matrix.reports)
    ort = next(r for r in rows if r["config"] == "ort" and r["batch"] == "1")
    assert float(ort["p50_ms"]) == pytest.approx(matrix.reports[0].latency.p50)
    assert ort["threads"] == "1" and float(ort["cold_start_ms"]) > 0 and ort["status"] == "ok"
    md = bench_markdown(matrix)
    assert md.startswith("| config | batch |") and md.count("\n| ort |") == 2
    png = latency_plot(matrix, tmp_path / "bench.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_flags_a_regression_beyond_the_noise(matrix):
    old = matrix.to_dict()
    same = compare_runs(old, old)
    assert not same.regressions and {c.verdict for c in same.changes} <= {"within noise", "not comparable"}
    slowed = json.loads(json.dumps(old))
    row = next(r for r in slowed["results"] if r["name"] == "ort" and r["batch"] == 1)
    row["round_p50_ms"] = [v * 3 for v in row["round_p50_ms"]]  # every round 3x slower
    result = compare_runs(old, slowed)
    assert [(c.name, c.batch) for c in result.regressions] == [("ort", 1)]
    assert result.regressions[0].change == pytest.approx(2.0, rel=1e-3)


def test_cache_dir_reuses_the_right_optimized_graph(zoo_onnx, tmp_path):
    """The onnxruntime cache is keyed by the file's bytes: two models with one name never share it."""
    import onnx
    from onnx import numpy_helper

    a = tmp_path / "a" / "model.onnx"
    b = tmp_path / "b" / "model.onnx"
    a.parent.mkdir()
    b.parent.mkdir()
    proto = onnx.load(str(zoo_onnx("cnn")))
    onnx.save(proto, str(b))
    w = proto.graph.initializer[0]
    w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * 2, w.name))
    onnx.save(proto, str(a))
    x = {"pixel_values": np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)}
    cache = tmp_path / "cache"
    devices = ["cpu"] + (["openvino:CPU"] if OPENVINO else [])
    for device in devices:
        for path in (a, b, a, b):
            ref = edgeai.load(path, device).run(x)["logits"]
            m = edgeai.load(path, device, cache_dir=str(cache))
            np.testing.assert_allclose(m.run(x)["logits"], ref, rtol=1e-4, atol=1e-5)
        assert m.describe().options["cache"] == "hit"
    assert len(list(cache.glob("model-*.cpu.all.ort.onnx"))) == 2
    assert not list(cache.glob(".*.tmp.onnx"))


def test_bench_cli_formats_and_compare_to(cli, zoo_onnx, tmp_path):
    """Two real runs of `edgeai bench` on a config named net.onnx@cpu: the second run's net.onnx does
    about 100x more work (a Transformer encoder instead of the CNN) and must be flagged (exit 1)."""
    import shutil

    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    shutil.copy(zoo_onnx("cnn"), tmp_path / "old" / "net.onnx")
    shutil.copy(zoo_onnx("transformer-encoder"), tmp_path / "new" / "net.onnx")
    shutil.copy(zoo_onnx("cnn"), tmp_path / "control.onnx")
    common = ["--iterations", "30", "--rounds", "3", "--warmup", "2", "--threads", "1", "--dim", "seq=64"]
    first = cli("bench", tmp_path / "old" / "net.onnx", tmp_path / "control.onnx", "--precision", "f32",
                "--precision", "bf16", "--device", "cpu", *common, "--json", "--csv", tmp_path / "b.csv",
                "--markdown", tmp_path / "b.md", "--plot", tmp_path / "b.png")
    assert first.returncode == 0, first.stderr
    old = json.loads(first.stdout)
    assert old["kind"] == "edgeai.bench" and old["settings"]["threads"] == 1
    status = {r["name"]: r["status"] for r in old["results"]}
    assert status["net.onnx@cpu@f32"] == "ok" and status["net.onnx@cpu@bf16"].startswith("unsupported:")
    assert (tmp_path / "b.png").stat().st_size > 0 and "net.onnx@cpu@f32" in (tmp_path / "b.md").read_text()
    assert len(list(csv.DictReader((tmp_path / "b.csv").open()))) == 4
    (tmp_path / "old.json").write_text(first.stdout)

    second = cli("bench", tmp_path / "new" / "net.onnx", tmp_path / "control.onnx", "--precision", "f32",
                 "--precision", "bf16", "--device", "cpu", *common, "--compare-to", tmp_path / "old.json")
    assert second.returncode == 1, second.stderr
    assert "REGRESSION" in second.stdout and "cold start" in second.stdout
    assert second.stderr.startswith("regression: net.onnx@cpu@f32 b1 +")


def test_bench_cli_bad_input_exits_2(cli, zoo_onnx, tmp_path):
    for args, msg in ((["--batch", "1,x"], "bad --batch"), (["--iterations", "5", "--duration", "1"], "not both"),
                      (["--device", "gpu9"], "unknown device"), (["--baseline", "zoo:cnn"], "torch:SOURCE"),
                      (["--compare-to", tmp_path / "missing.json"], "not found")):
        r = cli("bench", zoo_onnx("cnn"), *args)
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)


def test_matrix_streams_give_aggregate_throughput(zoo_onnx):
    m = edgeai.load(zoo_onnx("cnn"), threads=1)
    result = bench_matrix([("one", m)], [2], warmup=1, iterations=8, rounds=2, streams=2)
    r = result.reports[0]
    assert r.ok and r.streams == 2 and r.latency.n == 16 and r.throughput > 0  # 2 streams x 8 runs


@pytest.mark.cuda
@pytest.mark.skipif("cuda" not in edgeai.devices(),
                    reason="no CUDA here: CUDA timing (host copy of outputs) and device memory are unverified")
def test_cuda_benchmark_says_what_ran(zoo_onnx):
    r = edgeai.benchmark(zoo_onnx("cnn"), device="cuda", warmup=2, iterations=20)
    assert r.runtime["devices_in_effect"][0] == "CUDAExecutionProvider" and r.latency.n == 20


def test_generate_mode_refuses_options_it_would_ignore(cli, zoo_onnx, tmp_path):
    out = cli("bench", zoo_onnx("cnn"), "--generate", "4", "--plot", tmp_path / "p.png", "--batch", "1,8")
    assert out.returncode == 2 and "--plot, --batch" in out.stderr, out.stderr
    assert not (tmp_path / "p.png").exists()


def test_edgeai_threads_sets_the_default_thread_count_and_an_explicit_one_wins(zoo_onnx, monkeypatch):
    monkeypatch.setenv("EDGEAI_THREADS", "1")
    assert edgeai.load(zoo_onnx("cnn"), "cpu").describe().threads == 1
    if "openvino:CPU" in edgeai.devices():
        assert edgeai.load(zoo_onnx("cnn"), "openvino:CPU").describe().threads == 1
    assert edgeai.load(zoo_onnx("cnn"), "cpu", threads=2).describe().threads == 2
    monkeypatch.setenv("EDGEAI_THREADS", "two")
    with pytest.raises(edgeai.EdgeAIError, match="EDGEAI_THREADS='two' must be a whole number"):
        edgeai.load(zoo_onnx("cnn"), "cpu")
