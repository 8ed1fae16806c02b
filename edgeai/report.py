"""Rendering results: rich tables, JSON, CSV, Markdown and PNG plots. No numbers are computed here."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

_quiet = False


def set_quiet(quiet: bool) -> None:
    """--json and non-terminal output turn progress bars off."""
    global _quiet
    _quiet = quiet


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, markup=False, soft_wrap=False, width=None if sys.stdout.isatty() else 160)


_active = False  # one progress display at a time: a stage inside a pipeline stays on the outer bar


@contextlib.contextmanager
def progress(description: str, total: int | None = None) -> Iterator[Callable[..., None]]:
    """A rich progress bar on a terminal; a no-op when output is not a terminal, --json is given, or
    another bar is already showing (so a pipeline keeps one display). ``advance(description=...)``
    may also rename the bar, to show the stage now running."""
    global _active
    if _quiet or _active or not sys.stderr.isatty():
        yield lambda description=None: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    _active = True
    try:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console(stderr=True), transient=True) as bar:
            task = bar.add_task(description, total=total)
            yield lambda description=None: bar.update(task, advance=1, description=description)
    finally:
        _active = False


def to_json(obj: Any) -> str:
    data = obj.to_dict() if hasattr(obj, "to_dict") else obj
    return json.dumps(data, indent=2, default=str, allow_nan=False) if _finite(data) else \
        json.dumps(_clean(data), indent=2, default=str)


def _finite(data: Any) -> bool:
    try:
        json.dumps(data, allow_nan=False, default=str)
        return True
    except ValueError:
        return False


def _clean(data: Any) -> Any:
    import math

    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _clean(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_clean(v) for v in data]
    return data


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e-3 or abs(v) >= 1e4 else f"{v:.{digits}f}".rstrip("0").rstrip(".")
    return str(v)


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Any:
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for i, c in enumerate(columns):
        t.add_column(c, justify="left" if i == 0 else "right")
    for r in rows:
        t.add_row(*[_fmt(v) for v in r])
    return t


def render_text(renderable: Any, width: int = 160) -> str:
    from rich.console import Console

    c = Console(width=width, record=True, file=open(__import__("os").devnull, "w"))  # noqa: SIM115
    c.print(renderable)
    return c.export_text()


def parity_table(report: Any) -> Any:
    rows = [(o.name, "pass" if o.passed else "FAIL", o.max_abs, o.max_rel, o.mean_abs, o.cosine,
             None if o.top1 is None else f"{o.top1:.1%}", "; ".join(o.failures) or "") for o in report.outputs]
    c = report.candidate
    title = (f"parity: {c.get('engine', '?')} {c.get('device', '')} @ {c.get('precision', '?')} vs "
             f"{report.reference.get('engine', '?')} ({report.samples} samples)")
    return table(title, ["output", "verdict", "max abs", "max rel", "mean abs", "cosine min", "top-1", "why"], rows)


def parity_table_text(report: Any) -> str:
    return render_text(parity_table(report))


def bench_table(reports: Sequence[Any], baseline: str | None = None, speedups: dict[str, float] | None = None) -> Any:
    rows = []
    for r in reports:
        if r.status != "ok":
            rows.append((r.name, r.batch, r.status, None, None, None, None, None, None, None))
            continue
        rt = r.runtime
        rows.append((r.name, r.batch, f"{rt.get('engine')} {','.join(rt.get('devices_in_effect', []))}",
                     rt.get("precision"), r.latency.p50, r.latency.p90, r.latency.p99, r.throughput,
                     r.first_inference_ms, (speedups or {}).get(f"{r.name}|{r.batch}")))
    cols = ["config", "batch", "ran on", "precision", "p50 ms", "p90 ms", "p99 ms", "items/s", "first ms",
            f"speedup vs {baseline}" if baseline else "speedup"]
    return table("latency", cols, rows)


def latency_plot(reports: Sequence[Any], path: str | Path, title: str = "edgeai bench") -> Path:
    """Latency distribution per config (box plot) and a throughput bar chart, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgeai.atomic import atomic_path

    ok = [r for r in reports if r.status == "ok"]
    labels = [f"{r.name}\nb{r.batch}" for r in ok]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(ok) + 4), 4.5))
    ax1.boxplot([r.samples_ms or [r.latency.p50] for r in ok], showfliers=False)
    ax1.set_xticks(range(1, len(ok) + 1), labels, fontsize=7, rotation=30, ha="right")
    ax1.set_ylabel("latency per run (ms)")
    ax1.set_title("latency distribution (p50 line, box p25-p75)")
    ax2.bar(range(len(ok)), [r.throughput for r in ok], color="tab:green")
    ax2.set_xticks(range(len(ok)), labels, fontsize=7, rotation=30, ha="right")
    ax2.set_ylabel("items / s")
    ax2.set_title("throughput")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def csv_text(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(columns)
    w.writerows([[("" if v is None else v) for v in r] for r in rows])
    return buf.getvalue()


def layerwise_table(report: Any, limit: int = 25) -> Any:
    """Per-node error in topological order; the first nodes where the error jumps are marked."""
    rows = []
    for entry in list(report.layerwise or [])[:limit]:
        rows.append((entry.get("node"), entry.get("op_type"), entry.get("tensor"), entry.get("max_abs"),
                     entry.get("cosine"), "<-- jump" if entry.get("jump") else ""))
    return table("layerwise: first divergent nodes (topological order)",
                 ["node", "op", "tensor", "max abs", "cosine", ""], rows)
