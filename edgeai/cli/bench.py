"""``edgeai bench``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeai.cli.app import app, command, print_json
from edgeai.cli.options import (
    FleetOpt,
    JsonOpt,
    ShapeOpt,
    TargetsOpt,
    TimeoutOpt,
    parse_batches,
    parse_dims,
    parse_shapes,
    refuse_with_fleet,
    require_matplotlib,
)
from edgeai.errors import EdgeAIError


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
    shape: ShapeOpt = None,
    dim: Annotated[list[str] | None, typer.Option("--dim", help="Size of a symbolic dim other than batch, e.g. seq=128")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Compiled-model cache folder (both engines)")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG plot here")] = None,
    csv: Annotated[Path | None, typer.Option(help="Write CSV here")] = None,
    markdown: Annotated[Path | None, typer.Option(help="Write Markdown here")] = None,
    compare_to: Annotated[Path | None, typer.Option(help="An earlier `bench --json` file: flag regressions beyond the noise (exit 1)")] = None,
    min_change: Annotated[float, typer.Option(help="With --compare-to: smallest slowdown that counts, however low the noise")] = 0.05,
    generate: Annotated[int | None, typer.Option("--generate", help="KV-cache exports: time generating N tokens "
                                                 "(time to first token, tokens/s, step percentiles) over --rounds runs")] = None,
    fleet: FleetOpt = None,
    targets: TargetsOpt = None,
    timeout: TimeoutOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Benchmark models x devices x precisions x batch sizes in one process, interleaved; cold start shown apart.

    A cell whose device, precision or batch size cannot be had is marked unsupported with the reason (nothing else runs in its place).

    Exit 1 when --compare-to finds a regression beyond the measured noise, or a cell failed.

    With --fleet, every target box of a Ray cluster runs the matrix on its own hardware and one report
    comes back with a row group per box (see docs/fleet.md).

    Example: edgeai bench cnn.onnx cnn.int8.onnx --device cpu --device openvino:CPU --batch 1,8 --plot bench.png
    """
    from edgeai import benchmarking, generation, summaries
    from edgeai.fleet import command as fleet_command

    if fleet is not None:
        refuse_with_fleet({"--baseline": baseline, "--shape": shape, "--cache-dir": cache_dir, "--csv": csv,
                           "--compare-to": compare_to, "--generate": generate})
        raise typer.Exit(fleet_command.bench(
            models, fleet=fleet, targets=targets, device=device, precision=precision, batches=parse_batches(batch),
            warmup=warmup, iterations=iterations, duration=duration, rounds=rounds, streams=streams,
            threads=threads, dims=parse_dims(dim), timeout=timeout, plot=plot, markdown=markdown,
            json_out=json_out))
    if targets is not None or timeout is not None:
        raise EdgeAIError("--targets and --timeout select and bound fleet boxes; add --fleet HOST:PORT (or "
                          "--fleet local)")

    if generate is not None:
        ignored = [flag for flag, value in (("--plot", plot), ("--csv", csv), ("--markdown", markdown),
                                            ("--compare-to", compare_to), ("--baseline", baseline),
                                            ("--precision", precision), ("--shape", shape), ("--dim", dim),
                                            ("--cache-dir", cache_dir), ("--duration", duration))
                   if value] + (["--batch"] if batch != "1" else []) + (["--streams"] if streams != 1 else [])
        if ignored:
            raise EdgeAIError(f"--generate times the generation loop and does not take {', '.join(ignored)}; "
                              "drop them, or benchmark single forward passes without --generate")
        opts = {"threads": threads} if threads else {}
        results = [generation.benchmark_generation(path, name=f"{Path(path).name}@{d}", new_tokens=generate,
                                                   rounds=rounds, warmup=min(warmup, 2), device=d, **opts)
                   for path in models for d in device or ["cpu"]]
        if json_out:
            return print_json({"generation": [r.to_dict() for r in results]})
        return summaries.print_generation_bench(results, generate, rounds)
    if plot is not None:
        require_matplotlib("--plot")
    run = benchmarking.run_bench(
        models, devices=device or ["cpu"], batches=parse_batches(batch),
        precisions=list(precision or [None]), warmup=warmup, iterations=iterations, duration=duration, rounds=rounds,
        streams=streams, baseline=baseline, threads=threads, static_shapes=parse_shapes(shape),
        dims=parse_dims(dim), cache_dir=cache_dir, plot=plot, csv=csv, markdown=markdown,
        compare_to=compare_to, min_change=min_change)
    if json_out:
        print_json(run.to_dict())
    else:
        summaries.print_bench(run.result, run.comparison, run.written)
    if run.regressions:
        typer.echo("regression: " + ", ".join(f"{x.name} b{x.batch} {x.change:+.1%} (noise ±{x.threshold:.1%})"
                                              for x in run.regressions), err=True)
    if run.failed:
        typer.echo("failed: " + "; ".join(f"{r.name} b{r.batch}: {r.status}" for r in run.failed), err=True)
    if run.regressions or run.failed:
        raise typer.Exit(1)
