"""Every file edgeai writes goes through here: a temp file in the target folder, then a rename.

A crash (or Ctrl-C, or SIGKILL) leaves either the previous file or the new one, never half of one.
The temp file is flushed to disk (fsync) before the rename, so a power cut cannot leave an empty
file under the final name either.

Temp names start with a dot (``.NAME.<random>.<suffix>``): a process killed mid-write leaves one
behind, which edgeai never reads (it only opens paths it is given, and skips dot-files when it lists
a folder) and never deletes on its own (another process may be writing it right now). Such files
are safe to delete once no edgeai process is writing into that folder.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from edgeai.errors import EdgeAIError, WriteError
from edgeai.readset import check_output, note_written

NAME_MAX = 255  # bytes in one file name on Linux, macOS and Windows file systems


def temp_name(name: str, tag: str) -> str:
    """``.NAME<tag>``, with NAME shortened (at a character boundary) so the whole stays within
    NAME_MAX bytes: a valid 250-byte output name must not fail because its temp name is longer."""
    room = NAME_MAX - 1 - len(tag.encode("utf-8", "surrogatepass"))
    raw = name.encode("utf-8", "surrogatepass")
    if len(raw) > room:
        name = raw[:room - 1].decode("utf-8", "ignore") + "~"
    return f".{name}{tag}"


# Failures of the write itself (whoever was writing): reported in one line, not as a traceback.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


def _create_temp(dst: Path, suffix: str) -> Path:
    """Create an empty temp file beside ``dst`` with the mode a plain ``open(dst, 'w')`` would give.

    ``tempfile.mkstemp`` creates 0600 files, so every model used to land unreadable for other
    users (a service account, a web server); here the umask applies, or ``dst``'s own mode when
    it is being replaced.
    """
    for _ in range(100):
        tmp = dst.parent / temp_name(dst.name, f".{secrets.token_hex(4)}{suffix[:16]}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        note_written(tmp)
        with contextlib.suppress(OSError):
            os.chmod(tmp, stat.S_IMODE(os.stat(dst).st_mode))
        return tmp
    raise FileExistsError(errno.EEXIST, "no free temp name", str(dst))


def fsync(path: Path) -> None:
    """Flush a file, or a folder's entries, to disk; a no-op where the OS cannot open folders."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except (PermissionError, IsADirectoryError):  # Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EBADF):  # file systems without fsync on folders
            raise
    finally:
        os.close(fd)


def check_destination(dst: str | os.PathLike, *, kind: str = "file") -> None:
    """Refuse, before any work, a destination that cannot be written: a folder where a file is
    wanted (``kind="file"``), a file where a folder is (``"folder"``), a path under a regular file,
    or a name the file system refuses (too long). ``kind="any"`` checks only the last two.

    Raises:
        EdgeAIError / WriteError: what is wrong with ``dst``; nothing was written.
    """
    dst = Path(dst)
    try:
        if kind == "file" and dst.is_dir():
            raise EdgeAIError(f"cannot write {dst}: it is a folder; give a file path")
        if kind == "folder" and dst.exists() and not dst.is_dir():
            raise EdgeAIError(f"cannot write {dst}: it is a file; the output is a folder")
        parent = next((p for p in dst.parents if p.exists()), None)
    except OSError as e:  # ENAMETOOLONG, ELOOP, EACCES on a parent
        raise WriteError(dst, e) from e
    if parent is not None and not parent.is_dir():
        raise EdgeAIError(f"cannot write {dst}: {parent} is a file, not a folder")


@contextlib.contextmanager
def atomic_path(dst: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path in ``dst``'s folder; on success rename it over ``dst``, else delete it.

    Raises:
        OutputOverlapError: ``dst`` is one of the running command's inputs (see :mod:`edgeai.readset`).
        EdgeAIError: ``dst`` is a folder, or cannot be written (no such folder and none can be
            made, permissions, a full disk or a file-size limit); ``dst`` is then left as it was.
    """
    dst = Path(dst)
    check_output(dst)
    check_destination(dst)
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = _create_temp(dst, suffix or dst.suffix or ".tmp")
    except OSError as e:
        raise WriteError(dst, e) from e
    try:
        yield tmp_path
        fsync(tmp_path)
        check_output(dst)  # an input may have been read since the write began
        try:
            os.replace(tmp_path, dst)
        except OSError as e:
            raise WriteError(dst, e) from e
        note_written(dst)
        fsync(dst.parent)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if isinstance(e, OSError) and e.errno in _WRITE_ERRNOS:
            raise WriteError(dst, e) from e
        if isinstance(e, WriteError) and e.dst == tmp_path:  # a nested atomic write into our temp
            raise WriteError(dst, e.cause) from e.cause
        raise


def write_bytes(dst: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(dst) as tmp:
        tmp.write_bytes(data)
    return Path(dst)


def write_text(dst: str | os.PathLike, text: str) -> Path:
    return write_bytes(dst, text.encode())


# --- swapping folders -----------------------------------------------------------------------------

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2  # Linux <linux/fs.h>
_RENAME_SWAP = 2  # macOS <stdio.h>, for renamex_np


def exchange(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Swap two existing paths in one atomic step; False where this OS or file system cannot.

    Linux: ``renameat2(..., RENAME_EXCHANGE)`` (3.15+, glibc 2.28+; ext4, xfs, btrfs, tmpfs...);
    macOS: ``renamex_np(..., RENAME_SWAP)``. At every instant each path names a complete folder,
    the old one or the new one: there is no moment where ``b`` is missing.

    Raises:
        OSError: the OS has the call and it failed for another reason (permissions, a missing path).
    """
    import ctypes
    import sys

    if sys.platform.startswith("linux"):
        name, args = "renameat2", lambda x, y: (_AT_FDCWD, x, _AT_FDCWD, y, _RENAME_EXCHANGE)
    elif sys.platform == "darwin":
        name, args = "renamex_np", lambda x, y: (x, y, _RENAME_SWAP)
    else:
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = getattr(libc, name)
    except (OSError, AttributeError):  # an old libc (musl before 1.2.x, glibc before 2.28)
        return False
    fn.restype = ctypes.c_int
    if fn(*args(os.fsencode(a), os.fsencode(b))) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):  # the file system cannot
        return False
    raise OSError(err, os.strerror(err), os.fspath(b))
