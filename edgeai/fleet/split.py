"""Large-data parity: one data set divided among boxes of the same kind, merged into one verdict.

Boxes are grouped by kind (CPU model and features, devices, engine versions: what must match for
their numbers to be interchangeable). Within a group the samples are cut into contiguous shards,
one per box; each box receives only its shard (a data folder ships per file, a ``.npz`` or feed
list per slice, random feeds are drawn on the box from their seeds) and returns sufficient
statistics, which the driver merges in sample order. A shard whose box dies is run again on
another box of the group that is still there; only when none is left is the merged row failed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeai.errors import DeviceUnavailableError, EdgeAIError, InputMismatchError
from edgeai.feeds import DEFAULT_SAMPLES, resolve_feeds
from edgeai.fleet.cluster import (
    TargetNode,
    connect,
    run_on_targets,
    select_targets,
    session_address,
)
from edgeai.fleet.inventory import describe_box, probe
from edgeai.fleet.matrix import not_here
from edgeai.fleet.onbox import data_label, parity_row, prepare, receive_all, ship_input
from edgeai.fleet.results import FleetReport, FleetRow, TargetInfo, first_line
from edgeai.fleet.shards import judge, merge, shard_stats, split_ranges
from edgeai.fleet.shipping import Shipment, TransferError, Workdir, ship
from edgeai.parity import (
    ParityReport,
    as_model,
    build_report,
    collect_outputs,
)
from edgeai.runtimes import load
from edgeai.specs import make_inputs


def _data_files(folder: Path) -> list[Path]:
    # The same files, in the same order, that edgeai.quantization.calibration reads from a folder.
    return sorted(p for p in folder.iterdir() if p.suffix in (".npy", ".npz") and not p.name.startswith("."))


def shard_payloads(data: Any, parts: int, samples: int | None) -> tuple[list[tuple[Any, ...]], int]:
    """Cut ``data`` into ``parts`` contiguous shards; (payloads to send, total samples).

    A payload is ``("files", Shipment)`` (a data folder's share), ``("npz", ref)`` (a ``.npz``
    slice), ``("feeds", ref)`` (feed dicts) or ``("random", start, stop)``.
    """
    import ray

    if data is None or isinstance(data, int) or (isinstance(data, str) and data.startswith("random")):
        count = (samples or DEFAULT_SAMPLES) if data is None else data
        if isinstance(count, str):
            text = count.partition(":")[2]
            if not text.isdigit():
                raise InputMismatchError(f"bad data {data!r}; use random:N with N a positive integer")
            count = int(text)
        if count < 1:
            raise InputMismatchError(f"need at least one sample; got {count}")
        return [("random", a, b) for a, b in split_ranges(count, parts)], count
    if isinstance(data, (str, os.PathLike)) and Path(data).is_dir():
        files = _data_files(Path(data))[:samples] if samples else _data_files(Path(data))
        if not files:
            raise InputMismatchError(f"data folder {data} has no .npy or .npz files")
        return [("files", ship(data, files=files[a:b])) for a, b in split_ranges(len(files), parts)], len(files)
    if isinstance(data, (str, os.PathLike)) and Path(data).suffix == ".npz" and Path(data).is_file():
        with np.load(data, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        sizes = {len(a) for a in arrays.values()}
        if len(sizes) != 1:
            raise InputMismatchError(f"{data}: arrays have different sample counts {sorted(sizes)}")
        total = min(sizes.pop(), samples or 2**62)
        return [("npz", ray.put({k: a[lo:hi] for k, a in arrays.items()}))
                for lo, hi in split_ranges(total, parts)], total
    if isinstance(data, Mapping) or (isinstance(data, (list, tuple)) and all(isinstance(f, Mapping) for f in data)):
        feeds = [dict(data)] if isinstance(data, Mapping) else [dict(f) for f in data]
        feeds = feeds[:samples] if samples else feeds
        return [("feeds", ray.put(feeds[a:b])) for a, b in split_ranges(len(feeds), parts)], len(feeds)
    raise InputMismatchError(f"split needs data that can be divided: a folder of .npy/.npz, a .npz, feed dicts or "
                             f"random:N; got {data!r}. Run without split to check it whole on every box")


def _shard_feeds(payload: tuple[Any, ...], model: Any, tmp: Path, seed: int) -> list[dict[str, Any]]:
    """On a box: the shard's feeds, read by the same code a single box reads the whole data with."""
    import ray

    kind = payload[0]
    if kind == "random":  # resolve_feeds draws sample i from seed + i: the shard draws its own
        return [make_inputs(model.inputs, {"batch": 2}, seed=seed + i) for i in range(payload[1], payload[2])]
    if kind == "files":
        folder = receive_all([payload[1]], tmp, "data")[0]
        if isinstance(folder, str):
            raise TransferError(f"data shard {folder.removeprefix('failed: ')}")
        return list(resolve_feeds(folder, model.inputs).feeds)
    if kind == "npz":
        path = tmp / "shard.npz"
        np.savez(path, **ray.get(payload[1]))
        return list(resolve_feeds(str(path), model.inputs).feeds)
    return list(resolve_feeds(ray.get(payload[1]), model.inputs).feeds)


