"""``edgeai devices``."""

from __future__ import annotations

from edgeai.cli.app import app, command, print_json
from edgeai.cli.options import JsonOpt


@app.command()
@command
def devices(json_out: JsonOpt = False) -> None:
    """List the devices this machine can run on (and what torch, openvino, auto map to), engine versions,
    and the CPU's features.

    Example: edgeai devices --json
    """
    from edgeai import bench, device_strings, runtimes, summaries

    data = {"devices": runtimes.devices(), "device_strings": device_strings.describe_devices(),
            **bench.machine_info()}
    if json_out:
        return print_json(data)
    summaries.print_devices(data)
