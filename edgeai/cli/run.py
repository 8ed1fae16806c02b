"""``edgeai run``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from edgeai.cli.app import app, command, print_json
from edgeai.cli.options import JsonOpt, ShapeOpt, parse_shapes, refuse_overwriting_inputs


@app.command()
@command
def run(
    model: Annotated[str, typer.Argument(help=".onnx file or bundle folder")],
    device: Annotated[str | None, typer.Option(help="Device string (default: the device the file was quantized for, else cpu)")] = None,
    input: Annotated[list[str] | None, typer.Option("--input", help="NAME=file.npy (random when omitted)")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write outputs to this .npz")] = None,
    precision: Annotated[str | None, typer.Option(help="f32 | f16 | bf16 | auto")] = None,
    shape: ShapeOpt = None,
    fallback: Annotated[bool, typer.Option(help="Fall back to cpu if the device is missing")] = False,
    check_values: Annotated[bool, typer.Option(
        help="Fail on NaN/Inf or out-of-range token ids in inputs (exit 2) and NaN/Inf in outputs (exit 1); "
             "without it they are reported")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Run a model once and print output shapes and checksums (and any NaN/Inf in inputs or outputs).

    Example: edgeai run cnn.onnx --device openvino:CPU --input pixel_values=x.npy -o out.npz
    """
    from edgeai import running, summaries

    options: dict[str, Any] = {}
    static = parse_shapes(shape)
    if static:
        options["static_shapes"] = static
    if output is not None:
        refuse_overwriting_inputs(output, [model, *(item.partition("=")[2] for item in input or [])])
    summary = running.run_once(model, device, input, output=output, precision=precision, fallback=fallback,
                                check_values=check_values, **options)
    if json_out:
        return print_json(summary)
    summaries.print_run(summary)
