"""README.md runs as written: every ```bash / ```sh block and the ```python snippet, top to bottom, in
one empty folder, with this checkout's ``edgeai`` and ``python`` first on PATH; each must exit 0.

A block preceded by ``<!-- readme-test: skip (reason) -->`` is not run (slow, or needs a GPU or
files of your own); the reason is required. ``<!-- readme-test: setup -->`` on its own is not needed:
blocks share the folder, so later ones use what earlier ones wrote.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import ROOT

README = ROOT / "README.md"
RUN = {"bash", "sh", "shell", "python"}
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\s*(\((?P<reason>[^)]*)\))?\s*-->")
FENCE = re.compile(r"^```(?P<lang>[\w+-]*)\s*$")


@dataclass(frozen=True)
class Block:
    lang: str
    code: str
    line: int  # 1-based line of the opening fence
    skip: str | None  # the reason, when marked


def readme_blocks(text: str) -> list[Block]:
    """The fenced code blocks of ``text`` in order, with the skip marker (if any) just above each."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group("lang").lower()
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        prev = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        marker = SKIP.search(prev)
        reason = (marker.group("reason") or "").strip() if marker else None
        blocks.append(Block(lang, "\n".join(lines[start + 1:j]) + "\n", start + 1, reason))
        i = j + 1
    return blocks


def _shims(folder: Path) -> dict[str, str]:
    """``edgeai`` and ``python`` on PATH run this interpreter with this checkout's package."""
    folder.mkdir()
    for name, cmd in (("edgeai", f'"{sys.executable}" -m edgeai'), ("python", f'"{sys.executable}"')):
        shim = folder / name
        shim.write_text(f'#!/bin/sh\nexec {cmd} "$@"\n')
        shim.chmod(0o755)
    return dict(os.environ, PATH=f"{folder}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONPATH=str(ROOT),
                NO_COLOR="1", COLUMNS="160", MPLBACKEND="Agg")


def test_readme_blocks_are_found_and_skips_give_a_reason():
    blocks = readme_blocks(README.read_text())
    runnable = [b for b in blocks if b.lang in RUN]
    assert sum(b.lang == "python" for b in runnable) >= 1 and sum(b.lang == "bash" for b in runnable) >= 3
    for b in runnable:
        assert b.skip != "", f"README line {b.line}: a readme-test skip marker needs a (reason)"
    assert [b for b in runnable if b.skip is None], "every block is skipped"


def test_readme_runs_top_to_bottom_in_an_empty_folder(tmp_path):
    env = _shims(tmp_path / "bin")
    work = tmp_path / "work"
    work.mkdir()
    timings = []
    for b in readme_blocks(README.read_text()):
        if b.lang not in RUN or b.skip is not None:
            continue
        t0 = time.perf_counter()
        if b.lang == "python":
            script = tmp_path / f"readme_{b.line}.py"
            script.write_text(b.code)
            cmd = [sys.executable, str(script)]
        else:
            cmd = ["bash", "-euo", "pipefail", "-c", b.code]
        done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        timings.append(f"line {b.line}: {time.perf_counter() - t0:.1f}s")
        if done.returncode != 0:
            pytest.fail(f"README block at line {b.line} ({b.lang}) exited {done.returncode}\n--- block ---\n{b.code}"
                        f"--- stdout (tail) ---\n{done.stdout[-3000:]}\n--- stderr (tail) ---\n{done.stderr[-3000:]}")
    print("README blocks:", ", ".join(timings))
