"""Overhead of the fleet path: the same bench on one target through Ray vs locally (issue 22).

Local: ``bench_matrix`` in this process. Fleet: ``edgeai.fleet.bench`` on this box as target
``local`` (a loopback Ray instance), which ships the file through the object store, starts a fresh
worker process, receives and sha256-checks the file, imports the engines, runs the same
``bench_matrix`` and sends the rows back. Repetitions alternate local / fleet so machine noise
lands on both. Reported: end-to-end wall time of each path (median over repetitions), the part of
the fleet wall time spent outside the target's own task, the Ray start-up paid once per session,
the steady-state p50 on both paths (the fleet must not change what is measured), and the cost of
shipping a large file (put + a task on the target that pulls and hashes it).

    python benchmarks/bench_fleet.py [--reps 5] [--iterations 200] [--ship-mb 64] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import edgeai  # noqa: E402
import edgeai.fleet as fleet  # noqa: E402
from edgeai.bench import BenchConfig, bench_matrix, machine_info, physical_cores  # noqa: E402


def _receive_and_hash(shipment: fleet.Shipment) -> float:
    """On the target: pull a shipment, check its sha256 and write it; seconds taken there."""
    from edgeai.fleet.shipping import Workdir, receive

    t0 = time.perf_counter()
    with Workdir() as tmp:
        receive(shipment, tmp)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help=".onnx file (default: the zoo CNN, exported here)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ship-mb", type=int, default=64)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    model = Path(args.model) if args.model else edgeai.export("zoo:cnn", path=tmp / "cnn.onnx").path
    settings = {"warmup": 10, "iterations": args.iterations, "rounds": args.rounds}
    threads = physical_cores()

    t0 = time.perf_counter()
    with fleet.connect(object_store_mb=max(200, 3 * args.ship_mb)):
        ray_start_s = time.perf_counter() - t0
        fleet.bench([model], devices=["cpu"], warmup=0, iterations=1, rounds=1)  # first worker: imports warm
        local_wall, fleet_wall, outside, local_p50, fleet_p50, ship_s = [], [], [], [], [], []
        for _ in range(args.reps):
            t = time.perf_counter()
            result = bench_matrix([BenchConfig("local", str(model), "cpu", {"threads": threads})], [1], **settings)
            local_wall.append(time.perf_counter() - t)
            local_p50.append(result.reports[0].latency.p50)
            t = time.perf_counter()
            report = fleet.bench([model], devices=["cpu"], threads=threads, **settings)
            fleet_wall.append(time.perf_counter() - t)
            fleet_p50.append(report.rows[0].metrics["p50_ms"])
            outside.append(fleet_wall[-1] - report.settings["target_wall_s"]["local"])
            ship_s.append(report.settings["ship_s"])
        big = tmp / "big.bin"
        big.write_bytes(bytes(args.ship_mb * 2**20))
        t = time.perf_counter()
        shipment = fleet.ship(big)
        put_s = time.perf_counter() - t
        from edgeai.fleet.cluster import run_on_targets, select_targets

        t = time.perf_counter()
        (on_box,) = run_on_targets(_receive_and_hash, [(select_targets("local")[0], (shipment,))])
        pull_s = time.perf_counter() - t

    med = statistics.median
    out = {"machine": machine_info()["cpu"]["model"], "model": model.name, "model_bytes": model.stat().st_size,
           "settings": {**settings, "threads": threads, "reps": args.reps},
           "ray_start_s": round(ray_start_s, 3),
           "local_wall_s": round(med(local_wall), 3), "fleet_wall_s": round(med(fleet_wall), 3),
           "fleet_overhead_s": round(med(f - loc for f, loc in zip(fleet_wall, local_wall, strict=True)), 3),
           "fleet_outside_task_s": round(med(outside), 3), "fleet_ship_s": round(med(ship_s), 4),
           "local_p50_ms": round(med(local_p50), 4), "fleet_p50_ms": round(med(fleet_p50), 4),
           "ship_mb": args.ship_mb, "ship_put_s": round(put_s, 3), "ship_task_s": round(pull_s, 3),
           "ship_receive_on_box_s": round(on_box, 3) if isinstance(on_box, float) else on_box}
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
