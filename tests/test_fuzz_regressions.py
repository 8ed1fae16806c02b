"""What ``benchmarks/fuzz.py`` found, kept as regression tests, and a short run of each fuzz target.

Each example below crashed the readers before issue 19 (with a builtin exception, RecursionError or
MemoryError instead of an EdgeAIError): one per distinct crash the fuzzer reported on the code of
commit ec5afa1 (33 in 120 s), plus the one it found after the fixes (a negative .npy dimension).
Now each one returns or raises an EdgeAIError subclass.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from edgeai.errors import EdgeAIError

from conftest import ROOT


def _load_fuzz():
    spec = importlib.util.spec_from_file_location("edgeai_fuzz", Path(ROOT) / "benchmarks" / "fuzz.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fuzz = _load_fuzz()


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    return fuzz.Fuzz(tmp_path_factory.mktemp("fuzz"))


def _ok_or_edgeai_error(fn) -> None:
    try:
        fn()
    except EdgeAIError as e:
        assert "\n" not in str(e)


METADATA = ["5", "null", '{"inputs": null}', '{"inputs": [5]}', '{"inputs": [{"value_range": 1}]}',
            '{"inputs": ' + "[" * 3000 + "]" * 3000 + "}", "[" * 100_000, '{"generation": "x"}']


@pytest.mark.parametrize("value", METADATA, ids=range(len(METADATA)))
def test_metadata(harness, value):
    from edgeai.onnxfile import io_specs, read_metadata

    model = fuzz.add_model(metadata=value)
    _ok_or_edgeai_error(lambda: (read_metadata(model), io_specs(model)))


EXTERNAL = [{"location": "w\0.bin"}, {"location": "w" * 300}, {"location": "w.bin", "offset": "x"},
            {"location": "w.bin", "length": str(2**64)}, {"location": "w.bin", "offset": "-1"}, {}]


@pytest.mark.parametrize("fields", EXTERNAL, ids=range(len(EXTERNAL)))
def test_external_data(harness, fields):
    from edgeai.onnxfile import load_proto

    folder = harness.work / "ext"
    folder.mkdir(exist_ok=True)
    (folder / "w.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    (folder / "m.onnx").write_bytes(fuzz.add_model(fields).SerializeToString())
    _ok_or_edgeai_error(lambda: load_proto(folder / "m.onnx"))


def _edit(path: str, value):
    return (path, value)


MANIFEST_EDITS = [
    _edit("source", {"task": None}), _edit("source", []), _edit("engines", "x"), _edit("inputs.0", {"name": "x",
                                                                                                    "shape": [4]}),
    _edit("inputs.0", 1.5), _edit("variants.0.devices", [[1]]), _edit("variants.0.size_bytes", "big"),
    _edit("variants.0.default_for", [{}]), _edit("variants.0.parity", []), _edit("variants.0.sha256", ["a"]),
    _edit("defaults", 5), _edit("defaults", [""]), _edit("mode", None), _edit("parity_data", ...),
    _edit("variants", 3), _edit("variants.0.latency", {"cpu": []}),
]


@pytest.mark.parametrize("edit", MANIFEST_EDITS, ids=range(len(MANIFEST_EDITS)))
def test_manifest(harness, edit):
    path, value = edit
    m = json.loads(json.dumps(harness.manifest))
    target, keys = m, [int(k) if k.isdigit() else k for k in path.split(".")]
    for k in keys[:-1]:
        target = target[k]
    if value is ...:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    harness.executions = 0
    harness.crashes.clear()
    harness.manifest_reader(json.dumps(m).encode())
    assert harness.crashes == {}, harness.crashes


def test_deep_manifest(harness):
    harness.crashes.clear()
    harness.manifest_reader(b'{"format": "edgeai-bundle", "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}")
    assert harness.crashes == {}


NPY = [fuzz.npy_bytes("<f4", (4, 1, 28, 28), False, 0, (1, 0)),  # EOF: header only
       fuzz.npy_bytes("<i8", (11515893645312,), False, 64, (1, 0)),  # MemoryError
       fuzz.npy_bytes("<f4", (), False, 4, (1, 0)),  # 0-d: iterating a 0-d array
       fuzz.npy_bytes("|b1", (433, 117736, -3, 39276151242, 1946649001), False, 256, (2, 0)),  # negative dim
       fuzz.npy_bytes("|O", (2,), False, 16, (1, 0))]


@pytest.mark.parametrize("data", NPY, ids=range(len(NPY)))
def test_npy(harness, data):
    harness.crashes.clear()
    harness.npy(data)
    assert harness.crashes == {}, harness.crashes


NPZ = [[("pixel_values.npy", NPY[0])], [("pixel_values.npy", NPY[1])], [("pixel_values.npy", NPY[2])],
       [("pixel_values.npy", NPY[4])], [("pixel_values.npy", b"\x93NUMP")], b"PK\x03\x04" + bytes(50)]


@pytest.mark.parametrize("members", NPZ, ids=range(len(NPZ)))
def test_npz(harness, members):
    harness.crashes.clear()
    harness.npz(members)
    assert harness.crashes == {}, harness.crashes


@pytest.mark.parametrize("value", [[[1.0, 2.0], [3.0]], [[1, None, 3, 4]], ["a", "b", "c", "d"], [2**70] * 4],
                         ids=range(4))
def test_feeds(harness, value):
    harness.crashes.clear()
    harness.feeds(value)
    assert harness.crashes == {}, harness.crashes


def test_a_short_fuzz_run_finds_nothing():
    """Every target for a few seconds: the property holds on fresh random inputs too."""
    report = fuzz.run(12.0)
    assert report["executions"] > 100
    assert report["crashes"] == {}, json.dumps(report["crashes"], indent=1)[:3000]

