"""What a box does for a parity check, shared by the per-target and the split check: receive the
shipped reference, candidates and data, and turn a ParityReport into a row. Plus the driver's side
of it: which inputs are shipped and which each box resolves itself."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgeai.errors import InputMismatchError
from edgeai.fleet.results import FleetRow, first_line
from edgeai.fleet.shipping import Shipment, TransferError, receive, ship
from edgeai.runtimes import load


def parity_row(target: str, host: str, cpu: str, model: str, device: str, report: Any) -> FleetRow:
    """A row from a ParityReport: the worst output's numbers and the verdict, with what ran."""
    c, w = report.candidate, report.worst
    metrics = {"passed": report.passed, "verdict": report.verdict(), "samples": report.samples,
               "worst_output": w.name, "max_abs": w.max_abs, "mean_abs": w.mean_abs, "cosine": w.cosine,
               "top1": w.top1, "failures": [f for o in report.outputs for f in o.failures]}
    return FleetRow(target, host, cpu, model, device, "ok", c.get("precision"), None,
                    f"{c.get('engine')} {c.get('engine_version', '')}".strip(),
                    ",".join(c.get("devices_in_effect") or []) or None, metrics, report.to_dict())


def receive_all(items: Sequence[Any], tmp: Path, tag: str) -> list[Any]:
    """Shipments become local paths (or ``failed: ...`` on a corrupted transfer); others pass through."""
    out: list[Any] = []
    for i, item in enumerate(items):
        if isinstance(item, Shipment):
            try:
                out.append(receive(item, tmp / f"{tag}{i}"))
            except TransferError as e:
                out.append(f"failed: {first_line(e)}")
        else:
            out.append(item)
    return out


def prepare(reference: Any, candidates: Sequence[Any], tmp: Path) -> tuple[Any, list[Any], Any]:
    """On a box: received reference, candidates, and the first candidate loaded on cpu (for input specs)."""
    ref = receive_all([reference], tmp, "reference")[0]
    if isinstance(ref, str) and ref.startswith("failed: "):
        raise TransferError(f"reference {ref.removeprefix('failed: ')}")
    cands = receive_all(candidates, tmp, "candidate")
    first = next((p for p in cands if not isinstance(p, str)), None)
    return ref, cands, None if first is None else load(first, "cpu")


def ship_input(item: Any, what: str) -> Any:
    """A path on the driver is shipped; a model source (``zoo:cnn``), random spec or callable is resolved on each box."""
    if isinstance(item, Shipment):
        return item
    if isinstance(item, (str, os.PathLike)) and Path(item).exists():
        return ship(item)
    if isinstance(item, (str, os.PathLike, int, type(None))):
        return item
    if isinstance(item, (Mapping, list, tuple)):
        import ray

        return ray.put([dict(item)] if isinstance(item, Mapping) else [dict(f) for f in item])
    raise InputMismatchError(f"{what} must be a path, a Shipment, a model source, feeds or random:N; "
                             f"got a {type(item).__name__}")


def data_label(data: Any) -> Any:
    if data is None or isinstance(data, (int, str, os.PathLike)):
        return None if data is None else str(data)
    if isinstance(data, Shipment):
        return data.name
    return f"{len(data) if isinstance(data, (list, tuple)) else 1} feed dict(s)"
