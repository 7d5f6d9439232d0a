"""Tile cutter: the tile grid of a board, cut row by row as soon as a row's lines are in the band.

Positions along an axis of length L are 0, S, 2S, ... while a tile fits, plus one last tile
aligned to L - T when the grid does not already end there, so every pixel is covered and no
tile reaches past the board. Rows are relative to the board's first line; columns follow the
board in each row (`lateral.py`: from its left edge, the last aligned to its right edge).

Copying is done per tile row: a read-only strided view presents the grid columns of a row as
one [n_cols, T, T, C] array, so one numpy assignment copies the whole row (plus one slice copy
for the aligned last column). Only the edge tiles, whose conveyor is filled, are copied ahead;
nothing else is copied until the consumer calls `write_into`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import as_strided

from edge_inspect.tiling.events import TileMeta, TilesCut
from edge_inspect.tiling.lateral import filled_tile, needs_fill, row_layout
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


@dataclass(frozen=True, slots=True)
class RowSource:
    """One tile row to copy: the strided view of its grid tiles [n_grid, T, T, C], the aligned
    last tile [T, T, C] (None when the grid already ends on the board's right edge), the column
    of every tile, the board's left edge in this row (for board-relative positions), and copies
    of the tiles that reach beside the board or into an edge band, filled (`lateral.py`)."""

    grid: np.ndarray
    aligned: np.ndarray | None
    xs: list[int]
    x0: int
    filled: dict[int, np.ndarray]  # column index -> tile with the conveyor beside the board filled


class TileCutter:
    """Tile rows of one camera width: per row the board's extent is measured over the row's
    lines (`lateral.board_row`), the conveyor beside it filled, and tiles laid across the board
    only, from its left edge at the stride, the last one aligned to its right edge."""

    def __init__(self, tile: int, stride: int, width: int, channels: int, level: int = 40,
                 close_px: int = 32, band_px: int = 8) -> None:
        if width < tile:
            raise ValueError(f"width {width} is smaller than the tile size {tile}")
        self.tile = tile
        self.stride = stride
        self.width = width
        self.channels = channels
        self.level = level  # foreground level; the tiler updates it as the segmenter adapts
        self.close_px = close_px
        self.band_px = band_px

    def _row(self, block: np.ndarray) -> RowSource:
        """The row of tiles in `block` [T, W, C] (a view of the band, or a padded copy)."""
        t, s = self.tile, self.stride
        x0, x1, lo, hi = row_layout(block, self.level, self.close_px, t)
        xs = [lo + x for x in grid_positions(hi - lo, t, s)]
        n_grid = (hi - lo - t) // s + 1
        s0, s1, s2 = block.strides
        grid = as_strided(block[:, lo:], shape=(n_grid, t, t, self.channels), strides=(s * s1, s0, s1, s2),
                          writeable=False)
        aligned = block[:, hi - t:hi] if len(xs) > n_grid else None
        filled = {c: filled_tile(block, x, t, x0, x1, self.level, self.band_px)
                  for c, x in enumerate(xs) if needs_fill(x, t, x0, x1, self.band_px)}
        return RowSource(grid, aligned, xs, x0, filled)

    def band_row(self, band: BandStitcher, line: int) -> RowSource:
        """The tile row whose top is absolute `line`; its T lines must be in the band."""
        r = band.index(line)
        return self._row(band.buffer[r : r + self.tile])

    def padded_row(self, lines: np.ndarray) -> RowSource:
        """A row for a board shorter than T: its lines, then its last line repeated to fill T
        lines (so the model sees plausible board texture rather than black or garbage)."""
        t = self.tile
        block = np.empty((t, self.width, self.channels), np.uint8)
        n = lines.shape[0]
        block[:n] = lines
        block[n:] = lines[n - 1]
        return self._row(block)


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
        self._metas.extend(TileMeta(bid, row, c, x, y, x - source.x0) for c, x in enumerate(source.xs))
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
    t, c = cutter.tile, cutter.channels

    def write_into(out: np.ndarray, start: int = 0, stop: int | None = None) -> None:
        stop = n if stop is None else stop
        if not 0 <= start <= stop <= n:
            raise ValueError(f"tile range [{start}, {stop}) outside a batch of {n}")
        if out.dtype != np.uint8 or out.shape != (stop - start, t, t, c):
            raise ValueError(
                f"out must be uint8 {(stop - start, t, t, c)}, got {out.dtype} {out.shape}"
            )
        i = 0  # tiles written
        k = 0  # index of the first tile of the current row within the batch
        for row in rows:
            ncols, ngrid = len(row.xs), row.grid.shape[0]
            lo, hi = max(start - k, 0), min(stop - k, ncols)
            k += ncols
            if lo >= hi:
                if k >= stop:
                    break
                continue
            g_hi = min(hi, ngrid)
            first = i
            if lo < g_hi:
                out[i : i + g_hi - lo] = row.grid[lo:g_hi]
                i += g_hi - lo
            if hi > ngrid and row.aligned is not None:
                out[i] = row.aligned
                i += 1
            for col, tile in row.filled.items():  # the few edge tiles, filled beside the board
                if lo <= col < hi:
                    out[first + col - lo] = tile
            if k >= stop:
                break

    return write_into
