"""Parity: how far a candidate's outputs are from a reference's, against a tolerance.

Two layers of numbers per output, over all samples:

- graph metrics: max abs, max rel, mean abs error, cosine similarity (the minimum over samples),
  ``allclose`` with atol/rtol, top-1 / top-5 agreement (classification outputs only);
- task metrics (:mod:`edgeai.metrics`): each output has a kind (declared in
  ``Tolerance(kinds=...)``, written in the file's ``output_kinds`` metadata, or inferred from its
  name, shape and the export's task) and is judged by that kind's metric: top-1 for class scores,
  absolute difference and decision agreement for probabilities, error relative to scale for
  regressions, cosine and neighbours for embeddings, cosine and relative error for hidden states.

The verdict rests on metrics that can fail: the task metrics, and the graph limits the tolerance
sets (FP32's allclose; an explicit ``min_cosine``) where they can fail (no cosine of one value per
sample; top-1 only on classification outputs). Defaults by the candidate's precision in effect:
FP32 must be allclose (atol 1e-4, rtol 1e-3) with cosine >= 0.9999; INT8 and FP16/BF16 are judged
by the task metrics (:data:`edgeai.metrics.DEFAULT_THRESHOLDS`; FP16 hidden/embedding cosine >= 0.999).
Every report names its data and sample count (:class:`edgeai.feeds.Feeds`) and warns when the
count is too small to show a rate threshold (99% top-1 needs 381 rows).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeai.device_strings import precision_rank
from edgeai.errors import InputMismatchError, ModelLoadError, ParityError
from edgeai.feeds import DEFAULT_SAMPLES, Feeds, resolve_feeds  # noqa: F401 (DEFAULT_SAMPLES: edgeai.fleet uses it)
from edgeai.layerwise import Localization, localize, onnx_source
from edgeai.metrics import OutputJudgement, parse_kinds
from edgeai.onnxfile import graph_precision, load_proto
from edgeai.runtimes import Model, load
from edgeai.sources import resolve
from edgeai.tolerance import Tolerance
from edgeai.verdicts import (
    data_record,
    judge_graph_output,
    model_metadata,
    output_kinds_for,
    resolve_kinds,
    sample_warnings,
)

TOP_K = 5
_CLASSIFIER_HINTS = ("logit", "score", "prob", "class", "label", "pred")
_FEATURE_HINTS = ("embed", "hidden", "pool", "feature", "state", "encod", "present", "past")


@dataclass(frozen=True)
class OutputParity:
    """The metrics of one output over all samples, and whether they meet the tolerance.

    The first fields are graph metrics; ``judgement`` holds the task metrics of the output's
    ``kind``. ``passed`` and ``failures`` cover both, leaving out what cannot fail on this output.
    """

    name: str
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float  # max of |cand - ref| / max(|ref|, 1e-6): large where the reference is near zero
    mean_abs: float
    cosine: float  # minimum over sample rows of the cosine similarity
    top1: float | None  # argmax agreement over the last axis (None: not a classification output)
    top5: float | None  # fraction of rows whose reference argmax is in the candidate's top 5
    allclose: bool | None  # None when the tolerance has no atol/rtol
    nonfinite: int  # NaN/Inf values in the candidate that the reference did not have
    passed: bool
    failures: tuple[str, ...] = ()
    kind: str | None = None  # what the output is (edgeai.metrics.KINDS); None before judging
    kind_source: str | None = None  # "declared", "file metadata (output_kinds)", "inferred: <why>"
    judgement: OutputJudgement | None = None  # the task metrics of that kind
    notes: tuple[str, ...] = ()  # criteria left out because they cannot fail here, fallbacks

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["shape"], d["failures"], d["notes"] = list(self.shape), list(self.failures), list(self.notes)
        d["judgement"] = self.judgement.to_dict() if self.judgement is not None else None
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}

    def task_summary(self) -> str:
        """The task metrics in a few words: ``"probability: max_abs_diff 0.21 > 0.1, decision_agreement 100%"``."""
        if self.judgement is None:
            return ""
        parts = []
        for r in self.judgement.results:
            value = f"{r.value:.1%}" if r.interval is not None else f"{r.value:.4g}"
            cmp = ("<" if r.metric.endswith("agreement") or r.metric.startswith("min_") else ">") if not r.passed \
                else ""
            parts.append(f"{r.metric} {value}" + (f" {cmp} {r.threshold:g}" if cmp else ""))
        return f"{self.kind}: {', '.join(parts)}"


@dataclass(frozen=True)
class ParityReport:
    """The outcome of comparing a candidate with a reference over ``samples`` inputs.

    ``data`` names what the verdict rests on (:meth:`edgeai.feeds.Feeds.to_dict`: source, kind
    ``data``/``calibration``/``random``, count, note); ``warnings`` says where the sample count is
    too small to show a threshold.
    """

    outputs: tuple[OutputParity, ...]
    samples: int
    tolerance: Tolerance
    reference: dict[str, Any] = field(default_factory=dict)  # RuntimeInfo.to_dict() of each side, + "model"
    candidate: dict[str, Any] = field(default_factory=dict)
    layerwise: Localization | None = None  # when asked for
    data: Mapping[str, Any] | None = None  # source, kind, count, note of the feeds; see edgeai.feeds
    warnings: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    @property
    def worst(self) -> OutputParity:
        return min(self.outputs, key=lambda o: (o.passed, o.cosine))

    def data_description(self) -> str:
        """``"16 samples of eval.npz"``: the data and sample count the verdict rests on."""
        source = (self.data or {}).get("source") or "inputs not described"
        return f"{self.samples} {'sample' if self.samples == 1 else 'samples'} of {source}"

    def verdict(self) -> str:
        """One line: PASS/FAIL, what ran, the data it rests on, and the worst output's numbers."""
        w = self.worst
        c = self.candidate
        model = f"{Path(c['model']).name} " if c.get("model") else ""
        who = f"{model}on {c.get('device', '?')} ({c.get('engine', '?')}, {c.get('precision', '?')})"
        ref = self.reference
        ref_name = Path(ref["model"]).name if ref.get("model") else "reference"
        head = "PASS" if self.passed else "FAIL"
        detail = f"max_abs {w.max_abs:.3g}, cosine {w.cosine:.6f}"
        if w.top1 is not None:
            detail += f", top-1 {w.top1:.1%}"
        if w.judgement is not None:
            detail += f"; {w.task_summary()}"
        reason = f" — {'; '.join(w.failures)}" if w.failures else ""
        return (f"{head}: {who} vs {ref_name} ({ref.get('engine', '?')}, {ref.get('precision', '?')}) over "
                f"{self.data_description()}, worst output {w.name!r}: {detail}{reason}")

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "verdict": self.verdict(), "samples": self.samples,
                "tolerance": self.tolerance.to_dict(), "reference": self.reference, "candidate": self.candidate,
                "data": dict(self.data) if self.data is not None else None, "warnings": list(self.warnings),
                "outputs": [o.to_dict() for o in self.outputs],
                "layerwise": self.layerwise.to_dict() if self.layerwise is not None else None}

    def raise_for_failure(self) -> ParityReport:
        """Return self if passed, else raise :class:`ParityError` with the verdict and the table."""
        if not self.passed:
            raise ParityError(self.explain())
        return self

    def explain(self) -> str:
        """The verdict, then one line per output and, when computed, where the candidate first
        diverges: the message of the ParityError that ``raise_for_failure`` raises."""
        lines = [self.verdict()]
        for o in self.outputs:
            top1 = "" if o.top1 is None else f", top-1 {o.top1:.1%}"
            task = f", {o.task_summary()}" if o.judgement is not None else ""
            why = f" ({'; '.join(o.failures)})" if o.failures else ""
            lines.append(f"  {o.name}: {'pass' if o.passed else 'FAIL'}, max abs {o.max_abs:.4g}, "
                         f"cosine min {o.cosine:.6f}{top1}{task}{why}")
        lines += [f"  warning: {w}" for w in self.warnings]
        if self.layerwise is not None:
            first = self.layerwise.first_jump()
            mark = f"FIRST JUMP at {first.node} ({first.op_type}); " if first is not None else ""
            lines.append(f"  layerwise: {mark}{self.layerwise.summary()}")
        return "\n".join(lines)


