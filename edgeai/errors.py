"""One exception family. Every message says what was expected, what was given, and what to do."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


class EdgeAIError(Exception):
    """Base class of every error edgeai raises on purpose. The CLI prints it and exits 2."""

    exit_code = 2


class ModelLoadError(EdgeAIError):
    """A model file or source could not be read (missing, corrupt, not ONNX, unsafe)."""


class InputMismatchError(EdgeAIError):
    """Feeds do not match the model's inputs (names, dtypes, ranks, fixed dims)."""


class InputTypeError(InputMismatchError, TypeError):
    """Feeds given in a form the call does not take (a dict passed positionally to ``Model(...)``)."""


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


class WriteError(EdgeAIError):
    """A destination could not be written; it is left as it was. Exit code 2."""

    def __init__(self, dst: Path, cause: OSError):
        self.dst, self.cause = dst, cause
        what = cause.strerror or str(cause)
        hint = {errno.ENOSPC: "free some disk space", errno.EDQUOT: "free some disk quota",
                errno.EFBIG: "the file is over this system's file-size limit (ulimit -f)",
                errno.EROFS: "the file system is read-only"}.get(cause.errno,
                                                                 "check that the folder exists and is writable")
        super().__init__(f"cannot write {dst}: {what}; nothing was written ({hint})")


class FileAccessError(EdgeAIError):
    """The operating system refused a file operation (a name too long, a permission, a device
    error) somewhere edgeai has no more specific error for. Exit code 2."""


class OutputOverlapError(EdgeAIError):
    """An output path names one of the command's inputs (or lies inside a bundle it reads); nothing
    was written. Exit code 2."""


class ExportValidationError(ExportError):
    """An exporter produced a graph, but it does not match PyTorch: a failed check, exit code 1."""

    exit_code = 1


class ToleranceNotMet(QuantizationError):
    """The best result reached is still out of tolerance: a failed check, exit code 1."""

    exit_code = 1


class ParityAssertionError(ParityError, AssertionError):
    """A parity assertion failed: both an :class:`~edgeai.errors.ParityError` and an ``AssertionError``."""
