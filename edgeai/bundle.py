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
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeai import __version__, userjson
from edgeai.device_strings import DeviceRequest, parse_device, precision_rank
from edgeai.errors import DeviceUnavailableError, EdgeAIError, ModelLoadError
from edgeai.onnxfile import ONNX_PROTOBUF_LIMIT, describe_file
from edgeai.readset import note_read, open_regular, read_regular
from edgeai.specs import TensorSpec

MANIFEST = "manifest.json"
FORMAT = "edgeai-bundle"
# MAJOR.MINOR. A minor bump only adds fields (older readers ignore them, newer readers default
# them); a major bump changes the meaning of existing fields and is refused across the boundary.
MANIFEST_VERSION = "1.0"

_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_STRINGS = {"type": "array", "items": {"type": "string"}}
_NUMBER = {"type": ["number", "null"]}
_SPEC = {"type": "object", "required": ["name", "shape"],
         "properties": {"name": {"type": "string"}, "dtype": {"type": "string"},
                        "shape": {"type": "array", "items": {"type": ["integer", "string", "null"]}},
                        "value_range": {"type": ["array", "null"], "items": {"type": "number"}, "minItems": 2,
                                        "maxItems": 2}}}
_PARITY = {"type": "object", "properties": {"passed": {"type": "boolean"}, "verdict": {"type": ["string", "null"]},
                                            "cosine": _NUMBER, "max_abs": _NUMBER, "top1": _NUMBER}}
_LATENCY = {"type": "object", "properties": {"p50_ms": _NUMBER, "p99_ms": _NUMBER, "speedup_vs_fp32": _NUMBER,
                                             "ran_on": {"type": ["string", "null"]},
                                             "status": {"type": ["string", "null"]}}}
_VARIANT = {
    "type": "object", "required": ["name", "file", "sha256"],
    "properties": {"name": {"type": "string", "minLength": 1}, "file": {"type": "string", "minLength": 1},
                   "sha256": _SHA256, "precision": {"type": "string"}, "devices": _STRINGS, "default_for": _STRINGS,
                   "size_bytes": {"type": "integer", "minimum": 0}, "data_file": {"type": ["string", "null"]},
                   "data_sha256": {"anyOf": [_SHA256, {"type": "null"}]},
                   "parity": {"type": ["object", "null"], "additionalProperties": _PARITY},
                   "latency": {"type": ["object", "null"], "additionalProperties": _LATENCY},
                   "quantization": {"type": ["object", "null"]}}}
#: What a manifest must hold for edgeai to load, select, verify and describe a bundle. Fields it
#: does not read are not constrained (a newer minor version may add some).
MANIFEST_SCHEMA = {
    "type": "object", "required": ["format", "manifest_version", "variants", "inputs", "outputs"],
    "properties": {
        "format": {"type": "string"}, "manifest_version": {"type": "string"},
        "variants": {"type": "array", "minItems": 1, "maxItems": 1000, "items": _VARIANT},
        "inputs": {"type": "array", "items": _SPEC}, "outputs": {"type": "array", "items": _SPEC},
        "defaults": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
        "preprocessing": {"type": ["object", "null"]}, "labels": {"type": ["array", "null"], "items": {"type": "string"}},
        "notes": {"type": ["array", "null"], "items": {"type": "string"}},
        "source": {"type": ["object", "null"], "properties": {"source": {"type": ["string", "null"]},
                                                             "reference": {"type": ["string", "null"]}}},
        "engines": {"type": ["object", "null"], "additionalProperties": {"type": ["string", "null"]}},
        "created": {"type": "string"}, "edgeai_version": {"type": "string"}, "mode": {"type": "string"},
        "parity_data": {"type": ["string", "null"]}, "passed": {"type": "boolean"},
        "calibration": {"type": ["string", "null"]}, "dynamic_dims": {"type": ["array", "null"]},
        "checked_on": {"type": ["object", "null"]},
    },
}
# What `edgeai info` shows for a field an older (or hand-written) manifest lacks.
_SHOWN_DEFAULTS = {"source": {"source": "unknown"}, "created": "unknown", "edgeai_version": "unknown",
                   "mode": "unknown", "engines": {}, "defaults": {}, "parity_data": "unknown", "notes": []}
