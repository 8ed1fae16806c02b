"""``quantize(mode="auto", device="auto")``: every device x precision here, judged, raced, recorded; and
``edgeai.load(path)`` following the record. Real onnxruntime/OpenVINO sessions; no timed assertions
(which candidate wins depends on the machine: only that there is exactly one, and why)."""

from __future__ import annotations

import warnings

import onnx
import pytest
from onnx import numpy_helper

import edgeai
from edgeai.cpu import CPUInfo, cpu_info
from edgeai.onnxfile import load_proto, read_metadata, write_metadata
from edgeai.quantization.targets import plans_for

NO_BF16 = ("avx2", "fma", "avx512", "avx512_vnni")  # an AVX-512 VNNI CPU without bf16 or fp16
STATUSES = {"won", "lost", "unsupported", "failed", "parity failed"}
QUICK = {"eval_samples": 2, "samples": 8, "speed_budget_s": 3.0, "min_rounds": 2, "max_rounds": 3}
OV = "openvino:CPU" in edgeai.devices()


pytestmark = pytest.mark.slow  # each search builds INT8 graphs and races a dozen candidates


@pytest.fixture(scope="module")
def searched(zoo_onnx, tmp_path_factory):
    """One search over every device here on the zoo Transformer encoder (fusion applies to it)."""
    dst = tmp_path_factory.mktemp("fastest") / "encoder.auto.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return edgeai.quantize(zoo_onnx("transformer-encoder"), dst, mode="auto", device="auto", **QUICK)


def test_search_reports_every_candidate_and_one_winner(searched):
    rows = {r["name"]: r for r in searched.candidates}
    planned = plans_for([d for d in edgeai.devices() if d != "torch"], cpu_info(), transformer=True)
    assert set(rows) >= {p.name for p in planned}  # every plan is reported, run or not
    assert all(r["status"] in STATUSES and (r["status"] == "won" or r["why"]) for r in rows.values())
    won = [r for r in rows.values() if r["status"] == "won"]
    assert len(won) == 1 and won[0]["passed"] and won[0]["speedup_interval"] is not None
    assert searched.config["chosen"] == won[0]["name"] and searched.device == won[0]["device"]
    for r in rows.values():
        if r["status"] == "unsupported":
            assert r["cosine"] is None and r["speedup"] is None  # reported, not run
        if r["status"] == "lost":
            assert r["passed"] and r["speedup_interval"] and ("slower than" in r["why"] or "within noise" in r["why"])
    assert "onnxruntime has no bf16" in rows["cpu bf16"]["why"]
    fused = rows["cpu fused f32"]
    if fused["status"] in ("won", "lost"):
        assert fused["fusions"] and "SkipLayerNormalization" in fused["fusions"]


def test_winner_is_written_with_its_device_and_precision(searched):
    meta = read_metadata(load_proto(searched.dst))
    run_with = meta["run_with"]
    assert run_with["device"] == searched.config["device"] and run_with["precision"] == searched.config["precision"]
    assert run_with["chosen_by"].startswith("edgeai quantize --mode auto --device auto")
    assert meta["quantization"]["chosen"] == searched.config["chosen"]
    assert meta["task"] == "feature-extraction"  # the export's own metadata carries over
    assert len(meta["quantization"]["candidates"]) == len(searched.candidates)
    model = edgeai.load(searched.dst)  # no device: the recorded way
    info = model.describe()
    assert info.device == run_with["device"] and info.recorded and "as recorded" in info.recorded
    explicit = edgeai.load(searched.dst, "cpu")
    assert explicit.describe().device == "cpu" and explicit.describe().recorded is None


def _recorded_copy(src, dst, device, precision):
    model = onnx.load(str(src))
    write_metadata(model, {"run_with": {"device": device, "precision": precision, "load": {"precision": precision},
                                        "engine_config": {"INFERENCE_PRECISION_HINT": precision},
                                        "chosen_by": "test"}})
    onnx.save(model, str(dst))
    return dst


@pytest.mark.openvino
@pytest.mark.skipif(not OV, reason="needs openvino:CPU")
def test_load_honours_the_recorded_device_and_precision(zoo_onnx, tmp_path):
    precision = "bf16" if cpu_info().has_bf16 else "f32"
    path = _recorded_copy(zoo_onnx("cnn"), tmp_path / "cnn.onnx", "openvino:CPU", precision)
    info = edgeai.load(path).describe()
    assert (info.engine, info.device, info.precision) == ("openvino", "openvino:CPU", precision)
    assert f"INFERENCE_PRECISION_HINT={precision}" in info.recorded
    other = edgeai.load(path, "cpu").describe()  # an explicit device wins over the record
    assert (other.engine, other.device, other.recorded) == ("onnxruntime", "cpu", None)
    plain = edgeai.load(zoo_onnx("cnn")).describe()  # no record: cpu, as before
    assert plain.device == "cpu" and plain.recorded is None


