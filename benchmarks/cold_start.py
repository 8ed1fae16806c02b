"""Cold start with and without the compiled-model cache (``cache_dir=``), for the zoo Transformer
encoder on onnxruntime CPU and OpenVINO CPU (issue 12).

Every trial is a fresh Python process, as an app starting up would be, timed from inside:
``import`` of the engine, ``edgeai.load`` (file parse + session creation / compile) and the first
inference, plus the steady-state p50 afterwards (a cache must not make the model slower).
Conditions, interleaved trial by trial so machine noise hits them alike:

- ``no cache``: ``cache_dir`` not given;
- ``cache, first start``: an empty cache folder (the load also writes the cache);
- ``cache, later start``: the folder a first start filled.

    python benchmarks/cold_start.py [--trials 5] [--seq 128] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import edgeai
from edgeai.runtimes import devices
args = json.loads(sys.argv[1])
devices()  # imports onnxruntime and openvino
t1 = time.perf_counter()
m = edgeai.load(args["model"], args["device"], threads=args["threads"], cache_dir=args["cache_dir"])
t2 = time.perf_counter()
from edgeai.bench import batch_feeds, time_loop
import numpy as np
feeds = batch_feeds(m, 1, {"seq": args["seq"]})
m.run(feeds)
t3 = time.perf_counter()
steady = np.median(time_loop(lambda: m.run(feeds), iterations=args["iterations"])) / 1e6
info = m.describe()
print(json.dumps({"import_ms": (t1 - t0) * 1e3, "load_ms": (t2 - t1) * 1e3, "engine_load_ms": info.load_time_s * 1e3,
                  "first_inference_ms": (t3 - t2) * 1e3, "cold_start_ms": (t3 - t1) * 1e3, "steady_p50_ms": steady,
                  "cache": info.options.get("cache"), "ran_on": info.summary()}))
"""

CONDITIONS = ("no cache", "cache, first start", "cache, later start")


def trial(model: Path, device: str, cache_dir: str | None, threads: int, seq: int, iterations: int) -> dict:
    args = {"model": str(model), "device": device, "cache_dir": cache_dir, "threads": threads, "seq": seq,
            "iterations": iterations}
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True,
                         cwd=ROOT, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"trial failed on {device}: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=5, help="fresh processes per condition and engine")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None, help="default: physical cores")
    ap.add_argument("--iterations", type=int, default=200, help="steady-state runs per trial")
    ap.add_argument("--model", type=Path, help="an .onnx file (default: export zoo:transformer-encoder)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import edgeai
    from edgeai.bench import machine_info, physical_cores

    threads = args.threads or physical_cores()
    devs = [d for d in ("cpu", "openvino:CPU") if d in edgeai.devices()]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or edgeai.export("zoo:transformer-encoder", path=Path(tmp) / "encoder.onnx").path
        for device in devs:
            results: dict[str, list[dict]] = {c: [] for c in CONDITIONS}
            for t in range(args.trials):
                cache = tempfile.mkdtemp(dir=tmp, prefix="cache-")
                # A first start must precede the later one; the uncached run moves through the slots.
                order = ["cache, first start", "cache, later start"]
                order.insert(t % 3, "no cache")
                for cond in order:
                    results[cond].append(trial(model, device, None if cond == "no cache" else cache, threads,
                                               args.seq, args.iterations))
            for cond in CONDITIONS:
                rs = results[cond]
                row = {"device": device, "condition": cond, "trials": len(rs),
                       "cache_states": sorted({str(r["cache"]) for r in rs}), "ran_on": rs[0]["ran_on"]}
                for k in ("import_ms", "load_ms", "engine_load_ms", "first_inference_ms", "cold_start_ms",
                          "steady_p50_ms"):
                    vals = np.array([r[k] for r in rs])
                    row[k] = round(float(np.median(vals)), 3)
                    row[k + "_range"] = [round(float(vals.min()), 3), round(float(vals.max()), 3)]
                rows.append(row)
    print(f"cold start of the zoo transformer-encoder (seq {args.seq}, batch 1, {threads} threads); median of "
          f"{args.trials} fresh processes [min-max]")
    print("| engine | cache | import engines ms | load ms (engine's own) | first inference ms | cold start ms "
          "(load + first) | steady p50 ms | cache state |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        rng = r["cold_start_ms_range"]
        print(f"| {r['device']} | {r['condition']} | {r['import_ms']:.0f} | {r['load_ms']:.0f} "
              f"({r['engine_load_ms']:.0f}) | {r['first_inference_ms']:.1f} | {r['cold_start_ms']:.0f} "
              f"[{rng[0]:.0f}-{rng[1]:.0f}] | {r['steady_p50_ms']:.3f} | {', '.join(r['cache_states'])} |")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "machine": machine_info(), "threads": threads,
                                         "seq": args.seq}, indent=2, default=str))


if __name__ == "__main__":
    main()
