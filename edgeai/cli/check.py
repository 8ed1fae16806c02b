"""``edgeai check``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeai.cli.app import app, command, print_json
from edgeai.cli.options import (
    DataOpt,
    FleetOpt,
    JsonOpt,
    MinCosineOpt,
    MinTop1Opt,
    TargetsOpt,
    TimeoutOpt,
    refuse_with_fleet,
    refuse_without_fleet,
)


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
    fleet: FleetOpt = None,
    targets: TargetsOpt = None,
    split: Annotated[bool, typer.Option(help="With --fleet: split --data across boxes of the same kind; the "
                                        "merged metrics equal a single-box run")] = False,
    timeout: TimeoutOpt = None,
    plot: Annotated[Path | None, typer.Option(help="With --fleet: write a PNG of the per-box verdicts here")] = None,
    markdown: Annotated[Path | None, typer.Option(help="With --fleet: write Markdown here")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Check parity of model file(s) against a reference on one or more devices (exit 1 when out of tolerance).

    The reference runs once at FP32 (PyTorch for a model source, onnxruntime CPU for an .onnx). Each candidate runs on each --device and the precision in effect there is reported; tolerances default by that precision and --atol/--rtol/--min-cosine/--min-top1 override them.

    Example: edgeai check cnn.onnx cnn.int8.onnx --reference cnn.onnx --data eval.npz --device cpu --device openvino:CPU --layerwise
    """
    from edgeai import parity, summaries
    from edgeai.fleet import command as fleet_command

    if fleet is not None:
        refuse_with_fleet({"--layerwise": layerwise})
        raise typer.Exit(fleet_command.check(
            models, reference=reference, fleet=fleet, targets=targets, device=device, samples=samples, data=data,
            atol=atol, rtol=rtol, min_cosine=min_cosine, min_top1=min_top1, split=split, timeout=timeout,
            plot=plot, markdown=markdown, json_out=json_out))
    refuse_without_fleet({"--targets": targets, "--split": split, "--timeout": timeout, "--plot": plot,
                          "--markdown": markdown})

    reports = parity.check_many(models, reference, devices=device or ["cpu"], samples=samples, data=data, atol=atol,
                                rtol=rtol, min_cosine=min_cosine, min_top1=min_top1, layerwise=layerwise)
    if json_out:
        print_json({"passed": all(r.passed for r in reports), "reports": [r.to_dict() for r in reports]})
    else:
        summaries.print_check(reports)
    if not all(r.passed for r in reports):
        raise typer.Exit(1)
