"""End-to-end task checks: run a whole encoder-decoder pipeline with the candidate's files and with
the reference's, on the same data, and compare the answers users see.

Single-graph parity hides what greedy decoding does to a small error: a Whisper encoder whose
output cosine is 0.9965 turned "jump over the lazy dog" into "stump, silver-veille dog". Here both
sides decode greedily, step by step with their own KV cache, and the verdict is on the outcome:

- ``transcribe`` (Whisper): word error rate of the candidate's transcripts against the reference
  model's (:func:`edgeai.transcripts.transcript_metric`), with Whisper's greedy loop
  (:mod:`edgeai.corpus.transcribe`: its prompt, suppressed tokens, ``<|endoftext|>``);
- ``seq2seq`` (any encoder + KV-cache decoder export): token error rate of the generated token
  sequences (edit distance over the reference's length), with the prompt and end tokens the
  decoder file's generation metadata names.

A side is a folder holding ``encoder.onnx`` and ``decoder.onnx`` (what ``edgeai export`` writes for
an encoder-decoder), loaded on a device. The encoder's output is judged too, as a hidden state
(cosine and relative error), and reported beside the task verdict.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeai.corpus import transcribe, whisper
from edgeai.errors import InputMismatchError, ModelLoadError
from edgeai.feeds import Feeds, resolve_feeds
from edgeai.metrics import MetricResult, OutputJudgement, judge
from edgeai.onnxfile import load_proto, read_metadata
from edgeai.runtimes import load
from edgeai.transcripts import edit_distance, transcript_metric

TASKS = ("transcribe", "seq2seq")
DEFAULT_MAX_ERROR = 0.01  # at most 1 word (or token) in 100 may differ from the reference model's answer
ENCODER_FILE, DECODER_FILE = "encoder.onnx", "decoder.onnx"


@dataclass(frozen=True)
class TaskReport:
    """A pipeline's answers with the candidate's files against the reference's, on ``samples`` inputs."""

    task: str
    result: MetricResult  # word_error_rate (transcribe) or token_error_rate (seq2seq)
    samples: int
    data: dict[str, Any]
    reference: dict[str, Any]
    candidate: dict[str, Any]
    reference_answers: tuple[str, ...]
    candidate_answers: tuple[str, ...]
    encoder: OutputJudgement | None = None  # the encoder output's metrics, reported beside the verdict
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return self.result.passed

    @property
    def changed(self) -> list[int]:
        """Indices of the samples whose answer differs from the reference's."""
        return [i for i, (r, c) in enumerate(zip(self.reference_answers, self.candidate_answers, strict=True))
                if r != c]

    def verdict(self) -> str:
        head = "PASS" if self.passed else "FAIL"
        c, r = self.candidate, self.reference
        what = "transcripts" if self.task == "transcribe" else "token sequences"
        enc = ""
        if self.encoder is not None:
            enc = "; encoder output " + ", ".join(f"{m.metric} {m.value:.4g}" for m in self.encoder.results)
        return (f"{head}: {self.task} with {Path(c['folder']).name} on {c['device']} ({c['precision']}) vs "
                f"{Path(r['folder']).name} ({r['device']}, {r['precision']}) over {self.samples} "
                f"{'sample' if self.samples == 1 else 'samples'} of {self.data.get('source')}: "
                f"{self.result.metric} {self.result.value:.3f} ({'<=' if self.passed else '>'} "
                f"{self.result.threshold:g}), {len(self.changed)} of {self.samples} {what} changed{enc}")

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "verdict": self.verdict(), "task": self.task, "samples": self.samples,
                "data": self.data, "result": self.result.to_dict(), "reference": self.reference,
                "candidate": self.candidate, "reference_answers": list(self.reference_answers),
                "candidate_answers": list(self.candidate_answers), "changed": self.changed,
                "encoder": self.encoder.to_dict() if self.encoder is not None else None, "notes": list(self.notes)}


