"""edgeai deploy: the bundle's manifest matches its files, its variants pass parity and run on each
device, a tampered or incompatible bundle is refused, and a failed deploy never damages a bundle.

The zoo CNN has random weights and no data of its own, so these tests calibrate on random inputs
(the documented ``random`` calibration, with its warning); real data is exercised by
examples/digits_deploy.py in test_examples.py.
"""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import edgeai
from edgeai.bundle import MANIFEST_VERSION, Bundle, sha256_file
from edgeai.errors import EdgeAIError, ModelLoadError

from conftest import DEVICES, ROOT, device_params, random_feeds, run_cli

TARGETS = [d for d in ("cpu", "openvino:CPU") if d in DEVICES]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """`edgeai deploy zoo:cnn -o b/ --device cpu --device openvino:CPU --mode static`, once."""
    out = tmp_path_factory.mktemp("deploy") / "b"
    devices = [a for d in TARGETS for a in ("--device", d)]
    done = run_cli("deploy", "zoo:cnn", "-o", out, *devices, "--mode", "static", "--iterations", "20", "--json")
    assert done.returncode == 0, done.stderr
    assert "calibrating on random inputs" in done.stderr  # the random calibration is said out loud
    return out, json.loads(done.stdout)


@pytest.fixture
def bundle_copy(bundle, tmp_path):
    path = tmp_path / "copy"
    shutil.copytree(bundle[0], path)
    return path


def _manifest(path):
    return json.loads((path / "manifest.json").read_text())


def _write_manifest(path, data):
    (path / "manifest.json").write_text(json.dumps(data))


