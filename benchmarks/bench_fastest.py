"""edgeai ``quantize --mode auto --device auto`` against what users get from the libraries' defaults.

On the zoo Transformer encoder (seq 128), the real Whisper tiny.en encoder (``real:whisper-encoder``,
espeak-ng speech) and the digits CNN trained as ``edgeai demo`` does, ONE interleaved run (rotating
order each round) of: PyTorch eager; raw onnxruntime FP32 (``InferenceSession`` defaults); raw
OpenVINO (``compile_model(path, "CPU")`` defaults: bf16 on CPUs that have it); optimum-style dynamic
INT8 (onnxruntime ``quantize_dynamic`` defaults); NNCF INT8 (``nncf.quantize`` on the OpenVINO
model, transformer preset for the encoders, compiled with defaults); and edgeai's choice, loaded
with ``edgeai.load(path)`` the way the file records. Batch 1; speed-up vs PyTorch eager is the
geometric mean of per-round ratios with its 95% interval (:mod:`edgeai.speedup`). Parity against
PyTorch: min per-sample cosine, and the task metric (encoder: nearest-neighbour agreement over the
evaluation set; Whisper: greedy transcripts with the PyTorch decoder, identical or not; CNN:
held-out accuracy and top-1 agreement). A peer *matches* when cosine >= 0.995 and the task agrees.

    EDGEAI_CACHE=/tmp/corpus_cache python benchmarks/bench_fastest.py [--models encoder,whisper,cnn]
        [--rounds 8] [--markdown benchmarks/results/bench_fastest.md]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import edgeai  # noqa: E402
from edgeai.cpu import cpu_info  # noqa: E402
from edgeai.speedup import estimate_from_rounds  # noqa: E402

PEERS = ("PyTorch eager", "onnxruntime FP32", "OpenVINO defaults", "ORT dynamic INT8", "NNCF INT8")
EDGEAI = "edgeai auto --device auto"


# ------------------------------------------------------------------------------------------ models

def encoder_case(work: Path) -> dict[str, Any]:
    from edgeai.specs import make_inputs
    from edgeai.zoo import get, transformer_encoder

    path = edgeai.export("zoo:transformer-encoder", path=work / "encoder.onnx").path
    specs = list(get("transformer-encoder").inputs)
    calib = [make_inputs(specs, {"batch": 1, "seq": 128}, seed=i) for i in range(32)]
    evals = [make_inputs(specs, {"batch": 1, "seq": 128}, seed=1000 + i) for i in range(24)]
    return {"name": "zoo transformer-encoder (seq 128)", "module": transformer_encoder(), "path": path,
            "calib": calib, "eval": evals, "task": "nearest-neighbour agreement", "transformer": True,
            "search": {"eval_samples": 12, "samples": 32, "speed_budget_s": 30}}


def whisper_case(work: Path) -> dict[str, Any]:
    from edgeai.corpus.inputs import speech_set, whisper_features
    from edgeai.corpus.whisper import encoder_module, whisper_model

    path = edgeai.export("real:whisper-encoder", path=work / "whisper_encoder.onnx").path
    speech = speech_set(noise_snrs=(20.0,))  # clean sentences to judge on, noisy copies to calibrate on
    clean, noisy = speech[:len(speech) // 2], speech[len(speech) // 2:]
    feats, cal = whisper_features([w for _, w in clean]), whisper_features([w for _, w in noisy])
    model = whisper_model()
    evals = [{"input_features": feats[i:i + 1]} for i in range(len(feats))]
    calib = [{"input_features": cal[i:i + 1]} for i in range(len(cal))]
    return {"name": "Whisper tiny.en encoder (real:whisper-encoder)", "module": encoder_module(model), "path": path,
            "calib": calib, "eval": evals, "task": "greedy transcripts (PyTorch decoder)", "transformer": True,
            "whisper": model, "search": {"eval_samples": 4, "samples": 4, "speed_budget_s": 45, "min_rounds": 4}}


def cnn_case(work: Path) -> dict[str, Any]:
    import torch

    from edgeai.demo import load_digits_28, train_cnn
    from edgeai.zoo import get

    x_tr, x_te, y_tr, y_te = load_digits_28()
    module = train_cnn(x_tr, y_tr)
    path = edgeai.export(module, (torch.from_numpy(x_tr[:2]),), work / "digits_cnn.onnx", inputs=get("cnn").inputs,
                         output_names=["logits"]).path
    return {"name": "digits CNN (edgeai demo)", "module": module, "path": path,
            "calib": [{"pixel_values": x_tr[i:i + 1]} for i in range(0, 600, 3)],
            "eval": [{"pixel_values": x_te[i:i + 60]} for i in range(0, len(x_te), 60)], "labels": y_te,
            "task": "held-out accuracy", "transformer": False,
            "search": {"eval_samples": 6, "samples": 200, "speed_budget_s": 20}}


CASES = {"encoder": encoder_case, "whisper": whisper_case, "cnn": cnn_case}


# ------------------------------------------------------------------------------------------- peers

def torch_runner(module: Any) -> Callable[[dict], np.ndarray]:
    import torch

    def run(feed: dict) -> np.ndarray:
        with torch.inference_mode():
            out = module(*[torch.from_numpy(np.ascontiguousarray(v)) for v in feed.values()])
        return (out[0] if isinstance(out, (tuple, list)) else out).numpy()

    return run


def ort_runner(path: Path) -> Callable[[dict], np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda feed: sess.run(None, feed)[0]


def ov_runner(model: Any) -> tuple[Callable[[dict], np.ndarray], str]:
    import openvino as ov

    compiled = ov.Core().compile_model(model, "CPU")
    request = compiled.create_infer_request()
    hint = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
    return (lambda feed: request.infer(feed, share_inputs=True, share_outputs=False)[0]), hint


def peers(case: dict[str, Any], work: Path, log: Callable[[str], None]) -> dict[str, tuple[Callable, str]]:
    """name -> (run(feed) -> first output, what ran)."""
    import nncf
    import openvino as ov
    from onnxruntime.quantization import quantize_dynamic

    out: dict[str, tuple[Callable, str]] = {"PyTorch eager": (torch_runner(case["module"]), "torch fp32")}
    out["onnxruntime FP32"] = (ort_runner(case["path"]), "InferenceSession defaults")
    run, hint = ov_runner(str(case["path"]))
    out["OpenVINO defaults"] = (run, f"compile_model defaults ({hint})")
    dyn = work / f"{Path(case['path']).stem}.dynamic.onnx"
    t0 = time.perf_counter()
    quantize_dynamic(str(case["path"]), str(dyn))
    out["ORT dynamic INT8"] = (ort_runner(dyn), "quantize_dynamic defaults")
    log(f"  dynamic INT8 {time.perf_counter() - t0:.0f}s")
    t0 = time.perf_counter()
    nncf.set_log_level(40)
    ov_model = ov.Core().read_model(str(case["path"]))
    quantized = nncf.quantize(ov_model, nncf.Dataset(case["calib"]), subset_size=len(case["calib"]),
                              model_type=nncf.ModelType.TRANSFORMER if case["transformer"] else None)
    run, hint = ov_runner(quantized)
    out["NNCF INT8"] = (run, f"nncf.quantize{' (transformer)' if case['transformer'] else ''}, defaults ({hint})")
    log(f"  NNCF INT8 {time.perf_counter() - t0:.0f}s")
    return out


def edgeai_choice(case: dict[str, Any], work: Path, log: Callable[[str], None]) -> tuple[Callable, str, Any]:
    dst = work / f"{Path(case['path']).stem}.auto.onnx"
    t0 = time.perf_counter()
    result = edgeai.quantize(case["path"], dst, mode="auto", device="auto", calibration=case["calib"],
                             eval_inputs=case["eval"], **case["search"])
    log(f"  edgeai search {time.perf_counter() - t0:.0f}s: chose {result.config['chosen']}")
    model = edgeai.load(dst)  # the recorded device and precision
    name = model.outputs[0].name
    return (lambda feed: model.run(feed)[name]), f"{result.config['chosen']} ({model.describe().summary()})", result


# ------------------------------------------------------------------------------------------ parity

def min_cosine(ref: list[np.ndarray], cand: list[np.ndarray]) -> float:
    worst = 1.0
    for r, c in zip(ref, cand, strict=True):
        for a, b in zip(r.reshape(r.shape[0], -1).astype(np.float64), c.reshape(c.shape[0], -1).astype(np.float64),
                        strict=True):
            worst = min(worst, float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30)))
    return worst


def task_metric(case: dict[str, Any], ref: list[np.ndarray], cand: list[np.ndarray], cand_run: Callable) -> tuple[str, bool]:
    if "labels" in case:
        labels = case["labels"]
        pr, pc = np.concatenate(ref).argmax(1), np.concatenate(cand).argmax(1)
        acc_r, acc_c = float((pr == labels[:len(pr)]).mean()), float((pc == labels[:len(pc)]).mean())
        agree = float((pr == pc).mean())
        return f"acc {acc_c:.1%} (torch {acc_r:.1%}), top-1 agree {agree:.1%}", acc_c >= acc_r - 1.0 / len(pr)
    if "whisper" in case:
        from edgeai.corpus.transcribe import greedy_decode, torch_backend

        _, step = torch_backend(case["whisper"])
        feats = np.concatenate([f["input_features"] for f in case["eval"]])
        hyp = greedy_decode(lambda x: np.concatenate([cand_run({"input_features": x[i:i + 1]})
                                                      for i in range(len(x))]), step, feats)
        if "reference_tokens" not in case:
            case["reference_tokens"] = greedy_decode(lambda x: np.concatenate(ref), step, feats)
        same = sum(a == b for a, b in zip(hyp, case["reference_tokens"], strict=True))
        return f"{same}/{len(hyp)} transcripts identical", same == len(hyp)
    r, c = np.concatenate([x.reshape(1, -1) for x in ref]), np.concatenate([x.reshape(1, -1) for x in cand])
    r, c = r / np.linalg.norm(r, axis=1, keepdims=True), c / np.linalg.norm(c, axis=1, keepdims=True)
    sr, sc = r @ r.T, c @ c.T
    np.fill_diagonal(sr, -2), np.fill_diagonal(sc, -2)
    agree = float((sr.argmax(1) == sc.argmax(1)).mean())
    return f"NN agreement {agree:.0%}", agree == 1.0


# -------------------------------------------------------------------------------------------- timing

def interleaved(runs: dict[str, Callable[[], Any]], rounds: int, cell_s: float) -> dict[str, list[float]]:
    reps = {}
    for name, run in runs.items():
        for _ in range(2):
            run()
        t0 = time.perf_counter()
        run()
        reps[name] = int(min(300, max(1, round(cell_s / max(time.perf_counter() - t0, 1e-6)))))
    out: dict[str, list[float]] = {n: [] for n in runs}
    names = list(runs)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times = []
            for _ in range(reps[name]):
                t0 = time.perf_counter_ns()
                runs[name]()
                times.append(time.perf_counter_ns() - t0)
            out[name].append(float(np.median(times)) / 1e6)
    return out


def bench_case(case: dict[str, Any], work: Path, rounds: int, log: Callable[[str], None]) -> dict[str, Any]:
    configs = peers(case, work, log)
    run, what, result = edgeai_choice(case, work, log)
    configs[EDGEAI] = (run, what)
    ref = [configs["PyTorch eager"][0](f) for f in case["eval"]]
    rows: dict[str, dict[str, Any]] = {}
    for name, (run, what) in configs.items():
        outs = ref if name == "PyTorch eager" else [run(f) for f in case["eval"]]
        cos = min_cosine(ref, outs)
        task, equal = task_metric(case, ref, outs, run)
        rows[name] = {"what": what, "cosine": cos, "task": task, "task_equal": equal,
                      "matches": cos >= 0.995 and equal}
    feed = {k: v[:1] for k, v in case["eval"][0].items()}
    t0 = time.perf_counter()
    times = interleaved({n: (lambda r=r: r(feed)) for n, (r, _) in configs.items()}, rounds,
                        0.3 if "whisper" not in case else 0.2)
    log(f"  timing {time.perf_counter() - t0:.0f}s")
    base = times["PyTorch eager"]
    for name, row in rows.items():
        row["p50_ms"] = float(np.exp(np.mean(np.log(times[name]))))
        row["speedup"] = estimate_from_rounds(base, times[name])
    matching = [n for n in PEERS if rows[n]["matches"]]
    best = max(matching, key=lambda n: rows[n]["speedup"].speedup) if matching else None
    vs = estimate_from_rounds(times[best], times[EDGEAI]) if best else None
    return {"case": case, "rows": rows, "best_peer": best, "vs_best": vs, "result": result}


# -------------------------------------------------------------------------------------------- report

def markdown(results: list[dict[str, Any]], seconds: float, load: tuple[float, float], rounds: int) -> str:
    cpu = cpu_info()
    lines = ["# bench_fastest: edgeai `auto --device auto` vs the libraries' defaults", "",
             f"CPU: **{cpu.model}** ({cpu.cores} cores; features {', '.join(cpu.features)}). "
             f"Devices: {', '.join(edgeai.devices())}. Batch 1, {rounds} interleaved rounds per model, "
             f"{seconds:.0f}s in all. Load average before/after: {load[0]:.2f} / {load[1]:.2f} "
             "(shared machine: other jobs ran alongside; ratios are per round, so load hits all configs alike).",
             "", "Speed-up vs PyTorch eager: geometric mean of per-round ratios [95% interval]. *Matches*: cosine "
             ">= 0.995 against PyTorch and the task metric agrees.", ""]
    for res in results:
        case, rows = res["case"], res["rows"]
        lines += [f"## {case['name']}", "", f"Task metric: {case['task']}.", "",
                  "| config | what ran | speed-up vs PyTorch | p50 ms | cosine | task | matches |",
                  "|---|---|---|---|---|---|---|"]
        for name, r in rows.items():
            s = r["speedup"]
            lines.append(f"| {'**' + name + '**' if name == EDGEAI else name} | {r['what']} | {s.speedup:.2f}x "
                         f"[{s.low:.2f}, {s.high:.2f}] | {r['p50_ms']:.3f} | {r['cosine']:.5f} | {r['task']} | "
                         f"{'yes' if r['matches'] else '**no**'} |")
        best, vs = res["best_peer"], res["vs_best"]
        if best:
            goal = "met" if vs.low >= 1.25 else "not met"
            never = "slower (interval below 1)" if vs.high < 1.0 else "not slower"
            lines += ["", f"Fastest matching peer: **{best}**. edgeai vs it: {vs.describe()}: goal >= 1.25x {goal}; "
                          f"never slower: {never}."]
        r = res["result"]
        lines += ["", f"edgeai chose **{r.config['chosen']}**: {r.config['why']}.", "",
                  "| candidate | status | speed-up vs cpu f32 [95%] | cosine | why |", "|---|---|---|---|---|"]
        for c in r.candidates:
            sp = (f"{c['speedup']:.2f}x [{c['speedup_interval'][0]:.2f}, {c['speedup_interval'][1]:.2f}]"
                  if c["speedup"] is not None else "")
            cos = f"{c['cosine']:.5f}" if c["cosine"] is not None else ""
            why = (c["why"] or "").replace("|", "/")[:220]
            lines.append(f"| {c['name']} | {c['status']} | {sp} | {cos} | {why} |")
        fusion = r.config.get("fusions") or next((c["fusions"] for c in r.candidates if c.get("fusions")), None)
        if fusion:
            lines += ["", f"onnxruntime transformer optimizer fusions: {fusion}."]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="encoder,whisper,cnn", help="comma list of " + ", ".join(CASES))
    parser.add_argument("--rounds", type=int, default=8, help="interleaved timing rounds per model")
    parser.add_argument("--markdown", type=Path, help="write the report here")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import torch

    torch.set_num_threads(os.cpu_count() or 1)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    load0, t0 = os.getloadavg()[0], time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-fastest-") as tmp:
        for key in args.models.split(","):
            log(f"{key}:")
            case = CASES[key](Path(tmp))
            results.append(bench_case(case, Path(tmp), args.rounds, log))
    text = markdown(results, time.perf_counter() - t0, (load0, os.getloadavg()[0]), args.rounds)
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
