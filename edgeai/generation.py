"""Autoregressive generation over edgeai ``Model`` objects, with the KV cache kept between steps.

A decoder exported with ``task="text-generation-with-past"`` (or an encoder + decoder folder from
``text2text-generation-with-past``) runs step by step on any device ``edgeai.load`` supports: the
first step feeds the prompt with an empty cache, every later step feeds one token and the previous
step's ``present.*`` outputs as ``past_key_values.*``. The cache stays in numpy arrays between
steps (on CUDA, an optional onnxruntime IO-binding path keeps it on the GPU; untested here).

Token choice follows ``transformers``' ``generate``: greedy argmax, or sampling with temperature,
then top-k, then top-p, from a seeded generator; rows that produced an EOS token are padded until
every row is done. ``generate()`` reports the tokens, per-step latencies, time to first token,
tokens per second and what ran; ``benchmark_generation()`` repeats it for stable numbers.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeai.decoding import BeamSearch, chooser, log_softmax
from edgeai.decoding import repetition_penalty as repetition_penalty_of
from edgeai.errors import EdgeAIError, InputMismatchError, ModelLoadError
from edgeai.onnxfile import load_proto, read_metadata
from edgeai.registry import import_attr
from edgeai.runtimes import load, parse_device
from edgeai.runtimes.base import Model
from edgeai.steppers import stepper_for
from edgeai.timing import LatencyStats

PAST, PRESENT = "past_key_values.", "present."
ENCODER_FILE, DECODER_FILE = "encoder.onnx", "decoder.onnx"  # as written by edgeai.exporters.generation


@dataclass(frozen=True)
class GenerationResult:
    """What one generation did: new tokens, timings, and what ran.

    ``tokens`` holds only the new tokens ``[batch, steps]`` (rows that hit EOS early are padded).
    ``step_ms[0]`` is the prompt step (prefill); ``time_to_first_token_ms`` adds the encoder time
    for encoder-decoders; ``tokens_per_s`` is the decode rate after the first token.
    """

    tokens: np.ndarray
    prompt_ids: np.ndarray
    step_ms: tuple[float, ...]
    time_to_first_token_ms: float
    total_ms: float
    stop_reason: str  # "eos" or "max_new_tokens"
    runtime: dict[str, Any]  # the decoder's Model.describe()
    encoder_runtime: dict[str, Any] | None = None
    encoder_ms: float | None = None
    use_cache: bool = True
    sampling: dict[str, Any] = field(default_factory=dict)
    logits: tuple[np.ndarray, ...] | None = field(default=None, repr=False)  # per step [batch, vocab]

    @property
    def new_tokens(self) -> int:
        return int(self.tokens.shape[1])

    @property
    def tokens_per_s(self) -> float | None:
        decode = sum(self.step_ms[1:])
        return (len(self.step_ms) - 1) / (decode / 1e3) if decode > 0 else None

    @property
    def sequences(self) -> np.ndarray:
        """Prompt and new tokens (decoder-only) or just the new tokens (encoder-decoder)."""
        return self.tokens if self.encoder_runtime else np.concatenate([self.prompt_ids, self.tokens], axis=1)

    def to_dict(self) -> dict[str, Any]:
        ms = np.asarray(self.step_ms[1:] or self.step_ms)
        return {"tokens": self.tokens.tolist(), "new_tokens": self.new_tokens, "stop_reason": self.stop_reason,
                "time_to_first_token_ms": round(self.time_to_first_token_ms, 3),
                "tokens_per_s": round(self.tokens_per_s, 2) if self.tokens_per_s else None,
                "total_ms": round(self.total_ms, 3), "encoder_ms": self.encoder_ms,
                "step_ms": {"p50": round(float(np.percentile(ms, 50)), 4), "p90": round(float(np.percentile(ms, 90)), 4),
                            "p99": round(float(np.percentile(ms, 99)), 4)},
                "use_cache": self.use_cache, "sampling": self.sampling, "runtime": self.runtime,
                "encoder_runtime": self.encoder_runtime}


@dataclass
class GenerativeModel:
    """A loaded decoder (and, for encoder-decoders, its encoder) plus the file's generation metadata."""

    decoder: Model
    encoder: Model | None = None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def is_seq2seq(self) -> bool:
        return self.encoder is not None

    @property
    def stateful(self) -> bool:
        """The decoder keeps its KV cache inside (OpenVINO stateful): no past/present feeds."""
        return bool(getattr(self.decoder.runtime, "state_names", None))

    @property
    def device(self) -> str:
        return self.decoder.device

    def describe(self) -> Any:
        return self.decoder.describe()

    def cache_names(self) -> list[tuple[str, str]]:
        """(present output, past input) pairs, in output order."""
        inputs = {s.name for s in self.decoder.inputs}
        pairs = [(o.name, PAST + o.name[len(PRESENT):]) for o in self.decoder.outputs if o.name.startswith(PRESENT)]
        return [(out, inp) for out, inp in pairs if inp in inputs]


