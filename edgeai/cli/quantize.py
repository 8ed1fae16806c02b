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
    MaxErrorOpt,
    MinCosineOpt,
    MinTop1Opt,
    OutputKindOpt,
    PipelineTaskOpt,
    ThresholdOpt,
    alias,
    task_limits,
)
from edgeai.errors import EdgeAIError


@app.command()
@command
def quantize(
    src: Annotated[Path, typer.Argument(help="FP32 .onnx file (or an encoder-decoder folder)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output .onnx path")],
    mode: Annotated[str, typer.Option(help="dynamic | static | fp16 | openvino-int8 | int4 | int8-weights | auto")
                    ] = "auto",
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
    speed_budget: Annotated[float | None, typer.Option(help="auto: seconds of timing rounds before an undecided "
                                                       "speed-up is called within noise (default 30; 60 with --device auto)")] = None,
    max_rounds: Annotated[int | None, typer.Option(help="auto: at most this many interleaved timing rounds")] = None,
    block_size: Annotated[int | None, typer.Option(help="int4/int8-weights: input channels per scale")] = None,
    symmetric: Annotated[bool | None, typer.Option("--symmetric/--asymmetric",
                                                   help="int4/int8-weights: weight zero points or not")] = None,
    ratio: Annotated[float | None, typer.Option(help="int4: share of weights in INT4, the rest INT8")] = None,
    engine: Annotated[str | None, typer.Option(help="int4/int8-weights: onnxruntime (MatMulNBitsQuantizer) | "
                                               "nncf (compress_weights); default by --device")] = None,
    accuracy_level: Annotated[int | None, typer.Option(help="int4/int8-weights on onnxruntime: MatMulNBits "
                                                       "compute (4: INT8 activations, 0: FP32)")] = None,
    embedding: Annotated[str | None, typer.Option(help="int4 on onnxruntime: embedding tables float (default) | "
                                                  "int4 (GatherBlockQuantized: smaller file, opset 21)")] = None,
    fuse: Annotated[bool | None, typer.Option("--fuse/--no-fuse", help="int4 on onnxruntime: onnxruntime's "
                                              "fusion passes (default on)")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Decoders: tokens per prompt the generation judge runs")] = 32,
    perplexity_ids: Annotated[Path | None, typer.Option(help="Decoders: a .npy of held-out token ids; the result's "
                                                        "perplexity on them must stay within "
                                                        "--max-perplexity-increase of FP32's")] = None,
    max_perplexity_increase: Annotated[float | None, typer.Option(help="Decoders: allowed perplexity rise, "
                                                                  "a fraction (default 0.01 = 1%)")] = None,
    task: PipelineTaskOpt = None,
    max_error: MaxErrorOpt = None,
    samples: Annotated[int | None, typer.Option(help="With --task: the cap on how many --data samples are used")
                       ] = None,
    force: Annotated[bool, typer.Option(help="Write the file even if parity fails")] = False,
    json_out: JsonOpt = False,
    old_eval: Annotated[str | None, typer.Option("--eval", hidden=True, help="Old spelling of --data")] = None,
) -> None:
    """Quantize an ONNX model and prove it still matches the original (exit 1 if it does not).

    A KV-cache decoder (text-generation-with-past, or an encoder-decoder folder) is judged by
    generation instead: greedy token agreement and per-step logit cosine on prompts. With --task, an
    encoder-decoder folder's result must also keep the pipeline's answers on --data (transcripts, or
    generated token sequences), and --mode may name one file (decoder:dynamic keeps the encoder FP32).

    Example: edgeai quantize cnn.onnx -o cnn.int8.onnx --mode auto --calib calib.npz --data eval.npz --device openvino:CPU

    Example: edgeai quantize whisper/ -o whisper-int8/ --mode auto --task transcribe --data speech.npz
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
    for flag, key, value in (("--speed-budget", "speed_budget_s", speed_budget), ("--max-rounds", "max_rounds", max_rounds)):
        if value is None:
            continue
        if mode != "auto":
            raise EdgeAIError(f"{flag} applies to --mode auto (its speed decision); got --mode {mode}")
        if value <= 0:
            raise EdgeAIError(f"{flag} must be positive; got {value}")
        options[key] = value
    weight_options = {"block_size": block_size, "symmetric": symmetric, "ratio": ratio, "engine": engine,
                      "accuracy_level": accuracy_level, "embedding": embedding, "fuse": fuse}
    if mode.rpartition(":")[2] in ("int4", "int8-weights"):  # decoder:int4 names one file of a folder
        options.update({k: v for k, v in weight_options.items() if v is not None})
        options.setdefault("engine", "nncf" if device.startswith("openvino") else "onnxruntime")
    elif any(v is not None for v in weight_options.values()):
        raise EdgeAIError(f"--block-size, --symmetric, --ratio, --engine, --accuracy-level, --embedding and --fuse "
                          f"apply to --mode int4 and int8-weights; got --mode {mode}")
    decoder = is_generation_export(src)
    if not decoder and (perplexity_ids is not None or max_perplexity_increase is not None):
        raise EdgeAIError(f"--perplexity-ids judges a KV-cache decoder (text-generation-with-past); {src} is not one")
    if task is None and (max_error is not None or samples is not None):
        raise EdgeAIError("--max-error and --samples go with --task (transcribe | seq2seq), which judges the "
                          "pipeline's answers on --data; add --task or drop them")
    if not decoder and any(v is not None for v in (task, max_error, samples)):
        raise EdgeAIError(f"--task, --max-error and --samples apply to an encoder-decoder folder (encoder.onnx + "
                          f"decoder.onnx); {src} is not one")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if decoder:
            from edgeai.generate_parity import quantize_generation

            if data is not None and task is None:
                raise EdgeAIError("a KV-cache decoder is judged by generation on prompts; --data applies only with "
                                  "--task (transcribe | seq2seq), as the task's inputs")
            judge = {"min_cosine": min_cosine} if min_cosine is not None else {}
            if perplexity_ids is not None:
                judge["perplexity_ids"] = perplexity_ids
            if max_perplexity_increase is not None:
                if perplexity_ids is None:
                    raise EdgeAIError("--max-perplexity-increase goes with --perplexity-ids (held-out token ids)")
                judge["max_perplexity_increase"] = max_perplexity_increase
            if task is not None:
                judge.update(task=task, task_data=data, task_samples=samples)
                if max_error is not None:
                    judge["task_max_error"] = max_error
            result = quantize_generation(src, output, mode=mode, device=device, max_new_tokens=max_new_tokens,
                                         force=force, calibration=calib, **judge, **options)
        else:
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
    if decoder:
        return summaries.print_generation_quantize(result, device)
    summaries.print_quantize(result, device)


def is_generation_export(path: Path) -> bool:
    """A KV-cache decoder file (edgeai's generation metadata) or an encoder-decoder folder."""
    from edgeai.onnxfile import load_proto, read_metadata

    if path.is_dir():
        return (path / "decoder.onnx").is_file()
    return path.is_file() and bool(read_metadata(load_proto(path)).get("generation"))
