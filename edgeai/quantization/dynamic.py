"""Dynamic INT8: weights quantized offline, activations at run time (onnxruntime quantize_dynamic)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from edgeai.cpu import cpu_info
from edgeai.errors import QuantizationError
from edgeai.quantization.folding import fold_recurrent_weights


def quantize_dynamic(src: Path, dst: Path, specs: list[Any], calibration: Any = None, *,
                     per_channel: bool = False, reduce_range: bool | None = None, weight_type: str = "int8",
                     nodes_to_exclude: list[str] | None = None, op_types: list[str] | None = None) -> dict:
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    notes = []
    if reduce_range is None:
        # Without VNNI, u8s8 kernels accumulate pairs in int16 and can saturate; 7-bit weights avoid it.
        reduce_range = not cpu_info().has_vnni
        notes.append(f"reduce_range={reduce_range} because this CPU {'has' if not reduce_range else 'lacks'} VNNI")
    wtype = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}.get(weight_type)
    if wtype is None:
        raise QuantizationError(f"weight_type must be int8 or uint8; got {weight_type!r}")
    excluded = list(nodes_to_exclude or [])
    # quantize_dynamic rewrites each Gemm into a MatMul named "<gemm>_MatMul" before it reads
    # nodes_to_exclude, so a Gemm's own name would not match: pass both.
    names = excluded + [f"{n}_MatMul" for n in excluded]
    with tempfile.TemporaryDirectory(prefix=".edgeai-fold-", dir=Path(dst).parent) as work:
        # LSTM/GRU weights computed in the graph are folded to constants first, or they stay float.
        model_in, fold_note = fold_recurrent_weights(Path(src), Path(work) / "folded.onnx")
        notes += [fold_note] if fold_note else []
        try:
            ort_quantize_dynamic(str(model_in), str(dst), per_channel=per_channel, reduce_range=reduce_range,
                                 weight_type=wtype, nodes_to_exclude=names,
                                 op_types_to_quantize=op_types or None)
        except Exception as e:
            raise QuantizationError(f"onnxruntime quantize_dynamic failed on {src}: {type(e).__name__}: {e}") from e
    return {"per_channel": per_channel, "reduce_range": reduce_range, "weight_type": weight_type,
            "nodes_to_exclude": excluded, "op_types": op_types, "notes": notes}