@functools.lru_cache(maxsize=32)
def _file_config(path: str, mtime: float) -> dict[str, Any]:
    return dict(read_metadata(load_proto(path)).get("generation") or {})


def _config_of(model: Any) -> dict[str, Any]:
    src = getattr(model, "source", None)
    if src and Path(src).is_file():
        return _file_config(str(src), Path(src).stat().st_mtime)
    return {}


STATEFUL_DECODER = "edgeai.runtimes.openvino_stateful:StatefulOpenVINODecoder"


def _load_decoder(path: Any, device: str, stateful: bool | None, options: dict[str, Any]) -> Any:
    """A decoder path on ``device``: OpenVINO stateful by default there, a plain ``Model`` elsewhere."""
    req = parse_device(device)
    if stateful and req.engine != "openvino":
        raise EdgeAIError(f"stateful=True keeps the KV cache inside an OpenVINO infer request; device {device!r} "
                          "is not OpenVINO (use openvino:CPU, or stateful=None)")
    if req.engine != "openvino" or stateful is False or options.get("static_shapes") or options.get("fallback"):
        return load(path, device, **options)
    runtime = import_attr(STATEFUL_DECODER)(path, req.device, req.target, req.index,
                                            **{k: v for k, v in options.items() if k != "allow_cast"})
    return Model(runtime, allow_cast=bool(options.get("allow_cast")), source=str(path))


def _decode_defaults(device: str, options: dict[str, Any]) -> dict[str, Any]:
    """onnxruntime on CPU: say whether intra-op threads spin between kernels (what ran records it).

    onnxruntime's default (spinning) is kept: on this 2-core box, idle, bench_llm measured the
    Qwen2-0.5B-shaped INT4 decoder at 37.8 tokens/s spinning vs 35.0 sleeping, and the small GPT at
    2,368 vs 2,113. Under load it is the other way round (load ~4: 10.4 spinning vs 17.3 sleeping: a
    busy-waiting idle thread takes the core the working thread needs), so a decoder sharing its
    cores should pass ``spinning=False`` (``edgeai generate --no-spinning``). docs/decoders.md.
    """
    try:
        req = parse_device(device)
    except EdgeAIError:
        return options  # load() reports the bad device string
    if req.engine == "onnxruntime" and req.target == "CPU" and "spinning" not in options:
        return {**options, "spinning": True}
    return options


