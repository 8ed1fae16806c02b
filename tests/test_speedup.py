"""Speed decisions on synthetic interleaved rounds: one ratio direction, intervals, three outcomes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from edgeai.errors import EdgeAIError
from edgeai.speedup import (
    FASTER,
    NOT_FASTER,
    UNDECIDED,
    decide,
    estimate_from_rounds,
    measure_until_decided,
    ratios_from_rounds,
    speedup_interval,
    t_quantile,
)


def noisy_ratios(center: float, n: int, sd: float = 0.06, seed: int = 0) -> np.ndarray:
    """Per-round ratios as a loaded 2-core box gives them: lognormal around ``center``."""
    return center * np.exp(np.random.default_rng(seed).normal(0.0, sd, n))


def test_speedup_is_baseline_over_candidate():
    # A candidate twice as fast has speed-up 2, not 0.5.
    assert estimate_from_rounds([2.0, 2.0, 2.0], [1.0, 1.0, 1.0]).speedup == pytest.approx(2.0)
    assert ratios_from_rounds([0.2315], [0.2413]) == [pytest.approx(0.2315 / 0.2413)]


@pytest.mark.parametrize("seed", range(5))
def test_printed_ratio_matches_its_own_latencies(seed):
    # Issue 17's "0.899x (p50 0.2413 vs 0.2315 ms)": the reported latencies must give the ratio.
    rng = np.random.default_rng(seed)
    base = 0.23 * np.exp(rng.normal(0, 0.2, 7))
    cand = base / (0.9 * np.exp(rng.normal(0, 0.2, 7)))
    e = estimate_from_rounds(base, cand)
    assert e.baseline_ms / e.candidate_ms == pytest.approx(e.speedup, rel=1e-12)
    assert e.low <= e.speedup <= e.high
    text = e.describe()
    assert f"{e.speedup:.3f}x" in text and f"{e.baseline_ms:.4g} vs {e.candidate_ms:.4g} ms" in text


@pytest.mark.parametrize(("p", "df", "expected"), [(0.975, 1, 12.7062), (0.975, 4, 2.7764), (0.975, 30, 2.0423),
                                                   (0.995, 10, 3.1693), (0.95, 2, 2.9200), (0.025, 4, -2.7764)])
def test_t_quantile_matches_the_tables(p, df, expected):
    assert t_quantile(p, df) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("method", ["t", "bootstrap"])
def test_noise_around_the_gate_is_undecided(seed, method):
    # Issue 17: the same model gave "INT8 kept at 1.063x" and a minute later "FP32 kept".
    d = decide(noisy_ratios(1.05, 8, seed=seed), 1.05, method=method)
    assert d.outcome == UNDECIDED and d.needs_more_rounds and not d.faster
    assert d.estimate.low < 1.05 < d.estimate.high
    assert "undecided within noise" in d.reason() and "straddles 1.05x" in d.reason()


@pytest.mark.parametrize("method", ["t", "bootstrap"])
def test_clear_outcomes(method):
    fast = decide(noisy_ratios(1.35, 6, sd=0.04), 1.05, method=method)
    assert fast.outcome == FASTER and fast.faster and not fast.needs_more_rounds and fast.estimate.low >= 1.05
    slow = decide(noisy_ratios(0.85, 6, sd=0.04), 1.05, method=method)
    assert slow.outcome == NOT_FASTER and slow.estimate.high < 1.05


def test_one_round_decides_nothing():
    d = decide([3.0], 1.05)
    assert d.outcome == UNDECIDED and d.estimate.low == 0.0 and math.isinf(d.estimate.high)
    assert json.loads(json.dumps(d.to_dict()))["estimate"]["high"] is None


def test_bootstrap_is_reproducible():
    r = noisy_ratios(1.1, 10)
    a, b = speedup_interval(r, method="bootstrap"), speedup_interval(r, method="bootstrap")
    assert (a.low, a.high) == (b.low, b.high)
    assert speedup_interval(r, method="bootstrap", seed=1).low != a.low


def test_t_interval_covers_the_true_ratio_about_as_often_as_it_says():
    hits = sum(speedup_interval(noisy_ratios(1.2, 6, sd=0.1, seed=s)).low <= 1.2 <=
               speedup_interval(noisy_ratios(1.2, 6, sd=0.1, seed=s)).high for s in range(400))
    assert 0.91 <= hits / 400 <= 0.99


def test_to_dict_names_direction_rounds_and_interval():
    d = decide(noisy_ratios(1.3, 5), 1.05)
    out = json.loads(json.dumps(d.to_dict()))
    assert out["outcome"] == "faster" and out["estimate"]["rounds"] == 5
    assert out["estimate"]["direction"] == "baseline_ms / candidate_ms"
    assert out["estimate"]["low"] <= out["estimate"]["speedup"] <= out["estimate"]["high"]


@pytest.mark.parametrize(("args", "match"), [
    (([1.0, -1.0], 1.05), "finite and positive"), (([], 1.05), "at least one round"),
    (([1.0, 1.1], 0.0), "min_speedup"), (([1.0, float("nan")], 1.05), "finite")])
def test_bad_input_is_refused(args, match):
    with pytest.raises(EdgeAIError, match=match):
        decide(*args)


def test_bad_rounds_are_refused():
    with pytest.raises(EdgeAIError, match="pair up"):
        ratios_from_rounds([1.0, 2.0], [1.0])
    with pytest.raises(EdgeAIError, match="confidence"):
        speedup_interval([1.0, 1.1], confidence=1.5)
    with pytest.raises(EdgeAIError, match="min_rounds"):
        measure_until_decided(lambda: (1.0, 1.0), 1.05, min_rounds=1)


class Rounds:
    """A synthetic interleaved benchmark: baseline ~1 ms, candidate 1/center ms, lognormal noise."""

    def __init__(self, center: float, sd: float = 0.06, seed: int = 0) -> None:
        self.rng, self.center, self.sd, self.calls = np.random.default_rng(seed), center, sd, 0

    def __call__(self) -> tuple[float, float]:
        self.calls += 1
        load = math.exp(self.rng.normal(0, 0.3))  # machine load hits both alike within a round
        return load, load / (self.center * math.exp(self.rng.normal(0, self.sd)))


def test_driver_stops_as_soon_as_it_is_decided():
    run = Rounds(1.4)
    d = measure_until_decided(run, 1.05, min_rounds=4, max_rounds=30)
    assert d.outcome == FASTER and d.stopped_by == "decided" and run.calls == 4 == d.estimate.rounds
    # Common load cancels in the ratio; the latencies reported still give it exactly.
    assert d.estimate.baseline_ms / d.estimate.candidate_ms == pytest.approx(d.estimate.speedup)


def test_driver_adds_rounds_until_decided():
    run = Rounds(1.12, sd=0.1, seed=3)
    d = measure_until_decided(run, 1.05, min_rounds=3, max_rounds=200)
    assert d.outcome == FASTER and d.stopped_by == "decided" and 3 < run.calls < 200


def test_driver_says_undecided_at_the_round_limit():
    run = Rounds(1.05, sd=0.08, seed=2)
    d = measure_until_decided(run, 1.05, min_rounds=4, max_rounds=12)
    assert d.outcome == UNDECIDED and d.stopped_by == "max_rounds" and run.calls == 12
    assert "undecided within noise (round limit reached)" in d.reason()


def test_driver_stops_when_the_time_budget_is_spent():
    ticks = iter(range(1000))
    run = Rounds(1.05, sd=0.08, seed=2)
    d = measure_until_decided(run, 1.05, min_rounds=3, max_rounds=100, time_budget_s=6, clock=lambda: next(ticks))
    assert d.outcome == UNDECIDED and d.stopped_by == "time_budget" and run.calls < 100
    assert "time budget spent" in d.reason()
