"""`run`'s heatmap PNGs of rejected boards (drawn by `board_view.render_board` over the board
image the tiling stage keeps, see `thumbnails.py`), named by board id and wall-clock time.
Written by a writer thread (PNG encoding never delays verdicts) into one folder within a disk
budget: the oldest files are removed first. Board ids start again at 1 with every service
start, so "oldest" is by the time a file was written, not by its name."""

from __future__ import annotations

import queue
import threading
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import structlog

from edge_inspect.atomic import write_atomic
from edge_inspect.decision.verdict import Verdict
from edge_inspect.monitoring.board_view import (
    BoardPicture,
    heatmap_name,
    encoded,
    render_board,
)

log = structlog.get_logger(__name__)


class HeatmapWriter:
    """Bounded queue + one thread; budget enforced after each write (oldest first)."""

    def __init__(self, folder: Path, max_bytes: int, tile_size: int, queue_size: int = 32) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.max_bytes = max_bytes
        self.tile_size = tile_size
        self.written = 0
        self.skipped = 0
        self.removed = 0
        self._q: queue.Queue = queue.Queue(maxsize=queue_size)
        found = sorted((p.stat().st_mtime_ns, p.name, p.stat().st_size) for p in folder.glob("*.png"))
        self._files: list[tuple[str, int]] = [(name, size) for _, name, size in found]
        self._bytes = sum(s for _, s in self._files)
        self._thread = threading.Thread(target=self._run, name="ei-heatmaps", daemon=True)
        self._thread.start()

    def submit(self, v: Verdict, image: np.ndarray, scale: int, threshold: float, source: str = "") -> None:
        """Queue a board's heatmap; the file is named by the time of this call (the verdict's)."""
        item = (BoardPicture.from_verdict(v, threshold, self.tile_size, source), image, scale,
                datetime.now(timezone.utc))
        try:
            self._q.put_nowait(item)
        except queue.Full:
            self.skipped += 1
            log.warning("heatmap_skipped", board_id=v.board_id, why="writer queue full", skipped=self.skipped)

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(10)

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            pic, image, scale, when = item
            try:
                self._write(pic, image, scale, when)
            except Exception as exc:  # a full disk must not take the service down
                log.error("heatmap_failed", board_id=pic.board_id, error=f"{type(exc).__name__}: {exc}")

    def _write(self, pic: BoardPicture, image: np.ndarray, scale: int, when: datetime) -> None:
        data = encoded(render_board(pic, image, scale))
        name = heatmap_name(pic.board_id, when)
        write_atomic(self.folder / name, data)
        self._files.append((name, len(data)))
        self._bytes += len(data)
        self.written += 1
        while self._bytes > self.max_bytes and len(self._files) > 1:
            old, size = self._files.pop(0)
            (self.folder / old).unlink(missing_ok=True)
            self._bytes -= size
            self.removed += 1
