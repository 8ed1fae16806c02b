"""A GPT-like decoder end to end: export with a KV cache, generate on every device, INT8, parity.

    python examples/gpt_generate.py                      # tiny random-weight GPT-2 (nothing downloaded)
    python examples/gpt_generate.py --family llama       # tiny Llama-style decoder (GQA, rotary positions)
    python examples/gpt_generate.py --model path/to/hf-folder --tokenizer path/to/hf-folder --prompt "Hello"

One ONNX file serves the prompt step (empty cache) and every later step (one token + the cache).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import edgeai  # noqa: E402
from edgeai.generate_parity import quantize_generation  # noqa: E402
from edgeai.generation import load_tokenizer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", default="gpt2", choices=["gpt2", "llama"], help="tiny config when --model is absent")
    ap.add_argument("--model", help="a local transformers causal-LM folder (safetensors)")
    ap.add_argument("--tokenizer", help="a local tokenizer folder, for --prompt text")
    ap.add_argument("--prompt", help="prompt text (needs --tokenizer)")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--out", type=Path, default=Path("gpt-generate"))
    args = ap.parse_args()

    if args.model:
        source = args.model
    else:
        from edgeai.hf_tasks import build_hf_model, tiny_config

        source = build_hf_model(tiny_config(args.family), "text-generation")
    fp32 = args.out / "decoder.onnx"
    result = edgeai.export(source, path=fp32, task="text-generation-with-past")
    print(f"exported {fp32} ({result.exporter}); validated at {result.validation_dims}: {result.validation.verdict()}")

    tok = load_tokenizer(args.tokenizer) if args.tokenizer else None
    ids = [tok(args.prompt)["input_ids"]] if tok and args.prompt else [[17, 501, 42, 9, 333, 760, 88]]
    for device in [d for d in edgeai.devices() if d in ("cpu", "openvino:CPU", "cuda")]:
        out = edgeai.generate(fp32, ids, args.max_new_tokens, device=device)
        text = f" -> {tok.decode(out.tokens[0], skip_special_tokens=True)!r}" if tok else ""
        print(f"{device:13s} fp32: {out.tokens[0].tolist()}{text}")
        print(f"{'':13s}       time to first token {out.time_to_first_token_ms:.2f} ms, {out.tokens_per_s:.0f} tokens/s")

    int8 = args.out / "decoder.int8.onnx"
    q = quantize_generation(fp32, int8, mode="dynamic", force=True)
    print(f"dynamic INT8: {q.size_before / 1024:.0f} KB -> {q.size_after / 1024:.0f} KB; {q.parity.verdict()}")
    sampled = edgeai.generate(int8, ids, args.max_new_tokens, do_sample=True, temperature=0.8, top_p=0.9, seed=0)
    print(f"INT8 sampled (temperature 0.8, top-p 0.9, seed 0): {sampled.tokens[0].tolist()}")


if __name__ == "__main__":
    main()
