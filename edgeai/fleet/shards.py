"""Parity over data split across boxes: sufficient statistics per shard, merged into one verdict.

A shard returns, per output, what :func:`edgeai.parity.output_metrics` accumulates over samples:
maxima (max abs / rel error), a minimum (cosine), counts (elements, NaN/Inf, top-1/top-5 hits,
rows), an AND (allclose) and the per-sample sums of absolute error, in sample order. Merging those
in global sample order gives the numbers a single box computes on the same data, bit for bit:
no average of averages, and the sum is added in the same order a single box adds it.

The per-sample arithmetic mirrors ``output_metrics``; ``tests/test_fleet.py`` checks a split run
against ``edgeai.compare`` on the same data so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from edgeai.parity import TOP_K, OutputParity, Tolerance, _cosine_rows, is_classifier_like


@dataclass(frozen=True)
class OutputStats:
    """Mergeable statistics of one output over a run of consecutive samples."""

    name: str
    shape: tuple[int, ...]  # the first sample's reference shape
    samples: int
    max_abs: float = 0.0
    max_rel: float = 0.0
    sums: tuple[float, ...] = ()  # sum of |cand - ref| of each sample, in sample order
    count: int = 0  # elements compared
    cosine: float = 1.0
    close: bool = True
    nonfinite: int = 0
    classifier: bool = True  # every sample looked like class scores (argmax agreement applies)
    top1_hits: int = 0
    topk_hits: int = 0
    rows: int = 0
    shape_failure: tuple[tuple[int, ...], str] | None = None  # the first sample whose shapes differ


def sample_stats(name: str, ref: np.ndarray, cand: np.ndarray, tol: Tolerance) -> OutputStats:
    """The statistics of one output on one sample (what ``output_metrics`` adds per sample)."""
    ref, cand = np.asarray(ref), np.asarray(cand)
    if ref.shape != cand.shape:
        return OutputStats(name, tuple(ref.shape), 1, shape_failure=(
            tuple(ref.shape), f"shape {list(cand.shape)} != reference {list(ref.shape)}"))
    r64, c64 = np.asarray(ref, np.float64), np.asarray(cand, np.float64)
    bad = ~np.isfinite(c64) & np.isfinite(r64)
    both_nan = np.isnan(c64) & np.isnan(r64)
    diff = np.where(both_nan, 0.0, np.abs(r64 - c64))
    diff = np.where(np.isnan(diff), np.inf, diff)
    max_abs = max_rel = 0.0
    sums: tuple[float, ...] = ()
    if diff.size:
        max_abs = float(diff.max())
        max_rel = float((diff / np.maximum(np.abs(np.nan_to_num(r64)), 1e-6)).max())
        sums = (float(diff.sum()),)
    close = True
    if tol.checks_allclose:
        close = bool(np.allclose(c64, r64, atol=tol.atol or 0.0, rtol=tol.rtol or 0.0, equal_nan=True))
    classifier = is_classifier_like(name, ref)
    top1 = topk = rows = 0
    if classifier and r64.size:
        r2, c2 = r64.reshape(-1, r64.shape[-1]), np.nan_to_num(c64.reshape(-1, c64.shape[-1]), nan=-np.inf)
        ra = r2.argmax(-1)
        top1 = int((ra == c2.argmax(-1)).sum())
        k = min(TOP_K, r2.shape[-1])
        top = np.argpartition(-c2, k - 1, axis=-1)[:, :k]
        topk = int((top == ra[:, None]).any(-1).sum())
        rows = r2.shape[0]
    return OutputStats(name, tuple(ref.shape), 1, max_abs, max_rel, sums, int(diff.size),
                       _cosine_rows(np.nan_to_num(r64), np.nan_to_num(c64)), close, int(bad.sum()), classifier,
                       top1, topk, rows)


def merge(parts: Sequence[OutputStats]) -> OutputStats:
    """Statistics of consecutive runs of samples, given in sample order."""
    if not parts:
        raise ValueError("nothing to merge")
    first = parts[0]
    failure = next((p.shape_failure for p in parts if p.shape_failure is not None), None)
    return replace(first, samples=sum(p.samples for p in parts), max_abs=max(p.max_abs for p in parts),
                   max_rel=max(p.max_rel for p in parts), sums=tuple(s for p in parts for s in p.sums),
                   count=sum(p.count for p in parts), cosine=min(p.cosine for p in parts),
                   close=all(p.close for p in parts), nonfinite=sum(p.nonfinite for p in parts),
                   classifier=all(p.classifier for p in parts), top1_hits=sum(p.top1_hits for p in parts),
                   topk_hits=sum(p.topk_hits for p in parts), rows=sum(p.rows for p in parts),
                   shape_failure=failure)


def judge(stats: OutputStats, tol: Tolerance) -> OutputParity:
    """The verdict on merged statistics, as ``output_metrics`` gives it on the same samples."""
    if stats.shape_failure is not None:
        shape, failure = stats.shape_failure
        return OutputParity(stats.name, shape, math.inf, math.inf, math.inf, -1.0, None, None, False, 0, False,
                            (failure,))
    sum_abs = 0.0
    for s in stats.sums:  # the order a single box adds them in: the same float, not just a close one
        sum_abs += s
    mean_abs = sum_abs / stats.count if stats.count else 0.0
    top1 = stats.top1_hits / stats.rows if stats.classifier and stats.rows else None
    topk = stats.topk_hits / stats.rows if stats.classifier and stats.rows else None
    failures = []
    if stats.nonfinite:
        failures.append(f"{stats.nonfinite} NaN/Inf values the reference does not have")
    if tol.checks_allclose and not stats.close:
        failures.append(f"not allclose(atol={tol.atol or 0.0:g}, rtol={tol.rtol or 0.0:g}): max_abs "
                        f"{stats.max_abs:.3g}")
    if tol.min_cosine is not None and stats.cosine < tol.min_cosine:
        failures.append(f"cosine {stats.cosine:.6f} < {tol.min_cosine}")
    if tol.min_top1 is not None and top1 is not None and top1 < tol.min_top1:
        failures.append(f"top-1 agreement {top1:.2%} < {tol.min_top1:.0%}")
    return OutputParity(stats.name, stats.shape, stats.max_abs, stats.max_rel, mean_abs, stats.cosine, top1, topk,
                        stats.close if tol.checks_allclose else None, stats.nonfinite, not failures, tuple(failures))


def shard_stats(names: Sequence[str], ref_outs: list[list[np.ndarray]], cand_outs: list[list[np.ndarray]],
                tol: Tolerance) -> list[OutputStats]:
    """Per output (in order), the statistics of a shard's samples (outputs from ``collect_outputs``)."""
    return [merge([sample_stats(n, r, c, tol) for r, c in zip(refs, cands, strict=True)])
            for n, refs, cands in zip(names, ref_outs, cand_outs, strict=True)]


def split_ranges(total: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous [start, stop) ranges covering ``total`` samples, sizes differing by at most one."""
    parts = max(1, min(parts, total))
    base, extra = divmod(total, parts)
    out, start = [], 0
    for i in range(parts):
        stop = start + base + (1 if i < extra else 0)
        out.append((start, stop))
        start = stop
    return out
