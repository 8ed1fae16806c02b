"""PNG plots of bench matrices, the demo and bundles. Rendering only: every number comes from a result.

Every plot is a grid of horizontal panels that share one row per config (or variant), so a row
reads across: latency, speed-up, and what the plot is about (accuracy, error, size, cold start).
Latency axes are logarithmic (one slow p99 must not flatten every other box), p50 is written next
to each box, speed-ups are their own panel with the 95% interval over interleaved rounds, and a
panel is drawn only when it has data. Notes go under the panels, wrapped, never cut. Files are
written atomically.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edgeai.atomic import atomic_path

DPI = 100
PANEL_W = 4.6  # inches per panel column
ROW_H = 0.34  # inches per row (config) of a panel
BOX_NOTE = "box p25-p75, | p50 (labelled), whiskers p1-p99, x max"
THROUGHPUT_NOTE = ("items/s = batch x timed runs / their wall time over all rounds: the slow tail is included, "
                   "warm-up and the first run are not")

Panel = tuple[str, Callable[[Any], None]]  # (title, draw(ax))


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _short(v: float) -> str:
    return f"{v:.3g}" if v < 1000 else f"{v:,.0f}"


# --- panels ---------------------------------------------------------------------------------------

def _rows(ax: Any, labels: Sequence[str]) -> None:
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylim(len(labels) - 0.5, -0.5)  # first row on top
    ax.grid(axis="x", which="major", alpha=0.3)


def latency_panel(ax: Any, labels: Sequence[str], runs: Sequence[Any], colors: Sequence[str] | None = None) -> None:
    """Horizontal boxes on a log axis; ``runs[i]`` is a BenchReport (or None / not ok: 'not run')."""
    import numpy as np

    height = 0.6
    stats, where = [], []
    for y, r in enumerate(runs):
        if r is None or getattr(r, "status", "ok") != "ok" or r.latency is None:
            ax.text(0.02, y, "not run", color="tab:red", fontsize=7, va="center",
                    transform=ax.get_yaxis_transform())
            continue
        lat = r.latency
        if r.samples_ms:
            p1, p25, p75, p99 = (float(v) for v in np.percentile(r.samples_ms, [1, 25, 75, 99]))
        else:  # a report read back without samples: p50 to p90 as the box
            p1, p25, p75, p99 = lat.min, lat.p50, lat.p90, lat.p99
        stats.append({"med": lat.p50, "q1": p25, "q3": p75, "whislo": p1, "whishi": p99, "fliers": []})
        where.append((y, lat))
    if stats:
        boxes = ax.bxp(stats, positions=[y for y, _ in where], orientation="horizontal", widths=height,
                       showfliers=False, patch_artist=True,
                       medianprops={"color": "black", "linewidth": 1.6})
        for j, patch in enumerate(boxes["boxes"]):
            patch.set_facecolor(colors[j % len(colors)] if colors else "#9ecae1")
        for (y, lat), st in zip(where, stats, strict=True):
            ax.plot([lat.max], [y], marker="x", color="grey", markersize=4, linestyle="none")
            ax.annotate(f"p50 {_short(lat.p50)} ms", (max(lat.max, st["whishi"]), y), xytext=(5, 0),
                        textcoords="offset points", fontsize=6.5, ha="left", va="center")
        ax.set_xscale("log")
        lo = min(s["whislo"] for s in stats)
        hi = max(lat.max for _, lat in where)
        ax.set_xlim(lo / 1.6, hi * (hi / lo) ** 0.3 * 1.6)  # room for the p50 label right of the max
    ax.set_xlabel("ms per run (log scale)", fontsize=8)


def speedup_panel(ax: Any, ys: Sequence[float], values: Sequence[float | None],
                  intervals: Sequence[tuple[float, float] | None], baseline_rows: Sequence[float],
                  height: float = 0.6, tags: Sequence[str] | None = None) -> None:
    """Bars from 1x to each speed-up on a log axis, the 95% interval as an error bar, the value written.

    Green: the interval lies above 1 (faster); red: below 1 (slower); grey: it straddles 1, so the
    difference is within the noise. Rows in ``baseline_rows`` are marked 'baseline'.
    """
    shown = [v for v in values if v]
    spans = [x for iv in intervals if iv for x in iv if x and math.isfinite(x)] + shown + [1.0]
    lo, hi = min(spans), max(spans)
    for k, (y, v, iv) in enumerate(zip(ys, values, intervals, strict=True)):
        tag = f"{tags[k]}: " if tags else ""
        if y in baseline_rows:
            ax.text(1.0, y, f" {tag}baseline", fontsize=7, va="center", ha="left", color="dimgrey")
            continue
        if not v:
            ax.text(1.0, y, f" {tag}n/a", fontsize=7, va="center", color="tab:red")
            continue
        color = "lightgrey"
        if iv:
            color = "tab:green" if iv[0] > 1 else "tab:red" if iv[1] < 1 else "lightgrey"
        ax.barh(y, v - 1.0, left=1.0, height=height, color=color, edgecolor="dimgrey", linewidth=0.5)
        text = f"{tag}{v:.2f}x"
        if iv:
            ax.errorbar([v], [y], xerr=[[max(v - iv[0], 0)], [max(iv[1] - v, 0)]], fmt="none", ecolor="black",
                        capsize=2, linewidth=0.8)
            text += f" [{_short(iv[0])}, {_short(iv[1])}]"
        ax.annotate(text, (max(1.0, v, iv[1] if iv else v), y), xytext=(3, 0), textcoords="offset points",
                    fontsize=6.5, va="center")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    lo, hi = min(lo, 1.0) / 1.3, max(hi, 1.0)
    ax.set_xlim(lo, hi * (hi / lo) ** 0.5 * 1.5)  # room for the label right of the interval
    ax.set_xlabel("x faster than the baseline (log); bar: 95% interval", fontsize=8)


def bar_panel(ax: Any, ys: Sequence[float], values: Sequence[float | None], fmt: Callable[[float], str],
              xlabel: str, log: bool | str = False, height: float = 0.6, colors: Sequence[str] | None = None,
              xlim: Sequence[float | None] | None = None, none_text: str | Sequence[str] = "n/a") -> None:
    """Horizontal bars with their values written; None is written 'n/a'. ``xlim``: the values the
    axis must fit (default ``values``; grouped bars pass every group's)."""
    every = values if xlim is None else xlim
    present = [v for v in every if v is not None and v > 0] if log else [v for v in every if v is not None]
    for i, (y, v) in enumerate(zip(ys, values, strict=True)):
        if v is None or (log and v <= 0):
            missing = none_text if isinstance(none_text, str) else none_text[i]
            ax.text(0.02, y, missing if v is None else fmt(v), fontsize=7, va="center",
                    transform=ax.get_yaxis_transform(), color="dimgrey")
            continue
        ax.barh(y, v, height=height, color=colors[i % len(colors)] if colors else "tab:blue")
        ax.annotate(fmt(v), (v, y), xytext=(3, 0), textcoords="offset points", fontsize=6.5, va="center")
    if log == "fraction":  # accuracy-like: the whole 0-100% scale, so 98% looks like 98%
        ax.set_xlim(0, 1.22)
        ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0], ["0", "25%", "50%", "75%", "100%"])
    elif log and present:
        ax.set_xscale("log")
        ax.set_xlim(min(present) / 3, max(present) * 8)
    elif present:
        ax.set_xlim(0, max(present) * 1.3 or 1)
    ax.set_xlabel(xlabel, fontsize=8)


