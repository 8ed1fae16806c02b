"""Export: the file matches PyTorch at shapes the export never saw; failures are clear; no partial files."""

import os

import numpy as np
import pytest
import torch

import edgeai
from edgeai.errors import ExportError, ModelLoadError
from edgeai.exporters import ExportValidationError
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


# Every transformers task, each from a saved folder of a tiny random-weight config (a family the zoo
# does not already cover where one exists), exported and validated at a batch/seq it never saw.
TASK_FAMILIES = {
    "feature-extraction": "bert", "fill-mask": "distilbert", "text-classification": "roberta",
    "token-classification": "bert", "image-classification": "vit", "text-generation": "llama",
    "text2text-generation": "bart",
}


@pytest.mark.parametrize("task", list(TASK_FAMILIES))
def test_transformers_folder_exports_every_task(task, tmp_path):
    from edgeai.hf_tasks import TASKS, build_hf_model, tiny_config

    family = TASK_FAMILIES[task]
    folder = tmp_path / f"tiny-{family}"
    build_hf_model(tiny_config(family), task).save_pretrained(folder, safe_serialization=True)
    result = edgeai.export(folder, path=tmp_path / "model.onnx", task=task)
    assert result.validation.passed, result.validation.verdict()
    assert result.validation.worst.max_abs < 1e-4
    assert result.validation_dims["batch"] == 3  # exported at batch 2
    assert all(result.validation_dims[d] != 7 for d in ("seq",) if d in result.validation_dims)  # exported at 7
    assert [s.name for s in result.inputs] == [n for n in TASKS[task].inputs if n in {s.name for s in result.inputs}]
    assert [s.name for s in result.outputs] == list(TASKS[task].outputs)
    meta = read_metadata(load_proto(result.path))
    assert meta["task"] == task and meta["family"] == family and meta["source"] == str(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", f"tiny-{family}"]


def test_forced_torchscript_exporter_and_opset(tmp_path):
    result = edgeai.export("zoo:gru", path=tmp_path / "gru.onnx", exporter="torchscript", opset=16)
    assert result.exporter == "torchscript" and result.attempts == () and result.opset == 16
    assert result.validation.passed and read_metadata(load_proto(result.path))["exporter"] == "torchscript"


def test_graph_that_does_not_match_at_new_shapes_is_a_failed_check(tmp_path):
    class BranchOnBatch(torch.nn.Module):
        def forward(self, x):
            return x * 2 if x.shape[0] > 2 else x  # tracing at batch 2 bakes in one branch

    with pytest.raises(ExportValidationError, match="validation at unseen dims.*FAIL.*control flow") as e:
        edgeai.export(BranchOnBatch(), (torch.randn(2, 4),), tmp_path / "branch.onnx", exporter="torchscript")
    assert e.value.exit_code == 1
    assert not list(tmp_path.iterdir())


class _MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.fc2 = torch.nn.Linear(32, 64), torch.nn.Linear(64, 4)
        self.register_buffer("scale", torch.full((64,), 0.5))

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)) * (self.scale * 2.0))


def test_external_data_above_the_protobuf_limit(tmp_path, monkeypatch):
    # A real >2 GB model needs >2 GB of RAM per copy; lower the limit so a tiny one takes that path.
    import edgeai.onnxfile

    monkeypatch.setattr(edgeai.onnxfile, "ONNX_PROTOBUF_LIMIT", 1)
    module = _MLP().eval()
    result = edgeai.export(module, (torch.randn(2, 32),), tmp_path / "mlp.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlp.onnx", "mlp.onnx.data"], "no temp file may remain"
    proto = load_proto(result.path)
    locations = {e.value for t in proto.graph.initializer for e in t.external_data if e.key == "location"}
    assert locations == {"mlp.onnx.data"}
    assert result.size_bytes > (tmp_path / "mlp.onnx").stat().st_size
    modes = {oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()}
    umask = os.umask(0)
    os.umask(umask)
    assert modes == {oct(0o666 & ~umask)}, "files get the umask's mode, not mkstemp's 0600"
    x = np.random.default_rng(0).standard_normal((5, 32)).astype(np.float32)
    out = edgeai.load(result.path).run({"x": x})
    np.testing.assert_allclose(next(iter(out.values())), module(torch.from_numpy(x)).detach().numpy(), atol=1e-5)


def test_simplify_with_onnxslim_still_validates(tmp_path):
    plain = edgeai.export(_MLP(), (torch.randn(2, 32),), tmp_path / "plain.onnx", exporter="torchscript")
    slim = edgeai.export(_MLP(), (torch.randn(2, 32),), tmp_path / "slim.onnx", exporter="torchscript",
                         simplify=True)
    assert slim.validation.passed and slim.validation.worst.max_abs < 1e-5
    assert len(load_proto(slim.path).graph.node) <= len(load_proto(plain.path).graph.node)
    assert read_metadata(load_proto(slim.path))["exporter"] == "torchscript"


