"""TensorSpec: a tensor's name, shape (ints for fixed dims, strings for symbolic ones) and dtype.

Also parsing of the CLI's ``--input-spec NAME:1x3x224x224:float32`` / ``--dynamic NAME:0=batch`` and
making sample inputs of the right dtype and value range (token ids within the vocabulary, 0/1 masks).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edgeai.errors import InputMismatchError

Dim = int | str | None

_DTYPES = {
    "float32", "float16", "float64", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool",
}
_DTYPE_ALIASES = {"float": "float32", "double": "float64", "half": "float16", "long": "int64",
                  "int": "int32", "fp32": "float32", "fp16": "float16", "f32": "float32", "f16": "float16"}

# Symbolic dims whose sample sizes we pick when nobody says otherwise.
DEFAULT_DIM_SIZES = {"batch": 2, "batch_size": 2, "seq": 16, "sequence": 16, "sequence_length": 16,
                     "past_seq": 8, "past_sequence_length": 8}


def normalize_dtype(dtype: Any) -> str:
    """A dtype as a numpy-style name ('float32'); accepts numpy/torch dtypes and common aliases."""
    name = str(dtype).replace("torch.", "")
    name = _DTYPE_ALIASES.get(name, name)
    if name not in _DTYPES:
        try:
            name = np.dtype(name).name
        except TypeError:
            pass
    if name not in _DTYPES:
        raise InputMismatchError(f"unsupported dtype {dtype!r}; use one of {', '.join(sorted(_DTYPES))}")
    return name


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output. ``shape`` holds ints (fixed) and strings or None (symbolic)."""

    name: str
    shape: tuple[Dim, ...]
    dtype: str = "float32"
    # Inclusive-exclusive value range for sample data: (0, vocab_size) for token ids, (0, 2) for masks.
    value_range: tuple[float, float] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(self.shape))
        object.__setattr__(self, "dtype", normalize_dtype(self.dtype))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_dynamic(self) -> bool:
        return any(not isinstance(d, int) for d in self.shape)

    def shape_str(self) -> str:
        return "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"

    def __str__(self) -> str:
        return f"{self.name}: {self.dtype} {self.shape_str()}"

    def with_shape(self, shape: Sequence[Dim]) -> TensorSpec:
        return replace(self, shape=tuple(shape))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.value_range is not None:
            d["value_range"] = list(self.value_range)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TensorSpec:
        vr = d.get("value_range")
        return cls(d["name"], tuple(d["shape"]), d.get("dtype", "float32"),
                   tuple(vr) if vr is not None else None)


def parse_input_spec(text: str) -> TensorSpec:
    """Parse ``NAME:1x3x224x224[:float32]``; a dim may be a symbol (``ids:batchxseq:int64``)."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise InputMismatchError(
            f"bad --input-spec {text!r}; expected NAME:DIMS[:DTYPE], e.g. pixel_values:1x3x224x224:float32")
    dims: list[Dim] = []
    for tok in parts[1].split("x"):
        tok = tok.strip()
        if tok.isdigit():
            dims.append(int(tok))
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", tok):
            dims.append(tok)
        else:
            raise InputMismatchError(f"bad dim {tok!r} in --input-spec {text!r}; use integers or names, e.g. 1x3x224x224")
    return TensorSpec(parts[0], tuple(dims), parts[2] if len(parts) == 3 else "float32")


def parse_dynamic_spec(text: str) -> tuple[str, dict[int, str]]:
    """Parse ``NAME:0=batch,1=seq`` into ``("NAME", {0: "batch", 1: "seq"})``."""
    m = re.fullmatch(r"([^:]+):(.+)", text)
    if not m:
        raise InputMismatchError(f"bad --dynamic {text!r}; expected NAME:AXIS=SYMBOL[,AXIS=SYMBOL], e.g. input_ids:0=batch,1=seq")
    axes: dict[int, str] = {}
    for item in m.group(2).split(","):
        axis, _, sym = item.partition("=")
        if not axis.strip().isdigit() or not sym.strip():
            raise InputMismatchError(f"bad axis {item!r} in --dynamic {text!r}; expected AXIS=SYMBOL like 0=batch")
        axes[int(axis)] = sym.strip()
    return m.group(1), axes


def apply_dynamic_axes(specs: Sequence[TensorSpec], dynamic_axes: Mapping[str, Mapping[int, str]]) -> list[TensorSpec]:
    """Mark the given axes of each spec symbolic; unknown names or axes are an error."""
    by_name = {s.name: s for s in specs}
    for name, axes in dynamic_axes.items():
        if name not in by_name:
            raise InputMismatchError(f"dynamic axes name unknown input {name!r}; inputs are {list(by_name)}")
        shape = list(by_name[name].shape)
        for axis, sym in axes.items():
            if not 0 <= axis < len(shape):
                raise InputMismatchError(f"input {name!r} has rank {len(shape)}; axis {axis} does not exist")
            shape[axis] = sym
        by_name[name] = by_name[name].with_shape(shape)
    return [by_name[s.name] for s in specs]


def resolve_shape(spec: TensorSpec, dims: Mapping[str, int] | None = None) -> tuple[int, ...]:
    """A concrete shape for ``spec``: symbolic dims from ``dims``, then :data:`DEFAULT_DIM_SIZES`."""
    dims = dict(DEFAULT_DIM_SIZES, **(dims or {}))
    out = []
    for i, d in enumerate(spec.shape):
        if isinstance(d, int):
            size = d
        else:
            key = d if d is not None and d in dims else "batch" if i == 0 else None
            raw = dims[key] if key is not None else 8
            try:
                size = int(raw)
            except (TypeError, ValueError):
                raise InputMismatchError(f"size of dim {key!r} must be an integer; got {raw!r}") from None
        if size < 0:
            raise InputMismatchError(f"input {spec.name!r} {spec.shape_str()} would get a negative size {size} "
                                     f"on axis {i}; dim sizes must be >= 0")
        out.append(size)
    return tuple(out)


_ALWAYS_OK_BYTES = 64 * 2**20


def _available_memory() -> int | None:
    """Bytes of memory available to allocate now (Linux MemAvailable, else free pages), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def default_max_sample_bytes() -> int:
    """How much memory sample inputs may take: half of what is available now (4 GiB if unknown)."""
    avail = _available_memory()
    return avail // 2 if avail else 4 * 2**30


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**28 else f"{n / 2**20:.1f} MiB"


