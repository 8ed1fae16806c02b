"""Task metrics that can fail: each output has a kind, and each kind a metric that can tell apart
a candidate that changes the model's answer from one that does not.

Kinds (``KINDS``) and what judges them:

- ``classification``: scores over classes on the last axis; top-1 agreement (with a Wilson
  interval over the rows judged) and top-k agreement. Needs >= 2 classes.
- ``probability`` / ``scalar``: one value per element; max absolute difference, and agreement of
  the decision ``value >= threshold`` (default 0.5).
- ``regression``: max absolute error relative to the reference's scale (its std, else its range);
  never top-1, whatever its shape.
- ``embedding``: cosine per sample, nearest-neighbour agreement across the batch, and agreement
  of verification decisions (pair cosine >= a threshold) over every pair of samples.
- ``sequence``: token agreement (integer tokens, or the argmax of float scores); for transcripts,
  :func:`edgeai.transcripts.transcript_metric` gives the word error rate of candidate vs reference.
- ``boxes``: IoU per box, paired by position (``x1, y1, x2, y2`` on the last axis).
- ``hidden``: generic float tensors; cosine per sample plus max error relative to the reference's
  largest magnitude.

A metric that cannot fail on an output is never used for a verdict: the cosine of a one-element
vector is always 1, top-1 over fewer than 2 classes always agrees, and top-1 on a regression output
means nothing. Declared kinds (``"logits=classification"``) that ask for such a metric raise
:class:`MetricNotApplicable`; inferred kinds fall back to one that can fail, with the reason in the
result's notes. Samples run along axis 0 (a 1-D output is a batch of scalars).

Measurement layer: numpy (and the stdlib) only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

from edgeai.errors import MetricNotApplicable
from edgeai.kinds import ALIASES, KINDS, infer_kind, normalize_kind, parse_kinds

__all__ = ["ALIASES", "KINDS", "MetricNotApplicable", "infer_kind", "normalize_kind", "parse_kinds", "judge",
           "samples_needed", "wilson_interval"]

# Pass/fail limits per kind and metric; "min_*"/"*_agreement" must be reached, the others not exceeded.
# INT8-level defaults: loose enough for a faithful INT8 file, tight enough to catch a changed answer.
# Checked against real models (FP32 export vs onnxruntime dynamic INT8, on real inputs; issue 16):
# - probability 0.1: Silero's speech probability moved 0.84 under dynamic INT8 (and a move of 0.2
#   must fail); MTCNN O-Net INT8 moved 0.028; P-Net's 21k windows 0.11 (12 borderline flips at 0.5:
#   flagged, declare --threshold max_abs_diff=0.15 for dense maps if that is fine); FP32 <= 1e-6.
# - regression: was max error <= 5% of the reference std, which failed MTCNN INT8 box offsets that
#   moved < 1 px (0.12 and 0.36 of std: a max over many values against a small spread). Now RMS
#   error <= 10% of std (R^2 >= 0.99; INT8 0.016-0.077) and max error <= 10% of the range
#   (INT8 0.014-0.031; FP32 ~1e-6).
# - hidden: Whisper's encoder under dynamic INT8 keeps cosine 0.9955 (passes 0.995 alone) but its
#   max error is 0.90 of the largest value (3 of 4 transcripts changed): 10% catches it; FP32 6e-5.
# - embedding 0.99: Resemblyzer INT8 0.9990 with nearest neighbours unchanged.
DEFAULT_THRESHOLDS: dict[str, dict[str, float]] = {
    "classification": {"top1_agreement": 0.99},
    "probability": {"max_abs_diff": 0.1, "decision_agreement": 0.99},
    "scalar": {"max_abs_diff": 0.1, "decision_agreement": 0.99},
    "regression": {"relative_rms_error": 0.1, "relative_max_error": 0.1},
    "embedding": {"min_cosine": 0.99, "nn_agreement": 0.95, "verification_agreement": 0.95},
    "sequence": {"token_agreement": 0.99},
    "boxes": {"min_iou": 0.9},
    "hidden": {"min_cosine": 0.995, "relative_max_error": 0.1},
}
DEFAULT_OPTIONS: dict[str, Any] = {"decision_threshold": 0.5, "verification_threshold": 0.75, "top_k": 5,
                                   "confidence": 0.95}
_HIGHER_IS_BETTER = {"top1_agreement", "decision_agreement", "min_cosine", "nn_agreement",
                     "verification_agreement", "token_agreement", "min_iou"}


@dataclass(frozen=True)
class MetricResult:
    """One metric of one output: its value against its threshold, over ``samples`` units.

    ``samples`` counts what the value is a rate or extreme over (rows for top-1, pairs for
    verification, boxes for IoU); ``interval`` is the Wilson interval of a rate at ``confidence``.
    """

    kind: str
    metric: str
    value: float
    threshold: float
    passed: bool
    samples: int
    interval: tuple[float, float] | None = None
    confidence: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "metric": self.metric, "value": _clean(self.value), "threshold": self.threshold,
                "passed": self.passed, "samples": self.samples,
                "interval": None if self.interval is None else [_clean(v) for v in self.interval],
                "confidence": self.confidence, "details": {k: _clean(v) for k, v in self.details.items()}}

    def describe(self) -> str:
        cmp = ">=" if self.metric in _HIGHER_IS_BETTER else "<="
        ci = f" [{self.interval[0]:.3f}, {self.interval[1]:.3f}]" if self.interval else ""
        return (f"{self.metric} {self.value:.4g}{ci} {'meets' if self.passed else 'fails'} {cmp} {self.threshold:g} "
                f"over {self.samples}")


@dataclass(frozen=True)
class OutputJudgement:
    """Every metric of one output, the kind they judged and where it came from."""

    name: str
    kind: str
    kind_source: str  # "declared", or "inferred: <why>"
    results: tuple[MetricResult, ...]
    notes: tuple[str, ...] = ()  # fallbacks and metrics left out, with the reason

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "kind_source": self.kind_source, "passed": self.passed,
                "results": [r.to_dict() for r in self.results], "notes": list(self.notes)}


def _clean(v: Any) -> Any:
    if isinstance(v, (float, np.floating)):
        return None if not math.isfinite(v) else round(float(v), 6)
    return v


# --- statistics -------------------------------------------------------------------------------------

def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise MetricNotApplicable(f"confidence must be within (0, 1), e.g. 0.95; got {confidence}")
    return NormalDist().inv_cdf((1 + confidence) / 2)


def wilson_interval(successes: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a rate ``successes / n`` (n = 0: the uninformative (0, 1))."""
    if n <= 0:
        return 0.0, 1.0
    z, p = _z(confidence), successes / n
    den = 1 + z * z / n
    center = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, center - half), min(1.0, center + half)


