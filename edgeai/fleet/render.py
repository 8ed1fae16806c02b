"""Rendering fleet results: tables and plots with a row group per target. No numbers are computed here.

Written in the style of :mod:`edgeai.report` (and meant to move there): rich tables, Markdown and
PNG plots written atomically. A cell that did not run shows ``failed [n]`` / ``unsupported [n]``
with its reason in note n under the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeai.atomic import atomic_path
from edgeai.report import _fmt, _pct, _sig, markdown_table, render_text, table

BENCH_COLUMNS = ["target", "host / CPU", "model", "device", "batch", "ran on", "precision", "p50 ms", "p90 ms",
                 "p99 ms", "items/s", "cold start ms", "status"]
CHECK_COLUMNS = ["target", "host / CPU", "candidate", "device", "ran on", "precision", "samples", "max abs",
                 "mean abs", "cosine min", "top-1", "verdict"]
TARGET_COLUMNS = ["target", "status", "host", "address", "CPU", "features", "devices", "engines"]


def _refs(rows: Sequence[Any]) -> dict[str, int]:
    refs: dict[str, int] = {}
    for r in rows:
        if not r.ok and r.status not in refs:
            refs[r.status] = len(refs) + 1
    return refs


def _provider(text: str | None) -> str:
    # onnxruntime lists CPU last as its fallback; the first provider is the one that runs
    first = (text or "").split(",")[0]
    return first.replace("ExecutionProvider", "")


def _who(rows: Sequence[Any]) -> str:
    r = rows[0]
    return f"{r.host} / {r.cpu}" if r.cpu and r.cpu != "?" else (r.host or "?")


def fleet_rows(report: Any) -> tuple[list[str], list[list[list[Any]]]]:
    """Columns, and per target group the display rows (target and host only on a group's first row)."""
    refs = _refs(report.rows)
    groups = []
    for target, rows in report.groups().items():
        shown: list[list[Any]] = []
        for i, r in enumerate(rows):
            head = [target, _who(rows)] if i == 0 else ["", ""]
            ran = f"{(r.engine or '').split(' ')[0]} {_provider(r.provider)}".strip() or None
            status = "ok" if r.ok else f"{r.status.split(':')[0]} [{refs[r.status]}]"
            m = r.metrics
            if report.kind == "bench":
                if not r.ok:
                    shown.append(head + [r.model, r.device, r.batch, None, r.precision] + [None] * 5 + [status])
                    continue
                p99 = _sig(m.get("p99_ms"))
                if (m.get("runs") or 0) < 1000:
                    p99 = f"{p99}*"
                rate = m.get("items_per_s")
                shown.append(head + [r.model, r.device, r.batch, ran, r.precision, _sig(m.get("p50_ms")),
                                     _sig(m.get("p90_ms")), p99, None if rate is None else
                                     (int(round(rate)) if rate >= 100 else _sig(rate, 3)),
                                     _sig(m.get("cold_start_ms")), status])
            else:
                if not r.ok:
                    shown.append(head + [r.model, r.device, None, r.precision] + [None] * 5 + [status])
                    continue
                verdict = "pass" if m.get("passed") else "FAIL"
                shown.append(head + [r.model, r.device, ran, r.precision, m.get("samples"), m.get("max_abs"),
                                     m.get("mean_abs"), m.get("cosine"), _pct(m.get("top1")), verdict])
        groups.append(shown)
    return list(BENCH_COLUMNS if report.kind == "bench" else CHECK_COLUMNS), groups


def fleet_notes(report: Any) -> list[str]:
    """The lines under a fleet table: how it ran, and why each cell that did not run did not."""
    s = report.settings
    shipped = ", ".join(f"{m['name']} {m['sha256'][:12]}" for m in report.models)
    notes = [f"{len(report.targets)} target(s) via {s.get('address')}; files shipped once, sha256-checked on "
             f"arrival ({shipped})"]
    if report.kind == "bench":
        notes.append(f"each target ran its own cells in one process: {s.get('rounds')} interleaved rounds, "
                     f"{s.get('warmup')} warm-up runs, then {s.get('stop')} per cell; one benchmark at a time per box")
        if any(r.ok and (r.metrics.get("runs") or 0) < 1000 for r in report.rows):
            notes.append("p99*: fewer than 1000 runs, so fewer than 10 runs lie above p99; treat it as close to max")
    elif s.get("split"):
        notes.append("split: the data was divided among the boxes of each group; the verdict merges their "
                     "statistics (equal to one box over all the data)")
    notes += [f"[{n}] {status}" for status, n in _refs(report.rows).items()]
    return notes


def fleet_table(report: Any) -> Any:
    """A rich table of a FleetReport, one section per target."""
    from rich.table import Table

    columns, groups = fleet_rows(report)
    verb = "latency (steady state) and cold start" if report.kind == "bench" else "parity"
    t = Table(title=f"edgeai fleet {report.kind}: {verb}, {len(groups)} target group(s)", title_justify="left")
    for i, c in enumerate(columns):
        t.add_column(c, justify="left" if i < 4 else "right", no_wrap=i in (0, 2))
    for g, rows in enumerate(groups):
        if g:
            t.add_section()
        for r in rows:
            t.add_row(*[_fmt(v) for v in r])
    return t


def fleet_text(report: Any, width: int = 200) -> str:
    return "\n".join([render_text(fleet_table(report), width).rstrip(), *fleet_notes(report)])


def fleet_markdown(report: Any) -> str:
    columns, groups = fleet_rows(report)
    return markdown_table(columns, [r for g in groups for r in g]) + "".join(f"\n{n}\n" for n in fleet_notes(report))


def targets_table(infos: Sequence[Any]) -> Any:
    """The boxes that joined: what each reported about itself."""
    rows = [(t.name, t.status if t.ok else t.status[:60], t.host, t.address, t.cpu.get("model"),
             " ".join(t.cpu.get("features") or []), ", ".join(t.devices),
             ", ".join(f"{k} {str(v).split('-')[0]}" for k, v in t.engines.items() if k != "numpy")) for t in infos]
    return table(f"edgeai fleet targets ({len(rows)})", TARGET_COLUMNS, rows)


def fleet_plot(report: Any, path: str | Path) -> Path:
    """One panel per target group, side by side on a shared axis. Bench: the latency distribution of
    each cell (box p25-p75, line p50, whiskers p1-p99). Check: the worst output's max abs error per
    candidate and device (log scale; red when the verdict failed). Cells that did not run are marked.
    Written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = report.groups()
    widths = [max(1, len(rows)) for rows in groups.values()]
    fig, axes = plt.subplots(1, len(groups), figsize=(min(30.0, max(8.0, 0.45 * sum(widths) + 1.5 * len(groups))), 6.0),
                             sharey=True, squeeze=False, gridspec_kw={"width_ratios": widths})
    for ax, (target, rows) in zip(axes[0], groups.items(), strict=True):
        labels = [f"{r.model}\n{r.device}" + (f" b{r.batch}" if r.batch else "") for r in rows]
        for j, r in enumerate(rows):
            if not r.ok:
                ax.text(j, 0.03, r.status.split(":")[0], rotation=90, fontsize=7, color="tab:red",
                        transform=ax.get_xaxis_transform())
            elif report.kind == "bench":
                data = list(r.samples_ms) or [r.metrics["p50_ms"]]
                ax.boxplot([data], positions=[j], whis=(1, 99), showfliers=False, widths=0.6)
            else:
                err = max(float(r.metrics.get("max_abs") or 0.0), 1e-12)
                ax.bar(j, err, color="tab:blue" if r.metrics.get("passed") else "tab:red")
        ax.set_xticks(range(len(rows)), labels, fontsize=7, rotation=35, ha="right")
        ax.set_xlim(-0.6, len(rows) - 0.4)
        ax.set_title(f"{target}\n{_who(rows)}"[:80], fontsize=8)
    if report.kind == "bench":
        axes[0][0].set_ylabel("latency per run (ms)")
        ran = [r for r in report.rows if r.ok]
        low = min((r.metrics["p50_ms"] for r in ran), default=1.0)
        high = max((max(r.samples_ms or (r.metrics["p99_ms"],)) for r in ran), default=1.0)
        if high / max(low, 1e-9) > 20:  # one slow cell (or one noisy box) would flatten the rest
            axes[0][0].set_yscale("log")
    else:
        axes[0][0].set_yscale("log")
        axes[0][0].set_ylabel("max abs error vs reference (red: FAIL)")
    fig.suptitle(f"edgeai fleet {report.kind}: a panel per target")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return Path(path)
