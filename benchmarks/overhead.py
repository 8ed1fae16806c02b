"""Overhead of ``Model.run`` over the raw engine call, at batch 1 on a tiny model (issue 4).

The raw call is the exact engine call edgeai makes underneath (``InferenceSession.run`` with the
output names; OpenVINO ``InferRequest.infer`` with ``share_inputs=True``), so the difference is
edgeai's own layer: feed checks, the engine wrapper, and building the output dict. Each pair is
timed in interleaved rounds in one process; the overhead is the median over rounds of
(p50 Model.run - p50 raw). Target: at most 3% or 5 microseconds on CPU.

    python benchmarks/overhead.py [--rounds 15] [--iterations 2000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgeai.bench import machine_info, time_loop, timing_overhead_ns  # noqa: E402


def tiny_model(path: Path, width: int = 16) -> Path:
    """x[batch, 16] @ W + b -> Relu: a model whose engine call costs a few microseconds."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((width, width)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(width).astype(np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "B"], ["a"]),
         helper.make_node("Relu", ["a"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def raw_call(model):
    """The engine call underneath ``model.run``, without edgeai's checks and wrapping."""
    rt = model.runtime
    if model.describe().engine == "onnxruntime":
        session, names = rt.session, [o.name for o in model.outputs]
        return lambda feeds: session.run(names, feeds)
    request = rt.compiled.create_infer_request()
    return lambda feeds: request.infer(feeds, share_inputs=True, share_outputs=False)


def measure(device: str, path: Path, rounds: int, iterations: int, threads: int) -> dict:
    import edgeai

    model = edgeai.load(path, device, threads=threads)
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 16)).astype(np.float32)}
    raw = raw_call(model)
    np.testing.assert_array_equal(model.run(feeds)["y"], np.asarray(raw(feeds)[0]))
    for _ in range(200):
        model.run(feeds), raw(feeds)
    diffs, ratios, raw_p50, run_p50 = [], [], [], []
    for _ in range(rounds):
        r = np.median(time_loop(lambda: raw(feeds), iterations=iterations))
        m = np.median(time_loop(lambda: model.run(feeds), iterations=iterations))
        raw_p50.append(r)
        run_p50.append(m)
        diffs.append(m - r)
        ratios.append(m / r - 1)
    over_us, over_pct = float(np.median(diffs)) / 1e3, float(np.median(ratios)) * 100
    return {"device": device, "ran_on": model.describe().summary(), "raw_p50_us": float(np.median(raw_p50)) / 1e3,
            "model_run_p50_us": float(np.median(run_p50)) / 1e3, "overhead_us": round(over_us, 3),
            "overhead_pct": round(over_pct, 2), "round_overhead_us": [round(d / 1e3, 3) for d in diffs],
            "within_target": over_us <= 5.0 or over_pct <= 3.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--iterations", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import edgeai

    devs = [d for d in ("cpu", "openvino:CPU") if d in edgeai.devices()]
    with tempfile.TemporaryDirectory() as tmp:
        path = tiny_model(Path(tmp) / "tiny.onnx")
        rows = [measure(d, path, args.rounds, args.iterations, args.threads) for d in devs]
    result = {"timing_loop_overhead_ns": timing_overhead_ns(), "rows": rows, "machine": machine_info()}
    print(f"timing loop overhead (empty callable): {result['timing_loop_overhead_ns']:.0f} ns per call")
    print(f"{'device':14} {'raw p50 us':>11} {'Model.run p50 us':>17} {'overhead us':>12} {'overhead %':>11}  target")
    for r in rows:
        print(f"{r['device']:14} {r['raw_p50_us']:11.2f} {r['model_run_p50_us']:17.2f} {r['overhead_us']:12.2f} "
              f"{r['overhead_pct']:11.1f}  {'ok' if r['within_target'] else 'OVER (3% / 5 us)'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
