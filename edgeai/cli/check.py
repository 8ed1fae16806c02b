"""``edgeai check``."""

from __future__ import annotations

from typing import Annotated

import typer

from edgeai.cli.app import app, command, print_json
from edgeai.cli.options import DataOpt, JsonOpt, MinCosineOpt, MinTop1Opt


@app.command()
@command
def check(
    models: Annotated[list[str], typer.Argument(help="Candidate .onnx file(s), e.g. the FP32, INT8 and FP16 files")],
    reference: Annotated[str, typer.Option(help="Reference: a model source (zoo:, pkg.mod:factory) or an .onnx")],
    device: Annotated[list[str] | None, typer.Option("--device", help="Device(s) to check on; repeat for several")] = None,
    samples: Annotated[int | None, typer.Option(help="Random feeds, batch 2 each (default 8); with --data, "
                                                "the cap on how many of its samples are used")] = None,
    data: DataOpt = None,
    atol: Annotated[float | None, typer.Option(help="allclose absolute tolerance")] = None,
    rtol: Annotated[float | None, typer.Option(help="allclose relative tolerance")] = None,
    min_cosine: MinCosineOpt = None,
    min_top1: MinTop1Opt = None,
    layerwise: Annotated[bool, typer.Option(help="Find the first nodes where an ONNX candidate diverges from an "
                                            "ONNX reference")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Check parity of model file(s) against a reference on one or more devices (exit 1 when out of tolerance).

    The reference runs once at FP32 (PyTorch for a model source, onnxruntime CPU for an .onnx). Each candidate runs on each --device and the precision in effect there is reported; tolerances default by that precision and --atol/--rtol/--min-cosine/--min-top1 override them.

    Example: edgeai check cnn.onnx cnn.int8.onnx --reference cnn.onnx --data eval.npz --device cpu --device openvino:CPU --layerwise
    """
    from edgeai import parity, summaries

    reports = parity.check_many(models, reference, devices=device or ["cpu"], samples=samples, data=data, atol=atol,
                                rtol=rtol, min_cosine=min_cosine, min_top1=min_top1, layerwise=layerwise)
    if json_out:
        print_json({"passed": all(r.passed for r in reports), "reports": [r.to_dict() for r in reports]})
    else:
        summaries.print_check(reports)
    if not all(r.passed for r in reports):
        raise typer.Exit(1)
