"""Generation benchmark: tokens/s and time to first token per family x device x precision, and the
speedup of the KV-cached loop over re-running the whole sequence every step without a cache.

Tiny random-weight configs (transformers' own init), nothing downloaded. Run from the repo root:

    python benchmarks/bench_generate.py --out bench-generate            # full run
    python benchmarks/bench_generate.py --quick                         # a sanity pass (1 family, 2 rounds)

Writes ``bench-generate/generation.json`` and ``generation.md``. Numbers on a shared or loaded
machine are a sanity check only: rerun on an idle one before quoting them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import edgeai  # noqa: E402
from edgeai.atomic import write_text  # noqa: E402
from edgeai.bench import machine_info  # noqa: E402
from edgeai.generate_parity import compare_generation, quantize_generation  # noqa: E402
from edgeai.generation import benchmark_generation  # noqa: E402
from edgeai.report import markdown_table  # noqa: E402


def export_family(family: str, out: Path) -> Path:
    from edgeai.hf_tasks import build_hf_model, tiny_config

    seq2seq = family == "t5"
    model = build_hf_model(tiny_config(family), "text2text-generation" if seq2seq else "text-generation")
    path = out / (f"{family}-gen" if seq2seq else f"{family}-gen.onnx")
    edgeai.export(model, path=path, task="text2text-generation-with-past" if seq2seq else "text-generation-with-past")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench-generate"))
    ap.add_argument("--families", default="gpt2,llama,t5")
    ap.add_argument("--devices", default=None, help="comma-separated; default: cpu and openvino:CPU where present")
    ap.add_argument("--prompt-len", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="gpt2 only, 2 rounds, 32 tokens")
    args = ap.parse_args()
    if args.quick:
        args.families, args.rounds, args.new_tokens = "gpt2", 2, 32
    here = edgeai.devices()
    devices = args.devices.split(",") if args.devices else [d for d in ("cpu", "openvino:CPU") if d in here]
    args.out.mkdir(parents=True, exist_ok=True)
    rows, records = [], []
    t_start = time.time()
    for family in args.families.split(","):
        fp32 = export_family(family, args.out)
        int8 = args.out / (f"{family}-gen-int8" if fp32.is_dir() else f"{family}-gen.int8.onnx")
        q = quantize_generation(fp32, int8, mode="dynamic", max_new_tokens=16, force=True)
        for device in devices:
            for precision, path in (("fp32", fp32), ("int8", int8)):
                common = dict(prompt_len=args.prompt_len, new_tokens=args.new_tokens, rounds=args.rounds, device=device)
                cached = benchmark_generation(path, name=f"{family} {precision}@{device}", **common)
                full = benchmark_generation(path, name=f"{family} {precision}@{device} no-cache", use_cache=False,
                                            **common)
                speedup = cached.tokens_per_s / full.tokens_per_s
                # INT8 parity on this device (quantize_generation measured it on cpu).
                parity = (q.parity if device == "cpu" else compare_generation(fp32, int8, max_new_tokens=16,
                                                                               device=device)) \
                    if precision == "int8" else None
                rows.append([family, device, precision, cached.time_to_first_token.p50, cached.tokens_per_s,
                             cached.step_latency.p50, cached.step_latency.p90, cached.step_latency.p99,
                             full.tokens_per_s, speedup])
                records.append({"family": family, "device": device, "precision": precision,
                                "cached": cached.to_dict(), "no_cache": full.to_dict(), "cache_speedup": speedup,
                                "int8_parity": parity.to_dict() if parity else None})
                print(f"{family:6s} {device:13s} {precision}: ttft {cached.time_to_first_token.p50:.2f} ms, "
                      f"{cached.tokens_per_s:.0f} tok/s cached vs {full.tokens_per_s:.0f} without cache "
                      f"(x{speedup:.2f}){'; ' + parity.verdict() if parity else ''}", flush=True)
    cols = ["family", "device", "precision", "ttft_p50_ms", "tokens_s", "step_p50_ms", "step_p90_ms", "step_p99_ms",
            "no_cache_tokens_s", "cache_speedup"]
    meta = {"machine": machine_info(), "prompt_len": args.prompt_len, "new_tokens": args.new_tokens,
            "rounds": args.rounds, "wall_s": round(time.time() - t_start, 1)}
    write_text(args.out / "generation.json", json.dumps({**meta, "results": records}, indent=2, default=str))
    write_text(args.out / "generation.md",
        f"Generation, {args.prompt_len}-token prompt, {args.new_tokens} new tokens, median of {args.rounds} rounds "
        f"(CPU: {meta['machine']['cpu']['model']})\n\n" + markdown_table(cols, rows))
    print(markdown_table(cols, rows))
    print(f"wrote {args.out / 'generation.json'} and {args.out / 'generation.md'} in {meta['wall_s']}s")


if __name__ == "__main__":
    main()
