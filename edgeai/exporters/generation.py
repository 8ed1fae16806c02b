"""KV-cache exports for generation: a decoder with ``past_key_values``, a T5-like encoder + decoder.

One decoder file serves every step: the past length is a dynamic axis, so the first step feeds an
empty cache (past length 0) and each later step feeds the ``present`` outputs of the step before.
The cache is flat, one tensor per layer and kind, named like Optimum's exports::

    inputs   input_ids [batch, seq], attention_mask [batch, total_seq] (past + new),
             position_ids [batch, seq] (families whose forward takes them),
             past_key_values.{i}.key / .value [batch, kv_heads, past_seq, head_dim]
    outputs  logits [batch, seq, vocab], present.{i}.key / .value [batch, kv_heads, past_seq + seq, head_dim]

An encoder-decoder (T5-like) becomes ``encoder.onnx`` (input_ids, attention_mask ->
last_hidden_state) and ``decoder.onnx`` (decoder_input_ids, encoder_attention_mask,
encoder_hidden_states, self-attention past -> logits, present). The decoder caches self-attention
only: cross-attention keys/values are recomputed from ``encoder_hidden_states`` at every step
(one file, no second cache; it costs two small matmuls per layer per step).

transformers 5 passes the cache as ``Cache`` objects; the wrappers here build a ``DynamicCache``
from the flat tensors, so the exporters only ever see tensors. Export goes through
``edgeai.exporters.export`` (dynamo first, TorchScript as fallback, validated at a batch and past
length the export did not see), then the file is also checked at past length 0 (the first step).
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgeai import zoo
from edgeai.atomic import atomic_path
from edgeai.errors import EdgeAIError, ExportError, ModelLoadError
from edgeai.exporters.validated import ExportResult
from edgeai.exporters.validated import export_graph as export
from edgeai.hf_tasks import TaskWrapper
from edgeai.onnxfile import load_proto, read_metadata, save_onnx, write_metadata
from edgeai.parity import Tolerance, compare
from edgeai.runtimes import load
from edgeai.runtimes.base import Model
from edgeai.runtimes.torch import TorchRuntime
from edgeai.sources import ModelSource, _from_transformers_dir
from edgeai.specs import TensorSpec, make_inputs

#: task -> (what is exported, the plain task whose model class it loads)
GENERATION_TASKS = {"text-generation-with-past": ("decoder", "text-generation"),
                    "text2text-generation-with-past": ("seq2seq", "text2text-generation")}
ENCODER_FILE, DECODER_FILE = "encoder.onnx", "decoder.onnx"

# Example sizes for the export trace: distinct per symbol and never 0 or 1 (torch.export would
# specialize them); the attention mask covers past + new tokens.
_EXAMPLE = {"batch": 2, "seq": 3, "past_seq": 5, "total_seq": 8, "encoder_seq": 7}
# A decode step at a batch and past length the export did not see.
_VALIDATE = {"batch": 3, "seq": 1, "past_seq": 9, "total_seq": 10, "encoder_seq": 6}


def past_names(n_layers: int) -> list[str]:
    """``past_key_values.{i}.key``, ``past_key_values.{i}.value`` for every layer, in input order."""
    return [f"past_key_values.{i}.{kind}" for i in range(n_layers) for kind in ("key", "value")]


def present_names(n_layers: int) -> list[str]:
    """``present.{i}.key``, ``present.{i}.value`` for every layer, in output order."""
    return [f"present.{i}.{kind}" for i in range(n_layers) for kind in ("key", "value")]


def _flat_cache(cache: Any) -> list[Any]:
    layers = getattr(cache, "layers", None)
    if layers is None:
        raise ExportError(f"the model returned a {type(cache).__name__} cache; edgeai handles transformers' "
                          "DynamicCache (transformers >= 4.56)")
    return [t for layer in layers for t in (layer.keys, layer.values)]


class DecoderWithPast(torch.nn.Module):
    """A causal LM taking flat tensors: ids, mask over past + new, [position ids], past k/v per layer."""

    def __init__(self, model: Any, n_layers: int, position_ids: bool):
        super().__init__()
        self.model, self.n_layers, self.uses_position_ids = model, n_layers, position_ids
        self.input_names = ("input_ids", "attention_mask", *(("position_ids",) if position_ids else ()),
                            *past_names(n_layers))
        self.output_names = ("logits", *present_names(n_layers))

    def forward(self, *args: Any) -> tuple[Any, ...]:
        # Positional only: the exporters map dynamic shapes one-to-one onto *args.
        from transformers import DynamicCache

        fixed = 3 if self.uses_position_ids else 2
        ids, mask = args[0], args[1]
        past = args[fixed:]
        kwargs = {"position_ids": args[2]} if self.uses_position_ids else {}
        cache = DynamicCache(list(zip(past[0::2], past[1::2], strict=True)))
        out = self.model(input_ids=ids, attention_mask=mask, past_key_values=cache, use_cache=True,
                         return_dict=True, **kwargs)
        return (out.logits, *_flat_cache(out.past_key_values))


class Seq2SeqEncoder(torch.nn.Module):
    """The encoder half of an encoder-decoder: ids and mask -> last_hidden_state."""

    input_names = ("input_ids", "attention_mask")
    output_names = ("last_hidden_state",)

    def __init__(self, model: Any):
        super().__init__()
        self.model = model

    def forward(self, input_ids: Any, attention_mask: Any) -> Any:
        return self.model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask,
                                        return_dict=True).last_hidden_state


class Seq2SeqDecoderWithPast(torch.nn.Module):
    """The decoder half with a self-attention cache; cross-attention k/v recomputed every step."""

    def __init__(self, model: Any, n_layers: int):
        super().__init__()
        self.model, self.n_layers = model, n_layers
        self.input_names = ("decoder_input_ids", "encoder_attention_mask", "encoder_hidden_states",
                            *past_names(n_layers))
        self.output_names = ("logits", *present_names(n_layers))

    def forward(self, *args: Any) -> tuple[Any, ...]:
        # Positional only: the exporters map dynamic shapes one-to-one onto *args.
        from transformers import DynamicCache, EncoderDecoderCache
        from transformers.modeling_outputs import BaseModelOutput

        decoder_input_ids, encoder_attention_mask, encoder_hidden_states, *past = args

        # An empty cross-attention cache makes every step compute cross k/v from the encoder states.
        cache = EncoderDecoderCache(DynamicCache(list(zip(past[0::2], past[1::2], strict=True))), DynamicCache())
        out = self.model(encoder_outputs=BaseModelOutput(last_hidden_state=encoder_hidden_states),
                         attention_mask=encoder_attention_mask, decoder_input_ids=decoder_input_ids,
                         past_key_values=cache, use_cache=True, return_dict=True)
        return (out.logits, *_flat_cache(out.past_key_values.self_attention_cache))


@dataclass(frozen=True)
class CacheGeometry:
    layers: int
    kv_heads: int
    head_dim: int


def cache_geometry(model: Any, kind: str) -> CacheGeometry:
    """Layers, key/value heads and head size, read from one tiny forward (works for any family)."""
    ids = torch.zeros((1, 2), dtype=torch.long)
    with torch.inference_mode():
        if kind == "seq2seq":
            out = model(input_ids=ids, attention_mask=torch.ones_like(ids), decoder_input_ids=ids[:, :1],
                        use_cache=True, return_dict=True)
            cache = out.past_key_values.self_attention_cache
        else:
            out = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True, return_dict=True)
            cache = out.past_key_values
    flat = _flat_cache(cache)
    if not flat or any(t is None or t.ndim != 4 for t in flat):
        raise ExportError(f"{type(model).__name__} keeps a cache edgeai cannot flatten (expected one "
                          "[batch, heads, seq, head_dim] key and value per layer)")
    return CacheGeometry(len(flat) // 2, int(flat[0].shape[1]), int(flat[0].shape[3]))


def generation_config(model: Any, kind: str, geometry: CacheGeometry, role: str) -> dict[str, Any]:
    """What the generation loop needs to know, stored in the file's edgeai metadata."""
    cfg = model.config
    gen = getattr(model, "generation_config", None)

    def pick(name: str) -> Any:
        value = getattr(gen, name, None) if gen is not None else None
        return value if value is not None else getattr(cfg, name, None)

    eos = pick("eos_token_id")
    return {"kind": kind, "role": role, "family": getattr(cfg, "model_type", None),
            "layers": geometry.layers, "kv_heads": geometry.kv_heads, "head_dim": geometry.head_dim,
            "vocab_size": getattr(cfg, "vocab_size", None),
            "eos_token_id": [eos] if isinstance(eos, int) else list(eos or []),
            "pad_token_id": pick("pad_token_id"), "bos_token_id": pick("bos_token_id"),
            "decoder_start_token_id": pick("decoder_start_token_id") if kind == "seq2seq" else None,
            # Learned position tables end here (some engines read past them silently): generate() checks it.
            "max_positions": (getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None))
            if kind == "decoder" else None,
            "cross_attention_cache": "recomputed every step" if kind == "seq2seq" else None}


