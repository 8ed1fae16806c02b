"""The bad-input matrix: every way a model file, a feed, a device string or a CLI value can be wrong.

Each case must give one clear EdgeAIError (API) or one ``error:`` line on stderr with the documented
exit code (CLI: 2 bad input, 1 failed check), never a traceback, never a partial output file, and
never a change to an input file (inputs are hashed before and after every CLI case).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

import edgeai
from edgeai.errors import (
    DeviceUnavailableError,
    EdgeAIError,
    InputMismatchError,
    ModelLoadError,
    NonFiniteOutputError,
)

from conftest import DEVICES, device_params

# ---------------------------------------------------------------------------------------------
# Bad model files
# ---------------------------------------------------------------------------------------------


def _external_data_model(folder: Path, location: str) -> Path:
    """A one-Add model whose weight lives in external data at ``location`` (relative to folder)."""
    from onnx import TensorProto, helper, numpy_helper
    from onnx.external_data_helper import set_external_data

    folder.mkdir(parents=True, exist_ok=True)
    w = numpy_helper.from_array(np.arange(4, dtype=np.float32), "w")
    set_external_data(w, location=location, offset=0, length=16)
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def _cut_after_graph(data: bytes) -> bytes:
    """The file up to the end of ModelProto field 7 (graph): it parses, but lacks opset_import."""
    from google.protobuf.internal.decoder import _DecodeVarint

    pos = 0
    while pos < len(data):
        tag, pos = _DecodeVarint(data, pos)
        if tag & 7 == 0:
            _, pos = _DecodeVarint(data, pos)
        else:
            length, pos = _DecodeVarint(data, pos)
            pos += length
        if tag >> 3 == 7:
            return data[:pos]
    raise AssertionError("no graph field")


@pytest.fixture(scope="session")
def bad_models(tmp_path_factory, zoo_onnx) -> dict[str, Path]:
    """Every kind of broken model file, by name; the secret next to them must never be read."""
    root = tmp_path_factory.mktemp("bad_models")
    good = zoo_onnx("cnn").read_bytes()
    (root / "secret.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    files = {"missing": root / "missing.onnx"}
    for name, data in {
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "cut_after_graph": _cut_after_graph(good),
        "text": b'{"not": "an onnx model"}\n',
        "png": b"\x89PNG\r\n\x1a\n" + bytes(64),
        "random_bytes": np.random.default_rng(0).bytes(4096),
        "zeros": bytes(4096),
    }.items():
        files[name] = root / f"{name}.onnx"
        files[name].write_bytes(data)
    import onnx
    from onnx import numpy_helper

    files["npy"] = root / "npy.onnx"
    with open(files["npy"], "wb") as f:
        np.save(f, np.zeros((2, 3), np.float32))
    files["tensor_proto"] = root / "tensor.onnx"  # valid protobuf, another message type
    files["tensor_proto"].write_bytes(numpy_helper.from_array(np.ones((3, 3), np.float32), "t").SerializeToString())
    files["folder"] = root / "folder.onnx"
    files["folder"].mkdir()
    files["ext_parent"] = _external_data_model(root / "ext_parent", "../secret.bin")
    files["ext_absolute"] = _external_data_model(root / "ext_absolute", str(root / "secret.bin"))
    files["ext_nested_escape"] = _external_data_model(root / "ext_nested", "sub/../../secret.bin")
    link_dir = root / "ext_symlink"
    files["ext_symlink"] = _external_data_model(link_dir, "weights.bin")
    os.symlink(root / "secret.bin", link_dir / "weights.bin")
    files["ext_missing"] = _external_data_model(root / "ext_missing", "weights.bin")
    assert onnx.load(str(zoo_onnx("cnn"))).graph.node  # the good file is fine
    return files


# The words the message must contain, per bad file: a user must learn what is wrong.
FILE_MESSAGES = {
    "missing": "not found", "empty": "empty", "truncated": "not a valid ONNX model",
    "cut_after_graph": "no opset_import", "text": "not a valid ONNX model|holds no graph",
    "png": "not a valid ONNX model|holds no graph", "random_bytes": "not a valid ONNX model|holds no graph",
    "zeros": "not a valid ONNX model|holds no graph", "npy": "not a valid ONNX model|holds no graph",
    "tensor_proto": "not a valid ONNX model|holds no graph", "folder": "is a folder",
    "ext_parent": "outside the model's folder", "ext_absolute": "outside the model's folder",
    "ext_nested_escape": "outside the model's folder", "ext_symlink": "outside the model's folder",
    "ext_missing": "is missing",
}


@pytest.mark.parametrize("kind", list(FILE_MESSAGES))
@pytest.mark.parametrize("device", device_params(["cpu", "openvino:CPU"]))
def test_api_load_refuses_bad_files(bad_models, kind, device):
    with pytest.raises(ModelLoadError, match=FILE_MESSAGES[kind]):
        edgeai.load(bad_models[kind], device)


@pytest.mark.parametrize("kind", list(FILE_MESSAGES))
def test_api_info_and_quantize_refuse_bad_files(bad_models, kind, tmp_path):
    from edgeai.onnxfile import describe_file

    with pytest.raises(ModelLoadError, match=FILE_MESSAGES[kind]):
        describe_file(bad_models[kind])
    with pytest.raises(ModelLoadError, match=FILE_MESSAGES[kind]):
        edgeai.quantize(bad_models[kind], tmp_path / "q.onnx", mode="dynamic")
    assert list(tmp_path.iterdir()) == []


def test_external_data_inside_the_folder_still_loads(tmp_path):
    path = _external_data_model(tmp_path / "ok", "weights.bin")
    (tmp_path / "ok" / "weights.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    out = edgeai.load(path).run({"x": np.ones(4, np.float32)})["y"]
    np.testing.assert_array_equal(out, [1, 2, 3, 4])


def test_truncation_sweep_never_loads(zoo_onnx, tmp_path):
    """The file cut at 40 points (and one byte short) on every CPU engine: all refused, cleanly."""
    good = zoo_onnx("cnn").read_bytes()
    cuts = sorted({len(good) * i // 40 for i in range(1, 40)} | {len(good) - 1})
    devices = [d for d in ("cpu", "openvino:CPU") if d in DEVICES]
    tried = 0
    for cut in cuts:
        path = tmp_path / "cut.onnx"
        path.write_bytes(good[:cut])
        for device in devices:
            tried += 1
            with pytest.raises(ModelLoadError):
                edgeai.load(path, device)
    assert tried == len(cuts) * len(devices)


def test_random_bytes_never_load(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(25):
        path = tmp_path / f"r{i}.onnx"
        path.write_bytes(rng.bytes(int(rng.integers(1, 20000))))
        with pytest.raises(ModelLoadError):
            edgeai.load(path)


# ---------------------------------------------------------------------------------------------
# Bad feeds, on every engine (the checks run before any engine is called)
# ---------------------------------------------------------------------------------------------

X = np.zeros((2, 1, 28, 28), np.float32)

FEED_CASES = {
    "wrong_name": ({"image": X}, r"missing \['pixel_values'\].*unknown \['image'\]"),
    "extra_input": ({"pixel_values": X, "extra": X}, r"unknown \['extra'\]"),
    "no_inputs": ({}, r"missing \['pixel_values'\]"),
    "float64": ({"pixel_values": X.astype(np.float64)}, "expects float32.*got float64.*allow_cast"),
    "int64": ({"pixel_values": X.astype(np.int64)}, "expects float32.*got int64"),
    "complex": ({"pixel_values": X.astype(np.complex64)}, "expects float32.*got complex64"),
    "object": ({"pixel_values": X.astype(object)}, "expects float32.*got object"),
    "string": ({"pixel_values": "abc"}, "expects float32.*got <U3"),
    "none": ({"pixel_values": None}, "expects float32.*got object"),
    "rank_3": ({"pixel_values": X[0]}, "rank 4.*rank 3.*add a batch axis"),
    "rank_5": ({"pixel_values": X[None]}, "rank 4.*rank 5"),
    "nhwc": ({"pixel_values": np.zeros((2, 28, 28, 1), np.float32)}, "axis 1 must be 1, got 28"),
    "channels_3": ({"pixel_values": np.zeros((2, 3, 28, 28), np.float32)}, "axis 1 must be 1, got 3"),
    "spatial_32": ({"pixel_values": np.zeros((2, 1, 32, 32), np.float32)}, "axis 2 must be 28, got 32"),
    "not_a_dict": ([X], "feeds must be a dict"),
}


@pytest.fixture(scope="module")
def cnn_models(zoo_onnx):
    models = {d: edgeai.load(zoo_onnx("cnn"), d) for d in ("cpu", "openvino:CPU") if d in DEVICES}
    models["torch"] = edgeai.load("zoo:cnn", "torch")
    return models


@pytest.mark.parametrize("case", list(FEED_CASES))
@pytest.mark.parametrize("device", device_params(["cpu", "openvino:CPU"]) + ["torch"])
def test_bad_feeds_are_input_mismatch(cnn_models, device, case):
    feeds, message = FEED_CASES[case]
    with pytest.raises(InputMismatchError, match=message):
        cnn_models[device].run(feeds)
    # The model is still usable after a refused call.
    assert cnn_models[device].run({"pixel_values": X})[cnn_models[device].outputs[0].name].shape == (2, 10)


@pytest.mark.parametrize("device", device_params(["cpu", "openvino:CPU"]))
def test_multi_input_mismatches(zoo_onnx, device):
    m = edgeai.load(zoo_onnx("bert"), device)
    ids = np.ones((1, 8), np.int64)
    with pytest.raises(InputMismatchError, match=r"missing \['attention_mask', 'token_type_ids'\]"):
        m.run({"input_ids": ids})
    with pytest.raises(InputMismatchError, match="expects int64.*got int32"):
        m.run({"input_ids": ids.astype(np.int32), "attention_mask": ids, "token_type_ids": ids})
    # A mask of another length used to run on OpenVINO (broadcast) and answer garbage.
    with pytest.raises(InputMismatchError, match="inputs disagree on dim 'seq'.*'attention_mask' axis 1 = 1"):
        m.run({"input_ids": ids, "attention_mask": ids[:, :1], "token_type_ids": ids})
    with pytest.raises(InputMismatchError, match="inputs disagree on dim 'batch'"):
        m.run({"input_ids": ids, "attention_mask": ids, "token_type_ids": np.ones((2, 8), np.int64)})


@pytest.mark.parametrize("device", device_params(["cpu", "openvino:CPU"]))
def test_big_endian_and_odd_layouts_give_the_same_answer(cnn_models, device):
    """Byte-swapped, Fortran-order, strided and read-only arrays are the same data: same outputs."""
    m = cnn_models[device]
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    ref = m.run({"pixel_values": x})["logits"]
    readonly = x.copy()
    readonly.setflags(write=False)
    for variant in (x.astype(">f4"), np.asfortranarray(x), np.repeat(x, 2, axis=0)[::2], readonly):
        np.testing.assert_array_equal(m.run({"pixel_values": variant})["logits"], ref)


def test_zero_size_batch(cnn_models):
    """onnxruntime runs an empty batch; OpenVINO cannot, and says so as bad input, not a crash."""
    assert cnn_models["cpu"].run({"pixel_values": X[:0]})["logits"].shape == (0, 10)
    if "openvino:CPU" in cnn_models:
        with pytest.raises(InputMismatchError, match=r"OpenVINO cannot run empty tensors: input 'pixel_values' "
                                                     r"has shape \[0, 1, 28, 28\]"):
            cnn_models["openvino:CPU"].run({"pixel_values": X[:0]})


# ---------------------------------------------------------------------------------------------
# NaN / Inf and out-of-range values: reported by default, refused with check_values
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", device_params(["cpu", "openvino:CPU"]))
def test_nan_inf_inputs_are_reported_and_refused_on_request(zoo_onnx, device):
    from edgeai.runtimes.base import value_problems

    x = X.copy()
    x[0, 0, 0, :3] = [np.nan, np.inf, -np.inf]
    plain = edgeai.load(zoo_onnx("cnn"), device)
    # It runs (off by default), and the outputs need not show it: max-pooling drops the NaN here,
    # which is why bad input values are reported from the inputs themselves.
    assert plain.run({"pixel_values": x})["logits"].shape == (2, 10)
    assert value_problems({"pixel_values": x}) == {"pixel_values": "1 NaN and 2 Inf of 1568 values"}
    checked = edgeai.load(zoo_onnx("cnn"), device, check_values=True)
    with pytest.raises(InputMismatchError, match="input 'pixel_values': 1 NaN and 2 Inf of 1568 values"):
        checked.run({"pixel_values": x})
    assert checked.run({"pixel_values": X})["logits"].shape == (2, 10)


@pytest.mark.parametrize("device", device_params(["cpu", "openvino:CPU"]))
def test_nan_outputs_from_finite_inputs(tmp_path, device):
    path = _log_model(tmp_path / "log.onnx")
    x = np.array([[1.0, -1.0, 0.0, 2.0]], np.float32)  # log(-1) = NaN, log(0) = -Inf
    assert np.isnan(edgeai.load(path, device).run({"x": x})["y"][0, 1])
    with pytest.raises(NonFiniteOutputError, match="output 'y': 1 NaN and 1 Inf of 4 values"):
        edgeai.load(path, device, check_values=True).run({"x": x})


@pytest.mark.parametrize("device", device_params(["cpu", "openvino:CPU"]))
def test_token_ids_past_the_vocabulary(zoo_onnx, device):
    """onnxruntime refuses them, OpenVINO returns numbers: check_values makes both refuse."""
    feeds = {"input_ids": np.full((1, 4), 10**6, np.int64), "attention_mask": np.ones((1, 4), np.int64),
             "token_type_ids": np.zeros((1, 4), np.int64)}
    plain = edgeai.load(zoo_onnx("bert"), device)
    if device == "cpu":
        with pytest.raises(InputMismatchError, match="onnxruntime rejected the inputs.*out of data bounds"):
            plain.run(feeds)
    else:
        assert plain.run(feeds)["last_hidden_state"].shape == (1, 4, 64)  # silently: the reason for the check
    checked = edgeai.load(zoo_onnx("bert"), device, check_values=True)
    with pytest.raises(InputMismatchError, match=r"'input_ids': 4 of 4 values outside its range \[0, 1000\)"):
        checked.run(feeds)


# ---------------------------------------------------------------------------------------------
# Huge shapes: refused before anything is allocated
# ---------------------------------------------------------------------------------------------


def _log_model(path: Path) -> Path:
    """y = log(x) over float32 [batch, 4]: NaN and -Inf outputs from finite inputs."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Log", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _fixed_shape_model(path: Path, shape: list[int]) -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_make_inputs_refuses_huge_sizes_before_allocating():
    from edgeai.specs import TensorSpec, check_sample_size, make_inputs

    specs = [TensorSpec("x", ("batch", 3, 224, 224))]
    with pytest.raises(InputMismatchError, match=r"input 'x' float32 \[1000000000, 3, 224, 224\].*smaller batch"):
        make_inputs(specs, {"batch": 10**9})
    with pytest.raises(InputMismatchError, match="negative size"):
        make_inputs(specs, {"batch": -1})
    with pytest.raises(InputMismatchError, match="must be an integer"):
        make_inputs(specs, {"batch": "two"})
    # An explicit limit applies exactly: float32 drawn as float64 first, so 12 bytes per value.
    assert check_sample_size(specs, {"batch": 1}, max_bytes=12 * 3 * 224 * 224) == 12 * 3 * 224 * 224
    with pytest.raises(InputMismatchError):
        make_inputs(specs, {"batch": 1}, max_bytes=12 * 3 * 224 * 224 - 1)
    # Dims so large their product overflows int64 are still measured correctly.
    with pytest.raises(InputMismatchError):
        make_inputs([TensorSpec("x", (2**40, 2**40, 2**40))])


