"""The one way user data becomes feeds (dicts of input name -> array) for a model.

Every stage that takes data (parity, quantization calibration and evaluation, deploy, the CLI's
``--input``) takes it through here, in these forms:

  a folder of ``.npy`` / ``.npz`` files   one sample per file (``.npy`` for single-input models)
  a single ``.npz``                        one array per input name, with a leading sample axis
  ``pkg.mod:callable`` / ``file.py:fn``     a callable returning an iterable of feed dicts
  ``random:N``                             N random samples from the input specs
  feed dicts in Python                     one dict, or a list / iterable of them

:func:`resolve_feeds` and :func:`evaluation_feeds` return :class:`Feeds`, which records where the
data came from and how many samples there are, so a verdict can name its data and sample count.
"""

from __future__ import annotations

import math
import os
import warnings
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from edgeai.errors import EdgeAIError, InputMismatchError
from edgeai.readset import open_regular, regular_file
from edgeai.registry import load_attr
from edgeai.specs import TensorSpec, default_max_sample_bytes, make_inputs

Feed = dict[str, np.ndarray]

DEFAULT_SAMPLES = 8  # random parity feeds when none are given
EVAL_SEED = 500  # random evaluation feeds (quantize, deploy) start at this seed


@dataclass(frozen=True)
class Feeds:
    """Feeds and what they are: ``kind`` is ``data`` (given by the user), ``calibration`` (reused
    calibration samples) or ``random``; ``source`` says which (a path, a callable, "Python", or how
    the random samples were drawn); ``count`` is the number of feed dicts. Iterates as the list."""

    feeds: tuple[Feed, ...]
    source: str
    kind: str
    note: str | None = None  # why these are not held-out data, where they are not

    @property
    def count(self) -> int:
        return len(self.feeds)

    def __len__(self) -> int:
        return len(self.feeds)

    def __iter__(self) -> Iterator[Feed]:
        return iter(self.feeds)

    def __getitem__(self, i: int) -> Feed:
        return self.feeds[i]

    def describe(self) -> str:
        """``"16 samples of data/eval.npz"``: the data and sample count a verdict names."""
        return f"{self.count} {'sample' if self.count == 1 else 'samples'} of {self.source}"

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "kind": self.kind, "count": self.count, "note": self.note}


def is_random(source: Any) -> bool:
    """``random`` or ``random:N``: samples drawn from the input specs."""
    return isinstance(source, str) and (source == "random" or source.startswith("random:"))


def parse_random(text: str, *, default: int | None = None, what: str = "inputs") -> int:
    """``random:N`` -> N (``random`` alone -> ``default``, where one is allowed)."""
    count = text.partition(":")[2]
    if not count and default is not None:
        return default
    if not count.isdigit() or int(count) < 1:
        raise InputMismatchError(f"bad {what} {text!r}; use random:N with N >= 1, e.g. random:64")
    return int(count)


def random_label(seed: int, batch: int = 2) -> str:
    """How random feeds were drawn, as a report names them."""
    return (f"random inputs (standard-normal floats, integers uniform in each input's range; batch {batch}, "
            f"seed {seed})")


def random_feeds(specs: Sequence[TensorSpec], n: int, *, seed: int = 0, batch: int = 2) -> list[Feed]:
    """``n`` random feeds at ``batch`` from the input specs (seeds ``seed``, ``seed + 1``, ...)."""
    if n < 1:
        raise InputMismatchError(f"need at least one sample; got {n}")
    return [make_inputs(specs, {"batch": batch}, seed=seed + i) for i in range(n)]


def _label(source: Any) -> str:
    if isinstance(source, Feeds):
        return source.source
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return f"{type(source).__name__} of feeds given in Python"


