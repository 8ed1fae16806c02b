"""What a parity verdict rests on: each output's kind and the task metric that judges it, which
graph criteria can fail on it, and whether the sample count can show the tolerance asked.

An output's kind comes, first match wins, from a declaration (``Tolerance(kinds=...)``,
``--output-kind NAME=KIND``), from the model file's metadata (``output_kinds``, which ``edgeai
export real:NAME`` writes), or is inferred from its name, shape and the export's ``task``
(:func:`edgeai.metrics.infer_kind`). The kind picks the metric (:func:`edgeai.metrics.judge`):
top-1 only for classification, no cosine of one value per sample.

Measurement layer: numpy, the metrics and the ONNX file's metadata.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeai.errors import InputMismatchError
from edgeai.feeds import Feeds
from edgeai.metrics import (
    MetricNotApplicable,
    MetricResult,
    OutputJudgement,
    infer_kind,
    judge,
    normalize_kind,
    wilson_interval,
)
from edgeai.onnxfile import load_proto, read_metadata

DECLARED, FILE = "declared", "file metadata (output_kinds)"
# What a rate metric counts, for the sample-count warning.
_UNITS = {"top1_agreement": "rows", "decision_agreement": "values", "nn_agreement": "samples",
          "verification_agreement": "pairs", "token_agreement": "tokens"}


@functools.lru_cache(maxsize=64)
def _file_metadata(path: str, mtime: float) -> dict[str, Any]:
    return read_metadata(load_proto(path))


def model_metadata(model: Any) -> dict[str, Any]:
    """``task`` and ``output_kinds`` a loaded side says about itself: its ``.onnx`` file's edgeai
    metadata, or a PyTorch source's (``real:NAME`` sources declare their kinds); ``{}`` if none."""
    src = getattr(model, "source", None)
    if src is not None and str(src).endswith(".onnx") and Path(src).is_file():
        meta = _file_metadata(str(src), Path(src).stat().st_mtime)
        return {"task": meta.get("task"), "output_kinds": dict(meta.get("output_kinds") or {})}
    source = getattr(getattr(model, "runtime", None), "source", None)
    if source is not None and hasattr(source, "task"):
        return {"task": source.task, "output_kinds": dict((getattr(source, "extra", None) or {}).get("output_kinds")
                                                          or {})}
    return {}


def resolve_kinds(names: Sequence[str], other_names: Sequence[str], declared: Mapping[str, str] | None,
                  metadata: Sequence[Mapping[str, Any]]) -> list[tuple[str | None, str]]:
    """``(kind, where it came from)`` per output (None: infer it); ``other_names`` are the other
    side's names of the same outputs, in order (PyTorch and ONNX may name them differently).

    Raises:
        InputMismatchError: a declared kind names no output.
    """
    declared = dict(declared or {})
    known = set(names) | set(other_names)
    unknown = sorted(set(declared) - known)
    if unknown:
        raise InputMismatchError(f"output kind declared for {unknown}, but the model has no such output; its "
                                 f"outputs are {list(names)} (write --output-kind NAME=KIND with one of them)")
    out: list[tuple[str | None, str]] = []
    for i, name in enumerate(names):
        keys = [name] + ([other_names[i]] if i < len(other_names) and other_names[i] != name else [])
        found: tuple[str | None, str] = (None, "")
        for key in keys:
            if key in declared:
                found = (normalize_kind(declared[key]), DECLARED)
                break
        if found[0] is None:
            for meta in metadata:
                kinds = meta.get("output_kinds") or {}
                key = next((k for k in keys if k in kinds), None)
                if key is not None:
                    try:
                        found = (normalize_kind(str(kinds[key])), FILE)
                    except MetricNotApplicable:
                        continue  # a kind this version does not know: infer one instead
                    break
        out.append(found)
    return out


