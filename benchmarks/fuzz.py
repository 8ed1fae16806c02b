"""Fuzz edgeai's readers of untrusted input for a fixed time (issue 19).

Targets, each fed structured and raw inputs by hypothesis:

  metadata       the ``edgeai`` JSON in an ONNX file's metadata: ``read_metadata`` and ``io_specs``
  external-data  an ONNX initializer's external-data fields (location, offset, length, dims): ``load_proto``
  manifest       a bundle's ``manifest.json``, mutated from a valid one or raw: ``describe_path``
                 (what ``edgeai info`` prints, rendered too), ``Bundle.select``
  npy            ``.npy`` files with mutated headers and payloads: ``read_named_arrays`` (``run --input``)
                 and ``load_samples`` (``--calib x.npy``)
  npz            ``.npz`` archives of mutated members, or raw bytes: ``load_samples`` (``--calib``/``--data``)
  feeds          Python feed values (ragged lists, odd dtypes, None, strings): ``Model.check_feeds``

The property: a reader returns, or raises an ``EdgeAIError`` subclass. Anything else (a builtin
exception, a RecursionError, a MemoryError) is a crash; each distinct one (target, exception type,
innermost edgeai frame) is reported once with its smallest example. Time is split evenly over the
targets; each runs hypothesis in batches until its share is spent.

    python benchmarks/fuzz.py --seconds 300 [--target manifest] [--json out.json]

EDGEAI_ROOT=/path/to/other/checkout runs the same fuzzer against another copy of edgeai (how the
crashes found before the fixes were counted).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
import traceback
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.environ.get("EDGEAI_ROOT") or str(Path(__file__).resolve().parents[1]))

import edgeai  # noqa: E402
from edgeai.errors import EdgeAIError  # noqa: E402

KEYS = ["inputs", "outputs", "task", "generation", "output_kinds", "name", "value_range", "shape", "dtype",
        "variants", "file", "sha256", "data_file", "data_sha256", "devices", "defaults", "labels", "parity",
        "latency", "source", "engines", "format", "manifest_version", "preprocessing", "notes", "size_bytes",
        "results", "batch", "p50", "cosine", "top1", "passed", "created", "mode", "parity_data", "read_notes"]
SCALARS = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=20) | st.sampled_from(["cpu", "fp32", "f32", "float32", "edgeai-bundle", "1.0", "2.0",
                                                     "../x", "/etc/passwd", "model.fp32.onnx", "a\0b", "0" * 64]))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=5), max_leaves=25)


def _deep(n: int) -> str:
    return "[" * n + "]" * n


RAW_TEXT = st.text(max_size=200) | st.sampled_from(["", "{", "[1,", "null", "1e999", '{"a": NaN}', "\ud800",
                                                    '{"inputs": ' + _deep(3000) + "}", _deep(100_000)])


# --- shared fixtures ---------------------------------------------------------------------------

def add_model(ext: dict[str, str] | None = None, dims: list[int] | None = None, metadata: str | None = None) -> Any:
    """y = x + w (float32 [4]); w inline, or external with the given fields."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.arange(4, dtype=np.float32), "w")
    if ext is not None:
        w.ClearField("raw_data")
        w.data_location = TensorProto.EXTERNAL
        for k, v in ext.items():
            e = w.external_data.add()
            e.key, e.value = k, v
    if dims is not None:
        del w.dims[:]
        w.dims.extend(dims)
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if metadata is not None:
        e = model.metadata_props.add()
        e.key, e.value = "edgeai", metadata
    return model


def npy_bytes(descr: str, shape: Any, fortran: Any, payload: int, version: tuple[int, int]) -> bytes:
    header = repr({"descr": descr, "fortran_order": fortran, "shape": shape}).encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    size = len(header).to_bytes(2 if version[0] == 1 else 4, "little")
    return b"\x93NUMPY" + bytes(version) + size + header + bytes(payload)


DESCRS = st.sampled_from(["<f4", ">f4", "<f8", "<i8", "|b1", "|u1", "<f2", "|O", "<U3", "|S2", "|V8", "<c8",
                          "<M8[s]", "bogus", "[('a', '<f4')]"])
SHAPES = st.lists(st.integers(-3, 2**40), max_size=5).map(tuple) | st.sampled_from([(), (1, 1, 28, 28), (4, 1, 28, 28),
                                                                                    "x", None, (1.5,)])
NPY = (st.builds(npy_bytes, DESCRS, SHAPES, st.booleans() | st.just("yes"), st.integers(0, 4096),
                 st.sampled_from([(1, 0), (2, 0), (3, 0), (9, 9)]))
       | st.binary(max_size=300).map(lambda b: b"\x93NUMPY" + b) | st.binary(max_size=300))