def check_shard(target: str, reference: Any, candidates: Sequence[Any], payload: tuple[Any, ...],
                devices: Sequence[str], overrides: Mapping[str, float], seed: int) -> dict[str, Any]:
    """Runs ON THE TARGET: statistics of every (candidate, device) over this box's shard."""
    t0 = time.perf_counter()
    box = describe_box()
    results: dict[tuple[int, str], Any] = {}
    with Workdir() as tmp:
        try:
            ref, cands, first = prepare(reference, candidates, tmp)
            if first is None:
                raise EdgeAIError(next(c for c in cands if isinstance(c, str)).removeprefix("failed: "))
            feeds = _shard_feeds(payload, first, tmp, seed)
            ref_model = as_model(ref, "cpu", first.inputs)
            ref_outs = collect_outputs(ref_model, feeds)
        except EdgeAIError as e:
            return {"box": box, "error": f"failed: {first_line(e)}", "wall_s": time.perf_counter() - t0}
        for j, cand in enumerate(cands):
            for d in devices:
                why = cand if isinstance(cand, str) else not_here(d, box)
                if why:
                    results[(j, d)] = why
                    continue
                try:
                    model = load(cand, d)
                    outs = collect_outputs(model, feeds)
                    # build_report picks the tolerance for the precision in effect, as a single box would
                    report = build_report(ref_model, ref_outs, model, outs, len(feeds), dict(overrides))
                    stats = shard_stats([o.name for o in report.outputs], ref_outs, outs, report.tolerance)
                    results[(j, d)] = {"stats": stats, "report": report}
                except DeviceUnavailableError as e:
                    results[(j, d)] = f"unsupported: {first_line(e)}"
                except EdgeAIError as e:
                    results[(j, d)] = f"failed: {first_line(e)}"
    return {"box": box, "results": results, "samples": len(feeds), "wall_s": time.perf_counter() - t0}


def _lost(answer: Any) -> bool:
    """The box went away (so another box of its kind may run the shard), as opposed to a real failure."""
    return isinstance(answer, str) and ("left the cluster" in answer or "died or disconnected" in answer)


def _merged_row(label: str, hosts: str, cpu: str, name: str, device: str, j: int, shards: list[dict[str, Any]],
                ranges: list[tuple[int, int]], owners: list[str]) -> FleetRow:
    parts = [s["results"][(j, device)] for s in shards]
    bad = [(k, p) for k, p in enumerate(parts) if isinstance(p, str)]
    if bad:
        if all(p.startswith("unsupported") for _, p in bad) and len(bad) == len(parts):
            return FleetRow(label, hosts, cpu, name, device, bad[0][1])
        k, why = bad[0]
        return FleetRow(label, hosts, cpu, name, device, f"failed: shard {k + 1}/{len(parts)} (samples "
                        f"{ranges[k][0]}-{ranges[k][1] - 1}) on {owners[k]}: {why.split(': ', 1)[-1]}")
    first = parts[0]["report"]
    tol = first.tolerance
    outputs = tuple(judge(merge([p["stats"][o] for p in parts]), tol) for o in range(len(first.outputs)))
    where = [{"target": owners[k], "samples": [a, b]} for k, (a, b) in enumerate(ranges)]
    report = ParityReport(outputs, sum(s["samples"] for s in shards), tol, first.reference,
                          {**first.candidate, "shards": where})
    row = parity_row(label, hosts, cpu, name, device, report)
    return replace(row, metrics={**row.metrics, "shards": where})


