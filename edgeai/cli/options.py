"""Option declarations shared by the commands: one flag for one concept, everywhere.

- ``--data``: held-out inputs a verdict rests on (a .npz, a folder of .npy/.npz, pkg.mod:fn, or
  random:N). ``quantize --eval`` is its old spelling, kept hidden for one release.
- ``--calib``: calibration inputs, same forms.
- ``--input-spec NAME:DIMS[:DTYPE]``: declare an input of a source that has no specs (``export``,
  ``deploy``); ``--input`` is its old spelling there, kept hidden for one release. In ``run``,
  ``--input NAME=file.npy`` gives one input's values.
- ``--output-kind NAME=KIND`` (repeatable): what an output is, so the verdict judges it by the
  metric of that kind (classification, probability, scalar, regression, embedding, sequence,
  boxes, hidden); ``--threshold METRIC=VALUE`` (repeatable) sets a task metric's limit.
- ``--device``, ``--precision``, ``--samples``, ``--min-cosine``, ``--min-top1``, ``--json``,
  ``-o/--output``: the same meaning in every command.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from edgeai.cli.app import echo_warning
from edgeai.errors import EdgeAIError

DATA_FORMS = "a .npz (keys = input names, leading sample axis), a folder of .npy/.npz, pkg.mod:fn, or random:N"

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
OutputOpt = Annotated[Path, typer.Option("-o", "--output", help="Output .onnx path")]
DataOpt = Annotated[str | None, typer.Option("--data", help=f"Held-out inputs for the parity verdict: {DATA_FORMS}")]
CalibOpt = Annotated[str | None, typer.Option("--calib", help=f"Calibration inputs: {DATA_FORMS}")]
InputSpecOpt = Annotated[list[str] | None, typer.Option("--input-spec", help="NAME:DIMS[:DTYPE], e.g. "
                                                        "x:1x3x224x224:float32 (repeat per input)")]
OldInputSpecOpt = Annotated[list[str] | None, typer.Option("--input", hidden=True,
                                                           help="Old spelling of --input-spec")]
DynamicOpt = Annotated[list[str] | None, typer.Option("--dynamic", help="NAME:AXIS=SYMBOL[,...], e.g. x:0=batch")]
TaskOpt = Annotated[str | None, typer.Option(help="transformers task for a model folder")]
PipelineTaskOpt = Annotated[str | None, typer.Option("--task", help="Run a task pipeline end to end: transcribe "
                                                    "(Whisper: word error rate of the transcripts) or seq2seq (token "
                                                    "error rate of greedy generations), on --data")]
MaxErrorOpt = Annotated[float | None, typer.Option("--max-error", help="With --task: the largest word/token error "
                                                   "rate vs the reference's answers that passes (default 0.01)")]
MinCosineOpt = Annotated[float | None, typer.Option(help="Tolerance: minimum output cosine")]
MinTop1Opt = Annotated[float | None, typer.Option(help="Tolerance: minimum top-1 agreement (0-1)")]
FleetOpt = Annotated[str | None, typer.Option("--fleet", help="Run on every target box of a Ray cluster: HOST:PORT, "
                                              "or 'local' to start one here")]
TargetsOpt = Annotated[str | None, typer.Option("--targets", help="With --fleet: only these boxes, e.g. a,b")]
TimeoutOpt = Annotated[float | None, typer.Option("--timeout", help="With --fleet: seconds before a box's row is "
                                                  "marked failed")]
OutputKindOpt = Annotated[list[str] | None, typer.Option(
    "--output-kind", help="What an output is, NAME=KIND (repeat per output): classification, probability, scalar, "
    "regression, embedding, sequence, boxes or hidden; it is judged by that kind's metric")]
ThresholdOpt = Annotated[list[str] | None, typer.Option(
    "--threshold", help="A task metric's limit, METRIC=VALUE (repeat), e.g. max_abs_diff=0.05, "
    "relative_max_error=0.1, top1_agreement=0.98; KIND.METRIC for one kind: hidden.relative_max_error=0.25")]
ShapeOpt = Annotated[list[str] | None, typer.Option("--shape", help="OpenVINO devices: compile at this static "
                                                    "shape NAME:1x128 (needed for NPU)")]


def alias(new: str, new_value: object, old: str, old_value: object) -> object:
    """Merge a hidden old spelling into its new flag, with a warning that names the new one."""
    if old_value is None or old_value == []:
        return new_value
    if new_value is not None and new_value != []:
        raise EdgeAIError(f"{old} is the old spelling of {new}; give only {new}")
    echo_warning(f"{old} is renamed {new}; the old spelling goes away in the next release")
    return old_value


def task_limits(output_kind: list[str] | None, threshold: list[str] | None) -> dict:
    """``--output-kind`` / ``--threshold`` as tolerance overrides: ``{"kinds": ..., "thresholds": ...}``."""
    from edgeai.metrics import parse_kinds

    out: dict = {}
    if output_kind:
        out["kinds"] = parse_kinds(output_kind)
    if threshold:
        limits = {}
        for item in threshold:
            name, sep, value = item.partition("=")
            try:
                limits[name.strip()] = float(value)
            except ValueError:
                sep = ""
            if not sep or not name.strip():
                raise EdgeAIError(f"bad --threshold {item!r}; write METRIC=VALUE, e.g. max_abs_diff=0.05")
        out["thresholds"] = limits
    return out


def parse_shapes(shapes: list[str] | None) -> dict[str, list[int]] | None:
    """``--shape NAME:1x128`` (repeatable) -> {name: dims}."""
    if not shapes:
        return None
    from edgeai.specs import parse_input_spec

    out = {}
    for text in shapes:
        spec = parse_input_spec(text)
        if spec.is_dynamic:
            raise EdgeAIError(f"--shape {text!r} must give integer dims, e.g. input_ids:1x128")
        out[spec.name] = [int(d) for d in spec.shape]  # type: ignore[arg-type]
    return out


def parse_input_specs(items: list[str] | None) -> list | None:
    from edgeai.specs import parse_input_spec

    return [parse_input_spec(t) for t in items] if items else None


def parse_dynamic(items: list[str] | None) -> dict | None:
    from edgeai.specs import parse_dynamic_spec

    return dict(parse_dynamic_spec(t) for t in items) if items else None


def require_matplotlib(option: str) -> None:
    """Fail before a long run, not after it, when a plot cannot be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise EdgeAIError(f"{option} needs matplotlib: pip install edgeai[extras]") from None