class Fuzz:
    """Runs one target's hypothesis test in batches; records crashes by signature."""

    def __init__(self, work: Path):
        self.work = work
        self.executions = 0
        self.crashes: dict[str, dict[str, Any]] = {}
        from edgeai.specs import TensorSpec

        self.spec = [TensorSpec("pixel_values", ("batch", 1, 28, 28), "float32")]
        self.add_path = work / "add.onnx"
        self.add_path.write_bytes(add_model().SerializeToString())
        self.model = edgeai.load(self.add_path)
        self.manifest = self._valid_manifest()

    def _valid_manifest(self) -> dict[str, Any]:
        import hashlib

        bundle = self.work / "bundle"
        bundle.mkdir()
        (bundle / "model.fp32.onnx").write_bytes(self.add_path.read_bytes())
        return {"format": "edgeai-bundle", "manifest_version": "1.0", "created": "now", "edgeai_version": "0",
                "engines": {"onnxruntime": "1"}, "mode": "none", "source": {"source": "add", "reference": "r"},
                "inputs": [{"name": "x", "shape": ["batch", 4], "dtype": "float32"}],
                "outputs": [{"name": "y", "shape": ["batch", 4], "dtype": "float32"}], "defaults": {"cpu": "fp32"},
                "parity_data": "p", "notes": [], "passed": True, "labels": None, "preprocessing": None,
                "variants": [{"name": "fp32", "file": "model.fp32.onnx", "devices": ["cpu"], "precision": "f32",
                              "sha256": hashlib.sha256(self.add_path.read_bytes()).hexdigest(),
                              "size_bytes": 100, "default_for": ["cpu"], "parity": {"cpu": {"passed": True}},
                              "latency": {"cpu": {"p50_ms": 1.0}}}]}

    def check(self, target: str, fn: Callable[[], Any], example: Any) -> None:
        """Run one example: returning or an EdgeAIError is fine; anything else is a crash."""
        self.executions += 1
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                fn()
        except EdgeAIError:
            return
        except BaseException as e:  # noqa: BLE001 - this is what a fuzzer looks for
            if isinstance(e, KeyboardInterrupt):
                raise
            frames = [f for f in traceback.extract_tb(e.__traceback__) if "edgeai" in f.filename
                      and "benchmarks" not in f.filename]
            where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
            sig = f"{target}: {type(e).__name__} at {where}"
            text = repr(example)
            known = self.crashes.get(sig)
            if known is None or len(text) < len(known["example"]):
                self.crashes[sig] = {"target": target, "error": f"{type(e).__name__}: {str(e)[:200]}",
                                     "where": where, "example": text[:2000],
                                     "count": (known or {}).get("count", 0) + 1}
            else:
                known["count"] += 1

    # --- targets -----------------------------------------------------------------------------

    def metadata(self, value: str) -> None:
        from edgeai.onnxfile import io_specs, read_metadata

        try:
            model = add_model(metadata=value)
        except (UnicodeEncodeError, ValueError):  # protobuf strings cannot hold lone surrogates: not a file
            return
        self.check("metadata", lambda: (read_metadata(model), io_specs(model)), value)

    def external_data(self, fields: dict[str, str], dims: list[int] | None) -> None:
        from edgeai.onnxfile import load_proto

        folder = self.work / "ext"
        folder.mkdir(exist_ok=True)
        (folder / "w.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
        path = folder / "m.onnx"
        try:
            path.write_bytes(add_model(fields, dims).SerializeToString())
        except (UnicodeEncodeError, ValueError):  # not representable in a file
            return
        self.check("external-data", lambda: load_proto(path), (fields, dims))

    def manifest_reader(self, raw: bytes) -> None:
        from edgeai.bundle import Bundle, describe_path
        from edgeai.summaries import print_bundle

        bundle = self.work / "bundle"
        (bundle / "manifest.json").write_bytes(raw)

        def read() -> None:
            data = describe_path(bundle)
            print_bundle(data)
            Bundle(bundle).select("cpu")

        self.check("manifest", read, raw[:500])

    def npy(self, data: bytes) -> None:
        from edgeai.feeds import load_samples, read_named_arrays

        path = self.work / "x.npy"
        path.write_bytes(data)
        self.check("npy", lambda: (read_named_arrays([f"x={path}"]), list(load_samples(str(path), self.spec))),
                   data[:300])

    def npz(self, members: list[tuple[str, bytes]] | bytes) -> None:
        from edgeai.feeds import load_samples

        path = self.work / "x.npz"
        if isinstance(members, bytes):
            path.write_bytes(members)
        else:
            with zipfile.ZipFile(path, "w") as zf:
                for name, data in members:
                    zf.writestr(name, data)
        self.check("npz", lambda: list(load_samples(str(path), self.spec)), members)

    def feeds(self, value: Any) -> None:
        self.check("feeds", lambda: self.model.check_feeds({"x": value}), value)


def _mutations(manifest: dict[str, Any]) -> st.SearchStrategy[bytes]:
    """Valid manifests with a few subtrees replaced or deleted, plus raw text."""

    def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
        out = [prefix]
        if isinstance(node, dict):
            for k, v in node.items():
                out += paths(v, (*prefix, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                out += paths(v, (*prefix, i))
        return out

    all_paths = paths(manifest)[1:]

    def mutate(edits: list[tuple[tuple, Any, bool]]) -> bytes:
        m = json.loads(json.dumps(manifest))
        for path, value, delete in edits:
            target = m
            try:
                for key in path[:-1]:
                    target = target[key]
                if delete and isinstance(target, dict):
                    target.pop(path[-1], None)
                else:
                    target[path[-1]] = value
            except (KeyError, IndexError, TypeError):
                continue
        return json.dumps(m).encode()

    edit = st.tuples(st.sampled_from(all_paths), JSON, st.booleans())
    return (st.lists(edit, min_size=1, max_size=3).map(mutate) | RAW_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass"))
            | st.binary(max_size=200))


def strategies(f: Fuzz) -> dict[str, tuple[Callable[..., None], tuple]]:
    location = st.text(max_size=30) | st.sampled_from(["w.bin", "../w.bin", "/etc/passwd", "w\0.bin", "a/" * 2100,
                                                       "w" * 300, ".", "", "sub/../w.bin"])
    number = st.integers(-2**64, 2**64).map(str) | st.sampled_from(["", "abc", "1e3", " 4", "0x10", "16"])
    fields = st.fixed_dictionaries({}, optional={"location": location, "offset": number, "length": number,
                                                 "checksum": st.text(max_size=5)})
    dims = st.none() | st.lists(st.integers(-5, 2**40), max_size=4)
    member = st.tuples(st.sampled_from(["pixel_values.npy", "pixel_values", "other.npy", "../x.npy", "a/b.npy"]), NPY)
    npz = st.lists(member, max_size=3) | st.binary(max_size=300)
    ragged = st.recursive(st.floats(allow_nan=True) | st.integers(-2**70, 2**70) | st.none() | st.text(max_size=3),
                          lambda inner: st.lists(inner, max_size=4), max_leaves=20)
    arrays = st.builds(lambda dt, shape: np.zeros(shape, dtype=dt),
                       st.sampled_from(["float32", "float64", "int64", "bool", "complex64", "U2", "object", "float16"]),
                       st.lists(st.integers(0, 5), max_size=3).map(tuple))
    return {
        "metadata": (f.metadata, (JSON.map(json.dumps) | RAW_TEXT,)),
        "external-data": (f.external_data, (fields, dims)),
        "manifest": (f.manifest_reader, (_mutations(f.manifest),)),
        "npy": (f.npy, (NPY,)),
        "npz": (f.npz, (npz,)),
        "feeds": (f.feeds, (ragged | arrays,)),
    }


def run(seconds: float, targets: list[str] | None = None) -> dict[str, Any]:
    warnings.filterwarnings("ignore")  # the harness's own zip writes warn about duplicate member names
    with tempfile.TemporaryDirectory(prefix="edgeai-fuzz-") as tmp:
        f = Fuzz(Path(tmp))
        table = strategies(f)
        chosen = targets or list(table)
        report: dict[str, Any] = {"seconds": seconds, "edgeai": str(Path(edgeai.__file__).parent), "targets": {}}
        for name in chosen:
            fn, strats = table[name]
            test = settings(max_examples=200, deadline=None, database=None, phases=[Phase.generate],
                            suppress_health_check=list(HealthCheck))(given(*strats)(fn))
            start, before, crashes_before = time.monotonic(), f.executions, set(f.crashes)
            while time.monotonic() - start < seconds / len(chosen):
                test()
            found = sorted(set(f.crashes) - crashes_before)
            report["targets"][name] = {"seconds": round(time.monotonic() - start, 1),
                                       "executions": f.executions - before, "crashes": found}
            print(f"{name:14} {f.executions - before:7d} executions in {time.monotonic() - start:5.1f}s, "
                  f"{len(found)} distinct crashes", flush=True)
        report["executions"] = f.executions
        report["crashes"] = f.crashes
        return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="total fuzzing time, split over targets")
    parser.add_argument("--target", action="append", help="one target (repeat); default all")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args()
    report = run(args.seconds, args.target)
    print(f"total: {report['executions']} executions, {len(report['crashes'])} distinct crashes")
    for sig, c in sorted(report["crashes"].items()):
        print(f"CRASH {sig} (x{c['count']}): {c['error']}\n    example: {c['example'][:300]}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    sys.exit(1 if report["crashes"] else 0)


if __name__ == "__main__":
    main()
