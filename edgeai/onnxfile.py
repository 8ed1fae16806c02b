"""ONNX file I/O: reading safely (clear errors for missing/corrupt files, external data confined to
the model's folder), input/output specs with symbolic dims, edgeai metadata, graph precision, and
the one way a model is written: atomically, with a ``<name>.data`` file when it is over 2 GB."""

from __future__ import annotations

import json
import math
import os
import stat
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgeai import userjson
from edgeai.atomic import atomic_path, fsync, temp_name
from edgeai.errors import ModelLoadError
from edgeai.readset import check_output, note_read, note_written, open_regular, regular_file
from edgeai.specs import TensorSpec

METADATA_KEY = "edgeai"

# Protobuf cannot serialize a single message over 2 GiB; larger models keep weights beside them.
ONNX_PROTOBUF_LIMIT = 2**31 - 1  # above this, a written model keeps its weights in external data
PROTOBUF_MAX_BYTES = 2**31 - 1  # what protobuf itself can parse: a larger .onnx file is not valid


def load_proto(path: str | os.PathLike, *, load_external_data: bool = False, data: bytes | None = None) -> Any:
    """Parse an ONNX file; refuse missing/empty/non-ONNX files and external data outside its folder.

    Only a regular file is read (a FIFO or a device is refused without blocking on it), and the
    file and its external-data files are noted as this command's inputs (:mod:`edgeai.readset`).
    ``data``: the file's bytes, already read (and hashed) by the caller; ``path`` then only names
    it and locates its external data.
    """
    import onnx

    p = Path(path)
    if data is None:
        data = _read_model_bytes(p)
    if not data:
        raise ModelLoadError(f"{p} is empty (0 bytes); re-export it with `edgeai export`")
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # protobuf raises DecodeError and friends
        raise ModelLoadError(f"{p} is not a valid ONNX model ({type(e).__name__}: {str(e)[:300]}); "
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

        try:
            load_external_data_for_model(model, str(p.parent))
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"{p}: cannot read its external data ({e})") from e
    return model


def _read_model_bytes(p: Path) -> bytes:
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise ModelLoadError(f"model file not found: {p}") from None
    except (OSError, ValueError) as e:  # a name too long, a NUL byte, a symlink loop, a permission
        raise ModelLoadError(f"cannot read model file {str(p)[:120]!r}: {getattr(e, 'strerror', None) or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ModelLoadError(f"{p} is a folder, not an ONNX file (a bundle folder needs manifest.json)")
    if stat.S_ISREG(st.st_mode) and st.st_size == 0:
        raise ModelLoadError(f"{p} is empty (0 bytes); re-export it with `edgeai export`")
    if st.st_size > PROTOBUF_MAX_BYTES:
        raise ModelLoadError(f"{p} is {st.st_size} bytes, over the 2 GiB a protobuf message can hold; it is not a "
                             "valid ONNX file (large models keep their weights in external data)")
    with open_regular(p, "model file", ModelLoadError) as f:  # FIFOs, devices and sockets are refused here
        return f.read()


# Bytes per element of each ONNX tensor type with a fixed size (4-bit types are packed two per byte).
_ITEMSIZE = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 14: 8, 15: 16, 16: 2,
             17: 1, 18: 1, 19: 1, 20: 1}
_MAX_LOCATION = 4096  # PATH_MAX on Linux; a longer location cannot name a file


def _graphs(graph: Any) -> Iterator[Any]:
    """A graph and every subgraph inside it (If/Loop/Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _graphs(attr.g)
            for g in attr.graphs:
                yield from _graphs(g)


def all_tensors(model: Any) -> Iterator[Any]:
    """Every TensorProto of a model that may hold data: initializers, sparse initializers (values and
    indices), and tensor attributes (dense and sparse), in the main graph, subgraphs and functions."""
    graphs = list(_graphs(model.graph))
    nodes = [n for g in graphs for n in g.node] + [n for f in model.functions for n in f.node]
    for g in graphs:
        yield from g.initializer
        for sparse in g.sparse_initializer:
            yield sparse.values
            yield sparse.indices
    for node in nodes:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("sparse_tensor"):
                yield attr.sparse_tensor.values
                yield attr.sparse_tensor.indices
            for sparse in attr.sparse_tensors:
                yield sparse.values
                yield sparse.indices


def external_data_paths(model: Any, path: str | os.PathLike) -> list[Path]:
    """The files a model's external data lives in (checked: see :func:`check_external_data`)."""
    return sorted(set(check_external_data(model, Path(path))))


def check_external_data(model: Any, path: Path) -> list[Path]:
    """External data must resolve inside the model's own folder (never ``../`` or ``/abs``), be a
    regular file, and hold the bytes each tensor declares; returns the data files, noted as read.

    Every tensor is checked, sparse initializers and attributes included. The declared offset and
    length are compared with the file's size before anything is read, so a model claiming
    petabytes is refused here rather than by a failed allocation.
    """
    root = path.parent.resolve()
    files: list[Path] = []
    for tensor in all_tensors(model):
        if tensor.data_location != 1:  # TensorProto.EXTERNAL
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        where = f"{path}: tensor {tensor.name[:100]!r}"
        if not location:
            raise ModelLoadError(f"{where} keeps its data externally but names no location; the file is damaged")
        if "\0" in location or len(location.encode("utf-8", "surrogatepass")) > _MAX_LOCATION \
                or any(len(part.encode("utf-8", "surrogatepass")) > 255 for part in location.split("/")):
            raise ModelLoadError(f"{where} names an external data location that no file can have "
                                 f"({location[:60]!r}..., {len(location)} characters); refusing the model")
        target = (root / location).resolve()
        if os.path.isabs(location) or root not in target.parents:
            raise ModelLoadError(f"{where} keeps its data at {location!r}, outside the "
                                 "model's folder; refusing to read it (move the data file beside the model)")
        if not os.path.lexists(target):
            raise ModelLoadError(f"{path}: external data file {location!r} for tensor {tensor.name!r} is missing")
        st = regular_file(target, f"external data file for {tensor.name!r} of {path}", ModelLoadError)
        _check_extent(tensor, info, st.st_size, where, location)
        note_read(target)
        files.append(target)
    return files


