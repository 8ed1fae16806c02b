"""FP16: onnxconverter-common's float16 converter, with FP32 inputs/outputs and overflow-prone ops kept FP32.

Blocked (left in FP32, with Casts around them) on top of the converter's own default list (ML ops,
TopK, Resize, Range, CumSum, Min/Max, NonMaxSuppression, RoiAlign, ...):

- Normalizations (LayerNormalization, GroupNormalization, InstanceNormalization, LpNormalization,
  and onnxruntime's fused (Skip)(Simplified)LayerNormalization): they square activations to get a
  variance, and a square overflows FP16 (max 65504) once |x| > 256; the mean over the hidden size
  also loses digits when accumulated in FP16. BatchNormalization at inference is a per-channel
  affine op and stays FP16.
- Accumulating reductions (ReduceSum, ReduceMean, ReduceSumSquare, ReduceL1, ReduceL2,
  ReduceLogSumExp, ReduceProd): sums over long axes (pooling 512 tokens of values ~200) overflow.
- Pow (x**2 in decomposed LayerNorm/RMSNorm) and Exp (overflows above x ~ 11.1).
- Softmax and LogSoftmax: the sum of exponentials over a long attention axis loses precision in
  FP16 and large attention logits turn into inf - inf = NaN.

The cost is a Cast pair around each blocked node; the matrix multiplies and convolutions, where
FP16 pays off, stay FP16.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from edgeai.errors import QuantizationError
from edgeai.onnxfile import save_onnx

FP16_UNSAFE_OPS = (
    "LayerNormalization", "GroupNormalization", "InstanceNormalization", "LpNormalization",
    "SkipLayerNormalization", "SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization",
    "ReduceSum", "ReduceMean", "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSumExp", "ReduceProd",
    "Pow", "Exp", "Softmax", "LogSoftmax",
)


def default_block_list() -> list[str]:
    """The converter's default op block list plus :data:`FP16_UNSAFE_OPS`."""
    from onnxconverter_common.float16 import DEFAULT_OP_BLOCK_LIST

    return sorted(set(DEFAULT_OP_BLOCK_LIST) | set(FP16_UNSAFE_OPS))


def convert_fp16(src: Path, dst: Path, specs: list[Any], calibration: Any = None, *, keep_io_types: bool = True,
                 op_block_list: list[str] | None = None, nodes_to_exclude: list[str] | None = None,
                 max_finite_val: float = 1e4) -> dict:
    """Convert ``src`` to FP16 at ``dst`` (a temp path the caller renames). ``calibration`` is unused.

    Args:
        keep_io_types: keep FP32 graph inputs/outputs (Casts inside), so callers' feeds do not change.
        op_block_list: op types kept FP32; default :func:`default_block_list`.
        nodes_to_exclude: node names kept FP32 in addition.
        max_finite_val: weights beyond +-this are clamped by the converter (it warns; we record it).
    """
    try:
        import onnx
        from onnxconverter_common.float16 import convert_float_to_float16
    except ImportError as e:
        raise QuantizationError("mode fp16 needs onnxconverter-common: pip install edgeai[extras]") from e

    block = list(op_block_list) if op_block_list is not None else default_block_list()
    model = onnx.load(str(src))
    present = {n.op_type for n in model.graph.node}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            converted = convert_float_to_float16(model, keep_io_types=keep_io_types, op_block_list=block,
                                                 node_block_list=list(nodes_to_exclude or []),
                                                 max_finite_val=max_finite_val)
        except Exception as e:
            raise QuantizationError(f"onnxconverter-common could not convert {src} to FP16: "
                                    f"{type(e).__name__}: {str(e)[:300]}") from e
    clamped = sorted({str(w.message) for w in caught if "truncated" in str(w.message)})
    notes = [f"kept FP32 (overflow-prone in FP16): {', '.join(sorted(present & set(block)))}"] \
        if present & set(block) else []
    if clamped:
        notes.append(f"{len(clamped)} weight value(s) outside the FP16 range were clamped, e.g. {clamped[0]}")

    save_onnx(converted, dst)
    return {"keep_io_types": keep_io_types, "blocked_ops_present": sorted(present & set(block)),
            "nodes_to_exclude": list(nodes_to_exclude or []), "notes": notes}
