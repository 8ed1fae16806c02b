"""The latency matrix for the demo CNN (trained on digits, as ``edgeai demo`` does) and the zoo
Transformer encoder, on every device here and every precision we can hand out (issue 7).

Per model, in ONE process with interleaved rounds: the PyTorch FP32 baseline; FP32; INT8 from
``edgeai.quantization`` (static QDQ calibrated on real digits for the CNN; dynamic and static for the
encoder); on OpenVINO also the bf16 inference-precision hint. A variant that fails its parity check
is not benchmarked (the reason is printed); a device or precision that cannot be had is an
``unsupported`` cell, never a silent substitute. Writes, into --out: ``<model>.json`` (every number
and the machine), ``<model>.md`` (the table) and ``<model>.png`` (latency distribution per cell,
throughput, cold start).

    python benchmarks/bench_matrix.py [--out bench-results] [--duration 20 | --iterations N] [--rounds 5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import edgeai  # noqa: E402
from edgeai.bench import BenchConfig, bench_matrix, physical_cores  # noqa: E402
from edgeai.errors import EdgeAIError  # noqa: E402


def quantized(src: Path, mode: str, calibration: Any, evals: Any, notes: list[str], tolerance: Any = None) -> Path | None:
    dst = src.with_name(f"{src.stem}.{mode}-int8.onnx")
    try:
        edgeai.quantize(src, dst, mode=mode, calibration=calibration, eval_inputs=evals, tolerance=tolerance)
        return dst
    except EdgeAIError as e:  # out of tolerance, or the mode failed: not handed out, so not timed
        notes.append(f"{src.stem} {mode} INT8 not benchmarked: {str(e).splitlines()[0][:200]}")
        return None


def configs_for(name: str, torch_model: Any, variants: list[tuple[str, Path]], threads: int) -> list[BenchConfig]:
    configs = [BenchConfig(f"{name} torch fp32", torch_model, "torch", {"threads": threads})]
    for device in edgeai.devices():
        for label, path in variants:
            precisions = ["f32", "bf16"] if device.startswith("openvino") else ["f32"]
            for prec in precisions:
                tag = label if prec == "f32" else f"{label} bf16-hint"
                configs.append(BenchConfig(f"{tag} @{device}", path, device, {"threads": threads, "precision": prec}))
    return configs


def cnn(out: Path, threads: int, notes: list[str]) -> tuple[list[BenchConfig], dict]:
    import torch

    from edgeai.demo import exported_source, load_digits_28, train_cnn
    from edgeai.runtimes import Model
    from edgeai.runtimes.torch import TorchRuntime
    from edgeai.zoo import get

    x_tr, x_te, y_tr, _ = load_digits_28()
    module = train_cnn(x_tr, y_tr)
    fp32 = out / "digits_cnn.onnx"
    edgeai.export(module, (torch.from_numpy(x_tr[:2]),), fp32, inputs=get("cnn").inputs, output_names=["logits"])
    calib = [{"pixel_values": x_tr[i:i + 1]} for i in range(0, len(x_tr), 4)]
    evals = [{"pixel_values": x_te[i:i + 32]} for i in range(0, len(x_te), 32)]
    variants = [("cnn fp32", fp32)]
    if (int8 := quantized(fp32, "static", calib, evals, notes)) is not None:
        variants.append(("cnn int8-static", int8))
    reference = Model(TorchRuntime(exported_source(module), threads=threads))
    return configs_for("cnn", reference, variants, threads), {}


def encoder(out: Path, threads: int, seq: int, notes: list[str]) -> tuple[list[BenchConfig], dict]:
    from edgeai.parity import Tolerance
    from edgeai.specs import make_inputs
    from edgeai.zoo import get

    fp32 = out / "transformer_encoder.onnx"
    edgeai.export("zoo:transformer-encoder", path=fp32)
    specs = get("transformer-encoder").inputs
    calib = [make_inputs(specs, {"batch": 1, "seq": seq}, seed=i) for i in range(64)]
    evals = [make_inputs(specs, {"batch": 4, "seq": seq}, seed=1000 + i) for i in range(8)]
    variants = [("encoder fp32", fp32)]
    # The output is an embedding, not class scores: judge it by cosine alone (top-1 of an embedding's
    # largest coordinate means nothing).
    embedding = Tolerance(atol=None, rtol=None, min_cosine=0.995, min_top1=None)
    for mode in ("dynamic", "static"):
        if (q := quantized(fp32, mode, calib if mode == "static" else None, evals, notes, embedding)) is not None:
            variants.append((f"encoder int8-{mode}", q))
    return configs_for("encoder", "zoo:transformer-encoder", variants, threads), {"seq": seq}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("bench-results"))
    ap.add_argument("--iterations", type=int, default=None, help="timed runs per cell [default: 1000 or 10 s]")
    ap.add_argument("--duration", type=float, default=None, help="seconds per cell instead of --iterations")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None, help="default: physical cores")
    ap.add_argument("--seq", type=int, default=128, help="encoder sequence length")
    ap.add_argument("--only", choices=["cnn", "encoder"], default=None)
    args = ap.parse_args()
    from edgeai.atomic import write_text
    from edgeai.report import bench_markdown, bench_table, latency_plot, render_text, to_json

    args.out.mkdir(parents=True, exist_ok=True)
    threads = args.threads or physical_cores()
    notes: list[str] = []
    jobs = {"cnn": (lambda: cnn(args.out, threads, notes), [1, 32]),
            "encoder": (lambda: encoder(args.out, threads, args.seq, notes), [1, 8])}
    for name, (build, batches) in jobs.items():
        if args.only and name != args.only:
            continue
        configs, dims = build()
        result = bench_matrix(configs, batches, warmup=args.warmup, iterations=args.iterations,
                              duration=args.duration, rounds=args.rounds, dims=dims, baseline=configs[0].name)
        result.settings["threads"] = threads
        write_text(args.out / f"{name}.json", to_json(result))
        write_text(args.out / f"{name}.md", bench_markdown(result))
        cpu = result.machine["cpu"]
        latency_plot(result, args.out / f"{name}.png",
                     title=f"edgeai bench: {name} ({cpu['model']}, {threads} threads{', seq ' + str(dims['seq']) if dims else ''})")
        print(render_text(bench_table(result), width=200))
        print(f"wrote {args.out / name}.json/.md/.png")
    for n in notes:
        print(f"note: {n}")


if __name__ == "__main__":
    main()
