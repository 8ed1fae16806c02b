"""Quantization through onnxruntime: accuracy on real data, parity gates, clear errors."""

import numpy as np
import pytest

import edgeai
from edgeai.errors import InputMismatchError, QuantizationError
from edgeai.onnxfile import graph_precision, load_proto, read_metadata

from conftest import device_params


@pytest.fixture(scope="module")
def static_int8(trained_cnn, digits, tmp_path_factory):
    _, fp32 = trained_cnn
    x_tr, x_te, _, _ = digits
    dst = tmp_path_factory.mktemp("q") / "cnn.int8.onnx"
    calib = [{"pixel_values": x_tr[i:i + 1]} for i in range(0, 400, 2)]
    evals = [{"pixel_values": x_te[i:i + 32]} for i in range(0, len(x_te), 32)]
    return edgeai.quantize(fp32, dst, mode="static", calibration=calib, eval_inputs=evals)


@pytest.mark.parametrize("device", device_params(["cpu", "openvino:CPU"]))
def test_static_int8_keeps_digits_accuracy(static_int8, trained_cnn, digits, device):
    _, fp32 = trained_cnn
    _, x_te, _, y_te = digits
    acc = {}
    for label, path in (("fp32", fp32), ("int8", static_int8.dst)):
        logits = edgeai.load(path, device).run({"pixel_values": x_te})["logits"]
        acc[label] = float((logits.argmax(1) == y_te).mean())
    assert acc["fp32"] >= 0.95
    assert acc["fp32"] - acc["int8"] <= 0.01, acc


def test_static_result_records_what_was_done(static_int8):
    r = static_int8
    assert r.parity.passed and r.size_after < r.size_before / 2
    assert r.config["format"] == "QDQ" and r.config["per_channel"] is True
    proto = load_proto(r.dst)
    assert graph_precision(proto) == "int8"
    assert read_metadata(proto)["quantization"]["mode"] == "static"


@pytest.mark.parametrize("device", device_params(["cpu", "openvino:CPU"]))
def test_dynamic_int8_transformer_encoder_runs(zoo_onnx, tmp_path, device):
    src = zoo_onnx("transformer-encoder")
    r = edgeai.quantize(src, tmp_path / "enc.dyn.onnx", mode="dynamic", force=True)
    m = edgeai.load(r.dst, device)
    out = m.run({"input_ids": np.arange(32, dtype=np.int64).reshape(2, 16)})
    assert out["pooled_embedding"].shape == (2, 128)
    assert r.parity.worst.cosine > 0.9


def test_already_quantized_input_is_refused(static_int8, tmp_path):
    with pytest.raises(QuantizationError, match="already int8"):
        edgeai.quantize(static_int8.dst, tmp_path / "again.onnx", mode="dynamic")


def test_unknown_mode_and_mismatched_calibration(trained_cnn, tmp_path):
    _, fp32 = trained_cnn
    with pytest.raises(QuantizationError, match="unknown mode"):
        edgeai.quantize(fp32, tmp_path / "x.onnx", mode="int4")
    with pytest.raises(InputMismatchError, match="model takes"):
        edgeai.quantize(fp32, tmp_path / "x.onnx", mode="static",
                        calibration=[{"image": np.zeros((1, 1, 28, 28), np.float32)}])
    with pytest.raises(InputMismatchError, match="expects"):
        edgeai.quantize(fp32, tmp_path / "x.onnx", mode="static",
                        calibration=[{"pixel_values": np.zeros((1, 28, 28), np.float32)}])
    assert not list(tmp_path.glob("*.onnx"))


def test_tolerance_not_met_writes_nothing(zoo_onnx, tmp_path):
    from edgeai.parity import Tolerance
    from edgeai.quantize import ToleranceNotMet

    with pytest.raises(ToleranceNotMet) as e:
        edgeai.quantize(zoo_onnx("transformer-encoder"), tmp_path / "enc.onnx", mode="dynamic",
                        tolerance=Tolerance(atol=None, rtol=None, min_cosine=0.999999999))
    assert e.value.exit_code == 1 and "cosine" in str(e.value)
    assert not (tmp_path / "enc.onnx").exists()
