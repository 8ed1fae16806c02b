"""Model family x exporter: validation error at unseen dims and export wall time.

Every zoo model and a tiny random-weight model per transformers task, each exported with the dynamo
and the TorchScript exporter forced (``exporter=``), validated on onnxruntime CPU against PyTorch.

    python benchmarks/export_matrix.py [--out export_matrix.md] [--only cnn,bert]

Times are wall-clock seconds of the exporter call alone (``export_time_s``) and of the whole
``edgeai.export`` (resolve + export + write + validation); one run each, so they are indicative.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import edgeai
from edgeai.errors import EdgeAIError

TASK_FAMILIES = {"fill-mask": "distilbert", "text-classification": "roberta", "token-classification": "bert",
                 "image-classification": "vit", "text-generation": "llama", "text2text-generation": "bart"}


def sources(folder: Path) -> list[tuple[str, str, str | None]]:
    """(label, source, task): the zoo, then one saved transformers folder per task."""
    from edgeai.hf_tasks import build_hf_model, tiny_config
    from edgeai.zoo import ZOO

    out: list[tuple[str, str, str | None]] = [(f"zoo:{n}", f"zoo:{n}", None) for n in ZOO]
    for task, family in TASK_FAMILIES.items():
        path = folder / f"{family}-{task}"
        build_hf_model(tiny_config(family), task).save_pretrained(path, safe_serialization=True)
        out.append((f"{family} ({task})", str(path), task))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown table here")
    parser.add_argument("--only", default="", help="comma-separated labels to keep (substring match)")
    args = parser.parse_args()
    rows = ["| model | exporter | result | max abs error | export s | total s |", "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for label, source, task in sources(folder):
            if args.only and not any(k in label for k in args.only.split(",")):
                continue
            for exporter in ("dynamo", "torchscript"):
                t0 = time.perf_counter()
                try:
                    r = edgeai.export(source, path=folder / "m.onnx", task=task, exporter=exporter)
                    row = (f"| {label} | {exporter} | pass at {r.validation_dims} | {r.validation.worst.max_abs:.2e} "
                           f"| {r.export_time_s:.1f} | {time.perf_counter() - t0:.1f} |")
                except EdgeAIError as e:
                    cause = str(e).split("(", 1)[-1][:140].replace("|", "/")
                    row = f"| {label} | {exporter} | FAILED: {cause} | - | - | {time.perf_counter() - t0:.1f} |"
                rows.append(row)
                print(row, flush=True)
    if args.out:
        from edgeai.atomic import write_text

        write_text(args.out, "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
