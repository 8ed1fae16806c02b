"""Concurrency: many threads sharing one Model on each device give exactly the sequential answers.

Threads use different batch sizes and sequence lengths at once (dynamic shapes per call), bad
feeds in between good ones, engine-level failures, short-lived threads, concurrent loads and
benchmark streams. Outputs are compared bit for bit with a sequential run of the same feeds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

import edgeai
from edgeai.errors import EdgeAIError, InputMismatchError
from edgeai.specs import make_inputs

from conftest import DEVICES, device_params

THREADS = 8


def run_threads(n: int, worker: Callable[[int], None]) -> list[BaseException]:
    """Start ``n`` threads at once (behind a barrier), join them, return what they raised."""
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait()
            worker(i)
        except BaseException as e:  # collected and reported by the caller
            errors.append(e)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def feeds_per_thread(model: edgeai.Model, n: int) -> list[list[dict[str, np.ndarray]]]:
    """Per thread, three feeds of different batch sizes (and sequence lengths where there is one)."""
    out = []
    for i in range(n):
        dims = [{"batch": 1 + (i + k) % 4, "seq": 8 + 4 * ((i + k) % 3)} for k in range(3)]
        out.append([make_inputs(model.inputs, d, seed=100 * i + k) for k, d in enumerate(dims)])
    return out


def assert_threads_match_sequential(model: edgeai.Model, iterations: int) -> int:
    feeds = feeds_per_thread(model, THREADS)
    expected = [[model.run(f) for f in per] for per in feeds]
    mismatches: list[tuple[int, int]] = []

    def worker(i: int) -> None:
        for it in range(iterations):
            k = it % 3
            out = model.run(feeds[i][k])
            for name, value in expected[i][k].items():
                if out[name].shape != value.shape or not np.array_equal(out[name], value):
                    mismatches.append((i, it))

    errors = run_threads(THREADS, worker)
    assert not errors, errors[:3]
    assert not mismatches, f"{len(mismatches)} runs differ from the sequential answer, e.g. {mismatches[:5]}"
    return THREADS * iterations


@pytest.mark.parametrize("device", device_params(["cpu", "openvino:CPU"]))
@pytest.mark.parametrize("name", ["cnn", "bert"])
def test_threads_with_mixed_shapes_match_sequential(zoo_onnx, name, device):
    model = edgeai.load(zoo_onnx(name), device)
    assert assert_threads_match_sequential(model, iterations=60) == THREADS * 60


@pytest.mark.openvino
def test_openvino_throughput_hint_streams_match_sequential(zoo_onnx):
    """With the throughput hint OpenVINO runs several streams; answers must not depend on which."""
    if "openvino:CPU" not in DEVICES:
        pytest.skip("OpenVINO CPU is not available")
    model = edgeai.load(zoo_onnx("bert"), "openvino:CPU", hint="throughput")
    assert model.describe().streams >= 1
    assert_threads_match_sequential(model, iterations=40)


@pytest.mark.openvino
def test_openvino_gives_each_thread_its_own_infer_request(zoo_onnx):
    if "openvino:CPU" not in DEVICES:
        pytest.skip("OpenVINO CPU is not available")
    model = edgeai.load(zoo_onnx("cnn"), "openvino:CPU")
    runtime = model.runtime
    requests: list = []  # kept alive, so no two can share an id
    x = np.zeros((1, 1, 28, 28), np.float32)

    def worker(i: int) -> None:
        model.run({"pixel_values": x})
        first = runtime._request()
        model.run({"pixel_values": x})
        assert runtime._request() is first  # reused within the thread
        requests.append(first)

    assert not run_threads(THREADS, worker)
    assert len({id(r) for r in requests}) == THREADS  # one request per thread, none shared


@pytest.mark.parametrize("device", device_params(["cpu", "openvino:CPU"]))
def test_short_lived_threads(zoo_onnx, device):
    """A thread per request (a web server without a pool): every one gets the right answer."""
    model = edgeai.load(zoo_onnx("cnn"), device)
    x = make_inputs(model.inputs, {"batch": 2}, seed=3)
    expected = model.run(x)["logits"]
    results: list[bool] = []
    for _ in range(10):
        batch = []
        for _ in range(20):
            t = threading.Thread(target=lambda: results.append(np.array_equal(model.run(x)["logits"], expected)))
            t.start()
            batch.append(t)
        for t in batch:
            t.join()
    assert len(results) == 200 and all(results)


@pytest.mark.parametrize("device", device_params(["cpu", "openvino:CPU"]))
def test_bad_feeds_and_engine_failures_do_not_disturb_other_threads(zoo_onnx, device):
    """Half the threads alternate good feeds with refused ones (check_feeds) and with feeds the
    engine itself fails on (an empty batch on OpenVINO); good runs stay exact, and a thread's
    engine state keeps working after a failure."""
    model = edgeai.load(zoo_onnx("cnn"), device)
    good = make_inputs(model.inputs, {"batch": 3}, seed=7)
    expected = model.run(good)["logits"]
    bad_dtype = {"pixel_values": good["pixel_values"].astype(np.float64)}
    empty = {"pixel_values": good["pixel_values"][:0]}
    wrong: list[int] = []
    refused: list[int] = []

    def worker(i: int) -> None:
        for _ in range(30):
            if i % 2:
                for feeds in (bad_dtype, empty):
                    try:
                        model.run(feeds)  # onnxruntime runs an empty batch; OpenVINO refuses it
                    except InputMismatchError:
                        refused.append(i)
            if not np.array_equal(model.run(good)["logits"], expected):
                wrong.append(i)

    assert not run_threads(THREADS, worker)
    assert not wrong
    assert len(refused) >= THREADS // 2 * 30  # every bad-dtype call was refused


def _pool_model(path):
    """Two 2x2 max-pools over [n, 1, h, w]: inputs under 4x4 fail OpenVINO's shape inference."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
                               helper.make_node("MaxPool", ["p"], ["y"], kernel_shape=[2, 2], strides=[2, 2])],
                              "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, "h", "w"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.openvino
