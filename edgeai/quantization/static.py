"""Static INT8 in QDQ format (onnxruntime quantize_static) with calibration data."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from edgeai.cpu import cpu_info
from edgeai.errors import EdgeAIError, QuantizationError
from edgeai.quantization.calibration import collect_samples
from edgeai.quantization.folding import fold_recurrent_weights

METHODS = ("minmax", "entropy", "percentile")


def _reader(samples: list[dict]) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(samples)

        def get_next(self) -> dict | None:
            return next(self._it, None)

        def rewind(self) -> None:
            self._it = iter(samples)

    return Reader()


def calibration_samples(calibration: Any, specs: list[Any], limit: int) -> list[dict]:
    return collect_samples(calibration, specs, limit)


# Runs in a child process whose current directory is the work folder: when symbolic shape inference
# fails, onnxruntime saves ``sym_shape_infer_temp.onnx`` (+ a ``<uuid>.data`` file) in the current
# directory, and changing the parent's directory would break every relative path (and other threads).
_PRE_PROCESS = """
import sys
from onnxruntime.quantization.shape_inference import quant_pre_process
try:
    quant_pre_process(sys.argv[1], sys.argv[2], skip_symbolic_shape=sys.argv[3] == "1")
except Exception as e:
    print(f"{type(e).__name__}: {e}"[:300])
    sys.exit(3)
"""


def _pre_process(src: Path, out: Path, work: Path, skip_symbolic: bool) -> str | None:
    """One quant_pre_process attempt in a child process; the error line, or None when it worked."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _PRE_PROCESS, str(src), str(out), "1" if skip_symbolic else "0"],
                          cwd=work, capture_output=True, text=True)
    if proc.returncode == 0 and out.exists():
        return None
    lines = (proc.stdout.strip() or proc.stderr.strip() or f"exit code {proc.returncode}").splitlines()
    return lines[-1][:300]


def preprocess(src: Path, work: Path) -> tuple[Path, str | None]:
    """onnxruntime's quant_pre_process (shape inference + optimization); on failure keep the original.

    Paths are made absolute first (``src`` relative to the caller's current directory), and the
    process's current directory is never changed. Returns the model to quantize and a note when
    pre-processing was partial or failed; a complete failure also warns, as the graph quantized
    then is the raw export (fewer fused ops, unknown shapes left unquantized).
    """
    import warnings

    src, work = Path(src).resolve(), Path(work).resolve()
    if not src.is_file():
        raise QuantizationError(f"model to pre-process not found: {src}")
    # Recurrent weights computed in the graph (dynamo's LSTM export) first become constants:
    # quant_pre_process's optimizer does not fold them, and unfolded they are never quantized.
    model_in, fold_note = fold_recurrent_weights(src, work / "folded.onnx")
    out = work / "preprocessed.onnx"
    first = _pre_process(model_in, out, work, skip_symbolic=False)
    if first is None:
        return out, fold_note
    second = _pre_process(model_in, out, work, skip_symbolic=True)
    if second is None:
        note = f"quant_pre_process: symbolic shape inference failed ({first.split(':')[0]}); ran without it"
        return out, "; ".join(n for n in (fold_note, note) if n)
    note = f"quant_pre_process failed ({second[:160]}); quantized the export as is"
    warnings.warn(f"edgeai: {note}", stacklevel=2)
    return model_in, "; ".join(n for n in (fold_note, note) if n)


def preprocess_status(note: str | None) -> str:
    """``done``, ``partial`` (ran without symbolic shape inference) or ``failed``, from :func:`preprocess`'s note."""
    if note and "quant_pre_process failed" in note:
        return "failed"
    return "partial" if note and "symbolic shape inference failed" in note else "done"


def quantize_static(src: Path, dst: Path, specs: list[Any], calibration: Any = None, *,
                    per_channel: bool = True, reduce_range: bool | None = None, calibrate_method: str = "minmax",
                    activation_type: str = "uint8", weight_type: str = "int8", samples: int = 128,
                    nodes_to_exclude: list[str] | None = None, op_types: list[str] | None = None,
                    exclude_op_types: list[str] | None = None, preprocess_model: bool = True,
                    calibration_data: list[dict] | None = None) -> dict:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    if calibrate_method not in METHODS:
        raise QuantizationError(f"unknown calibration method {calibrate_method!r}; use one of {', '.join(METHODS)}")
    types = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    if activation_type not in types or weight_type not in types:
        raise QuantizationError("activation_type and weight_type must be int8 or uint8")
    notes = []
    if calibration is None and calibration_data is None:
        notes.append("calibrated on random inputs (no --calib given): real data gives better ranges")
    data = calibration_data or calibration_samples(calibration, specs, samples)
    if reduce_range is None:
        reduce_range = not cpu_info().has_vnni and activation_type == "uint8" and weight_type == "int8"
        notes.append(f"reduce_range={reduce_range} (CPU {'has' if cpu_info().has_vnni else 'lacks'} VNNI)")
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[calibrate_method]
    with tempfile.TemporaryDirectory(prefix="edgeai-static-") as work:
        model_in, preprocessed = Path(src), "skipped"
        if preprocess_model:
            model_in, note = preprocess(src, Path(work))
            # Said in the result itself, not only in a note: a skipped pre-processing changes what ran.
            preprocessed = preprocess_status(note)
            notes += [note] if note else []
        if exclude_op_types:
            import onnx

            present = {n.op_type for n in onnx.load(str(model_in), load_external_data=False).graph.node}
            op_types = sorted(set(op_types or present) - set(exclude_op_types))
        try:
            ort_quantize_static(str(model_in), str(dst), _reader(data), quant_format=QuantFormat.QDQ,
                                per_channel=per_channel, reduce_range=reduce_range,
                                activation_type=types[activation_type], weight_type=types[weight_type],
                                calibrate_method=method, nodes_to_exclude=nodes_to_exclude or [],
                                op_types_to_quantize=op_types or None,
                                extra_options={"CalibTensorRangeSymmetric": False})
        except EdgeAIError:
            raise
        except Exception as e:
            raise QuantizationError(f"onnxruntime quantize_static failed: {type(e).__name__}: {e}") from e
    return {"format": "QDQ", "preprocessed": preprocessed, "per_channel": per_channel, "reduce_range": reduce_range,
            "calibrate_method": calibrate_method, "activation_type": activation_type, "weight_type": weight_type,
            "calibration_samples": len(data), "nodes_to_exclude": list(nodes_to_exclude or []),
            **({"exclude_op_types": list(exclude_op_types)} if exclude_op_types else {}), "notes": notes}
