"""The CLI contract: real subprocesses, exit codes 0 / 1 / 2, one clear line on errors."""

import json

import numpy as np


def test_help_lists_commands(cli):
    out = cli("--help")
    assert out.returncode == 0
    for cmd in ("export", "quantize", "run", "check", "bench", "info", "devices", "demo"):
        assert cmd in out.stdout


def test_export_info_run_roundtrip(cli, tmp_path):
    onnx_path = tmp_path / "cnn.onnx"
    out = cli("export", "zoo:cnn", "-o", onnx_path, "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["validation"]["passed"] and data["inputs"][0]["shape"] == ["batch", 1, 28, 28]
    info = json.loads(cli("info", onnx_path, "--json").stdout)
    assert info["opset"] >= 17 and info["parameters"] > 100_000 and "Conv" in info["operators"]
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 1, 28, 28), np.float32))
    run = cli("run", onnx_path, "--input", f"pixel_values={x}", "-o", tmp_path / "out.npz", "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["outputs"]["logits"]["shape"] == [2, 10]
    assert np.load(tmp_path / "out.npz")["logits"].shape == (2, 10)


def test_bad_inputs_exit_2_with_one_line(cli, tmp_path, zoo_onnx):
    cnn = zoo_onnx("cnn")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"garbage")
    x64 = tmp_path / "x64.npy"
    np.save(x64, np.zeros((1, 1, 28, 28), np.float64))
    cases = [
        (("run", tmp_path / "missing.onnx"), "not found"),
        (("run", junk), "not a valid ONNX model"),
        (("run", cnn, "--input", f"image={x64}"), "missing ['pixel_values']"),
        (("run", cnn, "--input", f"pixel_values={x64}"), "expects float32"),
        (("run", cnn, "--device", "cuda"), "Devices here"),
        (("export", "zoo:nope", "-o", tmp_path / "n.onnx"), "unknown zoo model"),
        (("export", "zoo:cnn", "-o", tmp_path / "n.onnx", "--input-spec", "x:1xAx?"), "bad dim"),
        (("quantize", cnn, "-o", tmp_path / "q.onnx", "--mode", "int3"), "unknown mode"),
    ]
    for args, expected in cases:
        out = cli(*args)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert expected in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr
        assert out.stderr.strip().count("\n") == 0, out.stderr
    assert not (tmp_path / "n.onnx").exists() and not (tmp_path / "q.onnx").exists()


def test_check_exits_1_on_mismatch(cli, zoo_onnx):
    ok = cli("check", zoo_onnx("cnn"), "--reference", "zoo:cnn", "--data", "random:2")
    assert ok.returncode == 0, ok.stderr
    assert "PASS" in ok.stdout
    bad = cli("check", zoo_onnx("gru"), "--reference", zoo_onnx("lstm"), "--data", "random:2")
    assert bad.returncode == 1 and "FAIL" in bad.stdout


def test_devices_json_lists_cpu_features(cli):
    data = json.loads(cli("devices", "--json").stdout)
    assert "cpu" in data["devices"]
    assert isinstance(data["cpu"]["features"], list) and "vnni" in data["cpu"]


def test_bench_writes_every_format(cli, zoo_onnx, tmp_path):
    out = cli("bench", zoo_onnx("cnn"), "--device", "cpu", "--batch", "1,2", "--iterations", "10", "--rounds", "2",
              "--baseline", "torch:zoo:cnn", "--plot", tmp_path / "b.png", "--csv", tmp_path / "b.csv",
              "--markdown", tmp_path / "b.md", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert len(data["results"]) == 4 and data["baseline"] == "torch"
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "b.csv").read_text().startswith("config,")
    assert (tmp_path / "b.md").read_text().startswith("| config")


def test_version_and_debug_after_the_command(cli, tmp_path):
    import edgeai

    out = cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"edgeai {edgeai.__version__}"
    missing = tmp_path / "missing.onnx"
    plain = cli("run", missing)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    debug = cli("run", missing, "--debug")  # a global flag, accepted after the command too
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_old_option_spellings_are_hidden_aliases(cli, tmp_path):
    """--input (export/deploy) became --input-spec, quantize --eval became --data: kept for one release."""
    out = cli("export", "zoo:cnn", "-o", tmp_path / "m.onnx", "--input", "pixel_values:1x1x28x28:float32",
              "--no-validate")
    assert out.returncode == 0, out.stderr
    assert "--input is renamed --input-spec" in out.stderr
    assert "--input-spec" in cli("export", "--help").stdout
    both = cli("quantize", tmp_path / "m.onnx", "-o", tmp_path / "q.onnx", "--data", "random:2", "--eval", "random:2")
    assert both.returncode == 2 and "give only --data" in both.stderr
    assert "--eval" not in cli("quantize", "--help").stdout
