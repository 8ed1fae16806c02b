"""ONNX file I/O: reading safely (clear errors for missing/corrupt files, external data confined to
the model's folder), input/output specs with symbolic dims, edgeai metadata, graph precision, and
the one way a model is written: atomically, with a ``<name>.data`` file when it is over 2 GB."""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from edgeai.atomic import atomic_path, fsync
from edgeai.errors import ModelLoadError
from edgeai.specs import TensorSpec

METADATA_KEY = "edgeai"

# Protobuf cannot serialize a single message over 2 GiB; larger models keep weights beside them.
ONNX_PROTOBUF_LIMIT = 2**31 - 1


def load_proto(path: str | os.PathLike, *, load_external_data: bool = False) -> Any:
    """Parse an ONNX file; refuse missing/empty/non-ONNX files and external data outside its folder."""
    import onnx

    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"model file not found: {p}")
    if p.is_dir():
        raise ModelLoadError(f"{p} is a folder, not an ONNX file (a bundle folder needs manifest.json)")
    if p.stat().st_size == 0:
        raise ModelLoadError(f"{p} is empty (0 bytes); re-export it with `edgeai export`")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError and friends
        raise ModelLoadError(f"{p} is not a valid ONNX model ({type(e).__name__}: {e}); "
                             "is it truncated, or a different format?") from e
    if not model.graph.node and not model.graph.output:
        raise ModelLoadError(f"{p} parsed as ONNX but holds no graph; it is not an ONNX model")
    if not model.opset_import:
        # The opset list is written after the graph: a file cut right after its graph still parses,
        # and OpenVINO would run it with guessed operator versions.
        raise ModelLoadError(f"{p} has a graph but no opset_import; the file is truncated or was not written by "
                             "an ONNX exporter: re-export it")
    check_external_data(model, p)
    if load_external_data:
        from onnx.external_data_helper import load_external_data_for_model

        load_external_data_for_model(model, str(p.parent))
    return model


def check_external_data(model: Any, path: Path) -> None:
    """External data must resolve inside the model's own folder: never follow ``../`` or ``/abs``."""
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    root = path.parent.resolve()
    for tensor in _get_all_tensors(model):
        if not uses_external_data(tensor):
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (root / location).resolve()
        if os.path.isabs(location) or root not in target.parents:
            raise ModelLoadError(f"{path}: tensor {tensor.name!r} keeps its data at {location!r}, outside the "
                                 "model's folder; refusing to read it (move the data file beside the model)")
        if not target.exists():
            raise ModelLoadError(f"{path}: external data file {location!r} for tensor {tensor.name!r} is missing")


def _value_info_spec(vi: Any) -> TensorSpec:
    from onnx import helper

    t = vi.type.tensor_type
    dims: list[int | str | None] = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    dtype = helper.tensor_dtype_to_np_dtype(t.elem_type).name if t.elem_type else "float32"
    if t.elem_type == 16:  # BFLOAT16 has no numpy dtype of its own
        dtype = "bfloat16"
    return TensorSpec(vi.name, tuple(dims), dtype)


