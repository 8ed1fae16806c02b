"""The bad-input matrix, round two (issue 19): outputs over inputs, non-regular files, lying headers,
malformed JSON everywhere, and the error contract.

Every CLI case runs the real ``edgeai`` console script and must end with the documented exit code,
exactly one ``error:`` line on stderr (never ``error: unexpected``, never a traceback), every input
byte-identical afterwards (the whole inputs folder is snapshotted, hidden files, links and FIFOs
included), and no file left in the output folder or the working folder. Every API case must raise
an :class:`~edgeai.errors.EdgeAIError` subclass, with the same checks on files.

The inputs are built once per module from the tiny zoo CNN; no case needs more than a second or
two of work before it is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgeai
from edgeai.errors import (
    EdgeAIError,
    FileAccessError,
    InputMismatchError,
    ModelLoadError,
    OutputOverlapError,
    WriteError,
)

from conftest import DEVICES, ROOT

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="FIFOs, sockets and hard links are POSIX")

CONSOLE = Path(sys.executable).with_name("edgeai")
X = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)


def console(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The installed ``edgeai`` console script (``python -m edgeai`` where none is installed)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1", COLUMNS="200")
    cmd = [str(CONSOLE)] if CONSOLE.exists() else [sys.executable, "-m", "edgeai"]
    result = subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    assert "error: unexpected" not in result.stderr, result.stderr[-2000:]  # always a bug in edgeai
    return result


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under ``folder`` (hidden ones too) without following links or opening FIFOs."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            rel = str(p.relative_to(folder))
            if stat.S_ISREG(st.st_mode):
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() + f" ino={st.st_ino}"
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = "link -> " + os.readlink(p)
            else:
                out[rel] = stat.filemode(st.st_mode)[0]
    return out


# ---------------------------------------------------------------------------------------------
# Building the inputs
# ---------------------------------------------------------------------------------------------


def _add_model(folder: Path, name: str = "model.onnx", *, location: str = "weights.bin", offset: Any = 0,
               length: Any = 16, dims: tuple[int, ...] = (4,), sparse: bool = False, data: bool = True,
               metadata: str | None = None) -> Path:
    """y = x + w with w in external data at ``location`` (or a sparse initializer whose values are)."""
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    if data and not os.path.lexists(folder / location) and "/" not in location and "\0" not in location \
            and len(location) < 200:
        (folder / location).write_bytes(np.arange(4, dtype=np.float32).tobytes())
    w = numpy_helper.from_array(np.zeros(dims, np.float32) if math.prod(dims) < 100 else np.zeros(1, np.float32), "w")
    del w.dims[:]
    w.dims.extend(dims)
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        if value != "None":
            entry = w.external_data.add()
            entry.key, entry.value = key, value
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    if sparse:
        w.name = "w"
        del w.dims[:]
        w.dims.extend([2])
        indices = numpy_helper.from_array(np.array([0, 2], np.int64), "w_indices")
        graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y],
                                  sparse_initializer=[helper.make_sparse_tensor(w, indices, [4])])
    else:
        graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if metadata is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = "edgeai", metadata
    path = folder / name
    path.write_bytes(model.SerializeToString())
    return path


def _with_metadata(src: Path, dst: Path, value: str) -> Path:
    import onnx

    model = onnx.load(str(src))
    for prop in list(model.metadata_props):
        if prop.key == "edgeai":
            model.metadata_props.remove(prop)
    entry = model.metadata_props.add()
    entry.key, entry.value = "edgeai", value
    dst.write_bytes(model.SerializeToString())
    return dst


def _manifest(model: Path) -> dict[str, Any]:
    from edgeai.onnxfile import io_specs, load_proto

    inputs, outputs = io_specs(load_proto(model))
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    return {"format": "edgeai-bundle", "manifest_version": "1.0", "created": "2026-11-30T00:00:00+00:00",
            "edgeai_version": edgeai.__version__, "engines": {"onnxruntime": "1.32.0"}, "mode": "none",
            "source": {"source": "cnn.onnx", "kind": "onnx", "reference": "the source .onnx"},
            "inputs": [s.to_dict() for s in inputs], "outputs": [s.to_dict() for s in outputs],
            "dynamic_dims": ["batch"], "preprocessing": None, "labels": None, "calibration": None,
            "parity_data": "8 random samples", "passed": True, "defaults": {"cpu": "fp32"},
            "variants": [{"name": "fp32", "file": "model.fp32.onnx", "sha256": digest, "precision": "f32",
                          "devices": ["cpu", "openvino:CPU"], "default_for": ["cpu"],
                          "size_bytes": model.stat().st_size, "parity": {}, "latency": {}, "quantization": None}],
            "checked_on": {"cpu": {"model": "test"}}, "notes": []}


def _bundle(folder: Path, model: Path, change: Callable[[dict], Any] | None = None, *,
            raw: bytes | None = None) -> Path:
    """A bundle folder by hand (no deploy run): the model, and a manifest ``change`` edits."""
    folder.mkdir(parents=True)
    shutil.copy(model, folder / "model.fp32.onnx")
    manifest = _manifest(folder / "model.fp32.onnx")
    if change is not None:
        manifest = change(manifest) or manifest
    (folder / "manifest.json").write_bytes(raw if raw is not None else json.dumps(manifest).encode())
    return folder


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def _set(path: str, value: Any) -> Callable[[dict], None]:
    """A manifest change: set ``a.b.0.c`` to ``value`` (``...`` deletes it)."""
    def change(m: dict) -> None:
        keys = [int(k) if k.isdigit() else k for k in path.split(".")]
        target = m
        for k in keys[:-1]:
            target = target[k]
        if value is ...:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value
    return change


MANIFEST_CASES: dict[str, tuple[Callable[[dict], Any] | None, bytes | None, str]] = {
    # name: (change, raw bytes instead, words in the message)
    "variants-not-list": (_set("variants", {"fp32": 1}), None, r"variants.*not of type 'array'"),
    "variant-no-sha": (_set("variants.0.sha256", ...), None, "'sha256' is a required property"),
    "sha-not-hex": (_set("variants.0.sha256", "zz" * 32), None, "does not match"),
    "input-no-shape": (_set("inputs.0.shape", ...), None, "'shape' is a required property"),
    "labels-not-strings": (_set("labels", [1, 2]), None, r"labels\[\d\]: \d is not of type 'string'"),
    "default-unknown-variant": (_set("defaults", {"cpu": "int8"}), None, "name variants the manifest does not list"),
    "duplicate-variant": (lambda m: m["variants"].append(dict(m["variants"][0])), None, "names a variant twice"),
    "parity-not-object": (_set("variants.0.parity", {"cpu": 5}), None, r"parity\.cpu"),
    "size-string": (_set("variants.0.size_bytes", "12"), None, "size_bytes"),
    "engines-list": (_set("engines", ["onnxruntime"]), None, "engines"),
    "source-string": (_set("source", "cnn.onnx"), None, "source"),
    "no-outputs": (_set("outputs", ...), None, "'outputs' is a required property"),
    "devices-string": (_set("variants.0.devices", "cpu"), None, "devices"),
    "file-nul": (_set("variants.0.file", "model\u0000.onnx"), None, "not a plain relative name"),
    "deep": (None, ('{"format": "edgeai-bundle", "x": ' + _deep(5000) + "}").encode(), "nests JSON 5001 levels"),
    "not-utf8": (None, b'{"format": "edgeai-bundle", "x": "\xff\xfe"}', "not UTF-8"),
    "top-level-list": (None, b"[1, 2, 3]", "not an edgeai bundle manifest"),
    "version-int": (_set("manifest_version", 1), None, "not MAJOR.MINOR"),
}


def _npy_header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    header = repr({"descr": dtype, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header


@pytest.fixture(scope="module")
def world(tmp_path_factory, zoo_onnx) -> Path:
    """Every input the cases read; snapshotted before and after each case."""
    import zipfile

    root = tmp_path_factory.mktemp("world")
    cnn = root / "cnn.onnx"
    shutil.copy(zoo_onnx("cnn"), cnn)
    np.save(root / "x.npy", X[:1])
    np.savez(root / "calib.npz", pixel_values=X)
    (root / "secret.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    # models with external data
    _add_model(root / "ext", "m.onnx", location="m.onnx.data")
    _add_model(root / "extw", "mw.onnx", location="w.onnx")  # its data file is named like a model
    links = root / "links"
    links.mkdir()
    os.link(root / "ext" / "m.onnx.data", links / "data_hardlink.npz")
    os.symlink(root / "ext" / "m.onnx.data", links / "data_symlink.npz")
    os.link(root / "x.npy", links / "x_hardlink.npz")
    os.link(cnn, links / "cnn_hardlink.onnx")
    os.symlink(cnn, links / "cnn_symlink.npz")
    # external data that lies or escapes
    _add_model(root / "ext_nul", location="w\0.bin", data=False)
    _add_model(root / "ext_long", location="a/" * 2100 + "w.bin", data=False)
    _add_model(root / "ext_longpart", location="w" * 300 + ".bin", data=False)
    _add_model(root / "ext_sparse", location="../secret.bin", length=8, sparse=True, data=False)
    _add_model(root / "ext_length", length=1 << 40)
    _add_model(root / "ext_offset", offset=1 << 50)
    _add_model(root / "ext_dims", length="None", dims=(1 << 20, 1 << 20))
    _add_model(root / "ext_badint", offset="abc")
    _add_model(root / "ext_negative", offset=-8)
    _add_model(root / "ext_short_length", length=4)  # 4 bytes for 4 floats
    (root / "ext_fifo").mkdir()
    os.mkfifo(root / "ext_fifo" / "weights.bin")
    _add_model(root / "ext_fifo", data=False)
    # edgeai metadata
    _with_metadata(cnn, root / "meta_inputs.onnx", '{"inputs": 5}')
    _with_metadata(cnn, root / "meta_range.onnx", '{"inputs": [{"name": "pixel_values", "value_range": "a"}]}')
    _with_metadata(cnn, root / "meta_task.onnx", '{"task": 5}')
    _with_metadata(cnn, root / "meta_generation.onnx", '{"generation": []}')
    _with_metadata(cnn, root / "meta_deep.onnx", '{"inputs": ' + _deep(100_000) + "}")
    _with_metadata(cnn, root / "meta_huge.onnx", json.dumps({"task": "x", "junk": "a" * (5 << 20)}))
    _with_metadata(cnn, root / "meta_foreign.onnx", "[1, 2, 3]")
    # non-regular files
    os.mkfifo(root / "fifo.onnx")
    os.mkfifo(root / "fifo.npy")
    os.mkfifo(root / "fifo.npz")
    os.mkfifo(root / "fifo.json")
    os.mkfifo(root / "fifo.txt")
    (root / "calib_fifo").mkdir()
    np.save(root / "calib_fifo" / "a.npy", X[:1])
    os.mkfifo(root / "calib_fifo" / "b.npy")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(root / "sock.onnx"))  # a socket file stays after close
    sock.close()
    # bundles: one good (with user files), and one per malformed manifest
    good = _bundle(root / "B", cnn)
    np.savez(good / "eval.npz", pixel_values=X)
    (good / "notes.txt").write_text("the user's own notes\n")
    for name, (change, raw, _) in MANIFEST_CASES.items():
        _bundle(root / "bundles" / name, cnn, change, raw=raw)
    fifo_manifest = root / "bundles" / "manifest-fifo"
    fifo_manifest.mkdir()
    os.mkfifo(fifo_manifest / "manifest.json")
    variant_fifo = _bundle(root / "bundles" / "variant-fifo", cnn)
    (variant_fifo / "model.fp32.onnx").unlink()
    os.mkfifo(variant_fifo / "model.fp32.onnx")
    # data files that lie
    (root / "peta.npy").write_bytes(_npy_header((1 << 25, 1 << 25, 1 << 5)) + bytes(64))
    (root / "truncated.npy").write_bytes((root / "x.npy").read_bytes()[:-100])
    np.save(root / "strings.npy", np.array(["a", "b"]))
    np.save(root / "zerod.npy", np.float32(1.0))
    np.savez(root / "object.npz", pixel_values=np.array([{"a": 1}], dtype=object))
    np.savez(root / "zerod.npz", pixel_values=np.float32(1.0))
    with zipfile.ZipFile(root / "peta.npz", "w") as zf:
        zf.writestr("pixel_values.npy", _npy_header((1 << 30, 1 << 30, 28, 28)) + bytes(64))
    (root / "badzip.npz").write_bytes(b"PK\x03\x04" + bytes(100))
    (root / "gen.py").write_text("import numpy as np\n\ndef calib():\n    yield {'pixel_values': np.zeros((1, 1, 28, 28), "
                                 "np.float32)}\n    raise RuntimeError('camera disconnected')\n")
    # JSON and text options
    (root / "deep.json").write_text('{"a": ' + _deep(10_000) + "}")
    (root / "list.json").write_text("[1, 2]")
    bench_ok = {"rounds": 3, "machine": {"cpu": {"model": "x"}},
                "results": [{"name": "cnn.onnx@cpu", "batch": 1, "streams": 1, "status": "ok",
                             "round_p50_ms": [1.0, 1.1, 0.9], "latency_ms": {"p50": 1.0}}]}
    (root / "prev.json").write_text(json.dumps(bench_ok))
    bench_bad = json.loads(json.dumps(bench_ok))
    bench_bad["results"][0]["batch"] = "one"
    (root / "prev_types.json").write_text(json.dumps(bench_bad))
    bench_bad = json.loads(json.dumps(bench_ok))
    bench_bad["results"][0]["round_p50_ms"] = [0, 1]
    (root / "prev_zero.json").write_text(json.dumps(bench_bad))
    (root / "prev_latin1.json").write_bytes(b'{"results": [], "x": "caf\xe9"}')
    (root / "labels_latin1.txt").write_bytes("cat\ncaf\xe9\n".encode("latin-1"))
    (root / "a_file").write_text("not a folder\n")
    return root


# ---------------------------------------------------------------------------------------------
# CLI cases: (args, exit code, regex on the one stderr line). {i} inputs, {o} an empty output folder.
# ---------------------------------------------------------------------------------------------

OVERLAP = "refusing to overwrite the input"
INSIDE = "lies inside the bundle"
CLI_CASES: dict[str, tuple[list[str], int, str]] = {
    # outputs over inputs: by path, by inode (hard links), through symlinks, external data, bundles
    "run-o-external-data": (["run", "{i}/ext/m.onnx", "-o", "{i}/ext/m.onnx.data"], 2, OVERLAP),
    "run-o-hardlink-of-data": (["run", "{i}/ext/m.onnx", "-o", "{i}/links/data_hardlink.npz"], 2,
                               OVERLAP + ".*is the same file"),
    "run-o-symlink-to-data": (["run", "{i}/ext/m.onnx", "-o", "{i}/links/data_symlink.npz"], 2, OVERLAP),
    "run-o-hardlink-of-input": (["run", "{i}/cnn.onnx", "--input", "pixel_values={i}/x.npy", "-o",
                                 "{i}/links/x_hardlink.npz"], 2, OVERLAP),
    "run-o-symlink-to-model": (["run", "{i}/cnn.onnx", "-o", "{i}/links/cnn_symlink.npz"], 2, OVERLAP),
    "quantize-o-other-models-data": (["quantize", "{i}/extw/mw.onnx", "-o", "{i}/extw/w.onnx", "--mode",
                                      "dynamic"], 2, OVERLAP),
    "quantize-o-hardlink-of-src": (["quantize", "{i}/cnn.onnx", "-o", "{i}/links/cnn_hardlink.onnx", "--mode",
                                    "dynamic"], 2, OVERLAP),
    "quantize-o-is-calib": (["quantize", "{i}/cnn.onnx", "-o", "{i}/calib.npz", "--mode", "static", "--calib",
                             "{i}/calib.npz"], 2, OVERLAP),
    "run-bundle-o-inside": (["run", "{i}/B", "-o", "{i}/B/model.int8-dynamic.onnx"], 2, INSIDE),
    "run-bundle-o-manifest": (["run", "{i}/B", "-o", "{i}/B/manifest.json"], 2, INSIDE),
    "run-bundle-o-subfolder": (["run", "{i}/B", "-o", "{i}/B/sub/out.npz"], 2, INSIDE),
    "bench-bundle-csv-manifest": (["bench", "{i}/B", "--csv", "{i}/B/manifest.json", "--iterations", "1"], 2, INSIDE),
    "bench-bundle-markdown": (["bench", "{i}/B", "--markdown", "{i}/B/bench.md", "--iterations", "1"], 2, INSIDE),
    "bench-csv-external-data": (["bench", "{i}/ext/m.onnx", "--csv", "{i}/ext/m.onnx.data", "--iterations", "1"], 2,
                                OVERLAP),
    "bench-csv-is-compare-to": (["bench", "{i}/cnn.onnx", "--compare-to", "{i}/prev.json", "--csv", "{i}/prev.json",
                                 "--iterations", "1"], 2, OVERLAP),
    "deploy-o-is-input-data": (["deploy", "{i}/cnn.onnx", "-o", "{i}/x.npy", "--mode", "none", "--data",
                                "{i}/x.npy"], 2, OVERLAP),
    # only regular files are read (without blocking on a FIFO)
    "run-model-fifo": (["run", "{i}/fifo.onnx"], 2, "named pipe"),
    "info-model-fifo": (["info", "{i}/fifo.onnx"], 2, "named pipe"),
    "run-model-socket": (["run", "{i}/sock.onnx"], 2, "a socket"),
    "run-model-char-device": (["run", "/dev/zero"], 2, "character device"),
    "run-input-fifo": (["run", "{i}/cnn.onnx", "--input", "pixel_values={i}/fifo.npy"], 2, "named pipe"),
    "run-external-data-fifo": (["run", "{i}/ext_fifo/model.onnx"], 2, "named pipe"),
    "quantize-calib-folder-fifo": (["quantize", "{i}/cnn.onnx", "-o", "{o}/q.onnx", "--mode", "static", "--calib",
                                    "{i}/calib_fifo"], 2, "named pipe"),
    "quantize-calib-fifo-npz": (["quantize", "{i}/cnn.onnx", "-o", "{o}/q.onnx", "--mode", "static", "--calib",
                                 "{i}/fifo.npz"], 2, "named pipe"),
    "quantize-data-fifo": (["quantize", "{i}/cnn.onnx", "-o", "{o}/q.onnx", "--mode", "dynamic", "--data",
                            "{i}/fifo.npz"], 2, "named pipe"),
    "info-manifest-fifo": (["info", "{i}/bundles/manifest-fifo"], 2, "named pipe"),
    "run-bundle-variant-fifo": (["run", "{i}/bundles/variant-fifo"], 2, "named pipe"),
    "bench-compare-to-fifo": (["bench", "{i}/cnn.onnx", "--compare-to", "{i}/fifo.json", "--iterations", "1"], 2,
                              "named pipe"),
    "deploy-labels-fifo": (["deploy", "{i}/cnn.onnx", "-o", "{o}/B", "--labels", "{i}/fifo.txt"], 2, "named pipe"),
    "deploy-preprocessing-fifo": (["deploy", "{i}/cnn.onnx", "-o", "{o}/B", "--preprocessing", "{i}/fifo.json"], 2,
                                  "named pipe"),
    # edgeai metadata in ONNX files
    "run-meta-inputs-not-list": (["run", "{i}/meta_inputs.onnx"], 2, r"metadata: inputs: 5 is not of type 'array'"),
    "info-meta-range-string": (["info", "{i}/meta_range.onnx"], 2, r"metadata: inputs\[0\]\.value_range"),
    "quantize-meta-task-int": (["quantize", "{i}/meta_task.onnx", "-o", "{o}/q.onnx", "--mode", "dynamic"], 2,
                               "metadata: task"),
    "info-meta-generation-list": (["info", "{i}/meta_generation.onnx"], 2, "metadata: generation"),
    "run-meta-deep": (["run", "{i}/meta_deep.onnx"], 2, "nests JSON 100001 levels"),
    "info-meta-huge": (["info", "{i}/meta_huge.onnx"], 2, "bytes of JSON; at most"),
    # external data
    "run-ext-nul": (["run", "{i}/ext_nul/model.onnx"], 2, "no file can have"),
    "info-ext-long-location": (["info", "{i}/ext_long/model.onnx"], 2, "no file can have"),
    "info-ext-long-component": (["info", "{i}/ext_longpart/model.onnx"], 2, "no file can have"),
    "run-ext-sparse-escape": (["run", "{i}/ext_sparse/model.onnx"], 2, "outside the model's folder"),
    "info-ext-sparse-escape": (["info", "{i}/ext_sparse/model.onnx"], 2, "outside the model's folder"),
    "quantize-ext-sparse-escape": (["quantize", "{i}/ext_sparse/model.onnx", "-o", "{o}/q.onnx", "--mode",
                                    "dynamic"], 2, "outside the model's folder"),
    "run-ext-length-beyond-file": (["run", "{i}/ext_length/model.onnx"], 2, "declares 1099511627776 bytes"),
    "run-ext-offset-beyond-file": (["run", "{i}/ext_offset/model.onnx"], 2, "at offset 1125899906842624"),
    "info-ext-dims-beyond-file": (["info", "{i}/ext_dims/model.onnx"], 2, "declares 4398046511104 bytes"),
    "run-ext-offset-not-int": (["run", "{i}/ext_badint/model.onnx"], 2, "are not integers"),
    "run-ext-negative-offset": (["run", "{i}/ext_negative/model.onnx"], 2, "negative external data offset"),
    "run-ext-length-short": (["run", "{i}/ext_short_length/model.onnx"], 2,
                             r"\(16 bytes\) but its external data length is 4"),
    # manifests (info must refuse exactly what load refuses)
    **{f"info-manifest-{name}": (["info", f"{{i}}/bundles/{name}"], 2, words)
       for name, (_, _, words) in MANIFEST_CASES.items()},
    **{f"run-manifest-{name}": (["run", f"{{i}}/bundles/{name}"], 2, words)
       for name in ("variant-no-sha", "default-unknown-variant", "file-nul", "deep", "labels-not-strings")
       for words in [MANIFEST_CASES[name][2]]},
    # data files whose headers lie, object and 0-d arrays
    "run-input-petabyte-npy": (["run", "{i}/cnn.onnx", "--input", "pixel_values={i}/peta.npy"], 2,
                               "header declares float32 .* bytes of data"),
    "run-input-truncated-npy": (["run", "{i}/cnn.onnx", "--input", "pixel_values={i}/truncated.npy"], 2,
                                "header declares float32"),
    "run-input-strings-npy": (["run", "{i}/cnn.onnx", "--input", "pixel_values={i}/strings.npy"], 2, "not numbers"),
    "quantize-calib-petabyte-npz": (["quantize", "{i}/cnn.onnx", "-o", "{o}/q.onnx", "--mode", "static", "--calib",
                                     "{i}/peta.npz"], 2, "header declares float32"),
    "quantize-calib-object-npz": (["quantize", "{i}/cnn.onnx", "-o", "{o}/q.onnx", "--mode", "static", "--calib",
                                   "{i}/object.npz"], 2, "holds Python objects"),
    "quantize-calib-zerod-npz": (["quantize", "{i}/cnn.onnx", "-o", "{o}/q.onnx", "--mode", "static", "--calib",
                                  "{i}/zerod.npz"], 2, "0-d"),
    "quantize-calib-zerod-npy": (["quantize", "{i}/cnn.onnx", "-o", "{o}/q.onnx", "--mode", "static", "--calib",
                                  "{i}/zerod.npy"], 2, "0-d"),
    "quantize-calib-bad-zip": (["quantize", "{i}/cnn.onnx", "-o", "{o}/q.onnx", "--mode", "static", "--calib",
                                "{i}/badzip.npz"], 2, "cannot read .* as a .npz"),
    "quantize-calib-generator-raises": (["quantize", "{i}/cnn.onnx", "-o", "{o}/q.onnx", "--mode", "static",
                                         "--calib", "{i}/gen.py:calib"], 2,
                                        "failed at sample 1: RuntimeError: camera disconnected"),
    # outputs that cannot be written
    "quantize-o-under-file": (["quantize", "{i}/cnn.onnx", "-o", "{i}/a_file/q.onnx", "--mode", "dynamic"], 2,
                              "is a file, not a folder"),
    "bench-csv-under-file": (["bench", "{i}/cnn.onnx", "--csv", "{i}/a_file/b.csv", "--iterations", "1"], 2,
                             "is a file, not a folder"),
    "deploy-o-under-file": (["deploy", "{i}/cnn.onnx", "-o", "{i}/a_file/B", "--mode", "none"], 2,
                            "cannot write|is a file"),
    "run-o-unwritable-fs": (["run", "{i}/cnn.onnx", "-o", "/sys/edgeai-out.npz"], 2, "cannot write"),
    "deploy-o-unwritable-fs": (["deploy", "{i}/cnn.onnx", "-o", "/sys/edgeai-bundle", "--mode", "none"], 2,
                               "cannot write"),
    "run-o-name-too-long": (["run", "{i}/cnn.onnx", "-o", "{o}/" + "n" * 300 + ".npz"], 2, "File name too long"),
    "run-model-name-too-long": (["run", "{i}/" + "m" * 300 + ".onnx"], 2, "File name too long"),
    # JSON and text options
    "deploy-preprocessing-deep": (["deploy", "{i}/cnn.onnx", "-o", "{o}/B", "--preprocessing",
                                   '{"a": ' + _deep(3000) + "}"], 2, "nests JSON 3001 levels"),
    "deploy-preprocessing-file-deep": (["deploy", "{i}/cnn.onnx", "-o", "{o}/B", "--preprocessing", "{i}/deep.json"],
                                       2, "nests JSON 10001 levels"),
    "deploy-preprocessing-list": (["deploy", "{i}/cnn.onnx", "-o", "{o}/B", "--preprocessing", "{i}/list.json"], 2,
                                  "is not of type 'object'"),
    "deploy-labels-not-utf8": (["deploy", "{i}/cnn.onnx", "-o", "{o}/B", "--labels", "{i}/labels_latin1.txt"], 2,
                               "not UTF-8"),
    "bench-compare-to-deep": (["bench", "{i}/cnn.onnx", "--compare-to", "{i}/deep.json", "--iterations", "1"], 2,
                              "nests JSON"),
    "bench-compare-to-wrong-types": (["bench", "{i}/cnn.onnx", "--compare-to", "{i}/prev_types.json", "--iterations",
                                      "1"], 2, r"results\[0\]\.batch: 'one' is not of type 'integer'"),
    "bench-compare-to-zero-latency": (["bench", "{i}/cnn.onnx", "--compare-to", "{i}/prev_zero.json", "--iterations",
                                       "1"], 2, r"round_p50_ms\[0\]"),
    "bench-compare-to-not-utf8": (["bench", "{i}/cnn.onnx", "--compare-to", "{i}/prev_latin1.json", "--iterations",
                                   "1"], 2, "not UTF-8"),
    "bench-compare-to-list": (["bench", "{i}/cnn.onnx", "--compare-to", "{i}/list.json", "--iterations", "1"], 2,
                              "not of type 'object'"),
    "bench-cache-dir-is-file": (["bench", "{i}/cnn.onnx", "--cache-dir", "{i}/a_file", "--iterations", "1"], 2,
                                "is a file"),
}
_OPENVINO = {k for k, (args, _, _) in CLI_CASES.items() if "openvino:CPU" in args}


def _cli_params() -> list:
    out = []
    for name in CLI_CASES:
        marks = [pytest.mark.openvino] if name in _OPENVINO else []
        if name in _OPENVINO and "openvino:CPU" not in DEVICES:
            marks.append(pytest.mark.skip(reason="OpenVINO CPU is not available"))
        out.append(pytest.param(name, marks=marks, id=name))
    return out


def assert_one_error_line(result: subprocess.CompletedProcess, code: int, pattern: str, case: str) -> None:
    stderr = result.stderr.strip()
    assert result.returncode == code, (case, result.returncode, stderr[-2000:], result.stdout[-500:])
    assert stderr.startswith("error: ") and "\n" not in stderr, (case, stderr[-2000:])
    assert "Traceback" not in stderr and "error: unexpected" not in stderr, (case, stderr)
    assert re.search(pattern, stderr), (case, pattern, stderr)


@pytest.mark.parametrize("case", _cli_params())
def test_cli(world, tmp_path, case):
    args, code, pattern = CLI_CASES[case]
    out = tmp_path / "out"
    out.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    before = snapshot(world)
    result = console(*[a.replace("{i}", str(world)).replace("{o}", str(out)) for a in args], cwd=work)
    assert_one_error_line(result, code, pattern, case)
    assert snapshot(world) == before, f"{case} changed an input"
    assert list(out.iterdir()) == [], f"{case} left {list(out.iterdir())}"
    assert list(work.iterdir()) == [], f"{case} wrote {list(work.iterdir())} into its working folder"


# ---------------------------------------------------------------------------------------------
# API cases: the same classes through Python, each an EdgeAIError subclass
# ---------------------------------------------------------------------------------------------


def _ragged(w: Path, o: Path) -> None:
    edgeai.load(w / "cnn.onnx").run({"pixel_values": [[[[0.0] * 28] * 28], [[[0.0] * 27] * 28]]})


def _bf16(w: Path, o: Path, device: str = "cpu") -> None:
    import torch

    edgeai.load(w / "cnn.onnx", device).run({"pixel_values": torch.zeros(1, 1, 28, 28, dtype=torch.bfloat16)})


def _generator_midway(w: Path, o: Path) -> None:
    def calib():
        yield {"pixel_values": X[:1]}
        raise RuntimeError("camera disconnected")

    edgeai.quantize(w / "cnn.onnx", o / "q.onnx", mode="static", calibration=calib())


def _one_then_raise():
    yield {"pixel_values": X[:1]}
    yield {"pixel_values": X[:1] / 0.0 if False else 1 // 0}


def _load_samples(source: Any) -> Callable[[Path, Path], Any]:
    from edgeai.feeds import load_samples
    from edgeai.specs import TensorSpec

    spec = [TensorSpec("pixel_values", ("batch", 1, 28, 28), "float32")]
    return lambda w, o: list(load_samples(source(w) if callable(source) else source, spec))


def _bundle_case(name: str) -> Callable[[Path, Path], Any]:
    from edgeai.bundle import Bundle

    return lambda w, o: Bundle(w / "bundles" / name)


def _describe(name: str) -> Callable[[Path, Path], Any]:
    from edgeai.onnxfile import describe_file

    return lambda w, o: describe_file(w / name)


API_CASES: dict[str, tuple[Callable[[Path, Path], Any], type[EdgeAIError], str]] = {
    "ragged-list-feed": (_ragged, InputMismatchError, "not a rectangular array"),
    "bfloat16-tensor-feed-onnxruntime": (_bf16, InputMismatchError, "bfloat16"),
    "calibration-generator-raises-midway": (_generator_midway, InputMismatchError, "failed at sample 1"),
    "load-samples-generator-raises": (_load_samples(lambda w: _one_then_raise()), InputMismatchError,
                                      "failed at sample 1: ZeroDivisionError"),
    "load-samples-not-iterable": (_load_samples(42), InputMismatchError, "calibration data is a int"),
    "load-samples-object-npz": (_load_samples(lambda w: w / "object.npz"), InputMismatchError, "Python objects"),
    "load-samples-zerod-npz": (_load_samples(lambda w: w / "zerod.npz"), InputMismatchError, "0-d"),
    "load-samples-petabyte-npz": (_load_samples(lambda w: w / "peta.npz"), InputMismatchError, "header declares"),
    "load-samples-fifo-folder": (_load_samples(lambda w: w / "calib_fifo"), InputMismatchError, "named pipe"),
    "load-samples-nul": (_load_samples("a\0b.npz"), InputMismatchError, "NUL byte"),
    "load-npy-petabyte": (lambda w, o: __import__("edgeai.feeds").feeds.load_npy(w / "peta.npy"),
                          InputMismatchError, "header declares"),
    "load-npy-fifo": (lambda w, o: __import__("edgeai.feeds").feeds.load_npy(w / "fifo.npy"), InputMismatchError,
                      "named pipe"),
    "temperature-nan": (lambda w, o: __import__("edgeai.decoding").decoding.chooser(True, float("nan"), 0, 1.0,
                                                                                        0),
                        InputMismatchError, "finite temperature"),
    "temperature-inf": (lambda w, o: __import__("edgeai.decoding").decoding.chooser(True, float("inf"), 0, 1.0,
                                                                                        0),
                        InputMismatchError, "finite temperature"),
    "cache-dir-is-file-onnxruntime": (lambda w, o: edgeai.load(w / "cnn.onnx", "cpu", cache_dir=str(w / "a_file")),
                                      EdgeAIError, "is a file"),
    "load-model-fifo": (lambda w, o: edgeai.load(w / "fifo.onnx"), ModelLoadError, "named pipe"),
    "load-external-data-fifo": (lambda w, o: edgeai.load(w / "ext_fifo" / "model.onnx"), ModelLoadError,
                                "named pipe"),
    "load-sparse-escape": (lambda w, o: edgeai.load(w / "ext_sparse" / "model.onnx"), ModelLoadError,
                           "outside the model's folder"),
    "load-ext-nul": (lambda w, o: edgeai.load(w / "ext_nul" / "model.onnx"), ModelLoadError, "no file can have"),
    "load-ext-length": (lambda w, o: edgeai.load(w / "ext_length" / "model.onnx"), ModelLoadError, "declares"),
    "describe-meta-inputs": (_describe("meta_inputs.onnx"), ModelLoadError, "metadata: inputs"),
    "describe-meta-deep": (_describe("meta_deep.onnx"), ModelLoadError, "nests JSON"),
    "describe-ext-dims": (_describe("ext_dims/model.onnx"), ModelLoadError, "declares"),
    "quantize-o-other-models-data": (lambda w, o: edgeai.quantize(w / "extw" / "mw.onnx", w / "extw" / "w.onnx",
                                                                  mode="dynamic"), OutputOverlapError, OVERLAP),
    "quantize-o-hardlink": (lambda w, o: edgeai.quantize(w / "cnn.onnx", w / "links" / "cnn_hardlink.onnx",
                                                         mode="dynamic"), OutputOverlapError, OVERLAP),
    "run-once-o-external-data": (lambda w, o: __import__("edgeai.running").running.run_once(
        str(w / "ext" / "m.onnx"), output=w / "ext" / "m.onnx.data"), OutputOverlapError, OVERLAP),
    "run-once-o-inside-bundle": (lambda w, o: __import__("edgeai.running").running.run_once(
        str(w / "B"), output=w / "B" / "out.npz"), OutputOverlapError, INSIDE),
    "read-labels-not-utf8": (lambda w, o: __import__("edgeai.bundle").bundle.read_labels(str(w / "labels_latin1.txt")),
                             EdgeAIError, "not UTF-8"),
    "read-labels-fifo": (lambda w, o: __import__("edgeai.bundle").bundle.read_labels(str(w / "fifo.txt")),
                         EdgeAIError, "named pipe"),
    "preprocessing-deep": (lambda w, o: __import__("edgeai.bundle").bundle.read_json_option(
        '{"a": ' + _deep(2000) + "}", "--preprocessing"), EdgeAIError, "nests JSON"),
    "compare-to-wrong-types": (lambda w, o: __import__("edgeai.benchcompare").benchcompare.read_bench_json(
        w / "prev_types.json"), EdgeAIError, "results"),
    **{f"bundle-{name}": (_bundle_case(name), ModelLoadError, words) for name, (_, _, words) in MANIFEST_CASES.items()},
    "bundle-manifest-fifo": (_bundle_case("manifest-fifo"), ModelLoadError, "named pipe"),
    "load-bundle-variant-fifo": (lambda w, o: edgeai.load(w / "bundles" / "variant-fifo"), ModelLoadError,
                                 "named pipe"),
}
if "openvino:CPU" in DEVICES:
    API_CASES["bfloat16-tensor-feed-openvino"] = (lambda w, o: _bf16(w, o, "openvino:CPU"), InputMismatchError,
                                                  "bfloat16")
    API_CASES["cache-dir-is-file-openvino"] = (
        lambda w, o: edgeai.load(w / "cnn.onnx", "openvino:CPU", cache_dir=str(w / "a_file")), EdgeAIError, "is a file")


@pytest.mark.parametrize("case", list(API_CASES))
def test_api(world, tmp_path, case):
    fn, error, pattern = API_CASES[case]
    before = snapshot(world)
    with pytest.raises(error, match=pattern) as caught:
        fn(world, tmp_path)
    assert isinstance(caught.value, EdgeAIError) and "\n" not in str(caught.value)
    assert snapshot(world) == before, f"{case} changed an input"
    assert list(tmp_path.iterdir()) == [], f"{case} left {list(tmp_path.iterdir())}"


def test_the_matrix_has_at_least_80_new_cases():
    assert len(CLI_CASES) + len(API_CASES) >= 80 + 60


# ---------------------------------------------------------------------------------------------
# What must keep working
# ---------------------------------------------------------------------------------------------


def test_a_valid_long_output_name_is_written(world, tmp_path):
    """A 249-character name is valid (255 is the limit); its hidden temp name must fit too."""
    out = tmp_path / ("o" * 245 + ".npz")
    result = console("run", world / "cnn.onnx", "-o", out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]
    assert set(np.load(out)) == {"logits"}


def test_temp_names_stay_within_the_file_name_limit():
    from edgeai.atomic import NAME_MAX, temp_name

    for name in ("a" * 255, "é" * 127 + "x", "m.onnx"):
        tmp = temp_name(name, ".0123abcd.onnx")
        assert len(tmp.encode()) <= NAME_MAX and tmp.startswith(".") and tmp.endswith(".0123abcd.onnx")
    assert temp_name("m.onnx", ".ab.onnx") == ".m.onnx.ab.onnx"  # short names keep the documented pattern


def test_info_counts_parameters_of_huge_declared_initializers(tmp_path):
    """Dims whose product overflows int64 were summed to 0 by numpy."""
    from onnx import TensorProto, helper

    from edgeai.onnxfile import describe_file

    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1 << 40, 1 << 40])  # declared, no data
    graph = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "g", [],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    path = tmp_path / "huge.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    assert describe_file(path)["parameters"] == 1 << 80


def test_foreign_metadata_is_ignored_with_a_warning(world, tmp_path):
    """A value under the 'edgeai' key that is not a JSON object is another tool's: the model runs."""
    result = console("run", world / "meta_foreign.onnx", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().startswith("warning: the model's 'edgeai' metadata is not edgeai's")
    with pytest.warns(UserWarning, match="not edgeai's"):
        assert edgeai.load(world / "meta_foreign.onnx").inputs[0].name == "pixel_values"


def test_info_reads_every_manifest_load_accepts(world, tmp_path):
    """A minimal manifest (only the fields load needs) is described, not crashed on."""
    minimal = _bundle(tmp_path / "minimal", world / "cnn.onnx", lambda m: {
        k: m[k] for k in ("format", "manifest_version", "variants", "inputs", "outputs")})
    edgeai.load(minimal).run({"pixel_values": X[:1]})
    result = console("info", minimal, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "fp32" in result.stdout


def test_the_exit_contract_maps_os_errors(tmp_path):
    """An OSError that reaches a command is one typed line, not 'error: unexpected'."""
    from edgeai.cli.app import as_edgeai_error

    err = as_edgeai_error(OSError(36, "File name too long", "x" * 300))
    assert isinstance(err, FileAccessError) and "File name too long" in str(err)
    assert isinstance(WriteError(tmp_path, OSError(30, "Read-only file system")), EdgeAIError)
