"""Crash safety: SIGKILL an export or a quantize midway, or let the disk fill up under it.

After every kill the destination is either absent (there was none) or byte-identical to the file
that was there before; anything left behind is a hidden temp (``.NAME.*``, ``.edgeai-q-*``) that
edgeai never reads, and a later run to the same destination succeeds. Stale temps are not cleaned
automatically (another process may be writing one): see edgeai/atomic.py and SECURITY.md.

Kill points are found by polling the destination folder for the temp files, so the kill lands
while the write (or the validation of the written temp) is in progress, whatever the machine speed.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import edgeai

from conftest import ROOT

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and RLIMIT_FSIZE are POSIX")


def _start(*args: str, cwd: Path, max_file_bytes: int | None = None) -> subprocess.Popen:
    """``python -m edgeai ARGS``; with ``max_file_bytes``, under RLIMIT_FSIZE (set in the child's own
    Python, not with preexec_fn, which is unsafe when this process has engine threads running)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1")
    if max_file_bytes is None:
        cmd = [sys.executable, "-m", "edgeai", *map(str, args)]
    else:  # Python ignores SIGXFSZ, so a write past the limit fails with EFBIG, as on a full disk
        boot = (f"import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_FSIZE, ({max_file_bytes}, "
                f"{max_file_bytes})); sys.argv = ['edgeai', *sys.argv[1:]]; runpy.run_module('edgeai', "
                "run_name='__main__')")
        cmd = [sys.executable, "-c", boot, *map(str, args)]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_when(proc: subprocess.Popen, folder: Path, ready: Callable[[list[os.DirEntry]], bool],
               timeout: float = 240.0) -> bool:
    """SIGKILL ``proc`` as soon as ``ready(entries of folder)``; False if it finished first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ready(list(os.scandir(folder))):
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            return True
        time.sleep(0.0005)
    proc.kill()
    proc.communicate()
    raise AssertionError(f"kill point never reached within {timeout}s")


def _hidden_temp(prefix: str, nonempty: bool = False) -> Callable[[list[os.DirEntry]], bool]:
    def ready(entries: list[os.DirEntry]) -> bool:
        for e in entries:
            if not e.name.startswith(prefix):
                continue
            if not nonempty:
                return True
            # A temp file, or export's hidden staging folder holding the file being written.
            files = [e] if e.is_file() else [f for f in os.scandir(e.path) if f.is_file()] if e.is_dir() else []
            if any(f.stat().st_size > 0 for f in files):
                return True
        return False

    return ready


def _ours(name: str, dst_name: str) -> bool:
    """A temp edgeai may leave behind for ``dst_name``: '.NAME.xxxx.onnx', or a nested
    '..NAME.xxxx.onnx.yyyy.onnx' (a save into a temp), or quantize's '.edgeai-q-xxxx' folder."""
    return name.startswith(".") and (f".{dst_name}." in name or name.startswith(".edgeai-q-"))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_after_kill(folder: Path, dst: Path, previous: str | None, inputs: dict[Path, str]) -> list[str]:
    """The invariants; returns the hidden leftovers (for the record)."""
    if previous is None:
        assert not dst.exists(), f"a partial {dst.name} appeared"
    else:
        assert dst.exists() and _sha(dst) == previous, f"{dst.name} changed although the write was killed"
        edgeai.load(dst)  # and it is still a loadable model
    for path, digest in inputs.items():
        assert _sha(path) == digest, f"input {path.name} was modified"
    names = sorted(p.name for p in folder.iterdir())
    expected = {p.name for p in inputs} | ({dst.name} if dst.exists() else set())
    assert {n for n in names if not n.startswith(".")} == expected, names
    return [n for n in names if n.startswith(".")]


