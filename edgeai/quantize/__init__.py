"""Quantization: each mode is one module; ``quantize()`` runs it, checks parity, and writes the file.

Modes: ``dynamic`` and ``static`` (onnxruntime.quantization), ``fp16`` (onnxconverter-common's
float16 converter), ``openvino-int8`` (NNCF post-training quantization), ``auto`` (an
accuracy-aware search over those). No mode hands out a file that failed its parity check unless
``force=True``; the parity numbers are written into the file's metadata either way.
"""

from __future__ import annotations

import importlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeai.errors import EdgeAIError, QuantizationError

# mode -> "module:function(src, dst, specs, calibration, **options) -> dict of what was applied"
MODES: dict[str, str] = {
    "dynamic": "edgeai.quantize.dynamic:quantize_dynamic",
    "static": "edgeai.quantize.static:quantize_static",
    "fp16": "edgeai.quantize.fp16:convert_fp16",
    "openvino-int8": "edgeai.quantize.openvino:quantize_openvino",
    "auto": "edgeai.quantize.auto:quantize_auto",
}


class ToleranceNotMet(QuantizationError):
    """The best result reached is still out of tolerance: a failed check, exit code 1."""

    exit_code = 1


@dataclass(frozen=True)
class QuantizeResult:
    src: Path
    dst: Path
    mode: str
    config: dict[str, Any]
    size_before: int
    size_after: int
    parity: Any  # ParityReport of dst against src on the eval inputs, on `device`
    device: str
    time_s: float
    excluded_nodes: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    candidates: tuple[dict[str, Any], ...] = ()  # what `auto` tried
    latency: dict[str, Any] = field(default_factory=dict)  # p50 ms before/after where measured

    def to_dict(self) -> dict[str, Any]:
        return {"src": str(self.src), "dst": str(self.dst), "mode": self.mode, "config": self.config,
                "size_before": self.size_before, "size_after": self.size_after, "device": self.device,
                "time_s": round(self.time_s, 3), "excluded_nodes": list(self.excluded_nodes),
                "notes": list(self.notes), "candidates": list(self.candidates), "latency": self.latency,
                "parity": self.parity.to_dict() if self.parity is not None else None}


def model_size(path: Path) -> int:
    data = Path(str(path) + ".data")
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)


def run_mode(mode: str, src: Path, dst: Path, specs: list[Any], calibration: Any, options: dict[str, Any]) -> dict:
    module, fn = MODES[mode].split(":")
    try:
        func = getattr(importlib.import_module(module), fn)
    except ImportError as e:
        raise QuantizationError(f"mode {mode!r} needs a package that is not installed ({e.name}); "
                                f"pip install edgeai[{'nncf' if 'openvino' in mode else 'extras'}]") from e
    return func(src, dst, specs, calibration, **options)


def quantize(src: str | os.PathLike, dst: str | os.PathLike, *, mode: str, calibration: Any = None,
             device: str = "cpu", tolerance: Any = None, eval_inputs: Any = None, eval_samples: int = 16,
             force: bool = False, **options: Any) -> QuantizeResult:
    """Quantize an ONNX file and prove the result still matches it.

    Args:
        src: the FP32 ``.onnx`` file (never modified).
        dst: where to write the quantized file (atomically).
        mode: ``dynamic``, ``static``, ``fp16``, ``openvino-int8`` or ``auto``.
        calibration: data for static/openvino-int8/auto (see ``edgeai.quantize.calibration``);
            ``None`` means random samples, with a warning.
        device: where parity (and, for ``auto``, latency) is measured.
        tolerance: a :class:`~edgeai.parity.Tolerance`; default by precision (INT8: cosine >= 0.995,
            top-1 >= 99%).
        eval_inputs: parity inputs (same forms as calibration); default: calibration samples.
        force: write the file even when parity fails (the failure is recorded in its metadata).
        **options: mode options, e.g. ``per_channel``, ``reduce_range``, ``calibrate_method``,
            ``nodes_to_exclude``, ``keep_io_types``, ``preset``.

    Raises:
        ModelLoadError: ``src`` is missing or not ONNX.
        QuantizationError: unknown mode, already-quantized input, bad calibration data, or the
            tolerance is not met (``ToleranceNotMet``, exit code 1; no file is written).
    """
    from edgeai.atomic import atomic_path
    from edgeai.onnxfile import graph_precision, io_specs, load_proto, read_metadata, write_metadata
    from edgeai.parity import Tolerance, compare

    if mode not in MODES:
        raise QuantizationError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    src, dst = Path(src), Path(dst)
    if dst.suffix != ".onnx":
        raise QuantizationError(f"output path {dst} should end in .onnx")
    if src.resolve() == dst.resolve():
        raise QuantizationError(f"refusing to overwrite the input {src}; choose another output path")
    proto = load_proto(src)
    precision = graph_precision(proto)
    if precision != "f32":
        meta = read_metadata(proto).get("quantization", {})
        raise QuantizationError(f"{src} is already {precision} (mode {meta.get('mode', '?')}); quantize the FP32 "
                                "export instead")
    specs, _ = io_specs(proto)
    del proto
    if mode == "auto":
        from edgeai.quantize.auto import quantize_auto

        return quantize_auto(src, dst, specs, calibration, device=device, tolerance=tolerance,
                             eval_inputs=eval_inputs, eval_samples=eval_samples, force=force, **options)
    t0 = time.perf_counter()
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix=".edgeai-q-", dir=dst.parent if dst.parent.exists() else None) as work:
        out = Path(work) / dst.name
        config = run_mode(mode, src, out, specs, calibration, dict(options))
        notes += config.pop("notes", [])
        evals = _eval_feeds(eval_inputs, calibration, specs, eval_samples)
        try:
            parity = compare(src, _load(out, device), evals,
                             tolerance=tolerance or Tolerance.for_precision("f16" if mode == "fp16" else "int8"))
        except EdgeAIError as e:
            raise QuantizationError(f"the {mode} model does not run on {device}: {e}") from e
        elapsed = time.perf_counter() - t0
        if not parity.passed and not force:
            raise ToleranceNotMet(f"{mode} quantization is out of tolerance, so nothing was written: "
                                  f"{parity.verdict()}. Try --mode auto (it excludes sensitive layers), real "
                                  "calibration data, or --force to write it anyway")
        import onnx

        model = onnx.load(str(out))
        write_metadata(model, {"quantization": {"mode": mode, "config": config, "device": device,
                                                "parity": {"passed": parity.passed, "verdict": parity.verdict()}}})
        from edgeai.atomic import save_onnx

        with atomic_path(dst) as tmp:
            save_onnx(model, tmp)
    return QuantizeResult(src, dst, mode, config, model_size(src), model_size(dst), parity, device, elapsed,
                          tuple(config.get("nodes_to_exclude") or ()), tuple(notes))


def _load(path: Path, device: str) -> Any:
    from edgeai.runtimes import load

    return load(path, device)


def _eval_feeds(eval_inputs: Any, calibration: Any, specs: list[Any], n: int) -> list[dict]:
    from edgeai.quantize.calibration import load_samples
    from edgeai.specs import make_inputs

    if eval_inputs is not None:
        return list(load_samples(eval_inputs, specs, limit=n))
    if calibration is not None and not (isinstance(calibration, str) and calibration.startswith("random")):
        return list(load_samples(calibration, specs, limit=n))
    return [make_inputs(specs, {"batch": 2}, seed=500 + i) for i in range(n)]
