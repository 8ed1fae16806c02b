"""Real pretrained models (edgeai.corpus) through export, quantization and ``auto``, judged by task.

For each model and device (onnxruntime ``cpu``, ``openvino:CPU``):
1. FP32 parity: the ONNX file on the device against PyTorch, per output kind (edgeai.metrics.judge).
2. Per quantization mode (dynamic, static, openvino-int8, auto): the task metric (every output
   judged by its kind from the export's ``output_kinds`` metadata; Whisper: the word error rate of
   greedy transcripts of espeak-ng speech vs the FP32 files' transcripts), the graph metric (worst
   cosine), INT8 coverage of the written file (share of MACs), and the speed-up vs FP32 with its
   95% interval, measured interleaved here (``edgeai.bench.bench_matrix``, the estimator auto uses).
3. ``auto``: its choice and the speed-up it stored in the file, next to this ``bench`` measurement
   of the same two files.

Writes ``benchmarks/results/real_models.md`` (and ``.json``). The CPU and the load average are in
the header: this machine is shared, so read speed-ups with their intervals.

    python benchmarks/real_models.py [--quick] [--models resemblyzer,whisper-encoder] [--devices cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import edgeai  # noqa: E402
from edgeai.bench import bench_matrix, machine_info  # noqa: E402
from edgeai.corpus.registry import get  # noqa: E402
from edgeai.metrics import judge  # noqa: E402
from edgeai.onnxfile import load_proto, read_metadata  # noqa: E402
from edgeai.quantization.coverage import int8_coverage  # noqa: E402
from edgeai.quantization.measure import batch_axes  # noqa: E402
from edgeai.report import markdown_table  # noqa: E402

MODELS = ("mtcnn-onet", "silero-vad", "resemblyzer", "whisper-encoder", "whisper-decoder")
MODES = ("dynamic", "static", "openvino-int8", "auto")
# The corpus's output kinds -> the metric kinds of edgeai.metrics.
KIND = {"probability": "probability", "regression": "regression", "embedding": "embedding",
        "hidden-states": "hidden", "logits": "classification", "recurrent-state": "hidden"}
COLUMNS = ["model", "device", "config", "task metric", "task", "graph cosine", "INT8 MACs", "speed-up vs FP32 [95%]",
           "auto's stored claim", "note"]


def split_rows(feeds: dict[str, np.ndarray], specs: list[Any]) -> list[dict[str, np.ndarray]]:
    """One feed per sample along each input's batch axis."""
    axes = batch_axes(specs)
    name = next(iter(axes))
    n = feeds[name].shape[axes[name]]
    return [{k: np.take(v, [i], axis=axes[k]) if k in axes else v for k, v in feeds.items()} for i in range(n)]


def export(name: str, work: Path) -> tuple[Path, Any, list[dict[str, np.ndarray]]]:
    """The FP32 file (exported once into ``work``), the PyTorch module, and per-sample feeds."""
    entry = get(name)
    module, examples = entry.build()
    path = work / f"{name}.onnx"
    if name.startswith("whisper"):
        if not (work / "whisper" / "encoder.onnx").exists():
            from edgeai.corpus.transcribe import export_whisper

            export_whisper(work / "whisper", validate=False)
        shutil.copy(work / "whisper" / ("encoder.onnx" if name == "whisper-encoder" else "decoder.onnx"), path)
    elif not path.exists():
        edgeai.export(f"real:{name}", path=path)
    return path, module, split_rows(examples, list(entry.inputs))


def torch_outputs(module: Any, feeds: list[dict[str, np.ndarray]], specs: list[Any], names: list[str]) -> list[dict]:
    import torch

    out = []
    with torch.inference_mode():
        for f in feeds:
            res = module(*(torch.from_numpy(np.ascontiguousarray(f[s.name])) for s in specs))
            res = res if isinstance(res, tuple) else (res,)
            out.append({n: t.numpy() for n, t in zip(names, res, strict=True)})
    return out


def run_feeds(path: Path, device: str, feeds: list[dict]) -> list[dict]:
    model = edgeai.load(path, device)
    return [model.run(f) for f in feeds]


