"""Tiling stage: band stitching, board segmentation, tile cutting, on real synthetic arrays."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from edge_inspect.acquisition.base import Strip
from edge_inspect.config import SegmenterConfig, TilingConfig
from edge_inspect.errors import InputDataError
from edge_inspect.tiling.cutter import grid_positions
from edge_inspect.tiling.events import BoardEnded, BoardStarted, TileMeta, TilesCut
from edge_inspect.tiling.tiler import Tiler

T, S = 32, 16
SIZES = [1, 7, 64, 1000]


def make_cfg(tile: int = T, stride: int = S, **seg: object) -> TilingConfig:
    params: dict[str, object] = dict(
        foreground_level=40,
        enter_fraction=0.5,
        exit_fraction=0.2,
        min_gap_lines=8,
        min_board_lines=64,
        max_board_lines=1000,
    )
    params.update(seg)
    return TilingConfig(tile_size=tile, stride=stride, segmenter=SegmenterConfig(**params))


def t_of(first_line: int) -> int:
    return first_line * 1000 + 7


def pattern_band(n: int, w: int, boards: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Colour band whose every pixel encodes its line and column; boards (y0, y1, x0, x1) are
    bright (grey >= 128), background dark (grey <= 31)."""
    y = np.arange(n)[:, None]
    x = np.arange(w)[None, :]
    band = np.empty((n, w, 3), np.uint8)
    band[..., 0] = y % 32
    band[..., 1] = x % 32
    band[..., 2] = (y // 32 + x // 32) % 32
    for y0, y1, x0, x1 in boards:
        yy, xx = y[y0:y1], x[:, x0:x1]
        band[y0:y1, x0:x1, 0] = 128 + yy % 128
        band[y0:y1, x0:x1, 1] = 128 + xx % 128
        band[y0:y1, x0:x1, 2] = 128 + (yy // 128 + 3 * (xx // 128)) % 128
    return band


@dataclass
class Run:
    events: list = field(default_factory=list)
    push_of: list[int] = field(default_factory=list)  # index of the push that returned each event
    tiles: list[tuple[TileMeta, np.ndarray]] = field(default_factory=list)

    def boards(self) -> list[BoardEnded]:
        return [e for e in self.events if isinstance(e, BoardEnded)]

    def starts(self) -> list[BoardStarted]:
        return [e for e in self.events if isinstance(e, BoardStarted)]


def feed(tiler: Tiler, strips: list[Strip], flush: bool = True) -> Run:
    """Push strips, copying every TilesCut out at once (its view is valid until the next push)."""
    run = Run()

    def take(events: list, k: int) -> None:
        for ev in events:
            run.events.append(ev)
            run.push_of.append(k)
            if isinstance(ev, TilesCut):
                n = len(ev.metas)
                out = np.empty((n, tiler._tile, tiler._tile, tiler._channels), np.uint8)
                ev.write_into(out)
                run.tiles.extend(zip(ev.metas, out))

    for k, strip in enumerate(strips):
        take(tiler.push(strip), k)
    if flush:
        take(tiler.flush(), len(strips))
    return run


def strips_of(band: np.ndarray, size: int | list[int], first_line: int = 0) -> list[Strip]:
    sizes = [size] if isinstance(size, int) else size
    out, pos, k = [], 0, 0
    while pos < band.shape[0]:
        n = sizes[k % len(sizes)]
        out.append(Strip(band[pos : pos + n], first_line + pos, t_of(first_line + pos), k))
        pos += n
        k += 1
    return out


def check_order(run: Run) -> None:
    """BoardStarted, TilesCut..., BoardEnded per board; boards in order, ids consecutive."""
    open_id = None
    last_id = None
    for ev in run.events:
        if isinstance(ev, BoardStarted):
            assert open_id is None
            assert last_id is None or ev.board_id == last_id + 1
            open_id = last_id = ev.board_id
        elif isinstance(ev, TilesCut):
            assert ev.board_id == open_id and all(m.board_id == open_id for m in ev.metas)
        else:
            assert ev.board_id == open_id
            open_id = None
    assert open_id is None


def row_extent(block: np.ndarray, level: int = 40) -> tuple[int, int]:
    """The documented rule for these gap-free rectangular boards: the board is the columns that
    are foreground in at least half of the row's lines (the full width when there are none)."""
    cols = np.flatnonzero(2 * (block.astype(int).mean(axis=2) > level).sum(axis=0) >= len(block))
    return (int(cols[0]), int(cols[-1]) + 1) if cols.size else (0, block.shape[1])


def row_xs(x0: int, x1: int, w: int) -> list[int]:
    """Tiles across the board from its left edge, the last aligned to its right edge; one centred
    tile for a board narrower than a tile."""
    if x1 - x0 >= T:
        return [x0 + x for x in grid_positions(x1 - x0, T, S)]
    return [min(max(0, (x0 + x1 - T) // 2), w - T)]


def mirrored(block: np.ndarray, x0: int, x1: int, cols: np.ndarray, level: int = 40, band: int = 8) -> np.ndarray:
    """Columns `cols` of `block` as the model sees them: columns outside [x0, x1) mirrored into
    the board; in the outermost `band` columns inside each edge, pixels no brighter than the
    conveyor replaced by the pixel mirrored at the band's inner side."""
    width = x1 - x0
    m = np.mod(cols - x0, 2 * width)
    out = block[:, x0 + np.where(m < width, m, 2 * width - 1 - m)].copy()
    e = min(band, width // 4)
    for j, c in enumerate(cols):
        if x0 <= c < x0 + e:
            src = 2 * (x0 + e) - 1 - c
        elif x1 - e <= c < x1:
            src = 2 * (x1 - e) - 1 - c
        else:
            continue
        dark = block[:, c].astype(int).mean(axis=1) <= level
        out[dark, j] = block[dark, src]
    return out


def check_tiles(run: Run, band: np.ndarray, first_line: int = 0) -> None:
    """Tiles follow the board: per row they lie across the board's extent, and each equals the
    board's pixels (rows of a board shorter than T: its last line repeated; columns beside a
    board narrower than a tile: the board mirrored at its edge)."""
    by_id = {b.board_id: b for b in run.boards()}
    w = band.shape[1]
    for b in run.boards():
        length = b.end_line - b.start_line
        metas = [(m, px) for m, px in run.tiles if m.board_id == b.board_id]
        expected = []
        for r, y in enumerate(grid_positions(length, T, S)):
            y0 = b.start_line - first_line + y
            block = band[y0 : y0 + min(T, length)]
            block = np.concatenate([block, np.broadcast_to(block[-1:], (T - len(block), *block.shape[1:]))])
            x0, x1 = row_extent(block)
            xs = row_xs(x0, x1, w)
            expected += [(r, c, y, x, x - x0) for c, x in enumerate(xs)]
            for (m, px) in metas:
                if m.row == r:
                    cols = np.arange(m.x, m.x + T)
                    np.testing.assert_array_equal(px, mirrored(block, x0, x1, cols))
        assert [(m.row, m.col, m.y, m.x, m.bx) for m, _ in metas] == expected
        assert by_id[b.board_id].n_tiles == len(metas)


# -- grid -------------------------------------------------------------------------------------


def test_grid_positions_cover_with_aligned_last_and_no_duplicate():
    assert grid_positions(100, 32, 16) == [0, 16, 32, 48, 64, 68]
    assert grid_positions(96, 32, 16) == [0, 16, 32, 48, 64]  # already aligned: no duplicate
    assert grid_positions(100, 32, 32) == [0, 32, 64, 68]
    assert grid_positions(32, 32, 16) == [0]
    assert grid_positions(20, 32, 16) == [0]  # one padded tile
    assert grid_positions(0, 32, 16) == []


# -- image mode -------------------------------------------------------------------------------

BOARDS = [(100, 400, 10, 170), (520, 1337, 0, 200), (1500, 1600, 20, 140)]


@pytest.fixture(scope="module")
def reference_band() -> np.ndarray:
    return pattern_band(1800, 200, BOARDS)


@pytest.fixture(scope="module")
def runs(reference_band: np.ndarray) -> dict[int, Run]:
    cfg = make_cfg()
    return {n: feed(Tiler(cfg, 200, 3), strips_of(reference_band, n)) for n in SIZES}


@pytest.mark.parametrize("size", SIZES)
def test_board_extents_width_times_and_tiles(runs: dict[int, Run], reference_band, size: int):
    run = runs[size]
    check_order(run)
    boards = run.boards()
    assert [(b.board_id, b.start_line, b.end_line, b.width, b.reason, b.incomplete) for b in boards] == [
        (1, 100, 400, 160, "gap", False),
        (2, 520, 1337, 200, "gap", False),
        (3, 1500, 1600, 120, "gap", False),
    ]
    for started, b in zip(run.starts(), boards):
        assert started.start_line == b.start_line
        assert started.t_ns == t_of(b.start_line // size * size)
        assert b.t_last_ns == t_of((b.end_line - 1) // size * size)
    check_tiles(run, reference_band)


def test_results_do_not_depend_on_strip_size(runs: dict[int, Run]):
    ref = runs[SIZES[0]]
    for size in SIZES[1:]:
        run = runs[size]
        assert [(b.start_line, b.end_line, b.width, b.n_tiles) for b in run.boards()] == [
            (b.start_line, b.end_line, b.width, b.n_tiles) for b in ref.boards()
        ]
        assert [m for m, _ in run.tiles] == [m for m, _ in ref.tiles]
        np.testing.assert_array_equal(
            np.stack([p for _, p in run.tiles]), np.stack([p for _, p in ref.tiles])
        )


def test_mixed_strip_sizes_and_mono():
    band = pattern_band(1800, 200, BOARDS)[..., :1].copy()
    cfg = make_cfg()
    a = feed(Tiler(cfg, 200, 1), strips_of(band, [3, 64, 1, 250, 17]))
    b = feed(Tiler(cfg, 200, 1), strips_of(band, 1000))
    assert [(e.start_line, e.end_line) for e in a.boards()] == [(y0, y1) for y0, y1, _, _ in BOARDS]
    assert [m for m, _ in a.tiles] == [m for m, _ in b.tiles]
    check_tiles(a, band)


def test_overlapping_grid_follows_the_board_and_aligns_to_its_edges():
    band = pattern_band(400, 100, [(50, 250, 20, 80)])
    run = feed(Tiler(make_cfg(), 100, 3), strips_of(band, 64))
    (b,) = run.boards()
    assert (b.start_line, b.end_line) == (50, 250)
    xs = sorted({m.x for m, _ in run.tiles})
    ys = sorted({m.y for m, _ in run.tiles})
    assert xs == [20, 36, 48]  # from the board's left edge (20), the last aligned to its right (80 - T)
    assert sorted({m.bx for m, _ in run.tiles}) == [0, 16, 28]  # board-relative
    assert ys == list(range(0, 161, 16)) + [168]  # last aligned to L - T = 168
    check_tiles(run, band)


def test_first_row_is_streamed_long_before_the_board_ends():
    band = pattern_band(3400, 64, [(100, 3100, 0, 64)])
    strips = strips_of(band, 64)
    run = feed(Tiler(make_cfg(max_board_lines=5000), 64, 3), strips)
    first_cut = next(i for i, e in enumerate(run.events) if isinstance(e, TilesCut))
    ended = next(i for i, e in enumerate(run.events) if isinstance(e, BoardEnded))
    # Confirmed after min_board_lines (64): the first row goes out with the strip after that.
    assert strips[run.push_of[first_cut]].first_line <= 100 + 64 + 64
    assert run.push_of[first_cut] < run.push_of[ended] - 40
    check_tiles(run, band)


def test_short_dark_gap_and_weak_lines_do_not_split_a_board():
    band = pattern_band(900, 100, [(100, 500, 0, 100)])
    band[300:305] = 0  # 5 dark lines < min_gap_lines (8)
    band[350:360, 30:] = 0  # 30 % foreground: between exit (20 %) and enter (50 %)
    band[40:60, :30] = 200  # 30 % lines before the board do not start one
    runs = [feed(Tiler(make_cfg(), 100, 3), strips_of(band, n)) for n in (1, 7, 64)]
    for run in runs:
        assert [(b.start_line, b.end_line) for b in run.boards()] == [(100, 500)]
        check_tiles(run, band)


def test_exact_min_gap_splits_and_a_short_piece_is_a_fragment():
    band = pattern_band(1200, 100, [(100, 300, 0, 100), (308, 400, 0, 100), (600, 620, 0, 100)])
    for n in (1, 7, 64, 1000):
        tiler = Tiler(make_cfg(), 100, 3)
        run = feed(tiler, strips_of(band, n))
        # A gap of exactly min_gap_lines ends the board; the 20-line piece is not dropped: it is
        # a fragment with its own (padded) tiles, for the decision stage to reject
        assert [(b.start_line, b.end_line, b.reason) for b in run.boards()] == [
            (100, 300, "gap"), (308, 400, "gap"), (600, 620, "fragment")]
        assert tiler.fragments == 1 and run.boards()[-1].n_tiles > 0
        check_tiles(run, band)


def test_max_board_lines_splits_continuous_material():
    band = pattern_band(3000, 64, [(0, 2530, 0, 64)])
    for n in SIZES:
        run = feed(Tiler(make_cfg(max_board_lines=1000), 64, 3), strips_of(band, n))
        check_order(run)
        assert [(b.board_id, b.start_line, b.end_line, b.reason) for b in run.boards()] == [
            (1, 0, 1000, "max_length"),
            (2, 1000, 2000, "max_length"),
            (3, 2000, 2530, "gap"),
        ]
        check_tiles(run, band)


def test_short_tail_after_max_length_is_kept_and_padded():
    band = pattern_band(1200, 64, [(0, 1020, 0, 64)])
    run = feed(Tiler(make_cfg(max_board_lines=1000), 64, 3), strips_of(band, 7))
    assert [(b.start_line, b.end_line, b.reason) for b in run.boards()] == [
        (0, 1000, "max_length"),
        (1000, 1020, "gap"),
    ]
    tail = [p for m, p in run.tiles if m.board_id == 2]
    assert len(tail) == len(grid_positions(64, T, S))
    # 20 board lines, then the last one repeated.
    np.testing.assert_array_equal(tail[0][:20], band[1000:1020, 0:T])
    np.testing.assert_array_equal(tail[0][20:], np.broadcast_to(band[1019, 0:T], (12, T, 3)))


def test_end_of_stream_closes_the_open_board():
    band = pattern_band(600, 64, [(100, 600, 0, 64)])
    band[595:] = 0  # a trailing dark run shorter than min_gap is not board
    tiler = Tiler(make_cfg(), 64, 3)
    run = feed(tiler, strips_of(band, 64), flush=False)
    assert not run.boards()
    tail = tiler.flush()
    assert [(e.start_line, e.end_line, e.reason, e.incomplete) for e in tail if isinstance(e, BoardEnded)] == [
        (100, 595, "end_of_stream", False)
    ]


def test_segmentation_matches_a_per_line_reference_on_random_scenes():
    rng = np.random.default_rng(7)
    cfg = make_cfg(max_board_lines=400)
    for _ in range(4):
        n, w = 5000, 96
        band = rng.integers(0, 40, (n, w, 1), dtype=np.uint8)
        y = 0
        # one lateral extent per scene: boards that differ across the width where they meet are
        # told apart at the seam (tests/test_lateral.py), which this per-line reference does not model
        x0 = int(rng.integers(0, 30))
        x1 = int(rng.integers(60, w + 1))
        while y < n:
            y += int(rng.integers(1, 120))
            h = int(rng.integers(1, 700))
            if y >= n:
                break
            band[y : y + h, x0:x1] = rng.integers(100, 256, (min(h, n - y), x1 - x0, 1), dtype=np.uint8)
            for _ in range(int(rng.integers(0, 3))):  # short holes inside boards
                g = y + int(rng.integers(0, max(h, 1)))
                band[g : g + int(rng.integers(1, 12))] = 5
            y += h
        expected = reference_segments(band, cfg)
        sizes = [int(s) for s in rng.integers(1, 300, 50)]
        for size in (sizes, 64):
            tiler = Tiler(cfg, w, 1)
            run = feed(tiler, strips_of(band, size))
            check_order(run)
            got = [(b.start_line, b.end_line, b.reason, b.width) for b in run.boards()]
            assert got == expected[0]
            assert tiler.fragments == expected[1]
            check_tiles(run, band)


def reference_segments(band: np.ndarray, cfg: TilingConfig) -> tuple[list, int]:
    """Straightforward per-line hysteresis, as the stage is specified."""
    seg = cfg.segmenter
    n, w, _ = band.shape
    fg = band[..., 0] > seg.foreground_level
    counts = fg.sum(axis=1)
    boards: list = []
    fragments = 0

    def close(s: int, e: int, reason: str) -> None:
        nonlocal fragments
        cont = False
        while e - s > seg.max_board_lines:
            boards.append((s, s + seg.max_board_lines, "max_length"))
            s += seg.max_board_lines
            cont = True
        if cont or e - s >= seg.min_board_lines:
            boards.append((s, e, reason))
        else:
            fragments += 1
            boards.append((s, e, "fragment"))

    start = run = None
    for i in range(n):
        c = counts[i]
        if start is None:
            if c >= seg.enter_fraction * w:
                start, run = i, None
            continue
        if c < seg.exit_fraction * w:
            run = i if run is None else run
            if i - run + 1 >= seg.min_gap_lines:
                close(start, run, "gap")
                start = None
        else:
            run = None
    if start is not None:
        close(start, run if run is not None else n, "end_of_stream")
    with_width = []
    for s, e, r in boards:
        col = fg[s:e].sum(axis=0)
        with_width.append((s, e, r, int(np.count_nonzero(2 * col >= e - s))))
    return with_width, fragments


# -- frame mode -------------------------------------------------------------------------------


@pytest.mark.parametrize("lines_per_frame", [20, 32, 100])
def test_frame_mode_each_strip_is_a_board(lines_per_frame: int):
    band = pattern_band(300, 80, [(0, 300, 0, 80)])
    band[150:] = 0  # dark frames are boards too in frame mode
    strips = strips_of(band, lines_per_frame, first_line=1000)
    run = feed(Tiler(make_cfg(mode="frame"), 80, 3), strips)
    check_order(run)
    boards = run.boards()
    assert [(b.start_line, b.end_line) for b in boards] == [
        (s.first_line, s.first_line + s.lines.shape[0]) for s in strips
    ]
    assert all(b.reason == "frame" and b.width == 80 and not b.incomplete for b in boards)
    assert [b.t_last_ns for b in boards] == [s.t_ns for s in strips]
    for meta, px in run.tiles:
        b = boards[meta.board_id - 1]
        y0 = b.start_line - 1000 + meta.y
        n = min(T, b.end_line - b.start_line)
        np.testing.assert_array_equal(px[:n], band[y0 : y0 + n, meta.x : meta.x + T])
        if n < T:  # a short frame: its last line repeated
            np.testing.assert_array_equal(px[n:], np.broadcast_to(px[n - 1], (T - n, T, 3)))
    for b in boards:
        ys = grid_positions(b.end_line - b.start_line, T, S)
        assert b.n_tiles == len(ys) * len(grid_positions(80, T, S))


# -- lost lines ---------------------------------------------------------------------------------


def test_gap_inside_a_board_closes_it_incomplete_and_the_next_is_incomplete_too():
    band = pattern_band(1000, 64, [(100, 700, 0, 64)])
    for n in (1, 10, 50):
        strips = [s for s in strips_of(band, n) if not 300 <= s.first_line < 350]
        tiler = Tiler(make_cfg(), 64, 3)
        run = feed(tiler, strips)
        check_order(run)
        assert tiler.lines_lost == 50 and tiler.lines_seen == 950
        assert [(b.start_line, b.end_line, b.reason, b.incomplete) for b in run.boards()] == [
            (100, 300, "lines_lost", True),
            (350, 700, "gap", True),
        ]
        check_tiles(run, band)


def test_gap_in_the_dark_loses_no_board_and_an_early_candidate_is_kept():
    band = pattern_band(1000, 64, [(100, 300, 0, 64), (480, 700, 0, 64)])
    strips = [s for s in strips_of(band, 10) if not 400 <= s.first_line < 420 and not 500 <= s.first_line < 510]
    tiler = Tiler(make_cfg(), 64, 3)
    run = feed(tiler, strips)
    assert tiler.lines_lost == 30
    # The second board was still a 20-line candidate at the gap: kept (fail safe), padded tile.
    assert [(b.start_line, b.end_line, b.reason, b.incomplete) for b in run.boards()] == [
        (100, 300, "gap", False),
        (480, 500, "lines_lost", True),
        (510, 700, "gap", True),
    ]
    short = [p for m, p in run.tiles if m.board_id == 2]
    np.testing.assert_array_equal(short[0][:20], band[480:500, :T])
    np.testing.assert_array_equal(short[0][20:], np.broadcast_to(band[499, :T], (12, T, 3)))


def test_line_counter_going_back_is_a_new_stream():
    band = pattern_band(600, 64, [(100, 600, 0, 64)])
    strips = strips_of(band[:300], 50)
    strips += [Strip(s.lines, s.first_line - 300, s.t_ns, s.frame_id) for s in strips_of(band[300:], 50, 300)]
    tiler = Tiler(make_cfg(), 64, 3)
    run = feed(tiler, strips)
    assert [(b.start_line, b.end_line, b.reason, b.incomplete) for b in run.boards()] == [
        (100, 300, "lines_lost", True),
        (0, 300, "end_of_stream", True),
    ]


def test_tiles_of_a_board_closed_by_a_gap_stay_valid_in_the_same_push():
    # Tiny band capacity pressure: big strips force the buffer to be replaced on the gap push.
    band = pattern_band(5000, 64, [(0, 5000, 0, 64)])
    strips = [Strip(band[0:900], 0, 0, 0), Strip(band[1000:5000], 1000, 1, 1)]
    tiler = Tiler(make_cfg(max_board_lines=5000), 64, 3)
    tiler.push(strips[0])
    events = tiler.push(strips[1])
    cuts = [e for e in events if isinstance(e, TilesCut)]
    assert cuts[0].board_id == 1
    out = np.empty((len(cuts[0].metas), T, T, 3), np.uint8)
    cuts[0].write_into(out)
    for meta, px in zip(cuts[0].metas, out):
        np.testing.assert_array_equal(px, band[meta.y : meta.y + T, meta.x : meta.x + T])


# -- write_into and input checks ----------------------------------------------------------------


def test_write_into_ranges_and_shape_check():
    band = pattern_band(400, 100, [(50, 250, 0, 100)])
    tiler = Tiler(make_cfg(), 100, 3)
    events = tiler.push(Strip(band, 0, 0, 0))
    cut = next(e for e in events if isinstance(e, TilesCut))
    n = len(cut.metas)
    full = np.empty((n, T, T, 3), np.uint8)
    cut.write_into(full)
    parts = []
    for a, b in [(0, 5), (5, 6), (6, 17), (17, n)]:
        part = np.empty((b - a, T, T, 3), np.uint8)
        cut.write_into(part, a, b)
        parts.append(part)
    np.testing.assert_array_equal(np.concatenate(parts), full)
    with pytest.raises(ValueError):
        cut.write_into(np.empty((n, T, T, 1), np.uint8))
    with pytest.raises(ValueError):
        cut.write_into(np.empty((n + 1, T, T, 3), np.uint8))


@pytest.mark.parametrize(
    "lines",
    [
        np.zeros((8, 99, 3), np.uint8),  # width
        np.zeros((8, 100, 1), np.uint8),  # channels
        np.zeros((8, 100, 3), np.float32),  # dtype
        np.zeros((8, 100), np.uint8),  # 2-D
        [[0] * 100] * 8,  # not an array
    ],
)
def test_bad_strips_raise_input_data_error(lines):
    tiler = Tiler(make_cfg(), 100, 3)
    with pytest.raises(InputDataError):
        tiler.push(Strip(lines, 0, 0, 0))


def test_width_below_tile_size_is_rejected():
    with pytest.raises(InputDataError, match="tile size"):
        Tiler(make_cfg(), T - 1, 1)


def test_lines_dropped_after_the_last_strip_are_counted_lost_and_cut_the_open_board():
    """Strips dropped at the end of a stream (the strip queue full under overload) never reach
    the tiler: the source's last line tells it, so they count as lost and the board in view
    then is cut and rejected as incomplete, as a gap in mid-stream would."""
    band = np.full((600, 64, 1), 10, np.uint8)
    band[100:500] = 200  # a board from line 100 to 500
    tiler = Tiler(make_cfg(min_board_lines=64), 64, 1)
    events = [e for s in strips_of(band[:200], 50) for e in tiler.push(s)]
    events += tiler.flush(stream_end=600)  # lines 200-600 were dropped before tiling
    (end,) = [e for e in events if isinstance(e, BoardEnded)]
    assert (end.start_line, end.end_line, end.reason, end.incomplete) == (100, 200, "lines_lost", True)
    assert tiler.lines_lost == 400
    # a stream stopped while material came: the stop says why the board was cut, the lines still count
    tiler = Tiler(make_cfg(min_board_lines=64), 64, 1)
    events = [e for s in strips_of(band[:200], 50) for e in tiler.push(s)] + tiler.flush("stopped", stream_end=600)
    (end,) = [e for e in events if isinstance(e, BoardEnded)]
    assert (end.reason, end.incomplete, tiler.lines_lost) == ("stopped", True, 400)

