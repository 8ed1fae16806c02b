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


@contextlib.contextmanager
def progress(description: str, total: int | None = None) -> Iterator[Callable[[], None]]:
    """A rich progress bar on a terminal; a no-op when output is not a terminal or --json is given."""
    if _quiet or not sys.stderr.isatty():
        yield lambda: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)


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


BENCH_COLUMNS = ["config", "batch", "ran on (threads)", "precision", "cold start ms", "1st run ms", "p50 ms",
                 "p90 ms", "p99 ms", "noise ±%", "items/s", "speedup"]
BENCH_CSV_COLUMNS = ["config", "batch", "status", "engine", "devices_in_effect", "precision", "threads", "streams",
                     "load_ms", "cold_start_ms", "first_run_ms", "warmup_p50_ms", "p50_ms", "p90_ms", "p95_ms",
                     "p99_ms", "mean_ms", "std_ms", "min_ms", "max_ms", "runs", "noise", "items_per_s", "speedup"]


def _sig(v: Any, digits: int = 4) -> Any:
    """Round a float to ``digits`` significant digits for display (CSV keeps full precision)."""
    if not isinstance(v, float) or v == 0 or v != v:
        return v
    import math

    return round(v, max(0, digits - 1 - int(math.floor(math.log10(abs(v))))))


def _ran_on(rt: dict[str, Any], threads: bool = True) -> str:
    active = list(rt.get("devices_in_effect") or [])
    if rt.get("engine") == "onnxruntime":  # CPU is always last in the provider list; the first one runs
        active = active[:1]
    text = f"{rt.get('engine')} {','.join(a.replace('ExecutionProvider', '') for a in active)}".strip()
    return text + (f" ({rt['threads']})" if threads and rt.get("threads") else "")


def _split(result: Any) -> tuple[list[Any], Callable[[Any], float | None]]:
    reports = list(result.reports if hasattr(result, "reports") else result)
    return reports, (result.speedup if hasattr(result, "speedup") else (lambda r: None))


def _status_refs(reports: Sequence[Any]) -> dict[str, int]:
    """Each distinct reason a cell did not run -> its footnote number."""
    refs: dict[str, int] = {}
    for r in reports:
        if r.status != "ok" and r.status not in refs:
            refs[r.status] = len(refs) + 1
    return refs


def bench_rows(result: Any) -> tuple[list[str], list[list[Any]]]:
    """Display columns and rows of a bench matrix (the rich table and Markdown).

    ``cold start ms`` is the config's load (parse + session creation/compile) plus its first
    inference; ``1st run ms`` is the first run at that row's batch size; ``noise ±%`` is half the
    spread of the per-round p50s. A cell that did not run shows ``unsupported [n]`` / ``failed [n]``,
    with the reason in note n (see :func:`bench_notes`).
    """
    reports, speedup = _split(result)
    refs = _status_refs(reports)
    rows: list[list[Any]] = []
    for r in reports:
        rt = r.runtime or {}
        if r.status != "ok":
            rows.append([r.name, r.batch, f"{r.status.split(':')[0]} [{refs[r.status]}]"]
                        + [None] * (len(BENCH_COLUMNS) - 3))
            continue
        lat = r.latency
        p99 = _sig(lat.p99) if lat.p99_reliable else f"{_sig(lat.p99)}*"
        rows.append([r.name, r.batch, _ran_on(rt), rt.get("precision"), _sig(r.cold_start_ms),
                     _sig(r.first_inference_ms), _sig(lat.p50), _sig(lat.p90), p99,
                     None if r.noise is None else round(100 * r.noise, 1),
                     int(round(r.throughput)) if r.throughput >= 100 else _sig(r.throughput, 3), speedup(r)])
    return list(BENCH_COLUMNS), rows


def bench_csv_rows(result: Any) -> tuple[list[str], list[list[Any]]]:
    """Every number of every cell at full precision, one row per cell, for spreadsheets."""
    reports, speedup = _split(result)
    rows = []
    for r in reports:
        rt, lat = r.runtime or {}, r.latency
        stats = [lat.p50, lat.p90, lat.p95, lat.p99, lat.mean, lat.std, lat.min, lat.max, lat.n] if lat else [None] * 9
        rows.append([r.name, r.batch, r.status, rt.get("engine"), " ".join(rt.get("devices_in_effect") or []),
                     rt.get("precision"), rt.get("threads"), r.streams, r.load_ms, r.cold_start_ms,
                     r.first_inference_ms, r.warmup.p50 if r.warmup else None, *stats, r.noise,
                     r.throughput if r.status == "ok" else None, speedup(r)])
    return list(BENCH_CSV_COLUMNS), rows