def task_judgement(ref: list[dict], got: list[dict], kinds: dict[str, str]) -> tuple[str, bool, float]:
    """Every output judged by its kind: the failing (or else the first) metric as text, pass, worst cosine."""
    texts, passed, worst_cos = [], True, 1.0
    for name, kind in kinds.items():
        r, g = [o[name] for o in ref], [o[name] for o in got]
        j = judge(name, r, g, KIND.get(kind, "hidden"))
        for m in j.results:
            if not m.passed:
                passed = False
                texts.append(f"{name}: {m.metric} {m.value:.4g} (limit {m.threshold:.4g})")
        a = np.concatenate([x.ravel() for x in r]).astype(np.float64)
        b = np.concatenate([x.ravel() for x in g]).astype(np.float64)
        worst_cos = min(worst_cos, float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30)))
    if passed:
        first = next(iter(kinds))
        m = judge(first, [o[first] for o in ref], [o[first] for o in got], KIND.get(kinds[first], "hidden")).results[0]
        texts.append(f"{first}: {m.metric} {m.value:.4g}")
    return "; ".join(texts[:2]), passed, worst_cos


def whisper_wer(work: Path, encoder: Path, decoder: Path, device: str, reference: Any) -> tuple[str, bool, Any]:
    """WER of greedy transcripts with these two files vs ``reference`` (the FP32 files' Transcripts)."""
    from edgeai.corpus.inputs import speech_set
    from edgeai.corpus.transcribe import onnx_backend, transcribe, word_error_rate

    folder = work / f"pair-{encoder.stem}-{decoder.stem}-{device.replace(':', '_')}"
    folder.mkdir(exist_ok=True)
    for src, name in ((encoder, "encoder.onnx"), (decoder, "decoder.onnx")):
        if not (folder / name).exists():
            os.symlink(src.resolve(), folder / name)
    wavs = [w for _, w in speech_set()]
    got = transcribe(onnx_backend(folder, device), wavs, device)
    if reference is None:
        return "", True, got
    wers = [word_error_rate(r, h) for r, h in zip(reference.texts, got.texts, strict=True)]
    changed = sum(r != h for r, h in zip(reference.tokens, got.tokens, strict=True))
    return (f"WER {np.mean(wers):.3f} vs FP32 ({changed}/{len(wers)} transcripts differ)", max(wers) == 0.0, got)


def speed(fp32: Path, cand: Path, device: str, feed: dict, rounds: int, iterations: int) -> Any:
    m = bench_matrix([("fp32", edgeai.load(fp32, device)), ("cand", edgeai.load(cand, device))], (1,),
                     warmup=2, iterations=iterations, rounds=rounds, baseline="fp32", inputs=feed)
    return m.interval(next(r for r in m.reports if r.name == "cand"))


def fmt_est(est: Any) -> str:
    if est is None:
        return ""
    return f"{est.speedup:.2f}x [{est.low:.2f}, {est.high:.2f}]"


