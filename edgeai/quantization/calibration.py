"""Calibration and evaluation data: one option (``--calib``) for every form users keep data in.

  a folder of ``.npy`` / ``.npz`` files   one sample per file (``.npy`` for single-input models)
  a single ``.npz``                        one array per input name, with a leading sample axis
  ``pkg.mod:callable`` / ``file.py:fn``     a callable returning an iterable of feed dicts
  ``random:N``                             N random samples from the input specs (with a warning)
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeai.errors import InputMismatchError
from edgeai.specs import TensorSpec, make_inputs


def check_sample(feed: dict[str, Any], specs: Sequence[TensorSpec], where: str) -> dict[str, np.ndarray]:
    names = {s.name for s in specs}
    if set(feed) != names:
        raise InputMismatchError(f"{where}: sample has inputs {sorted(feed)}; the model takes {sorted(names)}")
    out = {}
    for s in specs:
        arr = np.asarray(feed[s.name])
        if arr.ndim != s.rank or any(isinstance(d, int) and d != a for d, a in zip(s.shape, arr.shape, strict=False)):
            raise InputMismatchError(f"{where}: input {s.name!r} has shape {list(arr.shape)}; the model expects "
                                     f"{s.shape_str()}")
        if arr.dtype.name != s.dtype:
            if arr.dtype.kind != np.dtype(s.dtype).kind:
                raise InputMismatchError(f"{where}: input {s.name!r} is {arr.dtype}; the model expects {s.dtype}")
            arr = arr.astype(s.dtype)  # same kind (float64 data for a float32 input): a safe cast
        out[s.name] = arr
    return out


def load_samples(source: Any, specs: Sequence[TensorSpec], *, limit: int | None = None,
                 batch: int = 1) -> Iterator[dict[str, np.ndarray]]:
    """Yield checked feed dicts from any supported calibration source (see module docstring)."""
    specs = list(specs)
    label = str(source) if isinstance(source, (str, Path)) else f"a {type(source).__name__} of samples"
    count = 0
    for feed in _raw_samples(source, specs, batch):
        if limit is not None and count >= limit:
            return
        if not isinstance(feed, dict):
            raise InputMismatchError(f"calibration sample {count} from {label} is a {type(feed).__name__}; "
                                     "expected a dict of input name -> array")
        yield check_sample(feed, specs, f"calibration sample {count} from {label}")
        count += 1
    if count == 0:
        raise InputMismatchError(f"calibration source {label} gave no samples")


def is_random(source: Any) -> bool:
    """``random`` or ``random:N``: samples drawn from the input specs."""
    return isinstance(source, str) and (source == "random" or source.startswith("random:"))


def collect_samples(source: Any, specs: Sequence[TensorSpec], limit: int | None = None, *,
                    description: str = "calibration samples") -> list[dict[str, np.ndarray]]:
    """Read and check calibration samples into a list, with a progress bar over the samples.

    ``source`` is any form :func:`load_samples` takes; ``None`` means ``random:32`` (with a warning).
    """
    from edgeai.report import progress

    source = "random:32" if source is None else source
    total = _count(source, limit)
    samples = []
    with progress(description, total=total) as advance:
        for feed in load_samples(source, specs, limit=limit):
            samples.append(feed)
            advance()
    return samples


def _count(source: Any, limit: int | None) -> int | None:
    """How many samples a source will give, where that is cheap to know (for the progress bar)."""
    n: int | None = None
    if isinstance(source, (list, tuple)):
        n = len(source)
    elif is_random(source):
        count = str(source).partition(":")[2] or "32"
        n = int(count) if count.isdigit() else None
    elif isinstance(source, (str, Path)) and Path(source).is_dir():
        n = sum(1 for p in Path(source).iterdir() if p.suffix in (".npy", ".npz"))
    if n is None:
        return limit
    return min(n, limit) if limit is not None else n


def _raw_samples(source: Any, specs: list[TensorSpec], batch: int) -> Iterator[dict[str, Any]]:
    if not isinstance(source, (str, Path)):
        yield from source  # already an iterable of feed dicts
        return
    text = str(source)
    if is_random(text):
        count = text.partition(":")[2] or "32"
        if not count.isdigit() or int(count) < 1:
            raise InputMismatchError(f"bad calibration source {text!r}; use random:N with N >= 1, e.g. random:64")
        n = int(count)
        warnings.warn("calibrating on random inputs: quantization ranges then come from noise, not from the "
                      "activations real data produces, so INT8 accuracy may drop and parity is judged on "
                      "unrealistic inputs; pass real samples with --calib", stacklevel=3)
        for i in range(n):
            yield make_inputs(specs, {"batch": batch}, seed=1000 + i)
        return
    path = Path(text)
    if path.is_dir():
        # Dot-files are skipped: a write killed midway leaves a hidden temp (.NAME.xxxx.npz) behind.
        files = sorted(p for p in path.iterdir() if p.suffix in (".npy", ".npz") and not p.name.startswith("."))
        if not files:
            raise InputMismatchError(f"calibration folder {path} has no .npy or .npz files")
        for f in files:
            yield _read_file(f, specs)
        return
    if path.suffix == ".npz" and path.exists():
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        missing = sorted({s.name for s in specs} - set(arrays))
        if missing:
            raise InputMismatchError(f"{path} lacks arrays for inputs {missing}; it has {sorted(arrays)}")
        n = {len(a) for a in arrays.values()}
        if len(n) != 1:
            raise InputMismatchError(f"{path}: arrays have different sample counts {sorted(n)}")
        total = n.pop()
        for i in range(0, total, batch):
            yield {s.name: arrays[s.name][i:i + batch] for s in specs}
        return
    if path.suffix == ".npy" and path.exists():
        yield from ({specs[0].name: a[None]} for a in np.load(path, allow_pickle=False))
        return
    if ":" in text and not path.exists():
        from edgeai.sources import _import_factory

        fn = _import_factory(text)
        try:
            samples = fn() if callable(fn) else fn
            iterator = iter(samples)
        except Exception as e:
            raise InputMismatchError(f"calibration callable {text} failed: {type(e).__name__}: {e}; it should "
                                     "return (or yield) feed dicts of input name -> array") from e
        yield from iterator
        return
    raise InputMismatchError(f"calibration source {text!r} not found; use a folder of .npy/.npz files, a .npz "
                             "with a leading sample axis, 'pkg.mod:callable', or 'random:N'")


def _read_file(f: Path, specs: list[TensorSpec]) -> dict[str, Any]:
    if f.suffix == ".npy":
        if len(specs) != 1:
            raise InputMismatchError(f"{f}: a .npy file holds one array but the model takes {len(specs)} inputs; "
                                     "use .npz files with one array per input name")
        arr = np.load(f, allow_pickle=False)
        return {specs[0].name: arr if arr.ndim == specs[0].rank else arr[None]}
    with np.load(f, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
