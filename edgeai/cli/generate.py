"""``edgeai generate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeai.cli.app import app, command, print_json
from edgeai.cli.options import JsonOpt
from edgeai.errors import EdgeAIError


@app.command()
@command
def generate(
    model: Annotated[str, typer.Argument(help="Decoder .onnx (text-generation-with-past) or encoder-decoder folder")],
    prompt_ids: Annotated[str | None, typer.Option(help="Prompt token ids, comma-separated")] = None,
    prompt: Annotated[str | None, typer.Option(help="Prompt text (needs --tokenizer)")] = None,
    tokenizer: Annotated[Path | None, typer.Option(help="Local tokenizer folder: text in and out")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Most new tokens to generate")] = 32,
    device: Annotated[str, typer.Option(help="Device string")] = "cpu",
    sample: Annotated[bool, typer.Option("--sample/--greedy", help="Sample instead of greedy argmax")] = False,
    temperature: Annotated[float, typer.Option(help="Sampling temperature")] = 1.0,
    top_k: Annotated[int, typer.Option(help="Sample among the k most likely tokens (0: all)")] = 0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling probability mass")] = 1.0,
    seed: Annotated[int | None, typer.Option(help="Sampling seed")] = None,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Keep the KV cache (--no-cache re-runs "
                                        "the whole sequence every step)")] = True,
    num_beams: Annotated[int, typer.Option(help="Beam search with this many beams (1: greedy/sampling)")] = 1,
    repetition_penalty: Annotated[float, typer.Option(help="Penalize tokens already in the sequence (1.0: off)")
                                  ] = 1.0,
    stream: Annotated[bool, typer.Option("--stream", help="Print text (or ids) as each token is decoded")] = False,
    stateful: Annotated[bool | None, typer.Option("--stateful/--stateless", help="OpenVINO: keep the KV cache "
                                                  "inside the infer request (default) or feed it each step")] = None,
    spinning: Annotated[bool | None, typer.Option("--spinning/--no-spinning", help="onnxruntime CPU: idle threads "
                                                  "busy-wait (default; fastest on an idle box) or sleep (cores "
                                                  "shared with other work)")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Generate tokens with a KV-cache export on a device; reports time to first token and tokens/s.

    Example: edgeai generate gpt2.onnx --prompt "Once upon" --tokenizer tok/ --stream --device openvino:CPU
    """
    import edgeai
    from edgeai import generation, summaries

    if (prompt_ids is None) == (prompt is None):
        raise EdgeAIError("give exactly one of --prompt-ids 1,2,3 or --prompt TEXT (with --tokenizer DIR)")
    tok = generation.load_tokenizer(tokenizer) if tokenizer else None
    if prompt is not None and tok is None:
        raise EdgeAIError("--prompt needs --tokenizer DIR (a local tokenizer folder); or pass --prompt-ids")
    ids = generation.parse_token_ids(prompt_ids) if prompt_ids is not None else list(tok(prompt)["input_ids"])
    if stream and (json_out or num_beams > 1):
        raise EdgeAIError("--stream prints tokens as they are decoded: not with --json, nor with --num-beams > 1 "
                          "(a beam's tokens are known only at the end)")
    printer = summaries.TokenStream(tok) if stream else None
    options: dict = {"stateful": stateful} if stateful is not None else {}
    if spinning is not None:
        if not device.startswith(("cpu", "onnxruntime")):
            raise EdgeAIError(f"--spinning/--no-spinning is an onnxruntime CPU option; --device is {device}")
        options["spinning"] = spinning
    result = edgeai.generate(model, [ids], max_new_tokens, device=device, do_sample=sample, temperature=temperature,
                             top_k=top_k, top_p=top_p, seed=seed, use_cache=cache, num_beams=num_beams,
                             repetition_penalty=repetition_penalty, on_token=printer, **options)
    if printer is not None:
        printer.close()
    new = result.tokens[0].tolist()
    text = tok.decode(new, skip_special_tokens=True) if tok is not None else None
    if json_out:
        return print_json({**result.to_dict(), "prompt_ids": ids, "text": text})
    summaries.print_generation(result, new, text)
