"""Parity metrics, `edgeai check`, and layerwise localization, on real sessions and real files."""

import json
import warnings

import numpy as np
import pytest

import edgeai
from edgeai.errors import InputMismatchError, ParityError
from edgeai.layerwise import localize
from edgeai.parity import Tolerance, judged_precision, output_metrics
from edgeai.testing import assert_parity, perturbed_copy

from conftest import device_params

PERTURBED = "4.weight"  # the second Conv's weight in the zoo CNN export
DEVICES = device_params(["cpu", "openvino:CPU"])


@pytest.fixture(scope="module")
def cnn(zoo_onnx):
    return zoo_onnx("cnn")


@pytest.fixture(scope="module")
def broken(cnn, tmp_path_factory):
    """The CNN with noise in ONE named layer's weights."""
    return perturbed_copy(cnn, tmp_path_factory.mktemp("broken") / "broken.onnx", PERTURBED)


@pytest.fixture(scope="module")
def converted(cnn, tmp_path_factory):
    """Static INT8 (QDQ) and FP16 (Cast-wrapped) conversions of the same graph."""
    import onnx
    from onnxconverter_common import float16

    out = tmp_path_factory.mktemp("converted")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        edgeai.quantize(cnn, out / "cnn.int8.onnx", mode="static", calibration="random:8", force=True)
    onnx.save(float16.convert_float_to_float16(onnx.load(str(cnn)), keep_io_types=True), str(out / "cnn.fp16.onnx"))
    return {"int8": out / "cnn.int8.onnx", "fp16": out / "cnn.fp16.onnx"}


@pytest.mark.parametrize("device", device_params())
def test_fp32_export_passes_against_pytorch(cnn, device):
    report = assert_parity("zoo:cnn", edgeai.load(cnn, device), 6)
    assert report.samples == 6 and report.reference["engine"] == "torch"
    assert report.candidate["device"] == device and report.candidate["precision"] == "f32"
    assert report.tolerance == Tolerance.for_precision("f32")
    out = report.outputs[0]
    assert out.allclose and out.top1 == 1.0 and out.max_abs < 1e-4 and out.cosine > 0.99999


def test_metrics_catch_a_perturbation():
    rng = np.random.default_rng(0)
    ref = [rng.standard_normal((4, 10)).astype(np.float32)]
    same = output_metrics("logits", ref, [ref[0].copy()], Tolerance())
    assert same.passed and same.max_abs == 0 and same.cosine == pytest.approx(1.0) and same.top1 == 1.0
    noisy = output_metrics("logits", ref, [ref[0] + 0.5], Tolerance())
    assert not noisy.passed and noisy.max_abs == pytest.approx(0.5) and noisy.mean_abs == pytest.approx(0.5)
    nan = ref[0].copy()
    nan[0, 0] = np.nan
    bad = output_metrics("logits", ref, [nan], Tolerance())
    assert bad.nonfinite == 1 and not bad.passed and bad.max_abs == np.inf
    # atol alone still checks allclose (rtol counts as 0), and judges by it.
    atol_only = output_metrics("logits", ref, [ref[0] + 0.01], Tolerance(atol=0.02, rtol=None, min_cosine=None))
    assert atol_only.allclose and atol_only.passed
    assert not output_metrics("logits", ref, [ref[0] + 0.03], Tolerance(atol=0.02, rtol=None)).allclose
    # An embedding is not classifier-like: no top-1 to fail on.
    emb = [rng.standard_normal((2, 128)).astype(np.float32)]
    assert output_metrics("pooled_embedding", emb, emb, Tolerance()).top1 is None
    swapped = ref[0].copy()
    swapped[0] = -swapped[0]
    assert output_metrics("logits", ref, [swapped], Tolerance(None, None, None)).top1 == 0.75


def test_tolerance_defaults_and_overrides():
    assert Tolerance.for_precision("int8+f32") == Tolerance.for_precision("int8")
    assert Tolerance.for_precision("f16").atol is None and Tolerance.for_precision("f32").atol == 1e-4
    assert Tolerance.for_precision("int8").with_overrides(min_cosine=0.9).min_cosine == 0.9
    with pytest.raises(InputMismatchError, match="unknown tolerance"):
        Tolerance().with_overrides(cosine=0.9)
    with pytest.raises(InputMismatchError, match="out of range"):
        Tolerance().with_overrides(min_cosine=2)
    # An FP16 file that OpenVINO runs at FP32 is judged as FP16.
    assert judged_precision({"precision": "f32", "file_precision": "f16"}) == "f16"
    assert judged_precision({"precision": "int8+f32"}) == "int8"


