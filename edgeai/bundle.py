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
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeai.errors import DeviceUnavailableError, EdgeAIError, ModelLoadError
from edgeai.specs import TensorSpec

MANIFEST = "manifest.json"
FORMAT = "edgeai-bundle"
# MAJOR.MINOR. A minor bump only adds fields (older readers ignore them, newer readers default
# them); a major bump changes the meaning of existing fields and is refused across the boundary.
MANIFEST_VERSION = "1.0"

# Precision preference when no variant was made for the device asked for: the smallest that runs.
_PREFERENCE = {"int8": 0, "f16": 1, "f32": 2}


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
    import edgeai

    mine = parse_version(MANIFEST_VERSION)
    try:
        theirs = parse_version(version)
    except ValueError:
        raise ModelLoadError(f"{where}: manifest_version {version!r} is not MAJOR.MINOR; this is not a manifest "
                             f"edgeai wrote (it writes {MANIFEST_VERSION})") from None
    if theirs[0] > mine[0]:
        raise ModelLoadError(f"{where}: bundle made by a newer edgeai (manifest version {version}); edgeai "
                             f"{edgeai.__version__} reads manifest versions {mine[0]}.x. Upgrade edgeai "
                             "(pip install -U edgeai) or re-create the bundle with this one (edgeai deploy)")
    if theirs[0] < mine[0]:
        raise ModelLoadError(f"{where}: bundle made by an older edgeai (manifest version {version}); edgeai "
                             f"{edgeai.__version__} reads manifest versions {mine[0]}.x. Re-create the bundle "
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
        model = bundle.load("openvino:CPU")      # the variant made for that device, sha256-verified
        print(bundle.inputs, bundle.labels, bundle.select("cpu").name)
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

    def select(self, device: str) -> Variant:
        """The variant for ``device``: the one made for it, else the best one that runs there.

        "Best" means: a variant made for another device of the same engine (``openvino:GPU`` takes
        the ``openvino:CPU`` variant), else the FP32 variant, which every engine runs.
        """
        from edgeai.runtimes import parse_device

        req = parse_device(device)
        if req.device in self.defaults:
            return self.variant(self.defaults[req.device])
        made_for = [v for v in self.variants if req.device in v.devices]
        if made_for:
            return min(made_for, key=lambda v: _PREFERENCE.get(v.precision.split("+")[0], 3))
        same_engine = [v for v in self.variants if v.precision != "f32"
                       and any(_safe_engine(d) == req.engine for d in v.devices)]
        if same_engine:
            return min(same_engine, key=lambda v: _PREFERENCE.get(v.precision.split("+")[0], 3))
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

    def load(self, device: str = "cpu", *, variant: str | None = None, **options: Any) -> Any:
        """Load the variant for ``device`` (or the one named ``variant``) after verifying it.

        Returns the usual :class:`~edgeai.Model`; ``model.source`` names the bundle and variant.
        """
        from edgeai.runtimes import load

        for note in self.notes:
            warnings.warn(f"edgeai: {self.path}: {note}", stacklevel=3)
        chosen = self.variant(variant) if variant else self.select(device)
        path = self.verify(chosen)
        model = load(path, device, **options)
        model.source = f"{self.path} [variant {chosen.name}: {chosen.file}]"
        requested = model.describe().device
        if requested not in chosen.devices and requested not in self.defaults:
            # Runs, but its parity and latency were measured elsewhere: say so, and record it.
            why = (f"bundle variant {chosen.name!r} was checked on {list(chosen.devices)}, not on {requested}; "
                   f"re-deploy with --device {requested} to check it there")
            warnings.warn(f"edgeai: {why}", stacklevel=3)
            model.record_fallback(why)
        return model

    def describe(self) -> dict[str, Any]:
        """The manifest plus the integrity of each file right now (what ``edgeai info`` shows)."""
        return {**self.manifest, "path": str(self.path), "integrity": self.verify_all(), "read_notes": self.notes}


def _safe_engine(device: str) -> str | None:
    from edgeai.runtimes import parse_device

    try:
        return parse_device(device).engine
    except DeviceUnavailableError:
        return None


def load_bundle(path: str | os.PathLike, device: str = "cpu", *, allow_cast: bool = False, fallback: bool = False,
                precision: str | None = None, variant: str | None = None, **options: Any) -> Any:
    """``edgeai.load(BUNDLE, device)``: pick, verify and load the variant for ``device``.

    Raises:
        ModelLoadError: not a bundle, an incompatible manifest version, or a file that does not
            match its sha256 (tampered or corrupted).
        DeviceUnavailableError: no variant can run on ``device``.
    """
    return Bundle(path).load(device, variant=variant, allow_cast=allow_cast, fallback=fallback, precision=precision,
                             **options)


def describe_bundle(path: str | os.PathLike) -> dict[str, Any]:
    """``edgeai info BUNDLE``: the manifest, with each file's integrity checked now."""
    return Bundle(path).describe()


# Rendering: rows shared by `edgeai deploy`, `edgeai info BUNDLE` and report.md.

VARIANT_COLUMNS = ["variant", "file", "precision", "size KB", "default for", "sha256"]
CHECK_COLUMNS = ["variant", "device", "parity", "cosine", "max abs", "top-1", "p50 ms", "p99 ms",
                 "speedup vs fp32", "ran on"]


def variant_rows(manifest: Mapping[str, Any], integrity: Mapping[str, str] | None = None) -> list[list[Any]]:
    rows = []
    for v in manifest["variants"]:
        sha = v["sha256"][:12] + "..."
        if integrity is not None:
            sha += f" ({integrity.get(v['name'], '?')})"
        rows.append([v["name"], v["file"], v.get("precision"), round(v.get("size_bytes", 0) / 1024, 1),
                     ", ".join(v.get("default_for", [])) or "-", sha])
    return rows


def check_rows(manifest: Mapping[str, Any]) -> list[list[Any]]:
    rows = []
    for v in manifest["variants"]:
        for device in v.get("devices", []):
            p, lat = (v.get("parity") or {}).get(device, {}), (v.get("latency") or {}).get(device, {})
            top1 = p.get("top1")
            rows.append([v["name"], device, "pass" if p.get("passed") else "FAIL", p.get("cosine"), p.get("max_abs"),
                         None if top1 is None else f"{top1:.1%}", lat.get("p50_ms"), lat.get("p99_ms"),
                         lat.get("speedup_vs_fp32"), lat.get("ran_on", lat.get("status"))])
    return rows


def io_lines(manifest: Mapping[str, Any]) -> list[str]:
    lines = []
    for kind in ("inputs", "outputs"):
        for s in manifest[kind]:
            shape = "[" + ", ".join(str(d) for d in s["shape"]) + "]"
            rng = f", values in [{s['value_range'][0]}, {s['value_range'][1]})" if s.get("value_range") else ""
            lines.append(f"{kind[:-1]:6} {s['name']}: {s['dtype']} {shape}{rng}")
    return lines


def report_markdown(manifest: Mapping[str, Any], with_plot: bool = True) -> str:
    """``report.md``: what the bundle holds and the evidence, as Markdown tables."""
    from edgeai.report import markdown_table

    src = manifest["source"]
    parts = [f"# edgeai bundle: {src['source']}", "",
             f"Made {manifest['created']} by edgeai {manifest['edgeai_version']} (manifest {manifest['manifest_version']}); "
             f"mode `{manifest['mode']}`; engines: " + ", ".join(f"{k} {v}" for k, v in manifest["engines"].items()) + ".",
             "", f"Checked on: {manifest['checked_on']['cpu'].get('model')} "
             f"({', '.join(manifest['checked_on']['cpu'].get('features', [])) or 'no ISA features detected'}).",
             "", "## Inputs and outputs", "", "```", *io_lines(manifest), "```", ""]
    if manifest.get("dynamic_dims"):
        parts += [f"Dynamic dims: {', '.join(manifest['dynamic_dims'])}.", ""]
    if manifest.get("preprocessing"):
        parts += ["Preprocessing: `" + str(manifest["preprocessing"]) + "`", ""]
    parts += ["## Variants", "", markdown_table(VARIANT_COLUMNS, variant_rows(manifest)),
              f"## Parity (against {src.get('reference')}) and latency (batch 1)", "",
              f"Parity data: {manifest['parity_data']}.", "", markdown_table(CHECK_COLUMNS, check_rows(manifest))]
    if with_plot:
        parts += ["![latency](report.png)", ""]
    if manifest.get("notes"):
        parts += ["## Notes", "", *[f"- {n}" for n in manifest["notes"]], ""]
    parts += [f"Verdict: {'every check passed' if manifest['passed'] else 'a check FAILED (written with --force)'}.", ""]
    return "\n".join(parts)


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
