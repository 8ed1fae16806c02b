"""Device strings -> engines. Adding an engine is one module here and one line in ``ENGINES``.

Device strings: ``cpu``, ``cuda``, ``cuda:N``, ``tensorrt`` (onnxruntime), ``openvino`` (=AUTO),
``openvino:CPU|GPU|NPU|AUTO`` (also ``openvino:GPU.1``), ``torch`` (the PyTorch reference) and
``auto`` (the best device available here).
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeai.errors import DeviceUnavailableError, EdgeAIError
from edgeai.runtimes.base import Model, Runtime, RuntimeInfo

# engine name -> "module:class"; engine modules import their library, so they load lazily.
ENGINES = {
    "onnxruntime": "edgeai.runtimes.onnxruntime:OnnxRuntimeRuntime",
    "openvino": "edgeai.runtimes.openvino:OpenVINORuntime",
    "torch": "edgeai.runtimes.torch:TorchRuntime",
}

__all__ = ["Model", "Runtime", "RuntimeInfo", "DeviceRequest", "parse_device", "devices", "load", "ENGINES"]


@dataclass(frozen=True)
class DeviceRequest:
    device: str  # normalized device string
    engine: str
    target: str  # onnxruntime: CPU/CUDA/TensorRT; openvino: its device name
    index: int = 0


_ORT = {"cpu": "CPU", "cuda": "CUDA", "tensorrt": "TensorRT"}
_OV = {"CPU", "GPU", "NPU", "AUTO", "MULTI", "HETERO"}


def parse_device(device: str) -> DeviceRequest:
    """Parse and normalize a device string; an unknown form is an error listing the valid ones."""
    text = str(device).strip()
    low = text.lower()
    if low == "auto":
        return parse_device(best_device())
    if low == "torch":
        return DeviceRequest("torch", "torch", "CPU")
    m = re.fullmatch(r"(cpu|cuda|tensorrt)(?::(\d+))?", low)
    if m and not (m.group(1) == "cpu" and m.group(2)):
        idx = int(m.group(2) or 0)
        norm = m.group(1) if idx == 0 and not m.group(2) else f"{m.group(1)}:{idx}"
        return DeviceRequest(norm, "onnxruntime", _ORT[m.group(1)], idx)
    m = re.fullmatch(r"openvino(?::([A-Za-z]+)(\.\d+)?)?", text, flags=re.IGNORECASE)
    if m:
        target = (m.group(1) or "AUTO").upper()
        if target in _OV:
            full = target + (m.group(2) or "")
            return DeviceRequest(f"openvino:{full}", "openvino", full)
    raise DeviceUnavailableError(
        f"unknown device {device!r}; use cpu, cuda, cuda:N, tensorrt, openvino[:CPU|GPU|NPU|AUTO], torch or auto. "
        f"Devices here: {devices()}")


@functools.lru_cache(maxsize=1)
def _devices() -> tuple[str, ...]:
    found: list[str] = []
    try:
        from edgeai.runtimes.onnxruntime import available_targets

        found += [{"CPU": "cpu", "CUDA": "cuda", "TensorRT": "tensorrt"}[t] for t in available_targets()]
    except ImportError:
        pass
    try:
        from edgeai.runtimes.openvino import available_targets as ov_targets

        found += [f"openvino:{d}" for d in ov_targets()]
    except ImportError:
        pass
    return tuple(found)


def devices() -> list[str]:
    """Devices this machine can run ONNX models on now, best first per engine.

    ``cuda``/``tensorrt`` are listed when the onnxruntime build has the provider; a load then
    verifies the provider really initialized (see ``fallback``).
    """
    return list(_devices())


def best_device() -> str:
    found = devices()
    for pref in ("cuda", "openvino:GPU", "cpu"):
        if pref in found:
            return pref
    raise DeviceUnavailableError("no inference engine is installed; install onnxruntime or openvino")


def _engine(engine: str, device: str) -> Any:
    module_name, cls_name = ENGINES[engine].split(":")
    try:
        return getattr(importlib.import_module(module_name), cls_name)
    except ImportError as e:
        raise DeviceUnavailableError(f"device {device!r} needs the {engine} package, which is not installed "
                                     f"({e}); pip install {engine}") from e


def load(path: Any, device: str = "cpu", *, allow_cast: bool = False, fallback: bool = False,
         precision: str | None = None, check_values: bool = False, **options: Any) -> Model:
    """Load a model on a device and return the :class:`Model` every engine shares.

    Args:
        path: an ``.onnx`` file, a bundle folder (``edgeai deploy``), or, with ``device="torch"``,
            any model source (``zoo:NAME``, ``pkg.mod:factory``, an ``nn.Module``).
        device: a device string (see module docstring); ``auto`` picks the best one here.
        allow_cast: cast feeds of a compatible dtype (float64 -> float32, ...) instead of refusing.
        fallback: when the device (or precision) cannot be had, run on ``cpu`` with a warning and
            record the fallback in ``Model.describe()``, instead of raising.
        precision: ``f32`` (default), ``f16``, ``bf16`` or ``auto`` (the engine's own choice).
        check_values: check every run's values too: NaN/Inf or out-of-range token ids in inputs,
            NaN/Inf in outputs (see :class:`Model`); off by default, it costs a pass over each array.
        **options: engine options: ``threads``, ``cache_dir``; onnxruntime ``optimization``;
            OpenVINO ``hint`` (latency/throughput), ``streams``, ``static_shapes``.

    Raises:
        ModelLoadError: missing, corrupt or unsafe model file.
        DeviceUnavailableError: the device is unknown or not here (message lists those that are).
    """
    from edgeai.runtimes.base import parse_precision

    threads = options.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 0):
        raise EdgeAIError(f"threads must be a positive integer (0: the engine's default); got {threads!r}")
    if check_values:
        model = load(path, device, allow_cast=allow_cast, fallback=fallback, precision=precision, **options)
        model.check_values = True
        return model
    req = parse_device(device)
    prec = parse_precision(precision)
    if req.engine != "torch" and isinstance(path, (str, os.PathLike)) and Path(path).is_dir() \
            and (Path(path) / "manifest.json").exists():
        from edgeai.deployment import load_bundle

        return load_bundle(path, device, allow_cast=allow_cast, fallback=fallback, precision=precision, **options)
    if req.engine != "torch" and not isinstance(path, (str, os.PathLike)):
        raise EdgeAIError(f"device {device!r} runs ONNX files; got a {type(path).__name__}. Export it first "
                          "(edgeai.export) or use device='torch' for the PyTorch reference")
    if req.engine == "openvino" and req.target.split(".")[0] not in ("AUTO", "MULTI", "HETERO") \
            and req.device not in devices() and fallback:
        cpu_options = {k: v for k, v in options.items() if k in ("threads", "cache_dir")}
        dropped = sorted(k for k in options if k not in cpu_options) + (["precision"] if precision else [])
        why = (f"asked for {req.device}, which is not available here (devices: {devices()}); ran on cpu"
               + (f" without the OpenVINO-only option(s) {dropped}" if dropped else ""))
        warnings.warn(f"edgeai: {why}", stacklevel=2)
        runtime = _engine("onnxruntime", device)(path, "cpu", "CPU", 0, **cpu_options)
        return Model(runtime, allow_cast=allow_cast, source=str(path), fallback=(req.device, why))
    engine_cls = _engine(req.engine, device)
    if req.engine == "torch":
        runtime = engine_cls(path, req.device, precision=prec, **options)
    else:
        runtime = engine_cls(path, req.device, req.target, req.index, precision=prec, fallback=fallback, **options)
    info = runtime.info()
    if info.fallback:
        warnings.warn(f"edgeai: {info.fallback}", stacklevel=2)
    return Model(runtime, allow_cast=allow_cast, source=str(path) if isinstance(path, (str, os.PathLike)) else None)