# --- metrics ---------------------------------------------------------------------------------------

def _cosine_rows(ref: np.ndarray, cand: np.ndarray) -> float:
    """Minimum cosine over samples (rows of the flattened batch); exact zero vectors count as equal."""
    r = ref.reshape(ref.shape[0], -1) if ref.ndim > 1 else ref.reshape(1, -1)
    c = cand.reshape(r.shape)
    # Scale rows by their largest magnitude: squares past 1e154 overflow float64, and the NaN cosine
    # that followed compared as 1.0 (a PASS for [1e200, 1e200] vs [1e200, -1e200], or +Inf vs -Inf).
    scale = np.maximum(np.abs(r).max(axis=1, keepdims=True, initial=0.0),
                       np.abs(c).max(axis=1, keepdims=True, initial=0.0))
    scale[scale == 0] = 1.0
    r, c = r / scale, c / scale
    num = (r * c).sum(axis=1)
    nr, nc = np.linalg.norm(r, axis=1), np.linalg.norm(c, axis=1)
    den = nr * nc
    cos = np.where(den > 0, num / np.where(den > 0, den, 1), np.where(nr == nc, 1.0, 0.0))
    return float(np.clip(cos, -1, 1).min()) if cos.size else 1.0


def is_classifier_like(name: str, arr: np.ndarray) -> bool:
    """Scores over classes on the last axis: a float output named like logits, or a plain [batch, C].

    Embeddings and hidden states (named like them) are excluded: their argmax means nothing.
    """
    low = name.lower()
    if arr.dtype.kind != "f" or arr.ndim < 2 or not 2 <= arr.shape[-1] <= 1_000_000:
        return False
    if any(h in low for h in _CLASSIFIER_HINTS):
        return True
    return arr.ndim == 2 and arr.shape[-1] <= 1000 and not any(h in low for h in _FEATURE_HINTS)