def check_sample_size(specs: Iterable[TensorSpec], dims: Mapping[str, int] | None = None, *,
                      max_bytes: int | None = None, what: str = "sample inputs") -> int:
    """Bytes that :func:`make_inputs` would allocate at its peak; raise before allocating too much.

    Raises:
        InputMismatchError: a size is negative, or the inputs would take more than ``max_bytes``
            (default :func:`default_max_sample_bytes`), naming the largest input and its shape.
    """
    sizes = []
    for spec in specs:
        shape = resolve_shape(spec, dims)
        count = math.prod(shape)  # Python ints: no overflow for absurd shapes
        itemsize = 2 if spec.dtype == "bfloat16" else np.dtype(spec.dtype).itemsize
        # numpy draws float64 / int64 first, then casts: both arrays are alive at the peak.
        sizes.append((count * (8 + itemsize), count * itemsize, spec, shape))
    peak = sum(s[0] for s in sizes)
    if max_bytes is None and peak <= _ALWAYS_OK_BYTES:
        return peak  # too small to matter: skip reading the memory figures
    limit = default_max_sample_bytes() if max_bytes is None else max_bytes
    if peak > limit:
        _, final, spec, shape = max(sizes, key=lambda s: s[0])
        raise InputMismatchError(
            f"{what} would need {_gib(peak)} of memory (input {spec.name!r} {spec.dtype} {list(shape)} alone is "
            f"{_gib(final)}); the limit is {_gib(limit)} (half of the memory available now). Use a smaller batch or "
            f"sequence length, or pass your own inputs")
    return peak


def default_value_range(spec: TensorSpec) -> tuple[float, float] | None:
    if spec.value_range is not None:
        return spec.value_range
    name = spec.name.lower()
    if spec.dtype == "bool" or "mask" in name or "token_type" in name:
        return (0, 2)
    return None


def make_inputs(specs: Iterable[TensorSpec], dims: Mapping[str, int] | None = None, *,
                seed: int = 0, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Random inputs for ``specs``; symbolic dims take sizes from ``dims`` (then sensible defaults).

    Float inputs are standard normal; integer inputs stay within ``value_range`` (token ids within
    the vocabulary); attention masks are ones with a padded tail so no row is fully masked.

    Raises:
        InputMismatchError: before allocating anything, when the inputs would take more than
            ``max_bytes`` (default: half of the memory available now) or a size is negative.
    """
    specs = list(specs)
    check_sample_size(specs, dims, max_bytes=max_bytes)
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = resolve_shape(spec, dims)
        name = spec.name.lower()
        if "attention_mask" in name or name.endswith("_mask") and spec.dtype != "bool":
            arr = np.ones(shape, dtype=spec.dtype)
            if len(shape) == 2 and shape[1] > 2:  # pad the tail of every other row
                arr[1::2, -max(1, shape[1] // 4):] = 0
        elif spec.dtype in ("float32", "float16", "float64", "bfloat16"):
            arr = rng.standard_normal(shape).astype(np.float32 if spec.dtype == "bfloat16" else spec.dtype)
        elif spec.dtype == "bool":
            arr = rng.integers(0, 2, shape).astype(bool)
        else:
            low, high = default_value_range(spec) or (0, 100)
            if "token_type" in name:
                low, high = 0, 1
            arr = rng.integers(int(low), int(high), shape).astype(spec.dtype)
        feeds[spec.name] = arr
    return feeds


def spec_from_array(name: str, arr: Any) -> TensorSpec:
    shape = tuple(int(d) for d in arr.shape)
    return TensorSpec(name, shape, normalize_dtype(arr.dtype))
