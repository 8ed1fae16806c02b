"""The ``edgeai`` command line: each command parses options, calls one API function, renders.

Exit codes: 0 success, 1 a failed check (parity out of tolerance), 2 bad usage or bad input.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from edgeai.errors import EdgeAIError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Export PyTorch models to ONNX, quantize, run on ONNX Runtime / OpenVINO, check parity, bench.")
_state = {"debug": False}

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False) -> None:
    _state["debug"] = debug


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    text = str(message)
    typer.echo(f"warning: {text[len('edgeai: '):] if text.startswith('edgeai: ') else text}", err=True)


def command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn EdgeAIErrors into one clear line on stderr and the documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from edgeai import report

        report.set_quiet(bool(kwargs.get("json_out")))
        try:
            with warnings.catch_warnings():
                if not _state["debug"]:  # one 'warning:' line, not Python's file:line + source echo
                    warnings.showwarning = _show_warning
                warnings.simplefilter("default" if _state["debug"] else "ignore")
                warnings.filterwarnings("always", message="edgeai:.*")
                warnings.filterwarnings("always", message="calibrating on random.*")
                return fn(*args, **kwargs)
        except EdgeAIError as e:
            if _state["debug"]:
                raise
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


def _out() -> Any:
    from edgeai.report import console

    return console()


def _print_json(obj: Any) -> None:
    from edgeai.report import to_json

    typer.echo(to_json(obj))


def _require_matplotlib(option: str) -> None:
    """Fail before a long run, not after it, when a plot cannot be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise EdgeAIError(f"{option} needs matplotlib: pip install edgeai[extras]") from None


def _parse_shapes(shapes: list[str] | None) -> dict[str, list[int]] | None:
    if not shapes:
        return None
    from edgeai.specs import parse_input_spec

    out = {}
    for text in shapes:
        spec = parse_input_spec(text)
        if spec.is_dynamic:
            raise EdgeAIError(f"--shape {text!r} must give integer dims, e.g. input_ids:1x128")
        out[spec.name] = [int(d) for d in spec.shape]  # type: ignore[arg-type]
    return out


