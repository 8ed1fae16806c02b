"""``edgeai quantize``."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from edgeai.cli.app import app, command, echo_warning, print_json, state
from edgeai.cli.options import (
    CalibOpt,
    DataOpt,
    JsonOpt,
    MinCosineOpt,
    MinTop1Opt,
    OutputKindOpt,
    ThresholdOpt,
    alias,
    task_limits,
)


@app.command()
@command
def quantize(
    src: Annotated[Path, typer.Argument(help="FP32 .onnx file")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output .onnx path")],
    mode: Annotated[str, typer.Option(help="dynamic | static | fp16 | openvino-int8 | auto")] = "auto",
    calib: CalibOpt = None,
    data: DataOpt = None,
    device: Annotated[str, typer.Option(help="Device for parity and latency (auto: the target)")] = "cpu",
    min_cosine: MinCosineOpt = None,
    min_top1: MinTop1Opt = None,
    output_kind: OutputKindOpt = None,
    threshold: ThresholdOpt = None,
    method: Annotated[str | None, typer.Option(help="static calibration: minmax | entropy | percentile")] = None,
    per_channel: Annotated[bool | None, typer.Option("--per-channel/--per-tensor", help="Weight granularity")] = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="Node name to keep in float (repeat)")] = None,
    min_speedup: Annotated[float | None, typer.Option(help="auto: INT8 must be this much faster than FP32")] = None,
    force: Annotated[bool, typer.Option(help="Write the file even if parity fails")] = False,
    json_out: JsonOpt = False,
    old_eval: Annotated[str | None, typer.Option("--eval", hidden=True, help="Old spelling of --data")] = None,
) -> None:
    """Quantize an ONNX model and prove it still matches the original (exit 1 if it does not).

    Example: edgeai quantize cnn.onnx -o cnn.int8.onnx --mode auto --calib calib.npz --data eval.npz --device openvino:CPU
    """
    import edgeai
    from edgeai import summaries

    data = alias("--data", data, "--eval", old_eval)  # type: ignore[assignment]
    limits = {k: v for k, v in (("min_cosine", min_cosine), ("min_top1", min_top1)) if v is not None}
    limits.update(task_limits(output_kind, threshold))
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
        result = edgeai.quantize(src, output, mode=mode, calibration=calib, eval_inputs=data, device=device,
                                 tolerance=limits or None, force=force, **options)
    seen = set()
    for w in caught:  # ours (random calibration, fallbacks) once each; library chatter only with --debug
        text = str(w.message)
        if text not in seen and (text.startswith(("calibrating on random", "edgeai:")) or state["debug"]):
            seen.add(text)
            echo_warning(text)
    if json_out:
        return print_json(result)
    summaries.print_quantize(result, device)
