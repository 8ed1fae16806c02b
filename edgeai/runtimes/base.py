"""The Runtime protocol every engine implements, and ``Model``: the one API apps hold.

Engines only make sessions and call them. Everything common lives here: checking feeds against the
input specs (names, dtypes, ranks, fixed dims) before any engine is called, ordering outputs,
thread safety for engines that need it, and the record of what actually ran.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np

from edgeai.errors import InputMismatchError, InputTypeError, NonFiniteOutputError
from edgeai.specs import TensorSpec

# Casts that never lose information a model could care about; anything else needs allow_cast.
_SAFE_CASTS = {("float64", "float32"), ("float16", "float32"), ("int32", "int64"), ("int64", "int32"),
               ("float64", "float16"), ("float32", "float16"), ("bool", "int64"), ("uint8", "float32")}


@dataclass(frozen=True)
class RuntimeInfo:
    """What actually ran: engine, devices in effect, precision, threads. Every result carries it."""

    engine: str
    engine_version: str
    device: str  # the device string the user asked for, normalized
    devices_in_effect: tuple[str, ...]  # onnxruntime providers / OpenVINO execution devices
    precision: str  # precision in effect: f32, f16, bf16, int8 (from the graph), mixed
    threads: int | None = None
    streams: int | None = None
    load_time_s: float | None = None
    fallback: str | None = None  # set when fallback=True and something other than asked ran
    options: dict[str, Any] = field(default_factory=dict)
    recorded: str | None = None  # set when load() without a device followed the file's run_with record

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["devices_in_effect"] = list(self.devices_in_effect)
        return d

    def summary(self) -> str:
        s = f"{self.engine} {self.engine_version} on {','.join(self.devices_in_effect)} @ {self.precision}"
        if self.fallback:
            s += f" (fallback: {self.fallback})"
        if self.recorded:
            s += " (as recorded in the file)"
        return s


@runtime_checkable
class Runtime(Protocol):
    """One engine session. ``run`` takes already-checked feeds and returns outputs in order."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    #: True when ``run`` may be called from many threads at once without a lock.
    concurrent: bool

    def run(self, feeds: dict[str, Any]) -> list[np.ndarray]: ...

    def info(self) -> RuntimeInfo: ...


def _as_array(value: Any, name: str = "?") -> Any:
    """A feed as a numpy array; values numpy cannot hold are an InputMismatchError, not a crash."""
    if isinstance(value, np.ndarray):
        arr = value
    elif hasattr(value, "detach") and hasattr(value, "cpu"):  # torch tensors, without importing torch here
        if str(getattr(value, "dtype", "")) == "torch.bfloat16":
            raise InputMismatchError(f"input {name!r} is a torch.bfloat16 tensor, which numpy cannot hold; cast it "
                                     "with .float() (OpenVINO runs bf16 itself with precision='bf16')")
        try:
            arr = value.detach().cpu().numpy()
        except (TypeError, RuntimeError) as e:
            raise InputMismatchError(f"input {name!r}: cannot convert a {value.dtype} tensor to numpy ({e})") from e
    else:
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError, OverflowError) as e:  # ragged lists, objects numpy cannot shape
            raise InputMismatchError(f"input {name!r} is not a rectangular array of numbers ({str(e)[:200]}); "
                                     "give a numpy array") from e
    return arr


def _is_cuda_tensor(value: Any) -> bool:
    return getattr(getattr(value, "device", None), "type", None) == "cuda"


class _TensorView:
    """Shape/dtype of a device tensor for the checks, without copying it to the host."""

    def __init__(self, tensor: Any, spec: TensorSpec):
        self.tensor = tensor
        self.shape = tuple(tensor.shape)
        self.ndim = len(self.shape)
        name = str(tensor.dtype).replace("torch.", "")
        self.dtype = np.dtype({"bool": "bool"}.get(name, name)) if name != "bfloat16" else None
        if self.dtype is None or self.dtype != np.dtype(spec.dtype):
            raise InputMismatchError(f"input {spec.name!r} expects {spec.dtype}; got a CUDA tensor of {tensor.dtype}")


def value_problems(feeds: Mapping[str, Any], specs: list[TensorSpec] | None = None) -> dict[str, str]:
    """What is wrong with the values (not the shapes) of ``feeds`` or outputs, by name.

    Float arrays: NaN and Inf counts. Integer arrays whose spec has a ``value_range`` (token ids
    and their vocabulary, 0/1 masks): how many values fall outside it. Empty dict: nothing wrong.
    """
    ranges = {s.name: s.value_range for s in specs or () if s.value_range is not None}
    problems: dict[str, str] = {}
    for name, arr in feeds.items():
        arr = np.asarray(arr)
        kind = arr.dtype.kind
        if kind in "fc":
            if arr.size and not np.isfinite(arr).all():
                nan, inf = int(np.isnan(arr).sum()), int(np.isinf(arr).sum())
                problems[name] = f"{nan} NaN and {inf} Inf of {arr.size} values"
        elif kind in "iu" and name in ranges and arr.size:
            low, high = ranges[name]
            lo, hi = arr.min(), arr.max()
            if lo < low or hi >= high:
                bad = int(((arr < low) | (arr >= high)).sum())
                problems[name] = (f"{bad} of {arr.size} values outside its range [{low:g}, {high:g}) "
                                  f"(min {lo}, max {hi})")
    return problems


