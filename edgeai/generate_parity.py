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
the FP32 model, and accepts the result by that generation parity. Given a ``task``, an
encoder-decoder's candidates must also keep the pipeline's answers (:mod:`edgeai.taskcheck`:
Whisper's transcripts, or generated token sequences): a candidate can agree on every teacher-forced
step of random prompts and still change a transcript.
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
    generate,
    load_generative,
)
from edgeai.lm_measures import PerplexityCheck, decode_rates, perplexity
from edgeai.onnxfile import move_onnx
from edgeai.quantization import QuantizeResult, ToleranceNotMet, quantize
from edgeai.speedup import decide
from edgeai.taskcheck import (
    DEFAULT_MAX_ERROR,
    TASKS,
    TaskReport,
    check_task,
    record_feeds,
    task_rates,
)


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
    parity: GenerationParity | None  # None when prompts cannot drive the encoder (Whisper): the task judges
    task: TaskReport | None = None  # the end-to-end task verdict, when quantize_generation was given a task
    perplexity: PerplexityCheck | None = None  # when quantize_generation was given held-out token ids

    @property
    def passed(self) -> bool:
        return all(v.passed for v in (self.parity, self.task, self.perplexity) if v is not None)

    @property
    def size_before(self) -> int:
        return sum(p.size_before for p in self.parts.values())

    @property
    def size_after(self) -> int:
        return sum(p.size_after for p in self.parts.values())

    def to_dict(self) -> dict[str, Any]:
        return {"src": str(self.src), "dst": str(self.dst), "mode": self.mode, "size_before": self.size_before,
                "size_after": self.size_after, "parts": {k: v.to_dict() for k, v in self.parts.items()},
                "parity": self.parity.to_dict() if self.parity is not None else None,
                "task": self.task.to_dict() if self.task is not None else None,
                "perplexity": self.perplexity.to_dict() if self.perplexity is not None else None,
                "passed": self.passed}


