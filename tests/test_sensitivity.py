"""The sensitivity ranking on real exported graphs: 0-d weights (issue 17's crash), and every
config ``auto`` may rank for (static and dynamic, per-channel and per-tensor)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import edgeai
from edgeai.parity import Tolerance
from edgeai.quantization.sensitivity import (
    DYNAMIC_OPS,
    Sensitivity,
    bulk_sqnr,
    rank_sensitive_nodes,
    restrict_to_ops,
)


@pytest.fixture(scope="module")
def scalar_mlp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Linear -> ReLU -> Mul by a 0-d constant -> Linear: the dynamo export keeps the constant as a
    0-d initializer, which static QDQ quantizes (as in a transformer's attention scaling)."""
    import torch

    class ScaledMLP(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = torch.nn.Linear(8, 32), torch.nn.Linear(32, 4)
            self.register_buffer("scale", torch.tensor(0.37))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(torch.relu(self.fc1(x)) * self.scale)

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sens") / "scaled_mlp.onnx"
    edgeai.export(ScaledMLP().eval(), (torch.randn(2, 8),), path, output_names=["y"])
    scalars = [i.name for i in onnx.load(str(path)).graph.initializer if len(i.dims) == 0]
    assert scalars, "the export should keep the scale as a 0-d initializer"
    return path


def _feeds(n: int = 8) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [{"x": rng.standard_normal((2, 8)).astype(np.float32)} for _ in range(n)]


@pytest.mark.parametrize("per_channel", [True, False], ids=["per-channel", "per-tensor"])
def test_ranking_survives_a_0d_weight(scalar_mlp, tmp_path, per_channel):
    qdq = tmp_path / "qdq.onnx"
    r = edgeai.quantize(scalar_mlp, qdq, mode="static", calibration=_feeds(), eval_inputs=_feeds(),
                        per_channel=per_channel, latency=False, force=True)
    dq_inputs = {n.input[0] for n in onnx.load(str(qdq)).graph.node if n.op_type == "DequantizeLinear"}
    zero_d = {i.name for i in onnx.load(str(qdq)).graph.initializer if len(i.dims) == 0 and i.name in dq_inputs}
    assert zero_d, "the QDQ file should hold a quantized 0-d weight (the crash's trigger)"
    assert r.config["per_channel"] is per_channel
    # Issue 17: TypeError: 'numpy.float32' object is not iterable
    ranking = rank_sensitive_nodes(scalar_mlp, qdq, _feeds(4), tmp_path)
    assert ranking and all(isinstance(s, Sensitivity) and s.nodes for s in ranking)
    names = {n.name for n in onnx.load(str(scalar_mlp)).graph.node}
    assert all(set(s.nodes) <= names for s in ranking)  # names of the float graph, to exclude


def test_bulk_sqnr_takes_scalars_and_lists():
    assert bulk_sqnr(np.float32(2.0), np.float32(2.0)) == float("inf")
    assert bulk_sqnr([np.ones(3), np.ones(2)], [np.ones(3), np.ones(2)]) == float("inf")
    assert bulk_sqnr(np.array(2.0), np.float32(1.0)) == pytest.approx(20 * np.log10(2.0))


def test_restrict_to_ops_keeps_only_what_dynamic_quantizes(scalar_mlp):
    ranking = [Sensitivity("relu", 5.0, 30.0, ("node_mul_4", "node_relu", "node_linear")),
               Sensitivity("mul_4", 1.0, 40.0, ("node_mul_4",))]
    out = restrict_to_ops(ranking, scalar_mlp, DYNAMIC_OPS)
    assert [s.nodes for s in out] == [("node_linear",)]  # the Gemm; Mul and Relu stay float in dynamic anyway


def _auto_candidate(mode: str) -> str:
    from edgeai.cpu import cpu_info
    from edgeai.quantization.auto import candidate_configs

    configs, _ = candidate_configs(cpu_info(), "onnxruntime", False)
    return next(c.name for c in configs if c.mode == mode)


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_auto_exclusion_search_runs_for_static_and_dynamic(scalar_mlp, tmp_path, mode):
    """A tolerance no INT8 config meets sends auto into the sensitivity search; it must finish
    (forced: the best result is written) instead of crashing in the ranking."""
    tol = Tolerance(atol=None, rtol=None, min_cosine=0.99999999)
    r = edgeai.quantize(scalar_mlp, tmp_path / "auto.onnx", mode="auto", calibration=_feeds(), eval_inputs=_feeds(),
                        candidates=[_auto_candidate(mode)], tolerance=tol, force=True, min_speedup=None,
                        bench_iterations=5, bench_rounds=1)
    rows = {c["name"]: c for c in r.candidates}
    excluded = rows[f"{_auto_candidate(mode)}+excluded"]
    assert excluded["error"] is None or "ranking failed" not in excluded["error"], excluded
    assert any("qdq_loss_debug" in n for n in r.notes)
    if mode == "dynamic":  # only nodes dynamic quantization rewrites are worth keeping in float
        kinds = {n.name: n.op_type for n in onnx.load(str(scalar_mlp)).graph.node}
        assert all(kinds[n] in DYNAMIC_OPS for n in r.excluded_nodes), r.excluded_nodes