def _tiny_model_bytes() -> bytes:
    """A valid one-node model, different from anything the tests write over it."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "prior",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@pytest.fixture
def prior_model(tmp_path) -> tuple[Path, str]:
    """A folder holding a valid model under the destination name."""
    dst = tmp_path / "model.onnx"
    dst.write_bytes(_tiny_model_bytes())
    return dst, _sha(dst)


@pytest.mark.parametrize("when", ["temp_created", "temp_written"])
def test_killed_export_keeps_the_previous_file(prior_model, zoo_onnx, tmp_path, when):
    dst, previous = prior_model
    proc = _start("export", "zoo:cnn", "-o", dst, cwd=tmp_path)
    # temp_created: the empty temp exists, nothing written yet; temp_written: the model is in the temp
    # and being validated - the rename over dst is moments away.
    assert _kill_when(proc, tmp_path, _hidden_temp(".model.onnx.", nonempty=when == "temp_written"))
    leftovers = _check_after_kill(tmp_path, dst, previous, {})
    assert all(_ours(n, "model.onnx") for n in leftovers), leftovers
    # The stale temp does not block the next write to the same name.
    from edgeai.onnxfile import load_proto, save_onnx

    save_onnx(load_proto(zoo_onnx("cnn")), dst)
    assert edgeai.load(dst).inputs[0].name == "pixel_values"


def test_killed_first_export_leaves_no_model(tmp_path):
    dst = tmp_path / "cnn.onnx"
    proc = _start("export", "zoo:cnn", "-o", dst, cwd=tmp_path)
    assert _kill_when(proc, tmp_path, _hidden_temp(".cnn.onnx.", nonempty=True))
    _check_after_kill(tmp_path, dst, None, {})


@pytest.mark.parametrize("when", ["workdir_created", "temp_created"])
def test_killed_quantize_keeps_the_previous_file_and_its_input(zoo_onnx, tmp_path, when):
    src = tmp_path / "cnn.onnx"
    src.write_bytes(zoo_onnx("cnn").read_bytes())
    dst = tmp_path / "cnn.int8.onnx"
    dst.write_bytes(_tiny_model_bytes())  # a previous file under the destination name
    previous, src_digest = _sha(dst), _sha(src)
    proc = _start("quantize", src, "-o", dst, "--mode", "dynamic", cwd=tmp_path)
    # workdir_created: onnxruntime is writing into edgeai's hidden work folder; temp_created: parity
    # passed and the final atomic write has begun.
    prefix = ".edgeai-q-" if when == "workdir_created" else ".cnn.int8.onnx."
    assert _kill_when(proc, tmp_path, _hidden_temp(prefix))
    leftovers = _check_after_kill(tmp_path, dst, previous, {src: src_digest})
    assert all(_ours(n, "cnn.int8.onnx") for n in leftovers), leftovers


@pytest.mark.slow
def test_kill_at_spread_delays(zoo_onnx, tmp_path):
    """Kill a quantize at 8 delays spread over its whole run (measured first): same invariants."""
    src = tmp_path / "cnn.onnx"
    src.write_bytes(zoo_onnx("cnn").read_bytes())
    dst = tmp_path / "q.onnx"
    t0 = time.monotonic()
    out = _start("quantize", src, "-o", dst, "--mode", "dynamic", cwd=tmp_path).communicate()
    full = time.monotonic() - t0
    assert dst.exists(), out[1]
    src_digest = _sha(src)
    for k in range(1, 9):
        proc = _start("quantize", src, "-o", dst, "--mode", "dynamic", cwd=tmp_path)
        time.sleep(full * k / 9)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        # Killed before the rename: the old bytes; after it: a complete new file. Either way it loads.
        edgeai.load(dst)
        assert _sha(src) == src_digest
        assert sorted(n for n in os.listdir(tmp_path) if not n.startswith(".")) == ["cnn.onnx", "q.onnx"]


def test_full_disk_during_export_is_one_clear_line(prior_model, tmp_path):
    """A write that fails midway (file-size limit, as a full disk would) leaves the old file and no temp."""
    dst, previous = prior_model
    proc = _start("export", "zoo:cnn", "-o", dst, cwd=tmp_path, max_file_bytes=100_000)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    assert err.strip() == f"error: cannot write {dst}: File too large; nothing was written (the file is over " \
                          "this system's file-size limit (ulimit -f))"
    assert _check_after_kill(tmp_path, dst, previous, {}) == []  # the failed temp was removed


def test_stale_temps_are_never_read_as_data(zoo_onnx, tmp_path):
    """A killed write leaves '.NAME.xxxx.npz' in a calibration folder: it is not a sample."""
    import numpy as np

    calib = tmp_path / "calib"
    calib.mkdir()
    np.save(calib / "s0.npy", np.zeros((1, 1, 28, 28), np.float32))
    (calib / ".s1.npy.1a2b3c4d.npy").write_bytes(b"\x93NUMPY half-written")
    from edgeai.quantization.calibration import load_samples

    model = edgeai.load(zoo_onnx("cnn"))
    assert len(list(load_samples(str(calib), model.inputs))) == 1


def test_cold_start_cache_never_serves_another_models_graph(zoo_onnx, tmp_path):
    """onnxruntime's cache of optimized graphs was keyed by file name and mtime: a model replaced by
    an older-dated file (cp -p, tar, rsync), or another 'model.onnx' sharing the cache, got the
    stale graph of a different model. It is keyed by content now, and written by rename."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    cache, x = tmp_path / "cache", {"pixel_values": np.ones((1, 1, 28, 28), np.float32)}
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir()
    b_dir.mkdir()
    (a_dir / "model.onnx").write_bytes(zoo_onnx("cnn").read_bytes())
    proto = onnx.load(str(zoo_onnx("cnn")))
    weight = proto.graph.initializer[0]
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 3, weight.name))
    onnx.save(proto, str(b_dir / "model.onnx"))
    old = (a_dir / "model.onnx").stat().st_mtime - 1000
    os.utime(b_dir / "model.onnx", (old, old))
    for folder in (a_dir, b_dir, a_dir, b_dir):  # first fills the cache, second reads it
        fresh = edgeai.load(folder / "model.onnx").run(x)["logits"]
        np.testing.assert_array_equal(edgeai.load(folder / "model.onnx", cache_dir=cache).run(x)["logits"], fresh)
    # Replacing a's file with b's bytes (older mtime) must not reuse a's graph either.
    (a_dir / "model.onnx").write_bytes((b_dir / "model.onnx").read_bytes())
    os.utime(a_dir / "model.onnx", (old, old))
    np.testing.assert_array_equal(edgeai.load(a_dir / "model.onnx", cache_dir=cache).run(x)["logits"],
                                  edgeai.load(b_dir / "model.onnx").run(x)["logits"])
    assert len([p for p in cache.iterdir() if not p.name.startswith(".")]) == 2  # one per content
