"""Rendering results: rich tables, JSON, CSV, Markdown and PNG plots. No numbers are computed here."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edgeai.plots import latency_plot  # noqa: F401  (bench --plot; drawn in edgeai.plots)
from edgeai.progress import console, progress, set_quiet  # noqa: F401  (the CLI's names for them)


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


def _providers(side: dict[str, Any]) -> str:
    """'CPU' / 'CUDA,CPU' from a parity report side (its RuntimeInfo dict)."""
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
    ran = _providers(side)
    where = f"on {side.get('device', '?')} " if side.get("engine") != "torch" else ""
    return f"{model}{where}({side.get('engine', '?')} {side.get('engine_version', '')} {ran}, " \
           f"{_precision(side)})".replace("  ", " ")


def parity_table(report: Any) -> Any:
    """Per-output metrics of one ParityReport."""
    rows = [(o.name, "pass" if o.passed else "FAIL", o.kind or "", _task_cell(o), o.max_abs, o.max_rel, o.mean_abs,
             o.cosine, _pct(o.top1), _pct(o.top5), None if o.allclose is None else ("yes" if o.allclose else "no"),
             "; ".join(o.failures) or "") for o in report.outputs]
    data = report.data_description() if hasattr(report, "data_description") else f"{report.samples} samples"
    title = f"parity: {_who(report.candidate)} vs {_who(report.reference)}, {data}"
    return table(title, ["output", "verdict", "kind", "task metric", "max abs", "max rel", "mean abs", "cosine min",
                         "top-1", "top-5", "allclose", "why"], rows)


def _task_cell(o: Any) -> str:
    """The task metrics of an output's kind, e.g. ``max_abs_diff 0.21, decision_agreement 100%``."""
    summary = o.task_summary() if hasattr(o, "task_summary") else ""
    return summary.split(": ", 1)[1] if ": " in summary else summary


def check_table(reports: Sequence[Any]) -> Any:
    """One row per (candidate, device): what ran, at which precision, the worst output's numbers."""
    rows = []
    for r in reports:
        c, w = r.candidate, r.worst
        failing = [f for o in r.outputs for f in o.failures]
        rows.append((Path(c["model"]).name if c.get("model") else "?", c.get("device"),
                     f"{c.get('engine')} {_providers(c)}", _precision(c), r.samples, w.max_abs, w.mean_abs, w.cosine,
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


BENCH_COLUMNS = ["config", "batch", "ran on (threads)", "precision", "cold start ms", "1st run ms", "p50 ms",
                 "p90 ms", "p99 ms", "noise ±%", "items/s", "speedup"]
BENCH_CSV_COLUMNS = ["config", "batch", "status", "engine", "devices_in_effect", "precision", "threads", "streams",
                     "load_ms", "cold_start_ms", "first_run_ms", "warmup_p50_ms", "p50_ms", "p90_ms", "p95_ms",
                     "p99_ms", "mean_ms", "std_ms", "min_ms", "max_ms", "runs", "noise", "items_per_s", "speedup",
                     "speedup_low", "speedup_high"]


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


def _speedup_cell(result: Any, report: Any) -> Any:
    """``2.31x [1.9, 2.8]``: the speed-up and its 95% interval; ``baseline`` on the baseline's rows."""
    if not hasattr(result, "speedup"):
        return None
    if report.name == getattr(result, "baseline", None):
        return "baseline"
    value = result.speedup(report)
    if value is None:
        return None
    interval = result.speedup_interval(report) if hasattr(result, "speedup_interval") else None
    return f"{_sig(value, 3)}x" + (f" [{_sig(interval[0], 2)}, {_sig(interval[1], 2)}]" if interval else "")


def speedup_warnings(result: Any) -> list[str]:
    """Speed-ups whose noise is as large as the difference they report: the interval includes 1x,
    or the baseline or config was so noisy (over ±50% between rounds) that the number means little."""
    if not hasattr(result, "speedup_interval"):
        return []
    reports = [r for r in result.reports if r.status == "ok"]
    base = {r.batch: r for r in reports if r.name == result.baseline}
    out = []
    for r in reports:
        value, interval = result.speedup(r), result.speedup_interval(r)
        if r.name == result.baseline or value is None or interval is None:
            continue
        b = base.get(r.batch)
        noisy = [(n, x.noise) for n, x in ((result.baseline, b), (r.name, r)) if x is not None and (x.noise or 0) > 0.5]
        if interval[0] <= 1 <= interval[1]:
            out.append(f"warning: {r.name} at batch {r.batch}: {_sig(value, 3)}x vs {result.baseline} is within the "
                       f"noise (95% interval [{_sig(interval[0], 2)}, {_sig(interval[1], 2)}] includes 1x): not a "
                       "measured difference; run longer (--duration) on a quieter machine")
        elif noisy:
            who = " and ".join(f"{n} ±{x:.0%}" for n, x in noisy)
            out.append(f"warning: {r.name} at batch {r.batch}: {_sig(value, 3)}x vs {result.baseline} rests on noisy "
                       f"rounds ({who} between rounds; 95% interval [{_sig(interval[0], 2)}, {_sig(interval[1], 2)}]); "
                       "run longer (--duration) on a quieter machine")
    return out


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
                     int(round(r.throughput)) if r.throughput >= 100 else _sig(r.throughput, 3),
                     _speedup_cell(result, r)])
    return list(BENCH_COLUMNS), rows