def test_openvino_recovers_after_a_failed_run(tmp_path):
    """OpenVINO's CPU plugin used to keep failing the last good shape, on every thread, after one
    run failed in shape inference; edgeai recompiles after a failure so the next good run works."""
    if "openvino:CPU" not in DEVICES:
        pytest.skip("OpenVINO CPU is not available")
    model = edgeai.load(_pool_model(tmp_path / "pool.onnx"), "openvino:CPU")
    good = {"x": np.arange(64, dtype=np.float32).reshape(1, 1, 8, 8)}
    expected = model.run(good)["y"]
    for _ in range(3):
        with pytest.raises(EdgeAIError, match="larger than the data shape"):
            model.run({"x": np.ones((1, 1, 2, 2), np.float32)})
        np.testing.assert_array_equal(model.run(good)["y"], expected)
    assert model.runtime.recompiles == 3
    # Other threads move to the new compiled model too.
    outs: list[np.ndarray] = []
    assert not run_threads(4, lambda i: outs.append(model.run(good)["y"]))
    assert all(np.array_equal(o, expected) for o in outs)


def test_torch_reference_runs_one_call_at_a_time():
    """TorchRuntime is not concurrent (modules may keep state): Model serializes it with a lock."""
    import torch

    from edgeai.sources import ModelSource
    from edgeai.specs import TensorSpec

    class Recorder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.active = self.most = self.calls = 0
            self.lock = threading.Lock()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with self.lock:
                self.active += 1
                self.most = max(self.most, self.active)
                self.calls += 1
            time.sleep(0.0005)  # widen the window in which a second call could enter
            with self.lock:
                self.active -= 1
            return x * 2

    module = Recorder()
    model = edgeai.load(ModelSource(module, [TensorSpec("x", ("batch", 4))], ["y"]), "torch")
    module.most = module.calls = 0  # load ran a probe call
    xs = [np.full((1 + i % 3, 4), i, np.float32) for i in range(THREADS)]
    wrong: list[int] = []

    def worker(i: int) -> None:
        for _ in range(25):
            if not np.array_equal(model.run({"x": xs[i]})["y"], xs[i] * 2):
                wrong.append(i)

    assert not run_threads(THREADS, worker)
    assert not wrong and module.calls == THREADS * 25
    assert module.most == 1, f"{module.most} forward calls overlapped"


def test_torch_reference_threads_match_sequential():
    model = edgeai.load("zoo:lstm", "torch")
    assert_threads_match_sequential(model, iterations=6)


@pytest.mark.parametrize("device", device_params(["cpu", "openvino:CPU"]))
def test_concurrent_loads_of_one_file(zoo_onnx, device):
    path = zoo_onnx("cnn")
    x = make_inputs(edgeai.load(path).inputs, {"batch": 2}, seed=5)
    outs: list[np.ndarray] = []

    def worker(i: int) -> None:
        outs.append(edgeai.load(path, device).run(x)["logits"])

    assert not run_threads(4, worker)
    assert len(outs) == 4 and all(np.array_equal(o, outs[0]) for o in outs)


@pytest.mark.parametrize("device", device_params(["cpu", "openvino:CPU"]))
def test_benchmark_streams_run_without_errors(zoo_onnx, device):
    model = edgeai.load(zoo_onnx("cnn"), device)
    report = edgeai.benchmark(model, warmup=2, duration=1.0, streams=4, batch=2)
    assert report.streams == 4 and report.latency.n >= 4 * 10
    assert report.throughput > 0 and report.runtime["device"] == device


def test_cli_bench_streams_short(cli, zoo_onnx):
    """`edgeai bench --streams` under load for a few seconds (the 60 s run is benchmarks/soak.py)."""
    help_text = cli("bench", "--help").stdout
    if "--streams" not in help_text:
        pytest.skip("this edgeai bench has no --streams option yet (the benchmark helper adds it)")
    out = cli("bench", zoo_onnx("cnn"), "--device", "cpu", "--streams", "4", "--iterations", "100", "--json")
    assert out.returncode == 0, out.stderr
    assert "error" not in out.stderr.lower()