def resolve_feeds(source: Any, specs: Sequence[TensorSpec], *, samples: int | None = None,
                  seed: int = 0) -> Feeds:
    """Feeds for running or comparing a model, from any of the forms users have.

    ``source`` may be ``None`` (``samples`` random feeds, default 8, batch 2), an int (that many
    random feeds), ``"random:N"``, one feed dict, a list of feed dicts, or a data set (a folder of
    .npy/.npz, a .npz with a leading sample axis, ``pkg.mod:fn``); for a data set, ``samples`` caps
    how many are used (default: all).

    Raises:
        InputMismatchError: a malformed or missing source, or samples that do not fit ``specs``.
    """
    specs = list(specs)
    if isinstance(source, Feeds):  # already resolved: keep what it says it is
        if samples and samples < source.count:
            return Feeds(source.feeds[:samples], source.source, source.kind, source.note)
        return source
    if is_random(source):
        source = parse_random(source, default=samples or DEFAULT_SAMPLES)
    if source is None or (isinstance(source, int) and not isinstance(source, bool)):
        n = (samples or DEFAULT_SAMPLES) if source is None else source
        return Feeds(tuple(random_feeds(specs, n, seed=seed)), random_label(seed), "random")
    if isinstance(source, Mapping):
        return Feeds((dict(source),), "one feed dict given in Python", "data")
    if isinstance(source, (str, os.PathLike)):
        return Feeds(tuple(load_samples(source, specs, limit=samples)), str(source), "data")
    out = list(source)[:samples] if samples else list(source)
    if not out or not all(isinstance(f, Mapping) for f in out):
        raise InputMismatchError("inputs must be a feed dict, a list of feed dicts, a number of random samples, "
                                 "or a data set (folder of .npy/.npz, a .npz, pkg.mod:fn)")
    return Feeds(tuple(out), _label(source), "data")


def evaluation_feeds(eval_inputs: Any, calibration: Any, specs: Sequence[TensorSpec], n: int) -> Feeds:
    """What a quantized model is judged on: all of ``eval_inputs`` (read by :func:`resolve_feeds`,
    as ``edgeai check --data`` reads them, so both judge the same samples), else the first ``n``
    calibration samples, else ``n`` random feeds at batch 2. ``note`` says when they are not
    held-out data."""
    specs = list(specs)
    if eval_inputs is not None:
        feeds = resolve_feeds(eval_inputs, specs, seed=EVAL_SEED)
        if feeds.kind == "random":
            return Feeds(feeds.feeds, feeds.source, "random",
                         "parity measured on random inputs (pass eval_inputs / --data for real data)")
        # bad data fails here, before any quantization work
        checked = tuple(check_sample(dict(f), specs, f"evaluation sample {i} from {feeds.source}")
                        for i, f in enumerate(feeds))
        return Feeds(checked, feeds.source, feeds.kind, feeds.note)
    if calibration is not None and not is_random(calibration):
        return Feeds(tuple(load_samples(calibration, specs, limit=n)), f"calibration data {_label(calibration)}",
                     "calibration",
                     "parity measured on calibration samples (pass eval_inputs / --data for held-out data)")
    return Feeds(tuple(random_feeds(specs, n, seed=EVAL_SEED)), random_label(EVAL_SEED), "random",
                 "parity measured on random inputs (pass eval_inputs / --data for real data)")


def read_named_arrays(items: Iterable[str]) -> dict[str, np.ndarray]:
    """``["NAME=file.npy", ...]`` (the CLI's ``--input``) -> one feed dict; each input given once."""
    feeds: dict[str, np.ndarray] = {}
    for item in items:
        name, sep, file = item.partition("=")
        if not sep or not file:
            raise InputMismatchError(f"bad --input {item!r}; expected NAME=file.npy")
        if name in feeds:
            raise InputMismatchError(f"--input {name}=... is given twice; give each input once")
        if not os.path.lexists(file) and "\0" not in file:
            raise InputMismatchError(f"input file not found: {file}")
        feeds[name] = load_npy(file, f"--input {name}")
    return feeds


# --- reading .npy / .npz: regular files only, header sizes checked before anything is allocated ----

_NPY_MAGIC, _ZIP_MAGIC = b"\x93NUMPY", b"PK"