def judge_output(name: str, refs: Sequence[np.ndarray], cands: Sequence[np.ndarray], kind: str | None, source: str,
                 task: str | None, thresholds: Mapping[str, float] | None) -> OutputJudgement:
    """The task metrics of one output. A declared kind whose metric cannot fail on this output
    raises :class:`MetricNotApplicable`; a kind from the file falls back to an inferred one, with a note."""
    if kind is None:
        return judge(name, list(refs), list(cands), None, task=task, thresholds=thresholds)
    try:
        return replace(judge(name, list(refs), list(cands), kind, thresholds=thresholds), kind_source=source)
    except MetricNotApplicable as e:
        if source == DECLARED:
            raise
        j = judge(name, list(refs), list(cands), None, task=task, thresholds=thresholds)
        return replace(j, notes=(*j.notes, f"the file's kind {kind} does not apply here ({e})"))


def judge_graph_output(op: Any, refs: Sequence[np.ndarray], cands: Sequence[np.ndarray], kind: str | None,
                       source: str, task: str | None, thresholds: Mapping[str, float]) -> Any:
    """Add the task metrics of the output's kind to an :class:`~edgeai.parity.OutputParity` of
    graph metrics, and keep only the graph criteria that can fail on it: no cosine of one value
    per sample, top-1 only for classification."""
    if any(f.startswith("shape ") for f in op.failures):
        return op  # nothing to judge beyond the mismatch
    j = judge_output(op.name, refs, cands, kind, source, task, thresholds)
    notes = list(j.notes)
    failures = []
    for f in op.failures:
        if f.startswith("top-1 agreement"):
            continue  # top-1 is the classification task metric, judged below with its interval
        if f.startswith("cosine") and values_per_sample(refs) < 2:
            notes.append("graph cosine left out of the verdict: one value per sample, where cosine is always 1")
            continue
        failures.append(f)
    failures += [f"{j.kind} {r.describe()}" for r in j.results if not r.passed]
    top1, top5 = op.top1, op.top5
    if j.kind != "classification":
        top1 = top5 = None  # the argmax of a regression, a probability or a hidden state is no class
    elif top1 is None:
        first = j.results[0]
        top1, top5 = first.value, (first.details or {}).get("topk_agreement")
    return replace(op, top1=top1, top5=top5, passed=not failures, failures=tuple(failures), kind=j.kind,
                   kind_source=j.kind_source, judgement=j, notes=tuple(notes))


def data_record(data: Any, samples: int) -> dict[str, Any] | None:
    """What a report says about its data: ``Feeds.to_dict()`` (source, kind, count, note)."""
    if data is None:
        return None
    if isinstance(data, Feeds):
        return data.to_dict()
    if isinstance(data, Mapping):
        return dict(data)
    return {"source": str(data), "kind": None, "count": samples, "note": None}


def output_kinds_for(model: Any, declared: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each output's kind as the check would judge it, before running anything (from the
    declaration, the file's metadata, or the output specs and the export's task)."""
    meta = model_metadata(model)
    names = [o.name for o in model.outputs]
    resolved = resolve_kinds(names, [], declared, [meta])
    return {o.name: kind if kind is not None else infer_kind(o.name, o.shape, o.dtype, meta.get("task"))[0]
            for o, (kind, _) in zip(model.outputs, resolved, strict=True)}


def values_per_sample(arrays: Sequence[np.ndarray]) -> int:
    """Values per sample along axis 0 (a 1-D output is a batch of scalars: 1)."""
    first = np.asarray(arrays[0]) if len(arrays) else np.zeros(0)
    return int(np.prod(first.shape[1:])) if first.ndim > 1 else 1


def sample_warnings(judgements: Sequence[OutputJudgement]) -> list[str]:
    """One line per rate metric whose count is too small to show its threshold at its confidence,
    even if every unit agreed (e.g. 99% top-1 on 16 rows: the Wilson lower bound is 0.81)."""
    lines = []
    for j in judgements:
        for r in j.results:
            need = (r.details or {}).get("samples_needed")
            if need is not None and r.samples < need:
                lines.append(_too_few(j.name, r, need))
    return lines


def _too_few(name: str, r: MetricResult, need: int) -> str:
    unit = _UNITS.get(r.metric, "samples")
    conf = r.confidence or 0.95
    low = wilson_interval(r.samples, r.samples, conf)[0]
    return (f"{name}: {r.metric} >= {r.threshold:g} rests on {r.samples} {unit}, too few to show it: even with "
            f"all {r.samples} agreeing the {conf:.0%} lower bound is {low:.3f}; {need} {unit} are needed "
            "(pass more samples with --data)")
