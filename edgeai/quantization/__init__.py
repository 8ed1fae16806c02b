"""Quantization: each mode is one module; ``quantize()`` runs it, checks parity, and writes the file.

Modes: ``dynamic`` and ``static`` (onnxruntime.quantization), ``fp16`` (onnxconverter-common's
float16 converter), ``openvino-int8`` (NNCF post-training quantization), ``int4`` and
``int8-weights`` (weight-only: onnxruntime's MatMulNBitsQuantizer or NNCF compress_weights, see
:mod:`edgeai.quantization.weight_only`), ``auto`` (an accuracy-aware search over those). No mode hands out a file that failed its parity check unless
``force=True``; the parity numbers are written into the file's metadata either way.
"""

from __future__ import annotations

from edgeai.atomic import atomic_path, check_destination
from edgeai.onnxfile import (
    graph_precision,
    io_specs,
    load_proto,
    read_metadata,
    save_onnx,
    write_metadata,
)
from edgeai.quantization.coverage import int8_coverage
from edgeai.quantization.measure import (
    default_eval_samples,
    describe_evaluation,
    latencies,
    load_on,
    parity_on,
    parity_record,
    quiet_ort_quantization,
    resolve_tolerance,
    timing_feed,
)

__all__ = ["quantize", "QuantizeResult", "ToleranceNotMet", "MODES", "model_size", "run_mode"]

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from edgeai.errors import QuantizationError, ToleranceNotMet
from edgeai.feeds import evaluation_feeds
from edgeai.quantization.auto import quantize_auto
from edgeai.quantization.fastest import quantize_fastest
from edgeai.quantization.modes import MODES, QuantizeResult, model_size, run_mode
from edgeai.quantization.search import MIN_INT8_MAC_SHARE
from edgeai.readset import check_output, in_scope


@in_scope
def quantize(src: str | os.PathLike, dst: str | os.PathLike, *, mode: str, calibration: Any = None,
             device: str = "cpu", tolerance: Any = None, eval_inputs: Any = None, eval_samples: int | None = None,
             force: bool = False, latency: bool = True, **options: Any) -> QuantizeResult:
    """Quantize an ONNX file and prove the result still matches it.

    Args:
        src: the FP32 ``.onnx`` file (never modified).
        dst: where to write the quantized ``.onnx`` file (atomically).
        mode: ``dynamic``, ``static``, ``fp16``, ``openvino-int8``, ``int4``, ``int8-weights`` or ``auto``
            (KV-cache decoders: use :func:`edgeai.generate_parity.quantize_generation`, which the CLI
            picks for them, so they are judged by generation).
        calibration: data for static/openvino-int8/auto (see ``edgeai.quantization.calibration``): a
            folder of ``.npy``/``.npz``, a ``.npz`` with a leading sample axis, ``"pkg.mod:callable"``,
            ``"random:N"``, or a list of feed dicts; ``None`` means random samples, with a warning.
        device: where parity (and latency) is measured; the FP32 reference runs on onnxruntime CPU.
            With ``mode="auto"``, ``device="auto"`` searches every device here x its precisions and
            writes the fastest that matches, with its device and precision in the file's metadata
            (see :mod:`edgeai.quantization.fastest`; ``edgeai.load(dst)`` then runs it that way).
        tolerance: a :class:`~edgeai.parity.Tolerance`; default by precision and task (INT8: cosine
            >= 0.995, plus top-1 >= 99% for classifiers; FP16: cosine >= 0.999).
        eval_inputs: parity inputs (same forms as calibration); default: calibration samples.
        eval_samples: how many evaluation feeds; default: enough for the tolerance's top-1 rate
            (381 for 99%), else 16; the result's notes say when the data has fewer.
        force: write the file even when parity fails (the failure is recorded in its metadata).
        latency: also time FP32 and the result on ``device`` (interleaved) for the result's table.
        **options: mode options, e.g. ``per_channel``, ``reduce_range``, ``calibrate_method``,
            ``activation_type``, ``weight_type``, ``nodes_to_exclude`` (static/dynamic/openvino-int8);
            ``keep_io_types``, ``op_block_list`` (fp16); ``preset``, ``model_type`` (openvino-int8);
            ``candidates``, ``min_speedup``, ``max_excluded_fraction`` (auto); ``block_size``,
            ``symmetric``, ``ratio``, ``accuracy_level``, ``engine``, ``output_projection`` (int4,
            int8-weights).

    Raises:
        ModelLoadError: ``src`` is missing or not ONNX.
        QuantizationError: unknown mode, already-quantized input, or the tolerance is not met
            (``ToleranceNotMet``, exit code 1; no file is written).
        InputMismatchError: calibration or evaluation data do not match the model's inputs.
    """
    if mode not in MODES:
        raise QuantizationError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    src, dst = Path(src), Path(dst)
    if dst.suffix != ".onnx":
        raise QuantizationError(f"output path {dst} should end in .onnx (every mode writes ONNX, openvino-int8 "
                                "included: a QDQ model both engines run)")
    if src.resolve() == dst.resolve():
        raise QuantizationError(f"refusing to overwrite the input {src}; choose another output path")
    proto = load_proto(src)  # notes src and its external data as this call's inputs
    check_output(dst)  # dst may not be one of them (a hard link, a symlink, src's .data file): fail before the work
    check_destination(dst)  # nor a folder, nor under a regular file
    precision = graph_precision(proto)
    if precision != "f32":
        meta = read_metadata(proto).get("quantization", {})
        raise QuantizationError(f"{src} is already {precision} (mode {meta.get('mode', '?')}); quantize the FP32 "
                                "export instead")
    specs, _ = io_specs(proto)
    task = read_metadata(proto).get("task")
    del proto
    if mode == "auto" and str(device).strip().lower() == "auto":
        # Every device here x its precisions, timed against each other: edgeai.quantization.fastest.
        return _named(quantize_fastest(src, dst, specs, calibration, tolerance=tolerance, eval_inputs=eval_inputs,
                                       eval_samples=eval_samples, force=force, **options), dst)
    if mode == "auto":
        result = quantize_auto(src, dst, specs, calibration, device=device, tolerance=tolerance,
                               eval_inputs=eval_inputs, eval_samples=eval_samples, force=force, **options)
        return _named(result, dst)
    return _quantize_one(src, dst, mode, specs, task, calibration, device, tolerance, eval_inputs, eval_samples,
                         force, latency, options)