class Model:
    """A loaded model on one device. The same API whatever engine runs underneath.

    ``model.run({"x": arr})`` and ``model(x=arr)`` both return ``{output_name: np.ndarray}`` in
    the model's output order. Feeds are checked before the engine sees them; a mismatch is an
    :class:`~edgeai.errors.InputMismatchError` that says what was expected and how to fix it.

    Threads: one ``Model`` may be shared by many threads. onnxruntime's ``InferenceSession.run`` is
    thread-safe and runs concurrently; OpenVINO gets one infer request per thread on the same
    compiled model, so it runs concurrently too; the PyTorch reference runtime is serialized with a
    lock (modules may keep state between calls).

    With ``check_values`` set (``edgeai.load(..., check_values=True)`` or the attribute), every
    run also checks values: NaN/Inf in a float input or an integer input outside its spec's
    ``value_range`` raises :class:`~edgeai.errors.InputMismatchError` before the engine runs
    (engines differ here: onnxruntime rejects a token id past the vocabulary, OpenVINO returns
    numbers), and NaN/Inf in an output raises :class:`~edgeai.errors.NonFiniteOutputError`. It
    costs one pass over each array, so it is off by default.
    """

    def __init__(self, runtime: Runtime, *, allow_cast: bool = False, source: str | None = None,
                 check_values: bool = False, fallback: tuple[str, str] | None = None):
        self._runtime = runtime
        self.inputs: list[TensorSpec] = list(runtime.inputs)
        self.outputs: list[TensorSpec] = list(runtime.outputs)
        self.allow_cast = allow_cast
        self.check_values = check_values
        self.source = source
        self._info = runtime.info()
        if fallback is not None:  # (device asked for, why it did not run there)
            self._info = replace(self._info, device=fallback[0], fallback=fallback[1])
        self._lock = None if runtime.concurrent else threading.Lock()
        self._output_names = [o.name for o in self.outputs]
        # A symbolic dim named on several axes (input_ids and attention_mask both [batch, seq]) must
        # take one size: ONNX defines it so, and OpenVINO otherwise broadcasts and answers garbage.
        uses: dict[str, int] = {}
        for s in self.inputs:
            for d in s.shape:
                if isinstance(d, str):
                    uses[d] = uses.get(d, 0) + 1
        # Precomputed per input: (name, numpy dtype, rank, fixed dims, spec, shared symbolic dims)
        # so checks cost microseconds.
        self._checks = [(s.name, np.dtype(s.dtype) if s.dtype != "bfloat16" else None, s.rank,
                         tuple((i, d) for i, d in enumerate(s.shape) if isinstance(d, int)), s,
                         tuple((i, d) for i, d in enumerate(s.shape) if isinstance(d, str) and uses[d] > 1))
                        for s in self.inputs]
        self._input_names = frozenset(s.name for s in self.inputs)
        self._device_tensors = bool(getattr(runtime, "device_tensors", False))

    @property
    def device(self) -> str:
        return self._info.device

    def record_fallback(self, why: str) -> None:
        """Note in ``describe().fallback`` that this model is not exactly what was asked for."""
        self._info = replace(self._info, fallback=why if not self._info.fallback else f"{self._info.fallback}; {why}")

    def record_recorded(self, what: str) -> None:
        """Note in ``describe().recorded`` that this model was loaded the way its file records."""
        self._info = replace(self._info, recorded=what)

    @property
    def runtime(self) -> Runtime:
        return self._runtime

    def describe(self) -> RuntimeInfo:
        """Engine and version, providers or execution devices in effect, precision, threads."""
        return self._info

    def __repr__(self) -> str:
        return f"Model({self.source or '?'}, {self._info.summary()})"

    def __call__(self, *args: Any, **feeds: Any) -> dict[str, np.ndarray]:
        """``model(pixel_values=x)``: feeds as keyword arguments (a dict goes to :meth:`run`)."""
        if args:
            given = type(args[0]).__name__
            raise InputTypeError(f"Model(...) takes feeds as keyword arguments, e.g. model({self.inputs[0].name}=x); "
                                 f"got {len(args)} positional argument(s) ({given}). For a dict of feeds use "
                                 "model.run(feeds) or model(**feeds)")
        return self.run(feeds)

    def run(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run once. ``feeds`` maps every input name to an array (numpy or torch)."""
        checked = self.check_feeds(feeds)
        if self.check_values:
            self._raise_for_values(checked, "input")
        if self._lock is None:
            outs = self._runtime.run(checked)
        else:
            with self._lock:
                outs = self._runtime.run(checked)
        result = dict(zip(self._output_names, outs, strict=True))
        if self.check_values:
            self._raise_for_values(result, "output")
        return result

    def _raise_for_values(self, arrays: Mapping[str, Any], side: str) -> None:
        problems = value_problems(arrays, self.inputs if side == "input" else None)
        if not problems:
            return
        text = "; ".join(f"{side} {k!r}: {v}" for k, v in problems.items())
        if side == "input":
            raise InputMismatchError(f"bad input values: {text}. Clean the data (np.nan_to_num, clip token ids) "
                                     "or load without check_values to run it anyway")
        raise NonFiniteOutputError(f"the model produced NaN/Inf on {self.device} from finite inputs: {text}. Compare "
                                   "with the reference (edgeai check) to see whether the engine or the model is at fault")

    def check_feeds(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(feeds, Mapping):
            raise InputMismatchError(f"feeds must be a dict of input name -> array; got {type(feeds).__name__}")
        if len(feeds) != len(self._checks) or not self._input_names.issuperset(feeds):
            self._raise_names(feeds)
        out: dict[str, Any] = {}
        sizes: dict[str, int] = {}
        for name, dtype, rank, fixed, spec, shared in self._checks:
            arr = feeds[name]
            if type(arr) is not np.ndarray:
                arr = _TensorView(arr, spec) if self._device_tensors and _is_cuda_tensor(arr) else _as_array(arr, name)
            if dtype is not None and arr.dtype != dtype:
                arr = self._cast(spec, arr)
            if arr.ndim != rank:
                raise InputMismatchError(
                    f"input {name!r} expects {spec.dtype} {spec.shape_str()} (rank {rank}); got "
                    f"{arr.dtype} {list(arr.shape)} (rank {arr.ndim})"
                    + (" — add a batch axis with arr[None]" if arr.ndim == rank - 1 else ""))
            for i, d in fixed:
                if arr.shape[i] != d:
                    raise InputMismatchError(
                        f"input {name!r} expects {spec.dtype} {spec.shape_str()}; got {list(arr.shape)}: "
                        f"axis {i} must be {d}, got {arr.shape[i]}"
                        + (" — transpose to NCHW" if rank == 4 and d == 3 and arr.shape[-1] == 3 else ""))
            for i, sym in shared:
                if sizes.setdefault(sym, arr.shape[i]) != arr.shape[i]:
                    self._raise_shared(sym, {**out, name: arr})
            out[name] = arr.tensor if isinstance(arr, _TensorView) else arr
        return out

    def _raise_shared(self, sym: str, arrays: Mapping[str, Any]) -> None:
        got = ", ".join(f"{s.name!r} axis {i} = {arrays[s.name].shape[i]}" for s in self.inputs if s.name in arrays
                        for i, d in enumerate(s.shape) if d == sym)
        raise InputMismatchError(f"inputs disagree on dim {sym!r}: {got}; every axis named {sym!r} must have the "
                                 "same size (pad or truncate them together)")

    def _raise_names(self, feeds: Mapping[str, Any]) -> None:
        given = set(feeds)
        missing = [s.name for s in self.inputs if s.name not in given]
        extra = sorted(given - self._input_names)
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if extra:
            parts.append(f"unknown {extra}")
        expected = ", ".join(str(s) for s in self.inputs)
        raise InputMismatchError(f"inputs do not match the model: {'; '.join(parts)}. Expected: {expected}")

    def _cast(self, spec: TensorSpec, arr: np.ndarray) -> np.ndarray:
        if arr.dtype.name == spec.dtype and not arr.dtype.isnative:
            # Same type in the other byte order (a '>f4' array read from a file): swapping is lossless.
            return arr.astype(arr.dtype.newbyteorder("="))
        if self.allow_cast and (arr.dtype.name, spec.dtype) in _SAFE_CASTS:
            return arr.astype(spec.dtype)
        hint = (f"or, in Python, load with allow_cast=True to cast {arr.dtype} -> {spec.dtype} automatically"
                if (arr.dtype.name, spec.dtype) in _SAFE_CASTS else "this cast can lose information")
        raise InputMismatchError(
            f"input {spec.name!r} expects {spec.dtype} {spec.shape_str()}; got {arr.dtype} {list(arr.shape)} — "
            f"cast with .astype(np.{spec.dtype}) ({hint})")
