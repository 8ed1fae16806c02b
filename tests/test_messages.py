"""What a newcomer reads: CLI messages in CLI spellings, verdicts that name the user's files, a
complete `edgeai devices`, clear errors for a quantized precision or a dict passed to Model(...),
readable generation tables, and each warning said once."""

from __future__ import annotations

import re

import numpy as np
import pytest

import edgeai
from edgeai.errors import DeviceUnavailableError, EdgeAIError, InputMismatchError

from conftest import DEVICES

OPENVINO = "openvino:CPU" in DEVICES


def test_shape_on_an_onnxruntime_device_says_it_is_openvino_only(cli, zoo_onnx):
    out = cli("run", zoo_onnx("cnn"), "--device", "cpu", "--shape", "pixel_values:1x1x28x28")
    assert out.returncode == 2 and "--shape (static_shapes=) is an OpenVINO-only option" in out.stderr, out.stderr
    assert "unknown option" not in out.stderr


def test_run_on_torch_explains_what_the_torch_device_runs(cli, zoo_onnx):
    out = cli("run", zoo_onnx("cnn"), "--device", "torch")
    assert out.returncode == 2, out.stderr
    assert "device 'torch' runs a model's PyTorch original" in out.stderr and "--reference zoo:NAME" in out.stderr


def test_missing_device_names_the_cli_flag(cli, zoo_onnx):
    if "cuda" in DEVICES:
        pytest.skip("cuda is available here")
    out = cli("run", zoo_onnx("cnn"), "--device", "cuda")
    assert out.returncode == 2 and "--fallback (fallback=True in Python)" in out.stderr, out.stderr


def test_devices_lists_what_torch_openvino_and_auto_map_to(cli):
    out = cli("devices")
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines() if line.startswith("  ") and line.split()}
    assert "torch" in lines and "PyTorch reference" in lines["torch"]
    assert re.search(r"= (cuda|openvino:GPU|cpu) here", lines["auto"])
    if OPENVINO:
        assert "= openvino:AUTO" in lines["openvino"] and "OpenVINO, CPU plugin" in lines["openvino:CPU"]
    assert set(edgeai.devices()) <= set(lines)


def test_a_quantized_precision_is_a_clear_error_not_a_missing_device(zoo_onnx):
    with pytest.raises(EdgeAIError, match="'int4' is a quantization, not a load precision") as e:
        edgeai.load(zoo_onnx("cnn"), "cpu", precision="int4")
    assert not isinstance(e.value, DeviceUnavailableError)


def test_a_dict_passed_to_model_call_says_how_to_pass_it(zoo_onnx):
    model = edgeai.load(zoo_onnx("cnn"))
    x = np.zeros((1, 1, 28, 28), np.float32)
    with pytest.raises(TypeError, match=r"use model.run\(feeds\) or model\(\*\*feeds\)") as e:
        model({"pixel_values": x})
    assert isinstance(e.value, InputMismatchError)
    assert model(pixel_values=x)["logits"].shape == (1, 10)


@pytest.fixture(scope="module")
def kv_gpt2(tmp_path_factory):
    path = tmp_path_factory.mktemp("kv") / "gpt2.onnx"
    return edgeai.export("zoo:gpt2", path=path, task="text-generation-with-past")


def test_kv_export_verdict_names_the_users_file(kv_gpt2):
    verdict = kv_gpt2.validation.verdict()
    assert verdict.startswith("PASS: gpt2.onnx on cpu"), verdict


def test_generation_bench_table_is_readable(cli, kv_gpt2):
    out = cli("bench", kv_gpt2.path, "--generate", "4", "--rounds", "1")
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if "gpt2.onnx@cpu" in line)
    rate = row.split("│")[5].strip()
    assert re.fullmatch(r"[\d,]+\.\d", rate), row  # tokens/s with one decimal
    assert "time to first token ms" in out.stdout


def test_auto_verdict_names_the_written_file(zoo_onnx, tmp_path):
    dst = tmp_path / "cnn.auto.onnx"
    q = edgeai.quantize(zoo_onnx("cnn"), dst, mode="auto", calibration="random:16", device="cpu")
    assert q.parity.verdict().split(" on ")[0] in ("PASS: cnn.auto.onnx", "FAIL: cnn.auto.onnx"), q.parity.verdict()


def test_deploy_says_each_warning_once(cli, zoo_onnx, tmp_path):
    devices = [a for d in ("cpu", "openvino:CPU") if d in DEVICES for a in ("--device", d)]
    out = cli("deploy", zoo_onnx("cnn"), "-o", tmp_path / "b", *devices, "--iterations", "5", "--json")
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stderr.splitlines() if line.startswith("warning:")]
    assert warnings and len(warnings) == len(set(warnings)), warnings
