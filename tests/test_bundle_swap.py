"""Bundles are replaced without a window, deploy deletes only what it wrote, and engines run the
bytes that were hashed (issue 19)."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from test_bad_inputs2 import _add_model, _bundle, _manifest

import edgeai
from edgeai import deployment
from edgeai.atomic import exchange
from edgeai.bundle import Bundle
from edgeai.errors import EdgeAIError, ModelLoadError

from conftest import device_params

X = np.random.default_rng(1).standard_normal((2, 1, 28, 28)).astype(np.float32)
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2 is Linux's")


@linux_only
def test_exchange_swaps_two_folders(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "new").write_text("new")
    (b / "old").write_text("old")
    assert exchange(a, b) is True
    assert [p.name for p in b.iterdir()] == ["new"] and [p.name for p in a.iterdir()] == ["old"]
    with pytest.raises(FileNotFoundError):
        exchange(a, tmp_path / "missing")


def _two_bundles(root: Path, model: Path) -> tuple[Path, Path]:
    """An existing bundle ``out`` holding user files, and a finished new one in ``tmp``."""
    out = _bundle(root / "B", model)
    (out / "report.md").write_text("old report\n")
    np.savez(out / "eval.npz", pixel_values=X)
    (out / "notes.txt").write_text("mine\n")
    (out / "sub").mkdir()
    (out / "sub" / "more.txt").write_text("also mine\n")
    tmp = _bundle(root / ".B.tmp-1", model, lambda m: m.update(created="new"))
    (tmp / "report.md").write_text("new report\n")
    return out, tmp


@pytest.mark.parametrize("atomic", [pytest.param(True, marks=linux_only), False], ids=["exchange", "two-renames"])
def test_publish_replaces_the_bundle_and_keeps_user_files(zoo_onnx, tmp_path, monkeypatch, atomic):
    out, tmp = _two_bundles(tmp_path, zoo_onnx("cnn"))
    user = {p: p.read_bytes() for p in (out / "eval.npz", out / "notes.txt", out / "sub" / "more.txt")}
    if not atomic:
        monkeypatch.setattr(deployment, "exchange", lambda a, b: False)
    notes = deployment._publish(tmp, out)
    assert json.loads((out / "manifest.json").read_text())["created"] == "new"
    assert (out / "report.md").read_text() == "new report\n"
    assert {p: p.read_bytes() for p in user} == user  # the user's files are still there, unchanged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["B"], "the old bundle was not cleaned up"
    assert bool(notes) is not atomic  # the two-rename fallback says so


@linux_only
def test_there_is_always_a_complete_bundle_at_the_destination(zoo_onnx, tmp_path):
    """A reader polling the destination during many swaps never finds it missing or half made."""
    out, tmp = _two_bundles(tmp_path, zoo_onnx("cnn"))
    deployment._publish(tmp, out)
    stop, seen = threading.Event(), []

    def watch() -> None:
        while not stop.is_set():
            try:
                seen.append(json.loads((out / "manifest.json").read_text())["created"])
            except (OSError, ValueError) as e:  # missing or half-written: the window the swap closes
                seen.append(f"broken: {e!r}")

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for i in range(30):
            new = _bundle(tmp_path / f".B.tmp-{i + 2}", zoo_onnx("cnn"), lambda m, i=i: m.update(created=str(i)))
            deployment._publish(new, out)
    finally:
        stop.set()
        watcher.join()
    assert seen and not [s for s in seen if s.startswith("broken")], [s for s in seen if s.startswith("broken")][:3]
    assert (out / "notes.txt").read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["B"]


def test_a_user_file_with_a_new_bundle_files_name_is_never_replaced(zoo_onnx, tmp_path):
    out, tmp = _two_bundles(tmp_path, zoo_onnx("cnn"))
    (out / "model.int8-dynamic.onnx").write_text("the user's, not in the old manifest")
    (tmp / "model.int8-dynamic.onnx").write_bytes(b"new")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(EdgeAIError, match="move it out of the bundle folder"):
        deployment._publish(tmp, out)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_deploy_over_a_bundle_keeps_the_files_it_reads_and_the_users(zoo_onnx, tmp_path):
    """deploy -o B --data B/eval.npz --labels B/labels.txt: B is replaced, those files survive."""
    out = tmp_path / "B"
    edgeai.deploy(zoo_onnx("cnn"), out, mode="none", iterations=2, rounds=1, samples=2)
    np.savez(out / "eval.npz", pixel_values=X)
    (out / "labels.txt").write_text("\n".join(str(i) for i in range(10)) + "\n")
    (out / "notes.txt").write_text("mine\n")
    kept = {p.name: p.read_bytes() for p in out.iterdir() if p.name in ("eval.npz", "labels.txt", "notes.txt")}
    first = json.loads((out / "manifest.json").read_text())["created"]
    result = edgeai.deploy(zoo_onnx("cnn"), out, mode="none", iterations=2, rounds=1, samples=2,
                           eval_inputs=str(out / "eval.npz"), labels=edgeai.bundle.read_labels(str(out / "labels.txt")))
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name in kept} == kept
    assert result.manifest["parity_data"].startswith("2 feeds of the given evaluation data")
    assert result.manifest["labels"] == [str(i) for i in range(10)]
    assert Bundle(out).manifest["created"] >= first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["B"]  # no old bundle or temp left beside it
    edgeai.load(out).run({"pixel_values": X})


# ---------------------------------------------------------------------------------------------
# The engine runs what was hashed
# ---------------------------------------------------------------------------------------------


def _doubled_weights(src: Path, dst: Path) -> Path:
    """The same graph with every float initializer doubled: same inputs, other outputs."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    for init in model.graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 2, init.name))
    dst.write_bytes(model.SerializeToString())
    return dst