@pytest.mark.parametrize("device", DEVICES)
def test_broken_layer_fails_and_layerwise_names_it(cnn, broken, device):
    report = edgeai.compare(cnn, broken, 4, device=device, layerwise=True)
    assert not report.passed and report.candidate["device"] == device
    with pytest.raises(ParityError, match="(?s)FAIL.*max abs.*FIRST JUMP"):
        report.raise_for_failure()
    loc = report.layerwise
    first = loc.first_jump()
    assert first.op_type == "Conv" and PERTURBED in first.params, loc.summary()
    assert first.input_error < 1e-5 and first.error > 0.1
    assert [r.jump for r in loc.rows].count(True) == 1  # nothing downstream counts as a new jump
    before = loc.rows[:loc.rows.index(first)]
    assert before and all(r.error < 1e-5 for r in before)  # same numbers up to the broken layer
    assert loc.candidate["engine"] == ("openvino" if device.startswith("openvino") else "onnxruntime")
    assert json.loads(json.dumps(report.to_dict()))["layerwise"]["first_jump"] == first.node


@pytest.mark.parametrize("device", DEVICES)
def test_layerwise_matches_through_qdq_and_cast(cnn, converted, device):
    feeds = [{"pixel_values": np.random.default_rng(i).random((2, 1, 28, 28), np.float32)} for i in range(2)]
    int8 = localize(cnn, converted["int8"], feeds, device=device)
    by_tensor = {r.tensor: r for r in int8.rows}
    # ORT's quantizer drops Relu after Conv and chains Q/DQ behind each activation: 'relu' is
    # compared with the DequantizeLinear output that the next layer consumes.
    assert by_tensor["relu"].candidate_tensor.endswith("DequantizeLinear_Output")
    assert "pixel_values" in by_tensor and by_tensor["pixel_values"].op_type == "input"
    assert by_tensor["logits"].error < 0.2 and all(0 < r.error < 0.2 for r in int8.rows)
    assert int8.unmatched  # the fused Conv outputs: charged to the next row
    fp16 = localize(cnn, converted["fp16"], feeds, device=device)
    assert fp16.rows[0].candidate_tensor != "pixel_values"  # the input Cast to float16
    assert len(fp16.rows) == 11 and all(r.error < 5e-3 for r in fp16.rows)


