"""Issue 17: quant_pre_process ran after a chdir into the work folder, so a relative model path
pointed nowhere and pre-processing was silently skipped. It must run, and say when it did not."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgeai
from edgeai.quantization.static import preprocess


def _write_mlp(path: Path) -> None:
    """MatMul + Add + Relu + MatMul: quant_pre_process's optimizer fuses MatMul+Add into Gemm-like
    ops and infers every intermediate shape, so its output differs visibly from its input."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float32), "w2")
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"], name="mm1"),
             helper.make_node("Add", ["h0", "b1"], ["h1"], name="add1"),
             helper.make_node("Relu", ["h1"], ["h2"], name="relu"),
             helper.make_node("MatMul", ["h2", "w2"], ["y"], name="mm2")]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], [w1, b1, w2])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_preprocess_resolves_a_relative_path_without_changing_directory(tmp_path, monkeypatch):
    _write_mlp(tmp_path / "mlp.onnx")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(tmp_path)
    out, note = preprocess(Path("mlp.onnx"), Path("work"))
    assert note is None and out == work.resolve() / "preprocessed.onnx" and out.exists()
    assert Path.cwd() == tmp_path.resolve()  # the caller's directory is left alone
    assert len(onnx.load(str(out)).graph.value_info) > 0  # shape inference ran on it


def test_quantize_static_from_a_relative_path_preprocesses(tmp_path, monkeypatch):
    _write_mlp(tmp_path / "mlp.onnx")
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    calib = [{"x": rng.standard_normal((2, 8)).astype(np.float32)} for _ in range(8)]
    r = edgeai.quantize("mlp.onnx", "mlp.int8.onnx", mode="static", calibration=calib, eval_inputs=calib,
                        latency=False, force=True)
    assert r.config["preprocessed"] == "done", r.notes
    assert not any("quant_pre_process failed" in n for n in r.notes)
    assert (tmp_path / "mlp.int8.onnx").exists()
    assert sorted(os.listdir(tmp_path)) == ["mlp.int8.onnx", "mlp.onnx"]  # no debris in the caller's folder


def test_a_failed_preprocess_warns_and_keeps_the_original(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.warns(UserWarning, match="quant_pre_process failed"):
        out, note = preprocess(bad, tmp_path)
    assert out == bad.resolve() and "quant_pre_process failed" in note
    assert not (tmp_path / "preprocessed.onnx").exists()
