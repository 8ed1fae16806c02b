"""PyTorch -> ONNX export, validated against the original right away.

``export()`` resolves the source, picks an exporter (dynamo, falling back to TorchScript), writes the
file atomically with edgeai metadata, and validates it on fresh inputs at a batch size and sequence
length the export never saw, which is what proves the dynamic axes are really dynamic.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeai.errors import EdgeAIError, ExportError
from edgeai.specs import TensorSpec, apply_dynamic_axes

# exporter name -> "module:function"; each returns an onnx.ModelProto.
EXPORTERS: dict[str, str] = {
    "dynamo": "edgeai.exporters.torch_onnx:export_dynamo",
    "torchscript": "edgeai.exporters.torch_onnx:export_torchscript",
}

# Sizes for the export example and for validation: distinct per symbol, because torch.export
# assumes dims with equal example sizes are the same dim, and never 1 (it would specialize).
_EXPORT_SIZES = [2, 5, 7, 11, 13]
_VALIDATE_SIZES = [3, 9, 6, 4, 10]


@dataclass(frozen=True)
class ExportResult:
    path: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    exporter: str
    opset: int | None
    export_time_s: float
    size_bytes: int
    validation: Any = None  # ParityReport at unseen shapes, or None with validate=False
    validation_dims: dict[str, int] = field(default_factory=dict)
    attempts: tuple[str, ...] = ()  # what was tried before the exporter that worked

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "inputs": [s.to_dict() for s in self.inputs],
                "outputs": [s.to_dict() for s in self.outputs], "exporter": self.exporter, "opset": self.opset,
                "export_time_s": round(self.export_time_s, 3), "size_bytes": self.size_bytes,
                "validation_dims": self.validation_dims, "attempts": list(self.attempts),
                "validation": self.validation.to_dict() if self.validation is not None else None}


def _symbol_sizes(specs: Sequence[TensorSpec], sizes: list[int], dims: Mapping[str, int] | None) -> dict[str, int]:
    symbols = sorted({d for s in specs for d in s.shape if isinstance(d, str)}, key=lambda d: (d != "batch", d))
    out = {sym: sizes[i % len(sizes)] + 16 * (i // len(sizes)) for i, sym in enumerate(symbols)}
    out.update(dims or {})
    return out


def _load_exporter(name: str) -> Callable[..., Any]:
    import importlib

    mod, fn = EXPORTERS[name].split(":")
    return getattr(importlib.import_module(mod), fn)


def _example_args(source: Any, specs: Sequence[TensorSpec], dims: Mapping[str, int]) -> tuple[Any, ...]:
    import torch

    from edgeai.specs import make_inputs

    if source.example_inputs:
        feeds = dict(source.example_inputs)
        # Size-1 dynamic dims would be specialized by torch.export: repeat them to 2.
        for s in specs:
            arr = feeds[s.name]
            for axis, d in enumerate(s.shape):
                if isinstance(d, str) and arr.shape[axis] == 1:
                    arr = np.repeat(arr, 2, axis=axis)
            feeds[s.name] = arr
    else:
        feeds = make_inputs(specs, dims, seed=1)
    return tuple(torch.from_numpy(np.ascontiguousarray(feeds[s.name])) for s in specs)


def export(model: Any, example_inputs: Any = None, path: str | os.PathLike = "model.onnx", *,
           dynamic_axes: Mapping[str, Mapping[int, str]] | None = None, opset: int | None = None,
           exporter: str = "auto", validate: bool = True, inputs: Sequence[TensorSpec] | None = None,
           output_names: Sequence[str] | None = None, task: str | None = None, atol: float = 1e-4,
           validation_dims: Mapping[str, int] | None = None, simplify: bool = False) -> ExportResult:
    """Export a PyTorch model to ONNX and validate it against the original.

    Args:
        model: an ``nn.Module`` or a source string (``zoo:cnn``, ``pkg.mod:factory``,
            ``file.py:factory``, ``model.pt2``, a transformers folder with ``task``).
        example_inputs: example tensors (tuple, or dict by input name) for an ``nn.Module``.
        path: where to write the ``.onnx`` file (atomically; >2 GB models use external data).
        dynamic_axes: ``{input: {axis: symbol}}``; by default axis 0 of every input is ``batch``
            and sources with known specs (zoo, transformers) keep their own symbols.
        opset: ONNX opset (default 18 for dynamo, 17 for TorchScript).
        exporter: ``auto`` (dynamo, then TorchScript if dynamo fails or does not validate),
            ``dynamo`` or ``torchscript``.
        validate: run the file on onnxruntime CPU against PyTorch at unseen dims.
        inputs: input specs where the source has none (``--input`` on the CLI).
        atol: absolute tolerance of the validation (cosine must also be >= 0.9999).
        simplify: run onnxslim over the exported graph (constant folding, dead nodes).

    Raises:
        ModelLoadError: the source cannot be resolved.
        ExportError: every exporter failed, or the file does not match PyTorch; nothing is written.
    """
    from edgeai.sources import resolve

    if exporter not in ("auto", *EXPORTERS):
        raise ExportError(f"unknown exporter {exporter!r}; use auto, {', '.join(EXPORTERS)}")
    path = Path(path)
    if path.suffix != ".onnx":
        raise ExportError(f"output path {path} should end in .onnx")
    if opset is not None:
        import onnx

        if not 7 <= opset <= onnx.defs.onnx_opset_version():
            raise ExportError(f"opset {opset} does not exist for onnx {onnx.__version__}; use 7 to "
                              f"{onnx.defs.onnx_opset_version()} (or leave it out for the exporter's default)")
    source = resolve(model, task=task, inputs=inputs, example_inputs=example_inputs)
    specs = list(source.inputs)
    if dynamic_axes:
        specs = apply_dynamic_axes(specs, dynamic_axes)
        source = dataclasses.replace(source, inputs=specs)  # the reference must accept the same dims
    names = list(output_names or source.output_names or [])
    if not names:
        import torch

        from edgeai.runtimes.torch import flatten_outputs

        probe = _example_args(source, specs, _symbol_sizes(specs, _EXPORT_SIZES, None))
        with torch.inference_mode():
            n = len(flatten_outputs(source.module(*probe)))
        names = ["output"] if n == 1 else [f"output_{i}" for i in range(n)]
    export_dims = _symbol_sizes(specs, _EXPORT_SIZES, None)
    check_dims = _symbol_sizes(specs, _VALIDATE_SIZES, validation_dims)
    args = _example_args(source, specs, export_dims)
    order = list(EXPORTERS) if exporter == "auto" else [exporter]
    attempts: list[str] = []
    last_error: Exception | None = None
    for name in order:
        t0 = time.perf_counter()
        try:
            proto = _run_exporter(name, source.module, args, specs, names, opset)
        except ExportError as e:
            attempts.append(f"{name}: {e}")
            last_error = e
            continue
        elapsed = time.perf_counter() - t0
        from edgeai.onnxfile import opset as written_opset

        if opset is not None and written_opset(proto) != opset:
            # torch's exporters fall back to their own default opset without an error.
            attempts.append(f"{name}: asked for opset {opset}, it wrote opset {written_opset(proto)}")
            last_error = ExportError(attempts[-1])
            continue
        if simplify:
            proto = _simplify(proto)
        _annotate(proto, specs, names, source, name)
        result = _write_and_validate_safe(proto, path, specs, names, source, name, elapsed, validate, atol,
                                     check_dims, tuple(attempts))
        if isinstance(result, ExportResult):
            return result
        attempts.append(f"{name}: {result}")
        last_error = ExportError(result)
    detail = "\n  ".join(attempts)
    raise ExportError(f"could not export {source.description} to ONNX:\n  {detail}") from last_error


def _run_exporter(name: str, module: Any, args: tuple[Any, ...], specs: Sequence[TensorSpec],
                  names: Sequence[str], opset: int | None) -> Any:
    from edgeai.exporters.torch_onnx import quiet

    fn = _load_exporter(name)
    with quiet() as log:
        try:
            return fn(module, args, specs, names, opset)
        except Exception as e:
            raise ExportError(_explain(e, log.getvalue())) from e


def _explain(e: Exception, log: str) -> str:
    """One line naming the cause, from the exception chain (the exporters nest theirs deeply)."""
    causes = []
    cur: BaseException | None = e
    while cur is not None:
        causes.append(cur)
        cur = cur.__cause__ or cur.__context__
    root = causes[-1]
    text = str(root).strip().replace("\x1b[96m", "").replace("\x1b[0m", "")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(("- ", "For more", "(Refer"))]
    msg = f"{type(root).__name__}: {' '.join(lines[:3])[:400]}"
    if "missing" in text and "required positional argument" in text:
        msg += " — the forward needs an input that was not given; pass it in example_inputs or --input"
    elif "is not supported" in text or "No decomposition" in text or "Unsupported" in text \
            or "not implemented" in text.lower():
        msg += " — an operator has no ONNX mapping; rewrite it with supported ops or register a custom translation"
    return msg


def _simplify(proto: Any) -> Any:
    try:
        import onnxslim
    except ImportError as e:
        raise ExportError("simplify=True needs onnxslim (pip install onnxslim)") from e
    return onnxslim.slim(proto)


def _annotate(proto: Any, specs: Sequence[TensorSpec], names: Sequence[str], source: Any, exporter: str) -> None:
    import edgeai
    from edgeai.onnxfile import write_metadata

    # Give every graph input our symbolic names (TorchScript names some dims itself).
    by_name = {s.name: s for s in specs}
    for vi in proto.graph.input:
        spec = by_name.get(vi.name)
        if spec is None:
            continue
        for dim, want in zip(vi.type.tensor_type.shape.dim, spec.shape, strict=False):
            if isinstance(want, str):
                dim.dim_param = want
    for i, vi in enumerate(proto.graph.output):
        if i < len(names) and vi.name != names[i]:
            pass  # names were passed to the exporter; nothing to patch
    write_metadata(proto, {"edgeai_version": edgeai.__version__, "source": source.description,
                           "task": source.task, "family": source.family, "exporter": exporter,
                           "inputs": [s.to_dict() for s in specs], "outputs": list(names)})
    proto.producer_name = f"edgeai {edgeai.__version__} ({exporter})"


def _write_and_validate(proto: Any, path: Path, specs: Sequence[TensorSpec], names: Sequence[str], source: Any,
                        exporter: str, elapsed: float, validate: bool, atol: float, dims: dict[str, int],
                        attempts: tuple[str, ...]) -> ExportResult | str:
    """Write to a temp file, validate it there, and rename over ``path`` only if it passes."""
    from edgeai.atomic import atomic_path, save_onnx
    from edgeai.onnxfile import io_specs, opset

    report = None
    with atomic_path(path) as tmp:
        save_onnx(proto, tmp)
        if validate:
            report = _validate(tmp, source, specs, atol, dims)
            if isinstance(report, str):
                raise _Invalid(report)
    # (on _Invalid the temp file is already removed by atomic_path)
    inputs, outputs = io_specs(proto)
    return ExportResult(path, tuple(inputs), tuple(outputs), exporter, opset(proto), elapsed,
                        path.stat().st_size, report, dims if validate else {}, attempts)


class _Invalid(EdgeAIError):
    pass


def _validate(onnx_path: Path, source: Any, specs: Sequence[TensorSpec], atol: float, dims: dict[str, int]) -> Any:
    from edgeai.parity import Tolerance, compare
    from edgeai.runtimes import load
    from edgeai.runtimes.base import Model
    from edgeai.runtimes.torch import TorchRuntime
    from edgeai.specs import make_inputs

    try:
        candidate = load(onnx_path, "cpu")
    except EdgeAIError as e:
        return f"onnxruntime cannot load the exported file: {e}"
    reference = Model(TorchRuntime(source))
    feeds = [make_inputs(specs, dims, seed=100 + i) for i in range(2)]
    try:
        report = compare(reference, candidate, feeds, tolerance=Tolerance(atol=atol, rtol=1e-3, min_cosine=0.9999))
    except EdgeAIError as e:
        fixed = [f"{s.name}{s.shape_str()}" for s in candidate.inputs if not s.is_dynamic]
        return (f"the exported file fails at dims {dims} the export did not see ({e}); dynamic axes may have "
                f"been fixed during export (inputs with only fixed dims: {fixed})")
    if not report.passed:
        return f"validation at unseen dims {dims} failed: {report.verdict()}"
    return report


def _write_and_validate_safe(*a: Any, **k: Any) -> ExportResult | str:
    try:
        return _write_and_validate(*a, **k)
    except _Invalid as e:
        return str(e)
