"""Comparing a bench run with an earlier one: regressions beyond the measured noise.

Each config's center is the median of its per-round p50s, and its noise is half the spread of
those per-round p50s relative to the center (``BenchReport.noise``). A change between two runs
counts only when it exceeds the noise of both runs added together (roughly: the two ranges of
per-round p50s do not overlap) and ``min_change`` (default 5%). Anything smaller is "within noise".
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeai import userjson
from edgeai.errors import EdgeAIError
from edgeai.readset import read_regular

#: Changes below this never count, however tight the rounds: runs minutes apart on one machine drift
#: by a few percent (frequency scaling, other processes) in ways no within-run spread can show.
MIN_CHANGE = 0.05


@dataclass(frozen=True)
class Change:
    """One config at one batch size, old run vs new run."""

    name: str
    batch: int
    streams: int
    verdict: str  # regression | improvement | within noise | new | gone | not comparable
    old_p50_ms: float | None = None
    new_p50_ms: float | None = None
    change: float | None = None  # new / old - 1 of the round-p50 centers
    threshold: float | None = None  # the change needed to count: old noise + new noise (at least min_change)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Comparison:
    old_source: str
    changes: tuple[Change, ...]
    notes: tuple[str, ...] = ()

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.verdict == "regression"]

    def to_dict(self) -> dict[str, Any]:
        return {"old": self.old_source, "regressions": len(self.regressions), "notes": list(self.notes),
                "changes": [c.to_dict() for c in self.changes]}


_NUMBER_OR_NULL = {"type": ["number", "null"]}
#: The fields of an ``edgeai bench --json`` result that a comparison reads.
BENCH_JSON_SCHEMA = {
    "type": "object", "required": ["results"],
    "properties": {
        "rounds": {"type": "integer"},
        "machine": {"type": ["object", "null"], "properties": {
            "cpu": {"type": ["object", "null"], "properties": {"model": {"type": ["string", "null"]}}}}},
        "results": {"type": "array", "maxItems": 100_000, "items": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "batch": {"type": "integer"}, "streams": {"type": "integer"},
                           "status": {"type": ["string", "null"]},
                           "round_p50_ms": {"type": ["array", "null"], "items": {"type": "number",
                                                                                  "exclusiveMinimum": 0}},
                           "latency_ms": {"type": ["object", "null"], "properties": {"p50": _NUMBER_OR_NULL}}}}},
    },
}


def read_bench_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read an ``edgeai bench --json`` file (a regular file, bounded, schema-checked); anything else
    is a clear error."""
    p = Path(path)
    if not os.path.lexists(p):
        raise EdgeAIError(f"--compare-to file not found: {p}")
    text = read_regular(p, "--compare-to file", max_bytes=userjson.MAX_BYTES)
    return userjson.parse(text, f"--compare-to {p}", BENCH_JSON_SCHEMA,
                          hint="give the output of `edgeai bench ... --json`")


def _short(row: dict[str, Any]) -> str:
    return str(row.get("status", "?")).split(":")[0]


def _center(row: dict[str, Any]) -> tuple[float | None, float]:
    rounds = [float(v) for v in row.get("round_p50_ms") or []]
    if rounds:
        med = float(np.median(rounds))
        return med, (max(rounds) - min(rounds)) / 2 / med if len(rounds) > 1 else 0.0
    p50 = (row.get("latency_ms") or {}).get("p50")
    return (float(p50) if p50 is not None else None), 0.0


def compare_runs(old: dict[str, Any], new: Any, *, min_change: float = MIN_CHANGE,
                 old_source: str = "old") -> Comparison:
    """Compare ``new`` (a MatrixResult or its ``to_dict()``) with ``old`` (a bench JSON dict).

    Configs are matched by name, batch and streams. A regression is a slowdown of the round-p50
    center beyond ``max(min_change, old noise + new noise)``.
    """
    new_d = new.to_dict() if hasattr(new, "to_dict") else new
    key = lambda r: (r.get("name"), r.get("batch"), r.get("streams", 1))  # noqa: E731
    olds = {key(r): r for r in old.get("results", [])}
    notes = []
    old_cpu = (old.get("machine") or {}).get("cpu", {}).get("model")
    new_cpu = (new_d.get("machine") or {}).get("cpu", {}).get("model")
    if old_cpu and new_cpu and old_cpu != new_cpu:
        notes.append(f"the old run is from another CPU ({old_cpu}; now {new_cpu}): differences may be the machine")
    if old.get("rounds", 0) < 2 or new_d.get("rounds", 0) < 2:
        notes.append("a run with fewer than 2 rounds has no measured noise; only min_change applies")
    changes = []
    for row in new_d.get("results", []):
        k = key(row)
        before = olds.pop(k, None)
        if before is None:
            changes.append(Change(k[0], k[1], k[2], "new", note="not in the old run"))
            continue
        if row.get("status") != "ok" or before.get("status") != "ok":
            changes.append(Change(k[0], k[1], k[2], "not comparable",
                                  note=f"old: {_short(before)}; new: {_short(row)}"))
            continue
        (o, o_noise), (n, n_noise) = _center(before), _center(row)
        if not o or not n:
            changes.append(Change(k[0], k[1], k[2], "not comparable", note="no latency recorded"))
            continue
        change, threshold = n / o - 1, max(min_change, o_noise + n_noise)
        verdict = "regression" if change > threshold else "improvement" if change < -threshold else "within noise"
        changes.append(Change(k[0], k[1], k[2], verdict, o, n, change, threshold))
    changes += [Change(k[0], k[1], k[2], "gone", note="in the old run only") for k in olds]
    return Comparison(old_source, tuple(changes), tuple(notes))
