"""Language-model measurements of a decoder export, for judging and choosing quantized decoders:
perplexity on held-out token ids (and the verdict of a candidate's against the reference's), and
interleaved decode rates of several files (what ``auto`` times).

Both stand on :mod:`edgeai.generation`'s loop; :mod:`edgeai.generate_parity` uses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeai.errors import QuantizationError
from edgeai.generation import generate, load_generative, prefill_logits

__all__ = ["Perplexity", "PerplexityCheck", "decode_rates", "perplexity"]


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


@dataclass(frozen=True)
class PerplexityCheck:
    """The candidate's perplexity on held-out token ids against the reference's: at most
    ``max_increase`` (relative: 0.01 = 1%) higher passes."""

    reference: Perplexity
    candidate: Perplexity
    max_increase: float

    @property
    def increase(self) -> float:
        return self.candidate.value / self.reference.value - 1.0

    @property
    def passed(self) -> bool:
        return self.increase <= self.max_increase

    def verdict(self) -> str:
        return (f"{'PASS' if self.passed else 'FAIL'}: perplexity {self.candidate.value:.4f} vs {self.reference.value:.4f} "
                f"({self.increase:+.2%}, limit +{self.max_increase:.0%}) over {self.candidate.tokens} held-out tokens "
                f"in {self.candidate.windows} windows")

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reference": round(self.reference.value, 4),
                "candidate": round(self.candidate.value, 4), "increase": round(self.increase, 5),
                "max_increase": self.max_increase, "tokens": self.candidate.tokens, "windows": self.candidate.windows,
                "verdict": self.verdict()}


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


def decode_rates(models: dict[str, Any], prompt: Any, new_tokens: int = 16, *, device: str = "cpu",
                 rounds: int = 3, warmup: int = 1, end_to_end: bool = False) -> dict[str, Any]:
    """Greedy decode tokens/s of several models, measured interleaved (each round runs every model in
    turn, so load on the machine hits all alike); speed-up of each over the first, median of per-round
    ratios (``ratios``: the per-round ratios, for an interval). For choosing between configs
    (``auto``); benchmarks use :func:`benchmark_generation`.

    By default the rate is the decode steps after the first token (encoder and prompt step left
    out); ``end_to_end`` counts every new token over the whole generation's wall time, the
    encoder's run included (what an encoder-decoder's user waits for).
    """
    loaded = {name: load_generative(m, device) for name, m in models.items()}
    first = next(iter(loaded))
    per_round: dict[str, list[float]] = {name: [] for name in loaded}
    for r in range(warmup + rounds):
        for name, gm in loaded.items():
            g = generate(gm, prompt, max(new_tokens, 2), stop_on_eos=False)
            rate = (g.tokens.size / (g.total_ms / 1e3) if g.total_ms > 0 else 0.0) if end_to_end else \
                (g.tokens_per_s or 0.0)
            if r >= warmup:
                per_round[name].append(rate)
    per_ratio = {name: [c / b for c, b in zip(v, per_round[first], strict=True) if b > 0 and c > 0]
                 for name, v in per_round.items()}
    ratios = {name: float(np.median(v or [0.0])) for name, v in per_ratio.items()}
    return {"tokens_per_s": {n: round(float(np.median(v)), 1) for n, v in per_round.items()},
            "speedup": {n: round(v, 3) for n, v in ratios.items()}, "ratios": per_ratio, "rounds": rounds,
            "device": device,
            "new_tokens": new_tokens, "timed": "whole generation: encoder + every decoder step" if end_to_end
            else "decode steps after the first token"}
