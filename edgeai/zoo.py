"""Reference models of the families users bring, for demos, tests and benchmarks.

Each entry is data: a factory, its input specs (symbolic dims), output names and task. Weights are
random and seeded (transformers models are built from small configs: nothing is downloaded).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgeai.errors import ModelLoadError
from edgeai.specs import TensorSpec


@dataclass(frozen=True)
class ZooEntry:
    name: str
    family: str
    task: str
    factory: Callable[[], Any]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[str, ...]
    description: str


def _torch_seed() -> None:
    import torch

    torch.manual_seed(0)


def digits_cnn() -> Any:
    """Two conv blocks + MLP for 1x28x28 images (scikit-learn digits upsampled), 10 classes."""
    from torch import nn

    _torch_seed()
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10),
    ).eval()


def _rnn_classifier(kind: str) -> Any:
    import torch
    from torch import nn

    class RNNClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            rnn = nn.LSTM if kind == "lstm" else nn.GRU
            self.rnn = rnn(32, 128, num_layers=2, batch_first=True)
            self.head = nn.Linear(128, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.rnn(x)
            return self.head(out[:, -1])

    _torch_seed()
    return RNNClassifier().eval()


def attention_rnn() -> Any:
    """Bidirectional GRU with additive attention pooling (Bahdanau-style) over a token sequence."""
    import torch
    from torch import nn

    class AttentionRNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(1000, 64)
            self.rnn = nn.GRU(64, 64, batch_first=True, bidirectional=True)
            self.score = nn.Sequential(nn.Linear(128, 64), nn.Tanh(), nn.Linear(64, 1))
            self.head = nn.Linear(128, 4)

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            h, _ = self.rnn(self.embed(input_ids))
            weights = torch.softmax(self.score(h), dim=1)
            return self.head((weights * h).sum(dim=1))

    _torch_seed()
    return AttentionRNN().eval()


def transformer_encoder() -> Any:
    """A 4-layer pre-norm Transformer encoder over token ids, mean-pooled to a 128-d embedding."""
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(1000, 128)
            self.pos = nn.Parameter(torch.randn(1, 512, 128) * 0.02)
            layer = nn.TransformerEncoderLayer(128, 4, 256, dropout=0.0, batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, 4, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(128)

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            x = self.embed(input_ids) + self.pos[:, : input_ids.shape[1]]
            return self.norm(self.encoder(x)).mean(dim=1)

    _torch_seed()
    return Encoder().eval()


def _hf(name: str) -> Callable[[], Any]:
    def build() -> Any:
        from edgeai.hf_tasks import tiny_model

        return tiny_model(name)

    return build


_VOCAB = 1000
_ids = TensorSpec("input_ids", ("batch", "seq"), "int64", (0, _VOCAB))
_mask = TensorSpec("attention_mask", ("batch", "seq"), "int64", (0, 2))

ZOO: dict[str, ZooEntry] = {e.name: e for e in [
    ZooEntry("cnn", "cnn", "image-classification", digits_cnn,
             (TensorSpec("pixel_values", ("batch", 1, 28, 28), "float32"),), ("logits",),
             "digits CNN: 2 conv blocks + MLP, 1x28x28 -> 10 classes"),
    ZooEntry("lstm", "rnn", "sequence-classification", lambda: _rnn_classifier("lstm"),
             (TensorSpec("x", ("batch", "seq", 32), "float32"),), ("logits",),
             "2-layer LSTM classifier, hidden 128"),
    ZooEntry("gru", "rnn", "sequence-classification", lambda: _rnn_classifier("gru"),
             (TensorSpec("x", ("batch", "seq", 32), "float32"),), ("logits",),
             "2-layer GRU classifier, hidden 128"),
    ZooEntry("attention-rnn", "attention-rnn", "text-classification", attention_rnn, (_ids,), ("logits",),
             "bidirectional GRU + additive attention pooling, 4 classes"),
    ZooEntry("transformer-encoder", "transformer", "feature-extraction", transformer_encoder, (_ids,),
             ("pooled_embedding",), "4-layer pre-norm Transformer encoder, d=128, mean-pooled"),
    ZooEntry("bert", "bert", "feature-extraction", _hf("bert"),
             (_ids, _mask, TensorSpec("token_type_ids", ("batch", "seq"), "int64", (0, 2))),
             ("last_hidden_state",), "tiny random BERT (2 layers, d=64) from a transformers config"),
    ZooEntry("gpt2", "gpt2", "text-generation", _hf("gpt2"), (_ids, _mask), ("logits",),
             "tiny random GPT-2 (2 layers, d=64) from a transformers config"),
    ZooEntry("t5", "t5", "text2text-generation", _hf("t5"),
             (_ids, _mask, TensorSpec("decoder_input_ids", ("batch", "decoder_seq"), "int64", (0, _VOCAB))),
             ("logits",),
             "tiny random T5 (2+2 layers, d=64) from a transformers config"),
]}


def get(name: str) -> ZooEntry:
    if name not in ZOO:
        raise ModelLoadError(f"unknown zoo model {name!r}; available: {', '.join(ZOO)}")
    return ZOO[name]
