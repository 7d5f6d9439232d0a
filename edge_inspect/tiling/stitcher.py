"""Band stitcher: keeps the lines of the board being cut contiguous across frame borders.

A board spans many camera frames, but a tile must see its T lines as one array. The band is a
preallocated line buffer; each strip is copied into it once, and released lines only move a head
index. Kept lines are moved to the front (or the buffer doubled) only when a strip no longer fits
at the tail, so the extra copying is amortised and small compared with the one copy per strip.
"""

from __future__ import annotations

import numpy as np


class BandStitcher:
    """A contiguous run of camera lines `[start_line, end_line)` in a uint8 [capacity, W, C] buffer.

    Views handed out (tile sources) stay valid until the next `append`: releasing lines never
    touches the data, and `append(..., keep_views=True)` allocates a fresh buffer rather than
    compacting over lines that may still be referenced."""

    def __init__(self, width: int, channels: int, capacity: int) -> None:
        self._width = width
        self._channels = channels
        self._buf = np.empty((max(capacity, 1), width, channels), np.uint8)
        self._head = 0  # buffer index of start_line
        self._tail = 0  # buffer index one past the last line
        self._head_line = 0
        # Bumped whenever the buffer object is replaced, so cached strided views can be rebuilt.
        self.generation = 0

    @property
    def buffer(self) -> np.ndarray:
        return self._buf

    @property
    def capacity(self) -> int:
        return self._buf.shape[0]

    @property
    def start_line(self) -> int:
        return self._head_line

    @property
    def end_line(self) -> int:
        return self._head_line + (self._tail - self._head)

    def __len__(self) -> int:
        return self._tail - self._head

    def index(self, line: int) -> int:
        """Buffer row of an absolute line that is in the band."""
        return self._head + (line - self._head_line)

    def lines(self, first: int, stop: int) -> np.ndarray:
        """View of absolute lines [first, stop); they must be in the band."""
        if first < self._head_line or stop > self.end_line or stop < first:
            raise IndexError(
                f"lines [{first}, {stop}) not in band [{self._head_line}, {self.end_line})"
            )
        a = self.index(first)
        return self._buf[a : a + (stop - first)]

    def release_before(self, line: int) -> None:
        """Forget lines before `line` (clamped to the band); no data moves."""
        line = min(max(line, self._head_line), self.end_line)
        self._head += line - self._head_line
        self._head_line = line

    def reset(self, next_line: int) -> None:
        """Drop every line (e.g. after a gap in the line counter); the next append starts at
        `next_line`. Data is left in place so views from the current push stay readable."""
        self._head = self._tail
        self._head_line = next_line

    def append(self, lines: np.ndarray, first_line: int, keep_views: bool = False) -> None:
        """Copy a strip in at the tail. `first_line` must continue the band unless it is empty."""
        if self._tail == self._head:
            self._head_line = first_line
        elif first_line != self.end_line:
            raise ValueError(f"strip starts at line {first_line}, band ends at {self.end_line}")
        k = lines.shape[0]
        if self._tail + k > self.capacity:
            self._make_room(k, keep_views)
        self._buf[self._tail : self._tail + k] = lines
        self._tail += k

    def _make_room(self, k: int, keep_views: bool) -> None:
        kept = self._tail - self._head
        need = kept + k
        cap = self.capacity
        if not keep_views and need <= cap // 2:
            # Compact: at least cap/2 lines were appended since the last move, and at most cap/2
            # move now, so this costs at most one extra copy per line, usually far less.
            self._buf[:kept] = self._buf[self._head : self._tail]
        else:
            new_cap = cap if (keep_views and need <= cap // 2) else max(2 * cap, 2 * need)
            buf = np.empty((new_cap, self._width, self._channels), np.uint8)
            buf[:kept] = self._buf[self._head : self._tail]
            self._buf = buf
            self.generation += 1
        self._head = 0
        self._tail = kept
