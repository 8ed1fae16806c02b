"""``edgeai bench --fleet``: the same device x precision x batch matrix on every target box.

Each box runs its whole matrix in one task, with :func:`edgeai.bench.bench_matrix` (interleaved
rounds, cold start apart from steady state), exactly as ``edgeai bench`` would on that box; only
the model files travel, once, through the object store.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgeai.bench import BenchConfig, BenchReport, StopRule, bench_matrix
from edgeai.errors import DeviceUnavailableError, EdgeAIError
from edgeai.fleet.cluster import (
    TargetNode,
    connect,
    run_on_targets,
    select_targets,
    session_address,
)
from edgeai.fleet.inventory import describe_box
from edgeai.fleet.results import FleetReport, FleetRow, TargetInfo, first_line
from edgeai.fleet.shipping import Shipment, TransferError, Workdir, check_shipments, receive, ship
from edgeai.machine import physical_cores
from edgeai.runtimes import parse_device


def not_here(device: str, box: Mapping[str, Any]) -> str | None:
    """``unsupported: ...`` when ``device`` is not on this box (read from its own device list)."""
    have = list(box.get("devices") or [])
    try:
        req = parse_device(device)
    except DeviceUnavailableError as e:  # "auto" with no engine at all
        return f"unsupported: {first_line(e)}"
    if req.engine == "torch":
        return None  # the PyTorch reference: its load says whether torch is there
    if req.engine == "openvino" and req.target.split(".")[0] in ("AUTO", "MULTI", "HETERO"):
        ok = any(d.startswith("openvino:") for d in have)
    else:
        base = req.device.split(":")[0] if req.engine == "onnxruntime" else req.device.split(".")[0]
        ok = any(d.split(".")[0] == base for d in have)
    if ok:
        return None
    # The row names the target and host; the reason alone lets boxes with the same devices share a note.
    return f"unsupported: {device} is not on this box; it has {', '.join(have) or 'no device'}"


def check_devices(devices: Sequence[str]) -> list[str]:
    """Refuse device strings no box could parse before anything is shipped (``auto`` is resolved on each box)."""
    out = [str(d).strip() for d in devices]
    if not out:
        raise EdgeAIError("give at least one device")
    for d in out:
        if d.lower() != "auto":
            parse_device(d)
    return out


def _labels(shipments: Sequence[Shipment]) -> list[str]:
    names = [s.name for s in shipments]
    return names if len(set(names)) == len(names) else [f"{i}:{n}" for i, n in enumerate(names)]


def _cells(labels: Sequence[str], devices: Sequence[str], precisions: Sequence[str | None],
           batches: Sequence[int]) -> list[tuple[int, str, str | None, int, str]]:
    """(model index, device, precision, batch, config name) in the order rows are reported."""
    return [(i, d, p, b, f"{label}@{d}" + (f"@{p}" if p else ""))
            for i, label in enumerate(labels) for d in devices for p in precisions for b in batches]


def _metrics(r: BenchReport) -> dict[str, Any]:
    if not r.ok or r.latency is None:
        return {}
    lat = r.latency
    return {"p50_ms": lat.p50, "p90_ms": lat.p90, "p99_ms": lat.p99, "mean_ms": lat.mean, "runs": lat.n,
            "items_per_s": r.throughput, "cold_start_ms": r.cold_start_ms, "noise": r.noise,
            "threads": (r.runtime or {}).get("threads")}


def bench_on_box(target: str, shipments: Sequence[Shipment], devices: Sequence[str],
                 precisions: Sequence[str | None], batches: Sequence[int], settings: Mapping[str, Any]
                 ) -> dict[str, Any]:
    """Runs ON THE TARGET: receive the models, run this box's cells, return its rows and description."""
    t0 = time.perf_counter()
    box = describe_box()
    host, cpu = box["host"], box["cpu"].get("model", "?")
    labels = _labels(shipments)
    cells = _cells(labels, devices, precisions, batches)
    rows: list[FleetRow] = []
    with Workdir() as tmp:
        received: list[Path | str] = []
        for s in shipments:
            try:
                received.append(receive(s, tmp / str(len(received))))
            except TransferError as e:
                received.append(f"failed: {first_line(e)}")
        status: dict[str, str] = {}
        configs: list[BenchConfig] = []
        threads = settings.get("threads") or physical_cores()  # as `edgeai bench`: set explicitly
        for i, d, p, _, name in cells:
            if name in status or any(c.name == name for c in configs):
                continue
            got = received[i]
            why = got if isinstance(got, str) else not_here(d, box)
            if why:
                status[name] = why
                continue
            options: dict[str, Any] = {"threads": threads}
            if p:
                options["precision"] = p
            configs.append(BenchConfig(name, str(got), d, options))
        reports: dict[tuple[str, int], BenchReport] = {}
        if configs:
            try:
                result = bench_matrix(configs, list(batches), warmup=settings["warmup"],
                                      iterations=settings.get("iterations"), duration=settings.get("duration"),
                                      rounds=settings["rounds"], streams=settings["streams"],
                                      dims=settings.get("dims") or None)
                reports = {(r.name, r.batch): r for r in result.reports}
            except EdgeAIError as e:  # nothing could run here: every cell says why
                text = first_line(e).removeprefix("nothing could run: ")
                for c in configs:
                    status[c.name] = text if text.startswith(("unsupported", "failed")) else f"failed: {text}"
        for i, d, p, b, name in cells:
            r = reports.get((name, b))
            if r is None:
                rows.append(FleetRow(target, host, cpu, shipments[i].name, d, status.get(name, "failed: did not run"),
                                     p, b))
                continue
            rt = r.runtime or {}
            rows.append(FleetRow(target, host, cpu, shipments[i].name, d, r.status, rt.get("precision") or p, r.batch,
                                 f"{rt['engine']} {rt.get('engine_version', '')}".strip() if rt else None,
                                 ",".join(rt.get("devices_in_effect") or []) or None, _metrics(r),
                                 r.to_dict(), r.samples_ms))
    return {"box": box, "rows": rows, "wall_s": time.perf_counter() - t0}


