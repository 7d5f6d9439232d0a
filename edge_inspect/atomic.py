"""Writing a file so that a reader (or a power cut) sees the old file or the new one, never half
of one: write a hidden temp file beside it (`.NAME.tmp`), fsync it, rename it over the target,
fsync the folder so the rename itself is durable. The one helper every atomic write uses."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO


def temp_path(path: Path) -> Path:
    """The temp file an atomic write of `path` uses (readers of a folder skip such names)."""
    return path.with_name(f".{path.name}.tmp")


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems (e.g. certain network mounts) refuse fsync on a folder
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yields the temp path to write `path` through (for writers that want a file name, such as
    an exporter or a zip archive). On success the temp file is fsynced and renamed over `path`;
    on any error it is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_atomic(path: Path, data: bytes | str | Callable[[BinaryIO], None]) -> None:
    """Replace `path` with `data`: bytes, text (UTF-8), or a function that writes to the open
    binary file (e.g. `lambda f: np.savez(f, **arrays)`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        if callable(data):
            data(f)
        else:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
