"""The two torch.onnx exporters: dynamo (``torch.export`` based, the default) and TorchScript."""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from edgeai.specs import TensorSpec

DEFAULT_OPSET = 18


@contextlib.contextmanager
def _fd_redirect(target: Any) -> Iterator[None]:
    # The TorchScript exporter logs from C++ straight to file descriptor 2 ("Torch IR graph at
    # exception"), past sys.stderr; the CLI promises one line on stderr, so capture the descriptors.
    saved = []
    try:
        for fd in (1, 2):
            saved.append((fd, os.dup(fd)))
    except OSError:  # no real descriptors (embedded interpreters): Python-level capture only
        for _, dup in saved:
            os.close(dup)
        yield
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    try:
        for fd, _ in saved:
            os.dup2(target.fileno(), fd)
        yield
    finally:
        for fd, dup in saved:
            os.dup2(dup, fd)
            os.close(dup)


@contextlib.contextmanager
def quiet() -> Iterator[io.StringIO]:
    """Silence the exporters' prints, C++ logs and warnings; the captured text explains failures."""
    buf = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx",
                                              "torch._export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    native = tempfile.TemporaryFile(mode="w+b")
    try:
        with warnings.catch_warnings(), _fd_redirect(native), contextlib.redirect_stdout(buf), \
                contextlib.redirect_stderr(buf):
            warnings.simplefilter("ignore")
            yield buf
    finally:
        for lg, lvl in zip(loggers, levels, strict=True):
            lg.setLevel(lvl)
        native.seek(0)
        buf.write(native.read().decode(errors="replace"))
        native.close()


def _symbols(specs: Sequence[TensorSpec]) -> dict[str, Any]:
    from torch.export import Dim

    names = {d for s in specs for d in s.shape if isinstance(d, str)}
    # torch.export.Dim names must be identifiers; our symbols already are.
    return {n: Dim(n) for n in sorted(names)}


def export_dynamo(module: Any, args: tuple[Any, ...], specs: Sequence[TensorSpec], output_names: Sequence[str],
                  opset: int | None) -> Any:
    """``torch.onnx.export(dynamo=True)`` with named dynamic dims; returns an ``onnx.ModelProto``."""
    dims = _symbols(specs)
    per_input = tuple({i: dims[d] for i, d in enumerate(s.shape) if isinstance(d, str)} or None for s in specs)
    params = list(inspect.signature(module.forward).parameters.values())
    varargs = bool(params) and params[0].kind is inspect.Parameter.VAR_POSITIONAL
    dynamic_shapes = (per_input,) if varargs else per_input
    program = torch.onnx.export(module, args, None, dynamo=True, opset_version=opset or DEFAULT_OPSET,
                                input_names=[s.name for s in specs], output_names=list(output_names),
                                dynamic_shapes=dynamic_shapes if dims else None, verbose=False,
                                optimize=True, external_data=False)
    return program.model_proto


def export_torchscript(module: Any, args: tuple[Any, ...], specs: Sequence[TensorSpec],
                       output_names: Sequence[str], opset: int | None) -> Any:
    """The TorchScript (tracing) exporter; dynamic axes by name. Returns an ``onnx.ModelProto``."""
    import onnx

    dynamic_axes = {s.name: {i: d for i, d in enumerate(s.shape) if isinstance(d, str)} for s in specs}
    if any("batch" in s.shape for s in specs):
        for out in output_names:
            dynamic_axes.setdefault(out, {0: "batch"})
    # Through a file, not a buffer: over 2 GB the exporter writes external data beside it.
    with tempfile.TemporaryDirectory(prefix="edgeai-ts-") as folder:
        target = os.path.join(folder, "model.onnx")
        torch.onnx.export(module, args, target, dynamo=False, opset_version=min(opset or 17, 20),
                          input_names=[s.name for s in specs], output_names=list(output_names),
                          dynamic_axes={k: v for k, v in dynamic_axes.items() if v}, do_constant_folding=True)
        return onnx.load(target)  # reads any external data into memory before the folder goes
