"""``edgeai check --fleet``: parity of candidates against a reference, on every target box.

Two ways to spread it:

- per target (default): every box checks every candidate on its devices over all the data, and
  reports its own verdicts (does the INT8 file hold up on this CPU, this iGPU?);
- ``split=True``: the data is divided among boxes of the same kind (same CPU, features, devices,
  engine versions); each box returns the outputs on its shard and the driver judges them together,
  with the judge one box uses: the verdict one box gives over all the data (see :mod:`edgeai.fleet.split`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgeai.errors import DeviceUnavailableError, EdgeAIError
from edgeai.feeds import resolve_feeds
from edgeai.fleet.cluster import connect, run_on_targets, select_targets, session_address
from edgeai.fleet.inventory import describe_box
from edgeai.fleet.matrix import check_devices, not_here, target_info
from edgeai.fleet.onbox import data_label, parity_row, prepare, receive_all, ship_input
from edgeai.fleet.results import FleetReport, FleetRow, first_line
from edgeai.fleet.shipping import Shipment, TransferError, Workdir, check_shipments, ship
from edgeai.fleet.split import check_split
from edgeai.parity import Tolerance, as_model, build_report, collect_outputs
from edgeai.runtimes import load


def check_on_box(target: str, reference: Any, candidates: Sequence[Any], data: Any, devices: Sequence[str],
                 samples: int | None, overrides: Mapping[str, float], seed: int) -> dict[str, Any]:
    """Runs ON THE TARGET: each candidate on each device against the reference over all the data."""
    t0 = time.perf_counter()
    box = describe_box()
    host, cpu = box["host"], box["cpu"].get("model", "?")
    names = [c.name if isinstance(c, Shipment) else Path(c).name for c in candidates]
    rows: list[FleetRow] = []
    with Workdir() as tmp:
        common = None
        try:
            ref, cands, first = prepare(reference, candidates, tmp)
            data_in = receive_all([data], tmp, "data")[0]
            if isinstance(data_in, str) and data_in.startswith("failed: "):
                raise TransferError(f"data {data_in.removeprefix('failed: ')}")
            if first is not None:
                resolved = resolve_feeds(data_in, first.inputs, samples=samples, seed=seed)
                feeds = list(resolved.feeds)
                # the verdict names its data as the driver knows it, not by this box's temporary copy
                record = {**resolved.to_dict(), **({"source": data.name} if isinstance(data, Shipment) else {})}
                ref_model = as_model(ref, "cpu", first.inputs)
                ref_outs = collect_outputs(ref_model, feeds)
        except EdgeAIError as e:
            common = f"failed: {first_line(e)}"
        for j, name in enumerate(names):
            for d in devices:
                why = common or (cands[j] if isinstance(cands[j], str) else not_here(d, box))
                if why:
                    rows.append(FleetRow(target, host, cpu, name, d, why))
                    continue
                try:
                    model = first if (first is not None and d == "cpu" and first.source == str(cands[j])) \
                        else load(cands[j], d)
                    report = build_report(ref_model, ref_outs, model, collect_outputs(model, feeds), len(feeds),
                                          dict(overrides), data=record)
                    rows.append(parity_row(target, host, cpu, name, d, report))
                except DeviceUnavailableError as e:
                    rows.append(FleetRow(target, host, cpu, name, d, f"unsupported: {first_line(e)}"))
                except EdgeAIError as e:
                    rows.append(FleetRow(target, host, cpu, name, d, f"failed: {first_line(e)}"))
    return {"box": box, "rows": rows, "wall_s": time.perf_counter() - t0}


def _overrides(atol: float | None, rtol: float | None, min_cosine: float | None,
               min_top1: float | None) -> dict[str, float]:
    limits = {k: v for k, v in {"atol": atol, "rtol": rtol, "min_cosine": min_cosine,
                                "min_top1": min_top1}.items() if v is not None}
    Tolerance().with_overrides(**limits)  # bad limits are bad usage, refused before anything ships
    return limits


def check(reference: Any, candidates: Sequence[str | os.PathLike | Shipment] | str | os.PathLike | Shipment,
          data: Any = None, *, address: str | None = None, targets: Sequence[str] | str | None = None,
          devices: Sequence[str] = ("cpu",), samples: int | None = None, atol: float | None = None,
          rtol: float | None = None, min_cosine: float | None = None, min_top1: float | None = None,
          split: bool = False, seed: int = 0, timeout: float | None = None,
          object_store_mb: int | None = None) -> FleetReport:
    """Check candidates against a reference on every target box; one report, a row group per box.

    Args:
        reference: an ``.onnx`` file (shipped; run on each box's onnxruntime CPU at FP32) or a model
            source each box resolves itself (``zoo:cnn``, ``pkg.mod:factory``; needs torch there).
        candidates: ``.onnx`` files or bundle folders (or :class:`Shipment` s).
        data: a data folder / ``.npz`` (shipped), feed dicts, ``random:N`` or N; None: 8 random feeds.
        devices: the devices each box checks every candidate on (a box that lacks one reports it
            ``unsupported``).
        samples / atol / rtol / min_cosine / min_top1: as ``edgeai check``.
        split: divide the data among boxes of the same kind and merge their statistics into one
            verdict per kind (equal to one box running all of it); see :func:`check_split`.
        timeout: seconds a box may take from submission; then its rows fail and the rest go on.

    Returns:
        A :class:`FleetReport`; ``report.passed`` is False when any verdict fails or any row did not run.
    """
    t0 = time.perf_counter()
    items = list(candidates) if isinstance(candidates, (list, tuple)) else [candidates]
    check_shipments(items)
    if not items:
        raise EdgeAIError("give at least one candidate model")
    devices = check_devices(devices)
    overrides = _overrides(atol, rtol, min_cosine, min_top1)
    if split:
        return check_split(reference, items, data, address=address, targets=targets, devices=devices,
                           samples=samples, overrides=overrides, seed=seed, timeout=timeout,
                           object_store_mb=object_store_mb)
    with connect(address, object_store_mb=object_store_mb):
        nodes = select_targets(targets)
        where = session_address()
        t_ship = time.perf_counter()
        shipped = [m if isinstance(m, Shipment) else ship(m) for m in items]
        ref = ship_input(reference, "reference")
        payload = ship_input(data, "data")
        ship_s = time.perf_counter() - t_ship
        answers = run_on_targets(check_on_box, [(n, (n.name, ref, shipped, payload, devices, samples, overrides, seed))
                                                for n in nodes], timeout=timeout)
    rows: list[FleetRow] = []
    for node, answer in zip(nodes, answers, strict=True):
        if isinstance(answer, str):
            rows += [FleetRow(node.name, node.hostname, "?", s.name, d, answer) for s in shipped for d in devices]
        else:
            rows += answer["rows"]
    models = [s.to_dict() for s in shipped] + ([ref.to_dict()] if isinstance(ref, Shipment) else [])
    settings = {"reference": ref.name if isinstance(ref, Shipment) else str(reference), "devices": devices,
                "data": data_label(data), "samples": samples, "tolerance_overrides": overrides, "seed": seed,
                "split": False, "targets": [n.name for n in nodes], "address": where,
                "timeout_s": timeout, "ship_s": round(ship_s, 4),
                "target_wall_s": {n.name: round(a["wall_s"], 3) for n, a in zip(nodes, answers, strict=True)
                                  if not isinstance(a, str)}}
    return FleetReport("check", tuple(rows), tuple(target_info(n, a) for n, a in zip(nodes, answers, strict=True)),
                       tuple(models), settings, time.perf_counter() - t0)
