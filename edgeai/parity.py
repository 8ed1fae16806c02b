"""Parity: how far a candidate's outputs are from a reference's, against a tolerance.

Per output: max abs, max rel, mean abs error, cosine similarity, top-1 / top-5 agreement for
classifier-like outputs, ``allclose`` with atol/rtol. Defaults by precision: FP32 files must match
to 1e-4; FP16 and INT8 are judged by cosine and top-1 agreement, as users of those precisions do.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from edgeai.errors import InputMismatchError, ParityError


@dataclass(frozen=True)
class Tolerance:
    """Pass/fail limits. ``None`` disables a criterion. ``allclose`` uses atol + rtol * |ref|."""

    atol: float | None = 1e-4
    rtol: float | None = 1e-3
    min_cosine: float | None = 0.9999
    min_top1: float | None = None  # fraction of samples whose argmax agrees, for classifier outputs

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
        p = precision.split("+")[0] if precision.startswith("int8") else precision
        if p in ("f32", "fp32"):
            return cls(atol=1e-4, rtol=1e-3, min_cosine=0.9999, min_top1=0.99)
        if p in ("f16", "fp16", "bf16", "mixed"):
            return cls(atol=None, rtol=None, min_cosine=0.999, min_top1=0.99)
        if p in ("int8", "auto"):
            return cls(atol=None, rtol=None, min_cosine=0.995, min_top1=0.99)
        raise InputMismatchError(f"no default tolerance for precision {precision!r}; use f32, f16, bf16 or int8")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class OutputParity:
    name: str
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float
    mean_abs: float
    cosine: float  # minimum over samples of the per-sample cosine similarity
    top1: float | None  # agreement of argmax over the last axis (None: not classifier-like)
    top5: float | None
    allclose: bool
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
    reference: dict[str, Any] = field(default_factory=dict)  # RuntimeInfo.to_dict() of each side
    candidate: dict[str, Any] = field(default_factory=dict)
    layerwise: tuple[dict[str, Any], ...] | None = None

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    @property
    def worst(self) -> OutputParity:
        return min(self.outputs, key=lambda o: (o.passed, o.cosine))

    def verdict(self) -> str:
        w = self.worst
        who = f"{self.candidate.get('device', 'candidate')} ({self.candidate.get('precision', '?')})"
        head = "PASS" if self.passed else "FAIL"
        detail = f"max_abs {w.max_abs:.3g}, cosine {w.cosine:.6f}"
        if w.top1 is not None:
            detail += f", top-1 {w.top1:.1%}"
        reason = f" — {'; '.join(w.failures)}" if w.failures else ""
        return f"{head}: {who} vs reference over {self.samples} samples, worst output {w.name!r}: {detail}{reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "verdict": self.verdict(), "samples": self.samples,
                "tolerance": self.tolerance.to_dict(), "reference": self.reference, "candidate": self.candidate,
                "outputs": [o.to_dict() for o in self.outputs],
                "layerwise": list(self.layerwise) if self.layerwise is not None else None}

    def raise_for_failure(self) -> ParityReport:
        if not self.passed:
            from edgeai.report import parity_table_text

            raise ParityError(self.verdict() + "\n" + parity_table_text(self))
        return self


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
    den = np.linalg.norm(r, axis=1) * np.linalg.norm(c, axis=1)
    both_zero = (den == 0) & (np.abs(r).sum(axis=1) == np.abs(c).sum(axis=1))
    cos = np.where(den > 0, num / np.where(den > 0, den, 1), np.where(both_zero, 1.0, 0.0))
    return float(np.clip(cos, -1, 1).min()) if cos.size else 1.0


def _is_classifier(name: str, arr: np.ndarray) -> bool:
    return arr.ndim >= 2 and 2 <= arr.shape[-1] <= 100_000 and arr.dtype.kind == "f" and \
        ("logit" in name.lower() or "score" in name.lower() or "prob" in name.lower() or arr.ndim == 2)


def output_metrics(name: str, refs: Sequence[np.ndarray], cands: Sequence[np.ndarray],
                   tol: Tolerance) -> OutputParity:
    """Metrics of one output over all samples (arrays may differ in shape between samples)."""
    max_abs = max_rel = sum_abs = 0.0
    count = nonfinite = 0
    cos = 1.0
    top1_hits = top5_hits = rows = 0
    close = True
    classifier = all(_is_classifier(name, r) for r in refs)
    for ref, cand in zip(refs, cands, strict=True):
        if ref.shape != cand.shape:
            failure = f"shape {list(cand.shape)} != reference {list(ref.shape)}"
            return OutputParity(name, tuple(ref.shape), math.inf, math.inf, math.inf, -1.0, None, None, False, 0,
                                False, (failure,))
        r64, c64 = ref.astype(np.float64), cand.astype(np.float64)
        bad = ~np.isfinite(c64) & np.isfinite(r64)
        nonfinite += int(bad.sum())
        diff = np.abs(r64 - c64)
        diff = np.where(np.isnan(diff) & ~bad, 0.0, diff)  # NaN in both: agree
        if diff.size:
            max_abs = max(max_abs, float(diff.max()))
            max_rel = max(max_rel, float((diff / np.maximum(np.abs(r64), 1e-6)).max()))
            sum_abs += float(diff.sum())
            count += diff.size
        cos = min(cos, _cosine_rows(np.nan_to_num(r64), np.nan_to_num(c64)))
        if tol.atol is not None and tol.rtol is not None:
            close = close and bool(np.allclose(c64, r64, atol=tol.atol, rtol=tol.rtol, equal_nan=True))
        if classifier:
            r2, c2 = r64.reshape(-1, r64.shape[-1]), c64.reshape(-1, c64.shape[-1])
            ra = r2.argmax(-1)
            top1_hits += int((ra == c2.argmax(-1)).sum())
            k = min(5, r2.shape[-1])
            topk = np.argpartition(-c2, k - 1, axis=-1)[:, :k]
            top5_hits += int((topk == ra[:, None]).any(-1).sum())
            rows += r2.shape[0]
    top1 = top1_hits / rows if rows else None
    top5 = top5_hits / rows if rows else None
    mean_abs = sum_abs / count if count else 0.0
    failures = []
    if nonfinite:
        failures.append(f"{nonfinite} NaN/Inf values the reference does not have")
    if tol.atol is not None and tol.rtol is not None and not close:
        failures.append(f"not allclose(atol={tol.atol:g}, rtol={tol.rtol:g}): max_abs {max_abs:.3g}")
    if tol.min_cosine is not None and cos < tol.min_cosine:
        failures.append(f"cosine {cos:.6f} < {tol.min_cosine}")
    if tol.min_top1 is not None and top1 is not None and top1 < tol.min_top1:
        failures.append(f"top-1 agreement {top1:.2%} < {tol.min_top1:.0%}")
    return OutputParity(name, tuple(refs[0].shape), max_abs, max_rel, mean_abs, cos, top1, top5,
                        close, nonfinite, not failures, tuple(failures))


def normalize_inputs(inputs: Any, model: Any, samples: int = 8, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Feeds for parity: an int (that many random samples), one feed dict, a list of them, or a
    calibration-style source (folder of .npy/.npz, a .npz with a leading sample axis, 'pkg.mod:fn')."""
    from edgeai.specs import make_inputs

    if inputs is None or isinstance(inputs, int):
        n = samples if inputs is None else inputs
        if n < 1:
            raise InputMismatchError(f"need at least one sample; got {n}")
        return [make_inputs(model.inputs, {"batch": 2}, seed=seed + i) for i in range(n)]
    if isinstance(inputs, Mapping):
        return [dict(inputs)]
    if isinstance(inputs, str):
        from edgeai.quantize.calibration import load_samples

        return list(load_samples(inputs, model.inputs))
    out = list(inputs)
    if not out or not all(isinstance(f, Mapping) for f in out):
        raise InputMismatchError("inputs must be a feed dict, a list of feed dicts, a number of random samples, "
                                 "or a path to .npy/.npz data")
    return out


