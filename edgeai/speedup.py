"""Speed decisions that survive noise: per-round ratios, an interval over them, and a verdict.

One direction, everywhere: **speed-up = baseline latency / candidate latency** (above 1: the
candidate is faster). A baseline and a candidate are timed *interleaved* in rounds (each round
runs both, alternating which goes first), so load on a shared machine lands on both alike; each
round gives one ratio of the two per-round medians. The estimate is the geometric mean of those
ratios with a confidence interval over rounds (Student's t over log ratios, or a bootstrap with a
fixed seed), and a decision against ``min_speedup`` is made on the interval, never on one number:

- ``faster``: the lower bound clears ``min_speedup``;
- ``not_faster``: the upper bound is below it;
- ``undecided``: the interval straddles it (more rounds may settle it: ``needs_more_rounds``).

The latencies reported beside the ratio are the geometric means of the per-round medians, so the
printed ratio is exactly their quotient (a "0.899x (p50 0.2413 vs 0.2315 ms)" cannot happen).

Foundation layer: stdlib and numpy only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from edgeai.errors import EdgeAIError

FASTER, NOT_FASTER, UNDECIDED = "faster", "not_faster", "undecided"
METHODS = ("t", "bootstrap")
BOOTSTRAP_RESAMPLES = 4000


@dataclass(frozen=True)
class SpeedupEstimate:
    """Speed-up of a candidate over a baseline from interleaved rounds, with its interval.

    ``speedup`` is the geometric mean of per-round ratios (baseline / candidate); ``low``/``high``
    bound it at ``confidence``. With latencies given, ``baseline_ms`` / ``candidate_ms`` are the
    geometric means of the per-round medians and ``speedup == baseline_ms / candidate_ms``.
    """

    speedup: float
    low: float
    high: float
    median_ratio: float
    rounds: int
    confidence: float
    method: str
    ratios: tuple[float, ...]
    baseline_ms: float | None = None
    candidate_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"speedup": _r(self.speedup), "low": _r(self.low), "high": _r(self.high),
                "median_ratio": _r(self.median_ratio), "rounds": self.rounds, "confidence": self.confidence,
                "method": self.method, "direction": "baseline_ms / candidate_ms",
                "baseline_ms": _r(self.baseline_ms, 5), "candidate_ms": _r(self.candidate_ms, 5),
                "ratios": [_r(r) for r in self.ratios]}

    def describe(self) -> str:
        """``1.052x [0.981, 1.128] (95% over 5 rounds; p50 0.2413 vs 0.2294 ms)``."""
        text = (f"{self.speedup:.3f}x [{_fmt(self.low)}, {_fmt(self.high)}] "
                f"({self.confidence:.0%} over {self.rounds} round{'s' if self.rounds != 1 else ''}")
        if self.baseline_ms is not None and self.candidate_ms is not None:
            text += f"; p50 {self.baseline_ms:.4g} vs {self.candidate_ms:.4g} ms"
        return text + ")"


@dataclass(frozen=True)
class SpeedDecision:
    """Whether a candidate is at least ``min_speedup`` times faster, decided on an interval.

    ``stopped_by`` is set by :func:`measure_until_decided`: ``decided``, ``max_rounds`` or
    ``time_budget``. ``rounds_needed`` estimates how many rounds in all would settle an undecided
    case at the noise seen so far (None when decided, or when the estimate equals the threshold).
    """

    outcome: str
    min_speedup: float
    estimate: SpeedupEstimate
    needs_more_rounds: bool
    rounds_needed: int | None = None
    stopped_by: str | None = None

    @property
    def faster(self) -> bool:
        return self.outcome == FASTER

    def reason(self) -> str:
        """One line saying what was decided and on what interval."""
        e = self.estimate
        if self.outcome == FASTER:
            return f"faster: {e.describe()}; the lower bound clears {self.min_speedup}x"
        if self.outcome == NOT_FASTER:
            return f"not faster: {e.describe()}; the upper bound is below {self.min_speedup}x"
        tail = f"; about {self.rounds_needed} rounds would settle it" if self.rounds_needed else ""
        stop = {"max_rounds": " (round limit reached)", "time_budget": " (time budget spent)"}.get(
            self.stopped_by or "", "")
        return f"undecided within noise{stop}: {e.describe()} straddles {self.min_speedup}x{tail}"

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "min_speedup": self.min_speedup, "needs_more_rounds": self.needs_more_rounds,
                "rounds_needed": self.rounds_needed, "stopped_by": self.stopped_by, "reason": self.reason(),
                "estimate": self.estimate.to_dict()}


def _r(v: float | None, digits: int = 4) -> float | None:
    return None if v is None or not math.isfinite(v) else round(v, digits)


def _fmt(v: float) -> str:
    return f"{v:.3f}" if math.isfinite(v) else ("inf" if v > 0 else "0")


def _positive(values: Sequence[float], what: str) -> np.ndarray:
    arr = np.asarray(list(values), dtype=np.float64).ravel()
    if arr.size == 0:
        raise EdgeAIError(f"no {what} given: need at least one round")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise EdgeAIError(f"{what} must be finite and positive; got {arr.tolist()[:8]}")
    return arr


def ratios_from_rounds(baseline_ms: Sequence[float], candidate_ms: Sequence[float]) -> list[float]:
    """Per-round speed-ups ``baseline / candidate`` from per-round latencies (e.g. per-round p50s)."""
    base, cand = _positive(baseline_ms, "baseline latencies"), _positive(candidate_ms, "candidate latencies")
    if base.size != cand.size:
        raise EdgeAIError(f"interleaved rounds pair up: got {base.size} baseline and {cand.size} candidate rounds")
    return (base / cand).tolist()


def speedup_interval(ratios: Sequence[float], *, confidence: float = 0.95, method: str = "t", seed: int = 0,
                     baseline_ms: Sequence[float] | None = None,
                     candidate_ms: Sequence[float] | None = None) -> SpeedupEstimate:
    """Geometric-mean speed-up of per-round ratios and its ``confidence`` interval.

    Args:
        ratios: per-round ``baseline / candidate`` latency ratios.
        method: ``t`` (Student's t over log ratios: needs >= 2 rounds, else the interval is
            (0, inf)) or ``bootstrap`` (percentiles of resampled mean log ratios, fixed ``seed``).
        baseline_ms / candidate_ms: the per-round latencies the ratios came from, to report
            latencies consistent with the ratio (pass them through :func:`estimate_from_rounds`).

    Raises:
        EdgeAIError: no rounds, a ratio that is not finite and positive, a bad confidence or method.
    """
    if not 0 < confidence < 1:
        raise EdgeAIError(f"confidence must be within (0, 1), e.g. 0.95; got {confidence}")
    if method not in METHODS:
        raise EdgeAIError(f"unknown interval method {method!r}; use one of {', '.join(METHODS)}")
    r = _positive(ratios, "speed-up ratios")
    logs = np.log(r)
    n, mean = logs.size, float(logs.mean())
    if n < 2:
        low, high = 0.0, math.inf
    elif method == "t":
        half = t_quantile((1 + confidence) / 2, n - 1) * float(logs.std(ddof=1)) / math.sqrt(n)
        low, high = math.exp(mean - half), math.exp(mean + half)
    else:
        rng = np.random.default_rng(seed)
        means = logs[rng.integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))].mean(axis=1)
        lo_q, hi_q = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
        low, high = math.exp(float(lo_q)), math.exp(float(hi_q))
    base_ms = cand_ms = None
    if baseline_ms is not None and candidate_ms is not None:
        base_ms = float(np.exp(np.log(_positive(baseline_ms, "baseline latencies")).mean()))
        cand_ms = float(np.exp(np.log(_positive(candidate_ms, "candidate latencies")).mean()))
    return SpeedupEstimate(math.exp(mean), low, high, float(np.median(r)), n, confidence, method,
                           tuple(float(x) for x in r), base_ms, cand_ms)


def estimate_from_rounds(baseline_ms: Sequence[float], candidate_ms: Sequence[float], **options: Any) -> SpeedupEstimate:
    """:func:`speedup_interval` from per-round latencies of the baseline and the candidate."""
    ratios = ratios_from_rounds(baseline_ms, candidate_ms)
    return speedup_interval(ratios, baseline_ms=baseline_ms, candidate_ms=candidate_ms, **options)


def decide_estimate(estimate: SpeedupEstimate, min_speedup: float) -> SpeedDecision:
    """The decision for an estimate already made (see the module doc for the three outcomes)."""
    if not (math.isfinite(min_speedup) and min_speedup > 0):
        raise EdgeAIError(f"min_speedup must be a positive number like 1.05; got {min_speedup}")
    if estimate.low >= min_speedup and estimate.rounds >= 2:
        return SpeedDecision(FASTER, min_speedup, estimate, False)
    if estimate.high < min_speedup and estimate.rounds >= 2:
        return SpeedDecision(NOT_FASTER, min_speedup, estimate, False)
    return SpeedDecision(UNDECIDED, min_speedup, estimate, True, _rounds_needed(estimate, min_speedup))


def decide(ratios: Sequence[float], min_speedup: float, *, confidence: float = 0.95, method: str = "t",
           seed: int = 0) -> SpeedDecision:
    """Is the candidate at least ``min_speedup`` times faster? Decided on the interval of ``ratios``.

    Example:
        >>> decide([1.31, 1.28, 1.35, 1.30], 1.05).outcome
        'faster'
    """
    return decide_estimate(speedup_interval(ratios, confidence=confidence, method=method, seed=seed), min_speedup)


def _rounds_needed(e: SpeedupEstimate, min_speedup: float) -> int | None:
    """Rounds at which the t half-width (at the spread seen) would shrink past the gap to the threshold."""
    if e.rounds < 2:
        return None
    logs = np.log(np.asarray(e.ratios))
    gap, sd = abs(float(logs.mean()) - math.log(min_speedup)), float(logs.std(ddof=1))
    if gap == 0.0:
        return None
    n = e.rounds
    while n < 100_000:
        n = max(n + 1, math.ceil((t_quantile((1 + e.confidence) / 2, n - 1) * sd / gap) ** 2))
        if t_quantile((1 + e.confidence) / 2, n - 1) * sd / math.sqrt(n) < gap:
            return n
    return None


def measure_until_decided(run_round: Callable[[], tuple[float, float]], min_speedup: float, *, min_rounds: int = 5,
                          max_rounds: int = 40, time_budget_s: float | None = None, confidence: float = 0.95,
                          method: str = "t", clock: Callable[[], float] = time.monotonic) -> SpeedDecision:
    """Run interleaved rounds until the decision is made, ``max_rounds`` are run, or time runs out.

    Args:
        run_round: runs one interleaved round and returns ``(baseline_ms, candidate_ms)``, e.g. the
            medians of a few timed runs of each (alternate which one goes first between rounds).
        min_rounds: rounds always run before deciding (at least 2).
        time_budget_s: wall-clock budget for all rounds; checked between rounds, and never stops
            before ``min_rounds``.

    Returns:
        The last :class:`SpeedDecision`; ``stopped_by`` says why it stopped. An ``undecided``
        result is "undecided within noise" with its interval: the caller keeps the baseline.
    """
    if min_rounds < 2 or max_rounds < min_rounds:
        raise EdgeAIError(f"need 2 <= min_rounds <= max_rounds; got min_rounds={min_rounds}, max_rounds={max_rounds}")
    if time_budget_s is not None and time_budget_s <= 0:
        raise EdgeAIError(f"time_budget_s must be positive; got {time_budget_s}")
    start = clock()
    base: list[float] = []
    cand: list[float] = []
    while True:
        b, c = run_round()
        base.append(float(b))
        cand.append(float(c))
        if len(base) < min_rounds:
            continue
        decision = decide_estimate(estimate_from_rounds(base, cand, confidence=confidence, method=method),
                                   min_speedup)
        stopped = ("decided" if not decision.needs_more_rounds else "max_rounds" if len(base) >= max_rounds
                   else "time_budget" if time_budget_s is not None and clock() - start >= time_budget_s else None)
        if stopped is not None:
            return replace(decision, stopped_by=stopped)


# --- Student's t quantile (numpy has none; scipy is not a dependency) ------------------------------

def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-14:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection on the CDF)."""
    if not 0 < p < 1 or df <= 0:
        raise EdgeAIError(f"t quantile needs 0 < p < 1 and df > 0; got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2