def samples_needed(rate: float, tolerance: float, confidence: float = 0.95, limit: int = 10_000_000) -> int | None:
    """Samples needed before an observed agreement ``rate`` can show ``tolerance``: the smallest n
    whose Wilson lower bound at ``rate`` clears ``tolerance`` (None if it never does: rate <= tolerance).

    Example: ``samples_needed(1.0, 0.99)`` is 381: with 16 samples all agreeing, the lower bound is
    only 0.81, so "99% top-1 on 16 samples" rests on too little data.
    """
    if rate <= tolerance:
        return None
    lo, hi = 1, 1
    while wilson_interval(rate * hi, hi, confidence)[0] < tolerance:
        hi *= 2
        if hi > limit:
            return None
    while lo < hi:
        mid = (lo + hi) // 2
        if wilson_interval(rate * mid, mid, confidence)[0] >= tolerance:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _rate_result(kind: str, metric: str, hits: int, n: int, threshold: float, confidence: float,
                 **details: Any) -> MetricResult:
    rate = hits / n if n else float("nan")
    need = samples_needed(1.0, threshold, confidence) if threshold < 1 else None
    extra = {"agreeing": hits, **details}
    if need is not None and n < need:
        extra["samples_needed"] = need  # fewer than this cannot show the threshold even at 100%
    return MetricResult(kind, metric, rate, threshold, bool(n) and rate >= threshold, n,
                        wilson_interval(hits, n, confidence), confidence, extra)


