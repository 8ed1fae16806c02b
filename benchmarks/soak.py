"""Soak: many runs of a small model on each CPU engine, watching resident memory; then streams.

    python benchmarks/soak.py          # 20,000 runs per engine, 2,000 thread churn, 60 s of 4 streams
    python benchmarks/soak.py --runs 3000 --churn-threads 0 --streams-seconds 0 --json soak.json

Per device: load the model, warm up, take the resident set size (RSS, from /proc/self/statm, not
the peak), then run it ``--runs`` times on fresh input arrays of mixed batch sizes (so shape
changes, arena growth and any input an engine keeps a reference to all show up), sampling RSS as
it goes. Growth is the RSS after the runs minus the RSS after warm-up; the slope is a least-squares
fit over the samples (MB per 10,000 runs), which separates a leak (steady slope) from a one-off
arena resize. Outputs are compared with the warm-up answers on every run.

The same soak runs again with ``--soak-threads`` threads sharing one Model, and a churn phase
runs one short-lived thread per call (per-thread engine state must go when its thread does).
A last phase runs ``edgeai.benchmark(model, streams=N, duration=S)`` - N threads sharing the model
for S seconds - for errors and throughput; its RSS is not a leak measure, because the benchmark
keeps every per-run latency sample (O(runs) memory). ``--cli-streams`` also runs
``edgeai bench --streams`` in a subprocess when this edgeai has that option.

Numbers depend on the machine and on what else runs on it: report them with that caveat.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import edgeai  # noqa: E402
from edgeai.specs import make_inputs  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_mb() -> float:
    """Current resident set size in MB (Linux /proc; psutil elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE / 2**20
    except OSError:
        import psutil

        return psutil.Process().memory_info().rss / 2**20


def _slope_per_10k(points: list[tuple[int, float]]) -> float:
    if len(points) < 3:
        return 0.0
    x = np.array([p[0] for p in points], np.float64)
    y = np.array([p[1] for p in points], np.float64)
    return float(np.polyfit(x, y, 1)[0] * 10_000)


def soak_device(path: Path, device: str, runs: int, warmup: int, threads: int = 1) -> dict[str, Any]:
    """Run ``path`` on ``device`` ``runs`` times after ``warmup`` (split over ``threads`` sharing one
    Model); RSS after warm-up, sampled during the runs and at the end; outputs checked."""
    import threading

    model = edgeai.load(path, device)
    pool = [make_inputs(model.inputs, {"batch": b, "seq": 8 + 4 * (b % 3)}, seed=b) for b in (1, 2, 3, 4)]
    expected = [model.run(f) for f in pool]
    done = [0] * threads
    mismatches: list[int] = []
    errors: list[BaseException] = []
    # Every worker warms up on its own thread first (OpenVINO makes one infer request per thread, a
    # one-time allocation that is not a leak); RSS is taken once all of them have.
    warmed, go = threading.Barrier(threads + 1), threading.Event()

    def worker(t: int) -> None:
        try:
            for i in range(t, warmup, threads):
                model.run({k: v.copy() for k, v in pool[i % len(pool)].items()})
        finally:
            warmed.wait()
        go.wait()  # the timed runs start after RSS was read
        try:
            for i in range(t, runs, threads):
                k = i % len(pool)
                out = model.run({name: v.copy() for name, v in pool[k].items()})  # fresh arrays, as apps send
                if i % 97 == 0:  # checking every output would dominate; a prime stride hits every shape
                    mismatches.extend(1 for n in out if not np.array_equal(out[n], expected[k][n]))
                done[t] += 1
        except BaseException as e:  # reported in the result
            errors.append(e)

    workers = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    warmed.wait()
    gc.collect()
    start = rss_mb()
    t0 = time.perf_counter()
    go.set()
    points = [(0, start)]
    while any(w.is_alive() for w in workers):
        time.sleep(0.1)
        points.append((sum(done), rss_mb()))
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    gc.collect()
    end = rss_mb()
    points.append((sum(done), end))
    info = model.describe()
    return {"device": device, "engine": f"{info.engine} {info.engine_version}",
            "devices_in_effect": list(info.devices_in_effect), "runs": sum(done), "threads": threads,
            "warmup": warmup, "rss_after_warmup_mb": round(start, 2), "rss_end_mb": round(end, 2),
            "rss_growth_mb": round(end - start, 2), "rss_max_mb": round(max(p[1] for p in points), 2),
            "slope_mb_per_10k_runs": round(_slope_per_10k(points), 3), "mismatches": len(mismatches),
            "errors": [f"{type(e).__name__}: {e}" for e in errors[:3]],
            "runs_per_s": round(sum(done) / elapsed, 1), "seconds": round(elapsed, 1)}


def churn_device(path: Path, device: str, threads: int, warmup: int = 50) -> dict[str, Any]:
    """One short-lived thread per run (a server without a pool): per-thread engine state such as
    OpenVINO's infer requests must be released when its thread ends."""
    import threading

    model = edgeai.load(path, device)
    feeds = make_inputs(model.inputs, {"batch": 2}, seed=1)
    expected = model.run(feeds)
    wrong: list[int] = []

    def one(i: int) -> None:
        out = model.run({k: v.copy() for k, v in feeds.items()})
        if any(not np.array_equal(out[n], expected[n]) for n in out):
            wrong.append(i)

    def spawn(n: int) -> None:
        for i in range(n):
            t = threading.Thread(target=one, args=(i,))
            t.start()
            t.join()

    spawn(warmup)
    gc.collect()
    start = rss_mb()
    t0 = time.perf_counter()
    spawn(threads)
    elapsed = time.perf_counter() - t0
    gc.collect()
    end = rss_mb()
    return {"device": device, "threads": threads, "rss_after_warmup_mb": round(start, 2), "rss_end_mb": round(end, 2),
            "rss_growth_mb": round(end - start, 2), "mismatches": len(wrong), "seconds": round(elapsed, 1)}


def streams_phase(path: Path, device: str, streams: int, seconds: float) -> dict[str, Any]:
    """N threads sharing one Model for ``seconds`` via edgeai.benchmark; errors end the phase."""
    model = edgeai.load(path, device)
    gc.collect()
    before = rss_mb()
    error = None
    try:
        report = edgeai.benchmark(model, warmup=20, duration=seconds, streams=streams, batch=2)
    except Exception as e:  # recorded, not raised: the soak reports every device
        report, error = None, f"{type(e).__name__}: {e}"
    gc.collect()
    out = {"device": device, "streams": streams, "seconds": seconds, "error": error,
           "rss_before_mb": round(before, 2), "rss_after_mb": round(rss_mb(), 2)}
    if report is not None:
        out.update(runs=report.latency.n, p50_ms=round(report.latency.p50, 4), p99_ms=round(report.latency.p99, 4),
                   throughput_items_s=round(report.throughput, 1))
    return out


def cli_streams(path: Path, device: str, streams: int, seconds: float) -> dict[str, Any]:
    """``edgeai bench --streams`` in a subprocess, when this edgeai's CLI has the option."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    help_text = subprocess.run([sys.executable, "-m", "edgeai", "bench", "--help"], capture_output=True, text=True,
                               env=env).stdout
    if "--streams" not in help_text:
        return {"device": device, "skipped": "edgeai bench has no --streams option in this build"}
    args = [sys.executable, "-m", "edgeai", "bench", str(path), "--device", device, "--streams", str(streams), "--json"]
    if "--duration" in help_text:
        args += ["--duration", str(seconds)]
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    return {"device": device, "streams": streams, "exit_code": proc.returncode, "seconds": round(time.perf_counter() - t0, 1),
            "stderr": proc.stderr.strip()[-300:]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help=".onnx file to soak (default: zoo:cnn exported to a temp folder)")
    parser.add_argument("--devices", nargs="*", default=None, help="default: cpu and openvino:CPU where present")
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--soak-threads", type=int, default=4, help="also soak with this many threads sharing it")
    parser.add_argument("--churn-threads", type=int, default=2_000, help="short-lived threads, one run each")
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--streams-seconds", type=float, default=60.0, help="0 skips the streams phase")
    parser.add_argument("--cli-streams", action="store_true", help="also run `edgeai bench --streams`")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    devices = args.devices or [d for d in ("cpu", "openvino:CPU") if d in edgeai.devices()]

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.model) if args.model else edgeai.export("zoo:cnn", path=Path(tmp) / "cnn.onnx").path
        results: dict[str, Any] = {"model": str(args.model or "zoo:cnn"), "machine": _machine(), "soak": [],
                                   "churn": [], "streams": [], "cli_streams": []}
        for device, threads in [(d, t) for d in devices for t in sorted({1, args.soak_threads})]:
            r = soak_device(path, device, args.runs, args.warmup, threads)
            results["soak"].append(r)
            print(f"{device:14s} {r['runs']} runs on {threads} thread(s): RSS {r['rss_after_warmup_mb']:.1f} -> {r['rss_end_mb']:.1f} MB "
                  f"(growth {r['rss_growth_mb']:+.2f} MB, slope {r['slope_mb_per_10k_runs']:+.3f} MB/10k runs, "
                  f"max {r['rss_max_mb']:.1f}), {r['mismatches']} mismatches, {r['runs_per_s']:.0f} runs/s", flush=True)
        for device in devices if args.churn_threads > 0 else []:
            c = churn_device(path, device, args.churn_threads)
            results["churn"].append(c)
            print(f"{device:14s} {c['threads']} short-lived threads: RSS {c['rss_after_warmup_mb']:.1f} -> "
                  f"{c['rss_end_mb']:.1f} MB (growth {c['rss_growth_mb']:+.2f} MB), {c['mismatches']} mismatches",
                  flush=True)
        if args.streams_seconds > 0:
            for device in devices:
                s = streams_phase(path, device, args.streams, args.streams_seconds)
                results["streams"].append(s)
                print(f"{device:14s} {s['streams']} streams x {s['seconds']:.0f} s: "
                      + (f"ERROR {s['error']}" if s["error"] else
                         f"{s['runs']} runs, no errors, p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms, "
                         f"RSS {s['rss_before_mb']:.1f} -> {s['rss_after_mb']:.1f} MB"), flush=True)
                if args.cli_streams:
                    results["cli_streams"].append(cli_streams(path, device, args.streams, args.streams_seconds))
                    print(f"{device:14s} CLI: {results['cli_streams'][-1]}", flush=True)
    if args.json:
        from edgeai.atomic import write_text

        write_text(args.json, json.dumps(results, indent=2))
    failed = any(r["mismatches"] or r.get("errors") for r in results["soak"] + results["churn"]) or \
        any(s.get("error") for s in results["streams"])
    return 1 if failed else 0


def _machine() -> dict[str, Any]:
    from edgeai.bench import machine_info

    info = machine_info()
    try:
        info["load_average"] = list(os.getloadavg())
    except OSError:
        pass
    return info


if __name__ == "__main__":
    sys.exit(main())
