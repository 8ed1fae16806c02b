"""A Transformer encoder (torch.nn.TransformerEncoder) with a padding mask: export with dynamic
batch and sequence length, quantize to dynamic INT8, check parity and time it on every device.

    python examples/transformer_encoder.py --out encoder-out --iterations 200
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn

import edgeai
from edgeai.bench import bench_matrix


class SentenceEncoder(nn.Module):
    """Token ids + attention mask (1 = token, 0 = padding) -> mean-pooled 64-d sentence embedding."""

    def __init__(self, vocab: int = 1000, dim: int = 64, layers: int = 2, max_len: int = 256) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(1, max_len, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, 4, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        # enable_nested_tensor=False: the nested-tensor fast path does not export; the plain one does.
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(input_ids) + self.pos[:, : input_ids.shape[1]]
        x = self.encoder(x, src_key_padding_mask=attention_mask == 0)
        mask = attention_mask.unsqueeze(-1).to(x.dtype)
        return (x * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # mean over real tokens only


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="encoder-out")
    parser.add_argument("--device", action="append", help="device (repeat); default: every device here")
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    devices = args.device or edgeai.devices()

    torch.manual_seed(0)
    model = SentenceEncoder().eval()
    ids = torch.randint(0, 1000, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.int64)
    mask[1, 8:] = 0  # the second sentence is padded
    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
    exported = edgeai.export(model, (ids, mask), out / "encoder.onnx", dynamic_axes=axes)
    print(f"exported {', '.join(str(s) for s in exported.inputs)}; {exported.validation.verdict()}")

    # Dynamic INT8: the attention and feed-forward MatMuls get INT8 weights; no calibration needed.
    q = edgeai.quantize(exported.path, out / "encoder.int8.onnx", mode="dynamic", force=True)
    print(f"dynamic INT8: {q.size_before // 1024} KB -> {q.size_after // 1024} KB; {q.parity.verdict()}")

    # Padding must not change a sentence's embedding: the same sentence alone and padded in a batch.
    m = edgeai.load(exported.path, "cpu")
    sentence = np.arange(1, 10, dtype=np.int64)[None]
    alone = m.run({"input_ids": sentence, "attention_mask": np.ones_like(sentence)})["output"]
    padded_ids = np.concatenate([sentence, np.zeros((1, 6), np.int64)], axis=1)
    padded_mask = (padded_ids != 0).astype(np.int64)
    in_batch = m.run({"input_ids": padded_ids, "attention_mask": padded_mask})["output"]
    print(f"padding-invariance: max |alone - padded| = {np.abs(alone - in_batch).max():.2e}")

    loaded = [(f"{label}@{d}", edgeai.load(p, d)) for d in devices for label, p in (("fp32", exported.path),
                                                                                      ("int8", q.dst))]
    for name, model_on_device in loaded:
        report = edgeai.compare(exported.path, model_on_device, inputs=4)
        print(f"  {name:20} {report.verdict()}")
    # Interleaved timing at batch 1 and 8 (sequence 16): machine noise hits every config alike.
    result = bench_matrix(loaded, [1, 8], iterations=args.iterations, rounds=min(5, args.iterations))
    for r in result.reports:
        print(f"  {r.name:20} batch {r.batch}: p50 {r.latency.p50:.3f} ms, "
              f"{result.speedups.get(f'{r.name}|{r.batch}', float('nan')):.2f}x vs {result.baseline}")


if __name__ == "__main__":
    main()
