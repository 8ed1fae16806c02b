"""CUDA through onnxruntime-gpu. Skipped (with the reason) where no CUDA provider is available."""

import numpy as np
import pytest

import edgeai

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif("cuda" not in edgeai.devices(),
                                 reason="no CUDAExecutionProvider here (needs an NVIDIA GPU and edgeai[gpu])")]


def test_cuda_matches_cpu_and_reports_provider(zoo_onnx):
    path = zoo_onnx("transformer-encoder")
    gpu = edgeai.load(path, "cuda")
    info = gpu.describe()
    assert info.devices_in_effect[0] == "CUDAExecutionProvider" and info.fallback is None
    report = edgeai.compare(edgeai.load(path, "cpu"), gpu, 4)
    assert report.worst.cosine > 0.9999, report.verdict()


def test_cuda_device_index_and_torch_cuda_tensors(zoo_onnx):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here")
    m = edgeai.load(zoo_onnx("cnn"), "cuda:0")
    x = torch.randn(4, 1, 28, 28, device="cuda")
    out = m.run({"pixel_values": x})["logits"]
    ref = edgeai.load(zoo_onnx("cnn"), "cpu").run({"pixel_values": x.cpu().numpy()})["logits"]
    np.testing.assert_allclose(out, ref, atol=1e-3)


def test_cuda_benchmark_runs(zoo_onnx):
    r = edgeai.benchmark(edgeai.load(zoo_onnx("cnn"), "cuda"), iterations=50, batch=8)
    assert r.runtime["devices_in_effect"][0] == "CUDAExecutionProvider" and r.latency.n == 50
