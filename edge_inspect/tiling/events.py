"""What the tiling stage tells the rest of the pipeline, in line order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True, slots=True)
class TileMeta:
    """Where a tile lies: `x` is the camera column of its left edge, `y` the line of its top
    edge relative to the board's first line, `bx` its left edge relative to the board's left
    edge in that tile row (negative only for a board narrower than a tile); `row`/`col` index
    the tile grid of the board (columns follow the board, so rows may differ in length)."""

    board_id: int
    row: int
    col: int
    x: int
    y: int
    bx: int = 0


@dataclass(frozen=True, slots=True)
class BoardStarted:
    board_id: int
    start_line: int
    t_ns: int


@dataclass(slots=True)
class TilesCut:
    """Tiles of one board, ready to be copied. `write_into(out, start=0, stop=None)` copies tiles
    [start, stop) in `metas` order into `out` (uint8 [stop - start, T, T, C], e.g. ring slots;
    the range lets a consumer split a cut). It is valid only until the tiler's next
    `push`/`flush` call, because it reads the tiler's band in place."""

    board_id: int
    metas: list[TileMeta]
    write_into: Callable[..., None]


@dataclass(frozen=True, slots=True)
class BoardEnded:
    """A board is complete on the tiling side. `end_line` is exclusive. `reason` is one of
    "gap", "max_length", "frame", "end_of_stream", "lines_lost", "stopped", or the error that
    ended the source. `incomplete` is True when lines of the board were lost (dropped strips,
    the board began before a gap in the line counter), or the source was stopped or failed while
    the board was in view."""

    board_id: int
    start_line: int
    end_line: int
    width: int
    n_tiles: int
    reason: str
    incomplete: bool
    t_last_ns: int


TilingEvent = BoardStarted | TilesCut | BoardEnded