def _failed_rows(node: TargetNode, reason: str, shipments: Sequence[Shipment], devices: Sequence[str],
                 precisions: Sequence[str | None], batches: Sequence[int]) -> list[FleetRow]:
    return [FleetRow(node.name, node.hostname, "?", shipments[i].name, d, reason, p, b)
            for i, d, p, b, _ in _cells(_labels(shipments), devices, precisions, batches)]


def target_info(node: TargetNode, answer: Any) -> TargetInfo:
    if isinstance(answer, str):
        return TargetInfo(node.name, node.node_id, node.address, node.hostname, status=answer)
    box = answer["box"]
    return TargetInfo(node.name, node.node_id, node.address, box["host"], "ok", box["cpu"], tuple(box["devices"]),
                      box["engines"], box["machine"])


def bench(models: Sequence[str | os.PathLike | Shipment] | str | os.PathLike | Shipment, *,
          address: str | None = None, targets: Sequence[str] | str | None = None,
          devices: Sequence[str] = ("cpu",), precisions: Sequence[str | None] = (None,),
          batches: Sequence[int] = (1,), warmup: int = 10, iterations: int | None = None,
          duration: float | None = None, rounds: int = 5, streams: int = 1, threads: int | None = None,
          dims: Mapping[str, int] | None = None, timeout: float | None = None,
          object_store_mb: int | None = None) -> FleetReport:
    """Benchmark models on every target box; one report with a row group per target.

    The files are shipped once (object store, sha256-checked on arrival), then each box runs its
    own models x devices x precisions x batches cells with :func:`edgeai.bench.bench_matrix`, one
    benchmark at a time per box (each task holds the box's whole ``edgeai-target:NAME`` unit).

    Args:
        models: ``.onnx`` files or bundle folders (or :class:`Shipment` s from :func:`ship`).
        address: ``HOST:PORT`` of the Ray head; None: a local instance with this box as ``local``
            (or the session the caller already holds).
        targets: target names (a list or ``"a,b"``); None: every box that joined.
        devices / precisions / batches: the matrix each box runs (precision None: the file's own).
        warmup / iterations / duration / rounds / streams / dims: as :func:`edgeai.bench.bench_matrix`.
        threads: threads per session on each box (default: that box's physical cores).
        timeout: seconds a box may take from submission; then its rows fail and the rest go on.

    Returns:
        A :class:`FleetReport`: a failed, timed-out or disconnected box gives ``failed: <reason>``
        rows, a device it lacks ``unsupported: <reason>`` rows; the other boxes' rows are complete.

    Example:
        >>> edgeai.fleet.bench(["cnn.onnx", "cnn.int8.onnx"], address="10.0.0.5:6379",
        ...                    devices=["cpu", "openvino:CPU"], batches=[1, 8])
    """
    t0 = time.perf_counter()
    items = list(models) if isinstance(models, (list, tuple)) else [models]
    check_shipments(items)
    if not items:
        raise EdgeAIError("give at least one model")
    rule = StopRule.make(iterations, duration)
    batches = list(dict.fromkeys(int(b) for b in batches))
    precisions = list(dict.fromkeys(precisions)) or [None]
    if not batches or min(batches) < 1 or warmup < 0 or rounds < 1 or streams < 1 or (threads is not None
                                                                                      and threads < 1):
        raise EdgeAIError(f"batches and rounds, streams, threads must be >= 1 and warmup >= 0; got batches {batches}, "
                          f"rounds {rounds}, streams {streams}, threads {threads}, warmup {warmup}")
    devices = check_devices(devices)
    settings = {"warmup": warmup, "iterations": iterations, "duration": duration, "rounds": rounds,
                "streams": streams, "threads": threads, "dims": dict(dims or {})}
    with connect(address, object_store_mb=object_store_mb):
        nodes = select_targets(targets)
        where = session_address()
        t_ship = time.perf_counter()
        shipments = [m if isinstance(m, Shipment) else ship(m) for m in items]
        ship_s = time.perf_counter() - t_ship
        answers = run_on_targets(bench_on_box, [(n, (n.name, shipments, devices, precisions, batches, settings))
                                                for n in nodes], timeout=timeout)
    rows: list[FleetRow] = []
    for node, answer in zip(nodes, answers, strict=True):
        rows += (_failed_rows(node, answer, shipments, devices, precisions, batches) if isinstance(answer, str)
                 else answer["rows"])
    shown = {**settings, "stop": rule.describe(), "devices": devices, "precisions": precisions, "batches": batches,
             "targets": [n.name for n in nodes], "address": where, "timeout_s": timeout,
             "ship_s": round(ship_s, 4),
             "target_wall_s": {n.name: round(a["wall_s"], 3) for n, a in zip(nodes, answers, strict=True)
                               if not isinstance(a, str)}}
    return FleetReport("bench", tuple(rows), tuple(target_info(n, a) for n, a in zip(nodes, answers, strict=True)),
                       tuple(s.to_dict() for s in shipments), shown, time.perf_counter() - t0)