class _Side:
    """One folder's encoder and decoder, loaded on a device, with the decoder's generation metadata."""

    def __init__(self, folder: str | Path, device: str):
        self.folder = Path(folder)
        missing = [f for f in (ENCODER_FILE, DECODER_FILE) if not (self.folder / f).is_file()]
        if missing:
            raise ModelLoadError(f"{self.folder} lacks {missing}: a task check runs a folder holding {ENCODER_FILE} "
                                 f"and {DECODER_FILE} (what `edgeai export` writes for an encoder-decoder)")
        self.encoder = load(self.folder / ENCODER_FILE, device)
        self.decoder = load(self.folder / DECODER_FILE, device)
        self.device = device
        self.config = dict(read_metadata(load_proto(self.folder / DECODER_FILE)).get("generation") or {})

    def describe(self) -> dict[str, Any]:
        enc, dec = self.encoder.describe(), self.decoder.describe()
        precision = enc.precision if enc.precision == dec.precision else f"encoder {enc.precision}, decoder " \
                                                                          f"{dec.precision}"
        return {"folder": str(self.folder), "device": self.device, "engine": enc.engine,
                "engine_version": enc.engine_version, "precision": precision,
                "encoder": enc.to_dict(), "decoder": dec.to_dict()}


def _batches(feeds: Feeds, names: Sequence[str], size: int) -> list[dict[str, np.ndarray]]:
    """Feeds concatenated along axis 0 into batches of ``size`` samples (each feed may hold several)."""
    out, group = [], []
    for feed in feeds:
        group.append(feed)
        if len(group) == size:
            out.append({n: np.concatenate([g[n] for g in group]) for n in names})
            group = []
    if group:
        out.append({n: np.concatenate([g[n] for g in group]) for n in names})
    return out


OnStep = Callable[[dict[str, np.ndarray]], None] | None


