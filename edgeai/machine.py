"""What the machine is (CPU, cores, engine versions, thread settings) and how much memory this
process holds: the context every benchmark result records so it can be compared across boxes."""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from typing import Any

from edgeai import __version__
from edgeai.cpu import cpu_info


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (all models loaded in it), in MB."""
    try:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss / 1024 if platform.system() != "Darwin" else rss / 2**20
    except ImportError:  # Windows
        return float("nan")


def current_rss_mb() -> float:
    """Resident memory of this process now, in MB (psutil where installed, else /proc)."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, ValueError, AttributeError):
            return float("nan")


def device_memory_mb(runtime: Mapping[str, Any]) -> float | None:
    """GPU memory this process holds, via NVML, when a CUDA provider ran. UNTESTED: no GPU here."""
    active = list(runtime.get("devices_in_effect") or [])
    if not active or active[0] not in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
        return None
    try:
        import pynvml  # nvidia-ml-py; optional
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        device = str(runtime.get("device", "cuda"))
        handle = pynvml.nvmlDeviceGetHandleByIndex(int(device.split(":")[1]) if ":" in device else 0)
        used = [p.usedGpuMemory for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
                if p.pid == os.getpid() and p.usedGpuMemory is not None]
        return sum(used) / 2**20 if used else None
    except Exception:  # NVML missing or no permission: say nothing rather than guess
        return None


def physical_cores() -> int:
    """Physical cores (psutil where installed, else logical cores): the default thread count."""
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except ImportError:
        return os.cpu_count() or 1


# Distributions that provide each module (the GPU and OpenVINO builds of onnxruntime share its name).
_DISTRIBUTIONS = {"onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml")}


def engine_version(module: str) -> str | None:
    """The installed version of ``module``, without importing it (torch alone takes seconds)."""
    import sys
    from importlib import metadata

    if module in sys.modules:
        return str(getattr(sys.modules[module], "__version__", None) or "") or None
    for dist in _DISTRIBUTIONS.get(module, (module,)):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def machine_info() -> dict[str, Any]:
    """CPU model, cores, features, engine versions, thread settings: what makes results comparable."""
    versions = {mod: v for mod in ("onnxruntime", "openvino", "torch", "numpy") if (v := engine_version(mod))}

    return {"cpu": cpu_info().to_dict(), "physical_cores": physical_cores(), "platform": platform.platform(),
            "python": platform.python_version(), "edgeai": __version__, "engines": versions,
            "env_threads": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OV_NUM_THREADS")
                            if k in os.environ}}
