"""``edgeai fleet``: the Ray cluster's target boxes."""

from __future__ import annotations

import typer

from edgeai.cli.app import app, command
from edgeai.cli.options import FleetOpt, JsonOpt, TargetsOpt

fleet_app = typer.Typer(no_args_is_help=True, help="Target boxes of a Ray cluster (bench/check take --fleet).")
app.add_typer(fleet_app, name="fleet")


@fleet_app.command("targets")
@command
def targets(fleet: FleetOpt = "local", targets: TargetsOpt = None, json_out: JsonOpt = False) -> None:
    """List the boxes that joined (ray start ... --resources '{"edgeai-target:NAME": 1}'), each one's CPU
    features, devices and engine versions, read on the box (exit 1 if a box did not answer).

    Example: edgeai fleet targets --fleet 10.0.0.5:6379
    """
    from edgeai.fleet import command as fleet_command

    raise typer.Exit(fleet_command.targets(fleet, names=targets, json_out=json_out))