def output_metrics(name: str, refs: Sequence[np.ndarray], cands: Sequence[np.ndarray],
                   tol: Tolerance) -> OutputParity:
    """Metrics of one output over all samples (arrays may differ in shape between samples)."""
    max_abs = max_rel = sum_abs = 0.0
    count = nonfinite = 0
    cos = 1.0
    top1_hits = topk_hits = rows = 0
    close = True
    classifier = all(is_classifier_like(name, np.asarray(r)) for r in refs)
    atol, rtol = tol.atol or 0.0, tol.rtol or 0.0
    for ref, cand in zip(refs, cands, strict=True):
        if ref.shape != cand.shape:
            failure = f"shape {list(cand.shape)} != reference {list(ref.shape)}"
            return OutputParity(name, tuple(ref.shape), math.inf, math.inf, math.inf, -1.0, None, None, False, 0,
                                False, (failure,))
        r64, c64 = np.asarray(ref, np.float64), np.asarray(cand, np.float64)
        bad = ~np.isfinite(c64) & np.isfinite(r64)
        nonfinite += int(bad.sum())
        both_nan = np.isnan(c64) & np.isnan(r64)
        diff = np.where(both_nan, 0.0, np.abs(r64 - c64))
        diff = np.where(np.isnan(diff), np.inf, diff)  # inf - inf, or NaN on one side only
        if diff.size:
            max_abs = max(max_abs, float(diff.max()))
            max_rel = max(max_rel, float((diff / np.maximum(np.abs(np.nan_to_num(r64)), 1e-6)).max()))
            sum_abs += float(diff.sum())
            count += diff.size
        cos = min(cos, _cosine_rows(np.nan_to_num(r64), np.nan_to_num(c64)))
        if tol.checks_allclose:
            close = close and bool(np.allclose(c64, r64, atol=atol, rtol=rtol, equal_nan=True))
        if classifier and r64.size:
            r2, c2 = r64.reshape(-1, r64.shape[-1]), np.nan_to_num(c64.reshape(-1, c64.shape[-1]), nan=-np.inf)
            ra = r2.argmax(-1)
            top1_hits += int((ra == c2.argmax(-1)).sum())
            k = min(TOP_K, r2.shape[-1])
            topk = np.argpartition(-c2, k - 1, axis=-1)[:, :k]
            topk_hits += int((topk == ra[:, None]).any(-1).sum())
            rows += r2.shape[0]
    top1 = top1_hits / rows if rows else None
    topk_rate = topk_hits / rows if rows else None
    mean_abs = sum_abs / count if count else 0.0
    failures = []
    if nonfinite:
        failures.append(f"{nonfinite} NaN/Inf values the reference does not have")
    if tol.checks_allclose and not close:
        failures.append(f"not allclose(atol={atol:g}, rtol={rtol:g}): max_abs {max_abs:.3g}")
    if tol.min_cosine is not None and cos < tol.min_cosine:
        failures.append(f"cosine {cos:.6f} < {tol.min_cosine}")
    if tol.min_top1 is not None and top1 is not None and top1 < tol.min_top1:
        failures.append(f"top-1 agreement {top1:.2%} < {tol.min_top1:.0%}")
    return OutputParity(name, tuple(refs[0].shape), max_abs, max_rel, mean_abs, cos, top1, topk_rate,
                        close if tol.checks_allclose else None, nonfinite, not failures, tuple(failures))


