"""Board records as JSON lines: each record is one `os.write` of a whole line, then fsync, so a
crash loses nothing already decided, and a failed write (full disk, I/O error) leaves at most a
partial last line, which is cut off when the file is opened again."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import structlog

from edge_inspect.decision.aggregator import Verdict

log = structlog.get_logger(__name__)

_TAIL = 1 << 16  # a record is a few hundred bytes; a partial line is shorter than this


def _clean(value: float) -> float | None:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def record_dict(v: Verdict) -> dict:
    """The record as JSON-safe values (a non-finite score becomes null)."""
    rec = v.to_record()
    rec["score"] = _clean(rec["score"])
    return rec


def record_line(v: Verdict) -> bytes:
    return (json.dumps(record_dict(v), separators=(",", ":")) + "\n").encode()


def cut_partial_line(path: Path) -> int:
    """Truncates a regular file after its last newline; returns the bytes removed."""
    if not path.is_file():
        return 0  # nothing yet, or a device
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        start = f.seek(max(0, size - _TAIL))
        tail = f.read()
        if not tail or tail.endswith(b"\n"):
            return 0
        keep = start + tail.rfind(b"\n") + 1  # rfind gives -1 without a newline: keep = start
        f.truncate(keep)
        return size - keep


class JsonlRecords:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd: int | None = None
        self._open()

    def _open(self) -> None:
        cut = cut_partial_line(self.path)
        if cut:
            log.warning("records_partial_line_removed", path=str(self.path), bytes=cut)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, v: Verdict) -> None:
        """Raises OSError when the line could not be written whole; the next write reopens."""
        if self._fd is None:
            self._open()
        data = memoryview(record_line(v))
        try:
            while data:
                data = data[os.write(self._fd, data):]
            os.fsync(self._fd)
        except OSError:
            os.close(self._fd)
            self._fd = None
            raise

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
