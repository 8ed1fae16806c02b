"""``edgeai demo``: the whole pipeline on a real model, end to end, in about a minute on 2 cores.

Trains the zoo's digits CNN on scikit-learn's bundled digits (8x8 upsampled to 28x28), exports it,
quantizes it to static INT8 calibrated on training images, then measures every variant on every
device here: held-out accuracy, top-1 agreement and max abs error against PyTorch, size, latency.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeai.atomic import write_text
from edgeai.bench import bench_matrix, machine_info
from edgeai.errors import EdgeAIError
from edgeai.exporters import export
from edgeai.plots import variant_plot
from edgeai.quantization import quantize
from edgeai.report import progress, to_json
from edgeai.runtimes import Model, devices, load
from edgeai.sources import ModelSource
from edgeai.zoo import digits_cnn, get

SEED = 0


def load_digits_28() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train/test split of sklearn's digits, as float32 [N, 1, 28, 28] in [0, 1] and int64 labels."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as e:
        raise EdgeAIError("the demo trains on scikit-learn's digits: pip install scikit-learn") from e
    import torch

    digits = load_digits()
    x = torch.from_numpy(digits.images.astype(np.float32) / 16.0)[:, None]
    x = torch.nn.functional.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).numpy()
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=SEED, stratify=y)
    return x_tr, x_te, y_tr, y_te


def train_cnn(x: np.ndarray, y: np.ndarray, epochs: int = 8) -> Any:
    import torch

    torch.manual_seed(SEED)
    model = digits_cnn().train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(SEED)
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=gen).split(64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return model.eval()


@dataclass(frozen=True)
class DemoRow:
    name: str
    device: str
    ran_on: str
    precision: str
    accuracy: float
    top1_agreement: float
    max_abs: float
    size_kb: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    runtime: dict[str, Any]
    speedup_vs_torch: float | None = None  # median over interleaved rounds of p50 ratios
    speedup_interval: tuple[float, float] | None = None  # its 95% interval

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


COLUMNS = ["variant", "device", "ran on", "precision", "test acc", "top-1 vs torch", "max abs", "size KB",
           "p50 ms", "p90 ms", "p99 ms", "speed-up vs torch"]
BASELINE = "PyTorch FP32 [torch]"


def run_demo(out: str | Path = "edgeai-demo", iterations: int = 300) -> dict[str, Any]:
    """Run the demo; write ``results.json`` and ``latency.png`` into ``out``; return the results."""
    results, matrix = measure_demo(out, iterations)
    write_text(Path(out) / "results.json", to_json(results))
    demo_plot(results, matrix, Path(out) / "latency.png")
    return results


def measure_demo(out: str | Path = "edgeai-demo", iterations: int = 300, epochs: int = 8) -> tuple[dict[str, Any], Any]:
    """Train, export, quantize and measure every variant; the results and the bench matrix (nothing rendered)."""
    import torch

    from edgeai.runtimes.torch import TorchRuntime

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    stages = ["train", "export", "quantize", "evaluate"]
    with progress("demo", total=len(stages)) as advance:
        x_tr, x_te, y_tr, y_te = load_digits_28()
        t0 = time.perf_counter()
        module = train_cnn(x_tr, y_tr, epochs)
        train_s = time.perf_counter() - t0
        advance()
        fp32 = out / "digits_cnn.onnx"
        exported = export(module, (torch.from_numpy(x_tr[:2]),), fp32, inputs=get("cnn").inputs,
                                 output_names=["logits"])
        advance()
        int8 = out / "digits_cnn.int8.onnx"
        calib = [{"pixel_values": x_tr[i:i + 1]} for i in range(0, len(x_tr), 4)]  # 360 training images
        evals = [{"pixel_values": x_te[i:i + 32]} for i in range(0, len(x_te), 32)]
        quantized = quantize(fp32, int8, mode="static", calibration=calib, eval_inputs=evals,
                                    samples=len(calib))
        advance()

        reference = Model(TorchRuntime(exported_source(module)))
        ref_logits = reference.run({"pixel_values": x_te})["logits"]
        variants: list[tuple[str, Any, str]] = [("PyTorch FP32", reference, "torch")]
        for device in devices():
            for label, path in (("FP32", fp32), ("INT8", int8)):
                engine = "OpenVINO" if device.startswith("openvino") else "ONNX Runtime"
                variants.append((f"{engine} {label}", load(path, device), device))
        one = {"pixel_values": x_te[:1]}
        # Interleaved rounds, so machine noise lands on every variant alike and each speed-up has an interval.
        matrix = bench_matrix([(f"{name} [{device}]", model) for name, model, device in variants], [1], warmup=20,
                              iterations=iterations, rounds=5, inputs=one, baseline=BASELINE)
        rows = []
        for (name, model, device), bench in zip(variants, matrix.reports, strict=True):
            logits = model.run({"pixel_values": x_te})[model.outputs[0].name]
            info = model.describe()
            path = int8 if "INT8" in name else fp32
            ran_on = ",".join(d.replace("ExecutionProvider", "") for d in info.devices_in_effect)
            rows.append(DemoRow(name, device, f"{info.engine} {ran_on}", info.precision,
                                float((logits.argmax(1) == y_te).mean()),
                                float((logits.argmax(1) == ref_logits.argmax(1)).mean()),
                                float(np.abs(logits - ref_logits).max()),
                                (path.stat().st_size if "PyTorch" not in name else
                                 sum(p.numel() * 4 for p in module.parameters())) / 1024,
                                bench.latency.p50, bench.latency.p90, bench.latency.p99, info.to_dict(),
                                matrix.speedup(bench), matrix.speedup_interval(bench)))
        advance()
    results = {"rows": [r.to_dict() for r in rows], "columns": COLUMNS, "train_seconds": round(train_s, 2),
               "test_samples": int(len(y_te)), "export": exported.to_dict(), "quantize": quantized.to_dict(),
               "machine": machine_info(), "wall_seconds": round(time.perf_counter() - t_start, 2),
               "files": {"fp32": str(fp32), "int8": str(int8), "json": str(out / "results.json"),
                         "plot": str(out / "latency.png")}}
    return results, matrix


def demo_plot(results: dict[str, Any], matrix: Any, path: str | Path | None) -> Any:
    """Each variant's latency, speed-up vs PyTorch, held-out accuracy, agreement, error and size."""
    rows = results["rows"]
    labels = [f"{r['name']} [{r['device']}]" if r["device"] != "torch" else r["name"] for r in rows]
    pct = lambda v: f"{v:.1%}"  # noqa: E731
    columns = [
        (f"accuracy on {results['test_samples']} held-out digits", [r["accuracy"] for r in rows], pct,
         "correct", "fraction"),
        ("top-1 agreement with PyTorch", [None] + [r["top1_agreement"] for r in rows[1:]], pct,
         "same class as PyTorch", "fraction"),
        ("max abs error vs PyTorch logits", [None] + [r["max_abs"] for r in rows[1:]],
         lambda v: "0" if v == 0 else f"{v:.2g}", "log scale", True),
        ("file size", [r["size_kb"] for r in rows], lambda v: f"{v:.0f} KB", "KB (PyTorch: FP32 weights)", False),
    ]
    return variant_plot(labels, list(matrix.reports), [r["speedup_vs_torch"] for r in rows],
                        [r["speedup_interval"] for r in rows], [0], "PyTorch FP32", columns,
                        "edgeai demo: digits CNN trained on scikit-learn's digits, FP32 and INT8, batch 1", [f"speed-up: {matrix.rounds} interleaved rounds; median of per-round p50 ratios, "
                                    "error bar the 95% interval; grey: within noise",
                                    "INT8: static QDQ, calibrated on 360 training images"], path)


def exported_source(module: Any) -> Any:
    return ModelSource(module, list(get("cnn").inputs), ["logits"], None, "demo:digits_cnn", "image-classification")


def table_rows(results: dict[str, Any]) -> list[list[Any]]:
    return [[r["name"], r["device"], r["ran_on"], r["precision"], f"{r['accuracy']:.2%}",
             f"{r['top1_agreement']:.2%}", r["max_abs"], round(r["size_kb"], 1), r["p50_ms"], r["p90_ms"],
             r["p99_ms"], "baseline" if r["device"] == "torch" else _speedup_text(r)] for r in results["rows"]]


def _speedup_text(row: dict[str, Any]) -> str | None:
    if row.get("speedup_vs_torch") is None:
        return None
    iv = row.get("speedup_interval")
    return f"{row['speedup_vs_torch']:.2f}x" + (f" [{iv[0]:.3g}, {iv[1]:.3g}]" if iv else "")