def bench_model(name: str, devices: list[str], work: Path, args: argparse.Namespace, rows: list, log: list) -> None:
    entry = get(name)
    src, module, feeds = export(name, work)
    feeds = feeds[: args.samples]
    meta = read_metadata(load_proto(src))
    kinds = meta.get("output_kinds") or entry.output_kinds
    specs = list(entry.inputs)
    ref = torch_outputs(module, feeds, specs, list(entry.output_names))
    timing = feeds[0]
    whisper_ref = {}
    whisper_other = work / "whisper" / ("decoder.onnx" if name == "whisper-encoder" else "encoder.onnx")
    for device in devices:
        t0 = time.time()
        fp32_out = run_feeds(src, device, feeds)
        text, ok, cos = task_judgement(ref, fp32_out, kinds)
        note = ""
        if name.startswith("whisper"):
            # The FP32 files' transcripts are the reference for the quantized ones (PyTorch's equal them:
            # tests/test_real_whisper.py).
            _, _, whisper_ref[device] = whisper_wer(work, work / "whisper" / "encoder.onnx",
                                                    work / "whisper" / "decoder.onnx", device, None)
            note = "FP32 transcripts: " + " | ".join(t[:28] for t in whisper_ref[device].texts[:2])
        rows.append([name, device, "FP32 vs PyTorch", text, "PASS" if ok else "FAIL", round(cos, 6), "0%", "1 (baseline)",
                     "", note])
        for mode in args.modes:
            out = work / f"{name}.{mode}.{device.replace(':', '_')}.onnx"
            extra: dict[str, Any] = {}
            if mode == "auto":
                extra = {"speed_budget_s": args.budget, "bench_rounds": args.rounds, "bench_iterations": args.iterations,
                         "max_rounds": 4 * args.rounds}
            else:
                extra = {"latency": False}
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    r = edgeai.quantize(src, out, mode=mode, calibration=feeds, eval_inputs=feeds, device=device,
                                        force=True, **extra)
            except Exception as e:  # recorded, never hidden: a mode that cannot run this model says why
                rows.append([name, device, mode, "", "ERROR", None, "", "", "", f"{type(e).__name__}: {str(e)[:90]}"])
                continue
            written = r.dst
            chosen = r.config.get("chosen", mode) if mode == "auto" else mode
            cov = int8_coverage(written)
            got = run_feeds(written, device, feeds)
            text, ok, cos = task_judgement(ref, got, kinds)
            if name.startswith("whisper"):
                enc, dec = (written, whisper_other) if name == "whisper-encoder" else (whisper_other, written)
                wtext, wok, _ = whisper_wer(work, enc, dec, device, whisper_ref[device])
                text, ok = wtext + "; " + text, ok and wok
            fp32_kept = mode == "auto" and chosen == "fp32"
            est = None if fp32_kept else speed(src, written, device, timing, args.rounds, args.iterations)
            claim = ""
            if mode == "auto":
                lat = r.latency
                claim = (f"{lat.get('candidate')}: {lat.get('int8_speedup', lat.get('speedup')):.2f}x "
                         f"[{lat['interval'][0]:.2f}, {lat['interval'][1]:.2f}] ({lat.get('rounds')} rounds)"
                         f"{' -> FP32 kept' if fp32_kept else ''}")
            cfg = f"auto -> {chosen}" if mode == "auto" else mode
            note = "; ".join(n for n in r.notes if any(w in n for w in ("not measured faster", "folded", "no config")))[:160]
            rows.append([name, device, cfg, text, "PASS" if ok else "FAIL", round(cos, 6),
                         f"{cov.mac_share:.0%}" if cov.mac_share is not None else "n/a",
                         "1 (FP32 kept)" if fp32_kept else fmt_est(est), claim, note])
            print(" | ".join(str(x) for x in rows[-1]), flush=True)
        log.append(f"{name} on {device}: {time.time() - t0:.0f} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--devices", default="cpu,openvino:CPU")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--quick", action="store_true", help="fewer samples and rounds (a loaded 2-core box: ~15 min)")
    ap.add_argument("--work", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "edgeai-real-models"))
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "real_models.md"))
    args = ap.parse_args()
    args.modes = [m for m in args.modes.split(",") if m]
    args.samples, args.rounds, args.iterations, args.budget = (4, 5, 5, 15.0) if args.quick else (8, 6, 20, 30.0)
    devices = [d for d in args.devices.split(",") if d in edgeai.devices()]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    load_before, t0 = os.getloadavg(), time.time()
    rows: list[list[Any]] = []
    log: list[str] = []
    for name in [m for m in args.models.split(",") if m]:
        try:
            bench_model(name, devices, work, args, rows, log)
        except Exception as e:
            rows.append([name, "", "", "", "ERROR", None, "", "", "", f"{type(e).__name__}: {str(e)[:120]}"])
        write(args, rows, log, load_before, t0)  # after each model: a long run leaves what it measured
    print(write(args, rows, log, load_before, t0))
    return 0


def write(args: argparse.Namespace, rows: list, log: list, load_before: tuple, t0: float) -> str:
    cpu = machine_info()["cpu"]
    header = (f"# Real models: task metric, INT8 coverage and speed-up per quantization mode\n\n"
              f"CPU: {cpu.get('model')} ({os.cpu_count()} logical cores, shared with other jobs); "
              f"load average {load_before[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; "
              f"run time {time.time() - t0:.0f} s{' (--quick)' if args.quick else ''}; edgeai {edgeai.__version__}.\n\n"
              f"Task metric: each output judged by its kind (edgeai.metrics.judge with the export's output_kinds); "
              f"Whisper: word error rate of greedy transcripts of {4} espeak-ng sentences vs the FP32 files' "
              f"transcripts (encoder rows pair the quantized encoder with the FP32 decoder, and vice versa). "
              f"Speed-up: FP32 / config p50 on that device at batch 1, geometric mean over {args.rounds} interleaved "
              f"rounds with its 95% interval (edgeai.bench); 'auto's stored claim' is the speed decision auto wrote "
              f"into the file, measured in its own run.\n\n")
    text = header + markdown_table(COLUMNS, rows) + "\n" + "".join(f"- {line}\n" for line in log)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps({"rows": [dict(zip(COLUMNS, r, strict=True)) for r in rows],
                                                    "log": log, "cpu": cpu}, indent=1, default=str))
    return text


if __name__ == "__main__":
    raise SystemExit(main())
