"""Parity of generation, and quantizing KV-cache decoders with it as the acceptance test.

For a decoder, one forward's tensors are the wrong yardstick: what users see is the generated
text. ``compare_generation`` measures two things over a set of prompts:

- greedy token agreement under teacher forcing: the candidate is fed the reference's tokens and
  must pick the same greedy token at each step (one flipped token does not fail every later step);
- per-step logit cosine on those same prefixes;
- free-running agreement, reported alongside: each model generates on its own; the fraction of
  positions that match, how many prompts match exactly, and the first step where they diverge.
  One near-tie flip makes the rest of a free-running generation differ, so it is not the criterion.

``quantize_generation`` quantizes the decoder (and the encoder of an encoder-decoder) with
:func:`edgeai.quantize`, calibrating and evaluating on feeds recorded from real generations with
the FP32 model, and accepts the result by that generation parity.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeai.errors import EdgeAIError, QuantizationError
from edgeai.generation import (
    DECODER_FILE,
    ENCODER_FILE,
    decode_rates,
    generate,
    load_generative,
    prefill_logits,
)
from edgeai.onnxfile import move_onnx
from edgeai.quantization import QuantizeResult, ToleranceNotMet, quantize


@dataclass(frozen=True)
class GenerationParity:
    """Greedy token agreement and per-step logit cosine of a candidate against a reference."""

    token_agreement: float  # teacher-forced: fraction of steps whose greedy token equals the reference's
    step_cosine: tuple[float, ...]  # teacher-forced logit cosine per step, the minimum over prompts
    free_running_agreement: float  # each model on its own: fraction of token positions that match
    exact_prompts: int  # prompts whose free-running generation matched token for token
    prompts: int
    first_divergence: tuple[int | None, ...]  # per prompt: first differing step, None if identical
    min_token_agreement: float
    min_cosine: float
    reference: dict[str, Any]
    candidate: dict[str, Any]

    @property
    def worst_cosine(self) -> float:
        return min(self.step_cosine) if self.step_cosine else 1.0

    @property
    def mean_cosine(self) -> float:
        return float(np.mean(self.step_cosine)) if self.step_cosine else 1.0

    @property
    def passed(self) -> bool:
        return self.token_agreement >= self.min_token_agreement and self.worst_cosine >= self.min_cosine

    def verdict(self) -> str:
        where = f"{self.candidate.get('engine')} {self.candidate.get('device')} ({self.candidate.get('precision')})"
        return (f"{'PASS' if self.passed else 'FAIL'}: {where} vs {self.reference.get('precision')} reference: "
                f"greedy tokens agree on {self.token_agreement:.1%} of steps (teacher-forced; need >= "
                f"{self.min_token_agreement:.0%}), step logit cosine min {self.worst_cosine:.5f} mean "
                f"{self.mean_cosine:.5f} (need >= {self.min_cosine}); free-running {self.free_running_agreement:.1%} "
                f"of tokens, {self.exact_prompts}/{self.prompts} prompts identical")

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "token_agreement": self.token_agreement,
                "step_cosine": [round(c, 6) for c in self.step_cosine], "worst_cosine": self.worst_cosine,
                "mean_cosine": self.mean_cosine, "free_running_agreement": self.free_running_agreement,
                "exact_prompts": self.exact_prompts, "prompts": self.prompts,
                "first_divergence": list(self.first_divergence),
                "min_token_agreement": self.min_token_agreement, "min_cosine": self.min_cosine,
                "reference": self.reference, "candidate": self.candidate, "verdict": self.verdict()}


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom > 0 else float(np.array_equal(a, b))


def default_prompts(vocab: int, count: int = 4, length: int = 8, seed: int = 0) -> list[np.ndarray]:
    """Random prompts ``[1, length]`` within the vocabulary (ids 0-1 are often special: skipped)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(2, max(vocab, 3), (1, length), dtype=np.int64) for _ in range(count)]