def refuse_overwriting_inputs(output: Path, inputs: list[str], option: str = "-o") -> None:
    """An output path naming the model or an input file would destroy it: inputs are never modified.

    The command wrapper already refuses outputs over any input a command names (by path and inode,
    external data and bundle folders included); this adds ``inputs`` to the command's read set."""
    from edgeai.readset import check_output, note_read, scope

    with scope():
        for item in inputs:
            if item:
                note_read(item)
        check_output(output, option)


def parse_batches(text: str) -> list[int]:
    """``"1,8,32"`` -> [1, 8, 32]."""
    try:
        batches = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise EdgeAIError(f"bad --batch {text!r}; expected comma-separated integers like 1,8,32") from None
    if not batches or min(batches) < 1:
        raise EdgeAIError(f"--batch needs positive integers like 1,8,32; got {text!r}")
    return batches


def parse_dims(items: Sequence[str] | None) -> dict[str, int]:
    """``["seq=128"]`` -> {"seq": 128}: sizes of symbolic dims other than batch."""
    dims = {}
    for item in items or []:
        k, _, v = item.partition("=")
        if not k or not v.strip().isdigit() or int(v) < 1:
            raise EdgeAIError(f"bad --dim {item!r}; expected NAME=SIZE, e.g. seq=128")
        dims[k.strip()] = int(v)
    return dims


def refuse_with_fleet(given: dict[str, object]) -> None:
    """Options the fleet path does not take are refused, not silently dropped."""
    bad = [flag for flag, value in given.items() if value not in (None, False, [], ())]
    if bad:
        raise EdgeAIError(f"--fleet does not take {', '.join(bad)}; drop them, or run without --fleet")


def refuse_without_fleet(given: dict[str, object]) -> None:
    bad = [flag for flag, value in given.items() if value not in (None, False, [], ())]
    if bad:
        raise EdgeAIError(f"{', '.join(bad)} only apply with --fleet HOST:PORT (or --fleet local)")
