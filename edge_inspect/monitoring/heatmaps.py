"""Overlay PNGs for rejected boards: the board downscaled (the pipeline keeps every
scale-th line and column of each strip, see pipeline._Thumbnails) with each tile's score as a
heat colour blended over it, the threshold's colour at the middle of the scale. Written by a
writer thread (PNG encoding never delays verdicts) into one folder within a disk budget: the
oldest files are removed first."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import cv2
import numpy as np
import structlog

from edge_inspect.atomic import write_atomic
from edge_inspect.decision.verdict import Verdict

log = structlog.get_logger(__name__)


def render_overlay(image: np.ndarray, scale: int, v: Verdict, threshold: float, tile_size: int,
                   alpha: float = 0.45) -> np.ndarray:
    """BGR uint8 overlay: every tile's area gets its score's colour (score/threshold mapped so
    the threshold sits at the middle of the JET scale, red = 2x threshold), blended over the
    board. Overlapping tiles keep the highest score; tiles over the threshold are outlined."""
    h, w = image.shape[:2]
    base = cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR) if image.shape[2] == 1 else image[:, :, ::-1].copy()
    heat = np.full((h, w), -1.0, np.float32)
    t = max(1, tile_size // scale)
    thr = threshold if threshold > 0 else 1.0
    for m, s in zip(v.tile_metas, v.tile_scores):
        y, x = m.y // scale, m.x // scale
        region = heat[y:y + t, x:x + t]
        np.maximum(region, float(s) / thr, out=region)
    covered = heat >= 0
    level = np.clip(heat * 127.5, 0, 255).astype(np.uint8)
    colour = cv2.applyColorMap(level, cv2.COLORMAP_JET)
    out = base.copy()
    blend = cv2.addWeighted(base, 1 - alpha, colour, alpha, 0)
    out[covered] = blend[covered]
    for m, s in zip(v.tile_metas, v.tile_scores):
        if s > threshold:
            y, x = m.y // scale, m.x // scale
            cv2.rectangle(out, (x, y), (min(w - 1, x + t - 1), min(h - 1, y + t - 1)), (255, 255, 255), 1)
    return out


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
        self._files: list[tuple[str, int]] = sorted(
            ((p.name, p.stat().st_size) for p in folder.glob("*.png")), key=lambda f: f[0])
        self._bytes = sum(s for _, s in self._files)
        self._thread = threading.Thread(target=self._run, name="ei-heatmaps", daemon=True)
        self._thread.start()

    def submit(self, v: Verdict, image: np.ndarray, scale: int, threshold: float) -> None:
        try:
            self._q.put_nowait((v, image, scale, threshold))
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
            v, image, scale, threshold = item
            try:
                self._write(v, image, scale, threshold)
            except Exception as exc:  # a full disk must not take the service down
                log.error("heatmap_failed", board_id=v.board_id, error=f"{type(exc).__name__}: {exc}")

    def _write(self, v: Verdict, image: np.ndarray, scale: int, threshold: float) -> None:
        png = render_overlay(image, scale, v, threshold, self.tile_size)
        ok, data = cv2.imencode(".png", png)
        if not ok:
            raise RuntimeError("PNG encoding failed")
        # Names sort by time of writing: t_verdict_ns is monotonic within a boot, board id breaks ties.
        name = f"{v.t_verdict_ns:020d}_board{v.board_id:08d}.png"
        write_atomic(self.folder / name, data.tobytes())
        self._files.append((name, len(data)))
        self._bytes += len(data)
        self.written += 1
        while self._bytes > self.max_bytes and len(self._files) > 1:
            old, size = self._files.pop(0)
            (self.folder / old).unlink(missing_ok=True)
            self._bytes -= size
            self.removed += 1
