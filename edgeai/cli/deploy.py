"""``edgeai deploy``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeai.cli.app import app, command, fail, print_json
from edgeai.cli.options import (
    CalibOpt,
    DataOpt,
    DynamicOpt,
    InputSpecOpt,
    JsonOpt,
    MinCosineOpt,
    MinTop1Opt,
    OldInputSpecOpt,
    OutputKindOpt,
    TaskOpt,
    ThresholdOpt,
    alias,
    parse_dynamic,
    parse_input_specs,
    task_limits,
)


@app.command()
@command
def deploy(
    source: Annotated[str, typer.Argument(help="zoo:NAME, pkg.mod:factory, file.py:factory, model.pt2, a transformers folder, or an FP32 .onnx")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Bundle folder to write")],
    device: Annotated[list[str] | None, typer.Option("--device", help="Target device; repeat for several")] = None,
    mode: Annotated[str, typer.Option(help="auto | static | dynamic | fp16 | openvino-int8 | none")] = "auto",
    calib: CalibOpt = None,
    data: DataOpt = None,
    samples: Annotated[int, typer.Option(help="Parity samples")] = 16,
    input_spec: InputSpecOpt = None,
    dynamic: DynamicOpt = None,
    task: TaskOpt = None,
    preprocessing: Annotated[str | None, typer.Option(help="JSON (or a .json file) saying how to prepare raw inputs")] = None,
    labels: Annotated[str | None, typer.Option(help="Class labels: comma-separated, or a text file, one per line")] = None,
    iterations: Annotated[int, typer.Option(help="Timed runs per variant and device")] = 100,
    min_cosine: MinCosineOpt = None,
    min_top1: MinTop1Opt = None,
    output_kind: OutputKindOpt = None,
    threshold: ThresholdOpt = None,
    fallback_fp32: Annotated[bool, typer.Option(help="Ship FP32 for a device whose quantized variant fails parity")] = False,
    force: Annotated[bool, typer.Option(help="Write the bundle even if a check fails (exit 1)")] = False,
    json_out: JsonOpt = False,
    old_input: OldInputSpecOpt = None,
) -> None:
    """Export, quantize per device, check parity, benchmark; write a verifiable bundle folder.

    Example: edgeai deploy zoo:cnn -o cnn-bundle --device cpu --device openvino:CPU --calib calib.npz
    """
    import edgeai
    from edgeai import bundle, summaries

    tol = {k: v for k, v in (("min_cosine", min_cosine), ("min_top1", min_top1)) if v is not None}
    tol.update(task_limits(output_kind, threshold))
    specs = parse_input_specs(alias("--input-spec", input_spec, "--input", old_input))  # type: ignore[arg-type]
    result = edgeai.deploy(source, output, devices=device or ["cpu"], mode=mode, calibration=calib,
                           eval_inputs=data, samples=samples, tolerance=tol or None, inputs=specs,
                           dynamic_axes=parse_dynamic(dynamic), task=task,
                           preprocessing=bundle.read_json_option(preprocessing, "--preprocessing"),
                           labels=bundle.read_labels(labels), iterations=iterations, fallback_fp32=fallback_fp32,
                           force=force)
    if json_out:
        print_json(result)
    else:
        summaries.print_deploy(result, source, mode)
    if not result.passed:
        fail("a parity check failed; the bundle was written because of --force")