def _named(result: QuantizeResult, dst: Path) -> QuantizeResult:
    """The verdict names the file the user asked for, not the candidate file auto measured it as."""
    import dataclasses

    parity = result.parity  # (when auto keeps FP32, dst is a copy of the source it measured)
    if parity is None or parity.candidate.get("model") in (None, str(dst)):
        return result
    return dataclasses.replace(result, parity=dataclasses.replace(
        parity, candidate={**parity.candidate, "model": str(dst)}))


def _quantize_one(src: Path, dst: Path, mode: str, specs: list[Any], task: str | None, calibration: Any,
                  device: str, tolerance: Any, eval_inputs: Any, eval_samples: int | None, force: bool, latency: bool,
                  options: dict[str, Any]) -> QuantizeResult:
    import onnx

    t0 = time.perf_counter()
    notes: list[str] = []
    tol = resolve_tolerance(tolerance, "f16" if mode == "fp16" else "int8", task)
    wanted = eval_samples or default_eval_samples(tol)
    evals = evaluation_feeds(eval_inputs, calibration, specs, wanted)  # bad data fails before the work
    evaluation = describe_evaluation(evals, specs, tol, wanted)
    notes += [n for n in (evals.note, evaluation.get("warning")) if n]
    with tempfile.TemporaryDirectory(prefix=".edgeai-q-", dir=dst.parent if dst.parent.exists() else None) as work:
        out = Path(work) / dst.name
        with quiet_ort_quantization():
            config = run_mode(mode, src, out, specs, calibration, dict(options))
        notes += config.pop("notes", [])
        reference = load_on(src, "cpu", "FP32")
        candidate = load_on(out, device, mode)
        parity = parity_on(reference, candidate, evals, tol, mode)
        if not parity.passed and not force:
            raise ToleranceNotMet(f"{mode} quantization is out of tolerance, so nothing was written: "
                                  f"{parity.verdict()}. Try --mode auto (it excludes sensitive layers), real "
                                  "calibration data, or --force to write it anyway")
        coverage = None
        if mode != "fp16":
            cov = int8_coverage(out)
            coverage = {**{k: v for k, v in cov.to_dict().items() if k != "path"}, "summary": cov.summary()}
            if not cov.is_int8(MIN_INT8_MAC_SHARE):
                notes.append(f"only {cov.summary()}: most of this model's compute stays float")
        timing: dict[str, Any] = {}
        if latency:
            feed = timing_feed(evals, specs)
            lat = latencies([("fp32", load_on(src, device, "FP32")), (mode, candidate)], feed,
                            iterations=60, rounds=3)
            timing = {"device": device, "fp32_p50_ms": lat["fp32"]["p50_ms"], "p50_ms": lat[mode]["p50_ms"],
                      "speedup": lat[mode]["speedup"], "interval": lat[mode]["interval"], "rounds": 3,
                      "shapes": {k: list(v.shape) for k, v in feed.items()}}
        model = onnx.load(str(out))
        write_metadata(model, {"quantization": {
            "mode": mode, "config": config, "device": device, "tolerance": tol.to_dict(), "latency": timing,
            "coverage": coverage, "evaluation": evaluation, "parity": parity_record(parity)}})
        with atomic_path(dst) as tmp:
            save_onnx(model, tmp)
    return QuantizeResult(src, dst, mode, config, model_size(src), model_size(dst), parity, device,
                          time.perf_counter() - t0, tuple(config.get("nodes_to_exclude") or ()), tuple(notes),
                          latency=timing, coverage=coverage)