def _max_position(cfg: Any) -> int:
    return int(getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None) or 512)


def _ids_spec(name: str, dims: tuple[str, str], vocab: int) -> TensorSpec:
    return TensorSpec(name, dims, "int64", (0, vocab))


def _cache_specs(geo: CacheGeometry, dtype: str) -> list[TensorSpec]:
    return [TensorSpec(n, ("batch", geo.kv_heads, "past_seq", geo.head_dim), dtype) for n in past_names(geo.layers)]


def _examples(specs: list[TensorSpec], dims: dict[str, int], seed: int) -> dict[str, np.ndarray]:
    feeds = make_inputs(specs, dims, seed=seed)
    for name in ("attention_mask", "encoder_attention_mask"):
        if name in feeds:
            feeds[name] = np.ones_like(feeds[name])  # the trace should see a plain, unpadded step
    if "position_ids" in feeds:
        b, s = feeds["position_ids"].shape
        past = dims["past_seq"]
        feeds["position_ids"] = np.broadcast_to(np.arange(past, past + s), (b, s)).astype(np.int64).copy()
    return feeds


def decoder_source(model: Any, description: str) -> tuple[Any, CacheGeometry]:
    """A :class:`~edgeai.sources.ModelSource` for a causal LM wrapped as :class:`DecoderWithPast`."""
    import inspect

    geo = cache_geometry(model, "decoder")
    uses_pos = "position_ids" in inspect.signature(model.forward).parameters
    wrapper = DecoderWithPast(model, geo.layers, uses_pos).eval()
    vocab = int(model.config.vocab_size)
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    specs = [_ids_spec("input_ids", ("batch", "seq"), vocab),
             TensorSpec("attention_mask", ("batch", "total_seq"), "int64", (0, 2))]
    if uses_pos:
        specs.append(TensorSpec("position_ids", ("batch", "seq"), "int64", (0, _max_position(model.config) - 16)))
    specs += _cache_specs(geo, dtype)
    source = ModelSource(wrapper, specs, list(wrapper.output_names), _examples(specs, _EXAMPLE, 1), description,
                         "text-generation-with-past", getattr(model.config, "model_type", None))
    return source, geo


