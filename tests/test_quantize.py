"""Quantization: every mode on real digits / encoder models, on onnxruntime CPU and OpenVINO CPU;
calibration forms; the accuracy-aware ``auto``; parity gates and clear errors."""

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import edgeai
from edgeai.errors import InputMismatchError, QuantizationError
from edgeai.onnxfile import graph_precision, load_proto, read_metadata
from edgeai.parity import Tolerance

from conftest import device_params

BOTH = device_params(["cpu", "openvino:CPU"])


def _accuracy(path, device, x, y):
    logits = edgeai.load(path, device).run({"pixel_values": x})["logits"]
    return float((logits.argmax(1) == y).mean())


@pytest.fixture(scope="module")
def digits_data(digits):
    x_tr, x_te, _, _ = digits
    calib = [{"pixel_values": x_tr[i:i + 1]} for i in range(0, 400, 2)]
    evals = [{"pixel_values": x_te[i:i + 32]} for i in range(0, len(x_te), 32)]
    return calib, evals


@pytest.fixture(scope="module")
def static_int8(trained_cnn, digits_data, tmp_path_factory):
    _, fp32 = trained_cnn
    calib, evals = digits_data
    dst = tmp_path_factory.mktemp("q") / "cnn.int8.onnx"
    return edgeai.quantize(fp32, dst, mode="static", calibration=calib, eval_inputs=evals)


@pytest.fixture(scope="module")
def fp16(trained_cnn, digits_data, tmp_path_factory):
    _, fp32 = trained_cnn
    return edgeai.quantize(fp32, tmp_path_factory.mktemp("q") / "cnn.fp16.onnx", mode="fp16",
                           eval_inputs=digits_data[1], latency=False)


@pytest.fixture(scope="module")
def openvino_int8(trained_cnn, digits_data, tmp_path_factory):
    pytest.importorskip("nncf", reason="openvino-int8 needs nncf (pip install edgeai[nncf])")
    _, fp32 = trained_cnn
    calib, evals = digits_data
    # NNCF's defaults reach per-sample logit cosine ~0.99 here (100% top-1 agreement; the same on
    # ov.Model), under the 0.995 INT8 default: judge it on top-1 and accuracy, as its users do.
    tol = Tolerance(atol=None, rtol=None, min_cosine=0.98, min_top1=0.99)
    return edgeai.quantize(fp32, tmp_path_factory.mktemp("q") / "cnn.ov-int8.onnx", mode="openvino-int8",
                           calibration=calib, eval_inputs=evals, tolerance=tol, latency=False)


# ---------------------------------------------------------------- every mode on both engines

@pytest.mark.parametrize("device", BOTH)
def test_static_int8_keeps_digits_accuracy(static_int8, trained_cnn, digits, device):
    _, fp32 = trained_cnn
    _, x_te, _, y_te = digits
    acc = {label: _accuracy(path, device, x_te, y_te) for label, path in (("fp32", fp32), ("int8", static_int8.dst))}
    assert acc["fp32"] >= 0.95
    assert acc["fp32"] - acc["int8"] <= 0.01, acc


def test_static_result_records_what_was_done(static_int8):
    r = static_int8
    assert r.parity.passed and r.size_after < r.size_before / 2
    assert r.config["format"] == "QDQ" and r.config["per_channel"] is True
    assert r.latency["fp32_p50_ms"] > 0 and r.latency["p50_ms"] > 0 and r.latency["device"] == "cpu"
    proto = load_proto(r.dst)
    assert graph_precision(proto) == "int8"
    meta = read_metadata(proto)["quantization"]
    assert meta["mode"] == "static" and meta["parity"]["passed"] and meta["parity"]["cosine"] >= 0.995


@pytest.mark.parametrize("device", BOTH)
def test_fp16_output_within_1e_2_of_fp32(fp16, trained_cnn, digits, device):
    _, fp32 = trained_cnn
    x = digits[1][:256]
    ref = edgeai.load(fp32, device).run({"pixel_values": x})["logits"]
    out = edgeai.load(fp16.dst, device).run({"pixel_values": x})["logits"]
    assert out.dtype == np.float32  # keep_io_types: callers' feeds and outputs stay FP32
    # FP16 keeps ~3 significant digits: the error scales with the logits (up to ~12 here, and how
    # large depends on the training run), so bound it relative to them, and the answers must not move.
    assert np.abs(out - ref).max() <= 2e-3 * np.abs(ref).max()
    assert (out.argmax(1) == ref.argmax(1)).mean() >= 0.99
    assert graph_precision(load_proto(fp16.dst)) == "f16"
    assert fp16.config["keep_io_types"] is True


