"""Runtimes: one Model API over onnxruntime and OpenVINO, with checks before the engine is called."""

import threading

import numpy as np
import pytest

import edgeai
from edgeai.errors import DeviceUnavailableError, EdgeAIError, InputMismatchError, ModelLoadError

from conftest import device_params, random_feeds

ZOO = ["cnn", "lstm", "attention-rnn", "transformer-encoder", "bert"]


@pytest.mark.parametrize("device", device_params())
@pytest.mark.parametrize("name", ZOO)
def test_every_device_matches_onnxruntime_cpu(name, device, zoo_onnx):
    path = zoo_onnx(name)
    ref = edgeai.load(path, "cpu")
    cand = edgeai.load(path, device)
    assert cand.describe().precision == "f32"
    report = edgeai.compare(ref, cand, 4)
    assert report.passed, report.verdict()


def test_model_api_shapes_and_order(zoo_onnx):
    m = edgeai.load(zoo_onnx("bert"))
    assert [s.name for s in m.inputs] == ["input_ids", "attention_mask", "token_type_ids"]
    assert m.inputs[0].shape == ("batch", "seq") and m.inputs[0].dtype == "int64"
    feeds = random_feeds(m, batch=3)
    out = m.run(feeds)
    assert list(out) == [o.name for o in m.outputs]
    assert out["last_hidden_state"].shape == (3, 16, 64)
    np.testing.assert_array_equal(m(**feeds)["last_hidden_state"], out["last_hidden_state"])


def test_describe_says_what_ran(zoo_onnx):
    info = edgeai.load(zoo_onnx("cnn"), "cpu").describe()
    assert info.engine == "onnxruntime" and info.devices_in_effect[0] == "CPUExecutionProvider"
    assert info.precision == "f32" and info.load_time_s > 0


@pytest.mark.openvino
def test_openvino_reports_and_honours_f32(zoo_onnx):
    if "openvino:CPU" not in edgeai.devices():
        pytest.skip("OpenVINO CPU is not available")
    info = edgeai.load(zoo_onnx("cnn"), "openvino:CPU").describe()
    assert info.engine == "openvino" and info.devices_in_effect == ("CPU",) and info.precision == "f32"


def test_input_checks_name_dtype_rank_dims(zoo_onnx):
    m = edgeai.load(zoo_onnx("cnn"))
    x = np.zeros((1, 1, 28, 28), np.float32)
    with pytest.raises(InputMismatchError, match="missing.*pixel_values.*unknown.*'image'"):
        m.run({"image": x})
    with pytest.raises(InputMismatchError, match="expects float32.*got float64"):
        m.run({"pixel_values": x.astype(np.float64)})
    with pytest.raises(InputMismatchError, match="rank 4.*rank 3.*add a batch axis"):
        m.run({"pixel_values": x[0]})
    with pytest.raises(InputMismatchError, match="axis 1 must be 1, got 3"):
        m.run({"pixel_values": np.zeros((1, 3, 28, 28), np.float32)})
    cast = edgeai.load(zoo_onnx("cnn"), allow_cast=True)
    assert cast.run({"pixel_values": x.astype(np.float64)})["logits"].shape == (1, 10)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(ModelLoadError, match="not found"):
        edgeai.load(tmp_path / "nope.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00\xffnot a model" * 10)
    with pytest.raises(ModelLoadError, match="not a valid ONNX model|holds no graph"):
        edgeai.load(tmp_path / "junk.onnx")


def test_missing_device_is_clear_and_fallback_records_it(zoo_onnx):
    with pytest.raises(DeviceUnavailableError, match=r"Devices here: \['cpu'"):
        edgeai.load(zoo_onnx("cnn"), "cuda")
    with pytest.raises(DeviceUnavailableError, match="unknown device"):
        edgeai.load(zoo_onnx("cnn"), "tpu")
    with pytest.warns(UserWarning, match="edgeai:"):
        m = edgeai.load(zoo_onnx("cnn"), "cuda", fallback=True)
    info = m.describe()
    assert info.devices_in_effect[0] == "CPUExecutionProvider" and "cuda" in info.fallback
    assert m.run({"pixel_values": np.zeros((1, 1, 28, 28), np.float32)})["logits"].shape == (1, 10)


@pytest.mark.parametrize("device", device_params(["cpu", "openvino:CPU"]))
def test_threads_share_one_model(device, zoo_onnx):
    m = edgeai.load(zoo_onnx("lstm"), device)
    feeds = [random_feeds(m, batch=2, seed=i) for i in range(8)]
    expected = [m.run(f)["logits"] for f in feeds]
    errors, mismatches = [], []

    def worker(i):
        try:
            for _ in range(200):
                if not np.array_equal(m.run(feeds[i])["logits"], expected[i]):
                    mismatches.append(i)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and not mismatches