def test_layerwise_refuses_what_it_cannot_compare(cnn, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    with pytest.raises(InputMismatchError, match="two ONNX graphs"):
        edgeai.compare("zoo:cnn", cnn, 1, layerwise=True)
    x = helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 1, 28, 28])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    other = helper.make_model(helper.make_graph([helper.make_node("Relu", ["pixel_values"], ["y"])], "other", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(other, str(tmp_path / "other.onnx"))
    with pytest.raises(InputMismatchError, match="shares no intermediate tensor"):
        localize(cnn, tmp_path / "other.onnx", [{"pixel_values": np.zeros((1, 1, 28, 28), np.float32)}])


def test_check_cli_names_the_broken_layer(cli, cnn, broken):
    out = cli("check", broken, cnn, "--reference", cnn, "--device", "cpu", "--device", "openvino:CPU",
              "--data", "random:3", "--layerwise", "--json")
    assert out.returncode == 1, out.stderr
    data = json.loads(out.stdout)
    assert not data["passed"] and len(data["reports"]) == (4 if "openvino:CPU" in edgeai.devices() else 2)
    for r in data["reports"]:
        name = r["candidate"]["model"].rsplit("/", 1)[-1]
        assert r["passed"] == (name == "cnn.onnx"), r["verdict"]
        lw = r["layerwise"]
        if name == "broken.onnx":
            first = next(row for row in lw["rows"] if row["node"] == lw["first_jump"])
            assert PERTURBED in first["params"] and first["op_type"] == "Conv"
        else:
            assert lw["first_jump"] is None
    text = cli("check", broken, "--reference", cnn, "--data", "random:2", "--layerwise")
    assert text.returncode == 1
    assert "FIRST JUMP" in text.stdout and "FAIL" in text.stdout
    line = next(ln for ln in text.stdout.splitlines() if ln.startswith("first divergence:"))
    assert PERTURBED in line, text.stdout


def test_check_cli_data_set_and_bad_input(cli, cnn, tmp_path):
    data = tmp_path / "eval.npz"
    np.savez(data, pixel_values=np.random.default_rng(0).random((6, 1, 28, 28), np.float32))
    ok = cli("check", cnn, "--reference", "zoo:cnn", "--data", data, "--samples", "5", "--json")
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)["reports"][0]
    assert report["samples"] == 5 and report["reference"]["engine"] == "torch"
    assert report["tolerance"]["atol"] == 1e-4 and report["candidate"]["precision"] == "f32"
    for args, expected in [(("--layerwise",), "not an .onnx file"), (("--samples", "0"), "at least 1"),
                           (("--min-cosine", "3"), "out of range")]:
        bad = cli("check", cnn, "--reference", "zoo:cnn", *args)
        assert bad.returncode == 2 and expected in bad.stderr, bad.stderr
        assert bad.stderr.strip().count("\n") == 0 and "Traceback" not in bad.stderr


# --- what a verdict rests on (issue 16) ------------------------------------------------------------------

def test_check_refuses_random_data_for_a_classifier_unless_asked(cli, cnn):
    refused = cli("check", cnn, "--reference", cnn)
    assert refused.returncode == 2 and "--data random:N" in refused.stderr and "--data FILE" in refused.stderr
    assert "logits" in refused.stderr and "Traceback" not in refused.stderr
    asked = cli("check", cnn, "--reference", cnn, "--data", "random:2", "--json")
    assert asked.returncode == 0, asked.stderr
    report = json.loads(asked.stdout)["reports"][0]
    assert report["data"]["kind"] == "random" and report["data"]["count"] == 2
    assert "standard-normal" in report["data"]["source"] and "seed 0" in report["data"]["source"]
    assert "2 samples of random inputs" in report["verdict"]
    # 2 feeds at batch 2 are 4 rows: far too few to show 99% top-1, and the report says how many are needed
    assert any("top1_agreement" in w and "381" in w for w in report["warnings"]), report["warnings"]
    text = cli("check", cnn, "--reference", cnn, "--data", "random:2")
    assert "warning: logits: top1_agreement" in text.stdout and "random inputs" in text.stdout


def test_declared_output_kinds_pick_the_metric(cli, cnn, tmp_path):
    feeds = [{"pixel_values": np.random.default_rng(i).random((2, 1, 28, 28), np.float32)} for i in range(3)]
    report = edgeai.compare(cnn, cnn, feeds, tolerance=Tolerance(kinds={"logits": "regression"}))
    out = report.outputs[0]
    assert out.kind == "regression" and out.kind_source == "declared" and out.top1 is None
    assert {m.metric for m in out.judgement.results} == {"relative_rms_error", "relative_max_error"}
    assert report.data["source"].startswith("list of feeds") and report.data["count"] == 3
    inferred = edgeai.compare(cnn, cnn, feeds).outputs[0]
    assert inferred.kind == "classification" and inferred.kind_source.startswith("inferred")
    done = cli("check", cnn, "--reference", cnn, "--data", "random:2", "--output-kind", "logits=embedding", "--json")
    assert json.loads(done.stdout)["reports"][0]["outputs"][0]["kind"] == "embedding", done.stderr
    bad = cli("check", cnn, "--reference", cnn, "--data", "random:2", "--output-kind", "probs=regression")
    assert bad.returncode == 2 and "no such output" in bad.stderr and "logits" in bad.stderr
    bad = cli("check", cnn, "--reference", cnn, "--data", "random:2", "--output-kind", "logits=colour")
    assert bad.returncode == 2 and "unknown output kind" in bad.stderr


def test_a_metric_that_cannot_fail_never_decides(tmp_path):
    """A one-value-per-sample output moved far: the graph cosine is 1, the probability metric fails."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1])
    y = helper.make_tensor_value_info("speech_prob", TensorProto.FLOAT, ["batch", 1])
    for name, scale in (("ref", 1.0), ("cand", 3.0), ("flipped", -1.0)):
        node = helper.make_node("Mul", ["x", "k"], ["speech_prob"])
        k = helper.make_tensor("k", TensorProto.FLOAT, [], [scale])
        graph = helper.make_graph([node], name, [x], [y], [k])
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / f"{name}.onnx"))
    feeds = [{"x": np.full((4, 1), 0.3, np.float32)}]
    report = edgeai.compare(tmp_path / "ref.onnx", tmp_path / "cand.onnx", feeds,
                            tolerance=Tolerance.for_precision("int8"))
    out = report.outputs[0]
    assert out.cosine == 1.0 and out.kind == "probability" and not report.passed
    assert any("max_abs_diff" in f for f in out.failures)
    # an explicit cosine floor does not decide on one value per sample either: left out, and it says so
    flipped = edgeai.compare(tmp_path / "ref.onnx", tmp_path / "flipped.onnx", feeds,
                             tolerance=Tolerance(atol=None, rtol=None, min_cosine=0.99)).outputs[0]
    assert not flipped.passed and not any(f.startswith("cosine") for f in flipped.failures)
    assert any("graph cosine left out" in n for n in flipped.notes) and any("max_abs_diff" in f for f in flipped.failures)