def test_fp16_blocks_overflow_prone_ops(zoo_onnx, tmp_path):
    r = edgeai.quantize(zoo_onnx("transformer-encoder"), tmp_path / "enc.fp16.onnx", mode="fp16", eval_samples=4,
                        latency=False)
    assert {"LayerNormalization", "Softmax", "ReduceMean"} <= set(r.config["blocked_ops_present"])
    model = onnx.load(str(r.dst))
    assert all(n.op_type != "Softmax" or _float32_input(model, n) for n in model.graph.node)
    assert r.parity.worst.cosine > 0.999


def _float32_input(model, node):
    """A Softmax kept FP32 reads a Cast-to-float output (or an FP32 tensor)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    src = producers.get(node.input[0])
    return src is None or src.op_type != "Cast" or any(a.name == "to" and a.i == 1 for a in src.attribute)


@pytest.mark.parametrize("device", BOTH)
def test_openvino_int8_keeps_digits_accuracy(openvino_int8, trained_cnn, digits, device):
    _, fp32 = trained_cnn
    _, x_te, _, y_te = digits
    assert openvino_int8.dst.suffix == ".onnx" and graph_precision(load_proto(openvino_int8.dst)) == "int8"
    assert openvino_int8.config["model_type"] == "none"
    assert _accuracy(fp32, device, x_te, y_te) - _accuracy(openvino_int8.dst, device, x_te, y_te) <= 0.01


@pytest.mark.filterwarnings("ignore:calibrating on random")
@pytest.mark.parametrize("device", BOTH)
def test_openvino_int8_uses_transformer_preset_on_encoder(zoo_onnx, tmp_path_factory, device):
    pytest.importorskip("nncf", reason="openvino-int8 needs nncf")
    r = edgeai.quantize(zoo_onnx("transformer-encoder"), tmp_path_factory.mktemp("ov") / "enc.onnx",
                        mode="openvino-int8", calibration="random:16", eval_samples=4, device=device, latency=False)
    assert r.config["model_type"] == "transformer" and r.config["preset"] == "mixed"
    out = edgeai.load(r.dst, device).run({"input_ids": np.arange(32, dtype=np.int64).reshape(2, 16)})
    assert out["pooled_embedding"].shape == (2, 128)
    assert r.parity.passed and r.parity.candidate["device"] == device


@pytest.mark.parametrize("device", BOTH)
def test_dynamic_int8_transformer_encoder_runs(zoo_onnx, tmp_path, device):
    src = zoo_onnx("transformer-encoder")
    r = edgeai.quantize(src, tmp_path / "enc.dyn.onnx", mode="dynamic", force=True, eval_samples=4, latency=False)
    m = edgeai.load(r.dst, device)
    out = m.run({"input_ids": np.arange(32, dtype=np.int64).reshape(2, 16)})
    assert out["pooled_embedding"].shape == (2, 128)
    assert r.parity.worst.cosine > 0.9


# ---------------------------------------------------------------- calibration forms

def test_calibration_forms(tmp_path, monkeypatch):
    from edgeai.quantization.calibration import collect_samples
    from edgeai.specs import TensorSpec

    specs = [TensorSpec("x", ("batch", 4), "float32")]
    rng = np.random.default_rng(0)
    folder = tmp_path / "npy"
    folder.mkdir()
    for i in range(3):
        np.save(folder / f"{i}.npy", rng.standard_normal((1, 4)).astype(np.float32))
    npz_folder = tmp_path / "npz"
    npz_folder.mkdir()
    for i in range(2):
        np.savez(npz_folder / f"{i}.npz", x=rng.standard_normal((2, 4)).astype(np.float32))
    np.savez(tmp_path / "all.npz", x=rng.standard_normal((5, 4)))  # float64 data: a safe cast to float32
    (tmp_path / "mydata.py").write_text(
        "import numpy as np\n"
        "def samples():\n"
        "    for i in range(4):\n"
        "        yield {'x': np.full((1, 4), i, np.float32)}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert len(collect_samples(str(folder), specs)) == 3
    assert [s["x"].shape for s in collect_samples(npz_folder, specs)] == [(2, 4), (2, 4)]
    from_npz = collect_samples(str(tmp_path / "all.npz"), specs)
    assert len(from_npz) == 5 and from_npz[0]["x"].dtype == np.float32
    assert [float(s["x"][0, 0]) for s in collect_samples("mydata:samples", specs)] == [0, 1, 2, 3]
    assert len(collect_samples(f"{tmp_path / 'mydata.py'}:samples", specs, limit=2)) == 2
    with pytest.warns(UserWarning, match="real data"):
        assert len(collect_samples("random:3", specs)) == 3


def test_calibration_that_does_not_match_the_model(tmp_path):
    from edgeai.quantization.calibration import collect_samples
    from edgeai.specs import TensorSpec

    specs = [TensorSpec("x", ("batch", 4), "float32")]
    np.savez(tmp_path / "wrong_name.npz", image=np.zeros((3, 4), np.float32))
    np.savez(tmp_path / "wrong_shape.npz", x=np.zeros((3, 5), np.float32))
    np.savez(tmp_path / "wrong_kind.npz", x=np.zeros((3, 4), np.int64))
    for name, match in (("wrong_name", "lacks arrays for inputs"), ("wrong_shape", "expects"),
                        ("wrong_kind", "expects float32")):
        with pytest.raises(InputMismatchError, match=match):
            collect_samples(tmp_path / f"{name}.npz", specs)
    for bad, match in (("random:0", "random:N"), ("nowhere/data", "not found"), ([], "gave no samples")):
        with pytest.raises(InputMismatchError, match=match):
            collect_samples(bad, specs)


def test_static_from_a_calibration_folder(trained_cnn, digits, tmp_path):
    _, fp32 = trained_cnn
    x_tr, x_te, _, _ = digits
    folder = tmp_path / "calib"
    folder.mkdir()
    for i in range(0, 64, 4):
        np.save(folder / f"{i:03d}.npy", x_tr[i:i + 4])
    r = edgeai.quantize(fp32, tmp_path / "cnn.int8.onnx", mode="static", calibration=str(folder),
                        eval_inputs=[{"pixel_values": x_te[:64]}], latency=False)
    assert r.parity.passed and r.config["calibration_samples"] == 16


# ---------------------------------------------------------------- auto

def inject_outlier(src, dst, value=2000.0):
    """A "massive activation": one hidden unit of the first Linear fires at ``value`` for every input
    and the next Linear reads it with a tiny weight. FP32 predictions barely change; per-tensor INT8
    ranges stretch to ``value`` and round every other hidden unit to (nearly) zero."""
    model = onnx.load(str(src))
    init = {t.name: t for t in model.graph.initializer}
    fc1, fc2 = [n for n in model.graph.node if n.op_type == "Gemm"]
    w1, b1, w2 = (numpy_helper.to_array(init[n]).copy() for n in (fc1.input[1], fc1.input[2], fc2.input[1]))
    k = int(np.argmin(np.abs(w2).sum(0)))  # the unit the classifier relies on least
    w1[k], b1[k], w2[:, k] = 0.0, value, 1e-4
    for name, arr in ((fc1.input[1], w1), (fc1.input[2], b1), (fc2.input[1], w2)):
        init[name].CopyFrom(numpy_helper.from_array(arr, name))
    onnx.save(model, str(dst))
    return dst, fc1.name, fc2.name


@pytest.fixture(scope="module")
def outlier_cnn(trained_cnn, tmp_path_factory):
    return inject_outlier(trained_cnn[1], tmp_path_factory.mktemp("outlier") / "digits_outlier.onnx")


def _first(mode, device="cpu"):
    from edgeai.cpu import cpu_info
    from edgeai.quantization.auto import candidate_configs
    from edgeai.runtimes import parse_device

    configs, _ = candidate_configs(cpu_info(), parse_device(device).engine, True)
    return next(c.name for c in configs if c.mode == mode)


def test_auto_candidates_follow_the_cpu():
    from edgeai.cpu import CPUInfo
    from edgeai.quantization.auto import candidate_configs

    avx2 = CPUInfo("AMD EPYC", "x86_64", 2, ("avx2", "fma"))
    vnni = CPUInfo("Intel Xeon", "x86_64", 2, ("avx2", "avx512", "avx512_vnni"))
    plain, why = candidate_configs(avx2, "onnxruntime", True)
    assert "lacks VNNI" in why
    assert all(c.options.get("reduce_range") or c.options.get("weight_type") == "uint8" for c in plain)
    assert any(c.options.get("weight_type") == "uint8" for c in plain)  # U8U8 where U8S8 can saturate
    fast, why = candidate_configs(vnni, "onnxruntime", True)
    assert "avx512_vnni" in why and not any(c.options.get("reduce_range") for c in fast)
    assert {c.mode for c in fast} == {"static", "dynamic"}
    assert candidate_configs(vnni, "openvino", True)[0][0].mode == "openvino-int8"


def test_outlier_breaks_plain_static_int8(outlier_cnn, digits_data, tmp_path):
    from edgeai.quantization import ToleranceNotMet

    calib, evals = digits_data
    # Measured: logit cosine 0.90, top-1 agreement 99.2% (accuracy 98.3% -> 98.1%). The default INT8
    # verdict for a classifier is its top-1 agreement (issue 16), which this file meets; the outlier
    # shows under a logit-fidelity floor, which is what this test and the exclusion search are about.
    with pytest.raises(ToleranceNotMet, match="cosine"):
        edgeai.quantize(outlier_cnn[0], tmp_path / "x.onnx", mode="static", calibration=calib, eval_inputs=evals,
                        tolerance=LOGIT_FIDELITY)
    assert not (tmp_path / "x.onnx").exists()
    r = edgeai.quantize(outlier_cnn[0], tmp_path / "y.onnx", mode="static", calibration=calib, eval_inputs=evals,
                        latency=False)
    assert r.parity.passed and r.parity.worst.kind == "classification" and r.parity.worst.cosine < 0.995


LOGIT_FIDELITY = {"min_cosine": 0.995}  # a graph limit on top of the task metrics: logits within cosine 0.995

AUTO_CASES = [pytest.param("cpu", "static", id="cpu"),
              pytest.param("openvino:CPU", "openvino-int8", id="openvino:CPU",
                           marks=device_params(["openvino:CPU"])[0].marks)]


@pytest.mark.parametrize("device,mode", AUTO_CASES)
def test_auto_excludes_the_sensitive_nodes(outlier_cnn, digits_data, tmp_path, device, mode):
    if mode == "openvino-int8":
        pytest.importorskip("nncf", reason="openvino-int8 needs nncf")
    src, fc1, fc2 = outlier_cnn
    calib, evals = digits_data
    r = edgeai.quantize(src, tmp_path / "auto.onnx", mode="auto", calibration=calib, eval_inputs=evals,
                        device=device, candidates=[_first(mode, device)], min_speedup=None, bench_iterations=20,
                        bench_rounds=2, tolerance=LOGIT_FIDELITY)
    assert r.parity.passed and r.parity.worst.cosine >= 0.995
    assert r.excluded_nodes and set(r.excluded_nodes) & {fc1, fc2}, r.excluded_nodes
    # Kept in float either as a whole block (the last layer reads the outlier) or as ranked nodes.
    chosen = r.config["chosen"]
    assert chosen.endswith(("+excluded", "+last", "+first", "+first+last")), chosen
    assert r.latency["speedup"] > 0
    assert any("qdq_loss_debug" in n for n in r.notes)
    rows = {c["name"]: c for c in r.candidates}
    assert rows[_first(mode, device)]["passed"] is False  # the plain config fails; excluding fixes it
    meta = read_metadata(load_proto(r.dst))["quantization"]
    assert meta["mode"] == "auto" and meta["excluded_nodes"] == list(r.excluded_nodes)
    assert meta["parity"]["passed"] and meta["latency"]["speedup"] == r.latency["speedup"]
    assert meta["cpu"]["vnni"] == edgeai.cpu_info().has_vnni
    assert graph_precision(load_proto(r.dst)) == "int8"


def test_auto_keeps_fp32_when_int8_is_not_faster(trained_cnn, digits_data, tmp_path):
    calib, evals = digits_data
    r = edgeai.quantize(trained_cnn[1], tmp_path / "auto.onnx", mode="auto", calibration=calib, eval_inputs=evals,
                        candidates=[_first("static")], min_speedup=1000.0, bench_iterations=20, bench_rounds=2)
    assert r.config["chosen"] == "fp32" and "not measured faster" in r.config["reason"]
    proto = load_proto(r.dst)
    assert graph_precision(proto) == "f32"
    meta = read_metadata(proto)["quantization"]
    assert meta["chosen"] == "fp32" and meta["candidates"][0]["passed"] and meta["candidates"][0]["speedup"] > 0


def test_auto_tolerance_that_cannot_be_met(outlier_cnn, digits_data, tmp_path):
    from edgeai.quantization import ToleranceNotMet

    calib, evals = digits_data
    with pytest.raises(ToleranceNotMet, match="Best reached") as e:
        edgeai.quantize(outlier_cnn[0], tmp_path / "auto.onnx", mode="auto", calibration=calib, eval_inputs=evals,
                        candidates=[_first("static")], max_excluded_fraction=0.25,
                        tolerance=Tolerance(atol=None, rtol=None, min_cosine=0.99999999))
    assert e.value.exit_code == 1 and "cosine" in str(e.value)
    assert not list(tmp_path.iterdir())


def test_bulk_sqnr_sees_what_whole_tensor_sqnr_hides():
    from onnxruntime.quantization.qdq_loss_debug import (
        compute_signal_to_quantization_noice_ratio as sqnr,
    )

    from edgeai.quantization.sensitivity import bulk_sqnr

    x = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)
    x[:, 0] = 2000.0  # one outlier channel
    step = (x.max() - x.min()) / 255
    q = np.round(x / step) * step  # what per-tensor INT8 keeps
    assert sqnr(x, q) > 25  # the whole-tensor ratio looks fine...
    assert bulk_sqnr(x, q) < 3  # ...while the ordinary values are gone


# ---------------------------------------------------------------- bad input

def test_already_quantized_input_is_refused(static_int8, tmp_path):
    with pytest.raises(QuantizationError, match="already int8"):
        edgeai.quantize(static_int8.dst, tmp_path / "again.onnx", mode="dynamic")


def test_unknown_mode_option_and_mismatched_calibration(trained_cnn, tmp_path):
    _, fp32 = trained_cnn
    with pytest.raises(QuantizationError, match="unknown mode"):
        edgeai.quantize(fp32, tmp_path / "x.onnx", mode="int3")
    with pytest.raises(QuantizationError, match="unknown option"):
        edgeai.quantize(fp32, tmp_path / "x.onnx", mode="static", calibration="random:2", bits=4)
    with pytest.raises(InputMismatchError, match="model takes"):
        edgeai.quantize(fp32, tmp_path / "x.onnx", mode="static",
                        calibration=[{"image": np.zeros((1, 1, 28, 28), np.float32)}])
    with pytest.raises(InputMismatchError, match="expects"):
        edgeai.quantize(fp32, tmp_path / "x.onnx", mode="static",
                        calibration=[{"pixel_values": np.zeros((1, 28, 28), np.float32)}])
    with pytest.raises(InputMismatchError, match="expects"):
        edgeai.quantize(fp32, tmp_path / "x.onnx", mode="fp16",
                        eval_inputs=[{"pixel_values": np.zeros((1, 3, 28, 28), np.float32)}])
    assert not list(tmp_path.glob("*.onnx"))


def test_tolerance_not_met_writes_nothing(zoo_onnx, tmp_path):
    from edgeai.quantization import ToleranceNotMet

    with pytest.raises(ToleranceNotMet) as e:
        edgeai.quantize(zoo_onnx("transformer-encoder"), tmp_path / "enc.onnx", mode="dynamic", eval_samples=4,
                        tolerance=Tolerance(atol=None, rtol=None, min_cosine=0.999999999))
    assert e.value.exit_code == 1 and "cosine" in str(e.value)
    assert not (tmp_path / "enc.onnx").exists()


# ---------------------------------------------------------------- CLI

def test_cli_quantize_static_json(cli, trained_cnn, digits, tmp_path):
    x_tr = digits[0]
    np.savez(tmp_path / "calib.npz", pixel_values=x_tr[:64])
    out = cli("quantize", trained_cnn[1], "-o", tmp_path / "q.onnx", "--mode", "static", "--calib",
              tmp_path / "calib.npz", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["parity"]["passed"] and data["config"]["calibration_samples"] == 64
    assert data["latency"]["p50_ms"] > 0 and data["size_after"] < data["size_before"]


def test_cli_unmeetable_tolerance_exits_1_and_impossible_one_exits_2(cli, zoo_onnx, tmp_path):
    out = cli("quantize", zoo_onnx("cnn"), "-o", tmp_path / "q.onnx", "--mode", "static", "--calib", "random:8",
              "--min-cosine", "0.9999999")
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "out of tolerance" in out.stderr and "Traceback" not in out.stderr
    assert out.stderr.strip().count("\n") == 0, out.stderr
    assert not (tmp_path / "q.onnx").exists()
    # A cosine above 1 cannot be met by anything: that is bad input, not a failed check.
    bad = cli("quantize", zoo_onnx("cnn"), "-o", tmp_path / "q.onnx", "--mode", "auto", "--min-cosine", "1.01")
    assert bad.returncode == 2 and "out of range" in bad.stderr, bad.stderr


def test_importing_a_submodule_first_keeps_edgeai_quantize_the_function():
    # The package is `edgeai.quantization`, so importing it never rebinds the name `edgeai.quantize`.
    import edgeai.quantization.calibration  # noqa: F401

    assert edgeai.quantize is edgeai.quantization.quantize