def load_generative(model: Any, device: str = "cpu", *, stateful: bool | None = None,
                    **options: Any) -> GenerativeModel:
    """Resolve what ``generate`` was given into a :class:`GenerativeModel`.

    Args:
        model: a decoder ``.onnx`` path or a loaded ``Model`` with ``past_key_values.*`` inputs; a
            folder holding ``encoder.onnx`` and ``decoder.onnx``; or an ``(encoder, decoder)`` pair.
        device: where paths are loaded (``Model`` objects keep their own device).
        stateful: OpenVINO only: compile the decoder stateful (the KV cache stays inside the infer
            request, one compiled model for every step). Default: stateful on OpenVINO devices;
            False feeds the cache in and out like every other engine.
        **options: passed to :func:`edgeai.load` for paths; on onnxruntime CPU ``spinning``
            (default True, onnxruntime's own; False lets idle intra-op threads sleep on shared
            cores; see :func:`_decode_defaults`).

    Raises:
        ModelLoadError: the files are missing or the decoder has no KV-cache inputs.
    """
    if isinstance(model, GenerativeModel):
        return model
    options = _decode_defaults(device, options)

    def as_model(m: Any) -> Any:
        return m if isinstance(m, Model) else load(m, device, **options)

    def as_decoder(m: Any) -> Any:
        return m if isinstance(m, Model) else _load_decoder(m, device, stateful, options)

    encoder = None
    if isinstance(model, (tuple, list)):
        if len(model) != 2:
            raise ModelLoadError(f"an encoder-decoder is an (encoder, decoder) pair; got {len(model)} items")
        encoder, decoder = as_model(model[0]), as_decoder(model[1])
    elif isinstance(model, (str, os.PathLike)) and Path(model).is_dir():
        folder = Path(model)
        missing = [f for f in (ENCODER_FILE, DECODER_FILE) if not (folder / f).is_file()]
        if missing:
            raise ModelLoadError(f"{folder} lacks {missing}; export an encoder-decoder with "
                                 "`edgeai export MODEL --task text2text-generation-with-past -o FOLDER`")
        encoder, decoder = as_model(folder / ENCODER_FILE), as_decoder(folder / DECODER_FILE)
    else:
        decoder = as_decoder(model)
    gm = GenerativeModel(decoder, encoder, _config_of(decoder))
    names = {s.name for s in decoder.inputs}
    if not gm.cache_names():
        raise ModelLoadError(f"{decoder!r} has no past_key_values.* inputs with matching present.* outputs; export "
                             "it with task text-generation-with-past (or text2text-generation-with-past)")
    needs = {"decoder_input_ids", "encoder_hidden_states"} if encoder is not None else {"input_ids", "attention_mask"}
    if not needs <= names:
        kind = "an encoder-decoder's decoder" if encoder is not None else "a decoder-only model"
        raise ModelLoadError(f"{decoder!r} is not {kind}: it lacks inputs {sorted(needs - names)}"
                             + ("; an encoder-decoder needs its encoder too (pass the folder)"
                                if encoder is None and "encoder_hidden_states" in names else ""))
    return gm


def _eos_set(eos: Any) -> set[int]:
    if eos is None:
        return set()
    return {int(eos)} if isinstance(eos, (int, np.integer)) else {int(e) for e in eos}


def _as_ids(input_ids: Any, attention_mask: Any, vocab: int | None) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(input_ids.detach().cpu().numpy() if hasattr(input_ids, "detach") else input_ids)
    if ids.ndim == 1:
        ids = ids[None]
    if ids.ndim != 2 or ids.shape[1] == 0 or ids.dtype.kind not in "iu":
        raise InputMismatchError(f"input_ids must be integer token ids [batch, seq] (or [seq]) with seq >= 1; got "
                                 f"{ids.dtype} {list(ids.shape)}")
    if vocab and (ids.min() < 0 or ids.max() >= vocab):
        raise InputMismatchError(f"input_ids must be within the vocabulary [0, {vocab}); got values from "
                                 f"{ids.min()} to {ids.max()}")
    if attention_mask is None:
        return ids.astype(np.int64), np.ones(ids.shape, dtype=np.int64)
    mask = np.asarray(attention_mask.detach().cpu().numpy() if hasattr(attention_mask, "detach") else attention_mask)
    mask = mask[None] if mask.ndim == 1 else mask
    if mask.shape != ids.shape:
        raise InputMismatchError(f"attention_mask must have the shape of input_ids {list(ids.shape)}; got "
                                 f"{list(mask.shape)}")
    return ids.astype(np.int64), mask.astype(np.int64)


