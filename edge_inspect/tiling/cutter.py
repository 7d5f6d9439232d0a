"""Tile cutter: the tile grid of a board, cut row by row as soon as a row's lines are in the band.

Positions along an axis of length L are 0, S, 2S, ... while a tile fits, plus one last tile
aligned to L - T when the grid does not already end there, so every pixel is covered and no
tile reaches past the board. Columns span the full camera width; rows are relative to the
board's first line.

Copying is done per tile row: a read-only strided view presents the grid columns of a row as
one [n_cols, T, T, C] array, so one numpy assignment copies the whole row (plus one slice copy
for the aligned last column). Nothing is copied until the consumer calls `write_into`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import as_strided

from edge_inspect.tiling.events import TileMeta, TilesCut
from edge_inspect.tiling.stitcher import BandStitcher


def grid_positions(length: int, tile: int, stride: int) -> list[int]:
    """Tile offsets along one axis. For 0 < length < tile there is one (padded) tile at 0."""
    if length <= 0:
        return []
    if length <= tile:
        return [0]
    pos = list(range(0, length - tile + 1, stride))
    if pos[-1] != length - tile:
        pos.append(length - tile)
    return pos


# One tile row to copy: the strided view of its grid columns [n_grid, T, T, C] and the aligned
# last column [T, T, C] (None when the grid already ends at W - T).
RowSource = tuple[np.ndarray, "np.ndarray | None"]


class TileCutter:
    """Column layout and row sources for one camera width; shared by all boards."""

    def __init__(self, tile: int, stride: int, width: int, channels: int) -> None:
        if width < tile:
            raise ValueError(f"width {width} is smaller than the tile size {tile}")
        self.tile = tile
        self.stride = stride
        self.width = width
        self.channels = channels
        self.xs = grid_positions(width, tile, stride)
        self.n_grid = (width - tile) // stride + 1
        self.has_aligned = len(self.xs) > self.n_grid
        self._view: np.ndarray | None = None
        self._view_key: tuple[int, int] = (-1, -1)

    @property
    def n_cols(self) -> int:
        return len(self.xs)

    def _grid_view(self, buf: np.ndarray) -> np.ndarray:
        """[rows, n_grid, T, T, C] read-only view: [r] is the grid row whose top is buffer row r."""
        t = self.tile
        s0, s1, s2 = buf.strides
        return as_strided(
            buf,
            shape=(buf.shape[0] - t + 1, self.n_grid, t, t, self.channels),
            strides=(s0, self.stride * s1, s0, s1, s2),
            writeable=False,
        )

    def band_row(self, band: BandStitcher, line: int) -> RowSource:
        """The tile row whose top is absolute `line`; its T lines must be in the band."""
        key = (id(band), band.generation)
        if key != self._view_key or self._view is None:
            self._view = self._grid_view(band.buffer)
            self._view_key = key
        r = band.index(line)
        t = self.tile
        aligned = band.buffer[r : r + t, self.width - t :] if self.has_aligned else None
        return self._view[r], aligned

    def padded_row(self, lines: np.ndarray) -> RowSource:
        """A row for a board shorter than T: its lines, then its last line repeated to fill T
        lines (so the model sees plausible board texture rather than black or garbage)."""
        t = self.tile
        block = np.empty((t, self.width, self.channels), np.uint8)
        n = lines.shape[0]
        block[:n] = lines
        block[n:] = lines[n - 1]
        view = self._grid_view(block)
        aligned = block[:, self.width - t :] if self.has_aligned else None
        return view[0], aligned


class BoardTiles:
    """Tile rows of one board: which rows are cut, and the rows cut since the last `take`."""

    def __init__(self, board_id: int, start_line: int, cutter: TileCutter) -> None:
        self.board_id = board_id
        self.start_line = start_line
        self.n_tiles = 0
        self._cutter = cutter
        self._row = 0  # index of the next grid row
        self._next_y = 0
        self._last_y = -1
        self._metas: list[TileMeta] = []
        self._rows: list[RowSource] = []

    @property
    def keep_from_y(self) -> int:
        """First board-relative line still needed: the last aligned row starts at or after the
        last row cut (or at 0 before any)."""
        return max(self._last_y, 0)

    def cut_ready(self, band: BandStitcher, settled_len: int) -> None:
        """Cut every grid row whose T lines are known to be board lines."""
        t = self._cutter.tile
        while self._next_y + t <= settled_len:
            self._add(self._next_y, self._cutter.band_row(band, self.start_line + self._next_y))
            self._next_y += self._cutter.stride

    def cut_final(self, band: BandStitcher, length: int) -> None:
        """The board has `length` lines: cut the remaining grid rows and the aligned last row
        (or one padded row when the board is shorter than a tile)."""
        t = self._cutter.tile
        self.cut_ready(band, length)
        if length >= t:
            if self._last_y != length - t:
                self._add(length - t, self._cutter.band_row(band, self.start_line + length - t))
        elif length > 0:
            lines = band.lines(self.start_line, self.start_line + length)
            self._add(0, self._cutter.padded_row(lines))

    def _add(self, y: int, source: RowSource) -> None:
        bid, row = self.board_id, self._row
        self._metas.extend(TileMeta(bid, row, c, x, y) for c, x in enumerate(self._cutter.xs))
        self._rows.append(source)
        self._row += 1
        self._last_y = y

    def take(self) -> TilesCut | None:
        """The rows cut since the last call as one TilesCut, or None."""
        if not self._metas:
            return None
        metas, rows = self._metas, self._rows
        self._metas, self._rows = [], []
        self.n_tiles += len(metas)
        return TilesCut(self.board_id, metas, _writer(rows, self._cutter, len(metas)))


def _writer(rows: list[RowSource], cutter: TileCutter, n: int) -> Callable[..., None]:
    """write_into(out, start=0, stop=None): copy tiles [start, stop) of the batch into `out`.
    The optional range lets a consumer split a batch (e.g. across a ring's end)."""
    t, c, ncols, ngrid = cutter.tile, cutter.channels, cutter.n_cols, cutter.n_grid

    def write_into(out: np.ndarray, start: int = 0, stop: int | None = None) -> None:
        stop = n if stop is None else stop
        if not 0 <= start <= stop <= n:
            raise ValueError(f"tile range [{start}, {stop}) outside a batch of {n}")
        if out.dtype != np.uint8 or out.shape != (stop - start, t, t, c):
            raise ValueError(
                f"out must be uint8 {(stop - start, t, t, c)}, got {out.dtype} {out.shape}"
            )
        first_row, skip = divmod(start, ncols)
        i = 0
        for grid, aligned in rows[first_row:]:
            if i >= stop - start:
                break
            lo = skip  # first column of this row still to copy
            hi = min(ncols, lo + (stop - start - i))
            skip = 0
            g_hi = min(hi, ngrid)
            if lo < g_hi:
                out[i : i + g_hi - lo] = grid[lo:g_hi]
                i += g_hi - lo
            if hi > ngrid and aligned is not None:
                out[i] = aligned
                i += 1

    return write_into
