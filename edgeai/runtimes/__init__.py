"""Engines behind one :class:`Model`: ``load(path, device)``. Adding an engine is one module here and
one line in :data:`edgeai.device_strings.ENGINES`. Device strings are parsed in :mod:`edgeai.device_strings`.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from edgeai.bundle import Bundle, is_bundle
from edgeai.device_strings import (
    ENGINES,
    DeviceRequest,
    best_device,
    devices,
    engine_class,
    parse_device,
    parse_precision,
)
from edgeai.errors import EdgeAIError
from edgeai.onnxfile import load_proto, read_metadata
from edgeai.runtimes.base import Model, Runtime, RuntimeInfo

__all__ = ["Model", "Runtime", "RuntimeInfo", "DeviceRequest", "parse_device", "parse_precision", "devices",
           "best_device", "load", "load_bundle", "recorded_run", "ENGINES"]


# Like OMP_NUM_THREADS for every engine: where a process shares its cores (a container's CPU quota,
# parallel test workers, several models in one app) the engines' pools, sized to every core and
# spinning while they wait, steal each other's cycles. An explicit ``threads=`` still wins.
THREADS_ENV = "EDGEAI_THREADS"


def _env_threads() -> int:
    raw = os.environ.get(THREADS_ENV, "")
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise EdgeAIError(f"{THREADS_ENV}={raw!r} must be a whole number of threads >= 0 (0: the engine's default)")
    return value


def load(path: Any, device: str | None = None, *, allow_cast: bool = False, fallback: bool = False,
         precision: str | None = None, check_values: bool = False, **options: Any) -> Model:
    """Load a model on a device and return the :class:`Model` every engine shares.

    Args:
        path: an ``.onnx`` file, a bundle folder (``edgeai deploy``), or, with ``device="torch"``,
            any model source (``zoo:NAME``, ``pkg.mod:factory``, an ``nn.Module``).
        device: a device string (see module docstring); ``auto`` picks the best one here. None (the
            default): the way the file's metadata records (``run_with``, written by
            ``edgeai quantize --mode auto --device auto``: device, precision, engine options), said
            in ``describe().recorded``; a file without that record runs on ``cpu``. An explicit
            device always wins over the record.
        allow_cast: cast feeds of a compatible dtype (float64 -> float32, ...) instead of refusing.
        fallback: when the device (or precision) cannot be had, run on ``cpu`` with a warning and
            record the fallback in ``Model.describe()``, instead of raising.
        precision: ``f32`` (default), ``f16``, ``bf16`` or ``auto`` (the engine's own choice).
        check_values: check every run's values too: NaN/Inf or out-of-range token ids in inputs,
            NaN/Inf in outputs (see :class:`Model`); off by default, it costs a pass over each array.
        **options: engine options: ``threads`` (default: ``$EDGEAI_THREADS``, else the engine's
            own), ``cache_dir``; onnxruntime ``optimization``, ``spinning`` (False: idle intra-op
            threads sleep instead of busy-waiting; None: its default); OpenVINO ``hint``
            (latency/throughput), ``streams``, ``static_shapes``.

    Raises:
        ModelLoadError: missing, corrupt or unsafe model file.
        DeviceUnavailableError: the device is unknown or not here (message lists those that are).
    """
    if options.get("threads") is None and os.environ.get(THREADS_ENV):
        options["threads"] = _env_threads()
    threads = options.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 0):
        raise EdgeAIError(f"threads must be a positive integer (0: the engine's default); got {threads!r}")
    if device is None:
        return _load_recorded(path, allow_cast=allow_cast, fallback=fallback, precision=precision,
                              check_values=check_values, **options)
    if check_values:
        model = load(path, device, allow_cast=allow_cast, fallback=fallback, precision=precision, **options)
        model.check_values = True
        return model
    req = parse_device(device)
    prec = parse_precision(precision)
    if req.engine == "torch" and isinstance(path, (str, os.PathLike)) and (
            str(path).endswith(".onnx") or is_bundle(path)):
        raise EdgeAIError(f"device 'torch' runs a model's PyTorch original (zoo:NAME, pkg.mod:factory, a "
                          f"transformers folder), not an exported file like {os.fspath(path)!r}. Run the file on "
                          f"{' or '.join(devices()) or 'cpu'}; to compare it with its PyTorch original use "
                          f"`edgeai check {os.fspath(path)} --reference zoo:NAME` (or edgeai.compare)")
    if req.engine != "torch" and is_bundle(path):
        return load_bundle(path, device, allow_cast=allow_cast, fallback=fallback, precision=precision, **options)
    if req.engine != "torch" and not isinstance(path, (str, os.PathLike)):
        raise EdgeAIError(f"device {device!r} runs ONNX files; got a {type(path).__name__}. Export it first "
                          "(edgeai.export) or use device='torch' for the PyTorch reference")
    if req.engine == "openvino" and req.target.split(".")[0] not in ("AUTO", "MULTI", "HETERO") \
            and req.device not in devices() and fallback:
        cpu_options = {k: v for k, v in options.items() if k in ("threads", "cache_dir", "model_bytes")}
        dropped = sorted(k for k in options if k not in cpu_options) + (["precision"] if precision else [])
        why = (f"asked for {req.device}, which is not available here (devices: {devices()}); ran on cpu"
               + (f" without the OpenVINO-only option(s) {dropped}" if dropped else ""))
        warnings.warn(f"edgeai: {why}", stacklevel=2)
        runtime = engine_class("onnxruntime", device)(path, "cpu", "CPU", 0, **cpu_options)
        return Model(runtime, allow_cast=allow_cast, source=str(path), fallback=(req.device, why))
    engine_cls = engine_class(req.engine, device)
    if req.engine == "torch":
        runtime = engine_cls(path, req.device, precision=prec, **options)
    else:
        runtime = engine_cls(path, req.device, req.target, req.index, precision=prec, fallback=fallback, **options)
    info = runtime.info()
    if info.fallback:
        warnings.warn(f"edgeai: {info.fallback}", stacklevel=2)
    return Model(runtime, allow_cast=allow_cast, source=str(path) if isinstance(path, (str, os.PathLike)) else None)


def recorded_run(path: Any) -> dict[str, Any] | None:
    """The ``run_with`` record in an ``.onnx`` file's edgeai metadata, or None (no file, no record)."""
    if not isinstance(path, (str, os.PathLike)) or not str(path).endswith(".onnx") or not os.path.isfile(path):
        return None
    try:
        record = read_metadata(load_proto(path)).get("run_with")
    except EdgeAIError:
        return None  # the load itself reports a bad file, with its own message
    return record if isinstance(record, dict) and record.get("device") else None


def _load_recorded(path: Any, *, precision: str | None, **options: Any) -> Model:
    """``load(path)`` without a device: the recorded device, precision and engine options, or cpu.

    Options given to ``load`` win over recorded ones. A recorded device or precision this machine
    lacks (the file moved to another box) runs on cpu at FP32 with a warning, and ``describe()``
    says so in ``fallback``.
    """
    record = recorded_run(path)
    if record is None:
        return load(path, "cpu", precision=precision, **options)
    device, recorded = str(record["device"]), dict(record.get("load") or {})
    engine_options = {k: v for k, v in recorded.items() if k != "precision"}
    prec = precision if precision is not None else recorded.get("precision")
    settings = ", ".join(f"{k}={v}" for k, v in (record.get("engine_config") or {}).items())
    what = (f"{device} at {record.get('precision', prec or 'f32')}" + (f" ({settings})" if settings else "")
            + f", as recorded in the file's metadata by {record.get('chosen_by', 'edgeai')}"
            + (f" on {record['cpu']}" if record.get("cpu") else ""))
    try:
        model = load(path, device, precision=prec, **{**engine_options, **options})
    except EdgeAIError as e:
        why = f"the file records {what}, which failed here ({str(e).splitlines()[0][:200]}); ran on cpu at f32"
        warnings.warn(f"edgeai: {why}", stacklevel=3)
        model = load(path, "cpu", **{k: v for k, v in options.items() if k in ("threads", "cache_dir", "allow_cast", "check_values")})
        model.record_fallback(why)
        return model
    model.record_recorded(what)
    return model


def load_bundle(path: str | os.PathLike | Bundle, device: str | DeviceRequest = "cpu", *,
                variant: str | None = None, **options: Any) -> Model:
    """``edgeai.load(BUNDLE, device)``: pick, verify and load the variant for ``device``.

    The variant made for ``device`` (or the one named ``variant``) is sha256-verified before its
    file is handed to an engine; ``model.source`` names the bundle and variant. A variant that was
    not checked on ``device`` still runs, with a warning, and the model records why.

    Raises:
        ModelLoadError: not a bundle, an incompatible manifest version, or a file that does not
            match its sha256 (tampered or corrupted).
        DeviceUnavailableError: no variant can run on ``device``.
    """
    bundle = path if isinstance(path, Bundle) else Bundle(path)
    for note in bundle.notes:
        warnings.warn(f"edgeai: {bundle.path}: {note}", stacklevel=3)
    chosen = bundle.variant(variant) if variant else bundle.select(device)
    # The engine gets the very bytes that were hashed: no window between the check and its read.
    file, blob, data_identity = bundle.read_verified(chosen)
    model = load(file, device, model_bytes=blob, **options)
    bundle.data_unchanged(data_identity)
    model.source = f"{bundle.path} [variant {chosen.name}: {chosen.file}]"
    requested = model.describe().device
    if requested not in chosen.devices and requested not in bundle.defaults:
        # Runs, but its parity and latency were measured elsewhere: say so, and record it.
        why = (f"bundle variant {chosen.name!r} was checked on {list(chosen.devices)}, not on {requested}; "
               f"re-deploy with --device {requested} to check it there")
        warnings.warn(f"edgeai: {why}", stacklevel=3)
        model.record_fallback(why)
    return model
