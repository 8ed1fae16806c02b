"""What each command prints on a terminal: one function per result, rendering only.

The commands in ``edgeai.cli`` compute nothing here; these functions take the results the API
returned and print them through :func:`edgeai.report.console`.
"""

from __future__ import annotations

from typing import Any

from edgeai.demo import COLUMNS, table_rows
from edgeai.report import (
    CHECK_COLUMNS,
    VARIANT_COLUMNS,
    bench_notes,
    bench_table,
    check_rows,
    check_table,
    comparison_table,
    console,
    io_lines,
    layerwise_footer,
    layerwise_table,
    parity_table,
    table,
    variant_rows,
)


def print_export(result: Any, source: str) -> None:
    c = console()
    v = result.validation
    c.print(f"exported {source} -> {result.path} ({result.size_bytes / 1024:.1f} KB, {result.exporter}, "
            f"opset {result.opset}, {result.export_time_s:.1f}s)")
    for s in result.inputs:
        c.print(f"  input  {s}")
    for s in result.outputs:
        c.print(f"  output {s}")
    if result.attempts:
        c.print(f"  tried first: {'; '.join(result.attempts)}")
    if v is not None:
        c.print(f"  validated at unseen dims {result.validation_dims}: {v.verdict()}")
    else:
        c.print("  not validated (--no-validate)")


def _pct(v: Any) -> str:
    return "" if v is None else f"{v:.0%}"


def _speed_text(speedup: Any, interval: Any, rounds: Any = None) -> str:
    if speedup is None:
        return ""
    text = f"{speedup:.3g}x"
    if interval and None not in interval:
        text += f" [{interval[0]:.3g}, {interval[1]:.3g}]"
    return text + (f" over {rounds} rounds" if rounds else "")


def print_quantize(result: Any, device: str) -> None:
    c = console()
    lat, worst = result.latency or {}, result.parity.worst
    shapes = lat.get("shapes")
    at = ", ".join(f"{k} {v}" for k, v in shapes.items()) if shapes else "batch 1"
    rows = [("size KB", result.size_before / 1024, result.size_after / 1024),
            (f"p50 ms on {result.device if device == 'auto' else device} ({at})", lat.get("fp32_p50_ms"),
             lat.get("p50_ms")),
            ("output cosine (worst)", 1.0, worst.cosine)]
    if worst.top1 is not None:
        rows.append(("top-1 agreement", 1.0, worst.top1))
    if result.coverage is not None:
        rows.append(("INT8 share of MACs / weights", "0% / 0%",
                     f"{_pct(result.coverage.get('mac_share'))} / {_pct(result.coverage.get('weight_share'))}"))
    c.print(table(f"{result.mode} -> {result.dst}", ["", "FP32", "result"], rows))
    if result.candidates and "status" in result.candidates[0]:  # auto --device auto: devices x precisions
        c.print(table("auto --device auto: every candidate on this machine", ["candidate", "status", "cosine",
                                                                              "speed-up vs cpu f32 [95%]", "why"],
                      [(r["name"], r["status"], r["cosine"], _speed_text(r["speedup"], r.get("speedup_interval")),
                        (r["why"] or "")[:90]) for r in result.candidates]))
    elif result.candidates:
        c.print(table("auto: configs tried", ["config", "kept in float", "passed", "cosine", "top-1", "INT8 MACs",
                                              "p50 ms", "speed-up [95%]", "error"],
                      [(r["name"], r["excluded_nodes"], r["passed"], r["cosine"], r["top1"], _pct(r.get("int8_macs")),
                        r["p50_ms"], _speed_text(r["speedup"], r.get("interval")), (r["error"] or "")[:60])
                       for r in result.candidates]))
    c.print(result.parity.verdict())
    for w in result.parity.warnings:
        c.print(f"warning: {w}")
    if lat.get("int8_speedup") is not None:  # auto kept FP32: say what INT8 measured
        c.print(f"INT8 ({lat.get('candidate')}) vs FP32 on {device}: "
                f"{_speed_text(lat['int8_speedup'], lat.get('interval'), lat.get('rounds'))}")
    elif lat.get("speedup") is not None:
        c.print(f"speed-up vs FP32 on {device}: {_speed_text(lat['speedup'], lat.get('interval'), lat.get('rounds'))} "
                f"(p50 {lat.get('fp32_p50_ms')} vs {lat.get('p50_ms')} ms)")
    if result.config:
        c.print(f"config: {result.config}")
    if result.excluded_nodes:
        c.print(f"kept in float: {list(result.excluded_nodes)}")
    for n in result.notes:
        c.print(f"note: {n}")


