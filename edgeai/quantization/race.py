"""Time many loaded candidates interleaved and pick the fastest on intervals, never on one number.

Every round runs every live candidate (rotating which goes first) for about ``cell_s`` seconds
and keeps its median; the baseline runs in every round, so each candidate's speed-up over it is an
interval over rounds (:mod:`edgeai.speedup`). Candidate A *beats* B when the interval of A's
speed-up over B, from the rounds they shared, lies above ``margin``. A beaten candidate stops
running (it has lost); the rounds go on until no two live candidates are undecided, or the round
limit or time budget is reached. The winner is the simplest candidate nobody beat (ties: the
faster estimate): where the measurement cannot tell two configs apart, the simpler one is kept.

A loss is only as good as the candidate it was lost to. When a burst of load lands on B in the
first rounds, A may "beat" B on those rounds alone; if A is later beaten by C, nothing has
compared B with C. So when a candidate is dropped, those it had beaten come back (a rematch):
they run again from that round on and are judged against the live ones on the rounds they share.
No pair is judged on fewer than ``min_rounds`` shared rounds.
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
    simplicity: float  # lower is simpler: f32 < fused < bf16/f16 < int8 < int8 with parts in float


@dataclass(frozen=True)
class RaceResult:
    """Per-round medians of every entry, the estimates against the baseline, and the choice."""

    winner: str
    baseline: str
    rounds: dict[str, tuple[float | None, ...]]  # name -> per-round median ms; None: not run that round
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
                "rounds": {k: [None if x is None else round(x, 5) for x in v] for k, v in self.rounds.items()},
                "estimates": {k: v.to_dict() for k, v in self.estimates.items()},
                "beaten_by": {k: {"by": w, "estimate": e.to_dict()} for k, (w, e) in self.beaten_by.items()}}


def _shared(a_ms: Sequence[float | None], b_ms: Sequence[float | None]) -> list[tuple[float, float]]:
    """The (a, b) medians of the rounds both ran."""
    return [(a, b) for a, b in zip(a_ms, b_ms, strict=True) if a is not None and b is not None]


def _estimate(shared: Sequence[tuple[float, float]]) -> SpeedupEstimate:
    """``a``'s speed-up over ``b`` from their shared rounds."""
    return estimate_from_rounds([b for _, b in shared], [a for a, _ in shared])


def _pair(a_ms: Sequence[float | None], b_ms: Sequence[float | None]) -> SpeedupEstimate:
    """``a``'s speed-up over ``b`` on the rounds both ran."""
    return _estimate(_shared(a_ms, b_ms))