def seq2seq_sources(model: Any, description: str) -> tuple[Any, Any, CacheGeometry]:
    """Encoder and decoder-with-past :class:`~edgeai.sources.ModelSource` objects for a T5-like model."""
    geo = cache_geometry(model, "seq2seq")
    vocab = int(model.config.vocab_size)
    d_model = int(getattr(model.config, "d_model", None) or model.config.hidden_size)
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    family = getattr(model.config, "model_type", None)
    enc = Seq2SeqEncoder(model).eval()
    enc_specs = [_ids_spec("input_ids", ("batch", "encoder_seq"), vocab),
                 TensorSpec("attention_mask", ("batch", "encoder_seq"), "int64", (0, 2))]
    dec = Seq2SeqDecoderWithPast(model, geo.layers).eval()
    dec_specs = [_ids_spec("decoder_input_ids", ("batch", "seq"), vocab),
                 TensorSpec("encoder_attention_mask", ("batch", "encoder_seq"), "int64", (0, 2)),
                 TensorSpec("encoder_hidden_states", ("batch", "encoder_seq", d_model), dtype),
                 *_cache_specs(geo, dtype)]
    task = "text2text-generation-with-past"
    return (ModelSource(enc, enc_specs, list(enc.output_names), _examples(enc_specs, _EXAMPLE, 1),
                        f"{description} (encoder)", task, family),
            ModelSource(dec, dec_specs, list(dec.output_names), _examples(dec_specs, _EXAMPLE, 2),
                        f"{description} (decoder with past)", task, family), geo)


def _resolve_hf(source: Any, kind: str) -> tuple[Any, str]:
    """A transformers model (eval mode) and a description, from a model, a zoo name or a folder."""
    if isinstance(source, TaskWrapper):
        return source.model.eval(), "module"
    if isinstance(source, torch.nn.Module):
        if not hasattr(source, "config"):
            raise ModelLoadError(f"a {type(source).__name__} is not a transformers model; KV-cache export needs a "
                                 "transformers causal LM or encoder-decoder (its config names the cache geometry)")
        return source.eval(), "module"
    text = str(source)
    if text.startswith("zoo:"):
        made = zoo.get(text[4:]).factory()
        return _resolve_hf(made, kind)[0], text
    if Path(text).is_dir():
        if (Path(text) / "config.json").exists():
            import json

            # Check the kind from config.json before transformers lists every class it could not map.
            seq2seq = bool(json.loads((Path(text) / "config.json").read_text()).get("is_encoder_decoder"))
            _check_kind(seq2seq, kind, text)
        plain = "text-generation" if kind == "decoder" else "text2text-generation"
        return _from_transformers_dir(Path(text), plain, None).module.model, text
    raise ModelLoadError(f"cannot export {text!r} with a KV cache: expected a transformers model folder "
                         "(config.json + *.safetensors), 'zoo:gpt2'/'zoo:t5', or a transformers model object")