def bench_csv_rows(result: Any) -> tuple[list[str], list[list[Any]]]:
    """Every number of every cell at full precision, one row per cell, for spreadsheets."""
    reports, speedup = _split(result)
    interval = getattr(result, "interval", lambda r: None)
    rows = []
    for r in reports:
        rt, lat = r.runtime or {}, r.latency
        est = interval(r)
        stats = [lat.p50, lat.p90, lat.p95, lat.p99, lat.mean, lat.std, lat.min, lat.max, lat.n] if lat else [None] * 9
        rows.append([r.name, r.batch, r.status, rt.get("engine"), " ".join(rt.get("devices_in_effect") or []),
                     rt.get("precision"), rt.get("threads"), r.streams, r.load_ms, r.cold_start_ms,
                     r.first_inference_ms, r.warmup.p50 if r.warmup else None, *stats, r.noise,
                     r.throughput if r.status == "ok" else None, speedup(r), None if est is None else est.low,
                     None if est is None else est.high])
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
        warm = "; engine imported and warmed up on a dummy model first, so no config pays its one-time set-up" \
            if s.get("engine_warmup") else "; engine already imported"
        notes.append(f"cold start = load (file parse + session creation / compile{warm}) + first inference")
        notes.append("items/s = batch x timed runs / their wall time (the slow tail included; warm-up not)")
        if result.baseline:
            notes.append(f"speedup: p50({result.baseline}) / p50(config) at the same batch, geometric mean over "
                         "rounds [95% interval over rounds]")
    if any(r.status == "ok" and not r.latency.p99_reliable for r in reports):
        notes.append("p99*: fewer than 1000 runs, so fewer than 10 runs lie above p99; treat it as close to max")
    notes += [f"[{n}] {status}" for status, n in _status_refs(reports).items()]
    return notes + speedup_warnings(result)


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


# --- bundles -------------------------------------------------------------------------------------
# Rows shared by `edgeai deploy`, `edgeai info BUNDLE` and report.md.

VARIANT_COLUMNS = ["variant", "file", "precision", "size KB", "default for", "sha256"]
CHECK_COLUMNS = ["variant", "device", "parity", "cosine", "max abs", "top-1", "p50 ms", "p99 ms",
                 "speedup vs fp32", "ran on"]


def variant_rows(manifest: Mapping[str, Any], integrity: Mapping[str, str] | None = None) -> list[list[Any]]:
    rows = []
    for v in manifest["variants"]:
        sha = v["sha256"][:12] + "..."
        if integrity is not None:
            sha += f" ({integrity.get(v['name'], '?')})"
        rows.append([v["name"], v["file"], v.get("precision"), round(v.get("size_bytes", 0) / 1024, 1),
                     ", ".join(v.get("default_for", [])) or "-", sha])
    return rows


def check_rows(manifest: Mapping[str, Any]) -> list[list[Any]]:
    rows = []
    for v in manifest["variants"]:
        for device in v.get("devices", []):
            p, lat = (v.get("parity") or {}).get(device, {}), (v.get("latency") or {}).get(device, {})
            top1 = p.get("top1")
            rows.append([v["name"], device, "pass" if p.get("passed") else "FAIL", p.get("cosine"), p.get("max_abs"),
                         None if top1 is None else f"{top1:.1%}", lat.get("p50_ms"), lat.get("p99_ms"),
                         lat.get("speedup_vs_fp32"), lat.get("ran_on", lat.get("status"))])
    return rows


def io_lines(manifest: Mapping[str, Any]) -> list[str]:
    lines = []
    for kind in ("inputs", "outputs"):
        for s in manifest[kind]:
            shape = "[" + ", ".join(str(d) for d in s["shape"]) + "]"
            rng = f", values in [{s['value_range'][0]}, {s['value_range'][1]})" if s.get("value_range") else ""
            lines.append(f"{kind[:-1]:6} {s['name']}: {s['dtype']} {shape}{rng}")
    return lines


def report_markdown(manifest: Mapping[str, Any], with_plot: bool = True) -> str:
    """``report.md``: what the bundle holds and the evidence, as Markdown tables."""
    src = manifest["source"]
    parts = [f"# edgeai bundle: {src['source']}", "",
             f"Made {manifest['created']} by edgeai {manifest['edgeai_version']} (manifest {manifest['manifest_version']}); "
             f"mode `{manifest['mode']}`; engines: " + ", ".join(f"{k} {v}" for k, v in manifest["engines"].items()) + ".",
             "", f"Checked on: {manifest['checked_on']['cpu'].get('model')} "
             f"({', '.join(manifest['checked_on']['cpu'].get('features', [])) or 'no ISA features detected'}).",
             "", "## Inputs and outputs", "", "```", *io_lines(manifest), "```", ""]
    if manifest.get("dynamic_dims"):
        parts += [f"Dynamic dims: {', '.join(manifest['dynamic_dims'])}.", ""]
    if manifest.get("preprocessing"):
        parts += ["Preprocessing: `" + str(manifest["preprocessing"]) + "`", ""]
    parts += ["## Variants", "", markdown_table(VARIANT_COLUMNS, variant_rows(manifest)),
              f"## Parity (against {src.get('reference')}) and latency (batch 1)", "",
              f"Parity data: {manifest['parity_data']}.", "", markdown_table(CHECK_COLUMNS, check_rows(manifest))]
    if with_plot:
        parts += ["![latency](report.png)", ""]
    if manifest.get("notes"):
        parts += ["## Notes", "", *[f"- {n}" for n in manifest["notes"]], ""]
    parts += [f"Verdict: {'every check passed' if manifest['passed'] else 'a check FAILED (written with --force)'}.", ""]
    return "\n".join(parts)
