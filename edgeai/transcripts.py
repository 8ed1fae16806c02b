"""Word error rate of transcripts: how a speech model's answer changed, in words.

For an encoder-decoder (Whisper), token agreement of one forward pass hides what users see: after
greedy decoding with the candidate's encoder and decoder, "jump over the lazy dog" may become
"stump, silver-veille dog". The word error rate of the candidate's transcripts against the
reference model's transcripts is the task metric there (kind ``sequence``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from edgeai.metrics import MetricNotApplicable, MetricResult


def edit_distance(a: Sequence[Any], b: Sequence[Any]) -> int:
    """Levenshtein distance between two sequences (insertions, deletions, substitutions)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def _words(text: str, normalize: bool) -> list[str]:
    if normalize:
        text = re.sub(r"[^\w\s']", " ", text.lower())
    return text.split()


def word_error_rate(reference: str | Sequence[str], hypothesis: str | Sequence[str], *,
                    normalize: bool = True) -> float:
    """Word-level Levenshtein distance over the reference's word count (corpus WER for lists).

    ``normalize`` lowercases and drops punctuation first ("Dog." equals "dog"). An empty reference
    gives the hypothesis' word count (0.0 when both are empty).
    """
    refs = [reference] if isinstance(reference, str) else list(reference)
    hyps = [hypothesis] if isinstance(hypothesis, str) else list(hypothesis)
    if len(refs) != len(hyps):
        raise MetricNotApplicable(f"got {len(refs)} reference and {len(hyps)} candidate transcripts; pair them up")
    errors = words = 0
    for r, h in zip(refs, hyps, strict=True):
        rw, hw = _words(r, normalize), _words(h, normalize)
        errors += edit_distance(rw, hw)
        words += len(rw)
    return errors / max(words, 1)


def transcript_metric(reference: Sequence[str], candidate: Sequence[str], *, max_wer: float = 0.0,
                      normalize: bool = True) -> MetricResult:
    """Word error rate of the candidate's transcripts against the reference model's (kind sequence)."""
    wer = word_error_rate(reference, candidate, normalize=normalize)
    same = sum(_words(r, normalize) == _words(c, normalize) for r, c in zip(reference, candidate, strict=True))
    return MetricResult("sequence", "word_error_rate", wer, max_wer, wer <= max_wer, len(reference),
                        details={"identical_transcripts": same,
                                 "reference_words": sum(len(_words(r, normalize)) for r in reference)})
