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


def command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn EdgeAIErrors into one clear line on stderr and the documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from edgeai import report

        report.set_quiet(bool(kwargs.get("json_out")))
        try:
            with warnings.catch_warnings():
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
    json_out: JsonOpt = False,
) -> None:
    """Export a PyTorch model to ONNX and validate it right away.

    Example: edgeai export zoo:cnn -o cnn.onnx
    """
    import edgeai
    from edgeai.specs import parse_dynamic_spec, parse_input_spec

    specs = [parse_input_spec(t) for t in input] if input else None
    dyn = dict(parse_dynamic_spec(t) for t in dynamic) if dynamic else None
    result = edgeai.export(source, None, output, inputs=specs, dynamic_axes=dyn, task=task, opset=opset,
                           exporter=exporter, validate=validate, atol=atol, simplify=simplify)
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


@app.command()
@command
def quantize(
    src: Annotated[Path, typer.Argument(help="FP32 .onnx file")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output .onnx path")],
    mode: Annotated[str, typer.Option(help="dynamic | static | fp16 | openvino-int8 | auto")] = "auto",
    calib: Annotated[str | None, typer.Option(help="Folder of .npy/.npz, a .npz, pkg.mod:fn, or random:N")] = None,
    device: Annotated[str, typer.Option(help="Device for parity (and latency, for auto)")] = "cpu",
    min_cosine: Annotated[float | None, typer.Option(help="Tolerance: minimum output cosine")] = None,
    min_top1: Annotated[float | None, typer.Option(help="Tolerance: minimum top-1 agreement (0-1)")] = None,
    method: Annotated[str | None, typer.Option(help="static calibration: minmax | entropy | percentile")] = None,
    per_channel: Annotated[bool | None, typer.Option("--per-channel/--per-tensor", help="Weight granularity")] = None,
    force: Annotated[bool, typer.Option(help="Write the file even if parity fails")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Quantize an ONNX model and prove it still matches the original.

    Example: edgeai quantize cnn.onnx -o cnn.int8.onnx --mode static --calib calib.npz
    """
    import edgeai
    from edgeai.parity import Tolerance

    tol = None
    if min_cosine is not None or min_top1 is not None:
        base = Tolerance.for_precision("f16" if mode == "fp16" else "int8")
        tol = Tolerance(None, None, min_cosine if min_cosine is not None else base.min_cosine,
                        min_top1 if min_top1 is not None else base.min_top1)
    options: dict[str, Any] = {}
    if method:
        options["calibrate_method"] = method
    if per_channel is not None:
        options["per_channel"] = per_channel
    result = edgeai.quantize(src, output, mode=mode, calibration=calib, device=device, tolerance=tol, force=force,
                             **options)
    if json_out:
        return _print_json(result)
    from edgeai.report import table

    c = _out()
    rows = [("size KB", result.size_before / 1024, result.size_after / 1024)]
    if result.latency:
        rows.append(("p50 ms", result.latency.get("fp32_p50_ms"), result.latency.get("p50_ms")))
    c.print(table(f"{result.mode} -> {result.dst}", ["", "before", "after"], rows))
    c.print(result.parity.verdict())
    if result.config:
        c.print(f"config: {result.config}")
    if result.excluded_nodes:
        c.print(f"kept in float: {list(result.excluded_nodes)}")
    for n in result.notes:
        c.print(f"note: {n}")


def _read_feeds(items: list[str] | None) -> dict[str, Any] | None:
    if not items:
        return None
    import numpy as np

    feeds = {}
    for item in items:
        name, sep, file = item.partition("=")
        if not sep or not file:
            raise EdgeAIError(f"bad --input {item!r}; expected NAME=file.npy")
        if name in feeds:
            raise EdgeAIError(f"--input {name}=... is given twice; give each input once")
        if not Path(file).exists():
            raise EdgeAIError(f"input file not found: {file}")
        try:
            feeds[name] = np.load(file, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise EdgeAIError(f"cannot read {file} as a .npy array: {e}") from e
    return feeds


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
        feeds = make_inputs(m.inputs, {"batch": 1, **({} if not static else {})})
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
    model: Annotated[str, typer.Argument(help="Candidate .onnx file")],
    reference: Annotated[str, typer.Option(help="Reference: a model source (zoo:, module:factory) or an .onnx")],
    device: Annotated[list[str] | None, typer.Option("--device", help="Device(s) to check the candidate on")] = None,
    samples: Annotated[int, typer.Option(help="Random samples when --data is not given")] = 8,
    data: Annotated[str | None, typer.Option(help="Inputs: folder of .npy/.npz, a .npz, or pkg.mod:fn")] = None,
    atol: Annotated[float | None, typer.Option(help="allclose absolute tolerance")] = None,
    rtol: Annotated[float | None, typer.Option(help="allclose relative tolerance")] = None,
    min_cosine: Annotated[float | None, typer.Option(help="Minimum cosine similarity")] = None,
    min_top1: Annotated[float | None, typer.Option(help="Minimum top-1 agreement (0-1)")] = None,
    layerwise: Annotated[bool, typer.Option(help="Localize where an ONNX candidate diverges from an ONNX reference")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Check a model's parity against its reference on one or more devices (exit 1 on failure).

    Example: edgeai check cnn.int8.onnx --reference cnn.onnx --device cpu --device openvino:CPU
    """
    from edgeai.parity import check_many

    reports = check_many(model, reference, devices=device or ["cpu"], samples=samples, data=data, atol=atol,
                         rtol=rtol, min_cosine=min_cosine, min_top1=min_top1, layerwise=layerwise)
    failed = any(not r.passed for r in reports)
    if json_out:
        _print_json({"passed": not failed, "reports": [r.to_dict() for r in reports]})
    else:
        from edgeai.report import layerwise_table, parity_table

        c = _out()
        for r in reports:
            c.print(parity_table(r))
            if r.layerwise:
                c.print(layerwise_table(r))
            c.print(r.verdict())
    if failed:
        raise typer.Exit(1)


@app.command()
@command
def bench(
    models: Annotated[list[str], typer.Argument(help=".onnx files (e.g. fp32, int8, fp16)")],
    device: Annotated[list[str] | None, typer.Option("--device", help="Device(s); repeat for a matrix")] = None,
    batch: Annotated[str, typer.Option(help="Batch sizes, comma-separated")] = "1",
    warmup: Annotated[int, typer.Option(help="Warm-up runs per config")] = 10,
    iterations: Annotated[int, typer.Option(help="Timed runs per config")] = 200,
    rounds: Annotated[int, typer.Option(help="Interleaving rounds")] = 5,
    baseline: Annotated[str | None, typer.Option(help="torch:SOURCE to add a PyTorch baseline row")] = None,
    threads: Annotated[int | None, typer.Option(help="Threads per session (default: engine default)")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG plot here")] = None,
    csv: Annotated[Path | None, typer.Option(help="Write CSV here")] = None,
    markdown: Annotated[Path | None, typer.Option(help="Write Markdown here")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Benchmark models x devices x batch sizes in one process, interleaved.

    Example: edgeai bench cnn.onnx cnn.int8.onnx --device cpu --device openvino:CPU --batch 1,8 --plot bench.png
    """
    import edgeai
    from edgeai.bench import bench_matrix
    from edgeai.report import bench_table, csv_text, latency_plot, markdown_table

    try:
        batches = [int(b) for b in batch.split(",") if b.strip()]
    except ValueError:
        raise EdgeAIError(f"bad --batch {batch!r}; expected comma-separated integers like 1,8,32") from None
    if not batches or min(batches) < 1:
        raise EdgeAIError("--batch needs positive integers")
    for option, value, least in (("--iterations", iterations, 1), ("--rounds", rounds, 1), ("--warmup", warmup, 0),
                                 ("--threads", threads, 1)):
        if value is not None and value < least:
            raise EdgeAIError(f"{option} must be at least {least}; got {value}")
    for option, written in (("--plot", plot), ("--csv", csv), ("--markdown", markdown)):
        if written is not None:
            _refuse_overwriting_inputs(written, list(models), option)
    opts = {"threads": threads} if threads else {}
    loaded: list[tuple[str, Any]] = []
    if baseline:
        if not baseline.startswith("torch:"):
            raise EdgeAIError(f"--baseline must be torch:SOURCE, e.g. torch:zoo:cnn; got {baseline!r}")
        loaded.append(("torch", edgeai.load(baseline[6:], "torch", **opts)))
    for path in models:
        for d in device or ["cpu"]:
            loaded.append((f"{Path(path).name}@{d}", edgeai.load(path, d, **opts)))
    result = bench_matrix(loaded, batches, warmup=warmup, iterations=iterations, rounds=rounds,
                          baseline=loaded[0][0])
    cols = ["config", "batch", "engine", "precision", "p50_ms", "p90_ms", "p99_ms", "items_s", "speedup"]
    rows = [[r.name, r.batch, r.runtime.get("engine"), r.runtime.get("precision"),
             r.latency.p50 if r.latency else None, r.latency.p90 if r.latency else None,
             r.latency.p99 if r.latency else None, r.throughput, result.speedups.get(f"{r.name}|{r.batch}")]
            for r in result.reports]
    if csv:
        from edgeai.atomic import write_text

        write_text(csv, csv_text(cols, rows))
    if markdown:
        from edgeai.atomic import write_text

        write_text(markdown, markdown_table(cols, rows))
    if plot:
        latency_plot(result.reports, plot)
    if json_out:
        return _print_json(result)
    c = _out()
    c.print(bench_table(result.reports, result.baseline, result.speedups))
    for p in (plot, csv, markdown):
        if p:
            c.print(f"wrote {p}")


@app.command()
@command
def info(
    model: Annotated[str, typer.Argument(help=".onnx file or bundle folder")],
    json_out: JsonOpt = False,
) -> None:
    """Describe an ONNX model: inputs/outputs, opset, operators, parameters, size, metadata.

    Example: edgeai info cnn.onnx
    """
    from edgeai.onnxfile import describe_file

    data = describe_file(model)
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
