"""PyTorch -> ONNX export of one graph, validated against the original right away.

``export_graph()`` resolves the source, picks an exporter (dynamo, falling back to TorchScript), writes the
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

from edgeai import __version__
from edgeai.errors import EdgeAIError, ExportError, ExportValidationError, WriteError
from edgeai.onnxfile import file_size, io_specs, move_onnx, opset, save_onnx, write_metadata
from edgeai.onnxfile import opset as written_opset
from edgeai.parity import ParityReport, Tolerance, compare
from edgeai.registry import import_attr
from edgeai.runtimes import load
from edgeai.runtimes.base import Model
from edgeai.sources import missing_forward_args, resolve
from edgeai.specs import TensorSpec, apply_dynamic_axes, make_inputs

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
    validation: ParityReport | None = None  # at unseen shapes; None with validate=False
    validation_dims: dict[str, int] = field(default_factory=dict)
    attempts: tuple[str, ...] = ()  # what was tried before the exporter that worked

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "inputs": [s.to_dict() for s in self.inputs],
                "outputs": [s.to_dict() for s in self.outputs], "exporter": self.exporter, "opset": self.opset,
                "export_time_s": round(self.export_time_s, 3), "size_bytes": self.size_bytes,
                "validation_dims": self.validation_dims, "attempts": list(self.attempts),
                "validation": self.validation.to_dict() if self.validation is not None else None}


def _symbol_sizes(specs: Sequence[TensorSpec], sizes: list[int], dims: Mapping[str, int] | None,
                  ranges: Mapping[str, tuple[int, int]] | None = None) -> dict[str, int]:
    symbols = sorted({d for s in specs for d in s.shape if isinstance(d, str)}, key=lambda d: (d != "batch", d))
    out = {sym: sizes[i % len(sizes)] + 16 * (i // len(sizes)) for i, sym in enumerate(symbols)}
    for sym, (low, high) in (ranges or {}).items():
        if sym in out:  # a torch.export archive may bound its dims (Dim("seq", max=64))
            out[sym] = min(max(out[sym], low, 2), high)
    out.update(dims or {})
    return out


def _load_exporter(name: str) -> Callable[..., Any]:
    return import_attr(EXPORTERS[name])


def _example_args(source: Any, specs: Sequence[TensorSpec], dims: Mapping[str, int]) -> tuple[Any, ...]:
    import torch

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


def export_graph(model: Any, example_inputs: Any = None, path: str | os.PathLike = "model.onnx", *,
           dynamic_axes: Mapping[str, Mapping[int, str]] | None = None, opset: int | None = None,
           exporter: str = "auto", validate: bool = True, inputs: Sequence[TensorSpec] | None = None,
           output_names: Sequence[str] | None = None, task: str | None = None, atol: float = 1e-4,
           validation_dims: Mapping[str, int] | None = None, simplify: bool = False,
           weights: str | os.PathLike | None = None) -> ExportResult:
    """Export a PyTorch model to one ONNX graph and validate it against the original.

    The arguments, return value and errors are those of :func:`edgeai.export`, which dispatches
    here for every task that is not a KV-cache decoder.
    """
    if exporter not in ("auto", *EXPORTERS):
        raise ExportError(f"unknown exporter {exporter!r}; use auto, {', '.join(EXPORTERS)}")
    path = Path(path)
    if path.suffix != ".onnx":
        raise ExportError(f"output path {path} should end in .onnx")
    if path.is_dir():
        raise ExportError(f"output path {path} is a folder; give a file name like {path / 'model.onnx'}")
    if opset is not None:
        import onnx

        if not 7 <= opset <= onnx.defs.onnx_opset_version():
            raise ExportError(f"opset {opset} does not exist for onnx {onnx.__version__}; use 7 to "
                              f"{onnx.defs.onnx_opset_version()} (or leave it out for the exporter's default)")
    source = resolve(model, task=task, inputs=inputs, example_inputs=example_inputs, weights=weights)
    specs = list(source.inputs)
    if dynamic_axes:
        specs = apply_dynamic_axes(specs, dynamic_axes)
        source = dataclasses.replace(source, inputs=specs)  # the reference must accept the same dims
    _check_forward_takes(source, specs)
    ranges = source.extra.get("dim_ranges")
    export_dims = _symbol_sizes(specs, _EXPORT_SIZES, None, ranges)
    check_dims = _symbol_sizes(specs, _VALIDATE_SIZES, validation_dims, ranges)
    args = _example_args(source, specs, export_dims)
    names = list(output_names or source.output_names or []) or _probe_output_names(source, args)
    order = list(EXPORTERS) if exporter == "auto" else [exporter]
    attempts: list[str] = []
    fixes: list[str] = []
    mismatched = False
    last_error: Exception | None = None
    for name in order:
        t0 = time.perf_counter()
        try:
            proto = _run_exporter(name, source.module, args, specs, names, opset)
        except _ExporterFailed as e:
            attempts.append(f"{name}: {e.cause}")
            fixes.append(e.fix)
            last_error = e.__cause__ if isinstance(e.__cause__, Exception) else e
            continue
        elapsed = time.perf_counter() - t0
        if opset is not None and written_opset(proto) != opset:
            # torch's exporters fall back to their own default opset without an error.
            attempts.append(f"{name}: asked for opset {opset}, it wrote opset {written_opset(proto)}")
            last_error = ExportError(attempts[-1])
            continue
        if simplify:
            proto = _simplify(proto)
        _annotate(proto, specs, names, source, name)
        result = _write_and_validate(proto, path, specs, names, source, name, elapsed, validate, atol,
                                     check_dims, tuple(attempts))
        if isinstance(result, ExportResult):
            return result
        reason, fix = result
        attempts.append(f"{name}: {reason}")
        fixes.append(fix)
        mismatched = True
    fix = next((f for f in fixes if f), _GENERIC_FIX)
    error = ExportValidationError if mismatched else ExportError
    raise error(f"could not export {source.description} to ONNX ({' | '.join(attempts)}) — {fix}") from last_error


_GENERIC_FIX = "rerun with --debug for the exporters' full log; try another --opset or --exporter"


def _check_forward_takes(source: Any, specs: Sequence[TensorSpec]) -> None:
    """A forward that needs more inputs than were given fails now, by name, not deep in an exporter."""
    missing = missing_forward_args(source.module, len(specs))
    if missing:
        given = [s.name for s in specs]
        raise ExportError(f"{source.description}: forward() needs {missing} but only {given} were given; return "
                          f"them in the factory's example_inputs or add --input-spec {missing[0]}:DIMS:DTYPE")


def _probe_output_names(source: Any, args: tuple[Any, ...]) -> list[str]:
    import torch

    from edgeai.runtimes.torch import flatten_outputs

    try:
        with torch.inference_mode():
            n = len(flatten_outputs(source.module(*args)))
    except EdgeAIError:
        raise
    except Exception as e:
        shapes = [f"{tuple(a.shape)} {str(a.dtype).replace('torch.', '')}" for a in args]
        raise ExportError(f"{source.description} fails in PyTorch on sample inputs {shapes} ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:300]}); check the --input-spec shapes and dtypes, or give "
                          "example inputs") from e
    return ["output"] if n == 1 else [f"output_{i}" for i in range(n)]


class _ExporterFailed(EdgeAIError):
    def __init__(self, cause: str, fix: str):
        super().__init__(f"{cause} — {fix}" if fix else cause)
        self.cause, self.fix = cause, fix


def _run_exporter(name: str, module: Any, args: tuple[Any, ...], specs: Sequence[TensorSpec],
                  names: Sequence[str], opset: int | None) -> Any:
    from edgeai.exporters.torch_onnx import quiet

    fn = _load_exporter(name)
    with quiet() as log:
        try:
            return fn(module, args, specs, names, opset)
        except Exception as e:
            cause, fix = _explain(e, log.getvalue())
            raise _ExporterFailed(cause, fix) from e


def _explain(e: Exception, log: str) -> tuple[str, str]:
    """The cause in one line, from the exception chain (the exporters nest theirs deeply), and a fix."""
    causes = []
    cur: BaseException | None = e
    while cur is not None and cur not in causes:
        causes.append(cur)
        cur = cur.__cause__ or cur.__context__
    root = causes[-1]
    text = str(root).strip().replace("\x1b[96m", "").replace("\x1b[0m", "")
    lines = [ln.strip() for ln in text.splitlines()
             if ln.strip() and not ln.strip().startswith(("- ", "For more", "(Refer", "Failure message"))]
    cause = f"{type(root).__name__}: {' '.join(lines[:2])[:300]}"
    everything = " ".join(str(c) for c in causes) + log
    fix = ""
    if "missing" in everything and "required positional argument" in everything:
        fix = "the forward needs an input that was not given; pass it in example_inputs or with --input-spec"
    elif any(k in everything for k in ("is not supported", "No decomposition", "No ONNX function found",
                                       "Unsupported", "not implemented", "UnsupportedOperator")):
        fix = ("an operator has no ONNX mapping: replace it with supported ops in the model, register a custom "
               "translation (torch.onnx.export custom_translation_table), or try a newer --opset")
    elif "Constraints violated" in everything or "specialized" in everything:
        fix = ("the model fixes a dim that was marked dynamic (e.g. a reshape to a constant); give that dim a fixed "
               "size with --input-spec, or remove it from --dynamic")
    return cause, fix


def _simplify(proto: Any) -> Any:
    try:
        import onnxslim
    except ImportError as e:
        raise ExportError("--simplify (simplify=True) needs onnxslim: pip install onnxslim, or edgeai[extras]") from e
    try:
        return onnxslim.slim(proto)
    except Exception as e:
        raise ExportError(f"onnxslim failed to simplify the graph ({type(e).__name__}: {e}); export without "
                          "--simplify") from e


def _annotate(proto: Any, specs: Sequence[TensorSpec], names: Sequence[str], source: Any, exporter: str) -> None:
    # Give every graph input our symbolic names (TorchScript names some dims itself).
    by_name = {s.name: s for s in specs}
    for vi in proto.graph.input:
        spec = by_name.get(vi.name)
        if spec is None:
            continue
        for dim, want in zip(vi.type.tensor_type.shape.dim, spec.shape, strict=False):
            if isinstance(want, str):
                dim.dim_param = want
    meta = {"edgeai_version": __version__, "source": source.description, "task": source.task,
            "family": source.family, "exporter": exporter, "inputs": [s.to_dict() for s in specs],
            "outputs": list(names)}
    if source.extra.get("output_kinds"):  # what each output means (real:NAME sources declare it)
        meta["output_kinds"] = dict(source.extra["output_kinds"])
    write_metadata(proto, meta)
    proto.producer_name = f"edgeai {__version__} ({exporter})"


def _write_and_validate(proto: Any, path: Path, specs: Sequence[TensorSpec], names: Sequence[str], source: Any,
                        exporter: str, elapsed: float, validate: bool, atol: float, dims: dict[str, int],
                        attempts: tuple[str, ...]) -> ExportResult | tuple[str, str]:
    """Write into a staging folder beside ``path``, validate there, and move into place only if it passes.

    Returns the result, or why the file failed validation and what to do (nothing is left behind then).
    A model over 2 GB is staged with its ``<name>.data`` file; the data file moves first, so the model
    on disk never points at a missing one.
    """
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    report = None
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as staging:
        staged = Path(staging) / path.name
        try:
            save_onnx(proto, staged)
        except WriteError as e:  # name the file the user asked for, not our staging folder
            raise WriteError(path, e.cause) from e.cause
        if validate:
            report = _validate(staged, source, specs, atol, dims)
            if isinstance(report, tuple):
                return report
        move_onnx(staged, path)
    inputs, outputs = io_specs(proto)
    size = file_size(path) if _uses_external_data(proto) else path.stat().st_size
    return ExportResult(path, tuple(inputs), tuple(outputs), exporter, opset(proto), elapsed, size, report,
                        dims if validate else {}, attempts)


def _uses_external_data(proto: Any) -> bool:
    return any(t.data_location == 1 for t in proto.graph.initializer)  # onnx.TensorProto.EXTERNAL


_BAKED_SHAPE_FIX = ("the exporter baked a traced size into the graph (a reshape or view of a dynamic dim): use "
                    "--exporter dynamo, or compute sizes with tensor ops instead of Python ints")
_MISMATCH_FIX = ("the graph does not match PyTorch at new shapes: look for Python control flow on shapes or values "
                 "(the exporter fixed one branch), or raise --atol if the difference is numerical noise")


def _validate(onnx_path: Path, source: Any, specs: Sequence[TensorSpec], atol: float,
              dims: dict[str, int]) -> Any:
    """The ParityReport at ``dims``, or ``(reason, fix)`` when the file does not load, run, or match."""
    from edgeai.exporters.torch_onnx import quiet
    from edgeai.runtimes.torch import TorchRuntime

    reference = Model(TorchRuntime(source))
    feeds = [make_inputs(specs, dims, seed=100 + i) for i in range(2)]
    # quiet(): onnxruntime logs a failing kernel on stderr itself; the reason goes into our message.
    with quiet():
        try:
            candidate = load(onnx_path, "cpu")
        except EdgeAIError as e:
            return f"onnxruntime cannot load the exported file: {e}", _GENERIC_FIX
        try:
            report = compare(reference, candidate, feeds,
                             tolerance=Tolerance(atol=atol, rtol=1e-3, min_cosine=0.9999))
        except EdgeAIError as e:
            fixed = [f"{s.name}{s.shape_str()}" for s in candidate.inputs if not s.is_dynamic]
            hint = f"; inputs left with fixed dims: {fixed}" if fixed else ""
            return f"the file fails to run at dims {dims} the export did not see ({e}){hint}", _BAKED_SHAPE_FIX
        finally:
            del candidate  # release the session before the staging folder is removed
    if not report.passed:
        return f"validation at unseen dims {dims} failed: {report.verdict()}", _MISMATCH_FIX
    return report
