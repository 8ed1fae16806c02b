"""``auto``: the INT8 config that meets the tolerance and is measured faster on the target, or FP32.

1. Candidate configs follow the CPU: with VNNI (AVX512-VNNI, AVX-VNNI, AMX, Arm dot-product) U8S8
   and S8S8 run without saturation; without it, u8s8 kernels sum pairs in int16 (vpmaddubsw) and
   can saturate, so the candidates are U8S8 with ``reduce_range`` (7-bit weights) and U8U8. Dynamic
   INT8 and per-tensor weights are tried too, and NNCF (``openvino-int8``) on OpenVINO devices.
   All start from one ``quant_pre_process``-ed copy, so node names agree between them.
2. Each candidate is quantized, its INT8 coverage read from the written file (a config under
   20% of MACs in INT8 is not an INT8 model and is never chosen as one), and its parity against the
   FP32 file measured on the target device, on enough evaluation samples for the tolerance. A
   candidate that fails anywhere is skipped with the reason in the report; the search goes on.
3. When none passes, the best one is tried with whole blocks kept in float (first / last layer,
   attention output projections, FFN down-projections), then with the fewest nodes that
   onnxruntime's ``qdq_loss_debug`` ranks most sensitive (see :mod:`edgeai.quantization.sensitivity`;
   a doubling then bisecting search, never more than ``max_excluded_fraction`` of the conv/matmul
   nodes, and fewer than the smallest passing block).
4. The passing candidates are timed against FP32 interleaved on the target device and the fastest
   is decided on the interval of its per-round speed-ups (:mod:`edgeai.speedup`): INT8 is written
   only when the lower bound clears ``min_speedup``; while the interval straddles it, more rounds
   run up to a time budget, and an interval still straddling it keeps FP32 as "undecided within
   noise". The decision, its interval and rounds are stored in the file's metadata, where
   ``edgeai bench`` of the two files (same estimator) can be compared with them.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from edgeai.atomic import atomic_path
from edgeai.cpu import cpu_info
from edgeai.errors import EdgeAIError, QuantizationError, ToleranceNotMet
from edgeai.feeds import evaluation_feeds
from edgeai.onnxfile import load_proto, read_metadata, save_onnx, write_metadata
from edgeai.progress import progress
from edgeai.quantization.calibration import collect_samples
from edgeai.quantization.measure import (
    default_eval_samples,
    describe_evaluation,
    latencies,
    load_on,
    parity_on,
    parity_record,
    resolve_tolerance,
    speed_decision,
    timing_feed,
)
from edgeai.quantization.modes import QuantizeResult, model_size
from edgeai.quantization.search import Candidate, Search
from edgeai.quantization.sensitivity import compute_nodes
from edgeai.quantization.static import preprocess, preprocess_status
from edgeai.runtimes import parse_device

# Dynamic INT8 of the matrix multiplies and recurrent layers only: onnxruntime's ConvInteger (what
# dynamic quantization makes of a Conv) has no fast x86 kernel and often runs slower than float
# Conv, so a conv stem (Whisper's, a CNN's) can eat what the INT8 MatMuls win.
NO_CONV = ["MatMul", "Gemm", "Attention", "LSTM", "GRU"]


def candidate_configs(cpu: Any, engine: str, nncf: bool) -> tuple[list[Candidate], str]:
    """The configs worth trying on this CPU and engine, and a note saying why these."""
    pc = {"per_channel": True}
    if cpu.has_vnni:
        found = ", ".join(f for f in cpu.features if "vnni" in f or f in ("amx_int8", "dotprod", "i8mm"))
        why = f"CPU has VNNI-class INT8 dot products ({found}): U8S8/S8S8 without reduce_range"
        cands = [Candidate("static-u8s8-per-channel", "static", {**pc, "activation_type": "uint8", "reduce_range": False}),
                 Candidate("static-s8s8-per-channel", "static", {**pc, "activation_type": "int8", "reduce_range": False}),
                 Candidate("static-u8s8-per-tensor", "static", {"per_channel": False, "reduce_range": False}),
                 Candidate("dynamic-per-channel", "dynamic", {**pc, "reduce_range": False}),
                 Candidate("dynamic-per-channel-no-conv", "dynamic", {**pc, "reduce_range": False, "op_types": NO_CONV})]
    else:
        why = ("CPU lacks VNNI: u8s8 kernels sum pairs in int16 and can saturate, so U8S8 uses reduce_range "
               "(7-bit weights) and U8U8 is tried")
        cands = [Candidate("static-u8s8-per-channel-reduce-range", "static",
                           {**pc, "activation_type": "uint8", "reduce_range": True}),
                 Candidate("static-u8u8-per-channel", "static",
                           {**pc, "activation_type": "uint8", "weight_type": "uint8", "reduce_range": False}),
                 Candidate("static-u8s8-per-tensor-reduce-range", "static", {"per_channel": False, "reduce_range": True}),
                 Candidate("dynamic-per-channel-reduce-range", "dynamic", {**pc, "reduce_range": True}),
                 Candidate("dynamic-per-channel-reduce-range-no-conv", "dynamic",
                           {**pc, "reduce_range": True, "op_types": NO_CONV})]
    if engine == "openvino":
        # onnxruntime's QDQ of LayerNormalization's 1-D scale/bias made OpenVINO 2026.4 output zeros
        # on the zoo encoder (onnxruntime ran the same file fine): leave normalization to float there.
        for c in cands:
            if c.mode == "static":
                c.options["exclude_op_types"] = ["LayerNormalization"]
        why += "; on OpenVINO, LayerNormalization stays float in static configs"
        if nncf:
            cands.insert(0, Candidate("openvino-int8", "openvino-int8", {}))
    return cands, why


def quantize_auto(src: Path, dst: Path, specs: list[Any], calibration: Any = None, *, device: str = "cpu",
                  tolerance: Any = None, eval_inputs: Any = None, eval_samples: int | None = None, force: bool = False,
                  candidates: list[str] | None = None, min_speedup: float | None = 1.05,
                  max_excluded_fraction: float = 0.5, samples: int = 128, bench_iterations: int = 100,
                  bench_rounds: int = 5, sensitivity_samples: int = 4, speed_budget_s: float = 30.0,
                  max_rounds: int = 40, **unknown: Any) -> Any:
    """Search INT8 configs for one that meets ``tolerance`` on ``device`` and is faster; see module doc.

    Args:
        candidates: names (from :func:`candidate_configs`) to try, default all of them.
        eval_samples: evaluation feeds; None: enough for the tolerance's agreement rate
            (:func:`edgeai.quantization.measure.default_eval_samples`), as many as the data has.
        min_speedup: INT8 is written only when the lower bound of its speed-up interval over FP32
            clears this; ``None`` writes the fastest passing config without that gate (its
            speed-up is still measured and recorded).
        max_excluded_fraction: most of the conv/matmul nodes that may be kept in float.
        samples: calibration samples. ``bench_iterations``: most runs per model per round;
            ``bench_rounds``: rounds before deciding; ``max_rounds`` / ``speed_budget_s``: more
            rounds while the interval straddles ``min_speedup``.

    Raises:
        ToleranceNotMet: no config meets the tolerance, even with blocks or sensitive nodes kept in
            float (the message has the best result reached); nothing is written unless ``force``.
        QuantizationError: no config could be quantized and run at all (each one's reason is listed).
    """
    import importlib.util

    if unknown:
        raise QuantizationError(f"unknown option(s) for auto: {sorted(unknown)}; auto chooses per_channel, "
                                "reduce_range and types itself. Its options: candidates, min_speedup, "
                                "max_excluded_fraction, samples, bench_iterations, bench_rounds, speed_budget_s, "
                                "max_rounds")
    t0 = time.perf_counter()
    engine = parse_device(device).engine
    if engine == "torch":
        raise QuantizationError("auto measures ONNX models on an ONNX engine; use a device like cpu or openvino:CPU")
    cpu = cpu_info()
    task = read_metadata(load_proto(src)).get("task")
    tol = resolve_tolerance(tolerance, "int8", task)
    configs, why = candidate_configs(cpu, engine, importlib.util.find_spec("nncf") is not None)
    if candidates is not None:
        unknown_names = sorted(set(candidates) - {c.name for c in configs})
        if unknown_names:
            raise QuantizationError(f"unknown candidate(s) {unknown_names} for {device} on this CPU; "
                                    f"choose from {[c.name for c in configs]}")
        configs = [c for c in configs if c.name in candidates]
    notes = [why]
    calib = collect_samples(calibration, specs, samples)
    if calibration is None:
        notes.append("calibrated on random inputs (no --calib given): real data gives better ranges")
    wanted = eval_samples or default_eval_samples(tol)
    evals = evaluation_feeds(eval_inputs, calibration, specs, wanted)
    evaluation = describe_evaluation(evals, specs, tol, wanted)
    notes += [n for n in (evals.note, evaluation.get("warning")) if n]
    reference = load_on(src, "cpu", "FP32")
    work_parent = dst.parent if dst.parent.exists() else None
    with tempfile.TemporaryDirectory(prefix=".edgeai-auto-", dir=work_parent) as work_dir:
        work = Path(work_dir)
        pre, note = preprocess(src, work)
        notes += [note] if note else []
        search = Search(pre, work, specs, calib, reference, device, evals, tol, scope_model=src)
        with progress("auto: trying INT8 configs", total=len(configs)) as advance:
            for cand in configs:
                search.run(cand)
                advance()
        passing = [c for c in configs if c.passed]
        if not passing:
            ran = [c for c in configs if c.parity is not None and c.is_int8]
            if not ran:
                raise QuantizationError(f"no INT8 config ran on {device}: "
                                        + "; ".join(f"{c.name}: {c.error}" for c in configs))
            best = max(ran, key=lambda c: c.cosine)
            found = search.exclude(best, max_excluded_fraction, sensitivity_samples)
            configs += found
            notes.append(f"no config passed; on {best.name}, blocks and the sensitive nodes ranked with onnxruntime "
                         f"qdq_loss_debug were kept in float: {'; '.join(search.log) or found[-1].error}")
            compute = compute_nodes(pre)
            passing = sorted((c for c in found if c.passed), key=lambda c: len(compute & set(c.excluded)))[:1]
            if not passing and not force:
                raise ToleranceNotMet(_not_met(max(configs, key=lambda c: c.cosine), tol, device, found))
            if not passing:
                passing = [max((c for c in configs if c.parity is not None), key=lambda c: c.cosine)]
                notes.append("forced: writing the best result reached although it fails the tolerance")
        for c in configs:
            if c not in passing:
                c.model = None
        feed = timing_feed(evals, specs)
        fp32 = load_on(src, device, "FP32")
        fastest, decision = _fastest(fp32, passing, feed, min_speedup, notes, bench_iterations=bench_iterations,
                                     bench_rounds=bench_rounds, max_rounds=max_rounds, speed_budget_s=speed_budget_s)
        rows = tuple(c.row() for c in configs)
        est = decision.estimate
        base = {"cpu": {"model": cpu.model, "features": list(cpu.features), "vnni": cpu.has_vnni},
                "device": device, "preprocessed": preprocess_status(note), "tolerance": tol.to_dict(),
                "evaluation": evaluation, "candidates": list(rows), "speed": decision.to_dict()}
        latency = {"device": device, "fp32_p50_ms": _r(est.baseline_ms), "p50_ms": _r(est.candidate_ms),
                   "speedup": _r(est.speedup), "interval": [_r(est.low), _r(est.high)], "rounds": est.rounds,
                   "candidate": fastest.name, "shapes": {k: list(v.shape) for k, v in feed.items()}}
        keep_int8, reason = speed_verdict(decision, min_speedup, fastest.name, device)
        if not keep_int8:
            notes.append(reason)
            parity = _write(src, dst, {**base, "chosen": "fp32", "reason": reason, "latency": latency,
                                       "coverage": None}, None, reference, device, evals, tol)
            return QuantizeResult(src, dst, "auto", {"chosen": "fp32", "reason": reason, "outcome": decision.outcome},
                                  model_size(src), model_size(dst), parity, device, time.perf_counter() - t0, (),
                                  tuple(notes), rows, {**latency, "int8_p50_ms": latency["p50_ms"],
                                                       "int8_speedup": latency["speedup"],
                                                       "p50_ms": latency["fp32_p50_ms"], "speedup": 1.0},
                                  coverage=None)
        notes.append(reason)
        config = {"chosen": fastest.name, "mode": fastest.mode, **fastest.config}
        coverage = _coverage_dict(fastest.coverage)
        meta = {**base, "chosen": fastest.name, "config": config, "excluded_nodes": list(fastest.excluded),
                "block": fastest.block, "latency": latency, "coverage": coverage}
        parity = _write(fastest.path, dst, meta, fastest.parity, reference, device, evals, tol)
    return QuantizeResult(src, dst, "auto", config, model_size(src), model_size(dst), parity, device,
                          time.perf_counter() - t0, fastest.excluded, tuple(notes), rows, latency, coverage=coverage)


def speed_verdict(decision: Any, min_speedup: float | None, name: str, device: str) -> tuple[bool, str]:
    """Whether ``auto`` writes the INT8 candidate ``name`` given its speed decision, and why.

    INT8 is written when the interval's lower bound clears ``min_speedup`` (``faster``), or when
    there is no gate (``min_speedup=None``); ``not_faster`` and ``undecided`` keep FP32, and the
    reason carries the interval (``undecided within noise: 1.04x [0.98, 1.11] ...``).
    """
    if min_speedup is None:
        return True, f"{name}: no speed gate (min_speedup=None); measured {decision.estimate.describe()}"
    if decision.faster:
        return True, f"{name} is {decision.reason()}"
    return False, f"INT8 was not measured faster than FP32 on {device}: {name} is {decision.reason()}; the FP32 model is kept"


def _r(v: float | None, digits: int = 5) -> float | None:
    return None if v is None or v != v or v in (float("inf"), float("-inf")) else round(v, digits)


def _coverage_dict(cov: Any) -> dict[str, Any] | None:
    """What the metadata and result keep of an Int8Coverage: the shares and the per-op breakdown."""
    if cov is None:
        return None
    d = cov.to_dict()
    d.pop("path", None)
    d["summary"] = cov.summary()
    return d


def _fastest(fp32: Any, passing: list[Candidate], feed: dict[str, Any], min_speedup: float | None,
             notes: list[str], *, bench_iterations: int, bench_rounds: int, max_rounds: int,
             speed_budget_s: float) -> tuple[Candidate, Any]:
    """The fastest passing candidate and its speed decision against FP32.

    With several passing, a short interleaved run of all of them picks the fastest by its point
    estimate; the decision itself then runs on fresh rounds of FP32 vs that one (rounds that chose
    the winner would flatter it). A candidate that fails while being timed is dropped with its reason.
    """
    pool = list(passing)
    if len(pool) > 1:
        try:
            lat = latencies([("fp32", fp32), *[(c.name, c.model) for c in pool]], feed,
                            iterations=max(3, bench_iterations // 2), rounds=max(2, bench_rounds // 2))
            for c in pool:
                c.estimate = lat.get(c.name, {}).get("estimate")
            timed = [c for c in pool if c.estimate is not None]
            pool = sorted(timed, key=lambda c: -c.estimate.speedup) or pool
        except EdgeAIError as e:
            notes.append(f"timing all passing configs together failed ({str(e)[:160]}); timing them one by one")
    last_error: Exception | None = None
    for cand in pool:
        try:
            decision = speed_decision(fp32, cand.model, feed, min_speedup, min_rounds=bench_rounds,
                                      max_rounds=max_rounds, time_budget_s=speed_budget_s,
                                      max_iterations=bench_iterations)
        except Exception as e:  # it ran for parity but not in the timing loop: skip it, say why
            cand.error, last_error = f"timing failed: {type(e).__name__}: {str(e)[:200]}", e
            continue
        cand.estimate = decision.estimate
        return cand, decision
    raise QuantizationError(f"no passing INT8 config could be timed on this device: {last_error}")


def _not_met(best: Candidate, tol: Any, device: str, searched: list[Candidate]) -> str:
    limits = [f"cosine >= {tol.min_cosine}"] if tol.min_cosine is not None else []
    limits += [f"top-1 >= {tol.min_top1:.0%}"] if tol.min_top1 is not None else []
    want = ", ".join(limits) or "each output's task metric"
    reached = best.parity.verdict() if best.parity is not None else best.error
    kept = f" with {len(best.excluded)} node(s) kept in float" if best.excluded else ""
    errors = [c.error for c in searched if c.error and c.parity is None]
    search = f"; excluding nodes: {errors[-1]}" if errors else ""
    return (f"no INT8 config meets the tolerance ({want}) on {device}, so nothing was written. Best reached: "
            f"{best.name}{kept}: {reached}{search}. Give real calibration data (--calib), loosen the tolerance "
            "(--min-cosine / --min-top1), or keep the FP32 model")


def _write(model_path: Path, dst: Path, meta: dict[str, Any], parity: Any, reference: Any, device: str,
           evals: Any, tol: Any) -> Any:
    """Write ``model_path`` to ``dst`` atomically with the search's record in its metadata."""
    import onnx

    if parity is None:  # the FP32 graph: its parity on the target device, for the record
        parity = parity_on(reference, load_on(model_path, device, "FP32"), evals, tol, "FP32")
    model = onnx.load(str(model_path))
    write_metadata(model, {"quantization": {"mode": "auto", **meta, "parity": parity_record(parity)}})
    with atomic_path(dst) as tmp:
        save_onnx(model, tmp)
    return parity