# --- inputs and models -----------------------------------------------------------------------------

def _is_onnx(obj: Any) -> bool:
    if not isinstance(obj, (str, os.PathLike)):
        return False
    p = Path(obj)
    return p.suffix == ".onnx" or (p.is_dir() and (p / "manifest.json").exists())


def as_model(obj: Any, device: str | None = None, specs: Sequence[Any] | None = None) -> Any:
    """A :class:`Model` from a Model, an ``.onnx`` path / bundle (on ``device``, default cpu), or a
    model source run by the PyTorch reference (``zoo:cnn``, ``pkg.mod:factory``, an ``nn.Module``).

    ``specs`` name the inputs of a source that cannot say itself (a bare ``nn.Module``): the other
    side's input specs when comparing with an ONNX file.
    """
    if isinstance(obj, Model):
        return obj
    if _is_onnx(obj):
        return load(obj, device or "cpu")

    try:
        source = resolve(obj)
    except ModelLoadError:
        if not specs:
            raise
        source = resolve(obj, inputs=list(specs))
    return load(source, "torch")


def _describe(model: Any) -> dict[str, Any]:
    """RuntimeInfo of a side, plus its file and, where the engine may run it at another precision
    than the file's (OpenVINO upcasts FP16 weights to FP32 on CPU), the file's precision."""
    label = model.source or getattr(getattr(model.runtime, "source", None), "description", None)
    side = {"model": label, **model.describe().to_dict()}
    if side["engine"] == "openvino" and model.source and str(model.source).endswith(".onnx"):
        side["file_precision"] = graph_precision(load_proto(model.source))
    return side


def judged_precision(side: Mapping[str, Any]) -> str:
    """The precision a default tolerance is chosen for: the lower of the precision in effect and
    the file's (an FP16 file run at FP32 still carries FP16 rounding in its weights)."""
    found = [str(p).split("+")[0] for p in (side.get("precision"), side.get("file_precision")) if p]
    return min(found, key=precision_rank) if found else "f32"