def bench_notes(result: Any) -> list[str]:
    """The lines printed under a bench table: how it was measured, what to read with care, why cells did not run."""
    reports, _ = _split(result)
    notes = []
    if hasattr(result, "settings"):
        s = result.settings
        notes.append(f"{result.rounds} interleaved rounds; per cell: {s.get('warmup')} warm-up runs, then "
                     f"{s.get('stop')}; {s.get('streams', 1)} stream(s); timing-loop overhead "
                     f"{result.timing_overhead_ns:.0f} ns per run (included)")
        notes.append("cold start = load (file parse + session creation / compile; engine already imported) + "
                     "first inference")
        if result.baseline:
            notes.append(f"speedup: median over rounds of p50({result.baseline}) / p50(config) at the same batch")
    if any(r.status == "ok" and not r.latency.p99_reliable for r in reports):
        notes.append("p99*: fewer than 1000 runs, so fewer than 10 runs lie above p99; treat it as close to max")
    notes += [f"[{n}] {status}" for status, n in _status_refs(reports).items()]
    return notes


def bench_table(result: Any, baseline: str | None = None, speedups: dict[str, float] | None = None) -> Any:
    """A rich table of a MatrixResult (or of a list of BenchReports)."""
    columns, rows = bench_rows(result)
    if speedups is not None and not hasattr(result, "speedups"):
        for row, r in zip(rows, result, strict=True):
            row[-1] = speedups.get(f"{r.name}|{r.batch}")
    base = getattr(result, "baseline", None) or baseline
    columns[-1] = f"speedup vs {base}" if base else "speedup"
    t = table("latency (steady state) and cold start", columns, rows)
    t.columns[0].no_wrap = True  # config names are what the reader scans for; other columns give way
    t.columns[2].no_wrap = True
    return t


def bench_csv(result: Any) -> str:
    return csv_text(*bench_csv_rows(result))


def bench_markdown(result: Any) -> str:
    columns, rows = bench_rows(result)
    base = getattr(result, "baseline", None)
    columns[-1] = f"speedup vs {base}" if base else "speedup"
    return markdown_table(columns, rows) + "".join(f"\n{n}\n" for n in bench_notes(result))


def comparison_table(comparison: Any) -> Any:
    rows = [(c.name, c.batch, c.verdict.upper() if c.verdict == "regression" else c.verdict, c.old_p50_ms,
             c.new_p50_ms, None if c.change is None else f"{c.change:+.1%}",
             None if c.threshold is None else f"±{c.threshold:.1%}", c.note[:80]) for c in comparison.changes]
    return table(f"compared with {comparison.old_source}", ["config", "batch", "verdict", "old p50 ms",
                                                            "new p50 ms", "change", "noise", "note"], rows)


def latency_plot(reports: Sequence[Any], path: str | Path, title: str = "edgeai bench") -> Path:
    """Latency distribution per cell (box p25-p75, whiskers p1-p99), throughput bars, and cold start
    (load + first inference) per config; unsupported cells are listed under the plot. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgeai.atomic import atomic_path

    reports = list(reports.reports if hasattr(reports, "reports") else reports)
    ok = [r for r in reports if r.status == "ok"]
    bad = [f"{r.name} b{r.batch}: {r.status}"[:150] for r in reports if r.status != "ok"]
    labels = [f"{r.name}\nb{r.batch}" for r in ok]
    cold: dict[str, tuple[float, float]] = {}
    for r in ok:
        if r.name not in cold and r.cold_start_ms is not None:
            cold[r.name] = (r.cold_start_ms - (r.first_inference_ms or 0.0), r.first_inference_ms or 0.0)
    width = max(10.0, 1.1 * len(ok) + 6)
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(width, 5.2), gridspec_kw={"width_ratios": [3, 2, 2]})
    if ok:
        ax1.boxplot([r.samples_ms or [r.latency.p50] for r in ok], whis=(1, 99), showfliers=False)
        ax1.set_xticks(range(1, len(ok) + 1), labels, fontsize=7, rotation=35, ha="right")
        p50s = [r.latency.p50 for r in ok]
        if max(p50s) / max(min(p50s), 1e-9) > 20:
            ax1.set_yscale("log")
        ax2.bar(range(len(ok)), [r.throughput for r in ok], color="tab:green")
        ax2.set_xticks(range(len(ok)), labels, fontsize=7, rotation=35, ha="right")
    ax1.set_ylabel("latency per run (ms)")
    ax1.set_title("latency: box p25-p75, line p50, whiskers p1-p99", fontsize=9)
    ax2.set_ylabel("items / s")
    ax2.set_title("throughput", fontsize=9)
    names = list(cold)
    ax3.bar(range(len(names)), [cold[n][0] for n in names], color="tab:blue", label="load (parse + compile)")
    ax3.bar(range(len(names)), [cold[n][1] for n in names], bottom=[cold[n][0] for n in names],
            color="tab:orange", label="first inference")
    ax3.set_xticks(range(len(names)), names, fontsize=7, rotation=35, ha="right")
    ax3.set_ylabel("ms")
    ax3.set_title("cold start", fontsize=9)
    ax3.legend(fontsize=7)
    fig.suptitle(title)
    if bad:
        fig.text(0.01, 0.01, "not run: " + "; ".join(bad[:4]) + (f"; +{len(bad) - 4} more" if len(bad) > 4 else ""),
                 fontsize=6, color="tab:red", wrap=True)
    fig.tight_layout(rect=(0, 0.05 if bad else 0, 1, 1))
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
