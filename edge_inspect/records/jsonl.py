"""Board records as JSON lines: each record is one `os.write` of a whole line, then fsync, so a
crash loses nothing already decided, and a failed write (full disk, I/O error) leaves at most a
partial last line, which is cut off when the file is opened again."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import structlog

from edge_inspect.decision.verdict import Verdict
from edge_inspect.records.keeper import is_disk_failure

log = structlog.get_logger(__name__)

_TAIL = 1 << 16  # a record is a few hundred bytes; a partial line is shorter than this


def record_line(v: Verdict) -> bytes:
    return (json.dumps(v.to_record(), separators=(",", ":")) + "\n").encode()


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
    """Appends records to `path`. With `max_bytes`, a file that reaches it is renamed to
    `<stem>-<UTC time>.jsonl` and a new one begun; rotated files older than `retention_days`
    are then deleted, so a service that runs for years does not fill its disk."""

    def __init__(self, path: Path, max_bytes: int | None = None, retention_days: float | None = None) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.retention_days = retention_days
        self.rotations = 0
        self._fd: int | None = None
        self._size = 0
        try:
            self._open()
        except OSError as exc:
            if not is_disk_failure(exc):
                raise  # a path that cannot work (a file where the folder should be): the caller says so
            log.error("records_store_unavailable", path=str(path), error=str(exc),
                      action="records wait in memory; the file is opened again at each write")

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        cut = cut_partial_line(self.path)
        if cut:
            log.warning("records_partial_line_removed", path=str(self.path), bytes=cut)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size

    def write(self, v: Verdict) -> None:
        """Raises OSError when the line could not be written whole; the next write reopens."""
        if self._fd is None:
            self._open()
        line = record_line(v)
        data = memoryview(line)
        try:
            while data:
                data = data[os.write(self._fd, data):]
            os.fsync(self._fd)
        except OSError:
            os.close(self._fd)
            self._fd = None
            raise
        self._size += len(line)
        if self.max_bytes is not None and self._size >= self.max_bytes:
            try:
                self._rotate()
            except OSError as exc:  # the record is written; rotation is tried again after the next one
                log.warning("records_rotate_failed", path=str(self.path), error=str(exc))

    def rotated_files(self) -> list[Path]:
        """Rotated files, oldest first (their names sort by time)."""
        return sorted(self.path.parent.glob(f"{self.path.stem}-*{self.path.suffix}"))

    def _rotate(self) -> None:
        os.close(self._fd)
        self._fd = None
        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
        target = self.path.with_name(f"{self.path.stem}-{stamp}{self.path.suffix}")
        os.rename(self.path, target)
        self.rotations += 1
        removed = 0
        if self.retention_days is not None:
            for old in self.rotated_files():
                if old.stat().st_mtime < now - self.retention_days * 86400:
                    old.unlink()
                    removed += 1
        log.info("records_rotated", path=str(self.path), to=target.name, bytes=self._size, removed_old=removed)
        self._open()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
