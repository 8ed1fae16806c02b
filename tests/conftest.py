"""Shared fixtures: zoo models exported once per session into a temp folder, and a CLI runner that
runs the real ``edgeai`` entry point in a subprocess (exit codes and messages are the contract)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgeai

ROOT = Path(__file__).resolve().parents[1]
DEVICES = edgeai.devices()


def device_params(devices: list[str] | None = None) -> list:
    """Every device edgeai knows, skipped with the reason where this machine lacks it."""
    wanted = devices or ["cpu", "openvino:CPU", "cuda"]
    params = []
    for d in wanted:
        marks = []
        if d.startswith("cuda"):
            marks.append(pytest.mark.cuda)
        if d.startswith("openvino"):
            marks.append(pytest.mark.openvino)
        if d not in DEVICES:
            marks.append(pytest.mark.skip(reason=f"{d} is not available here (devices: {DEVICES})"))
        params.append(pytest.param(d, marks=marks, id=d))
    return params


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="session")
def zoo_onnx(artifacts: Path):
    """Export a zoo model on first use; later uses in the session get the same file."""
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            cache[name] = edgeai.export(f"zoo:{name}", path=artifacts / f"{name}.onnx").path
        return cache[name]

    return get


@pytest.fixture(scope="session")
def digits():
    from edgeai.demo import load_digits_28

    return load_digits_28()


@pytest.fixture(scope="session")
def trained_cnn(digits, artifacts: Path):
    """The demo's CNN trained on digits, and its FP32 export."""
    from edgeai.demo import train_cnn
    from edgeai.zoo import get

    x_tr, _, y_tr, _ = digits
    module = train_cnn(x_tr, y_tr)
    import torch

    result = edgeai.export(module, (torch.from_numpy(x_tr[:2]),), artifacts / "digits_cnn.onnx",
                           inputs=get("cnn").inputs, output_names=["logits"])
    return module, result.path


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1", COLUMNS="200")
    result = subprocess.run([sys.executable, "-m", "edgeai", *map(str, args)], capture_output=True, text=True,
                            cwd=cwd or ROOT, env=env, timeout=timeout)
    # Every failure a user can cause is an EdgeAIError with its exit code; "unexpected" is a bug.
    assert "error: unexpected" not in result.stderr, f"edgeai {' '.join(map(str, args))}: {result.stderr[-2000:]}"
    return result


@pytest.fixture
def cli():
    return run_cli


def random_feeds(model, batch: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    from edgeai.specs import make_inputs

    return make_inputs(model.inputs, {"batch": batch}, seed=seed)


# --- scheduling under `pytest -n 2 --dist loadfile` (make test) ------------------------------------------
# Files that share an expensive session fixture run on one worker: the Whisper tiny.en export and
# PyTorch transcripts (~2 min) are built once, not once per worker.
SAME_WORKER = {"tests/test_real_whisper_weights.py": "tests/test_real_whisper.py",
               "tests/test_real_whisper_auto.py": "tests/test_real_whisper.py",
               "tests/test_real_parity.py": "tests/test_real_whisper.py"}
# The longest files start first, so the two workers finish together instead of one running a long
# tail alone (seconds measured on the 2-core box, whole files).
LONGEST_FIRST = ("tests/test_real_whisper.py", "tests/test_real_whisper_weights.py", "tests/test_real_whisper_auto.py",
                 "tests/test_real_parity.py",
                 "tests/test_examples.py", "tests/test_readme.py", "tests/test_export.py", "tests/test_fastest.py",
                 "tests/test_decoding.py", "tests/test_generate.py", "tests/test_quantize.py",
                 "tests/test_real_models.py", "tests/test_fleet.py", "tests/test_textgpt.py")


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {f: i for i, f in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(_file_of(item.nodeid), len(rank)))  # stable: file order kept otherwise


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    if config.getoption("dist", None) != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedFixtureScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return SAME_WORKER.get(scope, scope)

    config.option.loadscopereorder = False  # keep LONGEST_FIRST's order, not "most tests first"
    return SharedFixtureScheduling(config, log)