def _as_model(obj: Any, device: str | None) -> Any:
    from edgeai.runtimes import Model, load

    if isinstance(obj, Model):
        return obj
    import os

    if isinstance(obj, (str, os.PathLike)) and str(obj).endswith(".onnx"):
        return load(obj, device or "cpu")
    return load(obj, "torch")


def compare(reference: Any, candidate: Any, inputs: Any = None, *, tolerance: Tolerance | None = None,
            samples: int = 8, device: str | None = None, seed: int = 0) -> ParityReport:
    """Compare a candidate with a reference over many inputs.

    Args:
        reference: a :class:`Model`, an ``.onnx`` path (loaded on cpu), or a model source
            (``zoo:cnn``, ``pkg.mod:factory``, an ``nn.Module``) run by the PyTorch reference.
        candidate: the same kinds; an ``.onnx`` path loads on ``device`` (default cpu).
        inputs: feeds (see :func:`normalize_inputs`); default ``samples`` random feeds.
        tolerance: pass/fail limits; default by the candidate's precision in effect.

    Returns:
        A :class:`ParityReport`; call ``.raise_for_failure()`` to turn a failure into ParityError.
    """
    ref_model = _as_model(reference, "cpu")
    cand_model = _as_model(candidate, device)
    feeds = normalize_inputs(inputs, cand_model, samples, seed)
    cand_info = cand_model.describe()
    tol = tolerance or Tolerance.for_precision(cand_info.precision)
    refs: dict[str, list[np.ndarray]] = {}
    cands: dict[str, list[np.ndarray]] = {}
    for feed in feeds:
        r = ref_model.run({k: feed[k] for k in _names(ref_model, feed)})
        c = cand_model.run({k: feed[k] for k in _names(cand_model, feed)})
        if len(r) != len(c):
            raise InputMismatchError(f"reference has {len(r)} outputs ({list(r)}), candidate {len(c)} ({list(c)})")
        # Outputs are matched by position: names often differ between PyTorch and ONNX.
        for (name, rv), cv in zip(r.items(), c.values(), strict=True):
            refs.setdefault(name, []).append(np.asarray(rv))
            cands.setdefault(name, []).append(np.asarray(cv))
    cand_names = [o.name for o in cand_model.outputs]
    outputs = tuple(replace(output_metrics(n, refs[n], cands[n], tol), name=cn)
                    for n, cn in zip(refs, cand_names, strict=True))
    return ParityReport(outputs, len(feeds), tol, ref_model.describe().to_dict(), cand_info.to_dict())