_MANIFEST_MAX_BYTES = 16 << 20


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a regular file, read in 1 MiB chunks (models can be large)."""
    h = hashlib.sha256()
    with open_regular(path, "bundle file", ModelLoadError) as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _identity(path: Path) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


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
    if not isinstance(name, str) or not name or os.path.isabs(name) or "\\" in name or "\0" in name \
            or len(name) > 255:
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
        if not os.path.lexists(file) or not self.path.is_dir():
            raise ModelLoadError(f"{self.path} is not a bundle: {MANIFEST} not found (make one with `edgeai deploy`)")
        damaged = "the bundle is damaged, re-create it with `edgeai deploy`"
        text = read_regular(file, "bundle manifest", ModelLoadError, max_bytes=_MANIFEST_MAX_BYTES)
        data = userjson.parse(text, str(file), None, error=ModelLoadError, hint=damaged)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ModelLoadError(f"{file} is not an edgeai bundle manifest (expected \"format\": \"{FORMAT}\")")
        self.notes = check_version(data.get("manifest_version"), file)
        userjson.validate(data, MANIFEST_SCHEMA, f"{file} lacks a required field or has a malformed one ({damaged})",
                          ModelLoadError)
        note_read(self.path, tree=True)  # nothing this command writes may land inside a bundle it reads
        try:
            self.variants = [Variant.from_dict(v) for v in data["variants"]]
            self.inputs = [TensorSpec.from_dict(s) for s in data["inputs"]]
            self.outputs = [TensorSpec.from_dict(s) for s in data["outputs"]]
        except (KeyError, TypeError, ValueError) as e:
            raise ModelLoadError(f"{file} lacks a required field or has a malformed one ({type(e).__name__}: {e}); "
                                 "re-create the bundle with `edgeai deploy`") from e
        if not self.variants:
            raise ModelLoadError(f"{file} lists no model variants")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ModelLoadError(f"{file} names a variant twice ({names}); {damaged}")
        for v in self.variants:
            _inside(self.path, v.file, str(file))
            if v.data_file:
                _inside(self.path, v.data_file, str(file))
        unknown = {d: n for d, n in (data.get("defaults") or {}).items() if n not in names}
        if unknown:
            raise ModelLoadError(f"{file}: defaults {unknown} name variants the manifest does not list; {damaged}")
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
        """``"ok"``, ``"missing"``, ``"not a regular file"`` or ``"sha256 mismatch"`` for a variant's file(s) now."""
        for file, expected in self._files(variant):
            if not os.path.lexists(file):
                return "missing"
            if not file.is_file():
                return "not a regular file"
            if sha256_file(file) != expected:
                return "sha256 mismatch"
        return "ok"

    def verify(self, variant: Variant) -> Path:
        """Check a variant's file(s) against the manifest's sha256; return the model path."""
        return self.read_verified(variant)[0]

    def read_verified(self, variant: Variant) -> tuple[Path, bytes, tuple[Path, tuple[int, ...]] | None]:
        """The model file's bytes, hashed in memory and checked against the manifest.

        An engine handed these bytes runs exactly what was checked: nothing swapped in between the
        hash and the engine's read can reach it. A variant over 2 GB keeps its weights in a data
        file, which the engine reads by path: it is hashed here, and its identity (device, inode,
        size, mtime) is returned for the caller to compare again once the engine has read it.

        Raises:
            ModelLoadError: a missing file, or one that does not match its sha256.
        """
        files = self._files(variant)
        (model_file, expected), data = files[0], files[1] if len(files) > 1 else None
        if not os.path.lexists(model_file):
            self._missing(model_file, variant)
        blob = read_regular(model_file, f"bundle file (variant {variant.name!r})", ModelLoadError,
                            max_bytes=ONNX_PROTOBUF_LIMIT)
        self._compare(model_file, variant, hashlib.sha256(blob).hexdigest(), expected)
        data_identity = None
        if data is not None:
            if not os.path.lexists(data[0]):
                self._missing(data[0], variant)
            before = _identity(data[0])
            self._compare(data[0], variant, sha256_file(data[0]), data[1])
            if _identity(data[0]) != before:
                raise ModelLoadError(f"bundle {self.path}: {data[0].name} changed while it was being verified; "
                                     "refusing to load it")
            data_identity = (data[0], before)
        return model_file, blob, data_identity

    def _missing(self, file: Path, variant: Variant) -> None:
        raise ModelLoadError(f"bundle {self.path}: {file.name} (variant {variant.name!r}) is missing; the "
                             "bundle is incomplete, re-create it with `edgeai deploy`")

    def _compare(self, file: Path, variant: Variant, actual: str, expected: str | None) -> None:
        if actual != expected:
            raise ModelLoadError(f"bundle {self.path}: {file.name} (variant {variant.name!r}) does not match its "
                                 f"manifest (sha256 {actual[:16]}... != {str(expected)[:16]}...); the file was "
                                 "modified or corrupted, refusing to load it. Re-create the bundle with "
                                 "`edgeai deploy`")

    def data_unchanged(self, identity: tuple[Path, tuple[int, ...]] | None) -> None:
        """After the engine read a variant's data file: it must be the file that was hashed."""
        if identity is not None and _identity(identity[0]) != identity[1]:
            raise ModelLoadError(f"bundle {self.path}: {identity[0].name} was replaced or modified while the engine "
                                 "read it; refusing the loaded model (load again)")

    def verify_all(self) -> dict[str, str]:
        """``{variant name: "ok" | "missing" | "sha256 mismatch"}`` (used by ``edgeai info``)."""
        return {v.name: self.integrity(v) for v in self.variants}

    def describe(self) -> dict[str, Any]:
        """The manifest plus the integrity of each file right now (what ``edgeai info`` shows)."""
        shown = {k: v for k, v in self.manifest.items() if v is not None or k not in _SHOWN_DEFAULTS}
        shown = {**_SHOWN_DEFAULTS, **shown}
        shown["source"] = {"source": "unknown", **shown["source"]}  # found by benchmarks/fuzz.py
        shown["inputs"] = [s.to_dict() for s in self.inputs]
        shown["outputs"] = [s.to_dict() for s in self.outputs]
        return {**shown, "path": str(self.path), "integrity": self.verify_all(), "read_notes": self.notes}


