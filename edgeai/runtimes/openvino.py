"""OpenVINO engine: ``compile_model`` on CPU, GPU, NPU or AUTO, with precision and shape control."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import openvino as ov

from edgeai.device_strings import devices
from edgeai.errors import DeviceUnavailableError, EdgeAIError, InputMismatchError, ModelLoadError
from edgeai.onnxfile import graph_precision, io_specs, load_proto
from edgeai.runtimes.base import RuntimeInfo
from edgeai.specs import TensorSpec, check_sample_size

_PRECISION = {"f32": "f32", "f16": "f16", "bf16": "bf16"}
_HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT", "cumulative_throughput": "CUMULATIVE_THROUGHPUT"}
# What a feed whose shapes are not the static ones gets: an error, or a compile with dynamic dims.
_OTHER_SHAPES = ("error", "dynamic")
_core: ov.Core | None = None
_core_lock = threading.Lock()


def core() -> ov.Core:
    global _core
    with _core_lock:
        if _core is None:
            _core = ov.Core()
        return _core


def available_targets() -> list[str]:
    return list(core().available_devices)


def _message(e: BaseException) -> str:
    """OpenVINO's text starts with 'Exception from src/...cpp:N:' lines; the cause is in the last ones."""
    lines = [ln.strip() for ln in str(e).strip().splitlines()
             if ln.strip() and not ln.strip().startswith(("Exception from src/", "Check 'false' failed"))]
    if not lines:
        return str(e).strip().splitlines()[0][:400] if str(e).strip() else type(e).__name__
    cause = lines[-1]
    return (cause if len(lines) == 1 else f"{cause} ({lines[0]})")[:500]


def _static_profile(inputs: list[TensorSpec], shapes: Mapping[str, Any]) -> dict[str, list[int]]:
    """Resolve a shape profile (``{"input_ids": (1, 128)}``) against the inputs; every name must exist."""
    names = {s.name: s for s in inputs}
    unknown = sorted(set(shapes) - set(names))
    if unknown:
        raise InputMismatchError(f"static shape given for unknown input(s) {unknown}; inputs are {list(names)}")
    profile = {}
    for name, shape in shapes.items():
        spec, shape = names[name], [int(d) for d in shape]
        if len(shape) != spec.rank or any(isinstance(d, int) and d != s for d, s in zip(spec.shape, shape, strict=True)):
            raise InputMismatchError(f"static shape {shape} for {name!r} does not fit {spec.dtype} {spec.shape_str()}")
        profile[name] = shape
    return profile


def plan_static_shapes(inputs: list[TensorSpec], static_shapes: Mapping[str, Any] | None, *,
                       static_only: bool) -> dict[str, list[int]] | None:
    """The shape profile to reshape to before compiling, or None to keep dynamic dims.

    ``static_only`` devices (NPUs) compile static shapes only: every dynamic input needs a shape.
    """
    dynamic = [s for s in inputs if s.is_dynamic]
    if not static_shapes:
        if static_only and dynamic:
            raise InputMismatchError(
                "this device compiles static shapes only; give a shape for each dynamic input with "
                f"static_shapes={{...}} or --shape NAME:1x128. Dynamic inputs: {[str(s) for s in dynamic]}")
        return None
    profile = _static_profile(inputs, static_shapes)
    left = [s.name for s in dynamic if s.name not in profile]
    if left and static_only:
        raise InputMismatchError(f"static_shapes misses dynamic input(s) {left}; this device needs all of them")
    return profile


def _blobs(cache_dir: str | os.PathLike | None) -> set[str]:
    try:
        return {n for n in os.listdir(cache_dir) if n.endswith(".blob")} if cache_dir else set()
    except OSError:
        return set()