@pytest.mark.parametrize("device", device_params(["cpu", "openvino:CPU"]))
def test_the_engine_runs_the_bytes_that_were_hashed(zoo_onnx, tmp_path, monkeypatch, device):
    """A file swapped right after its hash was checked cannot reach the engine."""
    cnn = zoo_onnx("cnn")
    bundle = _bundle(tmp_path / "B", cnn)
    impostor = _doubled_weights(cnn, tmp_path / "impostor.onnx")
    expected = edgeai.load(cnn, device).run({"pixel_values": X})["logits"]
    assert not np.allclose(edgeai.load(impostor, device).run({"pixel_values": X})["logits"], expected)
    original = Bundle.read_verified

    def swap_after_hashing(self, variant):
        checked = original(self, variant)
        shutil.copy(impostor, bundle / variant.file)  # an attacker wins the race here
        return checked

    monkeypatch.setattr(Bundle, "read_verified", swap_after_hashing)
    got = edgeai.load(bundle, device).run({"pixel_values": X})["logits"]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_a_data_file_changed_while_the_engine_reads_it_is_refused(tmp_path, monkeypatch):
    """Variants over 2 GB keep weights in a data file the engine reads by path: it is re-checked."""
    model = _add_model(tmp_path / "src", "model.fp32.onnx", location="model.fp32.onnx.data")
    folder = tmp_path / "B"
    folder.mkdir()
    for f in ("model.fp32.onnx", "model.fp32.onnx.data"):
        shutil.copy(model.parent / f, folder / f)
    manifest = _manifest(folder / "model.fp32.onnx")
    data = folder / "model.fp32.onnx.data"
    manifest["variants"][0].update(data_file=data.name, data_sha256=hashlib.sha256(data.read_bytes()).hexdigest())
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert edgeai.load(folder).run({"x": np.ones(4, np.float32)})["y"].tolist() == [1.0, 2.0, 3.0, 4.0]
    original = Bundle.read_verified

    def tamper_after_hashing(self, variant):
        checked = original(self, variant)
        data.write_bytes(np.full(4, 100, np.float32).tobytes())
        return checked

    monkeypatch.setattr(Bundle, "read_verified", tamper_after_hashing)
    with pytest.raises(ModelLoadError, match="was replaced or modified while the engine read it"):
        edgeai.load(folder)
