"""edgeai.testing: what users put in their own pytest suites."""

import numpy as np
import pytest

import edgeai
import edgeai.testing
from edgeai.errors import InputMismatchError, ParityError
from edgeai.parity import Tolerance
from edgeai.testing import ParityAssertionError, assert_parity, perturbed_copy


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A user's own module, exported the way a user would."""
    import torch

    from edgeai.zoo import digits_cnn

    module = digits_cnn()
    path = tmp_path_factory.mktemp("user") / "model.onnx"
    edgeai.export(module, (torch.zeros(2, 1, 28, 28),), path)
    return module, path


@pytest.mark.parametrize("device", edgeai.testing.device_params(["cpu", "openvino:CPU"]))
def test_assert_parity_passes_for_a_users_module(exported, device):
    module, path = exported
    name = edgeai.load(path).inputs[0].name
    feeds = [{name: np.random.default_rng(i).standard_normal((3, 1, 28, 28)).astype(np.float32)} for i in range(3)]
    report = assert_parity(module, path, feeds, device=device, min_cosine=0.99999)
    assert report.passed and report.samples == 3 and report.tolerance.min_cosine == 0.99999
    assert report.candidate["device"] == device


def test_failure_is_an_assertion_with_the_table(exported, tmp_path):
    module, path = exported
    broken = perturbed_copy(path, tmp_path / "broken.onnx", "0.weight", relative_noise=0.3)
    with pytest.raises(AssertionError) as info:
        assert_parity(path, broken, 2, Tolerance.for_precision("f32"), layerwise=True)
    assert isinstance(info.value, ParityAssertionError) and isinstance(info.value, ParityError)
    message = str(info.value)
    assert message.startswith("FAIL") and "max abs" in message and "cosine min" in message
    assert "FIRST JUMP" in message and "0.weight" in message.split("first divergence:")[1].splitlines()[0]
    # A looser limit on the same pair passes: overrides apply on top of the given tolerance. The
    # output's task metric (a hidden state: relative max error 0.18 here) is a limit of its own.
    assert_parity(path, broken, 2, Tolerance.for_precision("f32"), atol=10.0, rtol=0.0, min_cosine=0.0,
                  min_top1=0.0, thresholds={"relative_max_error": 1.0})


def test_helpers_refuse_bad_input(exported, tmp_path):
    _, path = exported
    with pytest.raises(InputMismatchError, match="no initializer 'nope'"):
        perturbed_copy(path, tmp_path / "x.onnx", "nope")
    with pytest.raises(InputMismatchError, match="unknown tolerance"):
        assert_parity(path, path, 1, max_abs=0.1)
    params = edgeai.testing.device_params(["cpu", "openvino:NPU"])
    assert [p.id for p in params] == ["cpu", "openvino:NPU"]
    assert not params[0].marks and (params[1].marks or "openvino:NPU" in edgeai.devices())
