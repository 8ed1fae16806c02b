"""Model sources: factories from files and packages, .pt2 archives, weights that are never unpickled,
transformers folders. Each exportable source is exported and validated at unseen dims."""

import json
import pickle
import shutil
import textwrap
import zipfile

import numpy as np
import pytest
import torch

import edgeai
from edgeai.errors import ModelLoadError
from edgeai.sources import load_weights, resolve
from edgeai.specs import TensorSpec

TOKEN_MODEL = '''
import torch


class TokenTagger(torch.nn.Module):
    """Embedding table of 50 rows: token ids of 50 or more would crash it."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(50, 16)
        self.head = torch.nn.Linear(16, 3)

    def forward(self, input_ids, attention_mask):
        return self.head(self.embed(input_ids) * attention_mask.unsqueeze(-1).float())


def make():
    ids = torch.randint(0, 50, (2, 6))
    return TokenTagger(), (ids, torch.ones(2, 6, dtype=torch.int64))


def make_module_only():
    return TokenTagger()
'''


@pytest.fixture
def model_file(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "tagger.py").write_text(TOKEN_MODEL)
    return src / "tagger.py"


def test_file_factory_with_examples_exports_and_keeps_token_ids_in_vocab(model_file, tmp_path):
    source = resolve(f"{model_file}:make")
    ids, mask = source.inputs
    assert ids.value_range == (0, 50), "token ids must stay below the embedding size"
    assert mask.value_range is None and ids.shape == ("batch", 6)
    result = edgeai.export(f"{model_file}:make", path=tmp_path / "out" / "tagger.onnx",
                           dynamic_axes={"input_ids": {1: "seq"}, "attention_mask": {1: "seq"}})
    assert result.validation.passed and result.validation.worst.max_abs < 1e-5
    assert result.validation_dims == {"batch": 3, "seq": 9}
    assert [s.shape for s in result.inputs] == [("batch", "seq"), ("batch", "seq")]


def test_package_factory_imports_from_the_path(model_file, tmp_path, monkeypatch):
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    shutil.copy(model_file, pkg / "models.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = edgeai.export("mypkg.models:make", path=tmp_path / "pkg.onnx")
    assert result.validation.passed
    with pytest.raises(ModelLoadError, match="has no attribute 'nope'.*make"):
        resolve("mypkg.models:nope")


def test_factory_file_imports_its_siblings(tmp_path):
    (tmp_path / "layers.py").write_text("import torch\nBlock = lambda: torch.nn.Linear(4, 2)\n")
    (tmp_path / "net.py").write_text("import torch\nfrom layers import Block\n"
                                     "def make():\n    return Block(), (torch.randn(2, 4),)\n")
    assert isinstance(resolve(f"{tmp_path / 'net.py'}:make").module, torch.nn.Linear)


def test_module_only_factory_needs_input_specs(model_file):
    with pytest.raises(ModelLoadError, match="--input"):
        resolve(f"{model_file}:make_module_only")


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_weights_load_into_the_factory_module(model_file, tmp_path, fmt):
    trained = resolve(f"{model_file}:make").module
    with torch.no_grad():
        trained.head.bias.fill_(3.0)
    path = tmp_path / f"w.{fmt}"
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(trained.state_dict(), str(path))
    else:
        torch.save({"state_dict": trained.state_dict()}, path)  # a training checkpoint, unwrapped
    source = resolve(f"{model_file}:make", weights=path)
    assert torch.equal(source.module.head.bias, torch.full((3,), 3.0))


class _Payload:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_weights_that_need_unpickling_are_refused(model_file, tmp_path):
    module = resolve(f"{model_file}:make").module
    evil = tmp_path / "evil.pt"
    torch.save({"embed.weight": _Payload()}, evil)
    with pytest.raises(ModelLoadError, match="refusing to load .*not a plain state dict"):
        load_weights(module, evil)
    pkl = tmp_path / "model.pkl"
    pkl.write_bytes(pickle.dumps(module.state_dict()))
    with pytest.raises(ModelLoadError, match="expected .safetensors"):
        load_weights(module, pkl)
    other = tmp_path / "other.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), other)
    with pytest.raises(ModelLoadError, match="missing keys.*same architecture"):
        load_weights(module, other)


@pytest.fixture(scope="module")
def pt2_archive(tmp_path_factory):
    from torch.export import Dim

    exec(compile(TOKEN_MODEL, "tagger", "exec"), ns := {})
    module, args = ns["make"]()
    batch, seq = Dim("b", min=1, max=64), Dim("s", max=128)
    program = torch.export.export(module.eval(), args, dynamic_shapes=({0: batch, 1: seq}, {0: batch, 1: seq}))
    path = tmp_path_factory.mktemp("pt2") / "tagger.pt2"
    torch.export.save(program, str(path))
    return path, module


def test_pt2_archive_exports_with_its_dynamic_dims(pt2_archive, tmp_path):
    path, module = pt2_archive
    source = resolve(path)
    assert [(s.name, s.shape, s.value_range) for s in source.inputs] == [
        ("input_ids", ("batch", "seq"), (0, 50)), ("attention_mask", ("batch", "seq"), None)]
    result = edgeai.export(path, path=tmp_path / "tagger.onnx")
    assert result.validation.passed and result.validation_dims == {"batch": 3, "seq": 9}
    # The archive's graph, not just its own reference, matches the original module.
    feeds = {"input_ids": np.random.default_rng(0).integers(0, 50, (4, 13)), "attention_mask": np.ones((4, 13), int)}
    out = edgeai.load(result.path).run(feeds)
    with torch.no_grad():
        want = module(*(torch.from_numpy(feeds[k]) for k in ("input_ids", "attention_mask"))).numpy()
    np.testing.assert_allclose(next(iter(out.values())), want, atol=1e-5)


def test_pt2_archive_with_pickled_payload_is_refused(pt2_archive, tmp_path):
    path, _ = pt2_archive
    bad = tmp_path / "bad.pt2"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("_weights_config.json"):
                config = json.loads(data)
                next(iter(config["config"].values()))["use_pickle"] = True
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    with pytest.raises(ModelLoadError, match="pickled"):
        resolve(bad)
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ModelLoadError, match="not a torch.export archive"):
        resolve(junk)


