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

from edgeai.cpu import cpu_info
from edgeai.device_strings import devices
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


_NP_OF_TORCH = {"torch.float32": np.float32, "torch.float16": np.float16, "torch.int64": np.int64,
                "torch.int32": np.int32, "torch.bool": np.bool_, "torch.uint8": np.uint8, "torch.int8": np.int8}


def available_targets() -> list[str]:
    avail = set(ort.get_available_providers())
    return [t for t, p in PROVIDERS.items() if p in avail]


def _cache_entry(path: str | os.PathLike, proto: Any, cache_dir: str | os.PathLike, target: str,
                 optimization: str, model_bytes: bytes | None = None) -> tuple[Path | None, str]:
    """The cache file for this model and its state: ``hit``, ``miss``, or off (external data).

    The key is a hash of the file's bytes, the onnxruntime version, the target, the optimization
    level and the CPU (level ``all`` writes CPU-specific layouts), so that two files with the same
    name, an edited file or another machine sharing the folder never get someone else's graph.
    """

    from onnx import TensorProto

    if any(t.data_location == TensorProto.EXTERNAL for t in proto.graph.initializer):
        return None, "off: the model keeps its weights in external data"
    digest = hashlib.sha256()
    if model_bytes is not None:
        digest.update(model_bytes)
    else:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    cpu = cpu_info()
    digest.update(f"|{ort.__version__}|{target}|{optimization}|{cpu.model}|{','.join(cpu.features)}".encode())
    folder = Path(cache_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise EdgeAIError(f"cache_dir {cache_dir} is a file (or lies under one); give a folder") from None
    except OSError as e:
        raise EdgeAIError(f"cannot use cache_dir {cache_dir}: {e.strerror or e}") from None
    entry = folder / f"{Path(path).stem}-{digest.hexdigest()[:20]}.{target.lower()}.{optimization}.ort.onnx"
    return entry, "hit" if entry.exists() else "miss"


# Options of other engines, as the CLI spells them: a user who gave one should hear which engine takes it.
_OPENVINO_ONLY = {"static_shapes": "--shape", "streams": "--streams", "hint": "hint", "other_shapes": "other_shapes"}


def _unknown_options(device: str, unknown: dict[str, Any]) -> str:
    foreign = [k for k in sorted(unknown) if k in _OPENVINO_ONLY]
    if foreign:
        said = ", ".join(f"{_OPENVINO_ONLY[k]} ({k}=)" if _OPENVINO_ONLY[k] != k else f"{k}=" for k in foreign)
        return (f"{said} is an OpenVINO-only option: it does not apply to device {device!r} (onnxruntime), which "
                "runs any shape the model's dynamic axes allow. Drop it for this device, or use an openvino "
                "device (e.g. --device openvino:CPU)")
    return (f"unknown option(s) for onnxruntime: {sorted(unknown)}; known: threads, optimization, cache_dir, "
            "precision, fallback, spinning")


class OnnxRuntimeRuntime:
    """One ``InferenceSession``. ``session.run`` is thread-safe, so no lock is needed."""

    concurrent = True
    #: CUDA sessions take torch CUDA tensors as they are (Model skips the numpy conversion).
    device_tensors = False

    def __init__(self, path: str | os.PathLike, device: str, target: str, index: int = 0, *,
                 threads: int | None = None, optimization: str = "all", cache_dir: str | None = None,
                 precision: str = "f32", fallback: bool = False, model_bytes: bytes | None = None,
                 spinning: bool | None = None, **unknown: Any):
        if unknown:
            raise EdgeAIError(_unknown_options(device, unknown))
        if optimization not in _OPT_LEVELS:
            raise EdgeAIError(f"unknown optimization level {optimization!r}; use one of {list(_OPT_LEVELS)}")
        # model_bytes: the file's bytes as hashed by a bundle check; the session is built from them.
        proto = load_proto(path, data=model_bytes)
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
                raise DeviceUnavailableError(
                    f"device {device!r} needs {wanted}, which this onnxruntime build does not have "
                    f"(onnxruntime {ort.__version__}, providers {ort.get_available_providers()}). Devices here: "
                    f"{devices()}. Install edgeai[gpu] for CUDA, or pass --fallback (fallback=True in Python) to run on cpu.")
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
        if spinning is not None:
            # Idle intra-op threads busy-wait for the next kernel by default: fastest on an idle CPU,
            # but on a shared one they steal the cores the working thread needs (decode loops).
            so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        self._spinning = spinning
        cache_file, cache_tmp, self._cache = None, None, None
        if cache_dir:
            cache_file, self._cache = _cache_entry(path, proto, cache_dir, target, optimization, model_bytes)
            if self._cache == "hit":
                # Already optimized for this exact file, engine version, target and CPU: skip the passes.
                path, so.graph_optimization_level = cache_file, _OPT_LEVELS["disable"]
                model_bytes = None
            elif cache_file is not None:
                # Written beside its final name and renamed once the session exists: a reader never
                # sees half a file, and a failed or fallen-back load leaves nothing behind.
                cache_tmp = cache_file.with_name(f".{cache_file.stem}.{os.getpid()}.{threading.get_ident()}.tmp.onnx")
                so.optimized_model_filepath = str(cache_tmp)
        t0 = time.perf_counter()
        try:
            if model_bytes is not None:
                # External data (if any) is found beside the model file, as when loading by path.
                so.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                            str(Path(path).resolve().parent))
            self.session = ort.InferenceSession(model_bytes if model_bytes is not None else str(path), so,
                                                providers=providers)
        except Exception as e:
            if cache_tmp is not None:
                cache_tmp.unlink(missing_ok=True)
            raise ModelLoadError(f"onnxruntime could not load {path}: {str(e).strip().splitlines()[0][:400]}") from e
        self.load_time_s = time.perf_counter() - t0
        if cache_tmp is not None:
            if self.session.get_providers()[0] == wanted and cache_tmp.exists():
                os.replace(cache_tmp, cache_file)
                self._cache = "written"
            else:
                cache_tmp.unlink(missing_ok=True)
                self._cache = "not written"
        active = self.session.get_providers()
        self._fallback = None
        if active[0] != wanted:
            msg = (f"asked for {device!r} ({wanted}) but onnxruntime would run on {active[0]}; likely cause: "
                   f"{_LIKELY_CAUSE.get(wanted, 'provider failed to initialize')}")
            if not fallback:
                raise DeviceUnavailableError(msg + ". Pass --fallback (fallback=True in Python) to accept cpu.")
            self._fallback = msg
        self._active = tuple(active)
        self._threads = threads or so.intra_op_num_threads or os.cpu_count()
        self._output_names = [o.name for o in self.outputs]
        self._optimization = optimization
        # On CUDA, IO binding lets inputs already on the GPU (torch CUDA tensors) stay there and
        # skips onnxruntime's per-run staging; CPU sessions gain nothing from it.
        self._use_binding = active[0] in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
        self.device_tensors = self._use_binding
        self._device_id = index
        # CPU sessions call the binding's run directly: InferenceSession.run re-validates the feed
        # names in Python (Model.check_feeds has done that) and exists to retry on another provider
        # after a GPU provider fails, which a CPU-only session never does. ~2 us of a 40 us digits-CNN
        # call. onnxruntime's C++ Run still checks names, types and shapes.
        inner = getattr(self.session, "_sess", None)
        self._direct = inner.run if active == ["CPUExecutionProvider"] and hasattr(inner, "run") else None

    # UNVERIFIED: no GPU was available where this was written; the `cuda` tests exercise it.
    def _run_bound(self, feeds: dict[str, Any]) -> list[np.ndarray]:
        binding = self.session.io_binding()
        for name, value in feeds.items():
            if isinstance(value, np.ndarray):
                binding.bind_cpu_input(name, value)
            else:  # a torch CUDA tensor: bind its memory without a copy
                binding.bind_input(name, "cuda", self._device_id, _NP_OF_TORCH[str(value.dtype)],
                                   tuple(value.shape), value.data_ptr())
        for name in self._output_names:
            binding.bind_output(name, "cuda", self._device_id)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

    def run(self, feeds: dict[str, Any]) -> list[np.ndarray]:
        try:
            if self._direct is not None:
                return self._direct(self._output_names, feeds, None)
            if self._use_binding:
                return self._run_bound(feeds)
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
                           fallback=self._fallback,
                           options={"graph_optimization": self._optimization, "cache": self._cache,
                                    **({"spinning": self._spinning} if self._spinning is not None else {})})
