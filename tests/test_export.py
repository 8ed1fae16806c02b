"""Export: the file matches PyTorch at shapes the export never saw; failures are clear; no partial files."""

import numpy as np
import pytest
import torch

import edgeai
from edgeai.errors import ExportError, ModelLoadError
from edgeai.onnxfile import load_proto, read_metadata

ZOO = ["cnn", "lstm", "gru", "attention-rnn", "transformer-encoder", "bert", "gpt2", "t5"]


@pytest.mark.parametrize("name", ZOO)
def test_zoo_export_validates_at_unseen_dims(name, zoo_onnx):
    path = zoo_onnx(name)
    meta = read_metadata(load_proto(path))
    assert meta["source"] == f"zoo:{name}" and meta["exporter"] in ("dynamo", "torchscript")
    # Validate again independently at yet another batch size against PyTorch.
    from edgeai.specs import make_inputs

    ref = edgeai.load(f"zoo:{name}", "torch")
    onnx_model = edgeai.load(path, "cpu")
    feeds = make_inputs(onnx_model.inputs, {"batch": 5, "seq": 11, "decoder_seq": 4}, seed=7)
    report = edgeai.compare(ref, onnx_model, [feeds])
    assert report.passed, report.verdict()
    assert report.worst.max_abs < 1e-4


def test_export_result_reports_validation(tmp_path):
    result = edgeai.export("zoo:lstm", path=tmp_path / "lstm.onnx")
    assert result.validation.passed
    assert result.validation_dims["batch"] != 2 and result.validation_dims["seq"] != 5
    assert [s.shape for s in result.inputs] == [("batch", "seq", 32)]


def test_batch_one_example_still_gives_dynamic_batch(tmp_path):
    # The baseline's trap: a batch-1 example fixed the batch axis silently. edgeai must not.
    module = edgeai.load("zoo:lstm", "torch").runtime.module
    result = edgeai.export(module, (torch.randn(1, 10, 32),), tmp_path / "lstm_b1.onnx",
                           dynamic_axes={"x": {0: "batch", 1: "seq"}})
    model = edgeai.load(result.path)
    out = model.run({"x": np.random.rand(4, 7, 32).astype(np.float32)})
    assert out[model.outputs[0].name].shape == (4, 10)


def test_factory_that_does_not_import_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="cannot import module"):
        edgeai.export("no_such_pkg.models:make", path=tmp_path / "x.onnx")
    assert not list(tmp_path.iterdir())


def test_unsupported_operator_fails_cleanly(tmp_path):
    class Bad(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.eig(x)[0].real  # no ONNX mapping for eig

    with pytest.raises(ExportError) as e:
        edgeai.export(Bad(), (torch.randn(2, 3, 3),), tmp_path / "bad.onnx")
    assert "dynamo" in str(e.value) and "torchscript" in str(e.value)
    assert not list(tmp_path.iterdir()), "no partial or temp file may remain"


def test_bad_output_suffix(tmp_path):
    with pytest.raises(ExportError, match=r"\.onnx"):
        edgeai.export("zoo:cnn", path=tmp_path / "model.bin")
