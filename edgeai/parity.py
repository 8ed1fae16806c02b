"""Parity: how far a candidate's outputs are from a reference's, against a tolerance.

Per output, over all samples: max abs, max rel, mean abs error, cosine similarity (the minimum
over samples), top-1 / top-5 agreement for classifier-like outputs, ``allclose`` with atol/rtol.
Default tolerances by the candidate's precision in effect: FP32 must be allclose (atol 1e-4,
rtol 1e-3) with cosine >= 0.9999; FP16/BF16 and INT8 are judged by cosine (0.999 / 0.995) and
top-1 agreement (99%), as users of those precisions judge them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeai.device_strings import precision_rank
from edgeai.errors import InputMismatchError, ModelLoadError, ParityError
from edgeai.feeds import resolve_feeds
from edgeai.layerwise import Localization, localize, onnx_source
from edgeai.onnxfile import graph_precision, load_proto
from edgeai.runtimes import Model, load
from edgeai.sources import resolve

TOP_K = 5
_CLASSIFIER_HINTS = ("logit", "score", "prob", "class", "label", "pred")
_FEATURE_HINTS = ("embed", "hidden", "pool", "feature", "state", "encod", "present", "past")


@dataclass(frozen=True)
class Tolerance:
    """Pass/fail limits; ``None`` disables a criterion.

    ``allclose`` (|cand - ref| <= atol + rtol * |ref| everywhere) applies when ``atol`` or ``rtol``
    is set (the other then counts as 0). ``min_top1`` applies to classifier-like outputs only.
    """

    atol: float | None = 1e-4
    rtol: float | None = 1e-3
    min_cosine: float | None = 0.9999
    min_top1: float | None = None  # fraction of rows whose argmax agrees, for classifier-like outputs

    def __post_init__(self) -> None:
        # A limit no result can meet (cosine 2, top-1 150%) would turn bad usage into a failed check.
        for name, low, high in (("atol", 0, math.inf), ("rtol", 0, math.inf), ("min_cosine", -1, 1),
                                ("min_top1", 0, 1)):
            value = getattr(self, name)
            if value is not None and not low <= value <= high:
                raise InputMismatchError(f"tolerance {name}={value} is out of range; it must be within "
                                         f"[{low}, {high}]" + (" (a fraction: 0.99 for 99%)" if name == "min_top1" else ""))

    @classmethod
    def for_precision(cls, precision: str) -> Tolerance:
        """The default for a precision in effect: ``f32``, ``f16``, ``bf16``, ``mixed``, ``int8[+f32]``."""
        p = precision.lower().split("+")[0]
        if p in ("f32", "fp32"):
            return cls(atol=1e-4, rtol=1e-3, min_cosine=0.9999, min_top1=0.99)
        if p in ("f16", "fp16", "bf16", "mixed"):
            return cls(atol=None, rtol=None, min_cosine=0.999, min_top1=0.99)
        if p in ("int8", "auto"):
            return cls(atol=None, rtol=None, min_cosine=0.995, min_top1=0.99)
        raise InputMismatchError(f"no default tolerance for precision {precision!r}; use f32, f16, bf16 or int8")

    def with_overrides(self, **limits: float | None) -> Tolerance:
        """A copy with the given limits replaced; keys are the field names (atol, rtol, min_cosine, min_top1)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(limits) - known)
        if unknown:
            raise InputMismatchError(f"unknown tolerance option(s) {unknown}; use {sorted(known)}")
        for k, v in limits.items():
            if v is not None and (not isinstance(v, (int, float)) or v < 0 or
                                  (k in ("min_cosine", "min_top1") and v > 1)):
                raise InputMismatchError(f"tolerance {k}={v!r} is out of range; atol/rtol >= 0, "
                                         "min_cosine and min_top1 in [0, 1]")
        return replace(self, **limits)

    @property
    def checks_allclose(self) -> bool:
        return self.atol is not None or self.rtol is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OutputParity:
    """The metrics of one output over all samples, and whether they meet the tolerance."""

    name: str
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float  # max of |cand - ref| / max(|ref|, 1e-6): large where the reference is near zero
    mean_abs: float
    cosine: float  # minimum over sample rows of the cosine similarity
    top1: float | None  # argmax agreement over the last axis (None: not classifier-like)
    top5: float | None  # fraction of rows whose reference argmax is in the candidate's top 5
    allclose: bool | None  # None when the tolerance has no atol/rtol
    nonfinite: int  # NaN/Inf values in the candidate that the reference did not have
    passed: bool
    failures: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"], d["failures"] = list(self.shape), list(self.failures)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


