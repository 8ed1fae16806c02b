"""Putting a finished bundle folder at its destination without a moment where nothing valid is there.

A new destination is one rename. An existing bundle is swapped with the new one in one atomic step
(``renameat2(RENAME_EXCHANGE)`` through :func:`edgeai.atomic.exchange`); files in the old bundle
that ``deploy`` did not write (the user's) are carried into the new one, and only the old bundle's
own files are deleted afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path

from edgeai.atomic import exchange, fsync, temp_name
from edgeai.bundle import MANIFEST, Bundle
from edgeai.errors import EdgeAIError


def check_destination(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise EdgeAIError(f"{out} is a file; the bundle is a folder: choose another -o")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).exists():
        raise EdgeAIError(f"{out} exists and is not an edgeai bundle (no {MANIFEST}); refusing to replace it: "
                          "choose another -o or empty it")


def _own_files(bundle: Path) -> set[str]:
    """The names in an existing bundle that an earlier ``deploy`` wrote: its manifest's files, the
    manifest and the reports. Anything else in the folder is the user's, and is kept."""
    names = {MANIFEST, "report.md", "report.png"}
    try:
        old = Bundle(bundle)
    except EdgeAIError:  # a damaged manifest: only the names deploy always uses are ours
        return names | {p.name for p in bundle.glob("model.*.onnx")} | {p.name for p in bundle.glob("model.*.onnx.data")}
    for v in old.variants:
        names.add(v.file)
        if v.data_file:
            names.add(v.data_file)
    return names


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # the same file under both names: nothing is copied, nothing can differ
    except OSError:
        shutil.copy2(src, dst)


def _carry_user_files(out: Path, tmp: Path) -> list[str]:
    """Put every entry of the old bundle that deploy did not write into the new one (hard links)."""
    own, carried = _own_files(out), []
    for entry in sorted(out.iterdir()):
        if entry.name in own:
            continue
        target = tmp / entry.name
        if os.path.lexists(target):
            raise EdgeAIError(f"{entry} is not a file of the old bundle, and the new bundle has a file of that name; "
                              "move it out of the bundle folder and deploy again (nothing was replaced)")
        if entry.is_symlink():
            os.symlink(os.readlink(entry), target)
        elif entry.is_dir():
            shutil.copytree(entry, target, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(str(entry), str(target))
        carried.append(entry.name)
    return carried


def publish(tmp: Path, out: Path) -> list[str]:
    """Put the finished bundle at ``out``; return notes.

    A new destination is a plain rename. An existing bundle is swapped with the new one in one
    atomic step (:func:`edgeai.atomic.exchange`), so ``out`` always holds a complete bundle, old or
    new. Files in the old bundle that deploy did not write (the user's, such as the ``--data`` it
    read) are hard-linked into the new one first; afterwards only the old bundle's own files are
    deleted. Where the OS has no atomic exchange, the old bundle is renamed aside and the new one
    renamed in: a crash between the two leaves the old bundle beside ``out`` (``.NAME.old-*``).
    """
    check_destination(out)
    # Temp files are private (0600); give the bundle the modes a plainly created file gets (umask).
    probe = tmp / ".mode-probe"
    probe.touch()
    mode = probe.stat().st_mode & 0o666
    probe.unlink()
    for f in tmp.iterdir():
        f.chmod(mode)
    if not out.exists():
        try:
            os.rename(tmp, out)  # an empty folder created meanwhile is replaced; a non-empty one refuses
        except OSError as e:
            raise EdgeAIError(f"cannot put the bundle at {out}: {e.strerror or e}; nothing was written") from e
        fsync(out.parent)
        return []
    carried = _carry_user_files(out, tmp)
    own = _own_files(out)
    if exchange(tmp, out):
        old, notes = tmp, []
    else:
        old = out.parent / temp_name(out.name, f".old-{uuid.uuid4().hex[:8]}")
        os.replace(out, old)
        try:
            os.replace(tmp, out)
        except BaseException:
            os.replace(old, out)
            raise
        notes = [f"this file system has no atomic folder exchange: {out} was replaced by two renames"]
    fsync(out.parent)
    for name in [*own, *carried]:  # the old bundle's own files, and the links to what was carried over
        path = old / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    try:
        old.rmdir()
    except OSError:  # something appeared in the old bundle meanwhile: keep it, say where
        notes.append(f"files added to the old bundle while deploy ran were kept in {old}")
    return notes