def _header(f: IO[bytes], where: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a .npy header, read without reading (or allocating) the array."""
    from numpy.lib import format as npy_format

    try:
        version = npy_format.read_magic(f)
        reader = getattr(npy_format, "_read_array_header", None)
        if reader is not None:
            shape, _, dtype = reader(f, version, max_header_size=10_000)
        else:  # pragma: no cover - older numpy
            shape, _, dtype = (npy_format.read_array_header_1_0(f) if version == (1, 0)
                               else npy_format.read_array_header_2_0(f))
    except (ValueError, OSError, SyntaxError, TypeError, EOFError) as e:
        raise InputMismatchError(f"cannot read {where} as a .npy array: {str(e)[:200]}") from None
    if dtype.hasobject:
        raise InputMismatchError(f"{where} holds Python objects (dtype {dtype}); edgeai reads arrays with "
                                 "allow_pickle=False, which cannot load them: save plain numeric arrays")
    if dtype.kind not in "biufc":
        raise InputMismatchError(f"{where} holds {dtype} values, not numbers; save a numeric array")
    if any(int(d) < 0 for d in shape):  # found by benchmarks/fuzz.py: numpy multiplies them, and overflows
        raise InputMismatchError(f"{where}: its header declares a negative dimension {list(shape)}; the file is "
                                 "damaged")
    return tuple(int(d) for d in shape), dtype


def _check_declared(shape: tuple[int, ...], dtype: np.dtype, available: int, where: str, limit: int) -> int:
    nbytes = math.prod(shape) * dtype.itemsize  # Python ints: a petabyte header does not overflow
    if nbytes > available:
        raise InputMismatchError(f"{where}: its header declares {dtype} {list(shape)} ({nbytes} bytes) but the file "
                                 f"holds {available} bytes of data; it is truncated or not what it claims")
    if nbytes > limit:
        raise InputMismatchError(f"{where}: {dtype} {list(shape)} needs {nbytes / 2**30:.1f} GiB, over the "
                                 f"{limit / 2**30:.1f} GiB edgeai reads at once (half of the free memory)")
    return nbytes


def load_npy(path: str | os.PathLike, what: str = "data file") -> np.ndarray:
    """One .npy array from a regular file, its header checked against the file size first.

    Raises:
        InputMismatchError: not a regular file, not .npy, object or non-numeric dtype, or a header
            that declares more data than the file holds (or than memory allows).
    """
    where = f"{what} {path}" if what != "data file" else str(path)
    with open_regular(path, what, InputMismatchError) as f:
        size = os.fstat(f.fileno()).st_size
        shape, dtype = _header(f, where)
        _check_declared(shape, dtype, size - f.tell(), where, default_max_sample_bytes())
        f.seek(0)
        try:
            return np.load(f, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise InputMismatchError(f"cannot read {where} as a .npy array: {str(e)[:200]}") from e


def load_npz(path: str | os.PathLike, what: str = "data file") -> dict[str, np.ndarray]:
    """Every array of a .npz (a zip of .npy members), each member's header checked first.

    Raises:
        InputMismatchError: as :func:`load_npy`, or a damaged zip.
    """
    where = f"{what} {path}" if what != "data file" else str(path)
    limit, total = default_max_sample_bytes(), 0
    with open_regular(path, what, InputMismatchError) as f:
        try:
            with zipfile.ZipFile(f) as zf:
                out = {}
                for info in zf.infolist():
                    name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                    with zf.open(info) as member:
                        shape, dtype = _header(member, f"{where}[{name!r}]")
                        header = member.tell()
                    total += _check_declared(shape, dtype, info.file_size - header, f"{where}[{name!r}]",
                                             limit - total)
                    with zf.open(info) as member:
                        try:
                            out[name] = np.load(member, allow_pickle=False)
                        except (ValueError, OSError, EOFError) as e:
                            raise InputMismatchError(f"cannot read {where}[{name!r}]: {str(e)[:200]}") from e
                return out
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, OSError, EOFError) as e:
            raise InputMismatchError(f"cannot read {where} as a .npz file ({type(e).__name__}: {str(e)[:200]})") from e


def check_sample(feed: dict[str, Any], specs: Sequence[TensorSpec], where: str) -> dict[str, np.ndarray]:
    names = {s.name for s in specs}
    if set(feed) != names:
        raise InputMismatchError(f"{where}: sample has inputs {sorted(feed)}; the model takes {sorted(names)}")
    out = {}
    for s in specs:
        try:
            arr = np.asarray(feed[s.name])
        except (ValueError, TypeError) as e:  # ragged nested lists
            raise InputMismatchError(f"{where}: input {s.name!r} is not a rectangular array ({str(e)[:150]})") from e
        if arr.dtype.kind not in "biufc":
            raise InputMismatchError(f"{where}: input {s.name!r} has dtype {arr.dtype}, not numbers")
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
    """Yield checked feed dicts from any data source in the forms listed in the module docstring.

    ``random:N`` yields N random samples at ``batch`` (seeds 1000..), with a warning that
    calibration on noise is not calibration on data.
    """
    specs = list(specs)
    label = str(source) if isinstance(source, (str, Path)) else f"a {type(source).__name__} of samples"
    count = 0
    for feed in _guarded(_raw_samples(source, specs, batch), label):
        if limit is not None and count >= limit:
            return
        if not isinstance(feed, dict):
            raise InputMismatchError(f"calibration sample {count} from {label} is a {type(feed).__name__}; "
                                     "expected a dict of input name -> array")
        yield check_sample(feed, specs, f"calibration sample {count} from {label}")
        count += 1
    if count == 0:
        raise InputMismatchError(f"calibration source {label} gave no samples")


def _guarded(samples: Iterator[Any], label: str) -> Iterator[Any]:
    """A user's generator that raises midway is a bad data source (exit 2), not a crash."""
    count = 0
    while True:
        try:
            item = next(samples)
        except StopIteration:
            return
        except (EdgeAIError, KeyboardInterrupt, MemoryError):
            raise
        except Exception as e:
            raise InputMismatchError(f"calibration source {label} failed at sample {count}: {type(e).__name__}: "
                                     f"{str(e)[:200]}; it should yield feed dicts of input name -> array") from e
        count += 1
        yield item


def _raw_samples(source: Any, specs: list[TensorSpec], batch: int) -> Iterator[dict[str, Any]]:
    if not isinstance(source, (str, Path)):
        try:
            iterator = iter(source)  # already an iterable of feed dicts
        except TypeError:
            raise InputMismatchError(f"calibration data is a {type(source).__name__}; give feed dicts, a path, "
                                     "'pkg.mod:fn' or 'random:N'") from None
        yield from iterator
        return
    text = str(source)
    if is_random(text):
        n = parse_random(text, default=32, what="calibration source")
        warnings.warn("calibrating on random inputs: quantization ranges then come from noise, not from the "
                      "activations real data produces, so INT8 accuracy may drop and parity is judged on "
                      "unrealistic inputs; pass real samples with --calib", stacklevel=3)
        for i in range(n):
            yield make_inputs(specs, {"batch": batch}, seed=1000 + i)
        return
    path = Path(text)
    if "\0" in text:
        raise InputMismatchError(f"calibration source {text!r} contains a NUL byte; no file has that name")
    if _is_dir(path):
        # Dot-files are skipped: a write killed midway leaves a hidden temp (.NAME.xxxx.npz) behind.
        try:
            files = sorted(p for p in path.iterdir() if p.suffix in (".npy", ".npz") and not p.name.startswith("."))
        except OSError as e:
            raise InputMismatchError(f"cannot list calibration folder {path}: {e.strerror or e}") from e
        if not files:
            raise InputMismatchError(f"calibration folder {path} has no .npy or .npz files")
        for f in files:
            regular_file(f, "calibration file", InputMismatchError)  # a FIFO named x.npy must not hang us
        for f in files:
            yield _read_file(f, specs)
        return
    if path.suffix == ".npz" and os.path.lexists(path):
        arrays = load_npz(path, "calibration file")
        flat = [k for k, a in arrays.items() if a.ndim == 0]
        if flat:
            raise InputMismatchError(f"{path}: arrays {flat} are 0-d; a data .npz needs a leading sample axis on "
                                     "every array")
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
    if path.suffix == ".npy" and os.path.lexists(path):
        arr = load_npy(path, "calibration file")
        if arr.ndim == 0:
            raise InputMismatchError(f"{path} holds a 0-d array; a data .npy needs a leading sample axis")
        yield from ({specs[0].name: a[None]} for a in arr)
        return
    if ":" in text and not os.path.lexists(path):
        fn = load_attr(text)
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
        arr = load_npy(f, "calibration file")
        return {specs[0].name: arr if arr.ndim == specs[0].rank else arr[None]}
    return load_npz(f, "calibration file")


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):  # a name too long for the file system
        return False