def test_a_recorded_device_missing_here_runs_on_cpu_and_says_so(zoo_onnx, tmp_path):
    path = _recorded_copy(zoo_onnx("cnn"), tmp_path / "cnn.onnx", "openvino:NPU", "f16")
    with pytest.warns(UserWarning, match="openvino:NPU"):
        model = edgeai.load(path)
    info = model.describe()
    assert info.device == "cpu" and "openvino:NPU" in info.fallback


def test_without_bf16_the_bf16_plans_are_unsupported():
    caps = {"CPU": ("FP32", "BF16", "FP16", "INT8")}  # what OpenVINO says on an AMX box
    cpu = CPUInfo("no-bf16 test CPU", "x86_64", 2, NO_BF16)
    plans = {p.name: p for p in plans_for(["cpu", "openvino:CPU"], cpu, transformer=True,
                                          capabilities=lambda t: caps[t])}
    assert "no AVX512-BF16 or AMX-BF16" in plans["openvino:CPU bf16"].unsupported
    assert plans["openvino:CPU f16"].unsupported and "openvino:CPU nncf-int8+bf16" not in plans
    assert plans["openvino:CPU f32"].unsupported is None and plans["openvino:CPU nncf-int8+f32"].unsupported is None
    assert plans["cpu bf16"].unsupported.startswith("onnxruntime has no bf16")
    with_bf16 = CPUInfo("bf16 test CPU", "x86_64", 2, (*NO_BF16, "avx512_bf16"))
    plans = {p.name: p for p in plans_for(["openvino:CPU"], with_bf16, transformer=False,
                                          capabilities=lambda t: caps[t])}
    assert plans["openvino:CPU bf16"].unsupported is None and "openvino:CPU nncf-int8+bf16" in plans


def test_one_thread_is_a_candidate_setting_on_a_multicore_cpu(zoo_onnx, tmp_path):
    two = {p.name: p for p in plans_for(["cpu"], CPUInfo("2-core", "x86_64", 2, NO_BF16), transformer=False)}
    one_thread = two["cpu f32 1 thread"]
    assert one_thread.unsupported is None and one_thread.load == {"threads": 1} and one_thread.graph == "original"
    single = {p.name: p for p in plans_for(["cpu"], CPUInfo("1-core", "x86_64", 1, NO_BF16), transformer=False)}
    assert "one core" in single["cpu f32 1 thread"].unsupported
    # Recorded as the winner's way to run, the setting is what edgeai.load(path) uses.
    model = onnx.load(str(zoo_onnx("cnn")))
    write_metadata(model, {"run_with": one_thread.run_with() | {"chosen_by": "test"}})
    onnx.save(model, str(tmp_path / "cnn.onnx"))
    info = edgeai.load(tmp_path / "cnn.onnx").describe()
    assert info.device == "cpu" and info.threads == 1 and "as recorded" in info.recorded


