"""``auto``: the INT8 config that meets the tolerance and is measured faster on the target, or FP32.

1. Candidate configs follow the CPU: with VNNI (AVX512-VNNI, AVX-VNNI, AMX, Arm dot-product) U8S8
   and S8S8 run without saturation; without it, u8s8 kernels sum pairs in int16 (vpmaddubsw) and
   can saturate, so the candidates are U8S8 with ``reduce_range`` (7-bit weights) and U8U8. Dynamic
   INT8 and per-tensor weights are tried too, and NNCF (``openvino-int8``) on OpenVINO devices.
   All start from one ``quant_pre_process``-ed copy, so node names agree between them.
2. Each candidate's parity against the FP32 file is measured on the target device.
3. When none passes, the most sensitive tensors of the best candidate are found with
   onnxruntime's ``qdq_loss_debug`` (see :mod:`edgeai.quantization.sensitivity`) and the fewest of them
   are kept in float (a doubling then bisecting search over the ranking) until the tolerance holds,
   never more than ``max_excluded_fraction`` of the convolutions / matrix multiplies.
4. FP32 and the passing candidates are timed interleaved on the target device. The fastest one
   that is at least ``min_speedup`` times faster than FP32 is written; if none is, the FP32 graph
   is written with metadata saying why: INT8 is never recommended without being measured faster.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
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
    latencies,
    load_on,
    parity_on,
    quiet_ort_quantization,
    resolve_tolerance,
    timing_feed,
)
from edgeai.quantization.modes import QuantizeResult, model_size, run_mode
from edgeai.quantization.sensitivity import (
    DYNAMIC_OPS,
    compute_nodes,
    rank_sensitive_nodes,
    restrict_to_ops,
)
from edgeai.quantization.static import preprocess
from edgeai.runtimes import parse_device


@dataclass
class Candidate:
    name: str
    mode: str
    options: dict[str, Any]
    path: Path | None = None
    model: Any = None
    parity: Any = None
    config: dict[str, Any] = field(default_factory=dict)
    excluded: tuple[str, ...] = ()
    error: str | None = None
    p50_ms: float | None = None
    speedup: float | None = None

    @property
    def cosine(self) -> float:
        return self.parity.worst.cosine if self.parity is not None else -2.0

    def row(self) -> dict[str, Any]:
        w = self.parity.worst if self.parity is not None else None
        return {"name": self.name, "mode": self.mode, "options": self.options, "excluded_nodes": len(self.excluded),
                "passed": bool(self.parity is not None and self.parity.passed),
                "cosine": None if w is None else round(w.cosine, 6),
                "top1": None if w is None or w.top1 is None else round(w.top1, 4),
                "p50_ms": self.p50_ms, "speedup": self.speedup, "error": self.error}


def candidate_configs(cpu: Any, engine: str, nncf: bool) -> tuple[list[Candidate], str]:
    """The configs worth trying on this CPU and engine, and a note saying why these."""
    pc = {"per_channel": True}
    if cpu.has_vnni:
        found = ", ".join(f for f in cpu.features if "vnni" in f or f in ("amx_int8", "dotprod", "i8mm"))
        why = f"CPU has VNNI-class INT8 dot products ({found}): U8S8/S8S8 without reduce_range"
        cands = [Candidate("static-u8s8-per-channel", "static", {**pc, "activation_type": "uint8", "reduce_range": False}),
                 Candidate("static-s8s8-per-channel", "static", {**pc, "activation_type": "int8", "reduce_range": False}),
                 Candidate("static-u8s8-per-tensor", "static", {"per_channel": False, "reduce_range": False}),
                 Candidate("dynamic-per-channel", "dynamic", {**pc, "reduce_range": False})]
    else:
        why = ("CPU lacks VNNI: u8s8 kernels sum pairs in int16 and can saturate, so U8S8 uses reduce_range "
               "(7-bit weights) and U8U8 is tried")
        cands = [Candidate("static-u8s8-per-channel-reduce-range", "static",
                           {**pc, "activation_type": "uint8", "reduce_range": True}),
                 Candidate("static-u8u8-per-channel", "static",
                           {**pc, "activation_type": "uint8", "weight_type": "uint8", "reduce_range": False}),
                 Candidate("static-u8s8-per-tensor-reduce-range", "static", {"per_channel": False, "reduce_range": True}),
                 Candidate("dynamic-per-channel-reduce-range", "dynamic", {**pc, "reduce_range": True})]
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
                  tolerance: Any = None, eval_inputs: Any = None, eval_samples: int = 16, force: bool = False,
                  candidates: list[str] | None = None, min_speedup: float | None = 1.05,
                  max_excluded_fraction: float = 0.5, samples: int = 128, bench_iterations: int = 100,
                  bench_rounds: int = 5, sensitivity_samples: int = 4, **unknown: Any) -> Any:
    """Search INT8 configs for one that meets ``tolerance`` on ``device`` and is faster; see module doc.

    Args:
        candidates: names (from :func:`candidate_configs`) to try, default all of them.
        min_speedup: INT8 must be at least this much faster than FP32 (median of interleaved
            per-round p50 ratios) to be written; ``None`` writes the fastest passing config
            without that gate.
        max_excluded_fraction: most of the conv/matmul nodes that may be kept in float.
        samples: calibration samples; ``bench_iterations``/``bench_rounds``: the latency run.

    Raises:
        ToleranceNotMet: no config meets the tolerance, even with sensitive nodes excluded (the
            message has the best result reached); nothing is written unless ``force``.
    """
    import importlib.util

    if unknown:
        raise QuantizationError(f"unknown option(s) for auto: {sorted(unknown)}; auto chooses per_channel, "
                                "reduce_range and types itself. Its options: candidates, min_speedup, "
                                "max_excluded_fraction, samples, bench_iterations, bench_rounds")
    t0 = time.perf_counter()
    engine = parse_device(device).engine
    if engine == "torch":
        raise QuantizationError("auto measures ONNX models on an ONNX engine; use a device like cpu or openvino:CPU")
    cpu = cpu_info()
    task = read_metadata(load_proto(src)).get("task")
    tol = resolve_tolerance(tolerance, "int8", task)
    configs, why = candidate_configs(cpu, engine, importlib.util.find_spec("nncf") is not None)
    if candidates is not None:
        unknown = sorted(set(candidates) - {c.name for c in configs})
        if unknown:
            raise QuantizationError(f"unknown candidate(s) {unknown} for {device} on this CPU; "
                                    f"choose from {[c.name for c in configs]}")
        configs = [c for c in configs if c.name in candidates]
    notes = [why]
    calib = collect_samples(calibration, specs, samples)
    if calibration is None:
        notes.append("calibrated on random inputs (no --calib given): real data gives better ranges")
    evals = evaluation_feeds(eval_inputs, calibration, specs, eval_samples)
    notes += [evals.note] if evals.note else []
    reference = load_on(src, "cpu", "FP32")
    work_parent = dst.parent if dst.parent.exists() else None
    with tempfile.TemporaryDirectory(prefix=".edgeai-auto-", dir=work_parent) as work_dir:
        work = Path(work_dir)
        pre, note = preprocess(src, work)
        notes += [note] if note else []
        preprocessed = "failed" if pre.parent != work.resolve() else ("partial" if note else "done")
        search = _Search(pre, work, specs, calib, reference, device, evals, tol)
        with progress("auto: trying INT8 configs", total=len(configs)) as advance:
            for cand in configs:
                search.run(cand)
                advance()
        passing = [c for c in configs if c.parity is not None and c.parity.passed]
        for c in configs:
            if c not in passing and c is not max(configs, key=lambda c: c.cosine):
                c.model = None
        if not passing:
            best = max(configs, key=lambda c: c.cosine)
            if best.parity is None:
                raise QuantizationError(f"no INT8 config ran on {device}: "
                                        + "; ".join(f"{c.name}: {c.error}" for c in configs))
            found = search.exclude_sensitive(best, max_excluded_fraction, sensitivity_samples)
            configs.append(found)
            notes.append(f"no config passed; sensitive nodes of {best.name} ranked with onnxruntime qdq_loss_debug, "
                         f"then kept in float: {'; '.join(search.log) or found.error}")
            if found.parity is not None and found.parity.passed:
                passing = [found]
            elif not force:
                best = max(configs, key=lambda c: c.cosine)
                raise ToleranceNotMet(_not_met(best, tol, device, found))
            else:
                passing = [max(configs, key=lambda c: c.cosine)]
                notes.append("forced: writing the best result reached although it fails the tolerance")
        fp32 = load_on(src, device, "FP32")
        lat = latencies([("fp32", fp32), *[(c.name, c.model) for c in passing]], timing_feed(evals),
                        iterations=bench_iterations, rounds=bench_rounds)
        for c in passing:
            c.p50_ms, c.speedup = lat[c.name]["p50_ms"], lat[c.name]["speedup"]
        fastest = max(passing, key=lambda c: c.speedup or 0.0)
        rows = tuple(c.row() for c in configs)
        base = {"cpu": {"model": cpu.model, "features": list(cpu.features), "vnni": cpu.has_vnni},
                "device": device, "preprocessed": preprocessed, "tolerance": tol.to_dict(), "candidates": list(rows)}
        latency = {"device": device, "fp32_p50_ms": lat["fp32"]["p50_ms"], "p50_ms": fastest.p50_ms,
                   "speedup": fastest.speedup, "batch": 1}
        if min_speedup is not None and (fastest.speedup or 0.0) < min_speedup:
            reason = (f"INT8 was not measured faster than FP32 on {device}: the fastest passing config, "
                      f"{fastest.name}, ran at {fastest.speedup}x FP32 (p50 {fastest.p50_ms} ms vs "
                      f"{lat['fp32']['p50_ms']} ms; needs >= {min_speedup}x), so the FP32 model is kept")
            notes.append(reason)
            parity = _write(src, dst, {**base, "chosen": "fp32", "reason": reason, "latency": latency}, None,
                            reference, device, evals, tol)
            return QuantizeResult(src, dst, "auto", {"chosen": "fp32", "reason": reason}, model_size(src),
                                  model_size(dst), parity, device, time.perf_counter() - t0, (), tuple(notes), rows,
                                  {**latency, "p50_ms": latency["fp32_p50_ms"], "speedup": 1.0})
        config = {"chosen": fastest.name, "mode": fastest.mode, **fastest.config}
        meta = {**base, "chosen": fastest.name, "config": config, "excluded_nodes": list(fastest.excluded),
                "latency": latency}
        parity = _write(fastest.path, dst, meta, fastest.parity, reference, device, evals, tol)
    return QuantizeResult(src, dst, "auto", config, model_size(src), model_size(dst), parity, device,
                          time.perf_counter() - t0, fastest.excluded, tuple(notes), rows, latency)


class _Search:
    """Quantize a candidate, load it on the device, measure parity; and the exclusion search."""

    def __init__(self, pre: Path, work: Path, specs: list[Any], calib: list[dict], reference: Any, device: str,
                 evals: list[dict], tol: Any) -> None:
        self.pre, self.work, self.specs, self.calib = pre, work, specs, calib
        self.reference, self.device, self.evals, self.tol = reference, device, evals, tol
        self.trials = 0
        self.log: list[str] = []

    def run(self, cand: Candidate, excluded: tuple[str, ...] = ()) -> Candidate:
        self.trials += 1
        cand.path = self.work / f"{self.trials:03d}-{cand.name}.onnx"
        options = dict(cand.options, nodes_to_exclude=list(excluded))
        if cand.mode in ("static", "openvino-int8"):
            options["calibration_data"] = self.calib
        if cand.mode == "static":  # self.pre is pre-processed once for all candidates
            options["preprocess_model"] = False
        try:
            with quiet_ort_quantization():
                cand.config = run_mode(cand.mode, self.pre, cand.path, self.specs, None, options)
            cand.config.pop("notes", None)
            cand.excluded = excluded
            cand.model = load_on(cand.path, self.device, cand.name)
            cand.parity = parity_on(self.reference, cand.model, self.evals, self.tol, cand.name)
        except EdgeAIError as e:
            cand.error = str(e).splitlines()[0][:300]
        return cand

    def exclude_sensitive(self, base: Candidate, max_fraction: float, n_samples: int) -> Candidate:
        """Keep the fewest top-ranked sensitive tensors of ``base`` in float until parity passes."""
        ranking_model = base.path
        if base.mode != "static":  # the QDQ debug tooling reads onnxruntime's QDQ naming
            # A static probe with the base's weight granularity and range, so the weight errors ranked
            # are the ones the base config makes.
            keep = ("per_channel", "reduce_range", "exclude_op_types")
            probe = self.run(Candidate("sensitivity-probe", "static",
                                       {"per_channel": True, **{k: v for k, v in base.options.items() if k in keep}}))
            ranking_model = probe.path
        if ranking_model is None or not ranking_model.exists():
            return Candidate(f"{base.name}+excluded", base.mode, base.options, error="could not build a QDQ model")
        try:
            ranking = rank_sensitive_nodes(self.pre, ranking_model, self.evals[:n_samples], self.work)
        except Exception as e:  # a real graph onnxruntime's debug tooling cannot pair: say so, go on
            return Candidate(f"{base.name}+excluded", base.mode, base.options,
                             error=f"sensitivity ranking failed: {type(e).__name__}: {str(e)[:200]}")
        if base.mode == "dynamic":
            ranking = restrict_to_ops(ranking, self.pre, DYNAMIC_OPS)
        compute = compute_nodes(self.pre)
        limit = int(max_fraction * len(compute))
        prefixes: list[tuple[str, ...]] = []
        seen: dict[str, None] = {}
        for s in ranking:
            before = len(seen)
            seen.update(dict.fromkeys(s.nodes))
            if len(seen) == before:
                continue
            if len(compute & set(seen)) > limit:
                break
            prefixes.append(tuple(seen))
        name = f"{base.name}+excluded"
        if not prefixes:
            return Candidate(name, base.mode, base.options, error=f"no sensitive nodes to exclude within the limit "
                             f"of {limit} of {len(compute)} conv/matmul nodes")
        tried: dict[int, Candidate] = {}

        def passes(k: int) -> bool:
            cand = tried[k] = self.run(Candidate(name, base.mode, base.options), prefixes[k - 1])
            ok = cand.parity is not None and cand.parity.passed
            self.log.append(f"{len(prefixes[k - 1])} in float: " + (f"cosine {cand.cosine:.5f} "
                            f"{'pass' if ok else 'fail'}" if cand.parity is not None else f"error {cand.error}"))
            return ok

        # Doubling finds a passing prefix in log2(n) trials; bisecting then finds the shortest one
        # (the ranking makes "more excluded" close to monotone in accuracy).
        n, lo, hi, k = len(prefixes), 0, None, 1
        with progress("auto: excluding sensitive nodes", total=None) as advance:
            while k <= n:
                advance()
                if passes(k):
                    hi = k
                    break
                lo = k
                k = n + 1 if k == n else min(2 * k, n)
            while hi is not None and hi - lo > 1:
                mid = (lo + hi) // 2
                advance()
                if passes(mid):
                    hi = mid
                else:
                    lo = mid
        chosen = tried[hi] if hi is not None else max(tried.values(), key=lambda c: c.cosine)
        for cand in tried.values():
            if cand is not chosen:
                cand.model = None  # release the sessions of the prefixes not chosen
        return chosen


def _not_met(best: Candidate, tol: Any, device: str, searched: Candidate) -> str:
    want = f"cosine >= {tol.min_cosine}" + (f", top-1 >= {tol.min_top1:.0%}" if tol.min_top1 is not None else "")
    reached = best.parity.verdict() if best.parity is not None else best.error
    kept = f" with {len(best.excluded)} node(s) kept in float" if best.excluded else ""
    search = f"; excluding sensitive nodes: {searched.error}" if searched.error and searched.parity is None else ""
    return (f"no INT8 config meets the tolerance ({want}) on {device}, so nothing was written. Best reached: "
            f"{best.name}{kept}: {reached}{search}. Give real calibration data (--calib), loosen the tolerance "
            "(--min-cosine / --min-top1), or keep the FP32 model")


def _write(model_path: Path, dst: Path, meta: dict[str, Any], parity: Any, reference: Any, device: str,
           evals: list[dict], tol: Any) -> Any:
    """Write ``model_path`` to ``dst`` atomically with the search's record in its metadata."""
    import onnx

    if parity is None:  # the FP32 graph: its parity on the target device, for the record
        parity = parity_on(reference, load_on(model_path, device, "FP32"), evals, tol, "FP32")
    worst = parity.worst
    model = onnx.load(str(model_path))
    write_metadata(model, {"quantization": {"mode": "auto", **meta, "parity": {
        "passed": parity.passed, "verdict": parity.verdict(), "cosine": round(worst.cosine, 6),
        "top1": None if worst.top1 is None else round(worst.top1, 4)}}})
    with atomic_path(dst) as tmp:
        save_onnx(model, tmp)
    return parity