def compare_generation(reference: Any, candidate: Any, prompts: Sequence[Any] | None = None, *,
                       max_new_tokens: int = 32, device: str = "cpu", reference_device: str = "cpu",
                       min_token_agreement: float = 0.9, min_cosine: float = 0.99) -> GenerationParity:
    """Compare greedy generation of two KV-cache models (e.g. FP32 and INT8, or two devices).

    Args:
        reference, candidate: anything :func:`edgeai.generation.load_generative` accepts.
        prompts: prompt id arrays (``[1, seq]`` each); default four random prompts of 8 tokens.
        max_new_tokens: tokens per prompt (EOS is ignored so both run the same number of steps).
        device, reference_device: devices for paths.
        min_token_agreement, min_cosine: the pass criteria.
    """
    ref = load_generative(reference, reference_device)
    cand = load_generative(candidate, device)
    prompts = list(prompts) if prompts is not None else default_prompts(int(ref.config.get("vocab_size") or 100))
    agree = total = exact = hits = steps = 0
    divergence: list[int | None] = []
    cosines: list[list[float]] = []
    for prompt in prompts:
        r = generate(ref, prompt, max_new_tokens, stop_on_eos=False, keep_logits=True)
        c = generate(cand, prompt, max_new_tokens, stop_on_eos=False)
        forced = generate(cand, prompt, max_new_tokens, stop_on_eos=False, keep_logits=True,
                          forced_tokens=r.tokens)
        same = r.tokens == c.tokens
        agree, total = agree + int(same.sum()), total + same.size
        diff = np.flatnonzero(~same.all(axis=0))
        divergence.append(int(diff[0]) if diff.size else None)
        exact += int(not diff.size)
        cosines.append([_cosine(a, b) for a, b in zip(r.logits, forced.logits, strict=True)])
        hits += sum(int((f.argmax(-1) == t).all()) for f, t in zip(forced.logits, r.tokens.T, strict=True))
        steps += r.new_tokens
    per_step = tuple(float(min(col)) for col in zip(*cosines, strict=True))
    return GenerationParity(hits / steps, per_step, agree / total, exact, len(prompts), tuple(divergence),
                            min_token_agreement, min_cosine, ref.describe().to_dict(), cand.describe().to_dict())


@dataclass(frozen=True)
class GenerationQuantizeResult:
    """The quantized file(s), each part's :class:`~edgeai.quantization.QuantizeResult`, and generation parity."""

    src: Path
    dst: Path
    mode: str
    parts: dict[str, Any]  # "decoder" (and "encoder") -> QuantizeResult
    parity: GenerationParity

    @property
    def size_before(self) -> int:
        return sum(p.size_before for p in self.parts.values())

    @property
    def size_after(self) -> int:
        return sum(p.size_after for p in self.parts.values())

    def to_dict(self) -> dict[str, Any]:
        return {"src": str(self.src), "dst": str(self.dst), "mode": self.mode, "size_before": self.size_before,
                "size_after": self.size_after, "parts": {k: v.to_dict() for k, v in self.parts.items()},
                "parity": self.parity.to_dict()}