def print_generation_quantize(result: Any, device: str) -> None:
    """A decoder's quantization: sizes, the generation (and task) verdicts, and what ``auto`` tried."""
    c = console()
    rows: list[tuple[Any, ...]] = [("size KB", result.size_before / 1024, result.size_after / 1024)]
    if result.parity is not None:
        rows += [("greedy token agreement", 1.0, result.parity.token_agreement),
                 ("step logit cosine (worst)", 1.0, result.parity.worst_cosine)]
    if result.task is not None:
        rows.append((result.task.result.metric, 0.0, result.task.result.value))
    ppl = getattr(result, "perplexity", None)
    if ppl is not None:
        rows.append(("perplexity (held-out)", ppl.reference.value, ppl.candidate.value))
    c.print(table(f"{result.mode} -> {result.dst}", ["", "FP32", "result"], rows))
    part = result.parts["decoder"]
    if part.candidates:
        judged = " and ".join(([] if result.parity is None else ["generation"])
                              + ([] if result.task is None else [result.task.task])
                              + ([] if ppl is None else ["perplexity"]))
        c.print(table(f"auto: configs tried (judged by {judged} on {device})",
                      ["config", "passed", "token agreement", "worst cosine", "task error", "changed",
                       "perplexity +", "tokens/s", "speed-up", "error"],
                      [(r["name"], r["passed"], r.get("token_agreement"), r.get("worst_cosine"),
                        (r.get("task") or {}).get("value"), len((r.get("task") or {}).get("changed", [])),
                        (r.get("perplexity") or {}).get("increase"), r.get("tokens_per_s"), r.get("speedup"),
                        (r.get("error") or "")[:60])
                       for r in part.candidates]))
    for verdict in (result.parity, result.task, ppl):
        if verdict is not None:
            c.print(verdict.verdict())
    seen: set[str] = set()
    for role, p in result.parts.items():
        if p.config:
            c.print(f"{role} config: {p.config}")
        for n in p.notes:
            if n not in seen:  # auto's notes are on every part
                seen.add(n)
                c.print(f"note: {n}")


def print_run(summary: dict[str, Any]) -> None:
    c = console()
    c.print(f"ran on {summary['ran_on']}")
    for k, v in summary["input_problems"].items():
        c.print(f"  warning: input {k!r} has {v}")
    for k, v in summary["outputs"].items():
        warn = f"  [{v['nonfinite']} NaN/Inf]" if v["nonfinite"] else ""
        c.print(f"  {k}: {v['dtype']} {v['shape']} sum={v['checksum']:.6g}{warn}")
    if summary["written"]:
        c.print(f"wrote {summary['written']}")


def print_check(reports: list[Any]) -> None:
    c = console()
    for r in reports:
        c.print(parity_table(r))
        if r.layerwise is not None:
            c.print(layerwise_table(r.layerwise))
            for line in layerwise_footer(r.layerwise):
                c.print(line)
        for o in r.outputs:
            for note in o.notes:
                c.print(f"note: {o.name}: {note}")
        c.print(r.verdict())
        for w in r.warnings:
            c.print(f"warning: {w}")
    if len(reports) > 1:
        c.print(check_table(reports))
    failed = sum(not r.passed for r in reports)
    c.print(f"{len(reports) - failed} of {len(reports)} checks passed")


def print_task_check(reports: list[Any]) -> None:
    """``edgeai check --task``: each sample's answer where it changed, then the verdict."""
    c = console()
    for r in reports:
        rows = [(i, r.reference_answers[i], r.candidate_answers[i]) for i in r.changed]
        if rows:
            c.print(table(f"{r.task}: answers that changed ({len(rows)} of {r.samples})", ["sample", "reference",
                                                                                          "candidate"], rows))
        c.print(r.verdict())
    failed = sum(not r.passed for r in reports)
    c.print(f"{len(reports) - failed} of {len(reports)} checks passed")


def print_bench(result: Any, comparison: Any, written: list[Any]) -> None:
    c = console()
    c.print(bench_table(result))
    for note in bench_notes(result):
        c.print(note)
    if comparison is not None:
        c.print(comparison_table(comparison))
        for note in comparison.notes:
            c.print(f"note: {note}")
    for p in written:
        c.print(f"wrote {p}")


def print_generation_bench(results: list[Any], new_tokens: int, rounds: int) -> None:
    def ms(v: float) -> str:
        return f"{v:.3g}" if v < 100 else f"{v:.0f}"

    rows = [(r.name, r.runtime.get("engine"), r.runtime.get("precision"), ms(r.time_to_first_token.p50),
             f"{r.tokens_per_s:,.1f}", ms(r.step_latency.p50), ms(r.step_latency.p90), ms(r.step_latency.p99))
            for r in results]
    console().print(table(f"generation: {new_tokens} new tokens after an 8-token prompt, {rounds} rounds",
                          ["config", "engine", "precision", "time to first token ms", "tokens/s", "step p50 ms",
                           "step p90 ms", "step p99 ms"], rows))
    console().print("tokens/s: tokens after the first / the time of their decode steps (median over rounds); "
                    "time to first token: the prompt's forward pass")


def print_model_file(data: dict[str, Any]) -> None:
    c = console()
    c.print(f"{data['path']}: {data['size_bytes'] / 1024:.1f} KB, opset {data['opset']}, {data['parameters']:,} "
            f"parameters, precision {data['precision']}, producer {data['producer']}")
    for s in data["inputs"]:
        c.print(f"  input  {s['name']}: {s['dtype']} {s['shape']}")
    for s in data["outputs"]:
        c.print(f"  output {s['name']}: {s['dtype']} {s['shape']}")
    c.print("  operators: " + ", ".join(f"{k}x{v}" for k, v in data["operators"].items()))
    if data["metadata"]:
        c.print(f"  metadata: {data['metadata']}")