def _feed_for(model: Any, feed: Mapping[str, Any]) -> dict[str, Any]:
    names = [s.name for s in model.inputs]
    missing = [n for n in names if n not in feed]
    if missing:
        raise InputMismatchError(f"the inputs lack {missing} for {model!r}; they have {list(feed)}")
    return {n: feed[n] for n in names}


def compare(reference: Any, candidate: Any, inputs: Any = None, *,
            tolerance: Tolerance | Mapping[str, float | None] | None = None, samples: int | None = None,
            device: str | None = None, seed: int = 0, layerwise: bool = False) -> ParityReport:
    """Compare a candidate with a reference over many inputs.

    Args:
        reference: a :class:`Model`, an ``.onnx`` path (run on onnxruntime CPU, FP32), or a model
            source (``zoo:cnn``, ``pkg.mod:factory``, an ``nn.Module``) run by the PyTorch reference.
        candidate: the same kinds; an ``.onnx`` path loads on ``device`` (default cpu).
        inputs: feeds (see :func:`edgeai.feeds.resolve_feeds`); default 8 random feeds from the input specs.
        tolerance: a :class:`Tolerance`, or a dict of limits overriding the default for the
            candidate's precision in effect (``{"min_cosine": 0.99}``); default: that default.
        samples: how many random feeds (or the cap on a data set).
        layerwise: also localize where the candidate diverges (both sides must be ONNX files of the
            same graph; see :mod:`edgeai.layerwise`).

    Returns:
        A :class:`ParityReport`; call ``.raise_for_failure()`` to turn a failure into ParityError.

    Example:
        >>> edgeai.compare("zoo:cnn", "cnn.int8.onnx", "digits.npz", device="openvino:CPU").verdict()
    """
    if layerwise:
        onnx_source(reference), onnx_source(candidate)  # fail before running anything
    if _is_onnx(reference) and not _is_onnx(candidate):
        ref_model = as_model(reference, "cpu")
        cand_model = as_model(candidate, device, ref_model.inputs)
    else:
        cand_model = as_model(candidate, device)
        ref_model = as_model(reference, "cpu", cand_model.inputs)
    feeds = resolve_feeds(inputs, cand_model.inputs, samples=samples, seed=seed)
    ref_outs, cand_outs = collect_outputs(ref_model, feeds), collect_outputs(cand_model, feeds)
    report = build_report(ref_model, ref_outs, cand_model, cand_outs, len(feeds), tolerance, data=feeds)
    if layerwise:
        report = replace(report, layerwise=localize(ref_model, cand_model, feeds))
    return report


def collect_outputs(model: Any, feeds: Sequence[Mapping[str, Any]]) -> list[list[np.ndarray]]:
    """Run every feed; return, per output in order, the list of arrays over feeds."""
    per_output: list[list[np.ndarray]] = [[] for _ in model.outputs]
    for feed in feeds:
        for arrays, value in zip(per_output, model.run(_feed_for(model, feed)).values(), strict=True):
            arrays.append(np.asarray(value))
    return per_output


def build_report(ref_model: Any, ref_outs: list[list[np.ndarray]], cand_model: Any,
                 cand_outs: list[list[np.ndarray]], samples: int,
                 tolerance: Tolerance | Mapping[str, Any] | None, *,
                 data: Feeds | Mapping[str, Any] | str | None = None) -> ParityReport:
    """Judge collected outputs (matched by position: names differ between PyTorch and ONNX).

    Each output gets its graph metrics and the task metrics of its kind; ``data`` (the
    :class:`~edgeai.feeds.Feeds` the outputs came from, or their description) goes into the report.
    """
    if len(ref_outs) != len(cand_outs):
        raise InputMismatchError(
            f"the reference has {len(ref_outs)} outputs ({[o.name for o in ref_model.outputs]}), the candidate "
            f"{len(cand_outs)} ({[o.name for o in cand_model.outputs]}); they must have the same outputs in order")
    cand_side = _describe(cand_model)
    if isinstance(tolerance, Tolerance):
        tol = tolerance
    else:
        tol = Tolerance.for_precision(judged_precision(cand_side)).with_overrides(**dict(tolerance or {}))
    names = [o.name for o in cand_model.outputs]
    metas = [model_metadata(cand_model), model_metadata(ref_model)]
    task = next((m.get("task") for m in metas if m.get("task")), None)
    kinds = resolve_kinds(names, [o.name for o in ref_model.outputs], tol.kinds, metas)
    outputs = tuple(judge_graph_output(output_metrics(n, r, c, tol), r, c, kind, source, task,
                                       tol.kind_thresholds())
                    for n, r, c, (kind, source) in zip(names, ref_outs, cand_outs, kinds, strict=True))
    warnings = sample_warnings([o.judgement for o in outputs if o.judgement is not None])
    return ParityReport(outputs, samples, tol, _describe(ref_model), cand_side, data=data_record(data, samples),
                        warnings=tuple(warnings))