def generate(model: Any, input_ids: Any, max_new_tokens: int = 32, *, attention_mask: Any = None,
             device: str = "cpu", do_sample: bool = False, temperature: float = 1.0, top_k: int = 0,
             top_p: float = 1.0, seed: int | None = None, num_beams: int = 1, length_penalty: float = 1.0,
             repetition_penalty: float = 1.0, eos_token_id: int | Sequence[int] | None = None,
             pad_token_id: int | None = None, decoder_start_token_id: int | None = None, stop_on_eos: bool = True,
             use_cache: bool = True, keep_logits: bool = False, forced_tokens: Any = None,
             io_binding: bool | None = None, on_step: Callable[[dict[str, Any]], None] | None = None,
             on_token: Callable[[np.ndarray], None] | None = None, **load_options: Any) -> GenerationResult:
    """Generate tokens with a KV-cache decoder (or encoder + decoder) on any edgeai device.

    Args:
        model: see :func:`load_generative` (a path, a folder, a ``Model``, or an (encoder, decoder) pair).
        input_ids: prompt token ids ``[batch, seq]`` or ``[seq]`` (numpy, list or torch tensor);
            for an encoder-decoder, the encoder's input.
        max_new_tokens: upper bound on new tokens.
        attention_mask: ``[batch, seq]`` 0/1; pad on the left for decoder-only batches.
        device: device for paths (``cpu``, ``openvino:CPU``, ``cuda`` ...).
        do_sample, temperature, top_k, top_p, seed: sampling as in transformers (greedy by default).
        num_beams, length_penalty: beam search as transformers' (``early_stopping=False``); the
            cache rows are reordered after every step (inside the model when OpenVINO is stateful).
        repetition_penalty: transformers' repetition penalty (1.0: off), on every device.
        eos_token_id, pad_token_id, decoder_start_token_id: default to the export's metadata.
        stop_on_eos: stop when every row produced EOS (False always runs ``max_new_tokens`` steps).
        use_cache: False re-runs the whole sequence every step with an empty cache (the baseline
            the cache is measured against; same tokens, quadratic cost).
        keep_logits: keep each step's last-position logits (for parity checks).
        forced_tokens: ``[batch, steps]`` tokens to feed instead of choosing (teacher forcing, for
            per-step logit comparisons between two models).
        io_binding: onnxruntime: keep the cache in onnxruntime's buffers between steps (default: on
            for CUDA, untested there; off on CPU unless asked, see benchmarks/bench_llm.py).
        on_step: called with each step's decoder feeds, cache included (e.g. to collect
            calibration data from real generations); the timings include it.
        on_token: called with each step's new tokens ``[batch]`` as they are chosen (streaming);
            greedy and sampling only (a beam's tokens are known only at the end).
        **load_options: for paths: ``stateful`` (OpenVINO; default on) and :func:`edgeai.load` options.

    Returns:
        A :class:`GenerationResult`.

    Raises:
        ModelLoadError: the model is not a KV-cache export.
        InputMismatchError: bad prompt, mask, or sampling settings.
    """
    gm = load_generative(model, device, **load_options)
    cfg = gm.config
    if max_new_tokens < 1:
        raise InputMismatchError(f"max_new_tokens must be >= 1; got {max_new_tokens}")
    choose = chooser(do_sample, temperature, top_k, top_p, seed)
    if repetition_penalty <= 0:
        raise InputMismatchError(f"repetition_penalty must be > 0 (1.0: off); got {repetition_penalty}")
    beams = int(num_beams)
    if beams < 1 or (beams > 1 and (do_sample or forced_tokens is not None or keep_logits or on_token)):
        raise InputMismatchError(f"num_beams must be >= 1, and beam search ({num_beams} beams) does not combine with "
                                 "sampling, forced_tokens, keep_logits or on_token (streaming)")
    ids, mask = _as_ids(input_ids, attention_mask, cfg.get("vocab_size"))
    batch = ids.shape[0]
    limit = cfg.get("max_positions")
    if limit and not gm.is_seq2seq and ids.shape[1] + max_new_tokens > limit:
        raise InputMismatchError(f"the prompt ({ids.shape[1]} tokens) plus max_new_tokens ({max_new_tokens}) exceeds "
                                 f"the model's {limit} positions (beyond them some engines compute garbage "
                                 "silently); shorten the prompt or lower max_new_tokens")
    eos = _eos_set(eos_token_id if eos_token_id is not None else cfg.get("eos_token_id")) if stop_on_eos else set()
    pad = pad_token_id if pad_token_id is not None else cfg.get("pad_token_id")
    pad = pad if pad is not None else (min(eos) if eos else 0)
    forced = None if forced_tokens is None else np.asarray(forced_tokens, dtype=np.int64).reshape(batch, -1)
    stepper = stepper_for(gm, io_binding, beams > 1)
    names = {s.name for s in gm.decoder.inputs}
    search = BeamSearch(batch, beams, max_new_tokens, eos, pad, length_penalty) if beams > 1 else None
    rows = batch * beams  # each prompt repeated once per beam

    t_start = time.perf_counter()
    enc_ms = None
    if gm.is_seq2seq:
        start = decoder_start_token_id if decoder_start_token_id is not None else cfg.get("decoder_start_token_id")
        if start is None:
            raise InputMismatchError("this decoder's file does not name a decoder_start_token_id; pass one")
        hidden = gm.encoder.run({"input_ids": ids, "attention_mask": mask})[gm.encoder.outputs[0].name]
        enc_ms = (time.perf_counter() - t_start) * 1e3
        seq = np.full((rows, 1), int(start), dtype=np.int64)
        fixed = {"encoder_attention_mask": np.repeat(mask, beams, axis=0),
                 "encoder_hidden_states": np.repeat(hidden, beams, axis=0)}
    else:
        seq, fixed, mask = np.repeat(ids, beams, axis=0), {}, np.repeat(mask, beams, axis=0)
        positions = np.where(mask == 0, 0, np.cumsum(mask, axis=-1) - 1).astype(np.int64)
    past = stepper.empty(rows)
    unfinished = np.ones(rows, dtype=bool)
    new_tokens: list[np.ndarray] = []
    step_ms: list[float] = []
    kept: list[np.ndarray] = []
    ttft = 0.0
    stop = "max_new_tokens"
    for step in range(max_new_tokens):
        t0 = time.perf_counter()
        window = seq.shape[1] if (step == 0 or not use_cache) else 1
        if gm.is_seq2seq:
            feeds = {"decoder_input_ids": seq[:, -window:], **fixed}
        else:
            feeds = {"input_ids": seq[:, -window:], "attention_mask": mask}
            if "position_ids" in names:
                feeds["position_ids"] = positions[:, -window:]
        cache = past if (use_cache or step == 0) else stepper.empty(rows)
        if on_step is not None:
            on_step({**feeds, **cache})
        logits, present = stepper.step(feeds, cache)
        last = np.asarray(logits[:, -1, :], dtype=np.float32)
        if search is not None:
            token, beam_idx = search.step(repetition_penalty_of(log_softmax(last), seq, repetition_penalty))
            seq, present = seq[beam_idx], stepper.reorder(present, beam_idx)
        else:
            token = forced[:, step] if forced is not None else choose(
                repetition_penalty_of(last, seq, repetition_penalty))
            token = np.where(unfinished, token, pad).astype(np.int64)
        past = present
        seq = np.concatenate([seq, token[:, None]], axis=1)
        if not gm.is_seq2seq:
            mask = np.concatenate([mask, np.ones((rows, 1), dtype=np.int64)], axis=1)
            positions = np.concatenate([positions, positions[:, -1:] + 1], axis=1)
        new_tokens.append(token)
        if keep_logits:
            kept.append(last)
        if on_token is not None:
            on_token(token)
        unfinished &= ~np.isin(token, list(eos))
        now = time.perf_counter()
        step_ms.append((now - t0) * 1e3)
        if step == 0:
            ttft = (now - t_start) * 1e3
        if search is not None and search.done:
            break
        if search is None and not unfinished.any():
            stop = "eos"
            break
        if forced is not None and step + 1 >= forced.shape[1]:
            break
    total = (time.perf_counter() - t_start) * 1e3
    tokens = np.stack(new_tokens, axis=1)
    how: dict[str, Any] = {"do_sample": do_sample, "temperature": temperature, "top_k": top_k, "top_p": top_p,
                           "seed": seed} if do_sample else {"do_sample": False}
    if search is not None:
        tokens, _ = search.best()
        stop = "eos" if eos and np.isin(tokens, list(eos)).any(axis=1).all() else "max_new_tokens"
        how.update(num_beams=beams, length_penalty=length_penalty)
    if repetition_penalty != 1.0:
        how["repetition_penalty"] = repetition_penalty
    return GenerationResult(
        tokens, ids, tuple(step_ms), ttft, total, stop, gm.describe().to_dict(),
        gm.encoder.describe().to_dict() if gm.is_seq2seq else None, enc_ms, use_cache, how,
        tuple(kept) if keep_logits else None)


