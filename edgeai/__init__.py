"""edgeai: export PyTorch models to ONNX, quantize them, run them on ONNX Runtime and OpenVINO,
and prove parity and speed on the target hardware.

``import edgeai`` is cheap: torch, onnxruntime, openvino, nncf and transformers load only when a
function that needs them is called.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"  # set before any submodule runs: they read it as `from edgeai import __version__`

# public name -> module that defines it; resolved on first access (PEP 562).
_LAZY = {
    "export": "edgeai.exporters", "ExportResult": "edgeai.exporters",
    "quantize": "edgeai.quantization", "QuantizeResult": "edgeai.quantization",
    "load": "edgeai.runtimes", "devices": "edgeai.runtimes", "Model": "edgeai.runtimes.base",
    "RuntimeInfo": "edgeai.runtimes.base",
    "compare": "edgeai.parity", "Tolerance": "edgeai.parity", "ParityReport": "edgeai.parity",
    "benchmark": "edgeai.bench", "BenchReport": "edgeai.bench",
    "TensorSpec": "edgeai.specs",
    "cpu_info": "edgeai.cpu",
    "deploy": "edgeai.deployment",
    "generate": "edgeai.generation",
}

from edgeai.errors import (  # noqa: E402  (errors are light and needed everywhere)
    DeviceUnavailableError,
    EdgeAIError,
    ExportError,
    ExportValidationError,
    FileAccessError,
    InputMismatchError,
    InputTypeError,
    MetricNotApplicable,
    ModelLoadError,
    NonFiniteOutputError,
    OutputOverlapError,
    ParityAssertionError,
    ParityError,
    QuantizationError,
    ToleranceNotMet,
    WriteError,
)

__all__ = [
    "export", "ExportResult", "quantize", "QuantizeResult", "load", "devices", "Model", "RuntimeInfo",
    "compare", "Tolerance", "ParityReport", "benchmark", "BenchReport", "TensorSpec", "cpu_info",
    "generate", "deploy", "EdgeAIError", "ModelLoadError", "InputMismatchError", "DeviceUnavailableError", "ExportError",
    "ExportValidationError", "QuantizationError", "ToleranceNotMet", "ParityError", "ParityAssertionError",
    "NonFiniteOutputError", "WriteError", "InputTypeError", "FileAccessError", "OutputOverlapError",
    "MetricNotApplicable", "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'edgeai' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