def _recorded_feeds(gm: Any, prompts: Sequence[np.ndarray], max_new_tokens: int) -> dict[str, list[dict]]:
    """Decoder (and encoder) feeds from real FP32 generations: calibration and evaluation data."""
    steps: list[dict] = []
    for prompt in prompts:
        generate(gm, prompt, max_new_tokens, stop_on_eos=False, on_step=lambda f: steps.append(dict(f)))
    out = {"decoder": steps[:: max(1, len(steps) // 16)]}  # a spread of steps: prompt steps and decode steps
    if gm.is_seq2seq:
        out["encoder"] = [{"input_ids": p, "attention_mask": np.ones_like(p)} for p in prompts]
    return out


#: what ``auto`` tries on a decoder: INT8 activations (dynamic), then the weight-only modes
AUTO_CANDIDATES = ("dynamic", "int8-weights", "int4")
WEIGHT_ONLY = ("int4", "int8-weights")
ROLES = ("decoder", "encoder")
#: what ``auto`` tries on an encoder-decoder folder: each mode on both files, then on one file only
#: (``decoder:dynamic``: the decoder quantized, the encoder kept an FP32 copy; and the other way round)
FOLDER_CANDIDATES = AUTO_CANDIDATES + tuple(f"{role}:{mode}" for role in ROLES for mode in AUTO_CANDIDATES)


def candidate_plan(name: str, roles: Sequence[str]) -> dict[str, str | None]:
    """The mode each file gets under candidate ``name``: ``"dynamic"`` quantizes every file,
    ``"decoder:dynamic"`` only the decoder (the other files stay FP32 copies: ``None``)."""
    role, _, mode = name.rpartition(":")
    if not role:
        return {r: mode for r in roles}
    if role not in roles or not mode:
        raise QuantizationError(f"candidate {name!r}: expected MODE or ROLE:MODE with ROLE one of "
                                f"{', '.join(roles)} (a single .onnx file has only a decoder)")
    return {r: (mode if r == role else None) for r in roles}


def quantize_generation(src: str | os.PathLike, dst: str | os.PathLike, *, mode: str = "dynamic",
                        device: str = "cpu", prompts: Sequence[Any] | None = None, max_new_tokens: int = 32,
                        min_token_agreement: float = 0.9, min_cosine: float = 0.99, force: bool = False,
                        task: str | None = None, task_data: Any = None, task_samples: int | None = None,
                        task_max_error: float = DEFAULT_MAX_ERROR, perplexity_ids: Any = None,
                        max_perplexity_increase: float = 0.01, **options: Any) -> GenerationQuantizeResult:
    """Quantize a KV-cache decoder (``.onnx``) or encoder-decoder folder; accept it by generation parity.

    Each file goes through :func:`edgeai.quantize` (calibrated and evaluated on feeds recorded from
    FP32 generations on ``prompts``); the result must then reach ``min_token_agreement`` greedy token
    agreement and ``min_cosine`` per-step logit cosine on ``device``. The weight-only modes
    (``int4``, ``int8-weights``) are data-free unless ``calibration`` is given (then AWQ/GPTQ).
    For a folder, ``mode`` may name one file: ``decoder:dynamic`` quantizes the decoder and copies
    the encoder unchanged (FP32), ``encoder:int8-weights`` the other way round.

    ``task`` (``transcribe`` or ``seq2seq``, folders only) adds the end-to-end verdict users see:
    :func:`edgeai.taskcheck.check_task` runs the whole greedy pipeline with the candidate's files and
    with ``src``'s on ``task_data`` (its first ``task_samples`` samples) and the word / token error
    rate must stay within ``task_max_error``. Calibration then comes from the encoder's and decoder's
    feeds on ``task_data``. Generation parity on random prompts still runs when the encoder takes
    ``input_ids``; a Whisper encoder takes log-mel features, so there the task check is the judge.

    ``perplexity_ids`` (held-out token ids: an array or a ``.npy`` file; decoder files only) adds
    the language-model verdict: the candidate's perplexity over them may be at most
    ``max_perplexity_increase`` (default 0.01: 1%) above the FP32 file's.

    ``mode="auto"`` tries ``candidates`` (default :data:`AUTO_CANDIDATES` for a decoder file,
    :data:`FOLDER_CANDIDATES` for a folder), each judged as above, times the passing ones against
    FP32 on ``device`` (:data:`SPEED_ROUNDS` interleaved rounds) and writes the fastest whose 95%
    interval over per-round ratios has its lower bound at or above ``min_speedup`` (default 1.0; 0
    takes the fastest passing one); when none does, the FP32 file(s) are written with a note giving
    each candidate's interval. What is timed: a decoder file's decode tokens/s after the first token; a folder's whole
    greedy generation, encoder included (on ``task_data`` when ``task`` is given). What was tried,
    with each candidate's verdicts, is in ``parts[...].candidates``.

    Raises:
        QuantizationError: bad paths or mode, or ``task`` without ``task_data`` or on a single file;
            ``ToleranceNotMet`` (exit code 1) when generation parity or the task check fails and
            ``force`` is False; then nothing is written.
    """
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise QuantizationError(f"refusing to overwrite the input {src}; choose another output path")
    folder = src.is_dir()
    if folder != (dst.suffix != ".onnx"):
        raise QuantizationError(f"{src} is {'a folder' if folder else 'a file'}; the output {dst} must be "
                                f"{'a folder' if folder else 'an .onnx file'} too")
    if task is not None:
        if task not in TASKS:
            raise QuantizationError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
        if not folder:
            raise QuantizationError(f"task={task!r} runs an encoder-decoder pipeline end to end; {src} is a single "
                                    "file: pass the folder holding encoder.onnx and decoder.onnx, or drop task")
        if task_data is None:
            raise QuantizationError(f"task={task!r} needs the task's real inputs: pass task_data (CLI: --data FILE; "
                                    "for transcribe, a .npz with input_features [N, 80, 3000] log-mel features)")
    on_ppl = _perplexity_plan(src, folder, perplexity_ids, max_perplexity_increase)
    ref = load_generative(src, "cpu")
    drivable = ref.encoder is None or {s.name for s in ref.encoder.inputs} <= {"input_ids", "attention_mask"}
    if task is None or drivable:
        prompts = [np.asarray(p, dtype=np.int64).reshape(1, -1) for p in prompts] if prompts is not None \
            else default_prompts(int(ref.config.get("vocab_size") or 100))
    else:
        prompts = None  # random token prompts cannot drive an encoder of features: the task check judges
    if task is not None:
        feeds = record_feeds(src, task_data, task=task, samples=task_samples)
    else:
        feeds = _recorded_feeds(ref, prompts, max_new_tokens)
    names = {"decoder": DECODER_FILE, "encoder": ENCODER_FILE} if folder else {"decoder": dst.name}
    files = {role: (src / name if folder else src) for role, name in names.items()}
    dst.parent.mkdir(parents=True, exist_ok=True)
    judge = {"max_new_tokens": max_new_tokens, "device": device, "min_token_agreement": min_token_agreement,
             "min_cosine": min_cosine}
    on_task = None if task is None else {"task": task, "data": task_data, "samples": task_samples,
                                         "max_error": task_max_error}
    with tempfile.TemporaryDirectory(prefix=".edgeai-gq-", dir=dst.parent) as work:
        if mode == "auto":
            staged, parts, (parity, report, ppl), mode_used = _auto(src, files, names, Path(work), feeds, prompts, judge,
                                                                    on_task, on_ppl, options)
        else:
            staged = Path(work) / "out"
            staged.mkdir()
            plan = candidate_plan(mode, list(files))
            parts = _quantize_parts(files, names, staged, plan, feeds, device, dict(options))
            parity, report, ppl = _judge(src, staged if folder else staged / names["decoder"], prompts, judge,
                                         on_task, on_ppl)
            mode_used = mode
        failed = [v.verdict() for v in (parity, report, ppl) if v is not None and not v.passed]
        if failed and not force:
            what = "the task's answers" if report is not None and not report.passed else \
                "perplexity" if ppl is not None and not ppl.passed else "generation"
            raise ToleranceNotMet(f"{mode_used} quantization changes {what} too much, so nothing was written: "
                                  f"{'; '.join(failed)}. Try another mode, or force=True (--force) to write it anyway")
        if folder:
            dst.mkdir(exist_ok=True)
        for role, name in names.items():
            # Each file is renamed whole (the staging folder is on the same file system); a >2 GB
            # model's weights move first so the model never points at a missing data file.
            final = dst / name if folder else dst
            move_onnx(staged / name, final)
            parts[role] = dataclasses.replace(parts[role], dst=final)
    return GenerationQuantizeResult(src, dst, mode, parts, parity, report, ppl)


def _perplexity_plan(src: Path, folder: bool, ids: Any, max_increase: float) -> dict[str, Any] | None:
    """The held-out ids and limit of the perplexity verdict (None without ids); bad usage is refused early."""
    if ids is None:
        return None
    if folder:
        raise QuantizationError("perplexity_ids judge a decoder-only language model; an encoder-decoder folder is "
                                "judged by its task (task='transcribe' | 'seq2seq' with task_data)")
    if not (isinstance(max_increase, (int, float)) and 0 <= max_increase < 1):
        raise QuantizationError(f"max_perplexity_increase is a fraction (0.01 = 1%); got {max_increase!r}")
    if isinstance(ids, (str, os.PathLike)):
        try:
            ids = np.load(ids)
        except (OSError, ValueError) as e:
            raise QuantizationError(f"cannot read perplexity token ids from {ids}: {e}; give a .npy of token ids") from e
    arr = np.asarray(ids)
    if arr.size < 2 or not np.issubdtype(arr.dtype, np.integer):
        raise QuantizationError(f"perplexity_ids must be at least 2 integer token ids; got {arr.size} of {arr.dtype}")
    return {"ids": arr.astype(np.int64).ravel(), "max_increase": float(max_increase), "reference": None, "src": src}


def _perplexity_check(target: Path, plan: dict[str, Any], device: str) -> PerplexityCheck:
    if plan["reference"] is None:  # FP32's perplexity once per run, on the reference engine
        plan["reference"] = perplexity(plan["src"], plan["ids"], device="cpu")
    return PerplexityCheck(plan["reference"], perplexity(target, plan["ids"], device=device), plan["max_increase"])


def _judge(src: Path, target: Path, prompts: list[np.ndarray] | None, judge: dict[str, Any],
           on_task: dict[str, Any] | None, on_ppl: dict[str, Any] | None
           ) -> tuple[GenerationParity | None, TaskReport | None, PerplexityCheck | None]:
    """Generation parity on prompts (when there are prompts), the task check (when a task is given) and
    perplexity on held-out ids (when given)."""
    parity = compare_generation(src, target, prompts, **judge) if prompts is not None else None
    report = None
    if on_task is not None:
        report = check_task(target, src, on_task["data"], task=on_task["task"], device=judge["device"],
                            samples=on_task["samples"], max_error=on_task["max_error"])
    ppl = _perplexity_check(target, on_ppl, judge["device"]) if on_ppl is not None else None
    return parity, report, ppl


def _task_row(report: TaskReport) -> dict[str, Any]:
    """A candidate's task verdict, as its row in ``candidates`` records it."""
    r = report.result
    return {"task": report.task, "passed": report.passed, "metric": r.metric, "value": round(float(r.value), 4),
            "threshold": r.threshold, "samples": report.samples, "verdict": report.verdict(),
            "changed": [{"sample": i, "reference": report.reference_answers[i],
                         "candidate": report.candidate_answers[i]} for i in report.changed]}


def _quantize_parts(files: dict[str, Path], names: dict[str, str], out: Path, plan: dict[str, str | None],
                    feeds: dict[str, list[dict]], device: str, options: dict[str, Any]) -> dict[str, Any]:
    """:func:`edgeai.quantize` each file into ``out`` by ``plan`` (judged later, by generation:
    ``force=True``); a file whose mode is None is copied unchanged (FP32)."""
    calibration = options.pop("calibration", None)
    options.setdefault("latency", False)  # one forward's latency says little here; generation is timed instead
    parts: dict[str, Any] = {}
    for role, path in files.items():
        mode = plan[role]
        if mode is None:
            shutil.copyfile(path, out / names[role])
            parts[role] = _kept(path, out / names[role], device)
            continue
        # Weight-only modes are data-free unless the user gave calibration data (then AWQ / GPTQ).
        calib = calibration if mode in WEIGHT_ONLY else (calibration or feeds[role])
        parts[role] = quantize(path, out / names[role], mode=mode, device=device, force=True,
                               calibration=calib, eval_inputs=feeds[role], **options)
    return parts


#: interleaved timing rounds behind a decoder's speed decision (a t-interval over 5 per-round ratios)
SPEED_ROUNDS = 5


def _rates(src: Path, targets: dict[str, Path], prompts: list[np.ndarray] | None, judge: dict[str, Any],
           on_task: dict[str, Any] | None) -> dict[str, Any]:
    """Interleaved timing of FP32 and the passing candidates: the task pipeline on its data, a folder's
    whole generation (encoder included), or a decoder file's decode steps."""
    models = {"fp32": src, **targets}
    if on_task is not None:
        return task_rates(models, on_task["data"], task=on_task["task"], device=judge["device"], rounds=SPEED_ROUNDS)
    return decode_rates(models, prompts[0], judge["max_new_tokens"], device=judge["device"],
                        end_to_end=src.is_dir(), rounds=SPEED_ROUNDS)


def _auto(src: Path, files: dict[str, Path], names: dict[str, str], work: Path, feeds: dict[str, list[dict]],
          prompts: list[np.ndarray] | None, judge: dict[str, Any], on_task: dict[str, Any] | None,
          on_ppl: dict[str, Any] | None, options: dict[str, Any]) -> tuple[Any, ...]:
    """Try each candidate, judge it (generation, task), time the passing ones; see :func:`quantize_generation`."""
    min_speedup = float(options.pop("min_speedup", 1.0))
    candidates = list(options.pop("candidates", FOLDER_CANDIDATES if src.is_dir() else AUTO_CANDIDATES))
    tried: list[dict[str, Any]] = []
    passing: list[tuple[str, Path, dict[str, Any], tuple[Any, Any, Any]]] = []
    for name in candidates:
        out = work / name.replace(":", "-")
        out.mkdir()
        row: dict[str, Any] = {"name": name, "passed": False, "error": None}
        try:
            plan = candidate_plan(name, list(files))
            row["modes"] = {role: mode or "fp32" for role, mode in plan.items()}
            parts = _quantize_parts(files, names, out, plan, feeds, judge["device"], dict(options))
            target = out if src.is_dir() else out / names["decoder"]
            parity, report, ppl = _judge(src, target, prompts, judge, on_task, on_ppl)
            passed = all(v.passed for v in (parity, report, ppl) if v is not None)
            row.update(passed=passed, size=sum(p.size_after for p in parts.values()))
            if parity is not None:
                row.update(token_agreement=round(parity.token_agreement, 4),
                           worst_cosine=round(parity.worst_cosine, 6))
            if report is not None:
                row["task"] = _task_row(report)
            if ppl is not None:
                row["perplexity"] = ppl.to_dict()
            if passed:
                passing.append((name, out, parts, (parity, report, ppl)))
        except EdgeAIError as e:
            row["error"] = str(e)[:300]
        tried.append(row)
    notes: list[str] = []
    chosen = None
    if passing:
        rates = _rates(src, {name: (out if src.is_dir() else out / names["decoder"]) for name, out, _, _ in passing},
                       prompts, judge, on_task)
        # The same gate as auto on one graph: a candidate is faster only when the lower bound of the
        # 95% interval over per-round ratios clears min_speedup (min_speedup <= 0: fastest passing).
        decisions = {p[0]: decide(rates["ratios"][p[0]], min_speedup) for p in passing
                     if min_speedup > 0 and rates["ratios"][p[0]]}  # no ratio: a run that generated nothing
        for row in tried:
            if row["name"] in rates["speedup"]:
                row.update(tokens_per_s=rates["tokens_per_s"][row["name"]], speedup=rates["speedup"][row["name"]])
                if row["name"] in decisions:
                    row["speed_decision"] = decisions[row["name"]].to_dict()
        timed = f"{rates['timed']}, {rates['rounds']} interleaved rounds on {judge['device']}"
        fast = [p for p in passing if min_speedup <= 0 or (p[0] in decisions and decisions[p[0]].faster)]
        if fast:
            chosen = max(fast, key=lambda p: rates["speedup"][p[0]])
            why = decisions[chosen[0]].reason() if chosen[0] in decisions else f"{rates['speedup'][chosen[0]]}x"
            notes.append(f"auto chose {chosen[0]}: {why} ({timed})")
        else:
            told = "; ".join(f"{n}: {d.reason()}" for n, d in decisions.items())
            notes.append(f"no passing candidate was measured faster than FP32 (lower bound >= {min_speedup}x; "
                         f"{timed}): FP32 kept; {told}")
    else:
        what = "generation and the task" if on_task is not None and prompts is not None else \
            "the task" if on_task is not None else "generation"
        if on_ppl is not None:
            what += " and perplexity"
        notes.append(f"no candidate kept {what} within tolerance: FP32 kept")
    if chosen is None:
        keep = work / "fp32"
        keep.mkdir()
        for role, path in files.items():
            shutil.copyfile(path, keep / names[role])
        verdicts = _judge(src, keep if src.is_dir() else keep / names["decoder"], prompts, judge, on_task, on_ppl)
        parts = {role: _kept(path, keep / names[role], judge["device"]) for role, path in files.items()}
        staged, mode_used = keep, "fp32"
    else:
        mode_used, staged, parts, verdicts = chosen
    parts = {role: dataclasses.replace(p, mode=f"auto:{mode_used}", candidates=tuple(tried),
                                       notes=tuple(p.notes) + tuple(notes)) for role, p in parts.items()}
    return staged, parts, verdicts, mode_used


def _kept(src: Path, dst: Path, device: str) -> Any:
    size = src.stat().st_size
    return QuantizeResult(src, dst, "fp32", {}, size, size, None, device, 0.0)
