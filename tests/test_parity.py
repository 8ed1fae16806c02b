"""Parity metrics and reports on real sessions."""

import numpy as np
import pytest

import edgeai
from edgeai.errors import ParityError
from edgeai.parity import Tolerance, output_metrics

from conftest import device_params


@pytest.mark.parametrize("device", device_params())
def test_fp32_export_passes_against_pytorch(zoo_onnx, device):
    report = edgeai.compare("zoo:cnn", edgeai.load(zoo_onnx("cnn"), device), 6)
    assert report.passed, report.verdict()
    assert report.samples == 6 and report.reference["engine"] == "torch"
    assert report.candidate["device"] == device


def test_metrics_catch_a_perturbation():
    rng = np.random.default_rng(0)
    ref = [rng.standard_normal((4, 10)).astype(np.float32)]
    same = output_metrics("logits", ref, [ref[0].copy()], Tolerance())
    assert same.passed and same.max_abs == 0 and same.cosine == pytest.approx(1.0) and same.top1 == 1.0
    noisy = output_metrics("logits", ref, [ref[0] + 0.5], Tolerance())
    assert not noisy.passed and noisy.max_abs == pytest.approx(0.5)
    nan = ref[0].copy()
    nan[0, 0] = np.nan
    bad = output_metrics("logits", ref, [nan], Tolerance())
    assert bad.nonfinite == 1 and not bad.passed


def test_raise_for_failure_shows_the_table(zoo_onnx):
    ref = edgeai.load(zoo_onnx("lstm"))
    other = edgeai.load(zoo_onnx("gru"))
    report = edgeai.compare(ref, other, 3)
    assert not report.passed
    with pytest.raises(ParityError, match="(?s)FAIL.*max abs"):
        report.raise_for_failure()
    assert "FAIL" in report.to_dict()["verdict"]