def test_manifest_matches_files_and_records_the_evidence(bundle):
    path, result = bundle
    m = _manifest(path)
    assert result["passed"] and m == result["manifest"]
    assert m["format"] == "edgeai-bundle" and m["manifest_version"] == MANIFEST_VERSION
    assert m["edgeai_version"] == edgeai.__version__ and {"onnxruntime", "torch"} <= set(m["engines"])
    assert m["source"]["source"] == "zoo:cnn" and m["source"]["export_validation"].startswith("PASS")
    assert m["inputs"] == [{"name": "pixel_values", "shape": ["batch", 1, 28, 28], "dtype": "float32"}]
    assert m["outputs"][0]["name"] == "logits" and m["dynamic_dims"] == ["batch"]
    assert "random" in m["calibration"]
    files = sorted(p.name for p in path.iterdir())
    assert files == sorted(["manifest.json", "report.md", "report.png"] + [v["file"] for v in m["variants"]])
    assert [(v["name"], v["precision"]) for v in m["variants"]] == [("fp32", "f32"), ("int8-static", "int8")]
    for v in m["variants"]:
        assert sha256_file(path / v["file"]) == v["sha256"]
        assert (path / v["file"]).stat().st_size == v["size_bytes"]
        assert v["devices"] == TARGETS
        for device in TARGETS:
            assert v["parity"][device]["passed"], v["parity"][device]
            data = v["parity"][device]["data"]  # what the verdict rests on (issue 16)
            assert data["kind"] in ("data", "calibration", "random") and data["source"] and data["count"] >= 1
            assert v["parity"][device]["kinds"] == {"logits": "classification"}
            assert v["latency"][device]["p50_ms"] > 0 and v["latency"][device]["runs"] == 20
    assert m["defaults"] == {d: "int8-static" for d in TARGETS}
    assert m["variants"][1]["quantization"]["mode"] == "static"
    report = (path / "report.md").read_text()
    assert "| int8-static |" in report and "![latency](report.png)" in report
    assert (path / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp folder left behind


@pytest.mark.parametrize("device", device_params(["cpu", "openvino:CPU"]))
def test_load_bundle_runs_the_variant_made_for_the_device(bundle, device):
    path, _ = bundle
    model = edgeai.load(path, device=device)
    info = model.describe()
    assert info.precision.startswith("int8") and info.device == device
    assert "int8-static" in model.source
    out = model.run(random_feeds(model, batch=3))
    assert out["logits"].shape == (3, 10) and np.isfinite(out["logits"]).all()
    # Same file, loaded directly: the bundle adds verification, not different numbers.
    direct = edgeai.load(path / "model.int8-static.onnx", device)
    feeds = random_feeds(model, batch=2, seed=3)
    np.testing.assert_array_equal(model.run(feeds)["logits"], direct.run(feeds)["logits"])


def test_variant_choice_for_other_devices_and_by_name(bundle):
    path, _ = bundle
    b = Bundle(path)
    assert b.select("cpu").name == "int8-static"
    if "openvino:CPU" in TARGETS:
        assert b.select("openvino").name == "int8-static"  # AUTO: same engine as a target
    fp32 = edgeai.load(path, "cpu", variant="fp32")
    assert fp32.describe().precision == "f32"
    with pytest.raises(ModelLoadError, match="no variant 'int4'"):
        edgeai.load(path, "cpu", variant="int4")


def test_loading_a_bundle_does_not_import_torch(bundle):
    code = (f"import sys, edgeai; m = edgeai.load(r'{bundle[0]}', 'cpu'); "
            "print(m.describe().precision, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["int8", "False"]


def test_tampered_or_missing_file_is_refused(bundle_copy, cli):
    target = bundle_copy / "model.int8-static.onnx"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="does not match its manifest"):
        edgeai.load(bundle_copy, "cpu")
    assert edgeai.load(bundle_copy, "cpu", variant="fp32").describe().precision == "f32"  # the intact one loads
    run = cli("run", bundle_copy)
    assert run.returncode == 2 and "does not match its manifest" in run.stderr
    assert run.stderr.strip().count("\n") == 0 and "Traceback" not in run.stderr
    info = cli("info", bundle_copy)
    assert info.returncode == 1 and "sha256 mismatch" in info.stdout and "do not match" in info.stderr
    target.unlink()
    with pytest.raises(ModelLoadError, match="is missing"):
        edgeai.load(bundle_copy, "cpu")


def test_manifest_versions_are_read_or_refused_saying_which(bundle_copy):
    m = _manifest(bundle_copy)
    major = int(MANIFEST_VERSION.split(".")[0])
    _write_manifest(bundle_copy, {**m, "manifest_version": f"{major + 1}.0"})
    with pytest.raises(ModelLoadError, match="newer edgeai .*Upgrade edgeai"):
        edgeai.load(bundle_copy, "cpu")
    _write_manifest(bundle_copy, {**m, "manifest_version": f"{major - 1}.9"})
    with pytest.raises(ModelLoadError, match="older edgeai .*Re-create the bundle"):
        edgeai.load(bundle_copy, "cpu")
    _write_manifest(bundle_copy, {**m, "manifest_version": "one"})
    with pytest.raises(ModelLoadError, match="not MAJOR.MINOR"):
        edgeai.load(bundle_copy, "cpu")
    # A newer minor version only adds fields: it is read, with a warning that says so.
    _write_manifest(bundle_copy, {**m, "manifest_version": f"{major}.99", "field_from_the_future": 1})
    with pytest.warns(UserWarning, match="newer edgeai .*read it"):
        model = edgeai.load(bundle_copy, "cpu")
    assert model.describe().precision == "int8"


def test_malformed_manifests_are_refused(bundle_copy, tmp_path):
    m = _manifest(bundle_copy)
    bad = {**m, "variants": [{**m["variants"][1], "file": "../../etc/passwd"}]}
    _write_manifest(bundle_copy, bad)
    with pytest.raises(ModelLoadError, match="outside the bundle folder"):
        edgeai.load(bundle_copy, "cpu")
    (bundle_copy / "manifest.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        edgeai.load(bundle_copy, "cpu")
    _write_manifest(bundle_copy, {"format": "something-else"})
    with pytest.raises(ModelLoadError, match="not an edgeai bundle manifest"):
        edgeai.load(bundle_copy, "cpu")
    _write_manifest(bundle_copy, {k: v for k, v in m.items() if k != "inputs"})
    with pytest.raises(ModelLoadError, match="lacks a required field"):
        edgeai.load(bundle_copy, "cpu")


def test_info_prints_the_bundle_readably(bundle, cli):
    out = cli("info", bundle[0])
    assert out.returncode == 0, out.stderr
    for text in ("edgeai bundle (manifest", "zoo:cnn", "input  pixel_values: float32 [batch, 1, 28, 28]",
                 "int8-static", "(ok)", "defaults: cpu -> int8-static"):
        assert text in out.stdout, (text, out.stdout)
    data = json.loads(cli("info", bundle[0], "--json").stdout)
    assert data["integrity"] == {"fp32": "ok", "int8-static": "ok"}


def test_bad_input_exits_2_before_any_work(cli, tmp_path):
    keep = tmp_path / "not-a-bundle"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    cases = [
        (("deploy", "zoo:cnn", "-o", tmp_path / "x", "--device", "cuda"), "Devices here"),
        (("deploy", "zoo:cnn", "-o", tmp_path / "x", "--device", "torch"), "not a deployment target"),
        (("deploy", "zoo:cnn", "-o", tmp_path / "x", "--mode", "int3"), "unknown mode"),
        (("deploy", "zoo:cnn", "-o", keep, "--mode", "dynamic"), "not an edgeai bundle"),
        (("deploy", "zoo:nope", "-o", tmp_path / "x", "--mode", "dynamic"), "unknown zoo model"),
        (("deploy", "zoo:cnn", "-o", tmp_path / "x", "--mode", "dynamic", "--preprocessing", "{bad"), "JSON"),
    ]
    for args, expected in cases:
        out = cli(*args)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert expected in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)
    assert (keep / "notes.txt").read_text() == "mine" and len(list(keep.iterdir())) == 1
    assert not (tmp_path / "x").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_failed_check_keeps_the_old_bundle_and_force_writes_a_failed_one(bundle_copy, zoo_onnx, cli):
    before = (bundle_copy / "manifest.json").read_bytes()
    strict = ("--min-cosine", "0.99999999", "--device", "cpu", "--mode", "dynamic", "--iterations", "5")
    failed = cli("deploy", zoo_onnx("cnn"), "-o", bundle_copy, *strict)  # an FP32 .onnx source this time
    assert failed.returncode == 1 and "out of tolerance" in failed.stderr, failed.stderr
    assert (bundle_copy / "manifest.json").read_bytes() == before  # untouched
    forced = cli("deploy", zoo_onnx("cnn"), "-o", bundle_copy, *strict, "--force", "--json")
    assert forced.returncode == 1 and "--force" in forced.stderr
    m = _manifest(bundle_copy)
    assert m["passed"] is False and m["source"]["kind"] == "onnx"
    assert not m["variants"][1]["parity"]["cpu"]["passed"] and m["variants"][0]["parity"]["cpu"]["passed"]
    assert [v["name"] for v in m["variants"]] == ["fp32", "int8-dynamic"]  # the old int8-static is gone
    assert not [p for p in bundle_copy.parent.iterdir() if p.name.startswith(".")]


def test_fallback_fp32_ships_fp32_where_int8_fails(zoo_onnx, tmp_path):
    from edgeai.parity import Tolerance

    strict = Tolerance(atol=None, rtol=None, min_cosine=0.99999999)
    result = edgeai.deploy(zoo_onnx("cnn"), tmp_path / "b", devices=["cpu"], mode="dynamic", tolerance=strict,
                           fallback_fp32=True, iterations=5, rounds=1, samples=4)
    assert result.passed and result.manifest["defaults"] == {"cpu": "fp32"}
    assert any("shipping FP32" in n for n in result.notes), result.notes
    assert edgeai.load(tmp_path / "b", "cpu").describe().precision == "f32"


def test_mode_none_ships_fp32_only(zoo_onnx, tmp_path):
    result = edgeai.deploy(zoo_onnx("cnn"), tmp_path / "b", devices=["cpu"], mode="none", iterations=3, rounds=1,
                           samples=2, labels=list("abcdefghij"), preprocessing={"scale": 1 / 255})
    m = result.manifest
    assert result.passed and [v["name"] for v in m["variants"]] == ["fp32"] and m["defaults"] == {"cpu": "fp32"}
    assert m["calibration"] is None and m["labels"][0] == "a" and m["preprocessing"] == {"scale": 1 / 255}
    assert Bundle(tmp_path / "b").labels == list("abcdefghij")
    if "openvino:CPU" in edgeai.devices():
        # A device the bundle was never checked on: it runs, and the result says so.
        with pytest.warns(UserWarning, match="checked on \\['cpu'\\], not on openvino:CPU"):
            model = edgeai.load(tmp_path / "b", device="openvino:CPU")
        assert "not on openvino:CPU" in model.describe().fallback


def test_tolerance_limits_override_each_variants_default(zoo_onnx, tmp_path):
    # --min-cosine alone must keep the FP32 variant's allclose check and the default top-1 check.
    result = edgeai.deploy(zoo_onnx("cnn"), tmp_path / "b", devices=["cpu"], mode="none", iterations=3, rounds=1,
                           samples=2, tolerance={"min_cosine": 0.999})
    tol = result.manifest["variants"][0]["parity"]["cpu"]["tolerance"]
    assert tol["min_cosine"] == 0.999 and tol["atol"] == 1e-4 and tol["min_top1"] == 0.99


def test_api_errors_are_edgeai_errors(tmp_path, zoo_onnx, monkeypatch):
    with pytest.raises(EdgeAIError, match="at least one target device"):
        edgeai.deploy("zoo:cnn", tmp_path / "b", devices=[])
    (tmp_path / "file").write_text("x")
    with pytest.raises(EdgeAIError, match="is a file"):
        edgeai.deploy("zoo:cnn", tmp_path / "file", devices=["cpu"], mode="none")
    with pytest.raises(EdgeAIError, match="PyTorch sources only"):
        edgeai.deploy(zoo_onnx("cnn"), tmp_path / "b", devices=["cpu"], mode="none", task="text-classification")
    assert not (tmp_path / "b").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EdgeAIError, match="current folder"):
        edgeai.deploy("zoo:cnn", ".", devices=["cpu"], mode="none")
    with pytest.raises(ModelLoadError, match="not a bundle"):
        Bundle(tmp_path)


def test_edgeai_deploy_stays_callable_after_its_module_is_imported():
    # The module is `edgeai.deployment` (edgeai.load(BUNDLE) imports it); `edgeai.deploy` stays the function.
    code = "import edgeai, edgeai.deployment; print(edgeai.deploy is edgeai.deployment.deploy)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["True"]