def print_bundle(data: dict[str, Any]) -> None:
    """``edgeai info BUNDLE``: the manifest, readably."""
    c = console()
    src = data["source"]
    c.print(f"{data['path']}: edgeai bundle (manifest {data['manifest_version']}) of {src['source']}, made "
            f"{data['created']} by edgeai {data['edgeai_version']}, mode {data['mode']}")
    c.print("  engines: " + ", ".join(f"{k} {v}" for k, v in data["engines"].items()))
    for line in io_lines(data):
        c.print(f"  {line}")
    for key in ("preprocessing", "labels", "calibration"):
        if data.get(key):
            c.print(f"  {key}: {data[key]}")
    c.print("  defaults: " + ", ".join(f"{d} -> {v}" for d, v in data["defaults"].items()))
    c.print(table("variants (sha256 checked now)", VARIANT_COLUMNS, variant_rows(data, data["integrity"])))
    c.print(table(f"parity vs {src.get('reference')} on {data['parity_data']}; latency at batch 1",
                  CHECK_COLUMNS, check_rows(data)))
    for note in data.get("notes") or []:
        c.print(f"note: {note}")
    for note in data["read_notes"]:
        c.print(f"warning: {note}")


def print_deploy(result: Any, source: str, mode: str) -> None:
    c = console()
    m = result.manifest
    c.print(table(f"deployed {source} -> {result.path} (mode {mode}; defaults: "
                  + ", ".join(f"{d} -> {v}" for d, v in m["defaults"].items()) + ")", CHECK_COLUMNS,
                  check_rows(m)))
    for note in m["notes"]:
        c.print(f"note: {note}")
    c.print(f"wrote {result.path}/ ({', '.join(v['file'] for v in m['variants'])}, manifest.json, report.md, "
            f"report.png) in {result.time_s:.1f}s")


def print_devices(data: dict[str, Any]) -> None:
    c = console()
    cpu = data["cpu"]
    c.print(f"CPU: {cpu['model']} ({cpu['arch']}, {cpu['cores']} cores)")
    c.print(f"  features: {', '.join(cpu['features']) or 'none detected'}  (VNNI: {cpu['vnni']}, bf16: {cpu['bf16']})")
    c.print("engines: " + ", ".join(f"{k} {v}" for k, v in data["engines"].items()))
    c.print("devices: " + ", ".join(data["devices"]))
    described = data.get("device_strings") or {}
    width = max(map(len, described), default=0)
    for name, what in described.items():
        c.print(f"  {name:<{width}}  {what}", soft_wrap=True)


def print_demo(results: dict[str, Any]) -> None:
    c = console()
    c.print(table(f"edgeai demo: digits CNN ({results['test_samples']} held-out digits; latency at batch 1)",
                  COLUMNS, table_rows(results)))
    cpu = results["machine"]["cpu"]
    c.print(f"CPU: {cpu['model']}, features {', '.join(cpu['features'])}")
    c.print(f"wrote {results['files']['json']} and {results['files']['plot']} "
            f"(models: {results['files']['fp32']}, {results['files']['int8']}); took {results['wall_seconds']}s")


class TokenStream:
    """``edgeai generate --stream``: prints each new token's text as it is decoded (ids without a tokenizer).

    The text is decoded from all new tokens each time and only the part not printed yet is written,
    so tokens that are half a character or a leading space come out right.
    """

    def __init__(self, tokenizer: Any = None, out: Any = None):
        import sys

        self.tokenizer, self.out, self.tokens, self.shown = tokenizer, out or sys.stdout, [], ""

    def __call__(self, token: Any) -> None:
        self.tokens.append(int(token[0]))
        if self.tokenizer is None:
            self.out.write(("," if len(self.tokens) > 1 else "") + str(self.tokens[-1]))
        else:
            text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
            if text.startswith(self.shown) and not text.endswith("\ufffd"):  # wait out half a character
                self.out.write(text[len(self.shown):])
                self.shown = text
        self.out.flush()

    def close(self) -> None:
        self.out.write("\n")
        self.out.flush()


def print_generation(result: Any, new: list[int], text: str | None) -> None:
    c = console()
    rt = result.runtime
    c.print(f"generated {result.new_tokens} tokens ({result.stop_reason}) on {rt['engine']} {rt['engine_version']} "
            f"{','.join(rt['devices_in_effect'])} @ {rt['precision']}")
    c.print(f"  tokens: {new}")
    if text is not None:
        c.print(f"  text: {text}")
    rate = f"{result.tokens_per_s:.1f} tokens/s" if result.tokens_per_s else "n/a tokens/s (one step)"
    c.print(f"  time to first token {result.time_to_first_token_ms:.2f} ms, {rate} after it, "
            f"total {result.total_ms:.1f} ms")