def check_many(candidates: str | Sequence[str], reference: Any, *, devices: Sequence[str] = ("cpu",),
               samples: int | None = None, data: Any = None, atol: float | None = None, rtol: float | None = None,
               min_cosine: float | None = None, min_top1: float | None = None, layerwise: bool = False,
               kinds: Mapping[str, str] | Sequence[str] | None = None,
               thresholds: Mapping[str, float] | None = None) -> list[ParityReport]:
    """``edgeai check``: each candidate file on each device against one reference, run once at FP32.

    The reference's outputs are computed once per feed and reused for every candidate. Tolerance
    options override the default for each candidate's precision in effect; ``kinds`` declares
    output kinds (``["logits=classification"]`` or a dict), ``thresholds`` the task metrics' limits.

    Raises:
        InputMismatchError: no ``data`` for a model with a classification output: random inputs
            say nothing about a classifier's answers, so they are used only when asked for
            (``data="random:N"``).
    """
    paths = [candidates] if isinstance(candidates, (str, os.PathLike)) else list(candidates)
    if not paths or not devices:
        raise InputMismatchError("give at least one candidate model and one device")
    if samples is not None and samples < 1:
        raise InputMismatchError(f"--samples must be at least 1; got {samples}")
    if layerwise and not _is_onnx(reference):
        raise InputMismatchError(f"--layerwise compares intermediate tensors of two ONNX graphs; the reference "
                                 f"{reference!r} is not an .onnx file. Pass the FP32 export as --reference")
    overrides: dict[str, Any] = {k: v for k, v in {"atol": atol, "rtol": rtol, "min_cosine": min_cosine,
                                                   "min_top1": min_top1, "kinds": parse_kinds(kinds) or None,
                                                   "thresholds": thresholds}.items() if v is not None}
    Tolerance.for_precision("f32").with_overrides(**overrides)  # bad limits are bad usage, found before any work
    # Random feeds follow the first candidate's input specs: its fixed dims are the ones that matter.
    first = load(paths[0], devices[0])
    if data is None:
        classifiers = [n for n, k in output_kinds_for(first, overrides.get("kinds")).items() if k == "classification"]
        if classifiers:
            raise InputMismatchError(
                f"no --data given, and {Path(paths[0]).name} has classification output(s) {classifiers}: random "
                "inputs say nothing about whether its answers changed. Pass held-out inputs with --data FILE "
                "(a .npz, a folder of .npy/.npz, pkg.mod:fn), or ask for random ones with --data random:N")
    feeds = resolve_feeds(data, first.inputs, samples=samples)
    ref = as_model(reference, "cpu", first.inputs)
    ref_outs = collect_outputs(ref, feeds)
    reports = []
    for path in paths:
        for device in devices:
            cand = first if (path, device) == (paths[0], devices[0]) else load(path, device)
            report = build_report(ref, ref_outs, cand, collect_outputs(cand, feeds), len(feeds), overrides, data=feeds)
            if layerwise:
                report = replace(report, layerwise=localize(ref, cand, feeds))
            reports.append(report)
    return reports
