"""Issue 17: ``auto`` on graphs like real ones. Recurrent layers really quantized, fixed batches and
non-batch first axes timed at shapes the model accepts, a failing candidate skipped (not a crash),
whole blocks found by module path, and a speed gate that says "undecided" on noise and reports
the same estimator as ``edgeai bench``. No timed assertions: speed tests feed synthetic rounds or
check the machinery's consistency."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgeai
from edgeai.onnxfile import load_proto, read_metadata
from edgeai.quantization.coverage import int8_coverage
from edgeai.specs import TensorSpec


@pytest.fixture(scope="module")
def lstm_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer nn.LSTM + Linear, exported by dynamo: LSTM weights come out of Slice/Concat (weights
    this size are over the exporter's own folding limit, as every real LSTM's are)."""
    import torch

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(40, 96, num_layers=2, batch_first=True)
            self.linear = torch.nn.Linear(96, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            _, (h, _) = self.lstm(x)
            return self.linear(h[-1])

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("lstm") / "lstm.onnx"
    edgeai.export(Encoder().eval(), (torch.randn(2, 10, 40),), path, output_names=["embedding"],
                  inputs=[TensorSpec("x", ("batch", "frames", 40))])
    return path


def _lstm_feeds(n: int = 8) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [{"x": rng.standard_normal((2, 10, 40)).astype(np.float32)} for _ in range(n)]


def _lstm_weights_int8(path: Path) -> list[tuple[str, str, str]]:
    """(op, W dtype, R dtype) of every recurrent op in the file."""
    model = onnx.load(str(path))
    dtype = {t.name: TensorProto.DataType.Name(t.data_type) for t in model.graph.initializer}
    return [(n.op_type, dtype.get(n.input[1], "computed"), dtype.get(n.input[2], "computed"))
            for n in model.graph.node if n.op_type in ("LSTM", "DynamicQuantizeLSTM")]


def test_export_computes_the_lstm_weights(lstm_onnx):
    """The trap: the float file's LSTM weights are not initializers, so a quantizer skips them."""
    assert all(w == "computed" for _, w, _ in _lstm_weights_int8(lstm_onnx)), _lstm_weights_int8(lstm_onnx)


def test_dynamic_int8_quantizes_the_lstm_weights(lstm_onnx, tmp_path):
    r = edgeai.quantize(lstm_onnx, tmp_path / "lstm.int8.onnx", mode="dynamic", eval_inputs=_lstm_feeds(),
                        latency=False, force=True)
    ops = _lstm_weights_int8(r.dst)
    assert ops and all(op == "DynamicQuantizeLSTM" and w == "INT8" and rr == "INT8" for op, w, rr in ops), ops
    lstm = next(o for o in int8_coverage(r.dst).by_op if o.op_type == "LSTM")
    assert lstm.int8_ops == lstm.ops == 2 and lstm.int8_macs == lstm.macs > 0
    assert r.coverage["mac_share"] > 0.9 and any("recurrent" in n for n in r.notes)
    assert read_metadata(load_proto(r.dst))["quantization"]["coverage"]["mac_share"] == r.coverage["mac_share"]


def test_auto_writes_the_lstm_in_int8(lstm_onnx, tmp_path):
    r = edgeai.quantize(lstm_onnx, tmp_path / "lstm.auto.onnx", mode="auto", calibration=_lstm_feeds(),
                        eval_inputs=_lstm_feeds(), min_speedup=None, tolerance={"min_cosine": 0.98},
                        bench_iterations=5, bench_rounds=2)
    assert r.config["mode"] == "dynamic", r.candidates
    ops = _lstm_weights_int8(r.dst)
    assert ops and all(op == "DynamicQuantizeLSTM" and w == "INT8" for op, w, _ in ops), ops
    rows = {c["name"]: c for c in r.candidates}
    # Static QDQ leaves LSTMs float: such a config is not called INT8, whatever its parity.
    static = [c for c in rows.values() if c["mode"] == "static"]
    assert static and all(not c["passed"] and c["int8_macs"] < 0.2 and "not INT8" in c["error"] for c in static)
    meta = read_metadata(load_proto(r.dst))["quantization"]
    assert meta["coverage"]["mac_share"] >= 0.2 and meta["chosen"] == r.config["chosen"]


def _fixed_batch_mlp(path: Path, batch: int = 8) -> Path:
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((4, 64)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((64, 3)).astype(np.float32), "w2")
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="mm2")]
    graph = helper.make_graph(nodes, "fixed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])], [w1, w2])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_fixed_batch_8_model_is_timed_at_batch_8(tmp_path):
    """Was: "input 'x' expects float32 [8, 4]; got [1, 4]" from the latency step."""
    src = _fixed_batch_mlp(tmp_path / "fixed8.onnx")
    rng = np.random.default_rng(1)
    feeds = [{"x": rng.standard_normal((8, 4)).astype(np.float32)} for _ in range(8)]
    r = edgeai.quantize(src, tmp_path / "fixed8.auto.onnx", mode="auto", calibration=feeds, eval_inputs=feeds,
                        tolerance={"min_cosine": 0.95, "min_top1": None}, min_speedup=None, bench_iterations=5,
                        bench_rounds=2)
    assert r.latency["shapes"] == {"x": [8, 4]} and r.latency["speedup"] > 0
    s = edgeai.quantize(src, tmp_path / "fixed8.dyn.onnx", mode="dynamic", eval_inputs=feeds, force=True)
    assert s.latency["shapes"] == {"x": [8, 4]}


def test_timing_feed_cuts_only_batch_axes():
    from edgeai.quantization.measure import batch_axes, timing_feed

    silero = [TensorSpec("audio", ("batch", 576)), TensorSpec("state", (2, "batch", 128))]
    feed = {"audio": np.zeros((4, 576), np.float32), "state": np.zeros((2, 4, 128), np.float32)}
    assert batch_axes(silero) == {"audio": 0, "state": 1}
    assert {k: v.shape for k, v in timing_feed([feed], silero).items()} == {"audio": (1, 576), "state": (2, 1, 128)}
    seq_first = [TensorSpec("tokens", ("seq", 16)), TensorSpec("mask", ("seq2", 16))]  # first axes are not batches
    feed = {"tokens": np.zeros((7, 16), np.float32), "mask": np.zeros((7, 16), np.float32)}
    assert batch_axes(seq_first) == {} and timing_feed([feed], seq_first)["tokens"].shape == (7, 16)
    shared = [TensorSpec("a", ("N_items", 3)), TensorSpec("b", ("N_items", 5))]  # one symbol heads every input
    assert batch_axes(shared) == {"a": 0, "b": 0}


def test_a_failing_candidate_is_skipped_with_its_reason(lstm_onnx, tmp_path, monkeypatch):
    """Any failure inside one candidate (here: the static quantizer raising a plain RuntimeError, as
    onnxruntime does on graphs it cannot take) is that candidate's error; the search goes on."""
    from edgeai.quantization import search

    real = search.run_mode

    def flaky(mode, *args, **kwargs):
        if mode == "static":
            raise RuntimeError("unsupported subgraph in node 'If_3'")
        return real(mode, *args, **kwargs)

    monkeypatch.setattr(search, "run_mode", flaky)
    r = edgeai.quantize(lstm_onnx, tmp_path / "a.onnx", mode="auto", calibration=_lstm_feeds(),
                        eval_inputs=_lstm_feeds(), min_speedup=None, tolerance={"min_cosine": 0.98},
                        bench_iterations=5, bench_rounds=2)
    rows = [c for c in r.candidates if c["mode"] == "static"]
    assert rows and all("quantizing failed: RuntimeError: unsupported subgraph" in c["error"] for c in rows)
    assert r.config["mode"] == "dynamic"


def test_blocks_are_found_by_module_path(tmp_path):
    import torch

    from edgeai.quantization.sensitivity import candidate_blocks

    class Layer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q_proj, self.out_proj = torch.nn.Linear(16, 16), torch.nn.Linear(16, 16)
            self.fc1, self.fc2 = torch.nn.Linear(16, 32), torch.nn.Linear(32, 16)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x + self.out_proj(torch.softmax(self.q_proj(x), -1))
            return x + self.fc2(torch.relu(self.fc1(x)))

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem, self.layers, self.head = torch.nn.Linear(8, 16), torch.nn.ModuleList([Layer(), Layer()]), \
                torch.nn.Linear(16, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.stem(x)
            for layer in self.layers:
                x = layer(x)
            return self.head(x)

    path = tmp_path / "net.onnx"
    edgeai.export(Net().eval(), (torch.randn(2, 8),), path, output_names=["y"])
    blocks = {b.name: b for b in candidate_blocks(path, path)}
    assert set(blocks) >= {"first", "last", "first+last", "attention-output", "ffn-down", "attention-output+ffn-down"}
    assert len(blocks["attention-output"].nodes) == 2 and len(blocks["ffn-down"].nodes) == 2
    assert not set(blocks["attention-output"].nodes) & set(blocks["ffn-down"].nodes)
    assert [len(b.nodes) for b in candidate_blocks(path, path)] == sorted(len(b.nodes) for b in blocks.values())


# ---------------------------------------------------------------- the speed gate


def _noisy_rounds(true_ratio: float, spread: float, seed: int):
    """A round runner returning (baseline_ms, candidate_ms) with lognormal noise around ``true_ratio``."""
    rng = np.random.default_rng(seed)

    def run_round() -> tuple[float, float]:
        base = 10.0 * float(np.exp(rng.normal(0, spread)))
        return base, base / (true_ratio * float(np.exp(rng.normal(0, spread))))

    return run_round


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gate_on_noise_around_1_05_is_undecided_and_keeps_fp32(seed):
    from edgeai.quantization.auto import speed_verdict
    from edgeai.quantization.measure import decide_rounds

    decision = decide_rounds(_noisy_rounds(1.05, 0.08, seed), 1.05, min_rounds=5, max_rounds=12, time_budget_s=None)
    assert decision.outcome == "undecided" and decision.stopped_by == "max_rounds" and decision.estimate.rounds == 12
    assert decision.estimate.low < 1.05 < decision.estimate.high
    keep, reason = speed_verdict(decision, 1.05, "dynamic-per-channel", "cpu")
    assert not keep and "undecided within noise" in reason and "FP32 model is kept" in reason
    assert f"[{decision.estimate.low:.3f}, {decision.estimate.high:.3f}]" in reason


def test_gate_writes_int8_only_when_the_lower_bound_clears():
    from edgeai.quantization.auto import speed_verdict
    from edgeai.quantization.measure import decide_rounds

    clear = decide_rounds(_noisy_rounds(1.6, 0.03, 0), 1.05, min_rounds=5, time_budget_s=None)
    assert clear.outcome == "faster" and clear.estimate.low >= 1.05 and speed_verdict(clear, 1.05, "x", "cpu")[0]
    slower = decide_rounds(_noisy_rounds(0.8, 0.03, 0), 1.05, min_rounds=5, time_budget_s=None)
    assert slower.outcome == "not_faster" and not speed_verdict(slower, 1.05, "x", "cpu")[0]
    assert speed_verdict(slower, None, "x", "cpu")[0]  # no gate: written, with the measurement on record


def test_stored_claim_and_bench_use_one_estimator_and_overlap():
    """The claim ``auto`` stores and the speed-up ``bench`` reports come from the same estimator
    over per-round p50s (geometric mean, t-interval over log ratios): two independent runs of a
    clearly faster INT8 (synthetic rounds, so no timing here) give overlapping intervals."""
    from edgeai.bench import speedup_from_rounds
    from edgeai.quantization.measure import decide_rounds

    claim = decide_rounds(_noisy_rounds(1.6, 0.05, 7), 1.05, min_rounds=5, time_budget_s=None).estimate
    run = _noisy_rounds(1.6, 0.05, 8)
    rounds = [run() for _ in range(5)]  # bench's rounds: three runs per config per round, in ns
    bench = speedup_from_rounds([[int(b * 1e6)] * 3 for b, _ in rounds], [[int(c * 1e6)] * 3 for _, c in rounds])
    assert claim.to_dict().keys() == bench.to_dict().keys() and claim.method == bench.method == "t"
    assert claim.low <= claim.speedup <= claim.high and bench.low <= bench.speedup <= bench.high
    assert max(claim.low, bench.low) <= min(claim.high, bench.high)  # the intervals overlap


def test_auto_records_the_decision_bench_can_be_compared_with(tmp_path):
    """A real run, asserting what is recorded, not how fast: the stored decision has its interval,
    rounds and direction, the printed p50s give the printed ratio, and ``bench`` of the two files
    reports the same quantity (speed-up vs the FP32 file, with an interval)."""
    from edgeai.bench import bench_matrix

    src = _fixed_batch_mlp(tmp_path / "fixed8.onnx")
    rng = np.random.default_rng(1)
    feeds = [{"x": rng.standard_normal((8, 4)).astype(np.float32)} for _ in range(8)]
    r = edgeai.quantize(src, tmp_path / "q.onnx", mode="auto", calibration=feeds, eval_inputs=feeds,
                        tolerance={"min_cosine": 0.95, "min_top1": None}, min_speedup=None, bench_iterations=5,
                        bench_rounds=3)
    speed = read_metadata(load_proto(r.dst))["quantization"]["speed"]
    est = speed["estimate"]
    assert est["direction"] == "baseline_ms / candidate_ms" and est["rounds"] == 3 and len(est["ratios"]) == 3
    assert est["low"] <= est["speedup"] <= est["high"]
    assert r.latency["speedup"] == pytest.approx(r.latency["fp32_p50_ms"] / r.latency["p50_ms"], rel=1e-3)
    m = bench_matrix([("fp32", str(src)), ("int8", str(r.dst))], (8,), iterations=6, rounds=3, warmup=1)
    bench = m.interval(next(x for x in m.reports if x.name == "int8"))
    assert bench.rounds == 3 and bench.low <= bench.speedup <= bench.high
    assert m.speedups["int8|8"] == pytest.approx(bench.speedup, rel=1e-3)


# ---------------------------------------------------------------- a real model (marker `real`)


@pytest.mark.real
def test_auto_on_the_resemblyzer_speaker_encoder(tmp_path):
    """The issue's case: Resemblyzer's 3 LSTMs came back "INT8, PASS" while they ran in float. Now
    the written file runs its LSTMs in INT8 (DynamicQuantizeLSTM) and keeps the speaker
    verification decisions of the FP32 model on real (espeak-ng) speech."""
    import shutil

    from edgeai.corpus.fetch import CorpusError, fetch
    from edgeai.cpu import cpu_info
    from edgeai.metrics import judge
    from edgeai.quantization.auto import candidate_configs

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install -y espeak-ng, or make models)")
    try:
        fetch("resemblyzer")
    except CorpusError as e:
        pytest.skip(f"corpus wheels unavailable: {e}")
    from edgeai.corpus.inputs import speaker_partials

    src = edgeai.export("real:resemblyzer", path=tmp_path / "resemblyzer.onnx").path
    mels, _ = speaker_partials()
    feeds = [{"mels": mels[i:i + 1]} for i in range(len(mels))]
    dynamic = next(c.name for c in candidate_configs(cpu_info(), "onnxruntime", False)[0] if c.mode == "dynamic")
    r = edgeai.quantize(src, tmp_path / "resemblyzer.auto.onnx", mode="auto", calibration=feeds, eval_inputs=feeds,
                        candidates=[dynamic], min_speedup=None, bench_iterations=3, bench_rounds=2)
    lstm = next(o for o in int8_coverage(r.dst).by_op if o.op_type == "LSTM")
    assert lstm.ops == 3 and lstm.int8_ops >= 2, lstm  # at most the first (the mel input) kept in float
    assert r.coverage["mac_share"] >= 0.5, r.coverage["summary"]
    ref, got = edgeai.load(src), edgeai.load(r.dst)
    verdict = judge("embedding", [ref.run(f)["embedding"] for f in feeds], [got.run(f)["embedding"] for f in feeds],
                    "embedding")
    assert verdict.passed, verdict
    speed = read_metadata(load_proto(r.dst))["quantization"]["speed"]
    assert speed["estimate"]["rounds"] == 2 and speed["estimate"]["low"] <= speed["estimate"]["speedup"]
