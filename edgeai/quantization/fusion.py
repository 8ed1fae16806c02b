"""onnxruntime's transformer optimizer: attention, LayerNorm, GELU, SkipLayerNorm and bias fusions.

``onnxruntime.transformers.optimizer.optimize_model`` is the tool Optimum's ``ORTOptimizer``
drives. It rewrites subgraphs into onnxruntime's fused contrib ops (``Attention``,
``SkipLayerNormalization``, ``BiasGelu``, ...), which only onnxruntime runs: a fused graph is an
onnxruntime candidate, never an OpenVINO one. What fused is recorded from the optimizer's own
``get_fused_operator_statistics()``; a graph where nothing fused is not worth a candidate.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeai.errors import QuantizationError
from edgeai.onnxfile import load_proto, read_metadata, save_onnx, write_metadata

# Export family (edgeai metadata) -> the optimizer's model_type; Optimum maps whisper/bart alike.
MODEL_TYPES = {"bert": "bert", "roberta": "bert", "distilbert": "bert", "transformer": "bert", "vit": "vit",
               "gpt2": "gpt2", "t5": "t5", "whisper": "bart", "bart": "bart", "clip": "clip", "swin": "swin"}


@dataclass(frozen=True)
class FusionResult:
    """What the optimizer did: the model type it ran as and how many of each fused op it made."""

    path: Path
    model_type: str
    fused: dict[str, int] = field(default_factory=dict)  # fused op -> count, zero counts left out

    @property
    def applied(self) -> bool:
        return bool(self.fused)

    def describe(self) -> str:
        if not self.fused:
            return f"onnxruntime transformer optimizer (model_type={self.model_type}) fused nothing"
        ops = ", ".join(f"{k} x{v}" for k, v in sorted(self.fused.items()))
        return f"onnxruntime transformer optimizer (model_type={self.model_type}): {ops}"

    def to_dict(self) -> dict[str, Any]:
        return {"tool": "onnxruntime.transformers.optimizer.optimize_model", "model_type": self.model_type,
                "fused": dict(self.fused)}


def model_type_for(family: str | None) -> str:
    """The optimizer's model_type for an export family (``bert`` for anything unknown)."""
    return MODEL_TYPES.get(str(family or "").lower(), "bert")


def fuse_transformer(src: Path, dst: Path, *, model_type: str | None = None) -> FusionResult:
    """Run onnxruntime's transformer optimizer on ``src`` and write the fused graph to ``dst``.

    ``num_heads``/``hidden_size`` are detected from the graph; ``opt_level=0`` leaves onnxruntime's
    own graph passes to session creation, as Optimum does. The fused-op counts are written into the
    file's edgeai metadata (``fusion``) too.

    Raises:
        QuantizationError: the optimizer failed on this graph.
    """
    from onnxruntime.transformers.optimizer import optimize_model

    proto = load_proto(src, load_external_data=True)
    kind = model_type or model_type_for(read_metadata(proto).get("family"))
    # The optimizer warns about the producer name and prints progress on loggers of its own:
    # the outcome is reported through FusionResult instead.
    loggers = [logging.getLogger(n) for n in ("onnxruntime.transformers", "fusion", "onnx_model", "")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            optimized = optimize_model(proto, model_type=kind, num_heads=0, hidden_size=0, opt_level=0)
            stats = optimized.get_fused_operator_statistics()
    except Exception as e:
        raise QuantizationError(f"onnxruntime's transformer optimizer failed on {src} (model_type={kind}): "
                                f"{type(e).__name__}: {str(e)[:300]}") from e
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
    fused = {k: int(v) for k, v in stats.items() if v}
    result = FusionResult(Path(dst), kind, fused)
    model = optimized.model
    write_metadata(model, {"fusion": result.to_dict()})
    save_onnx(model, dst)
    return result
