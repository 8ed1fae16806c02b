"""Checking a ``torch.export`` archive (``.pt2``) before ``torch.export.load`` opens it.

``torch.export.load`` unpickles with ``weights_only=False`` in several places: weights or constants
saved with ``use_pickle``, custom and opaque objects, legacy payloads (where its restricted load
fails, it retries unrestricted), and the archive's sample inputs; it also loads AOTInductor
shared libraries found in the archive. Any of those can run arbitrary code. torch's own docs say
never to load an untrusted ``.pt2``; edgeai refuses the archives that would take one of those
paths, so loading one runs only torch's restricted unpickler and the graph's torch operators.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from edgeai.errors import ModelLoadError

# Payload kinds torch.export.load turns into Python objects with full pickle, or native code.
_OBJECT_PREFIXES = ("custom_obj_", "opaque_obj_")
_NATIVE_DIRS = ("data/aotinductor/", "data/executorch/", "data/mtia")


def check_pt2_archive(path: str | Path) -> None:
    """Refuse a ``.pt2`` whose loading would need full unpickling or native code.

    Checks the archive format marker, the weights and constants configs (``use_pickle`` and custom
    or opaque objects), every ``.pt`` payload (sample inputs, legacy weights) with torch's
    restricted ``weights_only`` loader, and the absence of AOTInductor/ExecuTorch binaries.

    Raises:
        ModelLoadError: not a zip, not the current ``pt2`` format, or a risky payload (named).
    """
    import torch

    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise ModelLoadError(f"{path} is not a torch.export archive (not a readable zip: {e})") from e
    risky: list[str] = []
    with archive:
        names = archive.namelist()
        inner = {n: n.split("/", 1)[1] if "/" in n else n for n in names}  # drop the archive's root folder
        marker = next((n for n, r in inner.items() if r == "archive_format"), None)
        if marker is None or archive.read(marker).strip() != b"pt2":
            raise ModelLoadError(f"{path} is not in the current torch.export format (no 'archive_format: pt2'); "
                                 "torch loads older archives with full unpickling. Re-save it with "
                                 "torch.export.save from a current torch")
        if not any(r.startswith("models/") and r.endswith(".json") for r in inner.values()):
            raise ModelLoadError(f"{path} holds no exported program (no models/*.json); create it with "
                                 "torch.export.save(torch.export.export(model, args), 'model.pt2')")
        for name, rel in inner.items():
            if rel.startswith(_NATIVE_DIRS):
                risky.append(f"{rel} (compiled native code)")
            elif rel.endswith(("_weights_config.json", "_constants_config.json")):
                try:
                    config = json.loads(archive.read(name)).get("config", {})
                except ValueError as e:
                    raise ModelLoadError(f"{path}: {rel} is not valid JSON ({e})") from e
                for fqn, meta in config.items():
                    if meta.get("use_pickle"):
                        risky.append(f"{fqn} (pickled)")
                    elif str(meta.get("path_name", "")).startswith(_OBJECT_PREFIXES):
                        risky.append(f"{fqn} (a custom Python object)")
            elif rel.endswith(".pt"):
                try:
                    torch.load(io.BytesIO(archive.read(name)), weights_only=True)
                except Exception:  # anything the restricted loader refuses would be retried unrestricted
                    risky.append(f"{rel} (needs full unpickling)")
    if risky:
        shown = ", ".join(sorted(set(risky))[:5]) + (" ..." if len(set(risky)) > 5 else "")
        raise ModelLoadError(f"{path} holds payloads that loading would unpickle or execute: {shown}. edgeai "
                             "loads .pt2 archives only when they need neither; if you trust this file, load it "
                             "yourself (torch.export.load(...).module()) and pass the module with its inputs")
