"""Output kinds: what each output of a model means, declared (``logits=classification``) or inferred
from its name, shape, dtype and the export's task. :mod:`edgeai.metrics` judges each kind by a metric
that can fail for it.

numpy and the stdlib only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edgeai.errors import MetricNotApplicable

KINDS = ("classification", "probability", "scalar", "regression", "embedding", "sequence", "boxes", "hidden")
ALIASES = {"logits": "classification", "classifier": "classification", "class": "classification",
           "prob": "probability", "probabilities": "probability", "regress": "regression",
           "embeddings": "embedding", "tokens": "sequence", "token": "sequence", "box": "boxes",
           "detection": "boxes", "features": "hidden", "feature": "hidden", "tensor": "hidden",
           # the corpus' names (edgeai.corpus.registry.OUTPUT_KINDS), as exported files carry them
           "hidden-states": "hidden", "hidden_states": "hidden", "recurrent-state": "hidden", "state": "hidden"}


def normalize_kind(kind: str) -> str:
    """A kind name from ``KINDS`` (aliases like ``logits`` accepted)."""
    k = ALIASES.get(kind.strip().lower(), kind.strip().lower())
    if k not in KINDS:
        raise MetricNotApplicable(f"unknown output kind {kind!r}; use one of {', '.join(KINDS)}")
    return k


def parse_kinds(declared: str | Sequence[str] | Mapping[str, str] | None) -> dict[str, str]:
    """``"logits=classification"`` declarations (repeated, or comma-separated) as ``{output: kind}``."""
    if declared is None:
        return {}
    if isinstance(declared, Mapping):
        return {str(k): normalize_kind(v) for k, v in declared.items()}
    items = [declared] if isinstance(declared, str) else list(declared)
    out: dict[str, str] = {}
    for item in (p for entry in items for p in str(entry).split(",") if p.strip()):
        name, sep, kind = item.partition("=")
        if not sep or not name.strip() or not kind.strip():
            raise MetricNotApplicable(f"bad output kind {item.strip()!r}; write OUTPUT=KIND, e.g. "
                                      f"logits=classification (kinds: {', '.join(KINDS)})")
        out[name.strip()] = normalize_kind(kind)
    return out


_NAME_HINTS = (  # first match wins: specific words before generic ones
    (("landmark", "offset", "delta", "regress", "bbox_reg", "depth", "pitch", "f0"), "regression"),
    (("box", "bbox"), "boxes"),
    (("logit", "class", "score", "label"), "classification"),
    (("prob", "vad", "speech", "conf"), "probability"),
    (("embed", "pool", "speaker", "sentence", "vector"), "embedding"),
    (("token", "ids", "sequence"), "sequence"),
    (("hidden", "state", "present", "past", "encod", "feature"), "hidden"),
)


def infer_kind(name: str, shape: Sequence[Any], dtype: Any, task: str | None = None) -> tuple[str, str]:
    """A default kind for an output from its name, shape (axis 0: batch) and dtype, and the export's
    task; returns ``(kind, why)``. Declare the kind where this guesses wrong."""
    dt = np.dtype(dtype)
    dims = list(shape)
    last = dims[-1] if dims and isinstance(dims[-1], (int, np.integer)) else None
    one_per_sample = all(isinstance(d, (int, np.integer)) and d == 1 for d in dims[1:])
    if dt.kind in "iub":
        return "sequence", f"{dt} values are compared exactly"
    low = name.lower()
    for hints, kind in _NAME_HINTS:
        if any(h in low for h in hints):
            if kind == "classification" and (last is not None and last < 2 or len(dims) < 2):
                return "scalar", f"name {name!r} looks like scores but there is one value per sample"
            if kind == "boxes" and last != 4:
                return "regression", f"name {name!r} looks like boxes but the last axis is not 4 wide"
            if kind == "probability" and last is not None and last >= 2 and len(dims) >= 2 and "vad" not in low:
                return "classification", f"name {name!r}: probabilities over {last} classes"
            return kind, f"name {name!r} contains {next(h for h in hints if h in low)!r}"
    if one_per_sample:
        return "scalar", "one value per sample"
    if task and "classification" in task and len(dims) == 2 and last is not None and last >= 2:
        return "classification", f"task {task!r}, [batch, {last}] scores"
    if task and any(t in task for t in ("feature-extraction", "sentence", "embedding")) and len(dims) == 2:
        return "embedding", f"task {task!r}, one vector per sample"
    return "hidden", "generic float tensor (declare its kind for a task metric)"
