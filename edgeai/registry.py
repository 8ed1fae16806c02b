"""The one resolver of ``"module:attr"`` names: the registries' entries (engines, quantization
modes, exporters) and the callables users name on the command line (``pkg.mod:factory``,
``path/to/file.py:fn``).

Registries map a name to a ``"module:attr"`` string so that a heavy module loads only when its
entry is used; :func:`import_attr` resolves those. :func:`load_attr` resolves what a user typed,
with errors that say what to fix.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgeai.errors import ModelLoadError


def import_attr(spec: str) -> Any:
    """``"package.module:attr"`` -> the attribute; ImportError/AttributeError pass through (a registry
    entry whose library is not installed is reported by its caller, in its own words)."""
    module_name, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def module_available(spec: str) -> bool:
    """Whether the module of a ``"module:attr"`` registry entry is installed (without importing it)."""
    return importlib.util.find_spec(spec.partition(":")[0]) is not None


@contextlib.contextmanager
def _on_sys_path(folder: Path) -> Iterator[None]:
    # A model file usually imports its siblings (``from layers import Block``).
    entry = str(folder.resolve())
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)


def load_attr(target: str) -> Any:
    """The object a user names as ``pkg.module:attr`` or ``path/to/file.py:attr``.

    Raises:
        ModelLoadError: a malformed name, a missing file or module, an import that fails, or no
            such attribute; the message says which and what to do.
    """
    path_part, _, attr = target.rpartition(":")
    if not path_part or not attr:
        raise ModelLoadError(f"bad source {target!r}; expected pkg.module:factory or path/to/file.py:factory")
    if path_part.endswith(".py"):
        file = Path(path_part)
        if not file.is_file():
            raise ModelLoadError(f"source file not found: {file} (from {target!r}); check the path, relative to "
                                 f"the current folder {Path.cwd()}")
        mod_name = f"_edgeai_src_{abs(hash(str(file.resolve())))}"
        spec = importlib.util.spec_from_file_location(mod_name, file)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[mod_name] = module
        try:
            with _on_sys_path(file.parent):
                spec.loader.exec_module(module)  # type: ignore[union-attr]
        except Exception as e:
            sys.modules.pop(mod_name, None)
            raise ModelLoadError(f"importing {file} failed ({type(e).__name__}: {e}); fix the error in that file "
                                 "or install what it imports") from e
    else:
        try:
            module = importlib.import_module(path_part)
        except Exception as e:
            raise ModelLoadError(f"cannot import module {path_part!r} ({type(e).__name__}: {e}); install it or add "
                                 "its folder to PYTHONPATH; for a file, use path/to/file.py:factory") from e
    if not hasattr(module, attr):
        public = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        raise ModelLoadError(f"{path_part} has no attribute {attr!r}; callables there: {public[:20]}")
    return getattr(module, attr)
