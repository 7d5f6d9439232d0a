"""Board pixels for heatmaps, kept cheaply while the tiling stage runs."""

from __future__ import annotations

import numpy as np


class BoardThumbnails:
    """Every `scale`-th line and column of each strip goes into a ring of downscaled lines
    indexed by the camera line counter (one strided copy per strip, 1/scale^2 of its bytes).
    When a board ends, its rows are cut out and travel to the decision stage as a BoardImage;
    lost lines read as black."""

    def __init__(self, width: int, channels: int, scale: int, max_lines: int) -> None:
        self.scale = scale
        self._rows = max_lines // scale + 2
        self._buf = np.zeros((self._rows, -(-width // scale), channels), np.uint8)
        self._row_id = np.full(self._rows, -1, np.int64)

    def add(self, lines: np.ndarray, first_line: int) -> None:
        s = self.scale
        off = (-first_line) % s
        sub = lines[off::s, ::s]
        if not len(sub):
            return
        r0 = (first_line + off) // s
        ids = np.arange(r0, r0 + len(sub))
        idx = ids % self._rows
        self._buf[idx] = sub
        self._row_id[idx] = ids

    def board(self, start_line: int, end_line: int) -> np.ndarray:
        s = self.scale
        ids = np.arange(-(-start_line // s), -(-end_line // s))[-self._rows:]
        idx = ids % self._rows
        out = self._buf[idx]
        out[self._row_id[idx] != ids] = 0
        return out