def test_huge_fixed_shape_model_through_the_api(tmp_path):
    path = _fixed_shape_model(tmp_path / "huge.onnx", [200_000, 100_000, 10])
    m = edgeai.load(path)  # loading allocates nothing for inputs
    with pytest.raises(InputMismatchError, match="would need"):
        edgeai.compare(m, m, 1)
    with pytest.raises(InputMismatchError, match="would need"):
        edgeai.benchmark(m, iterations=1, batch=200_000)  # the model's own (static) batch


@pytest.mark.openvino
def test_huge_static_shape_on_openvino_is_refused_before_compiling(zoo_onnx):
    if "openvino:CPU" not in DEVICES:
        pytest.skip("OpenVINO CPU is not available")
    with pytest.raises(InputMismatchError, match="static shapes.*would need"):
        edgeai.load(zoo_onnx("cnn"), "openvino:CPU", static_shapes={"pixel_values": (10**8, 1, 28, 28)})


# ---------------------------------------------------------------------------------------------
# Bad device strings and options
# ---------------------------------------------------------------------------------------------

BAD_DEVICES = ["tpu", "", "cpu:1", "cuda:x", "openvino:FOO", "gpu", "cuda:-1", "openvino:", "None"]


@pytest.mark.parametrize("device", BAD_DEVICES)
def test_bad_device_strings(zoo_onnx, device):
    with pytest.raises(DeviceUnavailableError, match="unknown device.*Devices here"):
        edgeai.load(zoo_onnx("cnn"), device)


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "tensorrt", "openvino:GPU", "openvino:NPU"])
def test_devices_not_on_this_machine(zoo_onnx, device):
    if device in DEVICES:
        pytest.skip(f"{device} is available here")
    with pytest.raises(DeviceUnavailableError, match="Devices here"):
        edgeai.load(zoo_onnx("cnn"), device)


