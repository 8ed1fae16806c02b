"""The quantization modes' registry, running one mode, and the result every mode returns."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeai.errors import QuantizationError
from edgeai.onnxfile import file_size
from edgeai.parity import ParityReport
from edgeai.registry import import_attr
from edgeai.specs import TensorSpec

# mode -> "module:function(src, dst, specs, calibration, **options) -> dict of what was applied"
MODES: dict[str, str] = {
    "dynamic": "edgeai.quantization.dynamic:quantize_dynamic",
    "static": "edgeai.quantization.static:quantize_static",
    "fp16": "edgeai.quantization.fp16:convert_fp16",
    "openvino-int8": "edgeai.quantization.openvino:quantize_openvino",
    "int4": "edgeai.quantization.weight_only:quantize_int4",
    "int8-weights": "edgeai.quantization.weight_only:quantize_int8_weights",
    "auto": "edgeai.quantization.auto:quantize_auto",
}


@dataclass(frozen=True)
class QuantizeResult:
    src: Path
    dst: Path
    mode: str
    config: dict[str, Any]
    size_before: int
    size_after: int
    parity: ParityReport | None  # dst against src on the eval inputs, on `device`
    device: str
    time_s: float
    excluded_nodes: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    candidates: tuple[dict[str, Any], ...] = ()  # what `auto` tried
    latency: dict[str, Any] = field(default_factory=dict)  # p50 ms before/after where measured
    coverage: dict[str, Any] | None = None  # INT8 coverage of the written file (coverage.Int8Coverage.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {"src": str(self.src), "dst": str(self.dst), "mode": self.mode, "config": self.config,
                "size_before": self.size_before, "size_after": self.size_after, "device": self.device,
                "time_s": round(self.time_s, 3), "excluded_nodes": list(self.excluded_nodes),
                "notes": list(self.notes), "candidates": list(self.candidates), "latency": self.latency,
                "coverage": self.coverage,
                "parity": self.parity.to_dict() if self.parity is not None else None}


def model_size(path: Path) -> int:
    """Bytes on disk, external data included."""
    return file_size(path)


def run_mode(mode: str, src: Path, dst: Path, specs: list[TensorSpec], calibration: Any, options: dict[str, Any]) -> dict:
    """Run one mode's function (``MODES``) from ``src`` into ``dst``; returns what it applied."""
    func = import_attr(MODES[mode])
    accepted = set(inspect.signature(func).parameters) - {"src", "dst", "specs", "calibration"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise QuantizationError(f"unknown option(s) for mode {mode}: {unknown}; it takes {sorted(accepted)}")
    return func(src, dst, specs, calibration, **options)
