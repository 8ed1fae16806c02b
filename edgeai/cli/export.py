"""``edgeai export``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeai.cli.app import app, command, print_json
from edgeai.cli.options import (
    DynamicOpt,
    InputSpecOpt,
    JsonOpt,
    OldInputSpecOpt,
    TaskOpt,
    alias,
    parse_dynamic,
    parse_input_specs,
)


@app.command()
@command
def export(
    source: Annotated[str, typer.Argument(help="zoo:NAME, pkg.mod:factory, file.py:factory, model.pt2, or a transformers folder")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output .onnx path")] = Path("model.onnx"),
    input_spec: InputSpecOpt = None,
    dynamic: DynamicOpt = None,
    task: TaskOpt = None,
    opset: Annotated[int | None, typer.Option(help="ONNX opset")] = None,
    exporter: Annotated[str, typer.Option(help="auto | dynamo | torchscript")] = "auto",
    validate: Annotated[bool, typer.Option(help="Validate against PyTorch at unseen dims")] = True,
    atol: Annotated[float, typer.Option(help="Validation absolute tolerance")] = 1e-4,
    simplify: Annotated[bool, typer.Option(help="Simplify the graph with onnxslim")] = False,
    weights: Annotated[Path | None, typer.Option(help="State dict for a factory/zoo model: .safetensors, or .pt/.pth "
                                                      "read with weights_only=True")] = None,
    json_out: JsonOpt = False,
    old_input: OldInputSpecOpt = None,
) -> None:
    """Export a PyTorch model to ONNX and validate it right away.

    Example: edgeai export net.py:make --input-spec x:1x3x64x64:float32 --dynamic x:0=batch --weights net.safetensors -o net.onnx
    """
    import edgeai
    from edgeai import summaries

    specs = parse_input_specs(alias("--input-spec", input_spec, "--input", old_input))  # type: ignore[arg-type]
    result = edgeai.export(source, None, output, inputs=specs, dynamic_axes=parse_dynamic(dynamic), task=task,
                           opset=opset, exporter=exporter, validate=validate, atol=atol, simplify=simplify,
                           weights=weights)
    if json_out:
        return print_json(result)
    summaries.print_export(result, source)