@pytest.mark.parametrize("options, message", [
    ({"threads": -1}, "threads must be a positive integer"),
    ({"threads": 1.5}, "threads must be a positive integer"),
    ({"optimization": "max"}, "unknown optimization level"),
    ({"bogus": 1}, r"unknown option\(s\) for onnxruntime"),
    ({"precision": "f8"}, "unknown precision"),
])
def test_bad_load_options(zoo_onnx, options, message):
    with pytest.raises(EdgeAIError, match=message):
        edgeai.load(zoo_onnx("cnn"), "cpu", **options)


@pytest.mark.parametrize("kwargs, message", [
    ({"min_cosine": 2.0}, "min_cosine=2.0 is out of range"),
    ({"min_top1": 99}, "a fraction"),
    ({"atol": -1e-3}, "atol=-0.001 is out of range"),
    ({"min_cosine": float("nan")}, "out of range"),
])
def test_bad_tolerances(kwargs, message):
    with pytest.raises(InputMismatchError, match=message):
        edgeai.Tolerance(**kwargs)


# ---------------------------------------------------------------------------------------------
# The CLI: real subprocesses; exit code, one stderr line, inputs untouched, no partial outputs
# ---------------------------------------------------------------------------------------------


def _digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) with its sha256: inputs must not change."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def cli_inputs(tmp_path_factory, zoo_onnx, bad_models) -> Path:
    """A folder of inputs for CLI cases: models (good and bad) and .npy files."""
    import shutil

    root = tmp_path_factory.mktemp("cli_inputs")
    shutil.copy(zoo_onnx("cnn"), root / "cnn.onnx")
    shutil.copy(zoo_onnx("bert"), root / "bert.onnx")
    for kind in ("empty", "truncated", "cut_after_graph", "random_bytes", "text"):
        shutil.copy(bad_models[kind], root / f"{kind}.onnx")
    shutil.copytree(bad_models["ext_parent"].parent, root / "ext" / "models")
    shutil.copy(bad_models["ext_parent"].parent.parent / "secret.bin", root / "ext" / "secret.bin")
    _fixed_shape_model(root / "huge.onnx", [200_000, 100_000, 10])
    np.save(root / "x.npy", X[:1])
    np.save(root / "x64.npy", X[:1].astype(np.float64))
    nan = X[:1].copy()
    nan[..., 0] = np.nan
    np.save(root / "nan.npy", nan)
    _log_model(root / "log.onnx")
    np.save(root / "negative.npy", np.array([[1.0, -1.0, 0.0, 2.0]], np.float32))
    np.save(root / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (root / "notnpy.npy").write_text("hello")
    np.save(root / "ids_oov.npy", np.full((1, 4), 10**6, np.int64))
    np.save(root / "ones.npy", np.ones((1, 4), np.int64))
    (root / "a_folder").mkdir()
    return root


# (args, exit code, words in the one stderr line). "{i}" is the inputs folder, "{o}" the output one.
CLI_CASES = {
    # bad model files
    "run-missing": (["run", "{i}/nothere.onnx"], 2, "model file not found"),
    "run-empty": (["run", "{i}/empty.onnx"], 2, "is empty"),
    "run-truncated": (["run", "{i}/truncated.onnx"], 2, "not a valid ONNX model"),
    "run-cut-after-graph": (["run", "{i}/cut_after_graph.onnx", "--device", "openvino:CPU"], 2, "no opset_import"),
    "run-random-bytes": (["run", "{i}/random_bytes.onnx"], 2, "not a valid ONNX model|holds no graph"),
    "run-text": (["run", "{i}/text.onnx"], 2, "not a valid ONNX model|holds no graph"),
    "run-folder": (["run", "{i}/a_folder"], 2, "is a folder"),
    "run-ext-outside": (["run", "{i}/ext/models/model.onnx"], 2, "outside the model's folder"),
    "info-truncated": (["info", "{i}/truncated.onnx"], 2, "not a valid ONNX model"),
    "info-ext-outside": (["info", "{i}/ext/models/model.onnx"], 2, "outside the model's folder"),
    "quantize-empty": (["quantize", "{i}/empty.onnx", "-o", "{o}/q.onnx", "--mode", "dynamic"], 2, "is empty"),
    "check-random-bytes": (["check", "{i}/random_bytes.onnx", "--reference", "{i}/cnn.onnx"], 2, "not a valid ONNX"),
    "bench-text": (["bench", "{i}/text.onnx", "--iterations", "2"], 2, "not a valid ONNX model|holds no graph"),
    # bad feeds
    "run-wrong-name": (["run", "{i}/cnn.onnx", "--input", "image={i}/x.npy"], 2, r"missing \['pixel_values'\]"),
    "run-wrong-dtype": (["run", "{i}/cnn.onnx", "--input", "pixel_values={i}/x64.npy"], 2, "expects float32"),
    "run-missing-input": (["run", "{i}/bert.onnx", "--input", "input_ids={i}/ones.npy"], 2, "missing"),
    "run-pickled-npy": (["run", "{i}/cnn.onnx", "--input", "pixel_values={i}/pickled.npy"], 2, "allow_pickle=False"),
    "run-not-npy": (["run", "{i}/cnn.onnx", "--input", "pixel_values={i}/notnpy.npy"], 2, "cannot read"),
    "run-npy-missing": (["run", "{i}/cnn.onnx", "--input", "pixel_values={i}/nothere.npy"], 2, "not found"),
    "run-input-syntax": (["run", "{i}/cnn.onnx", "--input", "pixel_values"], 2, "expected NAME=file.npy"),
    "run-input-twice": (["run", "{i}/cnn.onnx", "--input", "pixel_values={i}/x.npy", "--input",
                         "pixel_values={i}/x.npy"], 2, "given twice"),
    "run-nan-checked": (["run", "{i}/cnn.onnx", "--input", "pixel_values={i}/nan.npy", "--check-values"], 2,
                        "28 NaN and 0 Inf"),
    "run-nan-output-checked": (["run", "{i}/log.onnx", "--input", "x={i}/negative.npy", "--check-values"], 1,
                               "produced NaN/Inf.*'y': 1 NaN and 1 Inf"),
    "run-oov-ids-checked": (["run", "{i}/bert.onnx", "--input", "input_ids={i}/ids_oov.npy", "--input",
                             "attention_mask={i}/ones.npy", "--input", "token_type_ids={i}/ones.npy",
                             "--device", "openvino:CPU", "--check-values"], 2, "outside its range"),
    "run-oov-ids-onnxruntime": (["run", "{i}/bert.onnx", "--input", "input_ids={i}/ids_oov.npy", "--input",
                                 "attention_mask={i}/ones.npy", "--input", "token_type_ids={i}/ones.npy"], 2,
                                "out of data bounds"),
    # huge shapes
    "run-huge-fixed-dims": (["run", "{i}/huge.onnx"], 2, "would need"),
    "bench-huge-batch": (["bench", "{i}/cnn.onnx", "--batch", "100000000", "--iterations", "2"], 2, "would need"),
    "check-huge-fixed-dims": (["check", "{i}/huge.onnx", "--reference", "{i}/huge.onnx"], 2, "would need"),
    "run-huge-static-shape": (["run", "{i}/cnn.onnx", "--device", "openvino:CPU", "--shape",
                               "pixel_values:100000000x1x28x28"], 2, "would need"),
    # bad devices
    "run-device-tpu": (["run", "{i}/cnn.onnx", "--device", "tpu"], 2, "unknown device"),
    "run-device-empty": (["run", "{i}/cnn.onnx", "--device", ""], 2, "unknown device"),
    "run-device-cpu1": (["run", "{i}/cnn.onnx", "--device", "cpu:1"], 2, "unknown device"),
    "run-device-openvino-foo": (["run", "{i}/cnn.onnx", "--device", "openvino:FOO"], 2, "unknown device"),
    "bench-device-tpu": (["bench", "{i}/cnn.onnx", "--device", "tpu"], 2, "unknown device"),
    "check-device-tpu": (["check", "{i}/cnn.onnx", "--reference", "{i}/cnn.onnx", "--device", "tpu"], 2,
                         "unknown device"),
    "run-precision": (["run", "{i}/cnn.onnx", "--precision", "f8"], 2, "unknown precision"),
    # bad values
    "bench-iterations-negative": (["bench", "{i}/cnn.onnx", "--iterations", "-5"], 2, "--iterations must be at least 1"),
    "bench-iterations-zero": (["bench", "{i}/cnn.onnx", "--iterations", "0"], 2, "--iterations must be at least 1"),
    "bench-iterations-text": (["bench", "{i}/cnn.onnx", "--iterations", "abc"], 2, "Invalid value for '--iterations'"),
    "bench-warmup-negative": (["bench", "{i}/cnn.onnx", "--warmup", "-1"], 2, "--warmup must be at least 0"),
    "bench-rounds-zero": (["bench", "{i}/cnn.onnx", "--rounds", "0"], 2, "--rounds must be at least 1"),
    "bench-threads-negative": (["bench", "{i}/cnn.onnx", "--threads", "-1"], 2, "--threads must be at least 1"),
    "quantize-speed-budget-not-auto": (["quantize", "{i}/cnn.onnx", "-o", "{o}/q.onnx", "--mode", "dynamic",
                                        "--speed-budget", "5"], 2, "--speed-budget applies to --mode auto"),
    "quantize-perplexity-not-decoder": (["quantize", "{i}/cnn.onnx", "-o", "{o}/q.onnx", "--perplexity-ids",
                                         "{i}/cnn.onnx"], 2, "judges a KV-cache decoder"),
    "quantize-max-rounds-zero": (["quantize", "{i}/cnn.onnx", "-o", "{o}/q.onnx", "--mode", "auto", "--max-rounds",
                                  "0"], 2, "--max-rounds must be positive"),
    "bench-batch-zero": (["bench", "{i}/cnn.onnx", "--batch", "0"], 2, "positive integers"),
    "bench-batch-text": (["bench", "{i}/cnn.onnx", "--batch", "a,b"], 2, "bad --batch"),
    "bench-batch-empty": (["bench", "{i}/cnn.onnx", "--batch", ""], 2, "positive integers"),
    "bench-batch-negative": (["bench", "{i}/cnn.onnx", "--batch", "1,-8"], 2, "positive integers"),
    "check-samples-zero": (["check", "{i}/cnn.onnx", "--reference", "{i}/cnn.onnx", "--samples", "0"], 2,
                           "--samples must be at least 1"),
    "check-min-cosine": (["check", "{i}/cnn.onnx", "--reference", "{i}/cnn.onnx", "--min-cosine", "2"], 2,
                         "min_cosine=2.0 is out of range"),
    "check-min-top1-percent": (["check", "{i}/cnn.onnx", "--reference", "{i}/cnn.onnx", "--min-top1", "99"], 2,
                               r"min_top1=99.0 is out of range.*in \[0, 1\]"),
    "export-opset": (["export", "zoo:cnn", "-o", "{o}/e.onnx", "--opset", "999"], 2, "opset 999 does not exist"),
    "export-exporter": (["export", "zoo:cnn", "-o", "{o}/e.onnx", "--exporter", "foo"], 2, "unknown exporter"),
    "export-suffix": (["export", "zoo:cnn", "-o", "{o}/e.txt"], 2, "should end in .onnx"),
    "export-input-syntax": (["export", "zoo:cnn", "-o", "{o}/e.onnx", "--input-spec", "x:1xAx?"], 2, "bad dim"),
    "export-dynamic-syntax": (["export", "zoo:cnn", "-o", "{o}/e.onnx", "--dynamic", "bad"], 2, "bad --dynamic"),
    "export-unknown-zoo": (["export", "zoo:nope", "-o", "{o}/e.onnx"], 2, "unknown zoo model"),
    "quantize-mode": (["quantize", "{i}/cnn.onnx", "-o", "{o}/q.onnx", "--mode", "int3"], 2, "unknown mode"),
    "quantize-calib-syntax": (["quantize", "{i}/cnn.onnx", "-o", "{o}/q.onnx", "--mode", "static", "--calib",
                               "random:abc"], 2, "use random:N"),
    "quantize-calib-missing": (["quantize", "{i}/cnn.onnx", "-o", "{o}/q.onnx", "--mode", "static", "--calib",
                                "{i}/nothere"], 2, "not found"),
    "unknown-option": (["run", "{i}/cnn.onnx", "--nope"], 2, "No such option: --nope"),
    "missing-argument": (["run"], 2, "Missing argument"),
    "unknown-command": (["frobnicate"], 2, "No such command"),
    # outputs that would destroy an input or cannot be written
    "run-output-is-model": (["run", "{i}/cnn.onnx", "-o", "{i}/cnn.onnx"], 2, "inputs are never overwritten"),
    "run-output-is-input": (["run", "{i}/cnn.onnx", "--input", "pixel_values={i}/x.npy", "-o", "{i}/x.npy"], 2,
                            "inputs are never overwritten"),
    "bench-csv-is-model": (["bench", "{i}/cnn.onnx", "--csv", "{i}/cnn.onnx"], 2, "inputs are never overwritten"),
    "quantize-output-is-input": (["quantize", "{i}/cnn.onnx", "-o", "{i}/cnn.onnx", "--mode", "dynamic"], 2,
                                 "refusing to overwrite the input"),
    "run-output-is-folder": (["run", "{i}/cnn.onnx", "-o", "{i}/a_folder"], 2, "it is a folder"),
    "run-output-under-file": (["run", "{i}/cnn.onnx", "-o", "{i}/cnn.onnx/out.npz"], 2, "is a file, not a folder"),
}

# Cases that need OpenVINO, skipped (with the reason) where it is missing.
_OPENVINO_CASES = {k for k, (args, _, _) in CLI_CASES.items() if "openvino:CPU" in args}
# The essential cases run by default; the rest of the matrix (about a minute of subprocesses on a
# loaded 2-core box) runs with -m slow.
_DEFAULT_CLI = {
    "run-missing", "run-truncated", "run-cut-after-graph", "run-ext-outside", "quantize-empty",
    "run-wrong-name", "run-pickled-npy", "run-nan-checked", "run-nan-output-checked", "run-oov-ids-checked",
    "run-huge-fixed-dims", "bench-huge-batch", "run-device-tpu", "bench-iterations-negative",
    "bench-iterations-text", "check-min-cosine", "export-opset", "quantize-calib-syntax", "unknown-option",
    "run-output-is-model", "bench-csv-is-model", "run-output-is-folder",
}


def _cli_params() -> list:
    params = []
    for name in CLI_CASES:
        marks = [] if name in _DEFAULT_CLI else [pytest.mark.slow]
        if name in _OPENVINO_CASES:
            marks.append(pytest.mark.openvino)
            if "openvino:CPU" not in DEVICES:
                marks.append(pytest.mark.skip(reason="OpenVINO CPU is not available"))
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.mark.parametrize("case", _cli_params())
def test_cli_bad_input(cli, cli_inputs, tmp_path, case):
    args, code, message = CLI_CASES[case]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv = [a.replace("{i}", str(cli_inputs)).replace("{o}", str(out_dir)) for a in args]
    before = _digest(cli_inputs)
    result = cli(*argv, cwd=tmp_path)
    stderr = result.stderr.strip()
    assert result.returncode == code, (case, result.returncode, stderr, result.stdout[-500:])
    assert stderr.startswith("error: ") and "\n" not in stderr, (case, stderr)
    assert "Traceback" not in stderr and "unexpected" not in stderr, (case, stderr)
    import re

    assert re.search(message, stderr), (case, message, stderr)
    assert _digest(cli_inputs) == before, f"{case} modified an input file"
    assert list(out_dir.iterdir()) == [], f"{case} left {list(out_dir.iterdir())}"
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != "out")
    assert left == [], f"{case} wrote {left} into its working folder"