# --- figure ---------------------------------------------------------------------------------------

def figure(labels: Sequence[str], panels: Sequence[Panel], title: str, notes: Sequence[str],
           path: str | Path | None, ncols: int = 3, row_h: float = ROW_H) -> Any:
    """Lay ``panels`` out ``ncols`` per line, rows labelled on the first column, notes under them.

    Written to ``path`` (PNG, atomically) and the path returned; with ``path=None`` the matplotlib
    Figure is returned unsaved (for tests and notebooks; close it with ``plt.close(fig)``).
    """
    plt = _plt()
    ncols = max(1, min(ncols, len(panels)))
    nrows = math.ceil(len(panels) / ncols)
    width = PANEL_W * ncols + 1.6
    chars = int(width * DPI / 5.2)  # ~5 px per character at 7 pt
    wrapped = [line for n in notes for line in textwrap.wrap(n, chars, subsequent_indent="  ")]
    panel_h = max(2.2, row_h * len(labels) + 1.3)
    note_h = 0.16 * len(wrapped) + (0.15 if wrapped else 0)
    height = panel_h * nrows + 0.6 + note_h
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False, sharey=True)
    for k, (name, draw) in enumerate(panels):
        ax = axes[k // ncols][k % ncols]
        _rows(ax, labels)
        draw(ax)
        ax.set_title(name, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    for k in range(len(panels), nrows * ncols):
        fig.delaxes(axes[k // ncols][k % ncols])
    fig.suptitle(title, fontsize=11)
    if wrapped:
        fig.text(0.01, 0.01, "\n".join(wrapped), fontsize=7, va="bottom", ha="left", color="dimgrey")
    fig.tight_layout(rect=(0, (note_h + 0.05) / height, 1, 1 - 0.1 / height))
    if path is None:
        return fig
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
    plt.close(fig)
    return Path(path)


# --- the three plots ------------------------------------------------------------------------------

_BATCH_COLORS = ["#9ecae1", "#fdae6b", "#a1d99b", "#bcbddc", "#fc9272"]


def latency_plot(result: Any, path: str | Path | None, title: str = "edgeai bench") -> Any:
    """``edgeai bench --plot``: per batch size, each config's latency; then speed-up vs the baseline
    (with its interval), throughput and cold start. Cells that did not run are named in the notes.

    ``result`` is a MatrixResult (speed-ups drawn) or a sequence of BenchReports (no speed-up panel).
    """
    reports = list(result.reports if hasattr(result, "reports") else result)
    names = list(dict.fromkeys(r.name for r in reports))
    ok = [r for r in reports if r.status == "ok"]
    batches = sorted({r.batch for r in reports}) or [1]
    cells = {(r.name, r.batch): r for r in reports}
    nb = len(batches)
    band = 0.8 / nb

    def y(i: int, k: int) -> float:
        return i + (k - (nb - 1) / 2) * band

    panels: list[Panel] = []
    for b in batches:
        runs = [cells.get((n, b)) for n in names]
        if not any(r is not None and r.status == "ok" for r in runs):
            continue  # nothing ran at this batch size: the notes say why, no empty panel
        panels.append((f"latency at batch {b}", lambda ax, runs=runs: latency_panel(ax, names, runs)))
    baseline = getattr(result, "baseline", None)
    has_speedup = hasattr(result, "speedup") and len(names) > 1 and any(
        result.speedup(r) is not None for r in ok if r.name != baseline)
    if has_speedup:
        def draw_speedup(ax: Any) -> None:
            ys, vals, ivs, base_rows, tags = [], [], [], [], []
            for i, n in enumerate(names):
                for k, b in enumerate(batches):
                    r = cells.get((n, b))
                    ys.append(y(i, k))
                    tags.append(f"b{b}")
                    vals.append(result.speedup(r) if r is not None and r.status == "ok" else None)
                    ivs.append(result.speedup_interval(r) if r is not None and hasattr(result, "speedup_interval")
                               else None)
                    if n == baseline:
                        base_rows.append(y(i, k))
            speedup_panel(ax, ys, vals, ivs, base_rows, height=band * 0.9, tags=tags if nb > 1 else None)
        panels.append((f"speed-up vs {baseline} (p50, same batch)", draw_speedup))

    def grouped(ax: Any, value: Callable[[Any], float | None], fmt: Callable[[float], str], xlabel: str,
                log: bool) -> None:
        every = [value(r) for r in ok]
        for k, b in enumerate(batches):
            vals = [value(cells[(n, b)]) if (n, b) in cells and cells[(n, b)].status == "ok" else None
                    for n in names]
            bar_panel(ax, [y(i, k) for i in range(len(names))], vals, fmt, xlabel, log=log, height=band * 0.9,
                      colors=[_BATCH_COLORS[k % len(_BATCH_COLORS)]], xlim=every)
        if nb > 1:
            _legend_below(ax, [(_BATCH_COLORS[k % len(_BATCH_COLORS)], f"batch {b}") for k, b in enumerate(batches)])

    rates = [r.throughput for r in ok if r.throughput > 0]
    if rates:
        panels.append(("throughput, tail included", lambda ax: grouped(
            ax, lambda r: r.throughput, lambda v: f"{v:,.0f}" if v >= 100 else f"{v:.3g}",
            "items / s (all streams)", log=max(rates) / min(rates) > 20)))
    first = {r.name: r for r in reversed(ok) if r.cold_start_ms is not None}
    settings = getattr(result, "settings", {}) or {}
    warmed = settings.get("engine_warmup")
    if first:
        panels.append(("cold start" + (" (engines warmed up first)" if warmed else ""),
                       lambda ax: cold_start_panel(ax, names, first)))
    notes = [f"latency: {BOX_NOTE}; {len(batches)} batch size(s)" + (
        f"; {result.rounds} interleaved rounds" if hasattr(result, "rounds") else "")]
    if has_speedup:
        notes.append("speed-up: median over rounds of p50(baseline) / p50(config); the error bar is the 95% "
                     "interval over the per-round ratios; grey bars: the interval includes 1x (within noise)")
    if rates:
        notes.append(THROUGHPUT_NOTE)
    if first:
        notes.append("cold start: load (file parse + session creation / compile) + first inference, engines "
                     "already imported" + (f"; {warmed}, so no config pays the engine's one-time set-up"
                                           if warmed else ""))
    not_run: dict[str, list[str]] = {}
    for r in reports:
        if r.status != "ok":
            not_run.setdefault(r.status, []).append(f"{r.name} b{r.batch}")
    notes += [f"not run: {', '.join(c)}: {status}" for status, c in not_run.items()]
    return figure(names, panels, title, notes, path, ncols=max(2, min(3, len(panels))),
                  row_h=max(ROW_H, 0.22 * nb + 0.12))


def cold_start_panel(ax: Any, names: Sequence[str], first: Mapping[str, Any]) -> None:
    """Load then first inference, stacked, per config (ms)."""
    load, infer = [], []
    for n in names:
        r = first.get(n)
        loaded = (r.load_ms if r.load_ms is not None else (r.load_time_s or 0.0) * 1e3) if r else None
        load.append(loaded)
        infer.append(r.cold_start_ms - loaded if r else None)
    ys = list(range(len(names)))
    ax.barh(ys, [v or 0 for v in load], height=0.6, color="tab:blue", label="load")
    ax.barh(ys, [v or 0 for v in infer], left=[v or 0 for v in load], height=0.6, color="tab:orange",
            label="first inference")
    for yy, a, b in zip(ys, load, infer, strict=True):
        if a is None:
            ax.text(0.02, yy, "n/a", fontsize=7, va="center", transform=ax.get_yaxis_transform())
        else:
            ax.annotate(f"{a + b:.3g} ms", (a + b, yy), xytext=(3, 0), textcoords="offset points", fontsize=6.5,
                        va="center")
    top = max((a or 0) + (b or 0) for a, b in zip(load, infer, strict=True))
    ax.set_xlim(0, top * 1.35 or 1)
    ax.set_xlabel("ms", fontsize=8)
    _legend_below(ax, [("tab:blue", "load (parse + session / compile)"), ("tab:orange", "first inference")])


def _legend_below(ax: Any, items: Sequence[tuple[str, str]]) -> None:
    """A legend under the x label, where it can never hide a bar or its value."""
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=c, label=t) for c, t in items], fontsize=7, loc="upper center",
              bbox_to_anchor=(0.5, -0.2), ncol=len(items), frameon=False)


def variant_plot(labels: Sequence[str], runs: Sequence[Any], speedups: Sequence[float | None],
                 intervals: Sequence[tuple[float, float] | None], baseline_rows: Sequence[int], baseline: str,
                 columns: Sequence[tuple[str, Sequence[float | None], Callable[[float], str], str, bool | str]],
                 title: str, notes: Sequence[str], path: str | Path | None) -> Any:
    """The demo's and a bundle's plot: latency, speed-up, then one bar panel per ``columns`` entry
    (title, values, format, x label, scale: False linear, True log, "fraction" 0-100%); a column
    with no values is left out. A None value in a baseline row reads 'reference'."""
    ys = list(range(len(labels)))
    panels: list[Panel] = [("latency at batch 1", lambda ax: latency_panel(ax, labels, runs))]
    if any(v is not None for i, v in enumerate(speedups) if i not in baseline_rows):
        panels.append((f"speed-up vs {baseline}",
                       lambda ax: speedup_panel(ax, ys, speedups, intervals, list(baseline_rows))))
    for name, values, fmt, xlabel, log in columns:
        if any(v is not None for v in values):
            panels.append((name, lambda ax, v=values, f=fmt, x=xlabel, lg=log: _reference_bars(
                ax, ys, v, f, x, lg, baseline_rows)))
    return figure(labels, panels, title, [f"latency: {BOX_NOTE}", *notes], path, ncols=3)


def _reference_bars(ax: Any, ys: Sequence[float], values: Sequence[float | None], fmt: Callable[[float], str],
                    xlabel: str, log: bool | str, baseline_rows: Sequence[int]) -> None:
    bar_panel(ax, ys, values, fmt, xlabel, log=log,
              none_text=["reference" if i in baseline_rows else "n/a" for i in range(len(values))])


def bundle_plot(manifest: Mapping[str, Any], reports: Sequence[Any], path: str | Path | None) -> Any:
    """A bundle's ``report.png``: per variant and device, latency, speed-up vs FP32 on that device,
    parity (max abs error, cosine, top-1 agreement vs the reference) and file size."""
    by_name = {r.name: r for r in reports}
    labels, runs, speedups, intervals, base_rows = [], [], [], [], []
    errors, top1s, sizes = [], [], []
    for v in manifest["variants"]:
        for device in v.get("devices", []):
            i = len(labels)
            labels.append(f"{v['name']} @ {device}")
            runs.append(by_name.get(f"{v['name']}@{device}"))
            lat, par = (v.get("latency") or {}).get(device, {}), (v.get("parity") or {}).get(device, {})
            speedups.append(lat.get("speedup_vs_fp32"))
            intervals.append(tuple(lat["speedup_interval"]) if lat.get("speedup_interval") else None)
            if v["name"] == "fp32":
                base_rows.append(i)
            errors.append(par.get("max_abs"))
            top1s.append(par.get("top1"))
            sizes.append(v.get("size_bytes", 0) / 1024)
    reference = manifest["source"].get("reference") or "the reference"
    columns = [
        (f"max abs error vs {reference}", errors, lambda x: "0" if x == 0 else f"{x:.2g}", "log scale", True),
        ("top-1 agreement", top1s, lambda x: f"{x:.1%}", f"same class as {reference}", "fraction"),
        ("file size", sizes, lambda x: f"{x:,.0f} KB", "KB", False),
    ]
    notes = [f"parity on {manifest.get('parity_data')}; the worst output's cosine is in report.md",
             "speed-up: median over interleaved rounds of p50(fp32 on that device) / p50(variant); the error bar "
             "is the 95% interval; grey: within noise"]
    return variant_plot(labels, runs, speedups, intervals, base_rows, "fp32 on the same device", columns,
                        f"edgeai deploy: {manifest['source']['source']}, batch 1 "
                        f"({'every check passed' if manifest.get('passed') else 'a check FAILED'})", notes, path)