class OpenVINORuntime:
    """One compiled model; each thread gets its own infer request, so ``run`` is concurrent-safe."""

    concurrent = True

    def __init__(self, path: str | os.PathLike, device: str, target: str, index: int = 0, *,
                 precision: str = "f32", hint: str = "latency", threads: int | None = None,
                 streams: int | None = None, cache_dir: str | None = None,
                 static_shapes: Mapping[str, Any] | None = None, other_shapes: str = "error",
                 fallback: bool = False, model_bytes: bytes | None = None, **unknown: Any):
        if unknown:
            raise EdgeAIError(f"unknown option(s) for openvino: {sorted(unknown)}; known: precision, hint, "
                              "threads, streams, cache_dir, static_shapes, other_shapes, fallback")
        if hint not in _HINTS:
            raise EdgeAIError(f"unknown performance hint {hint!r}; use one of {list(_HINTS)}")
        if other_shapes not in _OTHER_SHAPES:
            raise EdgeAIError(f"other_shapes must be one of {list(_OTHER_SHAPES)}; got {other_shapes!r}")
        self.device, self._target = device, target
        base = target.split(".")[0]
        available = available_targets()
        if base not in ("AUTO", "MULTI", "HETERO") and not any(d.split(".")[0] == base for d in available):
            raise DeviceUnavailableError(f"OpenVINO has no {base} device on this machine (OpenVINO {ov.__version__} "
                                         f"sees {available}). Devices here: {devices()}.")
        proto = load_proto(path, data=model_bytes)
        self.inputs, self.outputs = io_specs(proto)
        self._graph_precision = graph_precision(proto)
        # model_bytes: the bytes a bundle check hashed. OpenVINO reads ONNX from memory, but not its
        # external data (2026.4), so a model with a data file is read by path (the bundle re-checks it).
        external = any(t.data_location == 1 for t in proto.graph.initializer)
        self._source: Any = model_bytes if model_bytes is not None and not external else str(path)
        del proto
        try:
            model = self._read(static=False)
        except EdgeAIError:
            raise
        except Exception as e:
            raise ModelLoadError(f"OpenVINO could not read {path}: {_message(e)}") from e

        self._static = plan_static_shapes(self.inputs, static_shapes, static_only=base == "NPU")
        # other_shapes="dynamic": the static compile serves feeds of its shapes and a compile with
        # the model's own dynamic dims (made on first need) serves the rest, so a fixed-shape fast
        # path never turns into an error for a feed of another shape.
        self._other_shapes = other_shapes if self._static and base != "NPU" else "error"
        self._dynamic: Any = None
        self.dynamic_compiles = 0
        if self._static:
            # Compiling allocates buffers for the static shapes: refuse absurd ones before it does.
            check_sample_size([s.with_shape(shape) for s in self.inputs for n, shape in self._static.items()
                               if s.name == n], what=f"static shapes {self._static}")
            self._reshape(model)
            if self._other_shapes == "error":
                self.inputs = [s.with_shape(self._static.get(s.name, s.shape)) for s in self.inputs]

        config: dict[str, Any] = {"PERFORMANCE_HINT": _HINTS[hint]}
        if precision != "auto":
            config["INFERENCE_PRECISION_HINT"] = _PRECISION[precision]
        if precision == "f32" and base == "CPU":
            # The CPU plugin also quantizes FC activations on the fly unless told not to.
            config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = 0
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if streams:
            config["NUM_STREAMS"] = int(streams)
        if cache_dir:
            if os.path.exists(cache_dir) and not os.path.isdir(cache_dir):
                raise EdgeAIError(f"cache_dir {cache_dir} is a file; give a folder")
            config["CACHE_DIR"] = str(cache_dir)
        if base in ("AUTO", "MULTI", "HETERO"):
            config.pop("DYNAMIC_QUANTIZATION_GROUP_SIZE", None)
        config.update(self._compile_config(base))
        cached_before = _blobs(cache_dir)
        t0 = time.perf_counter()
        try:
            self.compiled = core().compile_model(model, target, config)
        except Exception as e:
            raise DeviceUnavailableError(f"OpenVINO could not compile {path} for {target}: {_message(e)}") from e
        self.load_time_s = time.perf_counter() - t0
        # OpenVINO keys its cache by model, config and device itself; we only record what happened.
        cache = None
        if cache_dir:
            after = _blobs(cache_dir)
            cache = "written" if after - cached_before else "hit" if after else "not supported by the device"
        self._exec_devices = tuple(self.compiled.get_property("EXECUTION_DEVICES"))
        self._fallback = None
        if base not in ("AUTO", "MULTI", "HETERO") and not any(d.startswith(base) for d in self._exec_devices):
            msg = f"asked for {device!r} but OpenVINO executes on {list(self._exec_devices)}"
            if not fallback:
                raise DeviceUnavailableError(msg)
            self._fallback = msg
        self._precision = self._effective_precision(precision)
        self._threads = self._prop("INFERENCE_NUM_THREADS")
        self._streams = self._prop("NUM_STREAMS")
        self._local = threading.local()
        self._options = {"hint": hint, "precision_requested": precision, "static_shapes": self._static,
                         "cache_dir": cache_dir, "cache": cache}
        if self._static:
            self._options["other_shapes"] = self._other_shapes
        self._path, self._config = str(path), config
        self._recompile_lock = threading.Lock()
        self.recompiles = 0  # times a failed run made us recompile (see _recompile_after_failure)

    def _prepare(self, model: Any) -> Any:
        """A hook for subclasses to transform the ``ov.Model`` before it is compiled (e.g. stateful)."""
        return model

    def _reshape(self, model: Any) -> None:
        model.reshape({name: ov.PartialShape(shape) for name, shape in self._static.items()})

    def _read(self, *, static: bool) -> Any:
        """The model read and prepared afresh; reshaped to the static profile when ``static``."""
        model = self._prepare(core().read_model(self._source))
        if static and self._static:
            self._reshape(model)
        return model

    def _compile_config(self, base: str) -> dict[str, Any]:
        """A hook for subclasses to add compile properties for device ``base`` (CPU, GPU, ...)."""
        return {}

    def _prop(self, name: str) -> Any:
        try:
            value = self.compiled.get_property(name)
            return int(value) if str(value).lstrip("-").isdigit() else value
        except Exception:
            return None

    def _effective_precision(self, requested: str) -> str:
        hint = self._prop("INFERENCE_PRECISION_HINT")
        name = {"f32": "f32", "f16": "f16", "bf16": "bf16"}.get(str(getattr(hint, "get_type_name", lambda: hint)()),
                                                            None)
        if name is None:
            text = str(hint).lower()
            name = "bf16" if "bf16" in text or "bfloat16" in text else "f16" if "16" in text else "f32"
        if requested not in ("auto", name) and self._target.split(".")[0] not in ("AUTO", "MULTI", "HETERO"):
            raise DeviceUnavailableError(f"asked for precision {requested} on {self.device} but OpenVINO uses {name}")
        # An INT8 graph runs INT8 kernels whatever the float hint says.
        return f"{self._graph_precision}+{name}" if self._graph_precision in ("int8", "int4") else name

    def _request(self, compiled: Any = None) -> Any:
        """This thread's infer request on ``compiled`` (default: the main compiled model), made on first use."""
        compiled = self.compiled if compiled is None else compiled
        requests = getattr(self._local, "requests", None)
        if requests is None:
            requests = self._local.requests = {}
        entry = requests.get(id(compiled))
        if entry is None or entry[0] is not compiled:
            # Requests on a compiled model since replaced (a recompile) go with it.
            for key in [k for k, (c, _) in requests.items() if c is not self.compiled and c is not self._dynamic]:
                del requests[key]
            entry = requests[id(compiled)] = (compiled, compiled.create_infer_request())
        return entry[1]

    def _compiled_for(self, feeds: Mapping[str, Any]) -> Any:
        """The compiled model for these feeds: the static one when their shapes are its shapes."""
        if not self._static or all(list(feeds[n].shape) == shape for n, shape in self._static.items()):
            return self.compiled
        if self._other_shapes == "error":
            name, shape = next((n, s) for n, s in self._static.items() if list(feeds[n].shape) != s)
            raise InputMismatchError(f"input {name!r} was compiled for the static shape {shape}; "
                                     f"got {list(feeds[name].shape)} (load with other_shapes='dynamic' to "
                                     "serve other shapes from a dynamic compile)")
        with self._recompile_lock:
            if self._dynamic is None:
                try:
                    self._dynamic = core().compile_model(self._read(static=False), self._target, self._config)
                except Exception as e:
                    raise EdgeAIError(f"OpenVINO could not compile {self._path} with its dynamic shapes for "
                                      f"feeds of shapes {({n: list(a.shape) for n, a in feeds.items()})}: "
                                      f"{_message(e)}") from e
                self.dynamic_compiles += 1
                self._options["dynamic_compiles"] = self.dynamic_compiles
            return self._dynamic

    def _recompile_after_failure(self, failed_on: Any) -> None:
        """Replace the compiled model after a failed run.

        OpenVINO's CPU plugin (2026.4) keeps a failed shape inference in state that all infer
        requests share: the last input shape that worked then fails with the same error, on every
        thread, until some other shape runs - one bad request took a fixed-shape service down. A
        freshly compiled model has no such state; threads move to it on their next call.
        """
        if not any(d.startswith("CPU") for d in self._exec_devices):
            return
        with self._recompile_lock:
            if failed_on is self._dynamic:
                self._dynamic = None  # compiled afresh on its next use
                return
            if self.compiled is not failed_on:
                return  # another thread has already replaced it
            try:
                self.compiled = core().compile_model(self._read(static=True), self._target, self._config)
                self.recompiles += 1
            except Exception:  # keep the old one; the caller reports the original failure
                pass

    def run(self, feeds: dict[str, Any]) -> list[np.ndarray]:
        compiled = self._compiled_for(feeds)
        for name, arr in feeds.items():
            # An empty batch fails shape inference in the CPU plugin (and would cost a recompile);
            # other empty axes are fine: a decoder's first step feeds a past of length 0.
            if arr.ndim and arr.shape[0] == 0:
                raise InputMismatchError(f"OpenVINO cannot run empty tensors: input {name!r} has shape "
                                         f"{list(arr.shape)}; give at least one item in the batch")
        request = self._request(compiled)
        try:
            result = request.infer(feeds, share_inputs=True, share_outputs=False)
        except Exception as e:
            self._recompile_after_failure(compiled)
            raise EdgeAIError(f"OpenVINO failed while running the model: {_message(e)}") from e
        return list(result.to_tuple())

    def info(self) -> RuntimeInfo:
        return RuntimeInfo(engine="openvino", engine_version=ov.__version__.split("-")[0], device=self.device,
                           devices_in_effect=self._exec_devices, precision=self._precision,
                           threads=self._threads, streams=self._streams, load_time_s=self.load_time_s,
                           fallback=self._fallback, options=self._options)
