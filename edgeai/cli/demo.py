"""``edgeai demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeai.cli.app import app, command, print_json
from edgeai.cli.options import JsonOpt


@app.command()
@command
def demo(
    out: Annotated[Path, typer.Option(help="Output folder")] = Path("edgeai-demo"),
    iterations: Annotated[int, typer.Option(help="Timed runs per variant")] = 300,
    json_out: JsonOpt = False,
) -> None:
    """Train a digits CNN, export, quantize, and compare every variant on every device here.

    Example: edgeai demo --out edgeai-demo
    """
    from edgeai import demo as pipeline
    from edgeai import summaries

    results = pipeline.run_demo(out, iterations=iterations)
    if json_out:
        return print_json(results)
    summaries.print_demo(results)
