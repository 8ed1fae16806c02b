"""Time many loaded candidates interleaved and pick the fastest on intervals, never on one number.

Every round runs every live candidate (rotating which goes first) for about ``cell_s`` seconds
and keeps its median; the baseline runs in every round, so each candidate's speed-up over it is an
interval over rounds (:mod:`edgeai.speedup`). Candidate A *beats* B when the interval of A's
speed-up over B, from the rounds they shared, lies above ``margin``. A beaten candidate stops
running (it has lost); the rounds go on until no two live candidates are undecided, or the round
limit or time budget is reached. The winner is the simplest candidate nobody beat (ties: the
faster estimate): where the measurement cannot tell two configs apart, the simpler one is kept.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeai.errors import EdgeAIError
from edgeai.speedup import FASTER, SpeedupEstimate, decide_estimate, estimate_from_rounds


@dataclass(frozen=True)
class Entry:
    """One candidate in the race: a name, a callable that runs it once, and how simple it is."""

    name: str
    run: Callable[[], Any]
    simplicity: int  # lower is simpler: f32 < fused < bf16/f16 < int8 < int8 with parts in float


@dataclass(frozen=True)
class RaceResult:
    """Per-round medians of every entry, the estimates against the baseline, and the choice."""

    winner: str
    baseline: str
    rounds: dict[str, tuple[float, ...]]  # name -> per-round median ms (beaten entries stop early)
    estimates: dict[str, SpeedupEstimate]  # name -> speed-up over the baseline, with its interval
    beaten_by: dict[str, tuple[str, SpeedupEstimate]]  # loser -> (who beat it, that one's speed-up over it)
    unbeaten: tuple[str, ...]
    stopped_by: str  # decided | max_rounds | time_budget
    settings: dict[str, Any] = field(default_factory=dict)

    def versus(self, a: str, b: str) -> SpeedupEstimate:
        """``a``'s speed-up over ``b`` from the rounds they both ran."""
        return _pair(self.rounds[a], self.rounds[b])

    def to_dict(self) -> dict[str, Any]:
        return {"winner": self.winner, "baseline": self.baseline, "stopped_by": self.stopped_by,
                "unbeaten": list(self.unbeaten), "settings": self.settings,
                "rounds": {k: [round(x, 5) for x in v] for k, v in self.rounds.items()},
                "estimates": {k: v.to_dict() for k, v in self.estimates.items()},
                "beaten_by": {k: {"by": w, "estimate": e.to_dict()} for k, (w, e) in self.beaten_by.items()}}


def _pair(a_ms: Sequence[float], b_ms: Sequence[float]) -> SpeedupEstimate:
    n = min(len(a_ms), len(b_ms))
    return estimate_from_rounds(list(b_ms[:n]), list(a_ms[:n]))


def _median_ms(run: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        run()
        times.append(time.perf_counter_ns() - t0)
    return float(np.median(times)) / 1e6


def race(entries: Sequence[Entry], *, baseline: str, min_rounds: int = 5, max_rounds: int = 40,
         time_budget_s: float = 60.0, cell_s: float = 0.05, warmup: int = 3, margin: float = 1.0,
         clock: Callable[[], float] = time.monotonic) -> RaceResult:
    """Race ``entries`` interleaved and pick the winner (see the module doc).

    Args:
        baseline: the entry every speed-up is reported against (runs in every round).
        min_rounds: rounds before anything is dropped or decided (at least 2).
        time_budget_s: wall-clock budget for the rounds; never stops before ``min_rounds``.
        cell_s: time per entry per round; each entry repeats ``cell_s / its latency`` times (>= 1).
            Short cells and many rounds: on a shared machine load comes in bursts of seconds, and a
            long cell lets one burst land on one candidate only.
        margin: A beats B when the lower bound of A's speed-up over B clears this.

    Raises:
        EdgeAIError: no entries, duplicate names, an unknown baseline, or an entry that fails to run.
    """
    names = [e.name for e in entries]
    if not entries or len(set(names)) != len(names) or baseline not in names:
        raise EdgeAIError(f"race needs unique entry names including the baseline {baseline!r}; got {names}")
    if min_rounds < 2 or max_rounds < min_rounds:
        raise EdgeAIError(f"need 2 <= min_rounds <= max_rounds; got {min_rounds}, {max_rounds}")
    by_name = {e.name: e for e in entries}
    repeats: dict[str, int] = {}
    for e in entries:  # warm up, then size each cell from its own latency
        for _ in range(warmup):
            e.run()
        one = max(_median_ms(e.run, 3), 1e-3)
        repeats[e.name] = int(min(500, max(1, round(cell_s * 1000 / one))))
    rounds: dict[str, list[float]] = {n: [] for n in names}
    live = list(names)
    beaten: dict[str, tuple[str, SpeedupEstimate]] = {}
    start, stopped, r = clock(), "max_rounds", 0
    while r < max_rounds:
        order = live[r % len(live):] + live[:r % len(live)]
        for name in order:
            rounds[name].append(_median_ms(by_name[name].run, repeats[name]))
        r += 1
        if r < min_rounds:
            continue
        undecided = _update(live, rounds, beaten, margin, baseline)
        if not undecided:
            stopped = "decided"
            break
        if clock() - start >= time_budget_s:
            stopped = "time_budget"
            break
    unbeaten = tuple(n for n in names if n not in beaten)
    estimates = {n: _pair(rounds[n], rounds[baseline]) for n in names}
    winner = min(unbeaten, key=lambda n: (by_name[n].simplicity, -estimates[n].speedup))
    settings = {"min_rounds": min_rounds, "max_rounds": max_rounds, "time_budget_s": time_budget_s,
                "cell_s": cell_s, "repeats": repeats, "margin": margin, "confidence": 0.95,
                "interval": "Student's t over log per-round ratios", "rounds_run": r,
                "seconds": round(clock() - start, 2)}
    return RaceResult(winner, baseline, {n: tuple(v) for n, v in rounds.items()}, estimates, beaten, unbeaten,
                      stopped, settings)


def _update(live: list[str], rounds: Mapping[str, list[float]], beaten: dict[str, tuple[str, SpeedupEstimate]],
            margin: float, baseline: str) -> int:
    """Drop live entries another live entry beats; return how many live pairs are still undecided."""
    pairs: dict[tuple[str, str], SpeedupEstimate] = {}
    for a in live:
        for b in live:
            if a != b:
                pairs[(a, b)] = _pair(rounds[a], rounds[b])
    for b in list(live):
        winners = [(a, pairs[(a, b)]) for a in live if a != b
                   and decide_estimate(pairs[(a, b)], margin).outcome == FASTER]
        if winners:
            beaten[b] = max(winners, key=lambda w: w[1].speedup)
    # The baseline keeps running in every round: every speed-up is reported against it.
    live[:] = [n for n in live if n not in beaten or n == baseline]
    contenders = [n for n in live if n not in beaten]
    undecided = 0
    for i, a in enumerate(contenders):
        for b in contenders[i + 1:]:
            est = pairs[(a, b)]
            if not (est.low > margin or est.high < margin) or not math.isfinite(est.low):
                undecided += 1
    return undecided