def _recorded_feeds(gm: Any, prompts: Sequence[np.ndarray], max_new_tokens: int) -> dict[str, list[dict]]:
    """Decoder (and encoder) feeds from real FP32 generations: calibration and evaluation data."""
    steps: list[dict] = []
    for prompt in prompts:
        generate(gm, prompt, max_new_tokens, stop_on_eos=False, on_step=lambda f: steps.append(dict(f)))
    out = {"decoder": steps[:: max(1, len(steps) // 16)]}  # a spread of steps: prompt steps and decode steps
    if gm.is_seq2seq:
        out["encoder"] = [{"input_ids": p, "attention_mask": np.ones_like(p)} for p in prompts]
    return out


@dataclass(frozen=True)
class Perplexity:
    """exp(mean next-token negative log-likelihood) of a decoder on held-out token ids."""

    value: float
    tokens: int  # predicted tokens scored
    windows: int
    context: int
    runtime: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"perplexity": round(self.value, 4), "tokens": self.tokens, "windows": self.windows,
                "context": self.context, "runtime": self.runtime}


def perplexity(model: Any, token_ids: Any, *, context: int = 128, max_windows: int | None = 16,
               device: str = "cpu", **load_options: Any) -> Perplexity:
    """Perplexity of a decoder-only KV-cache export over non-overlapping windows of ``context`` tokens.

    Each window is one prefill step from an empty cache (the same step generation starts with);
    ``max_windows`` bounds the cost (None: all of ``token_ids``).
    """
    gm = load_generative(model, device, **load_options)
    ids = np.asarray(token_ids, dtype=np.int64).ravel()
    windows = [ids[i:i + context] for i in range(0, len(ids) - 1, context) if len(ids[i:i + context]) > 1]
    windows = windows[:max_windows] if max_windows else windows
    if not windows:
        raise QuantizationError(f"perplexity needs at least 2 token ids; got {len(ids)}")
    total, count = 0.0, 0
    for w in windows:
        logits = prefill_logits(gm, w[None])[0, :-1].astype(np.float64)
        shifted = logits - logits.max(axis=-1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        total -= float(logp[np.arange(len(w) - 1), w[1:]].sum())
        count += len(w) - 1
    return Perplexity(float(np.exp(total / count)), count, len(windows), context, gm.describe().to_dict())


#: what ``auto`` tries on a decoder: INT8 activations (dynamic), then the weight-only modes
AUTO_CANDIDATES = ("dynamic", "int8-weights", "int4")
WEIGHT_ONLY = ("int4", "int8-weights")


def quantize_generation(src: str | os.PathLike, dst: str | os.PathLike, *, mode: str = "dynamic",
                        device: str = "cpu", prompts: Sequence[Any] | None = None, max_new_tokens: int = 32,
                        min_token_agreement: float = 0.9, min_cosine: float = 0.99, force: bool = False,
                        **options: Any) -> GenerationQuantizeResult:
    """Quantize a KV-cache decoder (``.onnx``) or encoder-decoder folder; accept it by generation parity.

    Each file goes through :func:`edgeai.quantize` (calibrated and evaluated on feeds recorded from
    FP32 generations on ``prompts``); the result must then reach ``min_token_agreement`` greedy token
    agreement and ``min_cosine`` per-step logit cosine on ``device``. The weight-only modes
    (``int4``, ``int8-weights``) are data-free unless ``calibration`` is given (then AWQ/GPTQ).

    ``mode="auto"`` tries :data:`AUTO_CANDIDATES` (each judged by generation parity), times the
    passing ones' decode tokens/s against FP32 on ``device`` (interleaved rounds) and writes the
    fastest that is at least ``min_speedup`` (default 1.0) times FP32's rate; when none is, the FP32
    file is written with a note saying so. What was tried is in ``parts[...].candidates``.

    Raises:
        QuantizationError: bad paths or mode; ``ToleranceNotMet`` (exit code 1) when generation
            parity fails and ``force`` is False; then nothing is written.
    """
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise QuantizationError(f"refusing to overwrite the input {src}; choose another output path")
    folder = src.is_dir()
    if folder != (dst.suffix != ".onnx"):
        raise QuantizationError(f"{src} is {'a folder' if folder else 'a file'}; the output {dst} must be "
                                f"{'a folder' if folder else 'an .onnx file'} too")
    ref = load_generative(src, "cpu")
    prompts = [np.asarray(p, dtype=np.int64).reshape(1, -1) for p in prompts] if prompts is not None \
        else default_prompts(int(ref.config.get("vocab_size") or 100))
    feeds = _recorded_feeds(ref, prompts, max_new_tokens)
    names = {"decoder": DECODER_FILE, "encoder": ENCODER_FILE} if folder else {"decoder": dst.name}
    files = {role: (src / name if folder else src) for role, name in names.items()}
    dst.parent.mkdir(parents=True, exist_ok=True)
    judge = {"max_new_tokens": max_new_tokens, "device": device, "min_token_agreement": min_token_agreement,
             "min_cosine": min_cosine}
    with tempfile.TemporaryDirectory(prefix=".edgeai-gq-", dir=dst.parent) as work:
        if mode == "auto":
            staged, parts, parity, mode_used = _auto(src, files, names, Path(work), feeds, prompts, judge, options)
        else:
            staged = Path(work) / "out"
            staged.mkdir()
            parts = _quantize_parts(files, names, staged, mode, feeds, device, dict(options))
            parity = compare_generation(src, staged if folder else staged / names["decoder"], prompts, **judge)
            mode_used = mode
        if not parity.passed and not force:
            raise ToleranceNotMet(f"{mode_used} quantization changes generation too much, so nothing was written: "
                                  f"{parity.verdict()}. Try another mode, or force=True to write it anyway")
        if folder:
            dst.mkdir(exist_ok=True)
        for role, name in names.items():
            # Each file is renamed whole (the staging folder is on the same file system); a >2 GB
            # model's weights move first so the model never points at a missing data file.
            final = dst / name if folder else dst
            move_onnx(staged / name, final)
            parts[role] = dataclasses.replace(parts[role], dst=final)
    return GenerationQuantizeResult(src, dst, mode, parts, parity)


def _quantize_parts(files: dict[str, Path], names: dict[str, str], out: Path, mode: str,
                    feeds: dict[str, list[dict]], device: str, options: dict[str, Any]) -> dict[str, Any]:
    """:func:`edgeai.quantize` each file into ``out`` (judged later, by generation: ``force=True``)."""
    calibration = options.pop("calibration", None)
    options.setdefault("latency", False)  # one forward's latency says little here; generation is timed instead
    parts: dict[str, Any] = {}
    for role, path in files.items():
        # Weight-only modes are data-free unless the user gave calibration data (then AWQ / GPTQ).
        calib = calibration if mode in WEIGHT_ONLY else (calibration or feeds[role])
        parts[role] = quantize(path, out / names[role], mode=mode, device=device, force=True,
                               calibration=calib, eval_inputs=feeds[role], **options)
    return parts


def _auto(src: Path, files: dict[str, Path], names: dict[str, str], work: Path, feeds: dict[str, list[dict]],
          prompts: list[np.ndarray], judge: dict[str, Any], options: dict[str, Any]) -> tuple[Any, ...]:
    """Try each candidate mode, judge by generation, time the passing ones; see :func:`quantize_generation`."""
    min_speedup = float(options.pop("min_speedup", 1.0))
    candidates = list(options.pop("candidates", AUTO_CANDIDATES))
    tried: list[dict[str, Any]] = []
    passing: list[tuple[str, Path, dict[str, Any], GenerationParity]] = []
    for name in candidates:
        out = work / name
        out.mkdir()
        row: dict[str, Any] = {"name": name, "passed": False, "error": None}
        try:
            parts = _quantize_parts(files, names, out, name, feeds, judge["device"], dict(options))
            target = out if src.is_dir() else out / names["decoder"]
            parity = compare_generation(src, target, prompts, **judge)
            row.update(passed=parity.passed, token_agreement=round(parity.token_agreement, 4),
                       worst_cosine=round(parity.worst_cosine, 6), size=sum(p.size_after for p in parts.values()))
            if parity.passed:
                passing.append((name, out, parts, parity))
        except EdgeAIError as e:
            row["error"] = str(e)[:300]
        tried.append(row)
    notes: list[str] = []
    chosen = None
    if passing:
        decoder = {name: (out if src.is_dir() else out / names["decoder"]) for name, out, _, _ in passing}
        rates = decode_rates({"fp32": src, **decoder}, prompts[0], judge["max_new_tokens"], device=judge["device"])
        for row in tried:
            if row["name"] in rates["speedup"]:
                row.update(tokens_per_s=rates["tokens_per_s"][row["name"]], speedup=rates["speedup"][row["name"]])
        fast = [p for p in passing if rates["speedup"][p[0]] >= min_speedup]
        if fast:
            chosen = max(fast, key=lambda p: rates["speedup"][p[0]])
            notes.append(f"auto chose {chosen[0]}: {rates['speedup'][chosen[0]]}x FP32's decode tokens/s on "
                         f"{judge['device']} ({rates['rounds']} interleaved rounds)")
        else:
            notes.append(f"no passing candidate was measured faster than FP32 (>= {min_speedup}x decode tokens/s) on "
                         f"{judge['device']}: FP32 kept")
    else:
        notes.append("no candidate kept generation within tolerance: FP32 kept")
    if chosen is None:
        keep = work / "fp32"
        keep.mkdir()
        for role, path in files.items():
            shutil.copyfile(path, keep / names[role])
        parity = compare_generation(src, keep if src.is_dir() else keep / names["decoder"], prompts, **judge)
        parts = {role: _kept(path, keep / names[role], judge["device"]) for role, path in files.items()}
        staged, mode_used = keep, "fp32"
    else:
        mode_used, staged, parts, parity = chosen
    parts = {role: dataclasses.replace(p, mode=f"auto:{mode_used}", candidates=tuple(tried),
                                       notes=tuple(p.notes) + tuple(notes)) for role, p in parts.items()}
    return staged, parts, parity, mode_used


def _kept(src: Path, dst: Path, device: str) -> Any:
    size = src.stat().st_size
    return QuantizeResult(src, dst, "fp32", {}, size, size, None, device, 0.0)
