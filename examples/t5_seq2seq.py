"""A T5-like encoder-decoder end to end: encoder.onnx + decoder.onnx (self-attention KV cache),
greedy generation on every device checked against transformers' own generate, then INT8.

    python examples/t5_seq2seq.py                        # tiny random-weight T5 (nothing downloaded)
    python examples/t5_seq2seq.py --model path/to/t5-folder

The decoder caches self-attention keys/values; cross-attention keys/values are recomputed from the
encoder output at every step (one decoder file, no second cache).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import edgeai  # noqa: E402
from edgeai.generate_parity import quantize_generation  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="a local transformers encoder-decoder folder (safetensors)")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--out", type=Path, default=Path("t5-seq2seq"))
    args = ap.parse_args()

    import torch
    import transformers as tf

    from edgeai.hf_tasks import build_hf_model, tiny_config

    model = (tf.AutoModelForSeq2SeqLM.from_pretrained(args.model, local_files_only=True).eval() if args.model
             else build_hf_model(tiny_config("t5"), "text2text-generation"))
    folder = args.out / "fp32"
    result = edgeai.export(model, path=folder, task="text2text-generation-with-past")
    print(f"exported {folder}: encoder {result.encoder.exporter}, decoder {result.decoder.exporter}; "
          f"decoder validated at {result.validation_dims}")

    ids = np.array([[17, 501, 42, 9, 333, 760, 88, 1]], dtype=np.int64)
    with torch.no_grad():
        expected = model.generate(torch.from_numpy(ids), max_new_tokens=args.max_new_tokens, do_sample=False)[:, 1:]
    for device in [d for d in edgeai.devices() if d in ("cpu", "openvino:CPU", "cuda")]:
        out = edgeai.generate(folder, ids, args.max_new_tokens, device=device)
        same = out.tokens.shape == tuple(expected.shape) and bool((out.tokens == expected.numpy()).all())
        print(f"{device:13s}: {out.new_tokens} tokens ({out.stop_reason}), same as transformers: {same}; encoder "
              f"{out.encoder_ms:.2f} ms, time to first token {out.time_to_first_token_ms:.2f} ms, "
              f"{out.tokens_per_s or 0:.0f} tokens/s")

    q = quantize_generation(folder, args.out / "int8", mode="dynamic", force=True)
    print(f"dynamic INT8 (encoder + decoder): {q.size_before / 1024:.0f} KB -> {q.size_after / 1024:.0f} KB; "
          f"{q.parity.verdict()}")


if __name__ == "__main__":
    main()
