"""One exception family. Every message says what was expected, what was given, and what to do."""

from __future__ import annotations


class EdgeAIError(Exception):
    """Base class of every error edgeai raises on purpose. The CLI prints it and exits 2."""

    exit_code = 2


class ModelLoadError(EdgeAIError):
    """A model file or source could not be read (missing, corrupt, not ONNX, unsafe)."""


class InputMismatchError(EdgeAIError):
    """Feeds do not match the model's inputs (names, dtypes, ranks, fixed dims)."""


class DeviceUnavailableError(EdgeAIError):
    """The requested device or precision is not available, or another one would run instead."""


class ExportError(EdgeAIError):
    """PyTorch -> ONNX export failed, or the exported file does not match the original."""


class QuantizationError(EdgeAIError):
    """A quantization mode failed or could not meet its tolerance."""


class ParityError(EdgeAIError):
    """A candidate does not match its reference within tolerance. Exit code 1: a failed check."""

    exit_code = 1


class NonFiniteOutputError(EdgeAIError):
    """A model produced NaN/Inf while asked to check values (``check_values``). Exit code 1: a failed check."""

    exit_code = 1