def test_transformers_folder_needs_task_and_safetensors(tmp_path):
    from edgeai.hf_tasks import build_hf_model, tiny_config

    model = build_hf_model(tiny_config("bert"), "fill-mask")
    model.save_pretrained(tmp_path / "bert", safe_serialization=True)
    with pytest.raises(ModelLoadError, match="--task.*suggests --task fill-mask"):
        resolve(tmp_path / "bert")
    with pytest.raises(ModelLoadError, match="takes inputs \\['input_ids', 'attention_mask', 'token_type_ids'\\]"):
        resolve(tmp_path / "bert", task="fill-mask", inputs=[TensorSpec("ids", ("batch", "seq"), "int64")])
    with pytest.raises(ModelLoadError, match="unknown task"):
        resolve(tmp_path / "bert", task="translation")
    (tmp_path / "bin").mkdir()
    shutil.copy(tmp_path / "bert" / "config.json", tmp_path / "bin" / "config.json")
    torch.save(model.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="no \\*.safetensors.*does not unpickle"):
        resolve(tmp_path / "bin", task="fill-mask")
    with pytest.raises(ModelLoadError, match="carries its own"):
        resolve(tmp_path / "bert", task="fill-mask", weights=tmp_path / "w.pt")


def test_missing_sources_name_the_fix(tmp_path):
    with pytest.raises(ModelLoadError, match="cannot import module 'no_such_pkg.models'.*PYTHONPATH"):
        resolve("no_such_pkg.models:make")
    with pytest.raises(ModelLoadError, match="source file not found"):
        resolve(f"{tmp_path / 'missing.py'}:make")
    broken = tmp_path / "broken.py"
    broken.write_text(textwrap.dedent("import torch\nraise RuntimeError('boom')\n"))
    with pytest.raises(ModelLoadError, match="importing .*broken.py failed.*boom"):
        resolve(f"{broken}:make")
    with pytest.raises(ModelLoadError, match="not found"):
        resolve(tmp_path / "nothing.pt2")