@dataclass(frozen=True)
class GenerationBench:
    """Repeated generations on one model and device: TTFT, decode tokens/s, per-step percentiles."""

    name: str
    prompt_len: int
    new_tokens: int
    rounds: int
    time_to_first_token: LatencyStats  # over rounds
    step_latency: LatencyStats  # over every decode step (after the first token) of every round
    tokens_per_s: float  # median decode rate over rounds
    use_cache: bool
    runtime: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "prompt_len": self.prompt_len, "new_tokens": self.new_tokens, "rounds": self.rounds,
                "time_to_first_token_ms": self.time_to_first_token.to_dict(),
                "step_latency_ms": self.step_latency.to_dict(), "tokens_per_s": round(self.tokens_per_s, 2),
                "use_cache": self.use_cache, "runtime": self.runtime}


def benchmark_generation(model: Any, *, name: str | None = None, prompt_len: int = 8, new_tokens: int = 32,
                         rounds: int = 5, warmup: int = 1, device: str = "cpu", use_cache: bool = True,
                         seed: int = 0, **load_options: Any) -> GenerationBench:
    """Time greedy generation of ``new_tokens`` (EOS ignored) from a random prompt, ``rounds`` times.

    Returns a :class:`GenerationBench`; speed belongs in benchmarks, never in test assertions.
    """
    if rounds < 1 or new_tokens < 2:
        raise InputMismatchError(f"benchmarking generation needs rounds >= 1 and new_tokens >= 2; got {rounds}, "
                                 f"{new_tokens}")
    gm = load_generative(model, device, **load_options)
    vocab = int(gm.config.get("vocab_size") or 100)
    prompt = np.random.default_rng(seed).integers(2, vocab, (1, prompt_len), dtype=np.int64)
    for _ in range(warmup):
        generate(gm, prompt, new_tokens, stop_on_eos=False, use_cache=use_cache)
    results = [generate(gm, prompt, new_tokens, stop_on_eos=False, use_cache=use_cache) for _ in range(rounds)]
    ttft = LatencyStats.from_ns([int(r.time_to_first_token_ms * 1e6) for r in results])
    steps = LatencyStats.from_ns([int(ms * 1e6) for r in results for ms in r.step_ms[1:]])
    rate = float(np.median([r.tokens_per_s for r in results]))
    label = name or str(getattr(gm.decoder, "source", None) or "model")
    return GenerationBench(label, prompt_len, new_tokens, rounds, ttft, steps, rate, use_cache, results[0].runtime)


