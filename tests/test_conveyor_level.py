"""The foreground level follows the conveyor (issue 14: dark wood on a dark belt): dark boards a
fixed level cuts are found whole, a dark board taken for a gap does not raise the level, the
configured level is a ceiling, and a level gone too low comes back."""

from __future__ import annotations

import numpy as np
import pytest
from test_tiling import feed, make_cfg, strips_of

from edge_inspect.tiling.tiler import Tiler

W = 200


def belt_and_boards(n: int, belt: float, boards: list[tuple[int, int, float]], seed: int = 0) -> np.ndarray:
    """Grey scan: a noisy belt at `belt` grey, boards (y0, y1, grey) across columns 20-180."""
    rng = np.random.default_rng(seed)
    img = rng.normal(belt, 2.0, (n, W))
    for y0, y1, grey in boards:
        img[y0:y1, 20:180] = rng.normal(grey, 3.0, (y1 - y0, 160))
    return np.clip(img, 0, 255).astype(np.uint8)[..., None]


def cfg(margin: int | None, **seg: object):
    return make_cfg(foreground_level=30, exit_fraction=0.05, enter_fraction=0.3, min_gap_lines=16,
                    min_board_lines=64, conveyor_margin=margin, **seg)


def test_dark_board_on_a_dark_belt_is_cut_at_a_fixed_level_and_found_whole_when_the_level_follows():
    """Belt at 9 grey (p99.9 about 15), dark boards at 26-30 grey: at the fixed level 30 about
    half of each board's pixels are 'conveyor', so the boards break up or vanish; following the
    belt (level about 18) each is one record of exactly its lines. The first board comes right
    after 40 lines of belt at the start of the stream."""
    boards = [(40, 400, 27.0), (500, 900, 30.0), (1000, 1300, 26.0)]
    band = belt_and_boards(1400, 9.0, boards)
    fixed = feed(Tiler(cfg(None), W, 1), strips_of(band, 64))
    assert [(b.start_line, b.end_line) for b in fixed.boards()] != [(y0, y1) for y0, y1, _ in boards]
    for size in (7, 64, 500):
        t = Tiler(cfg(3), W, 1)
        run = feed(t, strips_of(band, size))
        got = [(b.start_line, b.end_line, b.reason) for b in run.boards()]
        assert [(a, b) for a, b, _ in got] == [(y0, y1) for y0, y1, _ in boards], (size, got)
        assert all(r == "gap" or r == "end_of_stream" for _, _, r in got)
        assert 15 <= t.foreground_level <= 20, t.foreground_level


def test_a_dark_board_taken_for_a_gap_does_not_raise_the_level():
    """A board as dark as the level (13 grey on a 9-grey belt) looks like gap; its lines give
    high values (p99.9 about 22) that must not raise the level, or the dark board after it (24
    grey) right after it would be cut."""
    band = belt_and_boards(1100, 9.0, [(100, 500, 13.0), (505, 1000, 24.0)])
    t = Tiler(cfg(3), W, 1)
    run = feed(t, strips_of(band, 64))
    belt_p999 = float(np.quantile(band[:100], 0.999))  # about 15
    assert abs(t.foreground_level - (belt_p999 + 3)) <= 1.5, (t.foreground_level, belt_p999)
    assert [(b.start_line, b.end_line) for b in run.boards()][-1] == (505, 1000)


def test_the_configured_level_is_a_ceiling():
    """A bright belt (p99.9 above the configured level) leaves the configured level as it is."""
    band = belt_and_boards(800, 26.0, [(100, 500, 180.0)])
    t = Tiler(cfg(3), W, 1)
    run = feed(t, strips_of(band, 64))
    assert t.foreground_level == 30
    assert [(b.start_line, b.end_line) for b in run.boards()] == [(100, 500)]


def test_a_level_gone_too_low_comes_back_after_max_board_lines(caplog: pytest.LogCaptureFixture):
    """The lamp dims over the gaps (belt at 3 grey), then comes back (belt at 14): at the low level
    the belt is board, no gap is seen, and every line still gets a record (max_length pieces); at
    max_board_lines the level goes back to the configured one, the belt is gap again, and the next
    board is found on its own."""
    dim = belt_and_boards(300, 3.0, [])
    lit = belt_and_boards(1500, 14.0, [(1200, 1400, 150.0)], seed=1)
    band = np.concatenate([dim, lit])
    t = Tiler(cfg(3, max_board_lines=400), W, 1)
    run = feed(t, strips_of(band, 50))
    ends = [(b.start_line, b.end_line, b.reason) for b in run.boards()]
    assert ends[0][:2] == (300, 700) and ends[0][2] == "max_length", ends  # the belt taken for board
    assert (1500, 1700, "gap") in ends, ends  # the real board, alone, once the level is back
    covered = sum(b - a for a, b, _ in ends[:-1])
    assert covered >= 400  # the belt lines in between were recorded, never dropped
    assert 17 <= t.foreground_level <= 25
