"""Deployment bundles: a folder an app can trust, read back safely.

A bundle (written by ``edgeai deploy``) holds ``manifest.json``, one ONNX file per variant
(``model.fp32.onnx``, ``model.int8-static.onnx``, ...), and ``report.md`` / ``report.png``. The
manifest says what the model takes and returns, which variant was made for which device, and the
evidence: each variant's sha256, its parity against the original and its latency on each device.

Reading is defensive: the manifest version is checked (a bundle from an incompatible edgeai is
refused, saying whether it is older or newer), file names may not leave the bundle folder, and a
variant's sha256 is verified before its file is handed to an engine.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeai import __version__
from edgeai.device_strings import DeviceRequest, parse_device, precision_rank
from edgeai.errors import DeviceUnavailableError, EdgeAIError, ModelLoadError
from edgeai.onnxfile import describe_file
from edgeai.specs import TensorSpec

MANIFEST = "manifest.json"
FORMAT = "edgeai-bundle"
# MAJOR.MINOR. A minor bump only adds fields (older readers ignore them, newer readers default
# them); a major bump changes the meaning of existing fields and is refused across the boundary.
MANIFEST_VERSION = "1.0"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (models can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def parse_version(text: Any) -> tuple[int, int]:
    """``"1.0"`` -> ``(1, 0)``; anything else is not a manifest version."""
    parts = str(text).split(".")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(text)
    return int(parts[0]), int(parts[1])


def check_version(version: Any, where: Path) -> list[str]:
    """Refuse a manifest this edgeai cannot read; return notes for one it reads with care."""
    mine = parse_version(MANIFEST_VERSION)
    try:
        theirs = parse_version(version)
    except ValueError:
        raise ModelLoadError(f"{where}: manifest_version {version!r} is not MAJOR.MINOR; this is not a manifest "
                             f"edgeai wrote (it writes {MANIFEST_VERSION})") from None
    if theirs[0] > mine[0]:
        raise ModelLoadError(f"{where}: bundle made by a newer edgeai (manifest version {version}); edgeai "
                             f"{__version__} reads manifest versions {mine[0]}.x. Upgrade edgeai "
                             "(pip install -U edgeai) or re-create the bundle with this one (edgeai deploy)")
    if theirs[0] < mine[0]:
        raise ModelLoadError(f"{where}: bundle made by an older edgeai (manifest version {version}); edgeai "
                             f"{__version__} reads manifest versions {mine[0]}.x. Re-create the bundle "
                             "with `edgeai deploy`")
    if theirs[1] > mine[1]:
        return [f"bundle made by a newer edgeai (manifest version {version}, this edgeai writes "
                f"{MANIFEST_VERSION}); read it, ignoring fields this version does not know"]
    if theirs[1] < mine[1]:
        return [f"bundle made by an older edgeai (manifest version {version}); read it with defaults for "
                f"fields added since"]
    return []


@dataclass(frozen=True)
class Variant:
    """One model file of a bundle and what it was made and checked for."""

    name: str
    file: str
    sha256: str
    precision: str
    devices: tuple[str, ...]  # the devices it was made for and checked on
    size_bytes: int
    data_file: str | None = None  # external data (models over 2 GB)
    data_sha256: str | None = None
    parity: dict[str, Any] | None = None  # device -> parity summary
    latency: dict[str, Any] | None = None  # device -> latency summary
    quantization: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Variant:
        return cls(d["name"], d["file"], d["sha256"], d.get("precision", "f32"), tuple(d.get("devices", ())),
                   int(d.get("size_bytes", 0)), d.get("data_file"), d.get("data_sha256"), d.get("parity"),
                   d.get("latency"), d.get("quantization"))


def _inside(root: Path, name: str, where: str) -> Path:
    """A file named by the manifest, which must stay inside the bundle folder."""
    if not isinstance(name, str) or not name or os.path.isabs(name) or "\\" in name:
        raise ModelLoadError(f"{where}: file name {name!r} in the manifest is not a plain relative name")
    path = (root / name).resolve()
    if root.resolve() not in path.parents:
        raise ModelLoadError(f"{where}: the manifest points at {name!r}, outside the bundle folder; refusing it")
    return path


class Bundle:
    """A bundle folder, its manifest read and checked. Files are verified when a variant is used.

    Example::

        bundle = Bundle("cnn-bundle")
        print(bundle.inputs, bundle.labels, bundle.select("cpu").name)
        model = edgeai.load("cnn-bundle", "openvino:CPU")  # that device's variant, sha256-verified
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        file = self.path / MANIFEST
        if not file.is_file():
            raise ModelLoadError(f"{self.path} is not a bundle: {MANIFEST} not found (make one with `edgeai deploy`)")
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise ModelLoadError(f"{file} is not valid JSON ({e}); the bundle is damaged, re-create it with "
                                 "`edgeai deploy`") from e
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ModelLoadError(f"{file} is not an edgeai bundle manifest (expected \"format\": \"{FORMAT}\")")
        self.notes = check_version(data.get("manifest_version"), file)
        try:
            self.variants = [Variant.from_dict(v) for v in data["variants"]]
            self.inputs = [TensorSpec.from_dict(s) for s in data["inputs"]]
            self.outputs = [TensorSpec.from_dict(s) for s in data["outputs"]]
        except (KeyError, TypeError, ValueError) as e:
            raise ModelLoadError(f"{file} lacks a required field or has a malformed one ({type(e).__name__}: {e}); "
                                 "re-create the bundle with `edgeai deploy`") from e
        if not self.variants:
            raise ModelLoadError(f"{file} lists no model variants")
        for v in self.variants:
            _inside(self.path, v.file, str(file))
            if v.data_file:
                _inside(self.path, v.data_file, str(file))
        self.manifest: dict[str, Any] = data
        self.defaults: dict[str, str] = dict(data.get("defaults") or {})
        self.preprocessing: dict[str, Any] | None = data.get("preprocessing")
        self.labels: list[str] | None = data.get("labels")

    def __repr__(self) -> str:
        return f"Bundle({str(self.path)!r}, variants={[v.name for v in self.variants]})"

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise ModelLoadError(f"bundle {self.path} has no variant {name!r}; it has {[v.name for v in self.variants]}")

    def select(self, device: str | DeviceRequest) -> Variant:
        """The variant for ``device``: the one made for it, else the best one that runs there.

        "Best" means: a variant made for another device of the same engine (``openvino:GPU`` takes
        the ``openvino:CPU`` variant), else the FP32 variant, which every engine runs.
        """
        req = parse_device(device)
        if req.device in self.defaults:
            return self.variant(self.defaults[req.device])
        made_for = [v for v in self.variants if req.device in v.devices]
        if made_for:
            return min(made_for, key=lambda v: precision_rank(v.precision, 3))
        same_engine = [v for v in self.variants if v.precision != "f32"
                       and any(_safe_engine(d) == req.engine for d in v.devices)]
        if same_engine:
            return min(same_engine, key=lambda v: precision_rank(v.precision, 3))
        fp32 = [v for v in self.variants if v.precision == "f32"]
        if fp32:
            return fp32[0]
        raise DeviceUnavailableError(f"bundle {self.path} has no variant for {req.device} (made for "
                                     f"{sorted({d for v in self.variants for d in v.devices})}) and no FP32 variant "
                                     "that runs anywhere; re-deploy with --device " + req.device)

    def _files(self, variant: Variant) -> list[tuple[Path, str | None]]:
        where = str(self.path / MANIFEST)
        pairs = [(_inside(self.path, variant.file, where), variant.sha256)]
        if variant.data_file:
            pairs.append((_inside(self.path, variant.data_file, where), variant.data_sha256))
        return pairs

    def integrity(self, variant: Variant) -> str:
        """``"ok"``, ``"missing"`` or ``"sha256 mismatch"`` for a variant's file(s) right now."""
        for file, expected in self._files(variant):
            if not file.is_file():
                return "missing"
            if sha256_file(file) != expected:
                return "sha256 mismatch"
        return "ok"

    def verify(self, variant: Variant) -> Path:
        """Check a variant's file(s) against the manifest's sha256; return the model path."""
        for file, expected in self._files(variant):
            if not file.is_file():
                raise ModelLoadError(f"bundle {self.path}: {file.name} (variant {variant.name!r}) is missing; the "
                                     "bundle is incomplete, re-create it with `edgeai deploy`")
            actual = sha256_file(file)
            if actual != expected:
                raise ModelLoadError(f"bundle {self.path}: {file.name} (variant {variant.name!r}) does not match its "
                                     f"manifest (sha256 {actual[:16]}... != {str(expected)[:16]}...); the file was "
                                     "modified or corrupted, refusing to load it. Re-create the bundle with "
                                     "`edgeai deploy`")
        return self._files(variant)[0][0]

    def verify_all(self) -> dict[str, str]:
        """``{variant name: "ok" | "missing" | "sha256 mismatch"}`` (used by ``edgeai info``)."""
        return {v.name: self.integrity(v) for v in self.variants}

    def describe(self) -> dict[str, Any]:
        """The manifest plus the integrity of each file right now (what ``edgeai info`` shows)."""
        return {**self.manifest, "path": str(self.path), "integrity": self.verify_all(), "read_notes": self.notes}


