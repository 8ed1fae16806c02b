"""INT8 coverage of real quantized files (issue 17): what share of weights and MACs is INT8, and
the LSTM that dynamic quantization leaves in float after a dynamo export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgeai
from edgeai.errors import ModelLoadError
from edgeai.quantization.coverage import int8_coverage


def _quiet_dynamic(src: Path, dst: Path, **kw) -> Path:
    from onnxruntime.quantization import quantize_dynamic

    from edgeai.quantization.measure import quiet_ort_quantization

    with quiet_ort_quantization():
        quantize_dynamic(str(src), str(dst), **kw)
    return dst


def _quiet_static(src: Path, dst: Path, feeds: list[dict], **kw) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    from edgeai.quantization.measure import quiet_ort_quantization

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(feeds)

        def get_next(self) -> dict | None:
            return next(self.it, None)

    with quiet_ort_quantization():
        quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, **kw)
    return dst


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("coverage")


@pytest.fixture(scope="module")
def conv_net(work: Path) -> Path:
    """Conv -> ReLU -> Linear, plus an activation x activation MatMul (as in attention)."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.fc = torch.nn.Linear(8 * 8 * 8, 16)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.fc(torch.relu(self.conv(x)).flatten(1))
            return torch.matmul(h.unsqueeze(2), h.unsqueeze(1)).flatten(1)

    torch.manual_seed(0)
    return edgeai.export(Net().eval(), (torch.randn(2, 3, 8, 8),), work / "conv.onnx", output_names=["y"]).path


def _lstm_module():
    import torch

    class SpeakerLSTM(torch.nn.Module):  # Resemblyzer's shape, smaller: LSTM layers then a projection
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(40, 64, num_layers=2, batch_first=True)
            self.proj = torch.nn.Linear(64, 32)

        def forward(self, mels: torch.Tensor) -> torch.Tensor:
            out, _ = self.lstm(mels)
            return self.proj(out[:, -1])

    torch.manual_seed(0)
    return SpeakerLSTM().eval()


@pytest.fixture(scope="module")
def lstm_files(work: Path) -> dict[str, Path]:
    import torch

    files = {}
    for exporter in ("dynamo", "torchscript"):
        files[exporter] = edgeai.export(_lstm_module(), (torch.randn(2, 16, 40),), work / f"lstm-{exporter}.onnx",
                                        exporter=exporter, output_names=["embedding"]).path
    return files


def _feeds(shape: tuple[int, ...], n: int = 4) -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(n)]


def test_fp32_file_has_no_int8(conv_net):
    c = int8_coverage(conv_net)
    assert c.int8_weight_params == 0 and c.int8_ops == 0 and c.int8_macs == 0 and c.ops == 3
    assert c.weight_share == 0.0 and c.mac_share == 0.0 and not c.is_int8()
    assert {o.op_type for o in c.by_op} == {"Conv", "Gemm", "MatMul"}


@pytest.mark.parametrize("per_channel", [True, False], ids=["per-channel", "per-tensor"])
def test_static_qdq_counts_weights_behind_dequantize(conv_net, work, per_channel):
    name = conv_net.stem
    dst = _quiet_static(conv_net, work / f"{name}.qdq-{per_channel}.onnx", _feeds((2, 3, 8, 8)), per_channel=per_channel)
    c = int8_coverage(dst)
    ops = {o.op_type: o for o in c.by_op}
    assert ops["Conv"].int8_ops == 1 and ops["Gemm"].int8_ops == 1
    assert ops["Conv"].int8_weight_params == ops["Conv"].weight_params == 8 * 3 * 3 * 3
    assert ops["Gemm"].int8_weight_params == 8 * 8 * 8 * 16
    assert ops["MatMul"].int8_ops == 1  # activation x activation, both inputs dequantized
    assert c.weight_share > 0.99 and c.mac_share == 1.0 and c.is_int8()
    assert c.weights_by_dtype.get("FLOAT", 0) == 0  # scales and zero points are not weights
    # MACs from shapes: the conv's output is [batch, 8, 8, 8] (batch symbolic: counted as 1).
    assert ops["Conv"].macs == 8 * 8 * 8 * 3 * 3 * 3


