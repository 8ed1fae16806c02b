"""Every quantization mode on the zoo Transformer encoder and the trained digits CNN, in one run.

For each model and device (onnxruntime CPU, OpenVINO CPU): quantize in every mode (dynamic, static,
fp16, openvino-int8, auto), then measure size, parity against FP32 (held-out digits for the CNN:
accuracy and top-1 agreement; random token ids for the encoder: cosine) and p50 latency at batch 1.
FP32 and all modes are timed in ONE process, interleaved in rounds (``edgeai.bench.bench_matrix``),
so machine load hits them alike; speedup is the median of per-round p50 ratios against FP32 on the
same device.

    python benchmarks/bench_quantize.py [--iterations 300] [--rounds 6] [--markdown out.md] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import edgeai  # noqa: E402
from edgeai.bench import bench_matrix, machine_info  # noqa: E402
from edgeai.parity import Tolerance, compare  # noqa: E402
from edgeai.report import console, markdown_table, table  # noqa: E402

MODES = ("dynamic", "static", "fp16", "openvino-int8", "auto")
COLUMNS = ["model", "device", "mode", "size KB", "cosine min", "top-1 agree", "accuracy", "p50 ms", "speedup",
           "ran as", "note"]


def digits_cnn(work: Path) -> dict[str, Any]:
    import torch

    from edgeai.demo import load_digits_28, train_cnn
    from edgeai.zoo import get

    x_tr, x_te, y_tr, y_te = load_digits_28()
    module = train_cnn(x_tr, y_tr)
    path = edgeai.export(module, (torch.from_numpy(x_tr[:2]),), work / "digits_cnn.onnx", inputs=get("cnn").inputs,
                         output_names=["logits"]).path
    return {"name": "digits-cnn", "path": path, "calib": [{"pixel_values": x_tr[i:i + 1]} for i in range(0, 600, 3)],
            "eval": [{"pixel_values": x_te[i:i + 60]} for i in range(0, len(x_te), 60)], "labels": y_te,
            "tolerance": None}


def encoder(work: Path) -> dict[str, Any]:
    from edgeai.specs import make_inputs
    from edgeai.zoo import get

    path = edgeai.export("zoo:transformer-encoder", path=work / "transformer_encoder.onnx").path
    specs = list(get("transformer-encoder").inputs)
    calib = [make_inputs(specs, {"batch": 1, "seq": 64}, seed=i) for i in range(64)]
    evals = [make_inputs(specs, {"batch": 4, "seq": 64}, seed=1000 + i) for i in range(8)]
    return {"name": "transformer-encoder", "path": path, "calib": calib, "eval": evals, "labels": None,
            "tolerance": None}


def quantize_all(case: dict[str, Any], device: str, work: Path) -> list[tuple[str, Path | None, str]]:
    """(mode, file or None, note) for each mode; a mode that fails its gate is recorded, not fatal."""
    out: list[tuple[str, Path | None, str]] = []
    for mode in MODES:
        dst = work / f"{case['name']}.{device.replace(':', '-')}.{mode}.onnx"
        t0 = time.perf_counter()
        try:
            r = edgeai.quantize(case["path"], dst, mode=mode, calibration=case["calib"], eval_inputs=case["eval"],
                                device=device, latency=False, **({"bench_iterations": 60} if mode == "auto" else {}))
        except edgeai.EdgeAIError as e:
            # Written anyway (force) so its speed is in the table too, marked as failing its gate.
            try:
                r = edgeai.quantize(case["path"], dst, mode=mode, calibration=case["calib"], eval_inputs=case["eval"],
                                    device=device, latency=False, force=True)
            except edgeai.EdgeAIError:
                out.append((mode, None, f"error: {str(e)[:80]}"))
                continue
            out.append((mode, dst, "FAILS tolerance: " + "; ".join(r.parity.worst.failures)))
            continue
        note = f"{time.perf_counter() - t0:.1f}s"
        if mode == "auto":
            note += f"; chose {r.config.get('chosen')}"
            if r.excluded_nodes:
                note += f", {len(r.excluded_nodes)} nodes in float"
        out.append((mode, dst, note))
    return out


def run(iterations: int, rounds: int) -> tuple[list[list[Any]], dict[str, Any]]:
    rows: list[list[Any]] = []
    devices = [d for d in ("cpu", "openvino:CPU") if d in edgeai.devices()]
    with tempfile.TemporaryDirectory(prefix="bench-quantize-") as tmp:
        work = Path(tmp)
        for case in (encoder(work), digits_cnn(work)):
            for device in devices:
                files = quantize_all(case, device, work)
                fp32 = edgeai.load(case["path"], device)
                models = [("fp32", fp32)] + [(m, edgeai.load(p, device)) for m, p, _ in files if p is not None]
                timing = {k: v[:1] for k, v in case["eval"][0].items()}  # batch 1
                result = bench_matrix(models, (1,), warmup=10, iterations=iterations, rounds=rounds, baseline="fp32",
                                      inputs=timing)
                p50 = {r.name: r.latency.p50 for r in result.reports if r.latency is not None}
                ran = {r.name: f"{r.runtime.get('engine')} @ {r.runtime.get('precision')}" for r in result.reports}
                notes = {m: n for m, _, n in files}
                sizes = {"fp32": Path(case["path"]).stat().st_size}
                sizes.update({m: p.stat().st_size for m, p, _ in files if p is not None})
                for name, model in models:
                    rep = compare(case["path"], model, case["eval"], tolerance=Tolerance(None, None, None, None))
                    w = rep.worst
                    acc = None
                    if case["labels"] is not None:
                        logits = np.concatenate([model.run(f)["logits"] for f in case["eval"]])
                        acc = float((logits.argmax(1) == case["labels"][: len(logits)]).mean())
                    rows.append([case["name"], device, name, sizes[name] / 1024, w.cosine,
                                 None if w.top1 is None or case["labels"] is None else w.top1, acc, p50.get(name),
                                 result.speedups.get(f"{name}|1"), ran.get(name), notes.get(name, "")])
                for m, p, n in files:
                    if p is None:
                        rows.append([case["name"], device, m, None, None, None, None, None, None, None, n])
    return rows, machine_info()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300, help="timed runs per config (split over rounds)")
    parser.add_argument("--rounds", type=int, default=6, help="interleaving rounds")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown here")
    parser.add_argument("--json", type=Path, help="also write rows and machine info as JSON here")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    rows, machine = run(args.iterations, args.rounds)
    cpu = machine["cpu"]
    c = console()
    c.print(table(f"bench_quantize: batch 1, {args.iterations} runs x {args.rounds} interleaved rounds per "
                  f"model+device ({time.perf_counter() - t0:.0f}s)", COLUMNS, rows))
    c.print(f"CPU: {cpu['model']} ({cpu['cores']} cores), features {', '.join(cpu['features'])}, VNNI {cpu['vnni']}; "
            f"engines {machine['engines']}")
    if args.markdown:
        from edgeai.atomic import write_text

        write_text(args.markdown, markdown_table(COLUMNS, rows))
    if args.json:
        from edgeai.atomic import write_text

        write_text(args.json, json.dumps({"machine": machine, "columns": COLUMNS, "rows": rows}, indent=2,
                                         default=str))


if __name__ == "__main__":
    main()
