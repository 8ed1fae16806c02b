"""Static INT8 in QDQ format (onnxruntime quantize_static) with calibration data."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from edgeai.cpu import cpu_info
from edgeai.errors import EdgeAIError, QuantizationError
from edgeai.quantization.calibration import collect_samples

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


def preprocess(src: Path, work: Path) -> tuple[Path, str | None]:
    """onnxruntime's quant_pre_process (shape inference + optimization); on failure keep the original.

    It runs with ``work`` as the current directory: when its symbolic shape inference fails it
    leaves ``sym_shape_infer_temp.onnx`` and a ``<uuid>.data`` file in the current directory.
    """
    import os

    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = work / "preprocessed.onnx"
    cwd = os.getcwd()
    os.chdir(work)
    try:
        try:
            quant_pre_process(str(src.resolve()), str(out.resolve()), skip_symbolic_shape=False)
            return out, None
        except Exception as first:
            try:
                quant_pre_process(str(src.resolve()), str(out.resolve()), skip_symbolic_shape=True)
                return out, f"quant_pre_process: symbolic shape inference failed ({type(first).__name__}); ran without it"
            except Exception as e:
                return src, f"quant_pre_process failed ({type(e).__name__}: {str(e)[:120]}); quantized the export as is"
    finally:
        os.chdir(cwd)


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
        model_in, note = preprocess(src, Path(work)) if preprocess_model else (src, None)
        if note:
            notes.append(note)
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
    return {"format": "QDQ", "per_channel": per_channel, "reduce_range": reduce_range,
            "calibrate_method": calibrate_method, "activation_type": activation_type, "weight_type": weight_type,
            "calibration_samples": len(data), "nodes_to_exclude": list(nodes_to_exclude or []),
            **({"exclude_op_types": list(exclude_op_types)} if exclude_op_types else {}), "notes": notes}