@pytest.mark.openvino
@pytest.mark.skipif(not OV, reason="needs openvino:CPU")
def test_each_openvino_plan_has_a_static_twin_that_still_runs_other_shapes(zoo_onnx, tmp_path):
    caps = {"CPU": ("FP32", "BF16", "FP16", "INT8")}
    cpu = CPUInfo("bf16 test CPU", "x86_64", 2, (*NO_BF16, "avx512_bf16"))
    shapes = {"input_ids": [1, 12]}
    plans = {p.name: p for p in plans_for(["cpu", "openvino:CPU"], cpu, transformer=True,
                                          capabilities=lambda t: caps[t], static_shapes=shapes)}
    ov_plans = [n for n, p in plans.items() if p.engine == "openvino" and not n.endswith(" static")]
    assert ov_plans and all(f"{n} static" in plans for n in ov_plans)
    assert not any(n.startswith("cpu ") and n.endswith(" static") for n in plans)  # onnxruntime has no twin
    twin = plans["openvino:CPU bf16 static"]
    assert twin.load == {"precision": "bf16", "static_shapes": shapes, "other_shapes": "dynamic"}
    assert plans["openvino:CPU bf16"].simplicity < twin.simplicity < plans["openvino:CPU nncf-int8+bf16"].simplicity
    assert not any(n.endswith(" static") for n in (p.name for p in plans_for(["openvino:CPU"], cpu, transformer=True,
                                                                              capabilities=lambda t: caps[t])))
    # Recorded as the winner's way to run: edgeai.load(path) compiles for the shapes, and a feed of
    # another shape still runs (on a dynamic compile).
    model = onnx.load(str(zoo_onnx("transformer-encoder")))
    f32_twin = plans["openvino:CPU f32 static"]
    write_metadata(model, {"run_with": f32_twin.run_with() | {"chosen_by": "test"}})
    onnx.save(model, str(tmp_path / "encoder.onnx"))
    loaded = edgeai.load(tmp_path / "encoder.onnx")
    info = loaded.describe()
    assert info.device == "openvino:CPU" and info.options["static_shapes"] == shapes and "as recorded" in info.recorded
    import numpy as np

    reference = edgeai.load(tmp_path / "encoder.onnx", "cpu")
    for seq in (12, 5):
        feed = {"input_ids": np.arange(seq, dtype=np.int64)[None] % 50}
        got, want = (next(iter(m.run(feed).values())) for m in (loaded, reference))
        assert got.shape == want.shape and np.abs(got - want).max() < 1e-3
    assert loaded.describe().options["dynamic_compiles"] == 1


@pytest.mark.openvino
@pytest.mark.skipif(not OV, reason="needs openvino:CPU")
def test_search_on_a_cpu_without_bf16_reports_bf16_unsupported_not_run(zoo_onnx, tmp_path):
    r = edgeai.quantize(zoo_onnx("cnn"), tmp_path / "cnn.auto.onnx", mode="auto", device="auto",
                        cpu_features=NO_BF16, candidates=["openvino:CPU bf16", "openvino:CPU f32"], **QUICK)
    rows = {row["name"]: row for row in r.candidates}
    bf16 = rows["openvino:CPU bf16"]
    assert bf16["status"] == "unsupported" and "no AVX512-BF16" in bf16["why"]
    assert bf16["cosine"] is None and bf16["p50_ms"] is None  # never loaded, never timed
    assert rows["openvino:CPU f32"]["status"] in ("won", "lost", "parity failed")
    assert "features given" in read_metadata(load_proto(r.dst))["quantization"]["cpu"]["model"]


def _outlier(src, dst, value=2000.0):
    """One hidden unit fires at ``value`` and is read with a tiny weight: per-tensor INT8 activation
    ranges stretch and every other unit rounds to zero (see tests/test_quantize.py)."""
    import numpy as np

    model = onnx.load(str(src))
    init = {t.name: t for t in model.graph.initializer}
    fc1, fc2 = [n for n in model.graph.node if n.op_type == "Gemm"]
    w1, b1, w2 = (numpy_helper.to_array(init[n]).copy() for n in (fc1.input[1], fc1.input[2], fc2.input[1]))
    k = int(np.argmin(np.abs(w2).sum(0)))
    w1[k], b1[k], w2[:, k] = 0.0, value, 1e-4
    for name, arr in ((fc1.input[1], w1), (fc1.input[2], b1), (fc2.input[1], w2)):
        init[name].CopyFrom(numpy_helper.from_array(arr, name))
    onnx.save(model, str(dst))
    return dst


def test_int8_that_fails_is_retried_with_sensitive_nodes_in_float(trained_cnn, digits, tmp_path):
    x_tr, x_te, _, _ = digits
    src = _outlier(trained_cnn[1], tmp_path / "outlier.onnx", value=1e5)  # fails per-tensor INT8 whatever the training run
    calib = [{"pixel_values": x_tr[i:i + 1]} for i in range(0, 200, 2)]
    evals = [{"pixel_values": x_te[i:i + 32]} for i in range(0, 128, 32)]
    r = edgeai.quantize(src, tmp_path / "auto.onnx", mode="auto", device="auto", devices=["cpu"],
                        candidates=["cpu int8-static"], calibration=calib, eval_inputs=evals,
                        **{**QUICK, "eval_samples": 4, "samples": 100})
    rows = {row["name"]: row for row in r.candidates}
    assert rows["cpu int8-static"]["status"] == "parity failed"
    mixed = [row for name, row in rows.items() if name.startswith("cpu int8-static, ")]
    assert mixed and mixed[0]["excluded_nodes"] > 0 and mixed[0]["passed"], rows
    assert mixed[0]["status"] in ("won", "lost") and mixed[0]["precision"] == "int8+f32"
