"""``edgeai fleet targets``: the boxes that joined, each described by a task run on the box itself."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

from edgeai.cpu import cpu_info
from edgeai.fleet.cluster import TargetNode, connect, run_on_targets, select_targets
from edgeai.fleet.results import TargetInfo
from edgeai.machine import machine_info
from edgeai.runtimes import devices

PROBE_TIMEOUT_S = 120.0  # a box busy with another fleet benchmark answers when that one ends


def describe_box() -> dict[str, Any]:
    """This box: hostname, CPU model and features, devices, engine versions (runs on the target)."""
    found = devices()  # imports the engines, so their versions below are the ones that run
    machine = machine_info()
    return {"host": socket.gethostname(), "cpu": cpu_info().to_dict(), "devices": found,
            "engines": dict(machine.get("engines", {})), "machine": machine}


def _info(node: TargetNode, answer: Any) -> TargetInfo:
    if isinstance(answer, str):  # the probe did not come back: the reason
        return TargetInfo(node.name, node.node_id, node.address, node.hostname, status=answer)
    return TargetInfo(node.name, node.node_id, node.address, answer["host"], "ok", answer["cpu"],
                      tuple(answer["devices"]), answer["engines"], answer["machine"])


def probe(nodes: Sequence[TargetNode], timeout: float = PROBE_TIMEOUT_S) -> list[TargetInfo]:
    """Ask each box to describe itself (in a connected session)."""
    answers = run_on_targets(describe_box, [(n, ()) for n in nodes], timeout=timeout)
    return [_info(n, a) for n, a in zip(nodes, answers, strict=True)]


def targets(address: str | None = None, *, names: Sequence[str] | str | None = None,
            timeout: float = PROBE_TIMEOUT_S) -> list[TargetInfo]:
    """The boxes that joined the cluster, each with its CPU features, devices and engine versions.

    Each box is asked by a small task pinned to its ``edgeai-target:NAME`` resource, so what is
    reported is read on the box. A box that does not answer within ``timeout`` seconds (busy with
    a benchmark, or gone) is listed with ``status`` ``failed: <reason>``.

    Args:
        address: ``HOST:PORT`` of the Ray head; None: a local instance with this box as ``local``.
        names: only these targets (a list or ``"a,b"``).

    Raises:
        FleetError: Ray missing, the head unreachable, no target joined, or an unknown name.

    Example:
        >>> [(t.name, t.cpu["model"], t.devices) for t in edgeai.fleet.targets("10.0.0.5:6379")]
    """
    with connect(address):
        return probe(select_targets(names), timeout)
