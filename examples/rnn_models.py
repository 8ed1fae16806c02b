"""Recurrent models: an LSTM classifier and a GRU with additive attention, exported with a dynamic
sequence length, quantized (dynamic INT8), and checked against PyTorch on every device here.

Recurrent layers are where exports most often go wrong (a sequence length frozen into the graph,
hidden-state shapes fixed by the example). ``edgeai.export`` validates the file at a batch size and
sequence length it never saw, so a frozen dim fails here, not in production.

    python examples/rnn_models.py --out rnn-out
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn

import edgeai


class LSTMClassifier(nn.Module):
    """Float features [batch, seq, 16] -> 2-layer LSTM -> last step -> 5 classes."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.lstm = nn.LSTM(16, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, 5)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(features)
        return self.head(out[:, -1])


class AttentionRNN(nn.Module):
    """Token ids [batch, seq] -> embedding -> bidirectional GRU -> additive attention pooling -> 3 classes."""

    def __init__(self, vocab: int = 500, dim: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.gru = nn.GRU(dim, dim, batch_first=True, bidirectional=True)
        self.score = nn.Sequential(nn.Linear(2 * dim, dim), nn.Tanh(), nn.Linear(dim, 1))
        self.head = nn.Linear(2 * dim, 3)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        states, _ = self.gru(self.embed(input_ids))
        weights = torch.softmax(self.score(states), dim=1)  # one weight per time step
        return self.head((weights * states).sum(dim=1))


def run(name: str, model: nn.Module, example: torch.Tensor, out: Path, devices: list[str]) -> None:
    torch.manual_seed(0)
    input_name = "features" if example.is_floating_point() else "input_ids"
    path = out / f"{name}.onnx"
    # Axis 0 and 1 are dynamic: one file serves any batch size and any sequence length.
    # simplify=True folds the Slice/Concat that reorder the LSTM's gate weights into constants;
    # without it onnxruntime's quantizer does not see them as weights and leaves the LSTM in FP32.
    exported = edgeai.export(model.eval(), (example,), path, dynamic_axes={input_name: {0: "batch", 1: "seq"}},
                             simplify=True)
    print(f"{name}: exported {exported.inputs[0]}; at unseen dims {exported.validation_dims}: "
          f"{exported.validation.verdict()}")

    # Dynamic INT8 quantizes the LSTM/GRU and Linear weights; activations stay float.
    # force=True: random weights make a poor accuracy test, so report parity rather than gate on it.
    q = edgeai.quantize(path, out / f"{name}.int8.onnx", mode="dynamic", force=True)
    print(f"{name}: dynamic INT8 {q.size_before // 1024} KB -> {q.size_after // 1024} KB; {q.parity.verdict()}")

    for device in devices:
        for variant in (path, q.dst):
            m = edgeai.load(variant, device=device)
            # Two sequence lengths through the same file, neither of them the export's.
            for seq in (7, 23):
                x = np.random.default_rng(seq).standard_normal((3, seq, 16)).astype(np.float32) \
                    if input_name == "features" else np.random.default_rng(seq).integers(0, 500, (3, seq))
                logits = m.run({input_name: x})[m.outputs[0].name]
                assert logits.shape[0] == 3 and np.isfinite(logits).all()
            # Against the FP32 file on onnxruntime CPU, which export already validated against PyTorch.
            report = edgeai.compare(path, m, inputs=4)
            print(f"  {device:13} {variant.name:24} {m.describe().precision:9} {report.verdict()[:4]} "
                  f"cosine {report.worst.cosine:.6f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="rnn-out")
    parser.add_argument("--device", action="append", help="device (repeat); default: every device here")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    devices = args.device or edgeai.devices()
    torch.manual_seed(0)
    run("lstm", LSTMClassifier(), torch.randn(2, 11, 16), out, devices)
    run("attention_rnn", AttentionRNN(), torch.randint(0, 500, (2, 11)), out, devices)


if __name__ == "__main__":
    main()