def _safe_engine(device: str) -> str | None:
    try:
        return parse_device(device).engine
    except DeviceUnavailableError:
        return None


def is_bundle(path: Any) -> bool:
    """Whether ``path`` names a bundle folder (one holding ``manifest.json``)."""
    return isinstance(path, (str, os.PathLike)) and Path(path).is_dir() and (Path(path) / MANIFEST).exists()


def describe_bundle(path: str | os.PathLike) -> dict[str, Any]:
    """``edgeai info BUNDLE``: the manifest, with each file's integrity checked now."""
    return Bundle(path).describe()


def describe_path(path: str | os.PathLike) -> dict[str, Any]:
    """``edgeai info PATH``: a bundle folder's manifest and integrity, or an ONNX file's description."""
    return describe_bundle(path) if is_bundle(path) else describe_file(path)


def read_labels(labels: str | None) -> list[str] | None:
    """Class labels: a text file with one label per line, or a comma-separated list."""
    if not labels:
        return None
    path = Path(labels)
    if path.is_file():
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [t.strip() for t in labels.split(",")]


def read_json_option(text: str | None, option: str) -> Any:
    """A JSON object given inline or as a .json file path (``--preprocessing``)."""
    if not text:
        return None
    path = Path(text)
    try:
        return json.loads(path.read_text(encoding="utf-8") if path.is_file() else text)
    except ValueError as e:
        raise EdgeAIError(f"{option} takes a JSON object or a .json file; could not parse {text!r}: {e}") from None
