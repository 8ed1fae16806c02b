"""Device strings and precisions: parsed once, here, into values the rest of edgeai passes around.

Device strings: ``cpu``, ``cuda``, ``cuda:N``, ``tensorrt`` (onnxruntime), ``openvino`` (=AUTO),
``openvino:CPU|GPU|NPU|AUTO`` (also ``openvino:GPU.1``), ``torch`` (the PyTorch reference) and
``auto`` (the best device available here). :func:`parse_device` turns one into a
:class:`DeviceRequest`; code that needs the engine or target reads it from there, never from the
string. What is available is asked of the engine modules through the ``ENGINES`` registry, so this
module imports no engine library itself.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from edgeai.errors import DeviceUnavailableError, EdgeAIError
from edgeai.registry import import_attr

# engine name -> "module:class"; engine modules import their library, so they load lazily.
ENGINES = {
    "onnxruntime": "edgeai.runtimes.onnxruntime:OnnxRuntimeRuntime",
    "openvino": "edgeai.runtimes.openvino:OpenVINORuntime",
    "torch": "edgeai.runtimes.torch:TorchRuntime",
}
# engine name -> "module:function" listing the targets that engine can use on this machine.
_PROBES = {
    "onnxruntime": "edgeai.runtimes.onnxruntime:available_targets",
    "openvino": "edgeai.runtimes.openvino:available_targets",
}


@dataclass(frozen=True)
class DeviceRequest:
    device: str  # normalized device string
    engine: str
    target: str  # onnxruntime: CPU/CUDA/TensorRT; openvino: its device name
    index: int = 0


_ORT = {"cpu": "CPU", "cuda": "CUDA", "tensorrt": "TensorRT"}
_OV = {"CPU", "GPU", "NPU", "AUTO", "MULTI", "HETERO"}


def parse_device(device: str | DeviceRequest) -> DeviceRequest:
    """Parse and normalize a device string; an unknown form is an error listing the valid ones.

    A :class:`DeviceRequest` is returned as it is, so a parsed device can be passed on unchanged.
    """
    if isinstance(device, DeviceRequest):
        return device
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
        found += [{"CPU": "cpu", "CUDA": "cuda", "TensorRT": "tensorrt"}[t]
                  for t in import_attr(_PROBES["onnxruntime"])()]
    except ImportError:
        pass
    try:
        found += [f"openvino:{d}" for d in import_attr(_PROBES["openvino"])()]
    except ImportError:
        pass
    return tuple(found)


def devices() -> list[str]:
    """Devices this machine can run ONNX models on now, best first per engine.

    ``cuda``/``tensorrt`` are listed when the onnxruntime build has the provider; a load then
    verifies the provider really initialized (see ``fallback``).
    """
    return list(_devices())


def describe_devices() -> dict[str, str]:
    """Every device string usable here -> what it runs on: the devices found, then ``openvino``,
    ``torch`` and ``auto`` with what they map to on this machine (for ``edgeai devices``)."""
    import importlib.util

    found = devices()
    out = {d: _WHAT.get(d.split(":")[0], "") if not d.startswith("openvino:") else
           f"OpenVINO, {d.split(':', 1)[1]} plugin" for d in found}
    ov = [d.split(":", 1)[1] for d in found if d.startswith("openvino:")]
    if ov:
        out["openvino"] = f"= openvino:AUTO: OpenVINO picks among {', '.join(ov)} at load time"
    if importlib.util.find_spec("torch") is not None:  # find_spec: no `import torch` just to list it
        out["torch"] = ("the PyTorch reference on CPU: takes a PyTorch source (zoo:NAME, pkg.mod:factory, a "
                        "transformers folder), not an .onnx file; for check --reference and bench --baseline")
    if found:
        out["auto"] = f"= {best_device()} here (the first available of cuda, openvino:GPU, cpu)"
    return out


_WHAT = {"cpu": "ONNX Runtime, CPUExecutionProvider", "cuda": "ONNX Runtime, CUDAExecutionProvider",
         "tensorrt": "ONNX Runtime, TensorrtExecutionProvider (CUDA for unsupported nodes)"}


def best_device() -> str:
    found = devices()
    for pref in ("cuda", "openvino:GPU", "cpu"):
        if pref in found:
            return pref
    raise DeviceUnavailableError("no inference engine is installed; install onnxruntime or openvino")


def engine_class(engine: str, device: str) -> Any:
    """The Runtime class of an engine (loading its module, and so its library, now)."""
    try:
        return import_attr(ENGINES[engine])
    except ImportError as e:
        raise DeviceUnavailableError(f"device {device!r} needs the {engine} package, which is not installed "
                                     f"({e}); pip install {engine}") from e




def parse_precision(precision: str | None) -> str:
    """``None``/``fp32``/``float16``/... -> one of ``f32``, ``f16``, ``bf16``, ``auto``."""
    p = (precision or "f32").lower()
    p = {"fp32": "f32", "float32": "f32", "fp16": "f16", "float16": "f16", "bfloat16": "bf16"}.get(p, p)
    if p in ("int8", "int4", "uint8", "i8", "i4", "q8", "q4", "nf4"):
        # A quantized precision is a property of the file, not a switch of the engine.
        raise EdgeAIError(f"precision {precision!r} is a quantization, not a load precision: quantize the file "
                          "first (`edgeai quantize MODEL -o MODEL.q.onnx --mode auto`, or edgeai.quantize(...); "
                          "INT8 modes only, there is no INT4 mode yet) and load that file; it runs at the precision "
                          "its graph holds. Load precisions: f32, f16, bf16, auto")
    if p not in ("f32", "f16", "bf16", "auto"):
        raise DeviceUnavailableError(f"unknown precision {precision!r}; use f32, f16, bf16 or auto")
    return p


# Lower is smaller and coarser. A precision may carry a suffix ("int8+f32": int8 where quantized).
PRECISION_RANK = {"int4": 0, "int8": 0, "f16": 1, "bf16": 1, "mixed": 1, "f32": 2}


def precision_rank(precision: str | None, unknown: int = 2) -> int:
    """Where a precision string sorts: int8 < f16/bf16/mixed < f32; ``unknown`` for anything else."""
    return PRECISION_RANK.get(str(precision or "").split("+")[0], unknown)