METRICS: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in DEFAULT_THRESHOLDS.items()}


def require_metric(kind: str, metric: str, sample_shape: Sequence[int] = ()) -> None:
    """Refuse a metric that cannot fail on an output of ``kind`` whose samples have ``sample_shape``
    (the shape after the batch axis): top-1 on anything but classification, or over < 2 classes;
    cosine of one-element vectors. Raises :class:`MetricNotApplicable` saying what to use instead."""
    kind = normalize_kind(kind)
    if metric not in METRICS[kind]:
        why = {"top1_agreement": f"top-1 means nothing for a {kind} output (its argmax is not a class)",
               "min_cosine": f"cosine is not a {kind} metric"}.get(metric, f"{metric} is not a {kind} metric")
        raise MetricNotApplicable(f"{why}; {kind} is judged by {', '.join(METRICS[kind])}")
    size = int(np.prod(sample_shape)) if len(sample_shape) else 1
    if metric == "top1_agreement" and (sample_shape[-1] if len(sample_shape) else 1) < 2:
        raise MetricNotApplicable("top-1 over fewer than 2 classes cannot fail; declare probability or scalar")
    if metric == "min_cosine" and size < 2:
        raise MetricNotApplicable("the cosine of a one-element vector is always 1 (it cannot fail); "
                                  "use probability, scalar or regression")


# --- metrics per kind --------------------------------------------------------------------------------