def test_dynamic_int8_counts_integer_ops(conv_net, work):
    c = int8_coverage(_quiet_dynamic(conv_net, work / "conv.dyn.onnx"))
    ops = {o.op_type: o for o in c.by_op}
    assert ops["Conv"].int8_ops == 1  # ConvInteger
    # quantize_dynamic turns the Gemm into MatMulInteger (+ Add); the activation x activation
    # MatMul has no weight to quantize and stays float.
    assert "Gemm" not in ops and ops["MatMul"].ops == 2 and ops["MatMul"].int8_ops == 1
    assert ops["MatMul"].int8_weight_params == ops["MatMul"].weight_params == 8 * 8 * 8 * 16
    assert c.weights_by_dtype["FLOAT"] == 8 + 16  # the biases stay float
    assert 0.95 < c.mac_share < 1.0 and c.is_int8()
    json.dumps(c.to_dict())


def test_dynamo_lstm_weights_stay_float_under_dynamic_quantization(lstm_files, work):
    # Issue 17: "INT8, 1.144x faster, PASS" on a speaker encoder whose LSTMs were still float.
    src = lstm_files["dynamo"]
    graph = onnx.load(str(src)).graph
    producers = {o: n.op_type for n in graph.node for o in n.output}
    lstm = [n for n in graph.node if n.op_type == "LSTM"]
    assert lstm and all(n.input[1] in producers for n in lstm)  # W is computed, not an initializer
    c = int8_coverage(_quiet_dynamic(src, work / "lstm-dynamo.dyn.onnx"))
    ops = {o.op_type: o for o in c.by_op}
    assert ops["LSTM"].ops == 2 and ops["LSTM"].int8_ops == 0 and ops["LSTM"].int8_weight_params == 0
    assert ops["LSTM"].weight_params == 4 * 64 * (40 + 64) + 4 * 64 * (64 + 64)
    assert ops["MatMul"].int8_ops == 1  # only the projection was quantized
    assert c.mac_share < 0.05 and c.weight_share < 0.05 and not c.is_int8()
    assert "INT8 coverage: 0% of MACs, 1/3" in c.summary()


def test_static_qdq_leaves_dynamo_lstm_float(lstm_files, work):
    dst = _quiet_static(lstm_files["dynamo"], work / "lstm-dynamo.qdq.onnx", [
        {"mels": f["x"]} for f in _feeds((2, 16, 40))])
    ops = {o.op_type: o for o in int8_coverage(dst).by_op}
    assert ops["LSTM"].int8_ops == 0


def test_lstm_with_constant_weights_is_quantized(lstm_files, work):
    # The TorchScript export keeps W and R as initializers: quantize_dynamic makes DynamicQuantizeLSTM.
    c = int8_coverage(_quiet_dynamic(lstm_files["torchscript"], work / "lstm-ts.dyn.onnx"))
    ops = {o.op_type: o for o in c.by_op}
    assert ops["LSTM"].int8_ops == 2 and ops["LSTM"].int8_weight_params == ops["LSTM"].weight_params
    assert c.mac_share == 1.0 and c.is_int8()
    # seq 16 x batch 1 (symbolic) steps, each using every weight of W and R once
    assert ops["LSTM"].macs == 16 * ops["LSTM"].weight_params


def test_matmul_nbits_weights_count_as_int4(work):
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((64, 32)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 32])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    q = MatMulNBitsQuantizer(model, block_size=32, is_symmetric=True)
    q.process()
    dst = work / "nbits.onnx"
    q.model.save_model_to_file(str(dst))
    assert any(n.op_type == "MatMulNBits" for n in onnx.load(str(dst)).graph.node)
    ops = {o.op_type: o for o in int8_coverage(dst).by_op}
    assert ops["MatMul"].int8_ops == 1 and ops["MatMul"].int8_weight_params == 64 * 32


def test_subgraphs_are_walked(tmp_path):
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 4)).astype(np.float32), "w")
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    branch = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "then", [], [y])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "else", [], [y])
    graph = helper.make_graph([helper.make_node("If", ["c"], ["out"], then_branch=branch, else_branch=other)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
                               helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 4])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "if.onnx")
    c = int8_coverage(tmp_path / "if.onnx")
    assert c.ops == 1 and c.weight_params == 16 and c.int8_ops == 0


def test_not_an_onnx_file(tmp_path):
    (tmp_path / "x.onnx").write_bytes(b"nope")
    with pytest.raises(ModelLoadError, match="cannot read"):
        int8_coverage(tmp_path / "x.onnx")
