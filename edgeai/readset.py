"""The files a command reads, and the one check every output passes: it must not be one of them.

A command (a CLI call, or an API call such as ``edgeai.quantize``) runs inside a :func:`scope`.
Every reader notes what it opens (:func:`note_read`: the model, its external-data files, a
bundle's manifest and members, calibration/evaluation/labels files), and every writer asks
:func:`check_output` before it replaces a path. An output is refused when it names a file that was
read (compared by resolved path *and* by device and inode, so a symlink or a hard link to an input
is caught too), or lies inside a bundle folder that was read.

Files the command itself wrote (its temps and outputs) are not inputs: a stage may write a file
and read it back before the next stage rewrites it.

Readers also go through :func:`regular_file` / :func:`open_regular`: only regular files are read
as models, data or manifests. A named pipe would block the reader forever, a device could stream
without end; both are refused with a clear error, without opening them in blocking mode.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, ParamSpec, TypeVar

from edgeai.errors import EdgeAIError, OutputOverlapError

P = ParamSpec("P")
R = TypeVar("R")

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def kind_of(mode: int) -> str:
    """``"a named pipe (FIFO)"``, ``"a folder"``, ... for a stat mode that is not a regular file."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _resolve(path: str | os.PathLike) -> Path:
    """The absolute path with symlinks resolved as far as they exist (never raises for odd names)."""
    try:
        return Path(os.path.realpath(os.fspath(path)))
    except (OSError, ValueError):
        return Path(os.path.abspath(os.fspath(path)))


def _identity(path: str | os.PathLike) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino)


@dataclass
class ReadSet:
    """What one command has read: files (by resolved path and by inode) and bundle folders."""

    paths: dict[Path, str] = field(default_factory=dict)  # resolved path -> as the user named it
    inodes: dict[tuple[int, int], str] = field(default_factory=dict)
    trees: dict[Path, str] = field(default_factory=dict)  # bundle folders: nothing may be written inside
    tree_inodes: dict[tuple[int, int], str] = field(default_factory=dict)
    own: set[Path] = field(default_factory=set)  # written by this command: not inputs

    def add(self, path: str | os.PathLike, *, tree: bool = False) -> None:
        resolved = _resolve(path)
        if resolved in self.own:
            return
        ident = _identity(resolved)
        if tree:
            self.trees.setdefault(resolved, str(path))
            if ident:
                self.tree_inodes.setdefault(ident, str(path))
            return
        self.paths.setdefault(resolved, str(path))
        if ident:
            self.inodes.setdefault(ident, str(path))

    def overlap(self, dst: str | os.PathLike) -> str | None:
        """The input ``dst`` would overwrite (or the bundle it lies inside), or None."""
        resolved = _resolve(dst)
        if resolved in self.paths:
            return self.paths[resolved]
        ident = _identity(resolved)
        if ident and ident in self.inodes:
            return self.inodes[ident]
        for parent in resolved.parents:
            if parent in self.trees:
                return f"the bundle {self.trees[parent]}"
            pid = _identity(parent)
            if pid and pid in self.tree_inodes:
                return f"the bundle {self.tree_inodes[pid]}"
        return None


_current: contextvars.ContextVar[ReadSet | None] = contextvars.ContextVar("edgeai_readset", default=None)


@contextlib.contextmanager
def scope() -> Iterator[ReadSet]:
    """The read set of the command now running; a nested scope joins the outer one."""
    outer = _current.get()
    if outer is not None:
        yield outer
        return
    token = _current.set(ReadSet())
    try:
        yield _current.get()  # type: ignore[misc]
    finally:
        _current.reset(token)


def in_scope(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` (a public API entry such as ``edgeai.quantize``) inside a read :func:`scope`."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with scope():
            return fn(*args, **kwargs)

    return wrapper


def current() -> ReadSet | None:
    return _current.get()


def note_read(path: str | os.PathLike, *, tree: bool = False) -> None:
    """Record that the running command reads ``path`` (``tree``: a bundle folder); no-op outside a scope."""
    reads = _current.get()
    if reads is not None:
        reads.add(path, tree=tree)


def note_written(path: str | os.PathLike) -> None:
    """Record a file this command created (a temp or an output): reading it back does not make it an input."""
    reads = _current.get()
    if reads is not None:
        reads.own.add(_resolve(path))


def check_output(dst: str | os.PathLike, option: str = "-o") -> None:
    """Refuse an output path that names a file this command reads, or lies inside a bundle it reads.

    Raises:
        OutputOverlapError: ``dst`` is an input (same path, a symlink to it, or a hard link of it).
    """
    reads = _current.get()
    if reads is None:
        return
    hit = reads.overlap(dst)
    if hit is None:
        return
    if hit.startswith("the bundle "):
        raise OutputOverlapError(f"{option} {_short(dst)} lies inside {hit}, which this command reads; refusing to "
                                 "write into it (inputs are never overwritten): choose another output path")
    same = "" if _resolve(hit) == _resolve(dst) else f" ({_short(dst)} is the same file)"
    raise OutputOverlapError(f"{option} {_short(dst)}: refusing to overwrite the input {_short(hit)}{same}; inputs "
                             "are never overwritten: choose another output path")


def regular_file(path: str | os.PathLike, what: str, error: type[EdgeAIError] = EdgeAIError) -> os.stat_result:
    """``os.stat`` of ``path``, which must be a regular file (a stat never blocks, even on a FIFO).

    Raises:
        ``error``: ``path`` is missing, unreadable, or a folder, pipe, device or socket.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except (OSError, ValueError) as e:  # ENAMETOOLONG, ELOOP, EACCES, an embedded NUL byte
        raise error(f"cannot read {what} {_short(path)}: {getattr(e, 'strerror', None) or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} {path} is {kind_of(st.st_mode)}, not a regular file; give a file")
    return st


def open_regular(path: str | os.PathLike, what: str, error: type[EdgeAIError] = EdgeAIError) -> IO[bytes]:
    """Open a regular file for reading (binary) and note it as read.

    Opened with ``O_NONBLOCK``, and checked with ``fstat`` on the descriptor actually opened, so a
    path swapped for a FIFO between a check and the open cannot block the reader.
    """
    regular_file(path, what, error)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{what} {path} is {kind_of(st.st_mode)}, not a regular file; give a file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    note_read(path)
    return f


def read_regular(path: str | os.PathLike, what: str, error: type[EdgeAIError] = EdgeAIError, *,
                 max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file (noted as read); refused over ``max_bytes`` before reading."""
    with open_regular(path, what, error) as f:
        size = os.fstat(f.fileno()).st_size
        if max_bytes is not None and size > max_bytes:
            raise error(f"{what} {path} is {size} bytes; at most {max_bytes} are read: is it the right file?")
        return f.read()


def _short(path: str | os.PathLike) -> str:
    text = repr(os.fspath(path)) if "\0" in os.fspath(path) else os.fspath(path)
    return text if len(text) <= 120 else text[:100] + f"... ({len(text)} characters)"
