"""Resemblyzer 0.1.4's speaker encoder: 3-layer LSTM over 40-mel frames -> 256-d embedding.

Rebuilt as in ``resemblyzer.voice_encoder.VoiceEncoder.forward`` (LSTM 40->256 x3, last layer's
final hidden state, Linear 256->256, ReLU, L2 normalisation); the released ``pretrained.pt`` is read
with ``torch.load(weights_only=True)`` and only its ``model_state`` tensors are used. Input frames
come from :func:`edgeai.corpus.inputs.resemblyzer_mels` (a 40-mel power spectrogram, 10 ms hop;
partial utterances of 160 frames = 1.6 s).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeai.corpus.fetch import CorpusError, open_member
from edgeai.corpus.inputs import speaker_partials

PACKAGE = "resemblyzer"
MEMBER = "resemblyzer/pretrained.pt"


def _encoder_class() -> Any:
    import torch
    from torch import nn

    class SpeakerEncoder(nn.Module):
        """Resemblyzer's VoiceEncoder network: mels [batch, frames, 40] -> embedding [batch, 256]."""

        input_names = ("mels",)
        output_names = ("embedding",)

        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(40, 256, 3, batch_first=True)
            self.linear = nn.Linear(256, 256)

        def forward(self, mels: Any) -> Any:
            _, (hidden, _) = self.lstm(mels)
            raw = torch.relu(self.linear(hidden[-1]))
            return raw / torch.norm(raw, dim=1, keepdim=True)

    return SpeakerEncoder


def speaker_encoder() -> Any:
    """The encoder with the released weights, in eval mode."""
    import torch

    try:
        checkpoint = torch.load(open_member(PACKAGE, MEMBER), map_location="cpu", weights_only=True)
    except Exception as e:
        raise CorpusError(f"{MEMBER} is not a plain checkpoint of tensors ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200]})") from e
    module = _encoder_class()()
    state = {k: v for k, v in checkpoint["model_state"].items() if k.startswith(("lstm.", "linear."))}
    module.load_state_dict(state, strict=True)  # the checkpoint's similarity_weight/bias are training-only
    return module.eval()


def speaker_example() -> tuple[Any, dict[str, np.ndarray]]:
    """The encoder and 8 partial utterances: 4 espeak-ng voices x 2 sentences, 160 frames each."""
    mels, _ = speaker_partials()
    return speaker_encoder(), {"mels": mels}