def _names(model: Any, feed: Mapping[str, Any]) -> Iterable[str]:
    names = [s.name for s in model.inputs]
    missing = [n for n in names if n not in feed]
    if missing:
        raise InputMismatchError(f"the inputs lack {missing} for {model!r}; they have {list(feed)}")
    return names


def check_many(candidate: str, reference: str, *, devices: Sequence[str] = ("cpu",), samples: int = 8,
               data: str | None = None, atol: float | None = None, rtol: float | None = None,
               min_cosine: float | None = None, min_top1: float | None = None,
               layerwise: bool = False) -> list[ParityReport]:
    """``edgeai check``: one candidate file on several devices against one reference (run at f32).

    Tolerance options override the default for each candidate's precision in effect.
    """
    from edgeai.runtimes import load

    ref = _as_model(reference, "cpu")
    reports = []
    for device in devices:
        cand = load(candidate, device)
        base = Tolerance.for_precision(cand.describe().precision)
        tol = Tolerance(atol if atol is not None else base.atol, rtol if rtol is not None else base.rtol,
                        min_cosine if min_cosine is not None else base.min_cosine,
                        min_top1 if min_top1 is not None else base.min_top1)
        feeds = normalize_inputs(data if data is not None else samples, cand, samples)
        report = compare(ref, cand, feeds, tolerance=tol)
        if layerwise:
            from edgeai.layerwise import localize

            report = replace(report, layerwise=tuple(localize(reference, candidate, feeds[:2], device=device)))
        reports.append(report)
    return reports
