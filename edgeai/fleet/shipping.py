"""Moving model and data files to target boxes through Ray's object store, checked by sha256.

The driver reads each file once, hashes it, and puts the bytes in the object store once; every
target pulls the same object and checks every file's sha256 before writing it to a temp folder of
its own. A transfer that does not match is refused (:class:`TransferError`), never loaded: a
corrupted model would otherwise be benchmarked or judged as if it were the user's.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeai.errors import EdgeAIError, ModelLoadError
from edgeai.onnxfile import load_proto


class TransferError(ModelLoadError):
    """A shipped file's bytes did not match the sha256 taken on the driver; nothing was loaded."""


@dataclass(frozen=True)
class ShippedFile:
    path: str  # relative to the shipment's root, with forward slashes
    sha256: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class Shipment:
    """Files in the object store: ``files`` say what must arrive, ``ref`` holds ``{path: bytes}``.

    ``entry`` is what a target opens: the ``.onnx`` file (its external data rides along), the
    bundle or data folder (``"."``), or a data file.
    """

    name: str  # the file or folder name on the driver, kept on the target so rows name it
    entry: str
    files: tuple[ShippedFile, ...]
    ref: Any = None  # ray.ObjectRef of dict[str, bytes]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def sha256(self) -> str:
        """The entry file's sha256 (for a folder: a hash over its files' paths and hashes)."""
        for f in self.files:
            if f.path == self.entry:
                return f.sha256
        return hashlib.sha256("".join(f"{f.path}\0{f.sha256}\n" for f in self.files).encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "entry": self.entry, "sha256": self.sha256, "bytes": self.size,
                "files": [f.to_dict() for f in self.files]}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _external_data(path: Path) -> list[Path]:
    """The external-data files an ONNX file names (checked to stay in its folder by load_proto)."""
    proto = load_proto(path)
    found: list[Path] = []
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    for tensor in _get_all_tensors(proto):
        if uses_external_data(tensor):
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            if location and (path.parent / location) not in found:
                found.append(path.parent / location)
    return found


def _members(path: Path) -> tuple[Path, list[Path], str]:
    """(root folder, files to ship, entry relative to root) for a model or data path."""
    if path.is_dir():
        # Dot-files are skipped: edgeai's own interrupted writes leave hidden temps behind.
        files = sorted(p for p in path.rglob("*") if p.is_file() and not any(
            part.startswith(".") for part in p.relative_to(path).parts))
        if not files:
            raise ModelLoadError(f"{path} is an empty folder; nothing to ship")
        return path, files, "."
    if not path.is_file():
        raise ModelLoadError(f"{path} does not exist; give an .onnx file, a bundle folder or a data file/folder")
    extra = _external_data(path) if path.suffix == ".onnx" else []
    return path.parent, [path, *extra], path.name


def ship(path: str | os.PathLike, *, files: Sequence[str | os.PathLike] | None = None) -> Shipment:
    """Put a model (or data) file or folder in the object store once, with each file's sha256.

    Needs a connected Ray session (see :func:`edgeai.fleet.connect`).

    Args:
        path: an ``.onnx`` file (its external-data files come along), a bundle folder, a data file
            or a data folder.
        files: ship only these files of the folder ``path`` (a shard of a data folder).

    Returns:
        A :class:`Shipment` to pass to :func:`edgeai.fleet.bench` / :func:`edgeai.fleet.check`
        in place of the path; shipping once and reusing it saves the transfer.
    """
    import ray

    p = Path(path)
    if files is not None:
        root, members, entry = p, [Path(f) for f in files], "."
    else:
        root, members, entry = _members(p)
    blobs: dict[str, bytes] = {}
    listed = []
    for f in members:
        rel = f.relative_to(root).as_posix()
        data = f.read_bytes()
        blobs[rel] = data
        listed.append(ShippedFile(rel, _sha256(data), len(data)))
    return Shipment(p.name, entry, tuple(listed), ray.put(blobs))


def receive(shipment: Shipment, into: str | os.PathLike) -> Path:
    """On a target: fetch a shipment's bytes, check every sha256, write the files under ``into``.

    Returns the path to open (the entry file, or the folder).

    Raises:
        TransferError: a file is missing or its bytes differ from what the driver hashed.
    """
    import ray

    blobs = ray.get(shipment.ref)
    return write_verified(shipment, blobs, into)


def write_verified(shipment: Shipment, blobs: dict[str, bytes], into: str | os.PathLike) -> Path:
    """Check ``blobs`` against the shipment's hashes, then write them under ``into/<name>``."""
    root = Path(into) / shipment.name
    if shipment.entry != ".":
        root = Path(into) / f"{shipment.name}.d"
    for f in shipment.files:
        data = blobs.get(f.path)
        if data is None:
            raise TransferError(f"{shipment.name}: {f.path} did not arrive; ship it again")
        got = _sha256(data)
        if got != f.sha256 or len(data) != f.size:
            raise TransferError(f"{shipment.name}: {f.path} arrived corrupted (sha256 {got[:12]}…, {len(data)} "
                                f"bytes; sent {f.sha256[:12]}…, {f.size} bytes); refused, nothing was loaded. "
                                "Ship it again")
    for f in shipment.files:
        dst = (root / f.path).resolve()
        if not dst.is_relative_to(root.resolve()):  # a crafted shipment must not write outside its folder
            raise TransferError(f"{shipment.name}: file path {f.path!r} leaves the shipment's folder; refused")
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(blobs[f.path])  # a fresh private temp folder: no reader can see it half-written
    return root if shipment.entry == "." else root / shipment.entry


class Workdir:
    """A private temp folder on a target for received files, removed when the task ends."""

    def __enter__(self) -> Path:
        self.path = Path(tempfile.mkdtemp(prefix="edgeai-fleet-"))
        return self.path

    def __exit__(self, *exc: Any) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def check_shipments(items: Sequence[Any]) -> None:
    """Refuse anything that is neither a path nor a Shipment before any task starts."""
    for item in items:
        if not isinstance(item, (str, os.PathLike, Shipment)):
            raise EdgeAIError(f"models must be paths or edgeai.fleet.Shipment objects; got {type(item).__name__}")
