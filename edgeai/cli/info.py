"""``edgeai info``."""

from __future__ import annotations

from typing import Annotated

import typer

from edgeai.cli.app import app, command, fail, print_json
from edgeai.cli.options import JsonOpt


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
    from edgeai import bundle, summaries

    data = bundle.describe_path(model)
    if json_out:
        print_json(data)
    elif data.get("format") == "edgeai-bundle":
        summaries.print_bundle(data)
    else:
        summaries.print_model_file(data)
    bad = {k: v for k, v in (data.get("integrity") or {}).items() if v != "ok"}
    if bad:
        fail(f"bundle files do not match the manifest: {bad}; do not deploy it")