def _check_kind(is_seq2seq: bool, kind: str, what: str) -> None:
    if is_seq2seq != (kind == "seq2seq"):
        other = "text2text-generation-with-past" if is_seq2seq else "text-generation-with-past"
        raise ModelLoadError(f"{what} is {'an encoder-decoder' if is_seq2seq else 'a decoder-only'} model; "
                             f"export it with --task {other}")


@dataclass(frozen=True)
class Seq2SeqExportResult:
    """An encoder-decoder export: a folder holding ``encoder.onnx`` and ``decoder.onnx``.

    Mirrors :class:`~edgeai.exporters.ExportResult`'s fields (summed or joined over both files) so
    the CLI renders it the same way; ``encoder`` and ``decoder`` hold each file's own result.
    """

    path: Path
    encoder: ExportResult
    decoder: ExportResult
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self.encoder.inputs + self.decoder.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self.encoder.outputs + self.decoder.outputs

    @property
    def exporter(self) -> str:
        e, d = self.encoder.exporter, self.decoder.exporter
        return e if e == d else f"encoder {e}, decoder {d}"

    @property
    def opset(self) -> int | None:
        return self.decoder.opset

    @property
    def export_time_s(self) -> float:
        return self.encoder.export_time_s + self.decoder.export_time_s

    @property
    def size_bytes(self) -> int:
        return self.encoder.size_bytes + self.decoder.size_bytes

    @property
    def validation(self) -> Any:
        return self.decoder.validation

    @property
    def validation_dims(self) -> dict[str, int]:
        return self.decoder.validation_dims

    @property
    def attempts(self) -> tuple[str, ...]:
        return self.encoder.attempts + self.decoder.attempts

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "encoder": self.encoder.to_dict(), "decoder": self.decoder.to_dict(),
                "generation": self.config}


def export_with_past(model: Any, path: str | os.PathLike, *, task: str = "text-generation-with-past",
                     opset: int | None = None, exporter: str = "auto", validate: bool = True,
                     atol: float = 1e-4) -> Any:
    """Export a causal LM (one ``.onnx`` file) or an encoder-decoder (a folder) with a KV cache.

    Args:
        model: a transformers model, ``zoo:gpt2`` / ``zoo:t5``, or a local transformers folder.
        path: ``model.onnx`` for ``text-generation-with-past``; an output folder (it will hold
            ``encoder.onnx`` and ``decoder.onnx``) for ``text2text-generation-with-past``.
        task: ``text-generation-with-past`` or ``text2text-generation-with-past``.
        opset, exporter, atol: as for :func:`edgeai.export` (dynamo first, TorchScript fallback).
        validate: check each file against PyTorch at a batch and past length the export did not
            see, and the decoder also at past length 0 (the first step).

    Returns:
        An :class:`~edgeai.exporters.ExportResult` (decoder) or a :class:`Seq2SeqExportResult`.

    Raises:
        ModelLoadError: the source is not a transformers model of the right kind.
        ExportError: every exporter failed or a file does not match PyTorch; nothing is written.
    """
    if task not in GENERATION_TASKS:
        raise ExportError(f"unknown generation task {task!r}; use {' or '.join(GENERATION_TASKS)}")
    kind = GENERATION_TASKS[task][0]
    hf, description = _resolve_hf(model, kind)
    _check_kind(bool(getattr(hf.config, "is_encoder_decoder", False)), kind, f"{description} ({type(hf).__name__})")
    options = {"opset": opset, "exporter": exporter, "validate": validate, "atol": atol}
    if kind == "decoder":
        path = Path(path)
        if path.suffix != ".onnx":
            raise ExportError(f"output path {path} should end in .onnx for {task}")
        source, geo = decoder_source(hf, description)
        return _export_checked(source, path, generation_config(hf, kind, geo, "decoder"), options)
    out = Path(path)
    if out.suffix == ".onnx" or (out.exists() and not out.is_dir()):
        raise ExportError(f"{task} writes two files ({ENCODER_FILE}, {DECODER_FILE}); give an output folder, "
                          f"not {out}")
    enc_src, dec_src, geo = seq2seq_sources(hf, description)
    config = generation_config(hf, kind, geo, "decoder")
    dec = _export_checked(dec_src, out / DECODER_FILE, config, options)
    enc = _export_checked(enc_src, out / ENCODER_FILE, {**config, "role": "encoder"}, options)
    return Seq2SeqExportResult(out, enc, dec, config)


