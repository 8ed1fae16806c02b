"""Every file edgeai writes goes through here: a temp file in the target folder, then a rename.

A crash (or Ctrl-C, or SIGKILL) leaves either the previous file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Protobuf cannot serialize a single message over 2 GiB; larger models keep weights beside them.
ONNX_PROTOBUF_LIMIT = 2**31 - 1


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(dst: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path in ``dst``'s folder; on success rename it over ``dst``, else delete it."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=suffix or dst.suffix or ".tmp", dir=dst.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes 0600 files; give the result the mode a plain open() would
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, dst)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_bytes(dst: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(dst) as tmp:
        tmp.write_bytes(data)
    return Path(dst)


def write_text(dst: str | os.PathLike, text: str) -> Path:
    return write_bytes(dst, text.encode())


def _over_protobuf_limit(model: Any) -> bool:
    try:
        return model.ByteSize() >= ONNX_PROTOBUF_LIMIT
    except Exception:  # protobuf's upb backend refuses even to size a message over 2 GiB (EncodeError)
        return True


def save_onnx(model: Any, dst: str | os.PathLike) -> Path:
    """Save an ``onnx.ModelProto`` atomically; models over 2 GB keep weights in ``<name>.data``.

    The external-data file is written first under a temp name and renamed before the model, so a
    model file on disk never points at a missing or half-written data file.
    """
    import onnx

    dst = Path(dst)
    data_name = dst.name + ".data"
    if not _over_protobuf_limit(model):
        with atomic_path(dst) as tmp:
            onnx.save_model(model, str(tmp))
        return dst
    # External data: onnx writes the data file next to the temp model under `location`.
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=f".{dst.name}.") as staging:
        staged = Path(staging) / dst.name
        onnx.save_model(model, str(staged), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name, size_threshold=1024)
        os.replace(Path(staging) / data_name, dst.parent / data_name)
        os.replace(staged, dst)
    return dst


def copy_onnx_file(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Load (with external data) and re-save atomically; used where a library writes in place."""
    import onnx

    return save_onnx(onnx.load(str(src)), dst)