def _arrays(values: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    return [np.asarray(values)] if isinstance(values, np.ndarray) else [np.asarray(v) for v in values]


def _per_sample(values: list[np.ndarray]) -> np.ndarray:
    """[samples, features] in float64: axis 0 of each array is its batch (0-d: one sample)."""
    rows = [a.reshape(1, 1) if a.ndim == 0 else a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(-1, 1)
            for a in values]
    if not rows:
        return np.zeros((0, 1))
    width = max(r.shape[1] for r in rows)
    # Feeds of different lengths (a sequence axis that varies between feeds) give rows of different
    # widths: pad with zeros on both sides alike, which changes neither a cosine nor a difference.
    return np.concatenate([np.pad(np.asarray(r, np.float64), ((0, 0), (0, width - r.shape[1]))) for r in rows])


def _pairs(refs: list[np.ndarray], cands: list[np.ndarray], name: str) -> None:
    if len(refs) != len(cands):
        raise MetricNotApplicable(f"output {name!r}: {len(refs)} reference arrays vs {len(cands)} candidate arrays")
    for r, c in zip(refs, cands, strict=True):
        if r.shape != c.shape:
            raise MetricNotApplicable(f"output {name!r}: candidate shape {list(c.shape)} != reference {list(r.shape)}")


def _cosines(r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Cosine of each row pair; rows scaled by their largest magnitude first (no overflow), zero rows
    equal only to zero rows."""
    scale = np.maximum(np.abs(r).max(axis=1, keepdims=True, initial=0.0), np.abs(c).max(axis=1, keepdims=True,
                                                                                        initial=0.0))
    scale[scale == 0] = 1.0
    r, c = r / scale, c / scale
    nr, nc = np.linalg.norm(r, axis=1), np.linalg.norm(c, axis=1)
    den = nr * nc
    cos = np.where(den > 0, (r * c).sum(axis=1) / np.where(den > 0, den, 1), np.where(nr == nc, 1.0, 0.0))
    return np.clip(cos, -1, 1)


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1)


def classification_metrics(ref: list[np.ndarray], cand: list[np.ndarray], th: Mapping[str, float],
                           opts: Mapping[str, Any]) -> list[MetricResult]:
    classes = ref[0].shape[-1] if ref[0].ndim else 1
    if classes < 2:
        raise MetricNotApplicable(f"top-1 over {classes} class cannot fail (argmax is always 0); "
                                  "declare this output probability or scalar")
    r = np.concatenate([a.reshape(-1, classes) for a in ref]).astype(np.float64)
    c = np.nan_to_num(np.concatenate([a.reshape(-1, classes) for a in cand]).astype(np.float64), nan=-np.inf)
    ra = r.argmax(-1)
    k = min(int(opts["top_k"]), classes)
    topk = np.argpartition(-c, k - 1, axis=-1)[:, :k]
    topk_hits = int((topk == ra[:, None]).any(-1).sum())
    return [_rate_result("classification", "top1_agreement", int((ra == c.argmax(-1)).sum()), len(ra),
                         th["top1_agreement"], opts["confidence"], classes=classes, top_k=k,
                         topk_agreement=topk_hits / len(ra) if len(ra) else None)]


def decision_metrics(kind: str, ref: list[np.ndarray], cand: list[np.ndarray], th: Mapping[str, float],
                     opts: Mapping[str, Any]) -> list[MetricResult]:
    r = np.concatenate([a.ravel() for a in ref]).astype(np.float64)
    c = np.concatenate([a.ravel() for a in cand]).astype(np.float64)
    diff = np.abs(r - c)
    worst = float(np.nan_to_num(diff, nan=np.inf).max()) if diff.size else 0.0
    cut = float(opts["decision_threshold"])
    hits = int(((r >= cut) == (c >= cut)).sum())
    return [MetricResult(kind, "max_abs_diff", worst, th["max_abs_diff"], worst <= th["max_abs_diff"], r.size,
                         details={"mean_abs_diff": float(diff.mean()) if diff.size else 0.0}),
            _rate_result(kind, "decision_agreement", hits, r.size, th["decision_agreement"], opts["confidence"],
                         decision_threshold=cut, reference_positive=int((r >= cut).sum()))]


def regression_metrics(ref: list[np.ndarray], cand: list[np.ndarray], th: Mapping[str, float],
                       opts: Mapping[str, Any]) -> list[MetricResult]:
    """RMS error over the reference's std (1 - R^2 of the candidate as a predictor of the reference
    is its square), and the largest error over the reference's range (max - min)."""
    r = np.concatenate([a.ravel() for a in ref]).astype(np.float64)
    c = np.concatenate([a.ravel() for a in cand]).astype(np.float64)
    diff = np.nan_to_num(np.abs(r - c), nan=np.inf)
    std, span = float(r.std()), float(r.max() - r.min()) if r.size else 0.0
    peak = float(np.abs(r).max(initial=0))
    # A constant reference has no spread: fall back to its magnitude, then to exact equality.
    spread, basis = (span, "range") if span > 0 else (peak, "max_abs")
    worst = float(diff.max()) if diff.size else 0.0
    rms = float(np.sqrt(np.mean(diff ** 2))) if diff.size else 0.0
    rel = worst / spread if spread > 0 else (0.0 if worst == 0 else math.inf)
    rms_scale = std if std > 0 else spread
    rel_rms = rms / rms_scale if rms_scale > 0 else (0.0 if rms == 0 else math.inf)
    return [MetricResult("regression", "relative_rms_error", rel_rms, th["relative_rms_error"],
                         rel_rms <= th["relative_rms_error"], r.size,
                         details={"rms_error": rms, "reference_std": std}),
            MetricResult("regression", "relative_max_error", rel, th["relative_max_error"],
                         rel <= th["relative_max_error"], r.size,
                         details={"max_abs_diff": worst, "scale": spread, "scale_basis": basis})]


def embedding_metrics(ref: list[np.ndarray], cand: list[np.ndarray], th: Mapping[str, float],
                      opts: Mapping[str, Any], notes: list[str]) -> list[MetricResult]:
    r, c = _per_sample(ref), _per_sample(cand)
    if r.shape[1] < 2:
        raise MetricNotApplicable("the cosine of a one-element vector is always 1 (it cannot fail); "
                                  "declare this output probability, scalar or regression")
    cos = _cosines(r, c)
    out = [MetricResult("embedding", "min_cosine", float(cos.min()), th["min_cosine"],
                        float(cos.min()) >= th["min_cosine"], len(cos), details={"mean_cosine": float(cos.mean())})]
    n = len(r)
    if n < 3:
        notes.append(f"nearest-neighbour and verification agreement need >= 3 samples; got {n}")
        return out
    sr, sc = _unit(r) @ _unit(r).T, _unit(c) @ _unit(c).T
    np.fill_diagonal(sr, -np.inf)
    np.fill_diagonal(sc, -np.inf)
    out.append(_rate_result("embedding", "nn_agreement", int((sr.argmax(1) == sc.argmax(1)).sum()), n,
                            th["nn_agreement"], opts["confidence"]))
    iu = np.triu_indices(n, 1)
    cut = float(opts["verification_threshold"])
    same_r, same_c = sr[iu] >= cut, sc[iu] >= cut
    out.append(_rate_result("embedding", "verification_agreement", int((same_r == same_c).sum()), len(iu[0]),
                            th["verification_agreement"], opts["confidence"], verification_threshold=cut,
                            reference_same=int(same_r.sum())))
    return out


def sequence_metrics(ref: list[np.ndarray], cand: list[np.ndarray], th: Mapping[str, float],
                     opts: Mapping[str, Any]) -> list[MetricResult]:
    def tokens(a: np.ndarray) -> np.ndarray:
        return a.argmax(-1) if a.dtype.kind == "f" and a.ndim >= 1 else a

    rt, ct = [tokens(a).ravel() for a in ref], [tokens(a).ravel() for a in cand]
    hits = sum(int((x == y).sum()) for x, y in zip(rt, ct, strict=True))
    n = sum(x.size for x in rt)
    exact = sum(bool(np.array_equal(x, y)) for x, y in zip(rt, ct, strict=True))
    return [_rate_result("sequence", "token_agreement", hits, n, th["token_agreement"], opts["confidence"],
                         identical_arrays=exact, arrays=len(rt))]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of paired boxes ``[..., 4]`` as ``x1, y1, x2, y2`` (two empty boxes: 1 if equal, else 0)."""
    a, b = a.reshape(-1, 4).astype(np.float64), b.reshape(-1, 4).astype(np.float64)

    def area(x: np.ndarray) -> np.ndarray:
        return np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)

    w = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    h = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter, union = w * h, area(a) + area(b) - w * h
    same = np.all(a == b, axis=1).astype(np.float64)
    return np.where(union > 0, inter / np.where(union > 0, union, 1), same)


def box_metrics(ref: list[np.ndarray], cand: list[np.ndarray], th: Mapping[str, float],
                opts: Mapping[str, Any]) -> list[MetricResult]:
    if ref[0].ndim == 0 or ref[0].shape[-1] != 4:
        raise MetricNotApplicable(f"boxes need x1, y1, x2, y2 on the last axis; got shape {list(ref[0].shape)}")
    iou = np.concatenate([box_iou(r, c) for r, c in zip(ref, cand, strict=True)])
    worst = float(iou.min()) if iou.size else 1.0
    return [MetricResult("boxes", "min_iou", worst, th["min_iou"], worst >= th["min_iou"], iou.size,
                         details={"mean_iou": float(iou.mean()) if iou.size else 1.0,
                                  "iou_below_0.5": int((iou < 0.5).sum())})]


def hidden_metrics(ref: list[np.ndarray], cand: list[np.ndarray], th: Mapping[str, float],
                   opts: Mapping[str, Any], notes: list[str]) -> list[MetricResult]:
    r, c = _per_sample(ref), _per_sample(cand)
    out = []
    if r.shape[1] >= 2:
        cos = _cosines(r, np.nan_to_num(c))
        out.append(MetricResult("hidden", "min_cosine", float(cos.min()), th["min_cosine"],
                                float(cos.min()) >= th["min_cosine"], len(cos),
                                details={"mean_cosine": float(cos.mean())}))
    else:
        notes.append("cosine left out: one value per sample, where cosine is always 1")
    diff = np.nan_to_num(np.abs(r - c), nan=np.inf)
    peak = float(np.abs(r).max(initial=0.0))
    worst = float(diff.max(initial=0.0))
    rel = worst / peak if peak > 0 else (0.0 if worst == 0 else math.inf)
    out.append(MetricResult("hidden", "relative_max_error", rel, th["relative_max_error"],
                            rel <= th["relative_max_error"], r.size,
                            details={"max_abs_diff": worst, "reference_max_abs": peak}))
    return out


def judge(name: str, reference: np.ndarray | Sequence[np.ndarray], candidate: np.ndarray | Sequence[np.ndarray],
          kind: str | None = None, *, task: str | None = None, thresholds: Mapping[str, float] | None = None,
          options: Mapping[str, Any] | None = None) -> OutputJudgement:
    """Judge one output (arrays per feed, matched in order) by the metrics of its kind.

    Args:
        kind: declared kind (a metric that cannot fail for it raises); None infers one from the
            name, shape, dtype and ``task``, falling back (with a note) where a metric cannot fail.
        thresholds: limits overriding :data:`DEFAULT_THRESHOLDS` for this kind, by metric name.
        options: ``decision_threshold``, ``verification_threshold``, ``top_k``, ``confidence``.

    Raises:
        MetricNotApplicable: unknown kind or option, mismatched arrays, or a declared kind whose
            metric cannot fail on this output.
    """
    refs, cands = _arrays(reference), _arrays(candidate)
    if not refs:
        raise MetricNotApplicable(f"output {name!r}: no arrays to judge")
    _pairs(refs, cands, name)
    opts = {**DEFAULT_OPTIONS, **dict(options or {})}
    unknown = sorted(set(opts) - set(DEFAULT_OPTIONS))
    if unknown:
        raise MetricNotApplicable(f"unknown metric option(s) {unknown}; use {sorted(DEFAULT_OPTIONS)}")
    notes: list[str] = []
    if kind is not None:
        kind, source = normalize_kind(kind), "declared"
    else:
        kind, why = infer_kind(name, refs[0].shape, refs[0].dtype, task)
        source = f"inferred: {why}"
    try:
        results = _measure(kind, refs, cands, thresholds, opts, notes)
    except MetricNotApplicable as e:
        if source == "declared":
            raise MetricNotApplicable(f"output {name!r} declared {kind}: {e}") from e
        fallback = "regression" if refs[0].dtype.kind == "f" else "sequence"
        notes.append(f"{kind} not applicable ({e}); judged as {fallback}")
        kind, source = fallback, f"{source}; fell back to {fallback}"
        results = _measure(kind, refs, cands, thresholds, opts, notes)
    return OutputJudgement(name, kind, source, tuple(results), tuple(notes))


def _measure(kind: str, refs: list[np.ndarray], cands: list[np.ndarray], thresholds: Mapping[str, float] | None,
             opts: Mapping[str, Any], notes: list[str]) -> list[MetricResult]:
    th = dict(DEFAULT_THRESHOLDS[kind])
    known = {m for ms in METRICS.values() for m in ms} | {"word_error_rate"}
    limits = dict(thresholds or {})
    # "metric" sets the limit for every kind that has the metric; "kind.metric" for that kind only, and wins.
    for key, value in sorted(limits.items(), key=lambda kv: "." in kv[0]):
        owner, _, metric = key.rpartition(".")
        if metric not in known or (owner and owner not in DEFAULT_THRESHOLDS):
            raise MetricNotApplicable(f"unknown metric {key!r} in thresholds; use one of {sorted(known)}, "
                                      "or KIND.METRIC for one kind's limit (hidden.relative_max_error)")
        if metric in th and owner in ("", kind):  # other kinds' limits apply to the outputs of those kinds
            th[metric] = float(value)
    if kind == "classification":
        return classification_metrics(refs, cands, th, opts)
    if kind in ("probability", "scalar"):
        return decision_metrics(kind, refs, cands, th, opts)
    if kind == "regression":
        return regression_metrics(refs, cands, th, opts)
    if kind == "embedding":
        return embedding_metrics(refs, cands, th, opts, notes)
    if kind == "sequence":
        return sequence_metrics(refs, cands, th, opts)
    if kind == "boxes":
        return box_metrics(refs, cands, th, opts)
    return hidden_metrics(refs, cands, th, opts, notes)