def _whisper_tokens(side: _Side, batches: list[dict[str, np.ndarray]], max_new_tokens: int,
                    on_step: OnStep = None) -> tuple[Any, ...]:
    hidden_name = side.encoder.outputs[0].name
    presents = [o.name for o in side.decoder.outputs if o.name.startswith("present.")]
    hiddens: list[np.ndarray] = []

    def encode(features: np.ndarray) -> np.ndarray:
        hiddens.append(side.encoder.run({"input_features": features})[hidden_name])
        return hiddens[-1]

    def step(feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if on_step is not None:
            on_step(feeds)
        out = side.decoder.run(feeds)
        return out["logits"], {n: out[n] for n in presents}

    tokens = [row for b in batches for row in transcribe.greedy_decode(encode, step, b["input_features"],
                                                                       max_new_tokens)]
    return tokens, hiddens


def _seq2seq_tokens(side: _Side, batches: list[dict[str, np.ndarray]], max_new_tokens: int,
                    on_step: OnStep = None) -> tuple[Any, ...]:
    cfg = side.config
    prompt = list(cfg.get("decoder_prompt_ids") or [cfg.get("decoder_start_token_id")])
    if prompt[0] is None:
        raise InputMismatchError(f"{side.folder / DECODER_FILE} names no decoder_start_token_id in its generation "
                                 "metadata; export it with `edgeai export ... --task text2text-generation-with-past`")
    eos = set(cfg.get("eos_token_id") or []) if isinstance(cfg.get("eos_token_id"), list) else \
        {cfg["eos_token_id"]} if cfg.get("eos_token_id") is not None else set()
    inputs = {s.name: s for s in side.decoder.inputs}
    past_specs = [s for n, s in inputs.items() if n.startswith("past_key_values.")]
    hidden_name = side.encoder.outputs[0].name
    tokens: list[list[int]] = []
    hiddens = []
    for b in batches:
        hidden = side.encoder.run({s.name: b[s.name] for s in side.encoder.inputs})[hidden_name]
        hiddens.append(hidden)
        batch = hidden.shape[0]
        # An empty cache: [batch, heads, 0, head_dim] (symbolic lengths start at 0).
        past = {s.name: np.zeros([batch] + [0 if isinstance(d, str) else d for d in s.shape[1:]], np.dtype(s.dtype))
                for s in past_specs}
        ids = np.tile(np.asarray(prompt, np.int64), (batch, 1))
        fixed = {"encoder_hidden_states": hidden}
        if "encoder_attention_mask" in inputs:
            fixed["encoder_attention_mask"] = b.get("attention_mask", np.ones(hidden.shape[:2], np.int64))
        done = np.zeros(batch, bool)
        rows: list[list[int]] = [[] for _ in range(batch)]
        for _ in range(max_new_tokens):
            feeds = {"decoder_input_ids": ids, **fixed, **past}
            if on_step is not None:
                on_step(feeds)
            out = side.decoder.run(feeds)
            token = np.asarray(out["logits"])[:, -1, :].argmax(-1)
            for r in np.flatnonzero(~done):
                if int(token[r]) not in eos:
                    rows[r].append(int(token[r]))
            done |= np.isin(token, list(eos))
            if done.all():
                break
            past = {f"past_key_values.{n[len('present.'):]}": v for n, v in out.items() if n.startswith("present.")}
            ids = token[:, None].astype(np.int64)
        tokens += rows
    return tokens, hiddens


def check_task(candidate: str | Path, reference: str | Path, data: Any, *, task: str = "transcribe",
               device: str = "cpu", reference_device: str = "cpu", samples: int | None = None,
               max_error: float = DEFAULT_MAX_ERROR, max_new_tokens: int = 96, batch_size: int = 4) -> TaskReport:
    """Run ``task`` end to end with the candidate folder's files and the reference's; judge the answers.

    Args:
        candidate, reference: folders holding ``encoder.onnx`` and ``decoder.onnx``.
        data: the encoder's inputs (the forms of :func:`edgeai.feeds.resolve_feeds`: a ``.npz``
            with a leading sample axis, a folder of ``.npz``, ``pkg.mod:fn``, feed dicts); for
            Whisper, ``input_features [N, 80, 3000]`` log-mel features.
        task: ``transcribe`` (Whisper: word error rate of the decoded text) or ``seq2seq``
            (token error rate of the generated ids).
        device, reference_device: where each side runs (the reference at its file's precision).
        samples: cap on how many samples of ``data`` are used (default: all).
        max_error: the largest word / token error rate against the reference's answers that passes.

    Raises:
        InputMismatchError: unknown task, no data, or data that do not fit the encoder.
        ModelLoadError: a folder lacks its encoder or decoder.
    """
    _check_args(task, data)
    if not 0 <= max_error <= 1:
        raise InputMismatchError(f"max_error must be within [0, 1]; got {max_error}")
    ref, cand = _Side(reference, reference_device), _Side(candidate, device)
    feeds = resolve_feeds(data, cand.encoder.inputs, samples=samples)
    batches = _batches(feeds, [s.name for s in cand.encoder.inputs], batch_size)
    decode = _whisper_tokens if task == "transcribe" else _seq2seq_tokens
    ref_tokens, ref_hidden = decode(ref, batches, max_new_tokens)
    cand_tokens, cand_hidden = decode(cand, batches, max_new_tokens)
    encoder = judge(ref.encoder.outputs[0].name, ref_hidden, cand_hidden, "hidden")
    if task == "transcribe":
        tok = whisper.tokenizer()
        ref_ans = tuple(tok.decode(t, skip_special_tokens=True).strip() for t in ref_tokens)
        cand_ans = tuple(tok.decode(t, skip_special_tokens=True).strip() for t in cand_tokens)
        result = transcript_metric(ref_ans, cand_ans, max_wer=max_error)
    else:
        ref_ans = tuple(" ".join(map(str, t)) for t in ref_tokens)
        cand_ans = tuple(" ".join(map(str, t)) for t in cand_tokens)
        result = token_error_metric(ref_tokens, cand_tokens, max_error)
    return TaskReport(task, result, len(ref_ans), feeds.to_dict(), ref.describe(), cand.describe(), ref_ans,
                      cand_ans, encoder)


def _check_args(task: str, data: Any) -> None:
    if task not in TASKS:
        raise InputMismatchError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    if data is None:
        raise InputMismatchError("a task check needs real inputs: pass --data FILE (for transcribe, a .npz with "
                                 "input_features [N, 80, 3000] log-mel features of speech)")


def record_feeds(folder: str | Path, data: Any, *, task: str = "transcribe", device: str = "cpu",
                 samples: int | None = None, max_new_tokens: int = 96, max_steps: int = 16) -> dict[str, list[dict]]:
    """The encoder's and the decoder's feeds while ``folder`` runs ``task`` greedily on ``data``.

    Real inputs for calibrating and evaluating a quantizer: ``encoder`` holds one feed per sample,
    ``decoder`` a spread of at most ``max_steps`` decoder steps (the prompt step and decode steps,
    each with its KV cache), all at batch 1.
    """
    _check_args(task, data)
    side = _Side(folder, device)
    feeds = resolve_feeds(data, side.encoder.inputs, samples=samples)
    names = [s.name for s in side.encoder.inputs]
    batches = _batches(feeds, names, 1)
    steps: list[dict[str, np.ndarray]] = []
    decode = _whisper_tokens if task == "transcribe" else _seq2seq_tokens
    decode(side, batches, max_new_tokens, on_step=lambda f: steps.append(dict(f)))
    return {"encoder": [{n: b[n] for n in names} for b in batches],
            "decoder": steps[:: max(1, -(-len(steps) // max_steps))]}


def task_rates(folders: dict[str, str | Path], data: Any, *, task: str = "transcribe", device: str = "cpu",
               samples: int = 1, rounds: int = 3, warmup: int = 1, max_new_tokens: int = 96) -> dict[str, Any]:
    """Time the whole greedy pipeline (encoder, then every decoder step) of each folder on ``device``.

    Each round runs every folder in turn on the first ``samples`` samples of ``data`` (interleaved,
    so load on the machine hits all alike). ``speedup`` is each folder's median per-round ratio of
    the first folder's wall time to its own (``ratios``: the per-round ratios, for an interval); ``tokens_per_s`` counts generated tokens (end token
    included) over the whole wall time, encoder included.
    """
    _check_args(task, data)
    sides = {name: _Side(f, device) for name, f in folders.items()}
    first = next(iter(sides))
    enc = sides[first].encoder.inputs
    batches = _batches(resolve_feeds(data, enc, samples=samples), [s.name for s in enc], 1)
    decode = _whisper_tokens if task == "transcribe" else _seq2seq_tokens
    seconds: dict[str, list[float]] = {n: [] for n in sides}
    tokens: dict[str, int] = {}
    for r in range(warmup + rounds):
        for name, side in sides.items():
            t0 = time.perf_counter()
            rows, _ = decode(side, batches, max_new_tokens)
            if r >= warmup:
                seconds[name].append(time.perf_counter() - t0)
                tokens[name] = sum(len(row) + 1 for row in rows)
    ratios = {n: [b / c for b, c in zip(seconds[first], v, strict=True) if c > 0] for n, v in seconds.items()}
    speedup = {n: round(float(np.median(r or [0.0])), 3) for n, r in ratios.items()}
    return {"tokens_per_s": {n: round(tokens[n] / float(np.median(v)), 1) for n, v in seconds.items()},
            "seconds": {n: round(float(np.median(v)), 4) for n, v in seconds.items()}, "speedup": speedup,
            "ratios": ratios,
            "rounds": rounds, "samples": len(batches), "device": device, "task": task,
            "timed": f"whole greedy pipeline: encoder + every decoder step, on {len(batches)} "
                     f"sample{'s' if len(batches) != 1 else ''} of the task's data"}


def token_error_metric(reference: Sequence[Sequence[int]], candidate: Sequence[Sequence[int]],
                       max_error: float = DEFAULT_MAX_ERROR) -> MetricResult:
    """Token error rate: edit distance of the candidate's token sequences over the reference's length."""
    errors = sum(edit_distance(list(r), list(c)) for r, c in zip(reference, candidate, strict=True))
    length = sum(len(r) for r in reference)
    rate = errors / max(length, 1)
    same = sum(list(r) == list(c) for r, c in zip(reference, candidate, strict=True))
    return MetricResult("sequence", "token_error_rate", rate, max_error, rate <= max_error, len(reference),
                        details={"identical_sequences": same, "reference_tokens": length})
