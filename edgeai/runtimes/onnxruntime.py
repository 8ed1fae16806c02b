"""ONNX Runtime engine: CPU, CUDA (``cuda:N``) and TensorRT execution providers."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edgeai.errors import DeviceUnavailableError, EdgeAIError, InputMismatchError, ModelLoadError
from edgeai.onnxfile import graph_precision, io_specs, load_proto
from edgeai.runtimes.base import RuntimeInfo

ort.set_default_logger_severity(3)  # errors reach users as EdgeAIError, not as C++ log lines

PROVIDERS = {"CPU": "CPUExecutionProvider", "CUDA": "CUDAExecutionProvider", "TensorRT": "TensorrtExecutionProvider"}
_OPT_LEVELS = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
               "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
_LIKELY_CAUSE = {
    "CUDAExecutionProvider": "the CUDA/cuDNN libraries were not found or no GPU is visible; "
                             "install edgeai[gpu] and check `nvidia-smi` and LD_LIBRARY_PATH",
    "TensorrtExecutionProvider": "the TensorRT libraries were not found; install TensorRT matching onnxruntime-gpu",
}


def _content_key(path: Path) -> str:
    """sha256 of the model file (and size and mtime of its external data), plus the onnxruntime version."""
    h = hashlib.sha256(ort.__version__.encode())
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    data = Path(str(path) + ".data")
    if data.exists():  # weights beside a >2 GB model: hashing them on every start would cost seconds
        st = data.stat()
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def available_targets() -> list[str]:
    avail = set(ort.get_available_providers())
    return [t for t, p in PROVIDERS.items() if p in avail]


class OnnxRuntimeRuntime:
    """One ``InferenceSession``. ``session.run`` is thread-safe, so no lock is needed."""

    concurrent = True

    def __init__(self, path: str | os.PathLike, device: str, target: str, index: int = 0, *,
                 threads: int | None = None, optimization: str = "all", cache_dir: str | None = None,
                 precision: str = "f32", fallback: bool = False, **unknown: Any):
        if unknown:
            raise EdgeAIError(f"unknown option(s) for onnxruntime: {sorted(unknown)}; "
                              "known: threads, optimization, cache_dir, precision, fallback")
        if optimization not in _OPT_LEVELS:
            raise EdgeAIError(f"unknown optimization level {optimization!r}; use one of {list(_OPT_LEVELS)}")
        proto = load_proto(path)
        self.inputs, self.outputs = io_specs(proto)
        self._graph_precision = graph_precision(proto)
        if precision not in ("f32", "auto") and precision != self._graph_precision:
            # onnxruntime executes the graph's own types; it has no precision switch to flip.
            raise DeviceUnavailableError(
                f"onnxruntime runs the graph at its own precision ({self._graph_precision}); precision={precision!r} "
                f"cannot be applied — convert the file (edgeai quantize --mode fp16) or use an openvino device")
        self.device, self._target = device, target
        wanted = PROVIDERS[target]
        if wanted not in ort.get_available_providers():
            if not fallback:
                from edgeai.runtimes import devices

                raise DeviceUnavailableError(
                    f"device {device!r} needs {wanted}, which this onnxruntime build does not have "
                    f"(onnxruntime {ort.__version__}, providers {ort.get_available_providers()}). Devices here: "
                    f"{devices()}. Install edgeai[gpu] for CUDA, or pass fallback=True to run on cpu.")
        providers: list[Any] = []
        if wanted not in ort.get_available_providers():
            pass  # fallback=True: CPU only; the mismatch below records it
        elif target == "TensorRT":
            providers.append((wanted, {"device_id": index}))
            providers.append(("CUDAExecutionProvider", {"device_id": index}))
        elif target == "CUDA":
            providers.append((wanted, {"device_id": index}))
        providers.append("CPUExecutionProvider")

        so = ort.SessionOptions()
        so.log_severity_level = 4  # FATAL only: errors reach users once, as EdgeAIError, not as a log line too
        so.graph_optimization_level = _OPT_LEVELS[optimization]
        if threads:
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
        pending = None
        if cache_dir:
            # The optimized graph is written once and loaded on later starts (cold-start cache). It is
            # keyed by the model's content and the onnxruntime version: keyed by name and mtime, a
            # file replaced by an older-dated one (cp -p, tar, rsync) or another model.onnx sharing
            # the cache got the stale graph of a different model.
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            cached = Path(cache_dir) / (f"{Path(path).stem}.{_content_key(Path(path))}.{target.lower()}."
                                        f"{optimization}.ort.onnx")
            if cached.exists():
                path, so.graph_optimization_level = cached, _OPT_LEVELS["disable"]
            else:
                # onnxruntime writes it while building the session: into a temp, renamed once complete.
                pending = (cached.with_name(f".{cached.stem}.{os.getpid()}.{threading.get_ident()}.onnx"), cached)
                so.optimized_model_filepath = str(pending[0])
        t0 = time.perf_counter()
        try:
            self.session = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as e:
            raise ModelLoadError(f"onnxruntime could not load {path}: {str(e).strip().splitlines()[0][:400]}") from e
        finally:
            if pending is not None and pending[0].exists():
                if hasattr(self, "session"):
                    os.replace(*pending)
                else:
                    pending[0].unlink()
        self.load_time_s = time.perf_counter() - t0
        active = self.session.get_providers()
        self._fallback = None
        if active[0] != wanted:
            msg = (f"asked for {device!r} ({wanted}) but onnxruntime would run on {active[0]}; likely cause: "
                   f"{_LIKELY_CAUSE.get(wanted, 'provider failed to initialize')}")
            if not fallback:
                raise DeviceUnavailableError(msg + ". Pass fallback=True to accept cpu.")
            self._fallback = msg
        self._active = tuple(active)
        self._threads = threads or so.intra_op_num_threads or os.cpu_count()
        self._output_names = [o.name for o in self.outputs]
        self._optimization = optimization

    def run(self, feeds: dict[str, Any]) -> list[np.ndarray]:
        try:
            return self.session.run(self._output_names, feeds)
        except Exception as e:  # onnxruntime raises its own Fail/InvalidArgument types
            first = str(e).strip().splitlines()[0][:500]
            if "INVALID_ARGUMENT" in first or "Got invalid dimensions" in first:
                raise InputMismatchError(f"onnxruntime rejected the inputs: {first}") from e
            raise EdgeAIError(f"onnxruntime failed while running the model: {first}") from e

    def info(self) -> RuntimeInfo:
        return RuntimeInfo(engine="onnxruntime", engine_version=ort.__version__, device=self.device,
                           devices_in_effect=self._active, precision=self._graph_precision,
                           threads=self._threads, streams=1, load_time_s=self.load_time_s,
                           fallback=self._fallback, options={"graph_optimization": self._optimization})