def _safe_engine(device: str) -> str | None:
    try:
        return parse_device(device).engine
    except DeviceUnavailableError:
        return None


def is_bundle(path: Any) -> bool:
    """Whether ``path`` names a bundle folder (one holding ``manifest.json``)."""
    if not isinstance(path, (str, os.PathLike)):
        return False
    try:
        return Path(path).is_dir() and os.path.lexists(Path(path) / MANIFEST)
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        return False


def describe_bundle(path: str | os.PathLike) -> dict[str, Any]:
    """``edgeai info BUNDLE``: the manifest, with each file's integrity checked now."""
    return Bundle(path).describe()


def describe_path(path: str | os.PathLike) -> dict[str, Any]:
    """``edgeai info PATH``: a bundle folder's manifest and integrity, or an ONNX file's description."""
    return describe_bundle(path) if is_bundle(path) else describe_file(path)


def read_labels(labels: str | None) -> list[str] | None:
    """Class labels: a text file (UTF-8) with one label per line, or a comma-separated list.

    Raises:
        EdgeAIError: the file is not a regular file, not UTF-8, or over 16 MiB.
    """
    if not labels:
        return None
    path = Path(labels)
    try:
        exists = "\0" not in labels and os.path.lexists(path)
    except (OSError, ValueError):
        exists = False
    if exists:
        raw = read_regular(path, "--labels file", max_bytes=16 << 20)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise EdgeAIError(f"--labels file {path} is not UTF-8 text ({e.reason} at byte {e.start}); save it as "
                              "UTF-8, one label per line") from None
        return [line.strip() for line in text.splitlines() if line.strip()]
    return [t.strip() for t in labels.split(",")]


_OBJECT = {"type": "object"}


def read_json_option(text: str | None, option: str) -> Any:
    """A JSON object given inline or as a .json file path (``--preprocessing``): bounded in size
    and depth, and an object (the manifest stores it as one)."""
    if not text:
        return None
    path = Path(text)
    try:
        is_file = "\0" not in text and len(text) < 4096 and os.path.lexists(path) and not text.lstrip().startswith("{")
    except (OSError, ValueError):
        is_file = False
    hint = f"{option} takes a JSON object or a .json file"
    if is_file:
        data = read_regular(path, f"{option} file", max_bytes=1 << 20)
        return userjson.parse(data, f"{option} {path}", _OBJECT, max_bytes=1 << 20, hint=hint)
    return userjson.parse(text, f"{option} {text[:60]!r}", _OBJECT, max_bytes=1 << 20, hint=hint)
