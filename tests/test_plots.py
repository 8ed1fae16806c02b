"""The plots edgeai writes (bench --plot, the demo's latency.png, a bundle's report.png): every panel
drawn has data, none is left empty, and the files are PNGs. Real runs on tiny models, few iterations."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import edgeai  # noqa: E402
from edgeai.bench import BenchConfig, bench_matrix  # noqa: E402
from edgeai.report import latency_plot  # noqa: E402

from conftest import DEVICES  # noqa: E402

TARGETS = [d for d in ("cpu", "openvino:CPU") if d in DEVICES]


def _panels(fig) -> dict[str, object]:
    """Title -> axes; every axes the figure holds must show data (bars, boxes, lines)."""
    axes = {ax.get_title(): ax for ax in fig.axes}
    empty = [title for title, ax in axes.items() if not ax.has_data()]
    assert not empty, f"empty panels: {empty}"
    assert len(axes) == len(fig.axes), "two panels share a title"
    return axes


def _ticks(ax) -> list[str]:
    return [t.get_text() for t in ax.get_yticklabels()]


def test_bench_plot_has_latency_per_batch_speedup_throughput_and_cold_start(zoo_onnx, tmp_path):
    cnn = zoo_onnx("cnn")
    configs = [BenchConfig(f"cnn@{d}", cnn, d, {"threads": 1}) for d in TARGETS]
    configs.append(BenchConfig("cnn-bf16@cpu", cnn, "cpu", {"threads": 1, "precision": "bf16"}))  # unsupported
    matrix = bench_matrix(configs, [1, 2], warmup=2, iterations=12, rounds=3)
    fig = latency_plot(matrix, None)
    try:
        axes = _panels(fig)
        titles = set(axes)
        assert {"latency at batch 1", "latency at batch 2", "throughput, tail included"} <= titles
        assert "cold start (engines warmed up first)" in titles
        assert ("speed-up vs cnn@cpu (p50, same batch)" in titles) == (len(TARGETS) > 1)
        lat = axes["latency at batch 1"]
        assert lat.get_xscale() == "log" and _ticks(lat) == [c.name for c in configs]
        texts = " ".join(t.get_text() for t in lat.texts)
        assert "p50" in texts and "not run" in texts  # p50 labelled; the unsupported cell said, not blank
        notes = " ".join(t.get_text() for t in fig.texts)
        assert "warmed up on a dummy model" in notes and "tail is included" in notes
        assert "not run: cnn-bf16@cpu" in notes
    finally:
        plt.close(fig)
    assert latency_plot(matrix, tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"


def test_demo_plot_shows_accuracy_error_and_size_next_to_latency(tmp_path):
    from edgeai.demo import demo_plot, measure_demo

    results, matrix = measure_demo(tmp_path / "demo", iterations=20, epochs=1)
    names = [r["name"] for r in results["rows"]]
    assert names[0] == "PyTorch FP32" and {"ONNX Runtime FP32", "ONNX Runtime INT8"} <= set(names)
    assert all(r["speedup_vs_torch"] for r in results["rows"][1:])
    fig = demo_plot(results, matrix, None)
    try:
        axes = _panels(fig)
        assert len(axes) == 6
        assert {"latency at batch 1", "speed-up vs PyTorch FP32", "top-1 agreement with PyTorch",
                "max abs error vs PyTorch logits", "file size"} <= set(axes)
        assert any(t.startswith("accuracy on ") for t in axes)
        size = axes["file size"]
        assert len(_ticks(axes["latency at batch 1"])) == len(names) and len(size.patches) == len(names)
    finally:
        plt.close(fig)


def test_bundle_plot_shows_parity_and_size_per_variant_and_device(zoo_onnx, tmp_path):
    from edgeai.plots import bundle_plot

    result = edgeai.deploy(zoo_onnx("cnn"), tmp_path / "b", devices=TARGETS, mode="static", iterations=10)
    fig = bundle_plot(result.manifest, result.bench.reports, None)
    try:
        axes = _panels(fig)
        assert {"latency at batch 1", "speed-up vs fp32 on the same device", "top-1 agreement", "file size"} \
            <= set(axes)
        assert _ticks(axes["latency at batch 1"]) == [f"{v} @ {d}" for v in ("fp32", "int8-static") for d in TARGETS]
        intervals = [result.manifest["variants"][1]["latency"][d]["speedup_interval"] for d in TARGETS]
        assert all(len(iv) == 2 and iv[0] <= iv[1] for iv in intervals)
    finally:
        plt.close(fig)
    assert (tmp_path / "b" / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_a_speedup_within_its_noise_is_warned_about(zoo_onnx):
    import dataclasses

    from edgeai.report import bench_notes, bench_table, render_text

    cnn = zoo_onnx("cnn")
    configs = [BenchConfig("a", cnn, "cpu", {"threads": 1}), BenchConfig("b", cnn, "cpu", {"threads": 1})]
    matrix = bench_matrix(configs, [1], warmup=2, iterations=30, rounds=3)
    assert set(matrix.speedup_intervals) == {"b|1"}  # the baseline has no interval against itself
    within = dataclasses.replace(matrix, speedups={"a|1": 1.0, "b|1": 1.02}, speedup_intervals={"b|1": (0.8, 1.3)})
    notes = bench_notes(within)
    assert any(n.startswith("warning: b at batch 1: 1.02x vs a is within the noise") for n in notes), notes
    assert "1.02x [0.8, 1.3]" in render_text(bench_table(within)) and "baseline" in render_text(bench_table(within))
    a, b = within.reports
    noisy_base = dataclasses.replace(a, round_p50_ms=(0.05, 0.5, 1.9))  # ±95% between rounds
    far = dataclasses.replace(matrix, reports=(noisy_base, b), speedups={"a|1": 1.0, "b|1": 97.9},
                              speedup_intervals={"b|1": (4.9, 190.0)})
    assert any("97.9x vs a rests on noisy rounds (a ±" in n for n in bench_notes(far)), bench_notes(far)
    clean = dataclasses.replace(matrix, reports=(dataclasses.replace(a, round_p50_ms=(1.0, 1.01, 0.99)),
                                                 dataclasses.replace(b, round_p50_ms=(0.5, 0.51, 0.5))),
                                speedups={"a|1": 1.0, "b|1": 2.0}, speedup_intervals={"b|1": (1.9, 2.1)})
    assert not [n for n in bench_notes(clean) if n.startswith("warning:")]
