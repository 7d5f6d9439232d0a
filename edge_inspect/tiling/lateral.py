"""Where the board lies across the camera width, per tile row, and what the model sees beside it.

Tiles must cover the board, not the conveyor: a model asked to score conveyor or a board's side
edge calls them anomalies (false rejects), and one trained on them learns the wrong thing. So
every tile row gets the board's extent [x0, x1) over its T lines, measured robustly:

* a column is board when at least half of the row's lines are foreground there (a board skewed
  a little still counts where it is most of the time);
* gaps up to `close_px` wide inside that run are closed (dark knots or stains near an edge do
  not cut the board); the board reaches from the first to the last run at least `close_px` wide
  (wood on both sides of a wider dark knot is one board), or is the widest run when none is that
  wide; specks on the conveyor, narrower than `close_px`, are not board.

Tiles are then laid from x0 at the stride, the last one aligned to x1 (`grid_positions`). What a
tile still holds of the conveyor is filled, in a copy of that tile (the band stays as the camera
saw it, so every tile is a function of its own row's lines), with the board's own pixels mirrored
at the edge:

* outside [x0, x1) (a board narrower than one tile): every pixel;
* in the edge band, the outermost `band_px` columns inside each edge: pixels no brighter than the
  conveyor (the foreground test fails) in that line. That is the sliver a skewed or ragged edge
  leaves. A defect darker than the conveyor that reaches the very edge is therefore scored
  from `band_px` inside the edge; anything brighter than the conveyor is scored up to the edge.
"""

from __future__ import annotations

import numpy as np

from edge_inspect.tiling.segmenter import foreground_mask


def _runs(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, stops) of the True runs of a 1-D bool array."""
    d = np.diff(b.view(np.int8), prepend=0, append=0)
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def board_extent(fg: np.ndarray, close_px: int) -> tuple[int, int] | None:
    """[x0, x1) of the board in a block of lines' foreground mask [n, W], or None when no column
    is board in at least half of the lines."""
    cols = 2 * fg.view(np.uint8).sum(axis=0, dtype=np.int32) >= fg.shape[0]
    starts, stops = _runs(cols)
    if not starts.size:
        return None
    # close: runs separated by at most close_px columns join
    keep = np.r_[True, starts[1:] - stops[:-1] > close_px]
    group = np.cumsum(keep) - 1
    g_start = starts[keep]
    g_stop = np.zeros(len(g_start), np.int64)
    np.maximum.at(g_stop, group, stops)
    wide = g_stop - g_start >= close_px
    if not wide.any():
        i = int(np.argmax(g_stop - g_start))
        return int(g_start[i]), int(g_stop[i])
    return int(g_start[wide][0]), int(g_stop[wide][-1])


def fill_beside_board(block: np.ndarray, fg: np.ndarray, x0: int, x1: int, lo: int, hi: int,
                      band_px: int) -> None:
    """Fill, in place, the conveyor that tiles over columns [lo, hi) of `block` [n, W, C] would
    see beside a board at [x0, x1) (columns may lie outside the block: `block` may be one tile of
    a wider row): see the module docstring. `fg` is `block`'s foreground mask."""
    w = block.shape[1]
    width = x1 - x0
    if width <= 0:
        return
    cols = np.arange(lo, hi)
    # reflect every column into [x0, x1) ("mirror at the edge", repeated for a narrow board)
    period = 2 * width
    m = np.mod(cols - x0, period)
    src = x0 + np.where(m < width, m, period - 1 - m)
    outside = (cols < x0) | (cols >= x1)
    if outside.any():
        block[:, cols[outside]] = block[:, src[outside]]
    band = min(band_px, width // 4, w // 4)  # a mirror source must lie inside the block
    if band <= 0:
        return
    for edge_cols, mirror in (
        (np.arange(x0, min(x0 + band, w)), lambda c: 2 * (x0 + band) - 1 - c),
        (np.arange(max(x1 - band, 0), x1), lambda c: 2 * (x1 - band) - 1 - c),
    ):
        edge_cols = edge_cols[(edge_cols >= lo) & (edge_cols < hi)]
        if not edge_cols.size:
            continue
        dark = ~fg[:, edge_cols]  # [n, k]: conveyor-dark pixels in the edge band
        if not dark.any():
            continue
        sub = block[:, edge_cols]
        sub[dark] = block[:, mirror(edge_cols)][dark]
        block[:, edge_cols] = sub


def row_layout(block: np.ndarray, level: int, close_px: int, tile: int) -> tuple[int, int, int, int]:
    """For one tile row's lines (`block` [T, W, C]): the board's [x0, x1) and [lo, hi), the
    columns the row's tiles span (at least one tile wide, inside the image; the full width when
    no column is board)."""
    w = block.shape[1]
    extent = board_extent(foreground_mask(block, level), close_px)
    if extent is None:  # no board in this row (a fragment of dark material): the full width
        return 0, w, 0, w
    x0, x1 = extent
    if x1 - x0 >= tile:
        return x0, x1, x0, x1
    lo = min(max(0, (x0 + x1 - tile) // 2), w - tile)  # narrower than a tile: one tile centred on it
    return x0, x1, lo, lo + tile


def needs_fill(x: int, tile: int, x0: int, x1: int, band_px: int) -> bool:
    """Whether the tile at column x reaches beside the board or into an edge band."""
    e = min(band_px, (x1 - x0) // 4)
    return x < x0 + e or x + tile > x1 - e


def filled_tile(block: np.ndarray, x: int, tile: int, x0: int, x1: int, level: int, band_px: int) -> np.ndarray:
    """A copy of the tile at column x with the conveyor beside the board filled (module docstring)."""
    out = np.ascontiguousarray(block[:, x:x + tile])
    fill_beside_board(out, foreground_mask(out, level), x0 - x, x1 - x, 0, tile, band_px)
    return out
