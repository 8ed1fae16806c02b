"""``quantize(..., mode="auto", device="auto")``: the fastest configuration on this machine that matches.

1. Plans: every device here (``edgeai.devices()``) x the precisions it supports here, from
   :mod:`edgeai.quantization.targets`: FP32; bf16/f16 through OpenVINO's
   ``INFERENCE_PRECISION_HINT`` where the CPU has them; onnxruntime's fused transformer graph
   (:mod:`edgeai.quantization.fusion`); INT8 (onnxruntime dynamic and static QDQ, NNCF on OpenVINO
   with the float parts at bf16/f16/f32). A plan the machine cannot run is reported ``unsupported``
   with the reason and never run.
2. Each plan's graph is built once (INT8 graphs from one ``quant_pre_process``-ed copy, so node
   names agree), loaded on its device with its precision, and judged by the parity check against
   the FP32 export on onnxruntime CPU, with the default tolerance of its precision.
3. Mixed precision: an INT8 plan that fails parity is retried with the most sensitive nodes
   (onnxruntime ``qdq_loss_debug`` ranking, :mod:`edgeai.quantization.sensitivity`) kept in float
   (onnxruntime ``nodes_to_exclude``, NNCF ignored scope), fewest first.
4. The passing plans race interleaved (:mod:`edgeai.quantization.race`): the fastest that no other
   beats on its interval wins, the simpler one where speed cannot tell them apart. The FP32 export
   on onnxruntime CPU is always a plan and always matches, so there is always a winner.
5. The winner's graph is written with its device, precision and engine settings in the file's
   edgeai metadata (``run_with``): ``edgeai.load(path)`` without a device loads it that way.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeai.atomic import atomic_path
from edgeai.cpu import CPUInfo, cpu_info
from edgeai.device_strings import devices as available_devices
from edgeai.errors import EdgeAIError, QuantizationError
from edgeai.feeds import evaluation_feeds
from edgeai.onnxfile import load_proto, read_metadata, save_onnx, write_metadata
from edgeai.progress import progress
from edgeai.quantization.calibration import collect_samples
from edgeai.quantization.fusion import fuse_transformer
from edgeai.quantization.measure import (
    default_eval_samples,
    load_on,
    parity_on,
    quiet_ort_quantization,
    resolve_tolerance,
    timing_feed,
)
from edgeai.quantization.modes import QuantizeResult, model_size, run_mode
from edgeai.quantization.openvino import is_transformer
from edgeai.quantization.race import Entry, race
from edgeai.quantization.sensitivity import (
    DYNAMIC_OPS,
    activation_bytes,
    compute_nodes,
    rank_sensitive_nodes,
    restrict_to_ops,
)
from edgeai.quantization.static import preprocess
from edgeai.quantization.targets import Plan, plans_for
from edgeai.runtimes import load

CHOSEN_BY = "edgeai quantize --mode auto --device auto"


@dataclass
class Trial:
    """A plan being tried: its graph, loaded model, parity, timing and final status."""

    plan: Plan
    status: str = "pending"  # unsupported | failed | parity failed | lost | won
    reason: str = ""
    path: Path | None = None
    model: Any = None
    parity: Any = None
    tolerance: Any = None
    fusions: dict[str, int] | None = None
    estimate: Any = None  # speed-up over the baseline (speedup.SpeedupEstimate)

    def row(self) -> dict[str, Any]:
        w = self.parity.worst if self.parity is not None else None
        e = self.estimate
        return {**self.plan.to_dict(), "status": self.status, "why": self.reason,
                "passed": bool(self.parity is not None and self.parity.passed),
                "cosine": None if w is None else round(w.cosine, 6),
                "top1": None if w is None or w.top1 is None else round(w.top1, 4),
                "verdict": self.parity.verdict() if self.parity is not None else None,
                "fusions": self.fusions, "p50_ms": None if e is None else round(e.candidate_ms, 4),
                "speedup": None if e is None else round(e.speedup, 3),
                "speedup_interval": None if e is None else [round(e.low, 3), round(e.high, 3)],
                "rounds": None if e is None else e.rounds,
                "error": None if self.status == "won" else self.reason}


def machine_cpu(cpu_features: Sequence[str] | None = None) -> CPUInfo:
    """This CPU, or (for tests) this CPU with ``cpu_features`` in place of its real features."""
    cpu = cpu_info()
    if cpu_features is None:
        return cpu
    return CPUInfo(f"{cpu.model} (features given: {', '.join(cpu_features) or 'none'})", cpu.arch, cpu.cores,
                   tuple(sorted(cpu_features)))


def quantize_fastest(src: Path, dst: Path, specs: list[Any], calibration: Any = None, *, tolerance: Any = None,
                     eval_inputs: Any = None, eval_samples: int | None = None, force: bool = False,
                     devices: Sequence[str] | None = None, cpu_features: Sequence[str] | None = None,
                     candidates: Sequence[str] | None = None, samples: int = 64, fuse: bool = True,
                     static: bool = True, mixed: bool = True, mixed_trials: int = 3, max_excluded_fraction: float = 0.5,
                     sensitivity_samples: int = 4, mixed_memory_gb: float = 2.0, speed_budget_s: float = 60.0, min_rounds: int = 5,
                     max_rounds: int = 40, **unknown: Any) -> QuantizeResult:
    """Search devices x precisions x INT8 configs for the fastest that matches; write it (module doc).

    Args:
        devices: device strings to search (default: all of ``edgeai.devices()``).
        cpu_features: search as if the CPU had exactly these features (tests: a CPU without bf16).
        candidates: plan names to try (default all); the FP32 plan on ``cpu`` is always kept.
        samples: calibration samples for INT8 graphs.
        fuse / mixed: try onnxruntime's fused transformer graph / INT8 with sensitive nodes in float.
        static: give each OpenVINO plan a twin compiled for the timing feed's shapes (other shapes
            still run, on a dynamic compile); only where the model has dynamic dims.
        mixed_trials: exclusion sizes tried per failing INT8 plan (1, 4, 16, ... top-ranked groups).
        mixed_memory_gb: memory the sensitivity ranking may hold (it keeps every activation of
            both graphs per sample); fewer samples, or no mixed search, when it would take more.
        speed_budget_s, min_rounds, max_rounds: the interleaved race (see :func:`race`): seconds and
            rounds it may spend before the undecided are called ties (the same names as ``auto`` on one device).
        force: accepted for the CLI's sake; the FP32 plan always matches, so nothing needs forcing.

    Raises:
        QuantizationError: unknown options or plan names, or no device to search.
    """
    del force
    if unknown:
        raise QuantizationError(f"unknown option(s) for auto --device auto: {sorted(unknown)}; it takes devices, "
                                "cpu_features, candidates, samples, fuse, static, mixed, mixed_trials, max_excluded_fraction, "
                                "sensitivity_samples, mixed_memory_gb, speed_budget_s, min_rounds, max_rounds")
    t0 = time.perf_counter()
    cpu = machine_cpu(cpu_features)
    proto = load_proto(src)
    meta = read_metadata(proto)
    transformer, why_transformer = is_transformer(proto)
    del proto
    devs = [d for d in (devices or available_devices()) if d != "torch"]
    if "cpu" not in devs:
        devs.insert(0, "cpu")  # the FP32 export on onnxruntime CPU: the baseline every speed-up is against
    wanted = eval_samples or default_eval_samples(resolve_tolerance(tolerance, "int8", meta.get("task")))
    evals = evaluation_feeds(eval_inputs, calibration, specs, wanted)
    feed = timing_feed(list(evals), specs)
    shapes = {sp.name: list(feed[sp.name].shape) for sp in specs if sp.is_dynamic and sp.name in feed}
    plans = plans_for(devs, cpu, transformer=transformer, fuse=fuse, static_shapes=shapes if static else None)
    baseline = plans[0].name
    if candidates is not None:
        names = {p.name for p in plans}
        bad = sorted(set(candidates) - names)
        if bad:
            raise QuantizationError(f"unknown candidate(s) {bad}; plans here: {sorted(names)}")
        plans = [p for p in plans if p.name in candidates or p.name == baseline]
    trials = [Trial(p, "unsupported", p.unsupported) if p.unsupported else Trial(p) for p in plans]
    notes = [f"searched {', '.join(devs)} on {cpu.model} ({', '.join(cpu.features) or 'no listed features'})",
             f"transformer: {transformer} ({why_transformer})"]
    notes += [evals.note] if evals.note else []
    reference = load_on(src, "cpu", "FP32")
    work_parent = dst.parent if dst.parent.exists() else None
    with tempfile.TemporaryDirectory(prefix=".edgeai-fastest-", dir=work_parent) as work_dir:
        graphs = _Graphs(src, Path(work_dir), specs, calibration, samples, notes, cpu)
        runnable = [t for t in trials if t.status == "pending"]
        with progress("auto: building and checking candidates", total=len(runnable)) as advance:
            for t in runnable:
                _try(t, graphs, reference, evals, tolerance, meta.get("task"))
                advance()
        if mixed:
            trials += _mixed(trials, graphs, reference, evals, tolerance, meta.get("task"), mixed_trials,
                             max_excluded_fraction, sensitivity_samples, mixed_memory_gb)
        t_checked = time.perf_counter()
        passing = [t for t in trials if t.status == "passed"]
        entries = [Entry(t.plan.name, (lambda m=t.model: m.run(feed)), t.plan.simplicity) for t in passing]
        result = race(entries, baseline=baseline, min_rounds=min_rounds, max_rounds=max_rounds,
                      time_budget_s=speed_budget_s)
        notes.append(f"built and judged {sum(t.status != 'unsupported' for t in trials)} candidates in "
                     f"{t_checked - t0:.0f}s; raced {len(passing)} in {time.perf_counter() - t_checked:.0f}s "
                     f"({result.settings['rounds_run']} rounds, stopped: {result.stopped_by})")
        if result.settings["rematches"]:
            notes.append("rematched (their first loss was to a candidate that lost later): "
                         + "; ".join(result.settings["rematches"]))
        winner = _settle(trials, result)
        record = _record(winner, trials, result, cpu, devs, evals, graphs, time.perf_counter() - t0)
        _write(winner, dst, meta, record)
    rows = tuple(t.row() for t in trials)
    e = winner.estimate
    latency = {"device": winner.plan.device, "baseline": baseline, "fp32_p50_ms": round(e.baseline_ms, 4),
               "p50_ms": round(e.candidate_ms, 4), "speedup": round(e.speedup, 3),
               "speedup_interval": [round(e.low, 3), round(e.high, 3)], "batch": 1}
    config = {"chosen": winner.plan.name, **winner.plan.run_with(), "why": winner.reason,
              **({"fusions": winner.fusions} if winner.fusions else {})}
    return QuantizeResult(src, dst, "auto", config, model_size(src), model_size(dst), winner.parity,
                          winner.plan.device, time.perf_counter() - t0, winner.plan.excluded, tuple(dict.fromkeys(notes)), rows,
                          latency)


class _Graphs:
    """Each graph built once, on demand: the export, the fused graph, the pre-processed copy and
    its INT8 versions (keyed by the nodes kept in float). A graph that cannot be built raises the
    same error for every plan that needs it."""

    def __init__(self, src: Path, work: Path, specs: list[Any], calibration: Any, samples: int,
                 notes: list[str], cpu: CPUInfo) -> None:
        self.cpu = cpu
        self.src, self.work, self.specs, self.calibration, self.samples = src, work, specs, calibration, samples
        self.notes = notes
        self.built: dict[Any, Path | EdgeAIError] = {}
        self.fusion: Any = None
        self._calib: list[dict] | None = None

    def calib(self) -> list[dict]:
        if self._calib is None:
            self._calib = collect_samples(self.calibration, self.specs, self.samples)
            if self.calibration is None:
                self.notes.append("INT8 calibrated on random inputs (no calibration data given)")
        return self._calib

    def get(self, graph: str, excluded: tuple[str, ...] = ()) -> Path:
        key = (graph, excluded)
        if key not in self.built:
            try:
                self.built[key] = self._build(graph, excluded, len(self.built))
            except EdgeAIError as e:
                self.built[key] = e
        found = self.built[key]
        if isinstance(found, EdgeAIError):
            raise found
        return found

    def _build(self, graph: str, excluded: tuple[str, ...], n: int) -> Path:
        if graph == "original":
            return self.src
        if graph == "pre":
            pre, note = preprocess(self.src, self.work)
            self.notes += [note] if note else []
            return pre
        out = self.work / f"{n:03d}-{graph}.onnx"
        if graph == "fused":
            self.fusion = fuse_transformer(self.src, out)
            if not self.fusion.applied:
                raise QuantizationError(self.fusion.describe())
            return out
        if graph == "fp16":
            run_mode("fp16", self.src, out, self.specs, None, {})
            return out
        vnni = self.cpu.has_vnni
        options: dict[str, Any] = {"nodes_to_exclude": list(excluded)}
        if graph in ("int8-dynamic", "int8-dynamic-pc"):
            mode = "dynamic"
            options = {**options, "per_channel": graph == "int8-dynamic-pc", "reduce_range": not vnni}
        elif graph == "int8-static":
            mode = "static"
            options = {**options, "per_channel": True, "activation_type": "uint8", "reduce_range": not vnni,
                       "calibration_data": self.calib(), "preprocess_model": False}
        elif graph == "nncf-int8":
            mode, options = "openvino-int8", {**options, "calibration_data": self.calib(), "samples": len(self.calib())}
        else:
            raise QuantizationError(f"unknown graph kind {graph!r}")
        with quiet_ort_quantization():
            config = run_mode(mode, self.get("pre"), out, self.specs, None, options)
        self.notes += [f"{graph}: {n}" for n in config.pop("notes", [])]
        return out


def _try(t: Trial, graphs: _Graphs, reference: Any, feeds: Sequence[dict], tolerance: Any, task: str | None) -> None:
    """Build, load and judge one plan; its status becomes ``passed``, ``parity failed`` or ``failed``."""
    plan = t.plan
    try:
        t.path = graphs.get(plan.graph, plan.excluded)
        if plan.graph == "fused" and graphs.fusion is not None:
            t.fusions = dict(graphs.fusion.fused)
        t.model = _load(t.path, plan)
        ran = t.model.describe().precision
        # OpenVINO takes a precision hint and may not honour it; onnxruntime runs the graph's own types.
        if plan.engine == "openvino" and ran.split("+")[-1] != plan.precision.split("+")[-1]:
            t.status, t.reason = "unsupported", f"asked for {plan.precision}, {plan.engine} ran {ran}"
            t.model = None
            return
        t.tolerance = resolve_tolerance(tolerance, plan.tolerance_precision, task)
        t.parity = parity_on(reference, t.model, feeds, t.tolerance, plan.name)
    except EdgeAIError as e:
        t.status, t.reason, t.model = "failed", str(e).splitlines()[0][:300], None
        return
    if t.parity.passed:
        t.status = "passed"
    else:
        t.status, t.reason, t.model = "parity failed", t.parity.verdict(), None


def _load(path: Path, plan: Plan) -> Any:
    try:
        return load(path, plan.device, **plan.load)
    except EdgeAIError as e:
        raise QuantizationError(f"{plan.name} does not load: {e}") from e


def _mixed(trials: list[Trial], graphs: _Graphs, reference: Any, feeds: Sequence[dict], tolerance: Any,
           task: str | None, max_trials: int, max_fraction: float, n_samples: int, memory_gb: float) -> list[Trial]:
    """For each INT8 plan that failed parity: keep the top-ranked sensitive nodes in float, growing
    the set (1, 4, 16, ... groups) until parity holds, within ``max_fraction`` of the compute nodes."""
    failing = [t for t in trials if t.plan.int8 and t.status == "parity failed"]
    if not failing or max_trials < 1:
        return []
    try:
        pre = graphs.get("pre")
        # qdq_loss_debug keeps every intermediate tensor of both models for every sample in memory:
        # a Whisper encoder's attention maps alone are ~50 MB each. Fewer samples, or no ranking.
        per_sample = 5 * activation_bytes(pre)  # both graphs, QDQ outputs, copies: 4.5 GB measured on Whisper
        n = min(n_samples, int(memory_gb * 2**30 // max(per_sample, 1)))
        if n < 1:
            graphs.notes.append(f"mixed precision skipped: ranking sensitive nodes would hold ~{per_sample / 2**30:.1f} "
                                f"GB of activations per sample (limit mixed_memory_gb={memory_gb})")
            return []
        qdq = graphs.get("int8-static")
        ranking = rank_sensitive_nodes(pre, qdq, list(feeds)[:n], graphs.work)
    except Exception as e:  # a graph onnxruntime's debug tooling cannot pair: say so, keep going
        graphs.notes.append(f"mixed precision skipped: sensitivity ranking failed: {type(e).__name__}: {str(e)[:200]}")
        return []
    compute = compute_nodes(pre)
    limit = int(max_fraction * len(compute))
    added: list[Trial] = []
    for base in failing:
        ranked = restrict_to_ops(ranking, pre, DYNAMIC_OPS) if base.plan.graph.startswith("int8-dynamic") else ranking
        prefixes: list[tuple[str, ...]] = []
        seen: dict[str, None] = {}
        for s in ranked:
            before = len(seen)
            seen.update(dict.fromkeys(s.nodes))
            if len(seen) > before and len(compute & set(seen)) <= limit:
                prefixes.append(tuple(seen))
        sizes = sorted({min(len(prefixes), 4 ** i) for i in range(max_trials)}) if prefixes else []
        last = None
        for k in sizes:
            last = Trial(base.plan.with_excluded(prefixes[k - 1]))
            _try(last, graphs, reference, feeds, tolerance, task)
            if last.status == "passed":
                break
        if last is not None:
            added.append(last)
            base.reason += f"; with {len(last.plan.excluded)} sensitive nodes in float: {last.status}"
    return added


def _settle(trials: list[Trial], result: Any) -> Trial:
    """Statuses and reasons from the race; returns the winning trial."""
    by_name = {t.plan.name: t for t in trials}
    winner = by_name[result.winner]
    for name, est in result.estimates.items():
        by_name[name].estimate = est
    for t in trials:
        name = t.plan.name
        if t.status != "passed":
            continue
        if t is winner:
            t.status = "won"
            others = [n for n in result.unbeaten if n != name]
            t.reason = ("fastest that matches: beat every other passing candidate on its interval"
                        if not others else f"the simplest of the candidates no other beat ({', '.join(others)} "
                        "within noise of it)")
            continue
        t.status = "lost"
        if name in result.beaten_by:
            by, est = result.beaten_by[name]
            t.reason = f"slower than {by}: {by} is {est.describe()} faster"
        else:
            est = result.versus(winner.plan.name, name)
            simpler = winner.plan.simplicity < t.plan.simplicity
            t.reason = (f"within noise of {winner.plan.name} ({est.describe()}), "
                        + ("which is simpler" if simpler else "which measured faster"))
    return winner


def _record(winner: Trial, trials: list[Trial], result: Any, cpu: CPUInfo, devs: list[str], evals: Any,
            graphs: _Graphs, seconds: float) -> dict[str, Any]:
    w = winner.parity.worst
    return {"mode": "auto", "device": "auto", "chosen": winner.plan.name, "run_with": winner.plan.run_with(),
            "why": winner.reason, "cpu": cpu.to_dict(), "devices_searched": devs,
            "fusion": graphs.fusion.to_dict() if graphs.fusion is not None else None,
            "excluded_nodes": list(winner.plan.excluded), "data": evals.source, "samples": len(evals.feeds),
            "tolerance": winner.tolerance.to_dict() if winner.tolerance is not None else None,
            "parity": {"passed": winner.parity.passed, "verdict": winner.parity.verdict(),
                       "cosine": round(w.cosine, 6), "top1": None if w.top1 is None else round(w.top1, 4)},
            "race": {k: v for k, v in result.to_dict().items() if k != "rounds"},
            "candidates": [replace_none(t.row()) for t in trials], "search_s": round(seconds, 1)}


def replace_none(row: dict[str, Any]) -> dict[str, Any]:
    """A report row without the bulky parity verdict (the metadata keeps the numbers)."""
    return {k: v for k, v in row.items() if k != "verdict"}


def _write(winner: Trial, dst: Path, meta: dict[str, Any], record: dict[str, Any]) -> None:
    import onnx

    model = onnx.load(str(winner.path))
    # The export's own metadata (task, family, output kinds) carries over whatever graph won.
    write_metadata(model, {**meta, **read_metadata(model), "quantization": record,
                           "run_with": {**winner.plan.run_with(), "chosen_by": CHOSEN_BY,
                                        "cpu": record["cpu"]["model"]}})
    with atomic_path(dst) as tmp:
        save_onnx(model, tmp)

