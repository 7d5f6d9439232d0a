"""Board segmenter: finds where boards begin and end in the line stream (image mode).

Works on per-line foreground pixel counts, one strip at a time, with hysteresis: a board starts
at the first line whose foreground reaches `enter_fraction` of the camera width and ends at the
first line of a run of at least `min_gap_lines` lines that are (nearly) all conveyor: their
foreground is below `exit_fraction` of the width (default 5 %). Dark wood, a dark knot or a
stain across most of a board leaves board pixels brighter than the conveyor in its lines, so it
does not end the board; a real gap does. Each line is judged on its own, so the result does not
depend on how the stream is cut into strips. Runs and start candidates are found with numpy on
the whole strip; Python only loops over the transitions found.

The segmenter emits `SegEvent`s in line order:
  start(line, incomplete)  a candidate segment begins (the tiler starts keeping its lines)
  confirm(line)            it is known to be a board (>= min_board_lines, or exempt)
  end(line, reason)        the board ends, `line` exclusive
  end(line, "fragment")    the candidate ended shorter than min_board_lines: a piece of material
                           that is not a board of its own, recorded (and rejected) all the same
and keeps `settled`: every line before it is known to belong to the open segment, so tile rows
and column counts up to it can be taken without waiting for the board end.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import NamedTuple

import numpy as np
import structlog

from edge_inspect.config import SegmenterConfig

_log = structlog.get_logger(__name__)

START = "start"
CONFIRM = "confirm"
END = "end"


class SegEvent(NamedTuple):
    kind: str
    line: int
    reason: str = ""
    incomplete: bool = False


def foreground_mask(lines: np.ndarray, level: int) -> np.ndarray:
    """bool [n, W]: grey > level, grey being the channel mean (integer-exact: sum > level * C)."""
    c = lines.shape[2]
    if c == 1:
        return lines[:, :, 0] > level
    # Channel-by-channel adds: a reduction over a short last axis is ~10x slower in numpy.
    total = lines[:, :, 0].astype(np.uint16)
    for k in range(1, c):
        total += lines[:, :, k]
    return total > level * c


def line_counts(mask: np.ndarray) -> np.ndarray:
    """Foreground pixels per line (faster than np.count_nonzero along an axis)."""
    return mask.view(np.uint8).sum(axis=1, dtype=np.int32)


def column_counts(mask: np.ndarray) -> np.ndarray:
    """Foreground lines per column."""
    return mask.view(np.uint8).sum(axis=0, dtype=np.int32)


class BoardSegmenter:
    """Hysteresis segmentation of the line stream into boards; see the module docstring."""

    def __init__(self, cfg: SegmenterConfig, width: int) -> None:
        self._enter = cfg.enter_fraction * width
        self._exit = cfg.exit_fraction * width
        self._min_gap = cfg.min_gap_lines
        self._min_len = cfg.min_board_lines
        self._max_len = cfg.max_board_lines
        self.fragments = 0
        self._end = 0  # one past the last line fed
        self.reset(after_gap=True)  # a board in view at the first line: its start was not seen

    def reset(self, after_gap: bool = False) -> None:
        """Forget the open segment. With `after_gap`, the next strip's first line, if it is not a
        gap line, starts an incomplete board at once: its real start was lost."""
        self._open = False
        self._start = 0
        self._confirmed = False
        self._run: int | None = None  # start of the trailing below-exit run, if any
        self.settled = 0
        self._after_gap = after_gap

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def start(self) -> int:
        return self._start

    def feed(self, counts: np.ndarray, first_line: int) -> list[SegEvent]:
        """Segment the next strip, given its per-line foreground pixel counts."""
        n = counts.shape[0]
        end = first_line + n
        self._end = end
        events: list[SegEvent] = []
        if n == 0:
            return events
        low = counts < self._exit
        high_lines = np.flatnonzero(counts >= self._enter) + first_line
        edges = np.flatnonzero(np.diff(low.view(np.int8), prepend=0, append=0)) + first_line
        starts = edges[0::2].tolist()
        ends = edges[1::2].tolist()
        if self._open and self._run is not None and starts and starts[0] == first_line:
            starts[0] = self._run  # the run carried over from the previous strip continues
        completed = [(a, b) for a, b in zip(starts, ends) if b - a >= self._min_gap]
        comp_starts = [a for a, _ in completed]
        trailing = starts[-1] if starts and ends[-1] == end else None

        pos = first_line
        if self._after_gap:
            self._after_gap = False
            if not low[0]:
                self._begin(first_line, True, events)
                self._confirm(events)
        while True:
            if not self._open:
                j = int(np.searchsorted(high_lines, pos))
                if j == high_lines.shape[0]:
                    break
                self._begin(int(high_lines[j]), False, events)
            k = bisect_left(comp_starts, self._start)
            if k < len(comp_starts):
                gap_start, gap_end = completed[k]
                self._finish(gap_start, "gap", events)
                pos = gap_end
                continue
            horizon = trailing if trailing is not None and trailing >= self._start else end
            self._split_until(horizon, events)
            if not self._confirmed and horizon - self._start >= self._min_len:
                self._confirm(events)
            self._run = trailing if horizon != end else None
            self.settled = min(horizon, self._start + self._max_len)
            break
        return events

    def restart_at(self, line: int) -> list[SegEvent]:
        """The open board ended at `line` (a seam: touching boards, told apart by the tiler) and
        the next one, already known to be board, begins there."""
        events: list[SegEvent] = []
        self._begin(line, False, events)
        self._confirm(events)
        self.settled = max(self.settled, line)
        return events

    def close(self, reason: str) -> list[SegEvent]:
        """End the stream (reason "end_of_stream"), its received part ("lines_lost"), or a stream
        stopped while material kept coming ("stopped").

        end_of_stream behaves like a gap after the last line (a short trailing run below exit is
        not board; a short piece is a fragment). lines_lost and stopped close at the last received
        line: a board whose end was not seen must reach the decision stage as incomplete."""
        events: list[SegEvent] = []
        if self._open:
            stop = self._end
            if reason == "end_of_stream" and self._run is not None:
                stop = self._run
            self._finish(stop, reason, events, keep_short=reason != "end_of_stream")
        self.reset()
        return events

    # -- internals -------------------------------------------------------------------------

    def _begin(self, line: int, incomplete: bool, events: list[SegEvent]) -> None:
        self._open = True
        self._start = line
        self._confirmed = False
        self._run = None
        self.settled = line
        events.append(SegEvent(START, line, "", incomplete))

    def _confirm(self, events: list[SegEvent]) -> None:
        self._confirmed = True
        events.append(SegEvent(CONFIRM, self._start))

    def _split_until(self, horizon: int, events: list[SegEvent]) -> None:
        """Close max-length boards while the segment is known to run past max_board_lines. A
        continuation is confirmed at once: it is the rest of known material, never debris."""
        while horizon - self._start > self._max_len:
            if not self._confirmed:
                self._confirm(events)
            cut = self._start + self._max_len
            events.append(SegEvent(END, cut, "max_length"))
            self._begin(cut, False, events)
            self._confirm(events)

    def _finish(self, stop: int, reason: str, events: list[SegEvent], keep_short: bool = False) -> None:
        self._split_until(stop, events)
        length = stop - self._start
        if not (self._confirmed or keep_short or length >= self._min_len):
            self.fragments += 1
            _log.warning("fragment", start_line=self._start, lines=length, min_board_lines=self._min_len,
                         action="recorded and rejected as a fragment")
            reason = "fragment"
        if not self._confirmed:
            self._confirm(events)
        events.append(SegEvent(END, stop, reason))
        self._open = False
        self._run = None