@pytest.mark.openvino
def test_static_shape_profile_on_openvino_cpu(zoo_onnx):
    if "openvino:CPU" not in edgeai.devices():
        pytest.skip("OpenVINO CPU is not available")
    m = edgeai.load(zoo_onnx("bert"), "openvino:CPU", static_shapes={"input_ids": (1, 32), "attention_mask": (1, 32),
                                                                    "token_type_ids": (1, 32)})
    assert m.inputs[0].shape == (1, 32)
    assert m.describe().options["static_shapes"]["input_ids"] == [1, 32]
    out = m.run(random_feeds(m, batch=1))
    assert out["last_hidden_state"].shape == (1, 32, 64)
    with pytest.raises(InputMismatchError, match="axis 1 must be 32"):
        m.run({s.name: np.zeros((1, 16), np.int64) for s in m.inputs})


@pytest.mark.openvino
def test_a_static_compile_serves_other_shapes_from_a_dynamic_one_when_asked(zoo_onnx):
    if "openvino:CPU" not in edgeai.devices():
        pytest.skip("OpenVINO CPU is not available")
    names = ("input_ids", "attention_mask", "token_type_ids")
    m = edgeai.load(zoo_onnx("bert"), "openvino:CPU", static_shapes={n: (1, 32) for n in names},
                    other_shapes="dynamic")
    assert m.inputs[0].shape == ("batch", "seq")  # the contract stays the model's own
    reference = edgeai.load(zoo_onnx("bert"), "cpu")
    rng = np.random.default_rng(0)
    for batch, seq in ((1, 32), (2, 16), (1, 32), (3, 7)):
        feeds = {n: rng.integers(0, 2 if n != "input_ids" else 100, (batch, seq)).astype(np.int64) for n in names}
        got, want = m.run(feeds)["last_hidden_state"], reference.run(feeds)["last_hidden_state"]
        assert got.shape == (batch, seq, 64) and np.abs(got - want).max() < 1e-3
    options = m.describe().options
    assert options["other_shapes"] == "dynamic" and options["dynamic_compiles"] == 1  # made once, kept
    with pytest.raises(EdgeAIError, match="other_shapes must be one of"):
        edgeai.load(zoo_onnx("bert"), "openvino:CPU", static_shapes={n: (1, 32) for n in names}, other_shapes="pad")
    with pytest.raises(EdgeAIError, match="OpenVINO-only option"):
        edgeai.load(zoo_onnx("bert"), "cpu", other_shapes="dynamic")


def test_npu_rule_requires_a_shape_for_every_dynamic_input(zoo_onnx):
    from edgeai.runtimes.openvino import plan_static_shapes

    inputs = edgeai.load(zoo_onnx("bert")).inputs
    with pytest.raises(InputMismatchError, match="static shapes only.*input_ids.*attention_mask"):
        plan_static_shapes(inputs, None, static_only=True)
    with pytest.raises(InputMismatchError, match=r"misses dynamic input\(s\) \['token_type_ids'\]"):
        plan_static_shapes(inputs, {"input_ids": (1, 8), "attention_mask": (1, 8)}, static_only=True)
    with pytest.raises(InputMismatchError, match="unknown input"):
        plan_static_shapes(inputs, {"ids": (1, 8)}, static_only=True)
    assert plan_static_shapes(inputs, None, static_only=False) is None
    full = {s.name: (1, 8) for s in inputs}
    assert plan_static_shapes(inputs, full, static_only=True) == {k: [1, 8] for k in full}


def test_openvino_fallback_runs_on_cpu_and_says_so(zoo_onnx):
    with pytest.warns(UserWarning, match="openvino:GPU"):
        m = edgeai.load(zoo_onnx("cnn"), "openvino:GPU", fallback=True)
    info = m.describe()
    assert info.device == "openvino:GPU" and info.devices_in_effect == ("CPUExecutionProvider",)
    assert "not available" in info.fallback


@pytest.mark.openvino
def test_openvino_precision_hints_are_honoured(zoo_onnx):
    if "openvino:CPU" not in edgeai.devices():
        pytest.skip("OpenVINO CPU is not available")
    from edgeai.cpu import cpu_info

    path = zoo_onnx("transformer-encoder")
    f32 = edgeai.load(path, "openvino:CPU", precision="f32")
    assert f32.describe().precision == "f32"
    auto = edgeai.load(path, "openvino:CPU", precision="auto").describe().precision
    # The plugin's own choice: bf16 where the CPU has it, which is why edgeai defaults to f32.
    assert auto == ("bf16" if cpu_info().has_bf16 else "f32")
    with pytest.raises(edgeai.DeviceUnavailableError, match="runs the graph at its own precision"):
        edgeai.load(path, "cpu", precision="f16")