def _check_extent(tensor: Any, info: dict[str, str], size: int, where: str, location: str) -> None:
    try:
        offset = int(info.get("offset") or 0)
        length = int(info["length"]) if info.get("length") else None
    except ValueError:
        raise ModelLoadError(f"{where}: external data offset/length {info.get('offset')!r}/{info.get('length')!r} "
                             "are not integers; the file is damaged") from None
    if offset < 0 or (length is not None and length < 0):
        raise ModelLoadError(f"{where}: negative external data offset or length; the file is damaged")
    count = math.prod(int(d) for d in tensor.dims)
    need = count * _ITEMSIZE[tensor.data_type] if tensor.data_type in _ITEMSIZE and count >= 0 else None
    if tensor.data_type in (21, 22, 23) and count >= 0:  # 4-bit types: two per byte
        need = (count + 1) // 2
    declared = length if length is not None else need
    if declared is not None and offset + declared > size:
        raise ModelLoadError(f"{where} declares {declared} bytes at offset {offset} of {location!r}, which has "
                             f"{size} bytes; the data file is truncated or does not belong to this model")
    if need is not None and length is not None and length < need:
        raise ModelLoadError(f"{where} has dims {list(tensor.dims)} ({need} bytes) but its external data length "
                             f"is {length}; the file is damaged")


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


_SPEC = {"type": "object", "required": ["name"],
         "properties": {"name": {"type": "string"}, "shape": {"type": "array", "items": {"type": ["integer", "string",
                                                                                           "null"]}},
                        "dtype": {"type": "string"},
                        "value_range": {"type": ["array", "null"], "items": {"type": "number"}, "minItems": 2,
                                        "maxItems": 2}}}
#: The fields of edgeai's metadata that edgeai reads back; others are kept and shown, not used.
METADATA_SCHEMA = {
    "type": "object",
    "properties": {
        "edgeai_version": {"type": "string"}, "source": {"type": ["string", "null"]},
        "task": {"type": ["string", "null"]}, "family": {"type": ["string", "null"]},
        "exporter": {"type": ["string", "null"]}, "inputs": {"type": "array", "items": _SPEC},
        "outputs": {"type": "array", "items": {"type": "string"}},
        "output_kinds": {"type": "object", "additionalProperties": {"type": ["string", "array", "object", "null"]}},
        "quantization": {"type": "object"}, "generation": {"type": "object"},
    },
}
_METADATA_MAX_BYTES = 4 << 20


def read_metadata(model: Any) -> dict[str, Any]:
    """edgeai's metadata in a model (``{}`` when it has none).

    A value under the key ``edgeai`` that is not a JSON object is another tool's: it is ignored,
    with a warning. A JSON object whose fields edgeai reads have the wrong types, or one nested too
    deep or too large, is refused: edgeai would otherwise act on values it cannot trust.

    Raises:
        ModelLoadError: malformed edgeai metadata.
    """
    for prop in model.metadata_props:
        if prop.key != METADATA_KEY:
            continue
        text = prop.value
        if not text.lstrip().startswith("{"):
            warnings.warn(f"edgeai: the model's {METADATA_KEY!r} metadata is not edgeai's (not a JSON object: "
                          f"{text[:40]!r}); ignoring it", stacklevel=2)
            return {}
        return userjson.parse(text, f"the model's {METADATA_KEY!r} metadata", METADATA_SCHEMA, error=ModelLoadError,
                              max_bytes=_METADATA_MAX_BYTES,
                              hint="re-export the model, or remove that metadata entry")
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
    p = Path(path)
    model = load_proto(p)
    inputs, outputs = io_specs(model)
    # Python ints: a declared [2**40, 2**40] initializer overflows numpy's int64 (and showed 0).
    params = sum(math.prod(int(d) for d in t.dims) for t in model.graph.initializer)
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
    check_output(dst)
    check_output(dst.parent / data_name)  # written beside a model over 2 GB: never over an input either
    if not _over_protobuf_limit(model):
        with atomic_path(dst) as tmp:
            onnx.save_model(model, str(tmp))
        return dst
    # External data: onnx writes the data file next to the temp model under `location`.
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=temp_name(dst.name, ".xxxxxxxx")[:-8]) as staging:
        staged = Path(staging) / dst.name
        onnx.save_model(model, str(staged), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name, size_threshold=1024)
        fsync(Path(staging) / data_name)
        fsync(staged)
        os.replace(Path(staging) / data_name, dst.parent / data_name)
        os.replace(staged, dst)
        note_written(dst.parent / data_name)
        note_written(dst)
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