def _export_checked(source: Any, path: Path, config: dict[str, Any], options: dict[str, Any]) -> Any:
    """export() into a temp file, add the generation metadata, check past length 0, then rename."""
    has_past = any(s.name.startswith("past_key_values.") for s in source.inputs)
    dims = {k: v for k, v in _VALIDATE.items() if any(k in s.shape for s in source.inputs)}
    with atomic_path(path) as tmp:
        result = export(source, path=tmp, validation_dims=dims, **options)
        proto = load_proto(tmp)
        write_metadata(proto, {"generation": config})
        save_onnx(proto, tmp)
        first = None
        if options["validate"] and has_past:
            first = _check_first_step(source, tmp, options["atol"])
    checked = {**result.validation_dims, "first_step": first} if first else result.validation_dims
    validation = result.validation
    if validation is not None:  # the verdict names the user's file, not the temp file it was checked as
        validation = dataclasses.replace(validation, candidate={**validation.candidate, "model": str(path)})
    return dataclasses.replace(result, path=path, size_bytes=path.stat().st_size, validation_dims=checked,
                               validation=validation)


def _check_first_step(source: Any, onnx_path: Path, atol: float) -> dict[str, int]:
    """The first step feeds an empty cache (past length 0): the file must match PyTorch there too."""
    dims = {"batch": 1, "seq": 6, "past_seq": 0, "total_seq": 6, "encoder_seq": 5}
    feeds = _examples(list(source.inputs), dims, seed=7)
    t0 = time.perf_counter()
    try:
        report = compare(Model(TorchRuntime(source)), load(onnx_path, "cpu"), [feeds],
                         tolerance=Tolerance(atol=atol, rtol=1e-3, min_cosine=0.9999))
    except EdgeAIError as e:
        raise ExportError(f"the exported decoder does not run with an empty cache (past length 0): {e}") from e
    if not report.passed:
        raise ExportError(f"the exported decoder does not match PyTorch at past length 0 (first step, "
                          f"{time.perf_counter() - t0:.1f}s): {report.verdict()}")
    return {k: v for k, v in dims.items() if any(k in s.shape for s in source.inputs)}


def fuse_for_onnxruntime(src: str | os.PathLike, dst: str | os.PathLike, *, model_type: str = "gpt2",
                         num_heads: int = 0, hidden_size: int = 0) -> dict[str, Any]:
    """Run onnxruntime's transformer optimizer on a KV-cache decoder (fused LayerNorm/GELU/attention).

    On edgeai's dynamo exports (measured on the GPT-2 family) it fuses SkipLayerNormalization and
    FastGelu; the attention pattern of these exports is not one the optimizer recognizes, so no
    ``Attention``/``GroupQueryAttention`` node appears (recorded in the result). The fused file
    still loads on OpenVINO. Generation metadata is kept; what was fused is added under
    ``onnxruntime_fusion``. ``src`` is never modified; ``dst`` is written atomically.

    Returns the fused operator counts and whether attention was fused.
    """
    try:
        from onnxruntime.transformers.optimizer import optimize_model
    except ImportError as e:  # pragma: no cover - ships with onnxruntime
        raise ExportError(f"onnxruntime's transformer optimizer is not available: {e}") from e
    import logging

    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise ExportError(f"refusing to overwrite the input {src}; choose another output path")
    level = logging.getLogger("onnxruntime.transformers").level
    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)  # "producer not matched" chatter
    try:
        optimized = optimize_model(str(src), model_type=model_type, num_heads=num_heads, hidden_size=hidden_size,
                                   opt_level=1, use_gpu=False)
    except Exception as e:
        raise ExportError(f"onnxruntime's transformer optimizer failed on {src}: {type(e).__name__}: "
                          f"{str(e)[:300]}") from e
    finally:
        logging.getLogger("onnxruntime.transformers").setLevel(level)
    stats = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
    fused = {"model_type": model_type, "fused_operators": stats,
             "attention_fused": any(k in stats for k in ("Attention", "MultiHeadAttention", "GroupQueryAttention"))}
    model = optimized.model
    write_metadata(model, {**read_metadata(load_proto(src)), "onnxruntime_fusion": fused})
    with atomic_path(dst) as tmp:
        save_onnx(model, tmp)
    return fused
