"""``edgeai devices``."""

from __future__ import annotations

from edgeai.cli.app import app, command, print_json
from edgeai.cli.options import JsonOpt


@app.command()
@command
def devices(json_out: JsonOpt = False) -> None:
    """List the devices this machine can run on, engine versions, and the CPU's features.

    Example: edgeai devices --json
    """
    from edgeai import bench, runtimes, summaries

    data = {"devices": runtimes.devices(), **bench.machine_info()}
    if json_out:
        return print_json(data)
    summaries.print_devices(data)
