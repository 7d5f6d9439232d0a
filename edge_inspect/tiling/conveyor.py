"""The foreground level that follows the conveyor.

A fixed `foreground_level` must lie between the brightest conveyor and the darkest wood of every
board a line will ever see; dark wood on a dark belt leaves a few grey levels for that, and a fixed
level set for one belt cuts dark boards on another (issue 14). With `conveyor_margin` set, the
level is measured instead: every `min_gap_lines` lines of gap (lines below the exit share) give
the 99.9th percentile of their grey; the level is the lowest of the last few such values plus
the margin, never above the configured `foreground_level`. The lowest, because a dark
board taken for a gap (it is below the level until the level is right) only ever raises a gap's
value. A new level applies from the strip that measured it onward (that whole strip).

A level gone too low (the lamp off over a few gaps, then back) makes the conveyor board: no gap
is seen any more, so nothing would ever correct it. The tiler then meets material
longer than `max_board_lines` and calls `reset`: back to the configured level, with a warning.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import structlog

_log = structlog.get_logger(__name__)

GAPS_KEPT = 9            # the level rests on the lowest of this many recent measurements
PERCENTILE = 0.999


class ConveyorLevel:
    """Measures gaps across strips (a gap may span several) and keeps the level they imply."""

    def __init__(self, ceiling: int, margin: int, min_gap_lines: int, exit_count: float, channels: int) -> None:
        self.level = ceiling
        self.conveyor: float | None = None  # the conveyor's p99.9 grey the level rests on
        self._ceiling = ceiling
        self._margin = margin
        self._min_gap = min_gap_lines
        self._exit = exit_count
        self._channels = channels
        self._recent: deque[float] = deque(maxlen=GAPS_KEPT)
        self._hist = np.zeros(255 * channels + 1, np.int64)  # channel sums of the measurement's lines
        self._run = 0  # gap lines in the measurement being gathered

    def observe(self, lines: np.ndarray, counts: np.ndarray) -> None:
        """One strip: its pixels and per-line foreground counts at the current level."""
        low = counts < self._exit
        edges = np.flatnonzero(np.diff(low.view(np.int8), prepend=np.int8(low[0]), append=np.int8(not low[-1])))
        a = 0
        for b in edges.tolist():
            if low[a]:
                self._add(lines[a:b])
            else:
                self._hist[:] = 0  # a gap shorter than min_gap_lines ended: not measured
                self._run = 0
            a = b

    def _add(self, run: np.ndarray) -> None:
        """Every min_gap_lines of gap is one measurement, so a dark board that follows the first
        lines of conveyor (and is below the level until the level is right) cannot hide them."""
        while run.shape[0]:
            take, run = run[: self._min_gap - self._run], run[self._min_gap - self._run:]
            total = take[..., 0].astype(np.uint16)
            for k in range(1, self._channels):
                total += take[..., k]
            self._hist += np.bincount(total.ravel(), minlength=self._hist.shape[0])
            self._run += take.shape[0]
            if self._run == self._min_gap:
                self._measured()

    def reset(self) -> None:
        """Back to the configured level: see the module docstring."""
        if self.conveyor is not None:
            _log.warning("no gap within max_board_lines; foreground level back to the configured one",
                         foreground_level=self._ceiling, previous=self.level)
        self.level, self.conveyor = self._ceiling, None
        self._recent.clear()

    def _measured(self) -> None:
        cum = np.cumsum(self._hist)
        self._recent.append(int(np.searchsorted(cum, PERCENTILE * cum[-1])) / self._channels)
        self._hist[:] = 0
        self._run = 0
        conveyor = min(self._recent)
        level = min(self._ceiling, int(np.ceil(conveyor)) + self._margin)
        if level != self.level and (self.conveyor is None or abs(level - self.level) >= 2):
            _log.info("foreground level follows the conveyor", conveyor_p999=round(conveyor, 1),
                      foreground_level=level, previous=self.level, ceiling=self._ceiling)
        self.level, self.conveyor = level, conveyor