def test_forward_needing_an_argument_not_given(tmp_path):
    class Two(torch.nn.Module):
        def forward(self, x, mask):
            return x * mask

    with pytest.raises(ExportError, match=r"forward\(\) needs \['mask'\] but only \['x'\].*--input-spec mask"):
        edgeai.export(Two(), (torch.randn(2, 3),), tmp_path / "two.onnx")
    assert not list(tmp_path.iterdir())


FACTORIES = '''
import torch


class Tagger(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(50, 16)  # ids of 50+ would crash: sample ids must fit
        self.head = torch.nn.Linear(16, 3)

    def forward(self, input_ids, attention_mask):
        return self.head(self.embed(input_ids) * attention_mask.unsqueeze(-1).float())


class Eig(torch.nn.Module):
    def forward(self, x):
        return torch.linalg.eig(x)[0].real


class Two(torch.nn.Module):
    def forward(self, x, mask):
        return x * mask


def tagger():
    return Tagger()


def eig():
    return Eig(), (torch.randn(2, 3, 3),)


def two():
    return Two(), (torch.randn(2, 3),)
'''


def test_cli_input_and_dynamic_specs_end_to_end_then_info(cli, tmp_path):
    import json

    (tmp_path / "models.py").write_text(FACTORIES)
    out = tmp_path / "out" / "tagger.onnx"
    res = cli("export", f"{tmp_path / 'models.py'}:tagger", "-o", out,
              "--input-spec", "input_ids:1x6:int64", "--input-spec", "attention_mask:1x6:int64",
              "--dynamic", "input_ids:0=batch,1=seq", "--dynamic", "attention_mask:0=batch,1=seq", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert [i["shape"] for i in data["inputs"]] == [["batch", "seq"], ["batch", "seq"]]
    assert data["validation"]["passed"] and data["validation_dims"] == {"batch": 3, "seq": 9}
    assert [p.name for p in out.parent.iterdir()] == ["tagger.onnx"]

    info = json.loads(cli("info", out, "--json").stdout)
    assert [(i["name"], i["shape"], i["dtype"]) for i in info["inputs"]] == [
        ("input_ids", ["batch", "seq"], "int64"), ("attention_mask", ["batch", "seq"], "int64")]
    assert info["outputs"][0]["shape"][0] == "batch" and info["opset"] >= 17
    weights = 50 * 16 + 16 * 3 + 3
    assert weights <= info["parameters"] <= weights + 8  # + the exporter's scalar constants
    assert info["size_bytes"] == out.stat().st_size
    assert info["operators"]["Gather"] >= 1 and sum(info["operators"].values()) >= 3
    meta = info["metadata"]
    assert meta["source"].endswith("models.py:tagger") and meta["exporter"] == "dynamo"
    assert meta["inputs"][0]["value_range"] == [0, 50] and meta["edgeai_version"] == edgeai.__version__
    text = cli("info", out)
    assert text.returncode == 0 and "input  input_ids: int64" in text.stdout and "operators: " in text.stdout


def test_cli_export_failures_exit_2_with_one_line_and_no_file(cli, tmp_path):
    (tmp_path / "models.py").write_text(FACTORIES)
    models = tmp_path / "models.py"
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    cases = [
        ((f"{models}:eig",), ["linalg_eig", "no ONNX mapping", "custom translation"]),
        ((f"{models}:two",), ["needs ['mask']", "--input-spec mask"]),
        (("zoo:cnn", "--input-spec", "pixel_values:1x?x28:float32"), ["bad dim '?'", "1x3x224x224"]),
        (("zoo:cnn", "--input-spec", "pixel_values"), ["expected NAME:DIMS"]),
        (("zoo:cnn", "--dynamic", "pixel_values:batch"), ["expected AXIS=SYMBOL"]),
        (("no_such_pkg.models:make",), ["cannot import module 'no_such_pkg.models'", "PYTHONPATH"]),
        ((f"{tmp_path / 'missing.py'}:make",), ["source file not found", "check the path"]),
    ]
    for args, expected in cases:
        res = cli("export", *args, "-o", out_dir / "model.onnx")
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        line = res.stderr.strip()
        assert line.startswith("error: ") and "\n" not in line and "Traceback" not in line, (args, res.stderr)
        for text in expected:
            assert text in line, (args, line)
        assert not list(out_dir.iterdir()), (args, list(out_dir.iterdir()))
