"""``edgeai deploy``: export -> quantize per device -> check -> bench, into one verifiable bundle.

The bundle is built in a temp folder beside the destination and renamed into place only when every
stage succeeded, so an existing bundle is replaced only by a complete one. Its format and loading
live in :mod:`edgeai.bundle`; this module runs the pipeline and renders what it found.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeai import __version__
from edgeai.atomic import exchange, fsync, temp_name, write_text
from edgeai.bench import MatrixResult, bench_matrix
from edgeai.bundle import (
    FORMAT,
    MANIFEST,
    MANIFEST_VERSION,
    Bundle,
    Variant,
    describe_bundle,
    sha256_file,
)
from edgeai.cpu import cpu_info
from edgeai.errors import (
    DeviceUnavailableError,
    EdgeAIError,
    InputMismatchError,
    ParityError,
    QuantizationError,
    WriteError,
)
from edgeai.exporters import ExportResult, export
from edgeai.feeds import Feeds, evaluation_feeds
from edgeai.onnxfile import copy_onnx_file, data_file, graph_precision, io_specs, load_proto
from edgeai.parity import ParityReport, Tolerance, compare
from edgeai.plots import bundle_plot
from edgeai.quantization import MODES as QMODES
from edgeai.quantization import QuantizeResult, ToleranceNotMet, quantize
from edgeai.readset import check_output, in_scope
from edgeai.registry import module_available
from edgeai.report import progress, report_markdown, to_json
from edgeai.runtimes import devices as available
from edgeai.runtimes import load, load_bundle, parse_device
from edgeai.runtimes.base import Model
from edgeai.sources import resolve
from edgeai.specs import TensorSpec, apply_dynamic_axes
from edgeai.speedup import estimate_from_rounds

__all__ = ["deploy", "DeployResult", "Bundle", "Variant", "load_bundle", "describe_bundle", "report_markdown", "MODES"]

MODES = ("auto", "static", "dynamic", "fp16", "openvino-int8", "none")
_CALIBRATED = ("auto", "static", "openvino-int8")
_TAGS = {"static": "int8-static", "dynamic": "int8-dynamic", "fp16": "fp16", "openvino-int8": "int8-openvino"}


@dataclass(frozen=True)
class DeployResult:
    """What ``deploy`` wrote and found: the manifest (the whole story) and the stage results."""

    path: Path
    manifest: dict[str, Any]
    passed: bool
    time_s: float
    notes: tuple[str, ...] = ()
    export: ExportResult | None = None  # None for an .onnx source
    quantizations: tuple[QuantizeResult, ...] = ()
    parity: tuple[ParityReport, ...] = field(default=(), repr=False)  # one per (variant, device)
    bench: MatrixResult | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "passed": self.passed, "time_s": round(self.time_s, 2),
                "notes": list(self.notes), "manifest": self.manifest}


def _slug(device: str) -> str:
    return device.replace(":", "-").replace(".", "-")


def _check_devices(devices: Sequence[str]) -> list[str]:
    """Normalized, de-duplicated target devices; each must be here, since every variant is measured on it."""
    if isinstance(devices, str):
        devices = [devices]
    if not devices:
        raise EdgeAIError("give at least one target device, e.g. --device cpu --device openvino:CPU")
    here = available()
    out: list[str] = []
    for d in devices:
        req = parse_device(d)
        if req.engine == "torch":
            raise EdgeAIError("device 'torch' is the PyTorch reference, not a deployment target; use cpu, cuda, "
                              "tensorrt or openvino[:CPU|GPU|NPU]")
        ok = req.device in here or (req.engine == "openvino" and req.target == "AUTO"
                                    and any(h.startswith("openvino") for h in here))
        if not ok:
            raise DeviceUnavailableError(f"cannot deploy for {req.device}: it is not on this machine, and deploy "
                                         f"checks and benchmarks every variant on its device. Devices here: {here}")
        if req.device not in out:
            out.append(req.device)
    return out


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise QuantizationError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    if mode == "none":
        return

    target = QMODES.get(mode)
    if target is None or not module_available(target):
        raise QuantizationError(f"mode {mode!r} is not available in this edgeai build; use one of "
                                f"{', '.join(m for m in MODES if m == 'none' or _mode_available(m))}")


def _mode_available(mode: str) -> bool:
    return mode in QMODES and module_available(QMODES[mode])


def _check_destination(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise EdgeAIError(f"{out} is a file; the bundle is a folder: choose another -o")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).exists():
        raise EdgeAIError(f"{out} exists and is not an edgeai bundle (no {MANIFEST}); refusing to replace it: "
                          "choose another -o or empty it")


def _own_files(bundle: Path) -> set[str]:
    """The names in an existing bundle that an earlier ``deploy`` wrote: its manifest's files, the
    manifest and the reports. Anything else in the folder is the user's, and is kept."""
    names = {MANIFEST, "report.md", "report.png"}
    try:
        old = Bundle(bundle)
    except EdgeAIError:  # a damaged manifest: only the names deploy always uses are ours
        return names | {p.name for p in bundle.glob("model.*.onnx")} | {p.name for p in bundle.glob("model.*.onnx.data")}
    for v in old.variants:
        names.add(v.file)
        if v.data_file:
            names.add(v.data_file)
    return names


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # the same file under both names: nothing is copied, nothing can differ
    except OSError:
        shutil.copy2(src, dst)