def prefill_logits(model: Any, input_ids: Any, *, device: str = "cpu", **load_options: Any) -> np.ndarray:
    """Logits ``[batch, seq, vocab]`` for every position of ``input_ids`` in one step from an empty
    cache (decoder-only): what perplexity is computed from. Uses the same step as :func:`generate`."""
    gm = load_generative(model, device, **load_options)
    if gm.is_seq2seq:
        raise InputMismatchError("prefill_logits scores a decoder-only model's own tokens; this is an encoder-decoder")
    ids, mask = _as_ids(input_ids, None, gm.config.get("vocab_size"))
    stepper = stepper_for(gm, False)
    feeds = {"input_ids": ids, "attention_mask": mask}
    if "position_ids" in {s.name for s in gm.decoder.inputs}:
        feeds["position_ids"] = np.broadcast_to(np.arange(ids.shape[1]), ids.shape).astype(np.int64).copy()
    logits, _ = stepper.step(feeds, stepper.empty(ids.shape[0]))
    return np.asarray(logits, dtype=np.float32)


def load_tokenizer(path: str | os.PathLike) -> Any:
    """A ``transformers`` tokenizer from a local folder (``tokenizer.json`` etc.); never downloads.

    Raises:
        ModelLoadError: the folder is missing or holds no tokenizer transformers can read.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ModelLoadError(f"tokenizer folder not found: {folder} (save one with tokenizer.save_pretrained(DIR))")
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as e:  # transformers raises OSError/ValueError/KeyError depending on what is missing
        raise ModelLoadError(f"no tokenizer could be loaded from {folder}: {type(e).__name__}: "
                             f"{str(e).strip().splitlines()[0][:300]}") from e



def parse_token_ids(text: str) -> list[int]:
    """``"1,2,3"`` -> [1, 2, 3] (``--prompt-ids``)."""
    try:
        ids = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise EdgeAIError(f"bad --prompt-ids {text!r}; expected comma-separated token ids like 1,2,3") from None
    if not ids:
        raise EdgeAIError("--prompt-ids is empty; give at least one token id")
    return ids