def check_split(reference: Any, items: Sequence[Any], data: Any, *, address: str | None,
                targets: Sequence[str] | str | None, devices: Sequence[str], samples: int | None,
                overrides: Mapping[str, float], seed: int, timeout: float | None,
                object_store_mb: int | None) -> FleetReport:
    """:func:`edgeai.fleet.check` with ``split=True``: one merged row per kind of box, candidate and device."""
    t0 = time.perf_counter()
    with connect(address, object_store_mb=object_store_mb):
        nodes = select_targets(targets)
        where = session_address()
        infos = probe(nodes, timeout or 120.0)
        groups: dict[Any, list[tuple[TargetNode, TargetInfo]]] = {}
        for n, info in zip(nodes, infos, strict=True):
            if info.ok:
                groups.setdefault(info.kind, []).append((n, info))
        shipped = [m if isinstance(m, Shipment) else ship(m) for m in items]
        ref = ship_input(reference, "reference")
        names = [s.name for s in shipped]
        rows: list[FleetRow] = []
        for n, info in zip(nodes, infos, strict=True):  # a box that did not answer is a row group of its own
            if not info.ok:
                rows += [FleetRow(n.name, n.hostname, "?", name, d, info.status) for name in names for d in devices]
        wall: dict[str, float] = {}
        for members in groups.values():
            rows += _run_group(members, ref, shipped, names, data, devices, samples, overrides, seed, timeout, wall)
    settings = {"reference": ref.name if isinstance(ref, Shipment) else str(reference), "devices": list(devices),
                "data": data_label(data), "samples": samples, "tolerance_overrides": dict(overrides), "seed": seed,
                "split": True, "targets": [n.name for n in nodes], "address": where,
                "timeout_s": timeout, "groups": [[n.name for n, _ in m] for m in groups.values()],
                "target_wall_s": wall}
    models = [s.to_dict() for s in shipped] + ([ref.to_dict()] if isinstance(ref, Shipment) else [])
    return FleetReport("check", tuple(rows), tuple(infos), tuple(models), settings, time.perf_counter() - t0)


def _run_group(members: list[tuple[TargetNode, TargetInfo]], ref: Any, shipped: list[Shipment], names: list[str],
               data: Any, devices: Sequence[str], samples: int | None, overrides: Mapping[str, float], seed: int,
               timeout: float | None, wall: dict[str, float]) -> list[FleetRow]:
    label = "+".join(n.name for n, _ in members)
    hosts = ",".join(dict.fromkeys(i.host for _, i in members))
    cpu = members[0][1].cpu.get("model", "?")
    payloads, total = shard_payloads(data, len(members), samples)
    ranges = split_ranges(total, len(members))
    owners = [members[k][0] for k in range(len(payloads))]
    answers: list[Any] = [None] * len(payloads)
    todo = list(range(len(payloads)))
    gone: set[str] = set()
    while todo:
        calls = [(owners[k], (owners[k].name, ref, shipped, payloads[k], devices, overrides, seed)) for k in todo]
        got = run_on_targets(check_shard, calls, timeout=timeout)
        retry = []
        for k, answer in zip(todo, got, strict=True):
            answers[k] = answer
            if not isinstance(answer, str):
                wall[owners[k].name] = round(wall.get(owners[k].name, 0.0) + answer["wall_s"], 3)
            elif _lost(answer):
                gone.add(owners[k].name)
                retry.append(k)
        alive = [n for n, _ in members if n.name not in gone]
        if not retry or not alive:
            break
        for i, k in enumerate(retry):  # a lost shard goes to a box of the same kind that is still there
            owners[k] = alive[i % len(alive)]
        todo = retry
    shards, failures = [], []
    for k, a in enumerate(answers):
        if isinstance(a, str) or "error" in a:
            failures.append((k, a if isinstance(a, str) else a["error"]))
        shards.append(a)
    rows = []
    for j, name in enumerate(names):
        for d in devices:
            if failures:
                k, why = failures[0]
                rows.append(FleetRow(label, hosts, cpu, name, d, f"failed: shard {k + 1}/{len(payloads)} (samples "
                                     f"{ranges[k][0]}-{ranges[k][1] - 1}) on {owners[k].name}: "
                                     f"{why.removeprefix('failed: ')}"))
                continue
            rows.append(_merged_row(label, hosts, cpu, name, d, j, shards, ranges, [o.name for o in owners]))
    return rows
