"""The race's decisions on scripted per-round latencies: who wins, who lost to whom, and rematches.

The engines are not involved: ``race(measure=...)`` takes the per-cell medians from a script, so
each test states the latencies a machine produced and checks the decision made from them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from edgeai.errors import EdgeAIError
from edgeai.quantization.race import Entry, race


def scripted(latencies: Mapping[str, Callable[[int], float]]) -> Callable[[Callable[[], Any], int], float]:
    """A ``measure`` that answers the kth timed cell of an entry with ``latencies[name](k)``;
    the sizing call before the rounds is cell -1."""
    calls: dict[str, int] = {}

    def measure(run: Callable[[], Any], repeats: int) -> float:
        name = run()
        k = calls.get(name, -1)
        calls[name] = k + 1
        return latencies[name](max(k, 0))

    return measure


def entries(names: Sequence[str]) -> list[Entry]:
    return [Entry(n, (lambda n=n: n), simplicity=i) for i, n in enumerate(names)]


def wobble(mean: float, spread: float) -> Callable[[int], float]:
    return lambda k: mean + (spread if k % 2 else -spread)


def test_the_fastest_wins_and_the_losers_say_to_whom() -> None:
    script = {"f32": wobble(10, 0.2), "int8": wobble(4, 0.1), "bf16": wobble(6, 0.1)}
    result = race(entries(script), baseline="f32", measure=scripted(script), warmup=0)
    assert result.winner == "int8" and result.stopped_by == "decided"
    assert result.beaten_by["bf16"][0] == "int8"
    assert 2.4 < result.estimates["int8"].speedup < 2.6
    assert result.settings["rematches"] == []


def test_within_noise_the_simpler_is_kept() -> None:
    script = {"f32": wobble(10, 0.2), "a": wobble(5, 1.0), "b": lambda k: 5 + (-1.0 if k % 2 else 1.0)}
    result = race(entries(script), baseline="f32", measure=scripted(script), warmup=0, max_rounds=12)
    assert set(result.unbeaten) == {"a", "b"} and result.winner == "a"
    assert result.stopped_by == "max_rounds"


def test_a_loss_to_a_candidate_that_lost_later_is_rematched() -> None:
    # Rounds 0-4: a burst slows "a" (30 ms) and "b" beats it; "c" is within noise of "b" until
    # round 5, when it settles at 3 ms and beats "b". Without a rematch "c" would win while "a",
    # at 2 ms once the burst is over, never ran against it.
    script = {"f32": wobble(10, 0.2), "a": lambda k: 30.0 if k < 5 else 2.0 + 0.05 * (k % 2),
              "b": wobble(5, 0.05), "c": lambda k: (4.0 if k % 2 else 6.0) if k < 5 else 3.0 + 0.05 * (k % 2)}
    result = race(entries(script), baseline="f32", measure=scripted(script), warmup=0, max_rounds=30)
    assert result.winner == "a"
    assert result.beaten_by["c"][0] == "a" and result.beaten_by["b"][0] in {"a", "c"}
    assert "a (lost to b, which lost to c)" in result.settings["rematches"]
    # The record shows the rounds "a" sat out as None.
    assert None in result.rounds["a"] and result.to_dict()["rounds"]["a"].count(None) >= 1


def test_a_rematch_the_race_ends_before_keeps_the_loss() -> None:
    # "c" beats "b" in round 9, the last one: the rematch of "a" never ran, so "a" keeps its loss.
    script = {"f32": wobble(10, 0.2), "a": lambda k: 30.0 if k < 5 else 2.0,
              "b": wobble(5, 0.05), "c": lambda k: (4.0 if k % 2 else 6.0) if k < 8 else 3.0}
    result = race(entries(script), baseline="f32", measure=scripted(script), warmup=0, max_rounds=10)
    assert "a" in result.beaten_by and result.winner != "a"


def test_the_time_budget_lets_a_rematch_reach_min_rounds() -> None:
    script = {"f32": wobble(10, 0.2), "a": lambda k: 30.0 if k < 5 else 2.0 + 0.05 * (k % 2),
              "b": wobble(5, 0.05), "c": lambda k: (4.0 if k % 2 else 6.0) if k < 5 else 3.0 + 0.05 * (k % 2)}
    ticks = iter(range(10_000))
    result = race(entries(script), baseline="f32", measure=scripted(script), warmup=0, max_rounds=30,
                  time_budget_s=6, clock=lambda: float(next(ticks)))
    assert result.winner == "a" and result.settings["rounds_run"] >= 10


@pytest.mark.parametrize("kwargs", [{"baseline": "missing"}, {"baseline": "f32", "min_rounds": 1},
                                    {"baseline": "f32", "max_rounds": 3}])
def test_bad_race_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(EdgeAIError):
        race(entries(["f32", "a"]), measure=scripted({"f32": wobble(1, 0), "a": wobble(1, 0)}), **kwargs)