def _carry_user_files(out: Path, tmp: Path) -> list[str]:
    """Put every entry of the old bundle that deploy did not write into the new one (hard links)."""
    own, carried = _own_files(out), []
    for entry in sorted(out.iterdir()):
        if entry.name in own:
            continue
        target = tmp / entry.name
        if os.path.lexists(target):
            raise EdgeAIError(f"{entry} is not a file of the old bundle, and the new bundle has a file of that name; "
                              "move it out of the bundle folder and deploy again (nothing was replaced)")
        if entry.is_symlink():
            os.symlink(os.readlink(entry), target)
        elif entry.is_dir():
            shutil.copytree(entry, target, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(str(entry), str(target))
        carried.append(entry.name)
    return carried


def _publish(tmp: Path, out: Path) -> list[str]:
    """Put the finished bundle at ``out``; return notes.

    A new destination is a plain rename. An existing bundle is swapped with the new one in one
    atomic step (:func:`edgeai.atomic.exchange`), so ``out`` always holds a complete bundle, old or
    new. Files in the old bundle that deploy did not write (the user's, such as the ``--data`` it
    read) are hard-linked into the new one first; afterwards only the old bundle's own files are
    deleted. Where the OS has no atomic exchange, the old bundle is renamed aside and the new one
    renamed in: a crash between the two leaves the old bundle beside ``out`` (``.NAME.old-*``).
    """
    _check_destination(out)
    # Temp files are private (0600); give the bundle the modes a plainly created file gets (umask).
    probe = tmp / ".mode-probe"
    probe.touch()
    mode = probe.stat().st_mode & 0o666
    probe.unlink()
    for f in tmp.iterdir():
        f.chmod(mode)
    if not out.exists():
        try:
            os.rename(tmp, out)  # an empty folder created meanwhile is replaced; a non-empty one refuses
        except OSError as e:
            raise EdgeAIError(f"cannot put the bundle at {out}: {e.strerror or e}; nothing was written") from e
        fsync(out.parent)
        return []
    carried = _carry_user_files(out, tmp)
    own = _own_files(out)
    if exchange(tmp, out):
        old, notes = tmp, []
    else:
        old = out.parent / temp_name(out.name, f".old-{uuid.uuid4().hex[:8]}")
        os.replace(out, old)
        try:
            os.replace(tmp, out)
        except BaseException:
            os.replace(old, out)
            raise
        notes = [f"this file system has no atomic folder exchange: {out} was replaced by two renames"]
    fsync(out.parent)
    for name in [*own, *carried]:  # the old bundle's own files, and the links to what was carried over
        path = old / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    try:
        old.rmdir()
    except OSError:  # something appeared in the old bundle meanwhile: keep it, say where
        notes.append(f"files added to the old bundle while deploy ran were kept in {old}")
    return notes


def _materialize(data: Any) -> Any:
    """A generator of feeds would be spent by its first reader; keep it as a list."""
    if data is None or isinstance(data, (str, os.PathLike, list, tuple, Mapping)):
        return data
    try:
        return list(data)
    except EdgeAIError:
        raise
    except Exception as e:  # a user's generator that fails midway is bad data, not a crash
        raise InputMismatchError(f"the data generator failed after some samples: {type(e).__name__}: "
                                 f"{str(e)[:200]}") from e


def _parity_feeds(eval_inputs: Any, calibration: Any, specs: list[TensorSpec], samples: int) -> tuple[Feeds, str]:
    """The feeds quantize() judges its own result on (so its gate and deploy's check agree), and what they are."""
    feeds = evaluation_feeds(eval_inputs, calibration, specs, samples)
    if feeds.kind == "data":
        return feeds, f"{feeds.count} feeds of the given evaluation data"
    if feeds.kind == "calibration":
        return feeds, f"the first {feeds.count} calibration samples (pass separate data with --data)"
    return feeds, f"{feeds.count} random samples at batch 2 (pass real data with --data or --calib)"


def _summary(report: Any) -> dict[str, Any]:
    w = report.worst
    return {"passed": report.passed, "verdict": report.verdict(), "samples": report.samples,
            "precision_in_effect": report.candidate.get("precision"), "worst_output": w.name,
            "max_abs": w.max_abs, "cosine": w.cosine, "top1": w.top1, "tolerance": report.tolerance.to_dict(),
            # what the verdict rests on, and each output's kind (the metric that judged it)
            "data": report.data, "warnings": list(report.warnings), "kinds": {o.name: o.kind for o in report.outputs}}


def _engines() -> dict[str, str]:
    """Versions of the libraries that made and checked the bundle (torch etc. only where used)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("onnxruntime", "openvino", "onnx", "numpy", "torch", "transformers", "nncf", "onnxconverter-common"):
        module = sys.modules.get(name.replace("-", "_"))
        if module is None and name not in ("onnxruntime", "openvino", "onnx", "numpy"):
            continue
        try:
            out[name] = getattr(module, "__version__", None) or version(name)
        except PackageNotFoundError:
            continue
    return out


@in_scope
def deploy(source: Any, out: str | os.PathLike, *, devices: Sequence[str] = ("cpu",), mode: str = "auto",
           calibration: Any = None, eval_inputs: Any = None, samples: int = 16, tolerance: Any = None,
           example_inputs: Any = None, inputs: Sequence[Any] | None = None, output_names: Sequence[str] | None = None,
           dynamic_axes: Mapping[str, Mapping[int, str]] | None = None, task: str | None = None,
           opset: int | None = None, exporter: str = "auto", preprocessing: Mapping[str, Any] | None = None,
           labels: Sequence[str] | None = None, iterations: int = 100, rounds: int = 5,
           fallback_fp32: bool = False, force: bool = False, name: str | None = None,
           **quantize_options: Any) -> DeployResult:
    """Export, quantize for each device, check parity and benchmark; write a bundle folder.

    Args:
        source: what ``edgeai.export`` takes (``zoo:cnn``, ``pkg.mod:factory``, an ``nn.Module``
            with ``example_inputs``, a transformers folder with ``task``), or an FP32 ``.onnx`` file.
        out: the bundle folder. Built beside it and renamed into place on success; an existing
            bundle is replaced only then, and a folder that is not a bundle is never replaced.
        devices: target devices; each must be on this machine (variants are measured there).
        mode: ``auto`` (the accuracy-aware search, run per device), ``static``, ``dynamic``,
            ``fp16``, ``openvino-int8`` (one file, checked on every device) or ``none`` (FP32 only).
        calibration: calibration data (see ``edgeai.quantization.calibration``); None: random, warned.
        eval_inputs: parity data; default the calibration data if real, else random samples.
        tolerance: a :class:`~edgeai.parity.Tolerance` for every variant, or a dict of limits
            (``{"min_cosine": 0.99}``) overriding each variant's default; None: defaults by precision.
        preprocessing: what an app must do to raw data before feeding the model (free-form JSON).
        labels: class names for a classifier's outputs.
        iterations, rounds: timed runs per (variant, device) at batch 1, interleaved in rounds.
        fallback_fp32: where a quantized variant fails parity on a device, ship FP32 for it (the
            manifest records why) instead of failing.
        force: write the bundle even when a check fails (``passed`` is false; exit code 1 on the CLI).
        name: how the manifest names the source (default: the source string; an ``nn.Module`` is
            otherwise just "module").
        **quantize_options: passed to ``edgeai.quantize`` (``per_channel``, ``calibrate_method``...).

    Returns:
        A :class:`DeployResult` whose ``manifest`` is what ``manifest.json`` holds.

    Raises:
        EdgeAIError / DeviceUnavailableError / QuantizationError: bad input, found before any work.
        ExportError, QuantizationError (``ToleranceNotMet``, exit 1), ParityError (exit 1): a stage
            failed; nothing was written.
    """
    t0 = time.perf_counter()
    out = Path(out)
    if out.resolve() in (Path.cwd().resolve(), *Path.cwd().resolve().parents):
        raise EdgeAIError(f"-o {out} is the current folder or one above it; give the bundle its own folder name, "
                          "e.g. -o model-bundle")
    targets = _check_devices(devices)
    _check_mode(mode)
    _check_destination(out)
    if samples < 1 or iterations < 1 or rounds < 1:
        raise EdgeAIError("samples, iterations and rounds must be >= 1")
    check_output(out)  # a file this call reads, or a folder inside a bundle it reads
    calibration, eval_inputs = _materialize(calibration), _materialize(eval_inputs)
    tmp = out.parent / temp_name(out.name, f".tmp-{uuid.uuid4().hex[:8]}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as e:
        raise WriteError(out, e) from e
    jobs = 0 if mode == "none" else len(targets) if mode == "auto" else 1
    total = 1 + jobs + (jobs + 1) * len(targets) + 2
    try:
        with progress("export", total=total) as step:
            state = _Pipeline(source, tmp, targets, mode, step)
            state.name = name
            state.export(example_inputs=example_inputs, inputs=inputs, output_names=output_names,
                         dynamic_axes=dynamic_axes, task=task, opset=opset, exporter=exporter)
            feeds, feeds_note = _parity_feeds(eval_inputs, calibration, state.inputs, samples)
            state.quantize(calibration, feeds, tolerance, fallback_fp32, force, quantize_options)
            state.check(feeds, tolerance, fallback_fp32)
            failed = state.failures()
            if failed and not force:
                raise ParityError(f"{len(failed)} check(s) failed, so no bundle was written: {failed[0]}"
                                  + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else "")
                                  + ". Give real --calib data, try --mode auto or --fallback-fp32, or --force")
            state.bench(iterations, rounds)
            manifest = state.manifest(calibration, feeds_note, preprocessing, labels, mode)
            state.write(manifest)
        published = _publish(tmp, out)  # tmp now names the old bundle's leftovers, if any: keep them
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # the unfinished new bundle only: nothing was published
        raise
    return DeployResult(out, manifest, manifest["passed"], time.perf_counter() - t0,
                        (*manifest["notes"], *published), state.exported, tuple(state.quantized),
                        tuple(state.reports), state.matrix)


class _Pipeline:
    """The stages' shared state; each method is one stage and advances the one progress display."""

    def __init__(self, source: Any, work: Path, devices: list[str], mode: str, step: Any):
        self.source, self.work, self.devices, self.mode, self.step = source, work, devices, mode, step
        self.exported: ExportResult | None = None
        self.quantized: list[Any] = []
        self.variants: list[dict[str, Any]] = []  # manifest entries, fp32 first
        self.reports: list[Any] = []
        self.models: dict[tuple[str, str], Any] = {}
        self.defaults: dict[str, str] = {}
        self.notes: list[str] = []
        self.matrix: MatrixResult | None = None
        self.name: str | None = None
        self.excused: set[tuple[str, str]] = set()  # failed checks replaced by FP32 (fallback_fp32)

    def export(self, **kw: Any) -> None:
        import dataclasses

        fp32 = self.work / "model.fp32.onnx"
        text = str(self.source) if isinstance(self.source, (str, os.PathLike)) else ""
        if text.endswith(".onnx"):
            given = [k for k in ("example_inputs", "inputs", "dynamic_axes", "task", "opset", "output_names") if kw[k]]
            if given:
                raise EdgeAIError(f"{text} is already exported; {', '.join(given)} apply to PyTorch sources only "
                                  "(re-export with `edgeai export` to change them)")
            proto = load_proto(text)
            if graph_precision(proto) != "f32":
                raise EdgeAIError(f"{text} is already {graph_precision(proto)}; deploy takes a PyTorch source or an "
                                  "FP32 .onnx file")
            copy_onnx_file(text, fp32)
            self.inputs, self.outputs = io_specs(proto)
            self.reference: Any = _load(text, "cpu")
            self.source_info = {"source": text, "kind": "onnx", "reference": "the source .onnx on onnxruntime cpu"}
        else:
            from edgeai.runtimes.torch import TorchRuntime
            src = resolve(self.source, task=kw["task"], inputs=kw["inputs"], example_inputs=kw["example_inputs"])
            if kw["dynamic_axes"]:
                src = dataclasses.replace(src, inputs=apply_dynamic_axes(src.inputs, kw["dynamic_axes"]))
            self.exported = export(src, None, fp32, opset=kw["opset"], exporter=kw["exporter"],
                                          output_names=kw["output_names"])
            self.inputs, self.outputs = list(self.exported.inputs), list(self.exported.outputs)
            self.reference = Model(TorchRuntime(src))
            v = self.exported.validation
            self.source_info = {"source": src.description, "kind": "pytorch", "task": src.task, "family": src.family,
                                "exporter": self.exported.exporter, "opset": self.exported.opset,
                                "export_validation": v.verdict() if v is not None else None,
                                "reference": "the PyTorch original (f32, CPU)"}
        if self.name:
            self.source_info["source"] = self.name
        self._add_variant("fp32", fp32, None)
        self.step(description="quantize")

    def _add_variant(self, name: str, path: Path, result: Any) -> None:
        data = data_file(path)
        entry: dict[str, Any] = {"name": name, "file": path.name, "sha256": sha256_file(path),
                                 "size_bytes": path.stat().st_size, "precision": graph_precision(load_proto(path)),
                                 "devices": [], "default_for": [], "parity": {}, "latency": {}, "quantization": None}
        if data.exists():
            entry.update(data_file=data.name, data_sha256=sha256_file(data), size_bytes=entry["size_bytes"]
                         + data.stat().st_size)
        if result is not None:
            entry["quantization"] = {"mode": result.mode, "config": result.config, "checked_on": result.device,
                                     "excluded_nodes": list(result.excluded_nodes), "notes": list(result.notes),
                                     "candidates_tried": len(result.candidates), "latency": result.latency or None}
        self.variants.append(entry)

    def quantize(self, calibration: Any, feeds: list[dict], tolerance: Any, fallback_fp32: bool, force: bool,
                 options: dict[str, Any]) -> None:
        fp32 = self.work / "model.fp32.onnx"
        if self.mode == "none":
            return
        if self.mode == "auto":
            jobs = [(f"auto-{_slug(d)}", [d]) for d in self.devices]
        else:
            # One file for every device: its parity gate runs on the first device of its engine.
            ov = [d for d in self.devices if d.startswith("openvino")]
            first = ov[0] if self.mode == "openvino-int8" and ov else self.devices[0]
            jobs = [(_TAGS[self.mode], [first] + [d for d in self.devices if d != first])]
        for name, devs in jobs:
            dst = self.work / f"model.{name}.onnx"
            try:
                result = quantize(fp32, dst, mode=self.mode, calibration=calibration, device=devs[0],
                                  tolerance=_tolerance_for(tolerance, "f16" if self.mode == "fp16" else "int8"),
                                  eval_inputs=feeds, force=force, **options)
            except ToleranceNotMet as e:
                if not fallback_fp32:
                    raise
                self.notes.append(f"{name}: {e}; shipping FP32 for {', '.join(devs)}")
                self.step()
                continue
            self.quantized.append(result)
            self._add_variant(name, dst, result)
            if self.variants[-1]["precision"] == "f32":  # auto may find nothing beats FP32 there
                self.variants.pop()
                dst.unlink()
                self.notes.append(f"{name}: {self.mode} kept FP32 for {', '.join(devs)}")
                self.step()
                continue
            self.variants[-1]["devices"] = devs
            self.step(description=f"quantize ({name} done)")
        self.step(description="check")

    def check(self, feeds: list[dict], tolerance: Any, fallback_fp32: bool) -> None:
        self.variants[0]["devices"] = list(self.devices)  # FP32 is checked everywhere: it is the fallback
        for entry in self.variants:
            for device in list(entry["devices"]):
                self.step(description=f"check {entry['name']} on {device}")
                model = _load(self.work / entry["file"], device)
                report = compare(self.reference, model, feeds,
                                 tolerance=_tolerance_for(tolerance, model.describe().precision))
                entry["parity"][device] = _summary(report)
                self.models[(entry["name"], device)] = model
                self.reports.append(report)
        for device in self.devices:
            # The variant made for this device (quantized, if any) unless it failed and FP32 may stand in.
            ranked = [e for e in self.variants[1:] if device in e["devices"]] + [self.variants[0]]
            chosen = ranked[0]
            if fallback_fp32 and not chosen["parity"][device]["passed"]:
                alt = next((e for e in ranked if e["parity"][device]["passed"]), chosen)
                if alt is not chosen:
                    self.notes.append(f"{device}: {chosen['name']} failed parity "
                                      f"({chosen['parity'][device]['verdict']}); using {alt['name']}")
                    self.excused.add((chosen["name"], device))
                chosen = alt
            self.defaults[device] = chosen["name"]
            chosen["default_for"].append(device)
        self.step(description="bench")

    def bench(self, iterations: int, rounds: int) -> None:
        configs = [(f"{name}@{device}", model) for (name, device), model in self.models.items()]
        self.matrix = bench_matrix(configs, [1], warmup=5, iterations=iterations, rounds=min(rounds, iterations),
                                   baseline=f"fp32@{self.devices[0]}")
        by_name = {r.name: r for r in self.matrix.reports}
        for entry in self.variants:
            for device in entry["devices"]:
                r = by_name[f"{entry['name']}@{device}"]
                if r.status != "ok":
                    entry["latency"][device] = {"status": r.status}
                    continue
                base = by_name.get(f"fp32@{device}")
                interval = None
                if base is not None and base is not r and base.status == "ok" and len(r.round_p50_ms) >= 2:
                    est = estimate_from_rounds(base.round_p50_ms, r.round_p50_ms)
                    interval = [round(est.low, 3), round(est.high, 3)]
                entry["latency"][device] = {
                    "batch": r.batch, "p50_ms": round(r.latency.p50, 4), "p90_ms": round(r.latency.p90, 4),
                    "p99_ms": round(r.latency.p99, 4), "runs": r.latency.n, "items_per_s": round(r.throughput, 1),
                    "speedup_vs_fp32": round(base.latency.p50 / r.latency.p50, 3) if base and base.latency else None,
                    "speedup_interval": interval,  # 95%, over the interleaved rounds' p50 ratios
                    "ran_on": f"{r.runtime.get('engine')} {r.runtime.get('engine_version')} on "
                              f"{','.join(r.runtime.get('devices_in_effect', []))}",
                    "precision_in_effect": r.runtime.get("precision"), "threads": r.runtime.get("threads")}
        self.step(description="write bundle")

    def manifest(self, calibration: Any, feeds_note: str, preprocessing: Any, labels: Any, mode: str) -> dict:
        import datetime
        import platform

        for r in self.quantized:
            self.notes += [f"{r.mode}: {n}" for n in r.notes]
        if calibration is None and mode in _CALIBRATED:
            calib = "random inputs (no calibration data given): INT8 ranges may not fit real data"
            if not any("random" in n for n in self.notes):
                self.notes.append("calibrated on random inputs; pass real samples with --calib for production")
        elif calibration is None or mode in ("dynamic", "fp16", "none"):
            calib = None
        else:
            calib = str(calibration) if isinstance(calibration, (str, os.PathLike)) else \
                f"{len(calibration)} samples given in Python"
        for device, name in self.defaults.items():
            speedup = self.variants_by_name()[name]["latency"].get(device, {}).get("speedup_vs_fp32")
            if speedup is not None and speedup < 1:
                hint = "" if mode == "auto" else "; --mode auto picks by measured latency"
                self.notes.append(f"{device}: {name} measured slower than fp32 at batch 1 ({speedup:.2f}x){hint}")
        passed = not self.failures()
        dynamic = sorted({d for s in self.inputs for d in s.shape if isinstance(d, str)})
        return {
            "format": FORMAT, "manifest_version": MANIFEST_VERSION,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "edgeai_version": __version__, "engines": _engines(), "source": self.source_info,
            "inputs": [s.to_dict() for s in self.inputs], "outputs": [s.to_dict() for s in self.outputs],
            "dynamic_dims": dynamic, "preprocessing": dict(preprocessing) if preprocessing else None,
            "labels": list(labels) if labels else None, "mode": mode, "calibration": calib,
            "parity_data": feeds_note, "passed": passed, "defaults": dict(self.defaults), "variants": self.variants,
            "checked_on": {"cpu": cpu_info().to_dict(), "platform": platform.platform(),
                           "python": platform.python_version()},
            "notes": list(dict.fromkeys(self.notes)),
        }

    def variants_by_name(self) -> dict[str, dict[str, Any]]:
        return {v["name"]: v for v in self.variants}

    def failures(self) -> list[str]:
        """Verdicts of the checks that failed, apart from those FP32 was allowed to stand in for."""
        return [p["verdict"] for v in self.variants for d, p in v["parity"].items()
                if not p["passed"] and (v["name"], d) not in self.excused]

    def write(self, manifest: dict[str, Any]) -> None:
        with contextlib.suppress(ImportError):  # matplotlib is an extra; the report says so if missing
            bundle_plot(manifest, self.matrix.reports, self.work / "report.png")
        write_text(self.work / "report.md", report_markdown(manifest, (self.work / "report.png").exists()))
        write_text(self.work / MANIFEST, to_json(manifest) + "\n")
        self.step(description="done")


def _tolerance_for(tolerance: Any, precision: str) -> Any:
    """A Tolerance is used as given; a dict overrides only its limits on the default for ``precision``
    (so ``--min-cosine`` alone keeps the default top-1 check, and FP32 variants keep allclose)."""
    if not isinstance(tolerance, Mapping):
        return tolerance

    return Tolerance.for_precision(precision).with_overrides(
        **{k: v for k, v in tolerance.items() if v is not None})


def _load(path: Any, device: str) -> Any:
    return load(path, device)

