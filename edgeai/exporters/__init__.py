"""PyTorch -> ONNX export, validated against the original right away.

``export()`` resolves the source, picks an exporter (dynamo, falling back to TorchScript), writes the
file atomically with edgeai metadata, and validates it on fresh inputs at a batch size and sequence
length the export never saw, which is what proves the dynamic axes are really dynamic. One graph is
exported by :mod:`edgeai.exporters.validated`; decoders with a KV cache (``*-with-past`` tasks) by
:mod:`edgeai.exporters.generation`, which exports each of its graphs the same way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from edgeai.errors import ExportError, ExportValidationError
from edgeai.exporters.validated import EXPORTERS, ExportResult, export_graph
from edgeai.specs import TensorSpec

__all__ = ["export", "ExportResult", "ExportValidationError", "EXPORTERS"]


def export(model: Any, example_inputs: Any = None, path: str | os.PathLike = "model.onnx", *,
           dynamic_axes: Mapping[str, Mapping[int, str]] | None = None, opset: int | None = None,
           exporter: str = "auto", validate: bool = True, inputs: Sequence[TensorSpec] | None = None,
           output_names: Sequence[str] | None = None, task: str | None = None, atol: float = 1e-4,
           validation_dims: Mapping[str, int] | None = None, simplify: bool = False,
           weights: str | os.PathLike | None = None) -> ExportResult:
    """Export a PyTorch model to ONNX and validate it against the original.

    Args:
        model: an ``nn.Module`` or a source string (``zoo:cnn``, ``pkg.mod:factory``,
            ``file.py:factory``, ``model.pt2``, a transformers folder with ``task``).
        example_inputs: example tensors (tuple, or dict by input name) for an ``nn.Module``.
        path: where to write the ``.onnx`` file (atomically; >2 GB models keep their weights in
            ``<path>.data`` beside it).
        dynamic_axes: ``{input: {axis: symbol}}``; by default axis 0 of every input is ``batch``
            and sources with known specs (zoo, transformers) keep their own symbols.
        opset: ONNX opset (default 18 for dynamo, 17 for TorchScript).
        exporter: ``auto`` (dynamo, then TorchScript if dynamo fails or does not validate),
            ``dynamo`` or ``torchscript``.
        validate: run the file on onnxruntime CPU against PyTorch at unseen dims.
        inputs: input specs where the source has none (``--input-spec`` on the CLI).
        task: the transformers task for a model folder (feature-extraction, fill-mask, ...).
        atol: absolute tolerance of the validation (cosine must also be >= 0.9999).
        simplify: run onnxslim over the exported graph (constant folding, dead nodes).
        weights: a state dict (``.safetensors``, or a ``torch.save`` file read with
            ``weights_only=True``) to load into a factory's, zoo entry's or module's parameters.

    Raises:
        ModelLoadError: the source cannot be resolved.
        ExportError: every exporter failed, or the file does not match PyTorch; nothing is written.
    """
    if task is not None and task.endswith("-with-past"):  # KV-cache decoders: edgeai.exporters.generation
        from edgeai.exporters.generation import export_with_past

        given = [name for name, value in (("inputs", inputs), ("dynamic_axes", dynamic_axes),
                                          ("example_inputs", example_inputs), ("output_names", output_names),
                                          ("weights", weights), ("validation_dims", validation_dims)) if value]
        if simplify:
            given.append("simplify")
        if given:
            raise ExportError(f"task {task!r} builds its own inputs, outputs and cache axes and does not take "
                              f"{', '.join(given)}; drop them (weights: save the model folder with them instead)")
        return export_with_past(model, path, task=task, opset=opset, exporter=exporter, validate=validate, atol=atol)
    return export_graph(model, example_inputs, path, dynamic_axes=dynamic_axes, opset=opset, exporter=exporter,
                        validate=validate, inputs=inputs, output_names=output_names, task=task, atol=atol,
                        validation_dims=validation_dims, simplify=simplify, weights=weights)