@app.command()
@command
def export(
    source: Annotated[str, typer.Argument(help="zoo:NAME, pkg.mod:factory, file.py:factory, model.pt2, or a transformers folder")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output .onnx path")] = Path("model.onnx"),
    input: Annotated[list[str] | None, typer.Option("--input", help="NAME:DIMS[:DTYPE], e.g. x:1x3x224x224:float32")] = None,
    dynamic: Annotated[list[str] | None, typer.Option("--dynamic", help="NAME:AXIS=SYMBOL[,...], e.g. x:0=batch")] = None,
    task: Annotated[str | None, typer.Option(help="transformers task for a model folder")] = None,
    opset: Annotated[int | None, typer.Option(help="ONNX opset")] = None,
    exporter: Annotated[str, typer.Option(help="auto | dynamo | torchscript")] = "auto",
    validate: Annotated[bool, typer.Option(help="Validate against PyTorch at unseen dims")] = True,
    atol: Annotated[float, typer.Option(help="Validation absolute tolerance")] = 1e-4,
    simplify: Annotated[bool, typer.Option(help="Simplify the graph with onnxslim")] = False,
    weights: Annotated[Path | None, typer.Option(help="State dict for a factory/zoo model: .safetensors, or .pt/.pth "
                                                      "read with weights_only=True")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Export a PyTorch model to ONNX and validate it right away.

    Example: edgeai export net.py:make --input x:1x3x64x64:float32 --dynamic x:0=batch --weights net.safetensors -o net.onnx
    """
    import edgeai
    from edgeai.specs import parse_dynamic_spec, parse_input_spec

    specs = [parse_input_spec(t) for t in input] if input else None
    dyn = dict(parse_dynamic_spec(t) for t in dynamic) if dynamic else None
    result = edgeai.export(source, None, output, inputs=specs, dynamic_axes=dyn, task=task, opset=opset,
                           exporter=exporter, validate=validate, atol=atol, simplify=simplify, weights=weights)
    if json_out:
        return _print_json(result)
    c = _out()
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


@app.command()
@command
def quantize(
    src: Annotated[Path, typer.Argument(help="FP32 .onnx file")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output .onnx path")],
    mode: Annotated[str, typer.Option(help="dynamic | static | fp16 | openvino-int8 | auto")] = "auto",
    calib: Annotated[str | None, typer.Option(help="Folder of .npy/.npz, a .npz, pkg.mod:fn, or random:N")] = None,
    eval_data: Annotated[str | None, typer.Option("--eval", help="Held-out parity inputs (same forms as --calib)")] = None,
    device: Annotated[str, typer.Option(help="Device for parity and latency (auto: the target)")] = "cpu",
    min_cosine: Annotated[float | None, typer.Option(help="Tolerance: minimum output cosine")] = None,
    min_top1: Annotated[float | None, typer.Option(help="Tolerance: minimum top-1 agreement (0-1)")] = None,
    method: Annotated[str | None, typer.Option(help="static calibration: minmax | entropy | percentile")] = None,
    per_channel: Annotated[bool | None, typer.Option("--per-channel/--per-tensor", help="Weight granularity")] = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="Node name to keep in float (repeat)")] = None,
    min_speedup: Annotated[float | None, typer.Option(help="auto: INT8 must be this much faster than FP32")] = None,
    force: Annotated[bool, typer.Option(help="Write the file even if parity fails")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Quantize an ONNX model and prove it still matches the original (exit 1 if it does not).

    Example: edgeai quantize cnn.onnx -o cnn.int8.onnx --mode auto --calib calib.npz --device openvino:CPU
    """
    from dataclasses import replace

    import edgeai
    from edgeai.onnxfile import load_proto, read_metadata
    from edgeai.quantization.measure import default_tolerance

    tol = None
    if min_cosine is not None or min_top1 is not None:
        task = read_metadata(load_proto(src)).get("task") if src.exists() else None
        base = default_tolerance("f16" if mode == "fp16" else "int8", task)
        tol = replace(base, min_cosine=min_cosine if min_cosine is not None else base.min_cosine,
                                min_top1=min_top1 if min_top1 is not None else base.min_top1)
    options: dict[str, Any] = {}
    if method:
        options["calibrate_method"] = method
    if per_channel is not None:
        options["per_channel"] = per_channel
    if exclude:
        options["nodes_to_exclude"] = list(exclude)
    if min_speedup is not None:
        options["min_speedup"] = min_speedup
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = edgeai.quantize(src, output, mode=mode, calibration=calib, eval_inputs=eval_data, device=device,
                                 tolerance=tol, force=force, **options)
    for w in caught:  # ours (random calibration, fallbacks) as one line each; library chatter only with --debug
        if str(w.message).startswith(("calibrating on random", "edgeai:")) or _state["debug"]:
            typer.echo(f"warning: {w.message}", err=True)
    if json_out:
        return _print_json(result)
    from edgeai.report import table

    c = _out()
    lat, worst = result.latency or {}, result.parity.worst
    rows = [("size KB", result.size_before / 1024, result.size_after / 1024),
            (f"p50 ms on {device} (batch 1)", lat.get("fp32_p50_ms"), lat.get("p50_ms")),
            ("output cosine (worst)", 1.0, worst.cosine)]
    if worst.top1 is not None:
        rows.append(("top-1 agreement", 1.0, worst.top1))
    c.print(table(f"{result.mode} -> {result.dst}", ["", "FP32", "result"], rows))
    if result.candidates:
        c.print(table("auto: configs tried", ["config", "kept in float", "passed", "cosine", "top-1", "p50 ms",
                                              "speedup", "error"],
                      [(r["name"], r["excluded_nodes"], r["passed"], r["cosine"], r["top1"], r["p50_ms"], r["speedup"],
                        (r["error"] or "")[:60]) for r in result.candidates]))
    c.print(result.parity.verdict())
    if lat.get("speedup") is not None:
        c.print(f"speedup vs FP32 on {device}: {lat['speedup']}x")
    if result.config:
        c.print(f"config: {result.config}")
    if result.excluded_nodes:
        c.print(f"kept in float: {list(result.excluded_nodes)}")
    for n in result.notes:
        c.print(f"note: {n}")


def _read_feeds(items: list[str] | None) -> dict[str, Any] | None:
    if not items:
        return None
    from edgeai.feeds import read_named_arrays

    return read_named_arrays(items)


def _refuse_overwriting_inputs(output: Path, inputs: list[str], option: str = "-o") -> None:
    """An output path naming the model or an input file would destroy it: inputs are never modified."""
    out = Path(output).resolve()
    for item in inputs:
        if item and Path(item).resolve() == out:
            raise EdgeAIError(f"{option} {output} is one of this command's inputs ({item}); inputs are never "
                              "overwritten: choose another output path")


@app.command()
@command
def run(
    model: Annotated[str, typer.Argument(help=".onnx file or bundle folder")],
    device: Annotated[str, typer.Option(help="Device string")] = "cpu",
    input: Annotated[list[str] | None, typer.Option("--input", help="NAME=file.npy (random when omitted)")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write outputs to this .npz")] = None,
    precision: Annotated[str | None, typer.Option(help="f32 | f16 | bf16 | auto")] = None,
    shape: Annotated[list[str] | None, typer.Option("--shape", help="Static shape NAME:1x128 (NPU)")] = None,
    fallback: Annotated[bool, typer.Option(help="Fall back to cpu if the device is missing")] = False,
    check_values: Annotated[bool, typer.Option(
        help="Fail on NaN/Inf or out-of-range token ids in inputs (exit 2) and NaN/Inf in outputs (exit 1); "
             "without it they are reported")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Run a model once and print output shapes and checksums (and any NaN/Inf in inputs or outputs).

    Example: edgeai run cnn.onnx --device openvino:CPU --input pixel_values=x.npy -o out.npz
    """
    import io

    import numpy as np

    import edgeai
    from edgeai.specs import make_inputs

    options: dict[str, Any] = {}
    static = _parse_shapes(shape)
    if static:
        options["static_shapes"] = static
    if output is not None:
        _refuse_overwriting_inputs(output, [model, *(item.partition("=")[2] for item in input or [])])
    m = edgeai.load(model, device, precision=precision, fallback=fallback, check_values=check_values, **options)
    feeds = _read_feeds(input)
    if feeds is None:
        feeds = make_inputs(m.inputs, {"batch": 1})  # static shapes are already in m.inputs
    outs = m.run(feeds)
    from edgeai.runtimes.base import value_problems

    input_problems = value_problems(feeds, m.inputs)
    nonfinite = {k: int((~np.isfinite(v)).sum()) for k, v in outs.items() if v.dtype.kind == "f"}
    if output:
        from edgeai.atomic import write_bytes

        buf = io.BytesIO()
        np.savez(buf, **outs)
        write_bytes(output, buf.getvalue())
    summary = {"model": model, "runtime": m.describe().to_dict(),
               "outputs": {k: {"shape": list(v.shape), "dtype": str(v.dtype),
                               "checksum": float(np.asarray(v, dtype=np.float64).sum()),
                               "nonfinite": nonfinite.get(k, 0)} for k, v in outs.items()},
               "input_problems": input_problems, "written": str(output) if output else None}
    if json_out:
        return _print_json(summary)
    c = _out()
    c.print(f"ran on {m.describe().summary()}")
    for k, v in input_problems.items():
        c.print(f"  warning: input {k!r} has {v}")
    for k, v in summary["outputs"].items():
        warn = f"  [{v['nonfinite']} NaN/Inf]" if v["nonfinite"] else ""
        c.print(f"  {k}: {v['dtype']} {v['shape']} sum={v['checksum']:.6g}{warn}")
    if output:
        c.print(f"wrote {output}")


@app.command()
@command
def check(
    models: Annotated[list[str], typer.Argument(help="Candidate .onnx file(s), e.g. the FP32, INT8 and FP16 files")],
    reference: Annotated[str, typer.Option(help="Reference: a model source (zoo:, pkg.mod:factory) or an .onnx")],
    device: Annotated[list[str] | None, typer.Option("--device", help="Device(s) to check on; repeat for several")] = None,
    samples: Annotated[int | None, typer.Option(help="Random feeds, batch 2 each (default 8); with --data, "
                                                "the cap on how many of its samples are used")] = None,
    data: Annotated[str | None, typer.Option(help="Inputs: folder of .npy/.npz, a .npz, pkg.mod:fn, or random:N")] = None,
    atol: Annotated[float | None, typer.Option(help="allclose absolute tolerance")] = None,
    rtol: Annotated[float | None, typer.Option(help="allclose relative tolerance")] = None,
    min_cosine: Annotated[float | None, typer.Option(help="Minimum cosine similarity")] = None,
    min_top1: Annotated[float | None, typer.Option(help="Minimum top-1 agreement (0-1)")] = None,
    layerwise: Annotated[bool, typer.Option(help="Find the first nodes where an ONNX candidate diverges from an "
                                            "ONNX reference")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Check parity of model file(s) against a reference on one or more devices (exit 1 when out of tolerance).

    The reference runs once at FP32 (PyTorch for a model source, onnxruntime CPU for an .onnx). Each candidate runs on each --device and the precision in effect there is reported; tolerances default by that precision and --atol/--rtol/--min-cosine/--min-top1 override them.

    Example: edgeai check cnn.onnx cnn.int8.onnx --reference cnn.onnx --device cpu --device openvino:CPU --layerwise
    """
    from edgeai.parity import check_many

    if samples is not None and samples < 1:
        raise EdgeAIError(f"--samples must be at least 1; got {samples}")
    reports = check_many(models, reference, devices=device or ["cpu"], samples=samples, data=data, atol=atol,
                         rtol=rtol, min_cosine=min_cosine, min_top1=min_top1, layerwise=layerwise)
    failed = [r for r in reports if not r.passed]
    if json_out:
        _print_json({"passed": not failed, "reports": [r.to_dict() for r in reports]})
    else:
        from edgeai.report import check_table, layerwise_footer, layerwise_table, parity_table

        c = _out()
        for r in reports:
            c.print(parity_table(r))
            if r.layerwise is not None:
                c.print(layerwise_table(r.layerwise))
                for line in layerwise_footer(r.layerwise):
                    c.print(line)
            c.print(r.verdict())
        if len(reports) > 1:
            c.print(check_table(reports))
        c.print(f"{len(reports) - len(failed)} of {len(reports)} checks passed")
    if failed:
        raise typer.Exit(1)


def _bench_configs(models: list[str], devices: list[str], precisions: list[str | None], baseline: str | None,
                   options: dict[str, Any], static: dict[str, list[int]] | None, streams: int) -> list[Any]:
    """One BenchConfig per model x device x precision (plus the torch baseline first), uniquely named."""
    from edgeai.bench import BenchConfig

    configs = []
    if baseline:
        if not baseline.startswith("torch:") or len(baseline) <= 6:
            raise EdgeAIError(f"--baseline must be torch:SOURCE, e.g. torch:zoo:cnn; got {baseline!r}")
        configs.append(BenchConfig("torch", baseline[6:], "torch", {"threads": options["threads"]}))
    short = [Path(m).name for m in models]
    for model, label in zip(models, short if len(set(short)) == len(short) else models, strict=True):
        for d in devices:
            for prec in precisions:
                opts = dict(options)
                if prec:
                    opts["precision"] = prec
                if d.lower().startswith("openvino"):
                    if static:
                        opts["static_shapes"] = static
                    if streams > 1:
                        opts["streams"] = streams  # as benchmark_app: one OpenVINO stream per issuing thread
                name = f"{label}@{d}" + (f"@{prec}" if prec else "")
                configs.append(BenchConfig(name, model, d, opts))
    return configs


@app.command()
@command
def bench(
    models: Annotated[list[str], typer.Argument(help=".onnx files (e.g. fp32, int8, fp16)")],
    device: Annotated[list[str] | None, typer.Option("--device", help="Device(s); repeat for a matrix")] = None,
    batch: Annotated[str, typer.Option(help="Batch sizes, comma-separated")] = "1",
    warmup: Annotated[int, typer.Option(help="Warm-up runs per cell (after the first inference)")] = 10,
    iterations: Annotated[int | None, typer.Option(help="Timed runs per cell (default: 1000 runs or 10 s, whichever first)")] = None,
    duration: Annotated[float | None, typer.Option(help="Seconds of timed runs per cell, instead of --iterations")] = None,
    rounds: Annotated[int, typer.Option(help="Interleaving rounds (their spread is the noise)")] = 5,
    streams: Annotated[int, typer.Option(help="Threads running each model at once (aggregate throughput)")] = 1,
    baseline: Annotated[str | None, typer.Option(help="torch:SOURCE adds a PyTorch baseline row, e.g. torch:zoo:cnn")] = None,
    threads: Annotated[int | None, typer.Option(help="Threads per session (default: the physical cores, set explicitly)")] = None,
    precision: Annotated[list[str] | None, typer.Option("--precision", help="f32 | f16 | bf16 | auto; repeat for a matrix")] = None,
    shape: Annotated[list[str] | None, typer.Option("--shape", help="OpenVINO devices: compile at this static shape NAME:1x128")] = None,
    dim: Annotated[list[str] | None, typer.Option("--dim", help="Size of a symbolic dim other than batch, e.g. seq=128")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Compiled-model cache folder (both engines)")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG plot here")] = None,
    csv: Annotated[Path | None, typer.Option(help="Write CSV here")] = None,
    markdown: Annotated[Path | None, typer.Option(help="Write Markdown here")] = None,
    compare_to: Annotated[Path | None, typer.Option(help="An earlier `bench --json` file: flag regressions beyond the noise (exit 1)")] = None,
    min_change: Annotated[float, typer.Option(help="With --compare-to: smallest slowdown that counts, however low the noise")] = 0.05,
    generate: Annotated[int | None, typer.Option("--generate", help="KV-cache exports: time generating N tokens "
                                                 "(TTFT, tokens/s, step percentiles) over --rounds runs")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Benchmark models x devices x precisions x batch sizes in one process, interleaved; cold start shown apart.

    A cell whose device, precision or batch size cannot be had is marked unsupported with the reason (nothing else runs in its place).

    Exit 1 when --compare-to finds a regression beyond the measured noise, or a cell failed.

    Example: edgeai bench cnn.onnx cnn.int8.onnx --device cpu --device openvino:CPU --batch 1,8 --plot bench.png
    """
    if generate is not None:
        ignored = [flag for flag, value in (("--plot", plot), ("--csv", csv), ("--markdown", markdown),
                                            ("--compare-to", compare_to), ("--baseline", baseline),
                                            ("--precision", precision), ("--shape", shape), ("--dim", dim),
                                            ("--cache-dir", cache_dir), ("--duration", duration))
                   if value] + (["--batch"] if batch != "1" else []) + (["--streams"] if streams != 1 else [])
        if ignored:
            raise EdgeAIError(f"--generate times the generation loop and does not take {', '.join(ignored)}; "
                              "drop them, or benchmark single forward passes without --generate")
        return _bench_generate(models, device or ["cpu"], generate, warmup, rounds, threads, json_out)
    if plot is not None:
        _require_matplotlib("--plot")
    from edgeai.bench import bench_matrix, physical_cores
    from edgeai.report import (
        bench_csv,
        bench_markdown,
        bench_notes,
        bench_table,
        latency_plot,
        progress,
    )

    try:
        batches = [int(b) for b in batch.split(",") if b.strip()]
    except ValueError:
        raise EdgeAIError(f"bad --batch {batch!r}; expected comma-separated integers like 1,8,32") from None
    if not batches or min(batches) < 1:
        raise EdgeAIError(f"--batch needs positive integers like 1,8,32; got {batch!r}")
    for option, value, least in (("--iterations", iterations, 1), ("--rounds", rounds, 1), ("--warmup", warmup, 0),
                                 ("--threads", threads, 1), ("--streams", streams, 1)):
        if value is not None and value < least:
            raise EdgeAIError(f"{option} must be at least {least}; got {value}")
    for option, written in (("--plot", plot), ("--csv", csv), ("--markdown", markdown)):
        if written is not None:
            _refuse_overwriting_inputs(written, list(models), option)
    dims = {}
    for item in dim or []:
        k, _, v = item.partition("=")
        if not k or not v.strip().isdigit() or int(v) < 1:
            raise EdgeAIError(f"bad --dim {item!r}; expected NAME=SIZE, e.g. seq=128")
        dims[k.strip()] = int(v)
    if min_change < 0:
        raise EdgeAIError(f"--min-change must be >= 0 (a fraction, e.g. 0.05 for 5%); got {min_change}")
    options: dict[str, Any] = {"threads": threads or physical_cores()}  # explicit, so every row reports it
    if cache_dir:
        options["cache_dir"] = str(cache_dir)
    configs = _bench_configs(models, device or ["cpu"], list(precision or [None]), baseline, options,
                             _parse_shapes(shape), streams)
    old = None
    if compare_to:
        from edgeai.benchcompare import read_bench_json

        old = read_bench_json(compare_to)  # fail on a bad file before the long run
    with progress("bench", total=len(configs) + len(configs) * len(batches) * max(rounds, 1)) as advance:
        result = bench_matrix(configs, batches, warmup=warmup, iterations=iterations, duration=duration,
                              rounds=rounds, streams=streams, dims=dims, on_step=advance)
    result.settings["threads"] = options["threads"]
    comparison = None
    if old is not None:
        from edgeai.benchcompare import compare_runs

        comparison = compare_runs(old, result, min_change=min_change, old_source=str(compare_to))
    from edgeai.atomic import write_text

    if csv:
        write_text(csv, bench_csv(result))
    if markdown:
        write_text(markdown, bench_markdown(result))
    if plot:
        latency_plot(result.reports, plot, title=f"edgeai bench ({result.machine['cpu']['model']}, "
                                                 f"{options['threads']} threads)")
    failed = [r for r in result.reports if r.status.startswith("failed")]
    if json_out:
        data = result.to_dict()
        if comparison is not None:
            data["comparison"] = comparison.to_dict()
        _print_json(data)
    else:
        c = _out()
        c.print(bench_table(result))
        for note in bench_notes(result):
            c.print(note)
        if comparison is not None:
            from edgeai.report import comparison_table

            c.print(comparison_table(comparison))
            for note in comparison.notes:
                c.print(f"note: {note}")
        for p in (plot, csv, markdown):
            if p:
                c.print(f"wrote {p}")
    if failed or (comparison is not None and comparison.regressions):
        if comparison is not None and comparison.regressions:
            typer.echo("regression: " + ", ".join(f"{x.name} b{x.batch} {x.change:+.1%} (noise ±{x.threshold:.1%})"
                                                  for x in comparison.regressions), err=True)
        if failed:
            typer.echo("failed: " + "; ".join(f"{r.name} b{r.batch}: {r.status}" for r in failed), err=True)
        raise typer.Exit(1)


@app.command()
@command
def info(
    model: Annotated[str, typer.Argument(help=".onnx file or bundle folder")],
    json_out: JsonOpt = False,
) -> None:
    """Describe an ONNX model (inputs/outputs, opset, operators, parameters, size, metadata) or a
    bundle (its manifest, with every file's sha256 checked now; exit 1 if one does not match).

    Example: edgeai info cnn.onnx
    """
    from edgeai.bundle import describe_path as describe_file

    data = describe_file(model)
    if data.get("format") == "edgeai-bundle":
        return _print_bundle(data, json_out)
    if json_out:
        return _print_json(data)
    c = _out()
    c.print(f"{data['path']}: {data['size_bytes'] / 1024:.1f} KB, opset {data['opset']}, {data['parameters']:,} "
            f"parameters, precision {data['precision']}, producer {data['producer']}")
    for s in data["inputs"]:
        c.print(f"  input  {s['name']}: {s['dtype']} {s['shape']}")
    for s in data["outputs"]:
        c.print(f"  output {s['name']}: {s['dtype']} {s['shape']}")
    c.print("  operators: " + ", ".join(f"{k}x{v}" for k, v in data["operators"].items()))
    if data["metadata"]:
        c.print(f"  metadata: {data['metadata']}")


@app.command()
@command
def devices(json_out: JsonOpt = False) -> None:
    """List the devices this machine can run on, engine versions, and the CPU's features.

    Example: edgeai devices --json
    """
    from edgeai.bench import machine_info
    from edgeai.runtimes import devices as list_devices

    data = {"devices": list_devices(), **machine_info()}
    if json_out:
        return _print_json(data)
    c = _out()
    cpu = data["cpu"]
    c.print(f"CPU: {cpu['model']} ({cpu['arch']}, {cpu['cores']} cores)")
    c.print(f"  features: {', '.join(cpu['features']) or 'none detected'}  (VNNI: {cpu['vnni']}, bf16: {cpu['bf16']})")
    c.print("engines: " + ", ".join(f"{k} {v}" for k, v in data["engines"].items()))
    c.print("devices: " + ", ".join(data["devices"]))


@app.command()
@command
def demo(
    out: Annotated[Path, typer.Option(help="Output folder")] = Path("edgeai-demo"),
    iterations: Annotated[int, typer.Option(help="Timed runs per variant")] = 300,
    json_out: JsonOpt = False,
) -> None:
    """Train a digits CNN, export, quantize, and compare every variant on every device here.

    Example: edgeai demo --out edgeai-demo
    """
    from edgeai.demo import COLUMNS, run_demo, table_rows
    from edgeai.report import table

    results = run_demo(out, iterations=iterations)
    if json_out:
        return _print_json(results)
    c = _out()
    c.print(table(f"edgeai demo: digits CNN ({results['test_samples']} held-out digits; latency at batch 1)",
                  COLUMNS, table_rows(results)))
    cpu = results["machine"]["cpu"]
    c.print(f"CPU: {cpu['model']}, features {', '.join(cpu['features'])}")
    c.print(f"wrote {results['files']['json']} and {results['files']['plot']} "
            f"(models: {results['files']['fp32']}, {results['files']['int8']}); took {results['wall_seconds']}s")


def _read_labels(labels: str | None) -> list[str] | None:
    if not labels:
        return None
    path = Path(labels)
    if path.is_file():
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [t.strip() for t in labels.split(",")]


def _read_json_option(text: str | None, option: str) -> Any:
    if not text:
        return None
    import json

    path = Path(text)
    try:
        return json.loads(path.read_text(encoding="utf-8") if path.is_file() else text)
    except ValueError as e:
        raise EdgeAIError(f"{option} takes a JSON object or a .json file; could not parse {text!r}: {e}") from None


def _parse_ids(text: str) -> list[int]:
    try:
        ids = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise EdgeAIError(f"bad --prompt-ids {text!r}; expected comma-separated token ids like 1,2,3") from None
    if not ids:
        raise EdgeAIError("--prompt-ids is empty; give at least one token id")
    return ids


@app.command()
@command
def deploy(
    source: Annotated[str, typer.Argument(help="zoo:NAME, pkg.mod:factory, file.py:factory, model.pt2, a transformers folder, or an FP32 .onnx")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Bundle folder to write")],
    device: Annotated[list[str] | None, typer.Option("--device", help="Target device; repeat for several")] = None,
    mode: Annotated[str, typer.Option(help="auto | static | dynamic | fp16 | openvino-int8 | none")] = "auto",
    calib: Annotated[str | None, typer.Option(help="Calibration: folder of .npy/.npz, a .npz, pkg.mod:fn, or random:N")] = None,
    data: Annotated[str | None, typer.Option(help="Parity data (default: --calib if given, else random)")] = None,
    samples: Annotated[int, typer.Option(help="Parity samples")] = 16,
    input: Annotated[list[str] | None, typer.Option("--input", help="NAME:DIMS[:DTYPE] where the source has no specs")] = None,
    dynamic: Annotated[list[str] | None, typer.Option("--dynamic", help="NAME:AXIS=SYMBOL[,...]")] = None,
    task: Annotated[str | None, typer.Option(help="transformers task for a model folder")] = None,
    preprocessing: Annotated[str | None, typer.Option(help="JSON (or a .json file) saying how to prepare raw inputs")] = None,
    labels: Annotated[str | None, typer.Option(help="Class labels: comma-separated, or a text file, one per line")] = None,
    iterations: Annotated[int, typer.Option(help="Timed runs per variant and device")] = 100,
    min_cosine: Annotated[float | None, typer.Option(help="Tolerance: minimum output cosine")] = None,
    min_top1: Annotated[float | None, typer.Option(help="Tolerance: minimum top-1 agreement (0-1)")] = None,
    fallback_fp32: Annotated[bool, typer.Option(help="Ship FP32 for a device whose quantized variant fails parity")] = False,
    force: Annotated[bool, typer.Option(help="Write the bundle even if a check fails (exit 1)")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Export, quantize per device, check parity, benchmark; write a verifiable bundle folder.

    Example: edgeai deploy zoo:cnn -o cnn-bundle --device cpu --device openvino:CPU --calib calib.npz
    """
    import edgeai
    from edgeai.specs import parse_dynamic_spec, parse_input_spec

    tol = {"min_cosine": min_cosine, "min_top1": min_top1} if min_cosine is not None or min_top1 is not None \
        else None
    result = edgeai.deploy(source, output, devices=device or ["cpu"], mode=mode, calibration=calib,
                           eval_inputs=data, samples=samples, tolerance=tol,
                           inputs=[parse_input_spec(t) for t in input] if input else None,
                           dynamic_axes=dict(parse_dynamic_spec(t) for t in dynamic) if dynamic else None,
                           task=task, preprocessing=_read_json_option(preprocessing, "--preprocessing"),
                           labels=_read_labels(labels), iterations=iterations, fallback_fp32=fallback_fp32,
                           force=force)
    if json_out:
        _print_json(result)
    else:
        from edgeai.report import CHECK_COLUMNS, check_rows, table

        c = _out()
        m = result.manifest
        c.print(table(f"deployed {source} -> {result.path} (mode {mode}; defaults: "
                      + ", ".join(f"{d} -> {v}" for d, v in m["defaults"].items()) + ")", CHECK_COLUMNS,
                      check_rows(m)))
        for note in m["notes"]:
            c.print(f"note: {note}")
        c.print(f"wrote {result.path}/ ({', '.join(v['file'] for v in m['variants'])}, manifest.json, report.md, "
                f"report.png) in {result.time_s:.1f}s")
    if not result.passed:
        typer.echo("error: a parity check failed; the bundle was written because of --force", err=True)
        raise typer.Exit(1)


def _print_bundle(data: dict[str, Any], json_out: bool) -> None:
    """``edgeai info BUNDLE``: the manifest, readably; exit 1 if a file does not match its sha256."""
    if json_out:
        _print_json(data)
    else:
        from edgeai.report import (
            CHECK_COLUMNS,
            VARIANT_COLUMNS,
            check_rows,
            io_lines,
            table,
            variant_rows,
        )

        c = _out()
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
    bad = {k: v for k, v in data["integrity"].items() if v != "ok"}
    if bad:
        typer.echo(f"error: bundle files do not match the manifest: {bad}; do not deploy it", err=True)
        raise typer.Exit(1)


@app.command()
@command
def generate(
    model: Annotated[str, typer.Argument(help="Decoder .onnx (text-generation-with-past) or encoder-decoder folder")],
    prompt_ids: Annotated[str | None, typer.Option(help="Prompt token ids, comma-separated")] = None,
    prompt: Annotated[str | None, typer.Option(help="Prompt text (needs --tokenizer)")] = None,
    tokenizer: Annotated[Path | None, typer.Option(help="Local tokenizer folder: text in and out")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Most new tokens to generate")] = 32,
    device: Annotated[str, typer.Option(help="Device string")] = "cpu",
    sample: Annotated[bool, typer.Option("--sample/--greedy", help="Sample instead of greedy argmax")] = False,
    temperature: Annotated[float, typer.Option(help="Sampling temperature")] = 1.0,
    top_k: Annotated[int, typer.Option(help="Sample among the k most likely tokens (0: all)")] = 0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling probability mass")] = 1.0,
    seed: Annotated[int | None, typer.Option(help="Sampling seed")] = None,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Keep the KV cache (--no-cache re-runs "
                                        "the whole sequence every step)")] = True,
    json_out: JsonOpt = False,
) -> None:
    """Generate tokens with a KV-cache export on a device; reports time to first token and tokens/s.

    Example: edgeai generate gpt2.onnx --prompt-ids 5,6,7 --max-new-tokens 32 --device openvino:CPU
    """
    import edgeai
    from edgeai.generation import load_tokenizer

    if (prompt_ids is None) == (prompt is None):
        raise EdgeAIError("give exactly one of --prompt-ids 1,2,3 or --prompt TEXT (with --tokenizer DIR)")
    tok = load_tokenizer(tokenizer) if tokenizer else None
    if prompt is not None and tok is None:
        raise EdgeAIError("--prompt needs --tokenizer DIR (a local tokenizer folder); or pass --prompt-ids")
    ids = _parse_ids(prompt_ids) if prompt_ids is not None else list(tok(prompt)["input_ids"])
    result = edgeai.generate(model, [ids], max_new_tokens, device=device, do_sample=sample, temperature=temperature,
                             top_k=top_k, top_p=top_p, seed=seed, use_cache=cache)
    new = result.tokens[0].tolist()
    text = tok.decode(new, skip_special_tokens=True) if tok is not None else None
    if json_out:
        return _print_json({**result.to_dict(), "prompt_ids": ids, "text": text})
    c = _out()
    rt = result.runtime
    c.print(f"generated {result.new_tokens} tokens ({result.stop_reason}) on {rt['engine']} {rt['engine_version']} "
            f"{','.join(rt['devices_in_effect'])} @ {rt['precision']}")
    c.print(f"  tokens: {new}")
    if text is not None:
        c.print(f"  text: {text}")
    rate = f"{result.tokens_per_s:.1f} tokens/s" if result.tokens_per_s else "n/a tokens/s (one step)"
    c.print(f"  time to first token {result.time_to_first_token_ms:.2f} ms, {rate} after it, "
            f"total {result.total_ms:.1f} ms")


def _bench_generate(models: list[str], devices: list[str], new_tokens: int, warmup: int, rounds: int,
                    threads: int | None, json_out: bool) -> None:
    """``edgeai bench --generate N``: one generation benchmark per model x device."""
    from edgeai.generation import benchmark_generation
    from edgeai.report import table

    opts = {"threads": threads} if threads else {}
    results = [benchmark_generation(path, name=f"{Path(path).name}@{d}", new_tokens=new_tokens, rounds=rounds,
                                    warmup=min(warmup, 2), device=d, **opts)
               for path in models for d in devices]
    if json_out:
        return _print_json({"generation": [r.to_dict() for r in results]})
    rows = [(r.name, r.runtime.get("engine"), r.runtime.get("precision"), r.time_to_first_token.p50,
             r.tokens_per_s, r.step_latency.p50, r.step_latency.p90, r.step_latency.p99) for r in results]
    _out().print(table(f"generation: {new_tokens} new tokens after an 8-token prompt, {rounds} rounds",
                       ["config", "engine", "precision", "ttft_ms", "tokens_s", "step_p50_ms", "step_p90_ms",
                        "step_p99_ms"], rows))


def _click_errors() -> tuple[type, ...]:
    """click's exception base, from the copy typer vendors (typer >= 0.20) or from click itself."""
    import importlib

    found = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(importlib.import_module(name).ClickException)
        except (ImportError, AttributeError):
            pass
    return tuple(found)


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except _click_errors() as e:  # bad option values, unknown options, missing arguments
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
            # click would print a usage block and a framed box; the contract is one line on stderr.
            where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            typer.echo(f"error: {' '.join(e.format_message().split())}{where}", err=True)
        sys.exit(2)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as e:  # an unexpected library error: one line unless --debug
        if "--debug" in sys.argv:
            raise
        typer.echo(f"error: unexpected {type(e).__name__}: {e} (rerun with --debug for the traceback)", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
