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


def _pct(v: float | None) -> str | None:
    return None if v is None else f"{v:.1%}"


def _ran_on(side: dict[str, Any]) -> str:
    return ",".join(d.replace("ExecutionProvider", "") for d in side.get("devices_in_effect") or [])


def _precision(side: dict[str, Any]) -> str:
    p, f = side.get("precision", "?"), side.get("file_precision")
    return p if not f or f == p or p.startswith(f) else f"{p} (file {f})"


_SHORT = (("not allclose", "allclose"), ("cosine", "cosine"), ("top-1", "top-1"), ("shape", "shape"))


def _short_failures(failures: Sequence[str]) -> str:
    return ", ".join(next((s for k, s in _SHORT if f.startswith(k)), "NaN/Inf" if "NaN" in f else f[:20])
                     for f in failures)


def _who(side: dict[str, Any]) -> str:
    """'cnn.int8.onnx on openvino:CPU (openvino 2026.4 CPU, int8+f32)' from a report's side dict."""
    model = f"{Path(side['model']).name} " if side.get("model") else ""
    ran = _ran_on(side)
    where = f"on {side.get('device', '?')} " if side.get("engine") != "torch" else ""
    return f"{model}{where}({side.get('engine', '?')} {side.get('engine_version', '')} {ran}, " \
           f"{_precision(side)})".replace("  ", " ")


def parity_table(report: Any) -> Any:
    """Per-output metrics of one ParityReport."""
    rows = [(o.name, "pass" if o.passed else "FAIL", o.max_abs, o.max_rel, o.mean_abs, o.cosine, _pct(o.top1),
             _pct(o.top5), None if o.allclose is None else ("yes" if o.allclose else "no"),
             "; ".join(o.failures) or "") for o in report.outputs]
    title = f"parity: {_who(report.candidate)} vs {_who(report.reference)}, {report.samples} samples"
    return table(title, ["output", "verdict", "max abs", "max rel", "mean abs", "cosine min", "top-1", "top-5",
                         "allclose", "why"], rows)


def check_table(reports: Sequence[Any]) -> Any:
    """One row per (candidate, device): what ran, at which precision, the worst output's numbers."""
    rows = []
    for r in reports:
        c, w = r.candidate, r.worst
        failing = [f for o in r.outputs for f in o.failures]
        rows.append((Path(c["model"]).name if c.get("model") else "?", c.get("device"),
                     f"{c.get('engine')} {_ran_on(c)}", _precision(c), r.samples, w.max_abs, w.mean_abs, w.cosine,
                     _pct(w.top1), _pct(w.top5), "pass" if r.passed else f"FAIL ({_short_failures(failing)})"))
    ref = reports[0].reference if reports else {}
    return table(f"edgeai check vs {_who(ref)}",
                 ["model", "device", "ran on", "precision", "samples", "max abs", "mean abs", "cosine min",
                  "top-1", "top-5", "verdict"], rows)


def layerwise_table(localization: Any, limit: int = 40) -> Any:
    """Per-node relative error in topological order; the first node where the error jumps is marked.

    Long graphs show ``limit`` rows starting a few before the first jump (all rows are in --json).
    """
    loc = getattr(localization, "layerwise", localization)  # a ParityReport or a Localization
    rows_all = list(loc.rows)
    first = loc.first_jump()
    start = 0
    if len(rows_all) > limit and first is not None:
        start = max(0, min(rows_all.index(first) - 3, len(rows_all) - limit))
    rows = []
    for i, r in enumerate(rows_all[start:start + limit], start=start + 1):
        tensor = r.tensor if r.candidate_tensor == r.tensor else r.tensor + " *"
        node = r.node + (f" (after {', '.join(r.via)})" if r.via else "")
        mark = "<- FIRST JUMP" if r is first else ("<- jump" if r.jump else "")
        rows.append((i, node, r.op_type, tensor, ", ".join(r.params), r.error, r.input_error,
                     "new" if r.growth == float("inf") else r.growth, r.cosine, mark))
    shown = f"rows {start + 1}-{start + len(rows)} of {len(rows_all)}; " if len(rows) < len(rows_all) else ""
    title = (f"layerwise: {_who(loc.candidate)} vs {_who(loc.reference)}, {loc.samples} samples "
             f"({shown}error = ||cand - ref|| / ||ref||; jump: error > {loc.min_error:g} and > "
             f"{loc.jump_ratio:g}x the input error)")
    return table(title, ["#", "node", "op", "tensor", "weights", "error", "input error", "growth", "cosine", ""],
                 rows)


def layerwise_footer(localization: Any) -> list[str]:
    """The summary line and notes printed under the layerwise table."""
    loc = getattr(localization, "layerwise", localization)
    lines = [loc.summary()]
    if any(r.candidate_tensor != r.tensor for r in loc.rows):
        lines.append("* compared with the candidate's value after its QuantizeLinear/DequantizeLinear or Cast nodes")
    return lines + [f"note: {n}" for n in loc.notes]


def layerwise_text(localization: Any, limit: int = 40) -> str:
    loc = getattr(localization, "layerwise", localization)
    lines = [render_text(layerwise_table(loc, limit)).rstrip(), *layerwise_footer(loc)]
    return "\n".join(lines)


def parity_text(report: Any) -> str:
    """Verdict, per-output table and (when computed) the layerwise table, as plain text."""
    parts = [report.verdict(), render_text(parity_table(report)).rstrip()]
    if report.layerwise is not None:
        parts.append(layerwise_text(report.layerwise))
    return "\n".join(parts)


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