def median_ms(run: Callable[[], Any], repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``run``, in milliseconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        run()
        times.append(time.perf_counter_ns() - t0)
    return float(np.median(times)) / 1e6


def race(entries: Sequence[Entry], *, baseline: str, min_rounds: int = 5, max_rounds: int = 40,
         time_budget_s: float = 60.0, cell_s: float = 0.05, warmup: int = 3, margin: float = 1.0,
         clock: Callable[[], float] = time.monotonic,
         measure: Callable[[Callable[[], Any], int], float] = median_ms) -> RaceResult:
    """Race ``entries`` interleaved and pick the winner (see the module doc).

    Args:
        baseline: the entry every speed-up is reported against (runs in every round).
        min_rounds: rounds before anything is dropped or decided (at least 2).
        time_budget_s: wall-clock budget for the rounds; never stops before ``min_rounds``, nor
            before a rematch has run ``min_rounds`` rounds.
        cell_s: time per entry per round; each entry repeats ``cell_s / its latency`` times (>= 1).
            Short cells and many rounds: on a shared machine load comes in bursts of seconds, and a
            long cell lets one burst land on one candidate only.
        margin: A beats B when the lower bound of A's speed-up over B clears this.
        measure: ``(run, repeats) -> ms`` for one cell (the default times it; tests script it).

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
        one = max(measure(e.run, 3), 1e-3)
        repeats[e.name] = int(min(500, max(1, round(cell_s * 1000 / one))))
    table = _Standings(names, baseline, margin, min_rounds)
    start, stopped, r = clock(), "max_rounds", 0
    while r < max_rounds:
        live = table.live()
        order = live[r % len(live):] + live[:r % len(live)]
        row = dict.fromkeys(names)
        for name in order:
            row[name] = measure(by_name[name].run, repeats[name])
        table.add(row)
        r += 1
        if r < min_rounds:
            continue
        undecided = table.update()
        if not undecided:
            stopped = "decided"
            break
        # The budget lets a rematch under way reach min_rounds (an overrun of at most that many rounds).
        if clock() - start >= time_budget_s and not table.rematch_starting():
            stopped = "time_budget"
            break
    rematched = table.close()
    beaten, rounds = table.beaten, table.rounds
    unbeaten = tuple(n for n in names if n not in beaten)
    estimates = {n: _pair(rounds[n], rounds[baseline]) for n in names}
    winner = min(unbeaten, key=lambda n: (by_name[n].simplicity, -estimates[n].speedup))
    settings = {"min_rounds": min_rounds, "max_rounds": max_rounds, "time_budget_s": time_budget_s,
                "cell_s": cell_s, "repeats": repeats, "margin": margin, "confidence": 0.95,
                "interval": "Student's t over log per-round ratios", "rounds_run": r,
                "rematches": rematched, "seconds": round(clock() - start, 2)}
    return RaceResult(winner, baseline, {n: tuple(v) for n, v in rounds.items()}, estimates, dict(beaten), unbeaten,
                      stopped, settings)


class _Standings:
    """Per-round medians, who beat whom, and the rematches under way."""

    def __init__(self, names: Sequence[str], baseline: str, margin: float, min_rounds: int) -> None:
        self.names, self.baseline, self.margin, self.min_rounds = list(names), baseline, margin, min_rounds
        self.rounds: dict[str, list[float | None]] = {n: [] for n in names}
        self.beaten: dict[str, tuple[str, SpeedupEstimate]] = {}
        # name -> (round its rematch began, the loss it is contesting)
        self.rematch: dict[str, tuple[int, tuple[str, SpeedupEstimate]]] = {}
        self.rematches: list[str] = []

    def live(self) -> list[str]:
        """Who runs this round: the unbeaten, and the baseline always (speed-ups are reported against it)."""
        return [n for n in self.names if n not in self.beaten or n == self.baseline]

    def add(self, row: Mapping[str, float | None]) -> None:
        for name in self.names:
            self.rounds[name].append(row[name])

    def versus(self, a: str, b: str) -> SpeedupEstimate | None:
        """``a`` over ``b``, or None before they share ``min_rounds`` rounds; a pair with an entry in
        a rematch counts only the rounds since it began."""
        first = max(self.rematch.get(a, (0, None))[0], self.rematch.get(b, (0, None))[0])
        shared = _shared(self.rounds[a][first:], self.rounds[b][first:])
        return _estimate(shared) if len(shared) >= self.min_rounds else None

    def update(self) -> int:
        """Drop contenders another contender beats, start rematches for those a dropped entry had
        beaten, and return how many pairs of contenders are still undecided."""
        contenders = [n for n in self.names if n not in self.beaten]
        for b in contenders:
            wins = [(a, e) for a in contenders if a != b for e in [self.versus(a, b)]
                    if e is not None and decide_estimate(e, self.margin).outcome == FASTER]
            if wins:
                self.beaten[b] = max(wins, key=lambda w: w[1].speedup)
                self.rematch.pop(b, None)
        # A loss to a candidate that has since lost too proves nothing against the ones still running.
        now = len(self.rounds[self.baseline])
        for b, loss in list(self.beaten.items()):
            if loss[0] in self.beaten:
                del self.beaten[b]
                self.rematch[b] = (now, loss)
                self.rematches.append(f"{b} (lost to {loss[0]}, which lost to {self.beaten[loss[0]][0]})")
        contenders = [n for n in self.names if n not in self.beaten]
        undecided = 0
        for i, a in enumerate(contenders):
            for b in contenders[i + 1:]:
                e = self.versus(a, b)
                if e is None or not math.isfinite(e.low) or not (
                        e.low > self.margin or e.high < self.margin):
                    undecided += 1
        return undecided

    def _starting(self) -> list[str]:
        """The rematches under way that have run fewer than ``min_rounds`` rounds (a rematch lost
        again has left ``rematch``)."""
        now = len(self.rounds[self.baseline])
        return [b for b, (began, _) in self.rematch.items() if now - began < self.min_rounds]

    def rematch_starting(self) -> bool:
        """Is a rematch under way that has run fewer than ``min_rounds`` rounds?"""
        return bool(self._starting())

    def close(self) -> list[str]:
        """The rematches the race ended before finishing keep the loss they contested."""
        for b in self._starting():
            self.beaten[b] = self.rematch[b][1]
        return self.rematches