def test_cli_nan_input_is_reported_without_check_values(cli, cli_inputs, tmp_path):
    """Without --check-values a NaN input still runs (exit 0) but is reported, never hidden."""
    import json

    out = cli("run", cli_inputs / "cnn.onnx", "--input", f"pixel_values={cli_inputs / 'nan.npy'}", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "warning: input 'pixel_values' has 28 NaN and 0 Inf of 784 values" in out.stdout
    assert "NaN/Inf]" in out.stdout  # and the outputs it poisoned
    data = json.loads(cli("run", cli_inputs / "cnn.onnx", "--input", f"pixel_values={cli_inputs / 'nan.npy'}",
                          "--json", cwd=tmp_path).stdout)
    assert data["input_problems"] == {"pixel_values": "28 NaN and 0 Inf of 784 values"}
    assert data["outputs"]["logits"]["nonfinite"] > 0


def test_written_files_are_readable_like_any_other(cli, cli_inputs, tmp_path):
    """Outputs get the umask's mode (mkstemp's 0600 made models unreadable to other users)."""
    old = os.umask(0o022)
    try:
        out = cli("run", cli_inputs / "cnn.onnx", "-o", tmp_path / "o.npz", cwd=tmp_path)
    finally:
        os.umask(old)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "o.npz").stat().st_mode & 0o777 == 0o644
    (tmp_path / "o.npz").chmod(0o640)  # a replaced file keeps its mode
    assert cli("run", cli_inputs / "cnn.onnx", "-o", tmp_path / "o.npz", cwd=tmp_path).returncode == 0
    assert (tmp_path / "o.npz").stat().st_mode & 0o777 == 0o640


