"""OpenVINO INT8: NNCF post-training quantization (``nncf.quantize``), written as a QDQ ``.onnx``.

NNCF runs on the ONNX model through its ONNX backend, the same algorithms it applies to an
OpenVINO model (min/max statistics, SmoothQuant and FastBiasCorrection under the transformer preset,
the same ignored patterns), and writes QuantizeLinear/DequantizeLinear pairs. OpenVINO turns those
into the FakeQuantize ops its INT8 kernels run, and onnxruntime runs them as QDQ, so one file serves
both engines, keeps edgeai's metadata, and goes through ``check``/``bench``/``deploy`` like any other.
On the zoo encoder this gave the same parity as NNCF on ``ov.Model`` (cosine 0.99895 vs 0.99893)
and the same OpenVINO CPU latency within noise.

Encoders get ``model_type=TRANSFORMER`` (NNCF's transformer preset: SmoothQuant, ignored patterns
for attention and normalization, mixed preset); see :func:`is_transformer`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgeai.errors import EdgeAIError, QuantizationError
from edgeai.onnxfile import read_metadata, save_onnx
from edgeai.progress import is_quiet
from edgeai.quantization.calibration import collect_samples

TRANSFORMER_FAMILIES = {"transformer", "bert", "roberta", "distilbert", "gpt2", "t5", "vit", "whisper", "llama"}
_NORM_OPS = {"LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization",
             "SkipSimplifiedLayerNormalization"}


def is_transformer(model: Any) -> tuple[bool, str]:
    """Whether an ONNX model is a transformer (encoder), and why we think so.

    The export's metadata says the family when edgeai exported it; otherwise the graph does:
    attention is a Softmax between MatMuls, next to layer normalization (fused or decomposed into
    ReduceMean + Pow/Mul, as older exporters write it).
    """
    from collections import Counter

    family = str(read_metadata(model).get("family") or "").lower()
    if family:
        return family in TRANSFORMER_FAMILIES, f"export metadata family={family!r}"
    ops = Counter(n.op_type for n in model.graph.node)
    attention = ops["Softmax"] > 0 and ops["MatMul"] >= 2
    norm = bool(_NORM_OPS & set(ops)) or (ops["ReduceMean"] >= 2 and (ops["Pow"] or ops["Mul"]))
    attention = attention or bool({"Attention", "MultiHeadAttention"} & set(ops))
    if attention and norm:
        return True, "graph has attention (Softmax between MatMuls) and layer normalization"
    return False, "graph has no attention + layer-normalization pattern"


@contextlib.contextmanager
def _quiet_nncf() -> Iterator[None]:
    """NNCF prints rich progress bars to stdout: send them to stderr on a terminal, else nowhere,
    so ``--json`` output stays parseable; its INFO log goes quiet for the call."""
    import nncf

    target = sys.stderr if sys.stderr.isatty() and not is_quiet() else open(os.devnull, "w")  # noqa: SIM115
    level = logging.getLogger("nncf").level
    nncf.set_log_level(logging.ERROR)
    try:
        with contextlib.redirect_stdout(target):
            yield
    finally:
        nncf.set_log_level(level or logging.INFO)
        if target is not sys.stderr:
            target.close()


def quantize_openvino(src: Path, dst: Path, specs: list[Any], calibration: Any = None, *,
                      preset: str | None = None, model_type: str | None = None, samples: int = 300,
                      fast_bias_correction: bool = True, nodes_to_exclude: list[str] | None = None,
                      target_device: str = "ANY", calibration_data: list[dict] | None = None) -> dict:
    """NNCF post-training INT8 of ``src`` into a QDQ ``.onnx`` at ``dst``.

    Args:
        preset: ``performance`` (symmetric activations) or ``mixed`` (asymmetric activations);
            default: NNCF's choice (mixed for transformers, performance otherwise).
        model_type: ``transformer`` or ``none``; default: detected (:func:`is_transformer`).
        samples: calibration samples NNCF uses (its ``subset_size``).
        nodes_to_exclude: node names kept in float (NNCF ``IgnoredScope``).
        target_device: NNCF target device (``ANY``, ``CPU``, ``GPU``, ``NPU``): which hardware's
            quantization rules to follow.
    """
    try:
        import nncf
        import onnx
    except ImportError as e:
        raise QuantizationError(f"mode openvino-int8 needs NNCF ({e.name} is not installed): "
                                "pip install edgeai[nncf]") from e

    notes = []
    model = onnx.load(str(src))
    detected, why = is_transformer(model)
    if model_type is None:
        model_type = "transformer" if detected else "none"
        notes.append(f"model_type={model_type}: {why}")
    if model_type not in ("transformer", "none"):
        raise QuantizationError(f"model_type must be 'transformer' or 'none'; got {model_type!r}")
    presets = {"performance": nncf.QuantizationPreset.PERFORMANCE, "mixed": nncf.QuantizationPreset.MIXED}
    if preset is not None and preset not in presets:
        raise QuantizationError(f"preset must be one of {list(presets)}; got {preset!r}")
    devices = {d.name: d for d in nncf.TargetDevice}
    if target_device.upper() not in devices:
        raise QuantizationError(f"target_device must be one of {list(devices)}; got {target_device!r}")
    if calibration is None and calibration_data is None:
        notes.append("calibrated on random inputs (no --calib given): real data gives better ranges")
    data = calibration_data or collect_samples(calibration, specs, samples)
    ignored = nncf.IgnoredScope(names=list(nodes_to_exclude), validate=False) if nodes_to_exclude else None
    try:
        with _quiet_nncf():
            quantized = nncf.quantize(model, nncf.Dataset(data), preset=presets.get(preset or ""),
                                      target_device=devices[target_device.upper()],
                                      subset_size=min(samples, len(data)),
                                      fast_bias_correction=fast_bias_correction,
                                      model_type=nncf.ModelType.TRANSFORMER if model_type == "transformer" else None,
                                      ignored_scope=ignored)
    except EdgeAIError:
        raise
    except Exception as e:
        raise QuantizationError(f"nncf.quantize failed on {src}: {type(e).__name__}: {str(e)[:300]}") from e

    save_onnx(quantized, dst)
    return {"engine": f"nncf {nncf.__version__} (ONNX backend, QDQ output)", "model_type": model_type,
            "preset": preset or ("mixed" if model_type == "transformer" else "performance"),
            "fast_bias_correction": fast_bias_correction, "target_device": target_device.upper(),
            "calibration_samples": min(samples, len(data)), "nodes_to_exclude": list(nodes_to_exclude or []),
            "notes": notes}