def io_specs(model: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Graph inputs (initializers excluded) and outputs as TensorSpecs with symbolic dims."""
    inits = {i.name for i in model.graph.initializer}
    meta = read_metadata(model)
    ranges = {d["name"]: tuple(d["value_range"]) for d in meta.get("inputs", []) if d.get("value_range")}
    inputs = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        spec = _value_info_spec(vi)
        if vi.name in ranges:
            spec = TensorSpec(spec.name, spec.shape, spec.dtype, ranges[vi.name])
        inputs.append(spec)
    return inputs, [_value_info_spec(vi) for vi in model.graph.output]


def read_metadata(model: Any) -> dict[str, Any]:
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            try:
                return json.loads(prop.value)
            except ValueError:
                return {}
    return {}


def write_metadata(model: Any, data: dict[str, Any]) -> None:
    """Merge ``data`` into the model's edgeai metadata (one JSON string under the key 'edgeai')."""
    merged = {**read_metadata(model), **data}
    for prop in list(model.metadata_props):
        if prop.key == METADATA_KEY:
            model.metadata_props.remove(prop)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(merged, default=str)


_INT8_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "ConvInteger",
             "QLinearConv", "QLinearMatMul", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"}


def graph_precision(model: Any) -> str:
    """'int4' with 4-bit weights (MatMulNBits), 'int8' if the graph quantizes, 'f16' if its weights are
    float16, else 'f32'."""
    ops = {n.op_type for n in model.graph.node}
    if "MatMulNBits" in ops:
        bits = {a.i for n in model.graph.node if n.op_type == "MatMulNBits" for a in n.attribute if a.name == "bits"}
        return "int4" if (bits or {4}) & {2, 4} else "int8"
    if ops & _INT8_OPS:
        return "int8"
    types = Counter(i.data_type for i in model.graph.initializer)
    if types.get(10, 0) > types.get(1, 0):  # FLOAT16 vs FLOAT
        return "f16"
    return "f32"


def op_histogram(model: Any) -> dict[str, int]:
    return dict(Counter(n.op_type for n in model.graph.node).most_common())


def opset(model: Any) -> int | None:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def describe_file(path: str | os.PathLike) -> dict[str, Any]:
    """What ``edgeai info FILE.onnx`` prints: I/O specs, opset, operator histogram, parameters, size,
    metadata. (A bundle folder: :func:`edgeai.bundle.describe_path`.)"""
    import numpy as np

    p = Path(path)
    model = load_proto(p)
    inputs, outputs = io_specs(model)
    params = sum(int(np.prod(t.dims)) if t.dims else 1 for t in model.graph.initializer)
    return {"path": str(p), "size_bytes": file_size(p),
            "opset": opset(model), "ir_version": model.ir_version, "producer": model.producer_name,
            "precision": graph_precision(model), "parameters": params,
            "inputs": [s.to_dict() for s in inputs], "outputs": [s.to_dict() for s in outputs],
            "operators": op_histogram(model), "metadata": read_metadata(model),
            "other_metadata": {m.key: m.value for m in model.metadata_props if m.key != METADATA_KEY}}


# --- writing ---------------------------------------------------------------------------------------

def _over_protobuf_limit(model: Any) -> bool:
    try:
        return model.ByteSize() >= ONNX_PROTOBUF_LIMIT
    except Exception:  # protobuf's upb backend refuses even to size a message over 2 GiB (EncodeError)
        return True


def save_onnx(model: Any, dst: str | os.PathLike) -> Path:
    """Save an ``onnx.ModelProto`` atomically; models over 2 GB keep weights in ``<name>.data``.

    The external-data file is written first under a temp name and renamed before the model, so a
    model file on disk never points at a missing or half-written data file.
    """
    import onnx

    dst = Path(dst)
    data_name = dst.name + ".data"
    if not _over_protobuf_limit(model):
        with atomic_path(dst) as tmp:
            onnx.save_model(model, str(tmp))
        return dst
    # External data: onnx writes the data file next to the temp model under `location`.
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=f".{dst.name}.") as staging:
        staged = Path(staging) / dst.name
        onnx.save_model(model, str(staged), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name, size_threshold=1024)
        fsync(Path(staging) / data_name)
        fsync(staged)
        os.replace(Path(staging) / data_name, dst.parent / data_name)
        os.replace(staged, dst)
        fsync(dst.parent)
    return dst


def copy_onnx_file(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Load (with external data) and re-save atomically; used where a library writes in place.

    External data is read through :func:`load_proto`, so a ``location`` outside ``src``'s folder is
    refused rather than copied into ``dst``.
    """
    return save_onnx(load_proto(src, load_external_data=True), dst)


def data_file(path: str | os.PathLike) -> Path:
    """Where a model's external data lives: ``<name>.data`` beside it (written only over 2 GB)."""
    p = Path(path)
    return p.with_name(p.name + ".data")


def file_size(path: str | os.PathLike) -> int:
    """Bytes on disk of a model, its external data file included."""
    data = data_file(path)
    return Path(path).stat().st_size + (data.stat().st_size if data.exists() else 0)


def move_onnx(staged: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Rename a staged model (and its ``.data`` file, first) into place, on the same file system.

    The data file moves first, so the model on disk never points at a missing one; it gets the
    model's mode (onnx writes it 0600).
    """
    staged, dst = Path(staged), Path(dst)
    data = data_file(staged)
    if data.exists():
        os.chmod(data, staged.stat().st_mode & 0o777)
        os.replace(data, data_file(dst))
    os.replace(staged, dst)
    return dst