# ---------------------------------------------------------------------------------------------
# torch.export archives: loading must not unpickle or execute anything
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clean_pt2(tmp_path_factory) -> Path:
    import torch

    path = tmp_path_factory.mktemp("pt2") / "linear.pt2"
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    torch.export.save(torch.export.export(module, (torch.randn(2, 4),)), str(path))
    return path


def _rewrite_archive(src: Path, dst: Path, replace: dict[str, bytes | None], add: dict[str, bytes] | None = None) -> Path:
    """Copy a zip, replacing (or dropping, with None) members whose names end with a key."""
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        root = zin.namelist()[0].split("/")[0]
        for name in zin.namelist():
            key = next((k for k in replace if name.endswith(k)), None)
            if key is None:
                zout.writestr(name, zin.read(name))
            elif replace[key] is not None:
                zout.writestr(name, replace[key])
        for rel, data in (add or {}).items():
            zout.writestr(f"{root}/{rel}", data)
    return dst


class _RunsCode:
    """Unpickling this writes a marker file: what a hostile archive would do instead."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path(self.marker).write_text, ("ran",))


def test_pt2_with_a_hostile_pickle_is_refused_before_it_runs(clean_pt2, tmp_path):
    import io

    import torch

    marker = tmp_path / "marker"
    payload = io.BytesIO()
    torch.save(_RunsCode(str(marker)), payload)
    hostile = _rewrite_archive(clean_pt2, tmp_path / "hostile.pt2", {"sample_inputs/model.pt": payload.getvalue()})
    with pytest.raises(ModelLoadError, match="sample_inputs/model.pt \\(needs full unpickling\\)"):
        edgeai.export(str(hostile), path=tmp_path / "out.onnx", validate=False)
    assert not marker.exists() and not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize("change, message", [
    ("pickled_weight", r"0.weight \(pickled\)"),
    ("native_code", r"aotinductor.*compiled native code"),
    ("old_format", "not in the current torch.export format"),
    ("not_a_zip", "not a readable zip"),
])
def test_risky_pt2_archives_are_refused(clean_pt2, tmp_path, change, message):
    import json
    import zipfile

    from edgeai.pt2 import check_pt2_archive

    dst = tmp_path / f"{change}.pt2"
    if change == "pickled_weight":
        with zipfile.ZipFile(clean_pt2) as z:
            name = next(n for n in z.namelist() if n.endswith("model_weights_config.json"))
            config = json.loads(z.read(name))
        config["config"]["0.weight"]["use_pickle"] = True
        _rewrite_archive(clean_pt2, dst, {"model_weights_config.json": json.dumps(config).encode()})
    elif change == "native_code":
        _rewrite_archive(clean_pt2, dst, {}, {"data/aotinductor/model/model.so": b"\x7fELF"})
    elif change == "old_format":
        _rewrite_archive(clean_pt2, dst, {"archive_format": None})
    else:
        dst.write_bytes(b"not a zip at all")
    with pytest.raises(ModelLoadError, match=message):
        check_pt2_archive(dst)


def test_clean_pt2_still_loads(clean_pt2):
    from edgeai.pt2 import check_pt2_archive
    from edgeai.sources import resolve

    check_pt2_archive(clean_pt2)  # what torch.export.save writes passes
    source = resolve(str(clean_pt2))
    assert [s.shape for s in source.inputs] == [(2, 4)]