@dataclass(frozen=True)
class ParityReport:
    """The outcome of comparing a candidate with a reference over ``samples`` inputs."""

    outputs: tuple[OutputParity, ...]
    samples: int
    tolerance: Tolerance
    reference: dict[str, Any] = field(default_factory=dict)  # RuntimeInfo.to_dict() of each side, + "model"
    candidate: dict[str, Any] = field(default_factory=dict)
    layerwise: Localization | None = None  # when asked for
    data: str | None = None  # what the feeds were (a path, "random inputs ..."); see edgeai.feeds

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    @property
    def worst(self) -> OutputParity:
        return min(self.outputs, key=lambda o: (o.passed, o.cosine))

    def verdict(self) -> str:
        """One line: PASS/FAIL, what ran, and the worst output's numbers."""
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
        reason = f" — {'; '.join(w.failures)}" if w.failures else ""
        return (f"{head}: {who} vs {ref_name} ({ref.get('engine', '?')}, {ref.get('precision', '?')}) over "
                f"{self.samples} samples, worst output {w.name!r}: {detail}{reason}")

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "verdict": self.verdict(), "samples": self.samples,
                "tolerance": self.tolerance.to_dict(), "reference": self.reference, "candidate": self.candidate,
                "data": self.data, "outputs": [o.to_dict() for o in self.outputs],
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
            why = f" ({'; '.join(o.failures)})" if o.failures else ""
            lines.append(f"  {o.name}: {'pass' if o.passed else 'FAIL'}, max abs {o.max_abs:.4g}, "
                         f"cosine min {o.cosine:.6f}{top1}{why}")
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
    report = build_report(ref_model, ref_outs, cand_model, cand_outs, len(feeds), tolerance, data=feeds.source)
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
                 tolerance: Tolerance | Mapping[str, float | None] | None, *, data: str | None = None) -> ParityReport:
    """Judge collected outputs (matched by position: names differ between PyTorch and ONNX)."""
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
    outputs = tuple(output_metrics(n, r, c, tol) for n, r, c in zip(names, ref_outs, cand_outs, strict=True))
    return ParityReport(outputs, samples, tol, _describe(ref_model), cand_side, data=data)


def check_many(candidates: str | Sequence[str], reference: Any, *, devices: Sequence[str] = ("cpu",),
               samples: int | None = None, data: Any = None, atol: float | None = None, rtol: float | None = None,
               min_cosine: float | None = None, min_top1: float | None = None,
               layerwise: bool = False) -> list[ParityReport]:
    """``edgeai check``: each candidate file on each device against one reference, run once at FP32.

    The reference's outputs are computed once per feed and reused for every candidate. Tolerance
    options override the default for each candidate's precision in effect.
    """
    paths = [candidates] if isinstance(candidates, (str, os.PathLike)) else list(candidates)
    if not paths or not devices:
        raise InputMismatchError("give at least one candidate model and one device")
    if samples is not None and samples < 1:
        raise InputMismatchError(f"--samples must be at least 1; got {samples}")
    if layerwise and not _is_onnx(reference):
        raise InputMismatchError(f"--layerwise compares intermediate tensors of two ONNX graphs; the reference "
                                 f"{reference!r} is not an .onnx file. Pass the FP32 export as --reference")
    overrides = {k: v for k, v in {"atol": atol, "rtol": rtol, "min_cosine": min_cosine,
                                   "min_top1": min_top1}.items() if v is not None}
    # Random feeds follow the first candidate's input specs: its fixed dims are the ones that matter.
    first = load(paths[0], devices[0])
    feeds = resolve_feeds(data, first.inputs, samples=samples)
    ref = as_model(reference, "cpu", first.inputs)
    ref_outs = collect_outputs(ref, feeds)
    reports = []
    for path in paths:
        for device in devices:
            cand = first if (path, device) == (paths[0], devices[0]) else load(path, device)
            report = build_report(ref, ref_outs, cand, collect_outputs(cand, feeds), len(feeds), overrides,
                                  data=feeds.source)
            if layerwise:
                report = replace(report, layerwise=localize(ref, cand, feeds))
            reports.append(report)
    return reports
