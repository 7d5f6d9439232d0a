"""Boards as they are (issue 14): tiles follow the board across the width (skew, dark knots near
an edge, a board narrower than a tile, a defect on the very edge), dark wood does not end a
board, and every piece of material gets a record (fragments, a board in view at the start,
touching boards)."""

from __future__ import annotations

import json

import cv2
import numpy as np
from conftest import DEMO_CAL, DEMO_MODEL, run_cli
from test_tiling import feed, make_cfg, strips_of

from edge_inspect.tiling.lateral import board_extent
from edge_inspect.tiling.segmenter import foreground_mask
from edge_inspect.tiling.tiler import Tiler, _step_at

T = 32
CONVEYOR, WOOD = 15, 180


def scene(n: int, w: int, boards: list[tuple[int, int, int, int, float]], seed: int = 0) -> np.ndarray:
    """Grey scan: noisy dark conveyor, boards (y0, y1, x0, x1, skew px/line) of noisy bright wood."""
    rng = np.random.default_rng(seed)
    img = rng.normal(CONVEYOR, 2.0, (n, w))
    for y0, y1, x0, x1, skew in boards:
        for y in range(y0, y1):
            d = int(round(skew * (y - y0)))
            img[y, max(0, x0 + d):min(w, x1 + d)] = rng.normal(WOOD, 6.0, min(w, x1 + d) - max(0, x0 + d))
    return np.clip(img, 0, 255).astype(np.uint8)[..., None]


def tiles_of(run) -> list:
    return [(m, px) for m, px in run.tiles]


def test_skewed_board_tiles_follow_it_and_see_no_conveyor():
    band = scene(700, 200, [(100, 600, 40, 160, 0.04)])  # the board drifts 20 px to the right
    run = feed(Tiler(make_cfg(foreground_level=40, exit_fraction=0.05), 200, 1), strips_of(band, 64))
    (b,) = run.boards()
    rows: dict[int, list] = {}
    for m, px in tiles_of(run):
        rows.setdefault(m.row, []).append((m, px))
        assert px.min() > 40, (m, px.min())  # conveyor (and its sliver at a skewed edge) filled
        assert m.bx >= 0
    first = [m.x for m, _ in rows[0]]
    last = [m.x for m, _ in rows[max(rows)]]
    assert first[0] in range(40, 44) and last[0] in range(56, 64)  # the left edge drifted with the board
    assert first[-1] + T in range(158, 163) and last[-1] + T in range(176, 181)


def test_dark_knot_near_an_edge_does_not_cut_the_board():
    band = scene(400, 300, [(50, 350, 50, 250, 0.0)])
    band[150:200, 58:85] = 12  # a dark knot 8 px inside the left edge, 27 px wide
    fg = foreground_mask(band[150:182], 40)
    assert board_extent(fg, close_px=32) == (50, 250)
    run = feed(Tiler(make_cfg(foreground_level=40), 300, 1), strips_of(band, 64))
    assert min(m.x for m, _ in tiles_of(run)) == 50  # every row starts at the board's edge


def test_a_dark_knot_wider_than_edge_close_inside_a_board_does_not_cut_it():
    """A 70-px dark knot (dark wood's knots fall under the foreground level) splits the board's
    columns in two wide runs: the board still spans both, so no seam is seen, the tile rows over
    the knot still start at the board's edge and the knot is scored, not filled (a regression:
    the widest run alone was the board); a speck on the conveyor is still not board."""
    band = scene(600, 300, [(50, 550, 60, 280, 0.0)])
    band[200:320, 120:190] = 12
    band[200:320, 5:15] = 200  # a bright speck on the conveyor, 10 px wide, 45 px from the board
    assert board_extent(foreground_mask(band[200:232], 40), close_px=32) == (60, 280)
    for size in (7, 64, 600):
        run = feed(Tiler(make_cfg(foreground_level=40, exit_fraction=0.05, min_board_lines=150), 300, 1),
                   strips_of(band, size))
        assert [(b.start_line, b.end_line, b.reason) for b in run.boards()] == [(50, 550, "gap")]
        over_knot = [(m, px) for m, px in tiles_of(run) if 200 < 50 + m.y + T and 50 + m.y < 320]
        assert over_knot and min(m.x for m, _ in over_knot) == 60
        assert min(int(px.min()) for _, px in over_knot) == 12  # the knot reaches the model


def test_board_narrower_than_a_tile_gets_one_centred_tile_of_its_own_wood():
    band = scene(300, 120, [(50, 250, 60, 80, 0.0)])  # 20 px wide
    run = feed(Tiler(make_cfg(foreground_level=40, enter_fraction=0.1, exit_fraction=0.05), 120, 1),
               strips_of(band, 64))
    (b,) = run.boards()
    assert b.width == 20
    xs = {m.x for m, _ in tiles_of(run)}
    assert xs == {54}  # (60 + 80 - 32) // 2
    assert all(px.min() > 40 for _, px in tiles_of(run))  # beside it: the board mirrored, no conveyor


def test_a_defect_on_the_very_edge_is_scored_beyond_the_edge_band():
    """Decided: in the outermost 8 px of each side, pixels as dark as the conveyor are taken for
    conveyor (skew, a ragged edge) and filled; a dark defect reaching the edge is scored from 8 px
    inside it, and anything brighter than the conveyor up to the edge."""
    band = scene(300, 200, [(50, 250, 40, 160, 0.0)])
    band[100:140, 40:60] = 10   # a dark defect on the left edge, 20 px deep
    band[100:140, 150:160] = 250  # a bright one on the right edge
    run = feed(Tiler(make_cfg(foreground_level=40), 200, 1), strips_of(band, 64))
    for m, px in tiles_of(run):
        y0 = 50 + m.y
        if m.x == 40 and y0 <= 100 and y0 + T >= 140:  # the left edge tile over the dark defect
            rows = slice(100 - y0, 140 - y0)
            assert (px[rows, 0:8] > 40).all()      # edge band: filled
            assert (px[rows, 8:20] == 10).all()    # beyond it: the defect as the camera saw it
        if m.x + T == 160 and y0 <= 100 and y0 + T >= 140:
            assert (px[100 - y0:140 - y0, T - 10:] == 250).all()  # bright: kept up to the edge


def test_dark_wood_and_a_dark_streak_do_not_end_a_board():
    band = scene(900, 256, [(100, 800, 20, 236, 0.0)])
    board = band[100:800, 20:236]
    board[:] = np.clip(board.astype(int) - 145, 0, 255).astype(np.uint8)  # dark wood: about 35
    band[400:460, 30:220] = 18  # a black stain across 88 % of the board for 60 lines (> min_gap_lines)
    tiler = Tiler(make_cfg(foreground_level=30, enter_fraction=0.25, exit_fraction=0.05, min_gap_lines=16), 256, 1)
    run = feed(tiler, strips_of(band, 64))
    assert [(b.start_line, b.end_line, b.reason) for b in run.boards()] == [(100, 800, "gap")]


def test_touching_boards_are_one_record_and_long_material_is_split():
    band = scene(2600, 64, [(100, 1100, 0, 64, 0.0), (1100, 2400, 0, 64, 0.0)])  # end to end, no gap
    run = feed(Tiler(make_cfg(foreground_level=40, max_board_lines=1000), 64, 1), strips_of(band, 50))
    assert [(b.start_line, b.end_line, b.reason) for b in run.boards()] == [
        (100, 1100, "max_length"), (1100, 2100, "max_length"), (2100, 2400, "gap")]


def _cfg(tmp_path) -> str:
    p = tmp_path / "cfg.yaml"
    p.write_text(f"camera: {{lines_per_frame: 64}}\n"
                 f"tiling: {{segmenter: {{foreground_level: 30, min_board_lines: 256}}}}\n"
                 f"inference: {{backend: {{type: onnxruntime, model: {DEMO_MODEL}}}}}\n"
                 f"decision: {{calibration: {DEMO_CAL}}}\n")
    return str(p)


def test_every_piece_of_material_gets_a_record_through_replay(tmp_path):
    """A board in view when the scan starts (its start unseen), a short piece of wood (a
    fragment) and a whole board: three records; the first two rejected with their reason."""
    rgb = scene(1400, 320, [(0, 300, 20, 300, 0.0), (420, 520, 40, 290, 0.0), (700, 1200, 30, 300, 0.0)], seed=3)
    path = tmp_path / "scan.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgb[..., 0], cv2.COLOR_GRAY2BGR))
    r = run_cli("replay", path, "--config", _cfg(tmp_path), "--out", tmp_path / "rec")
    assert r.returncode == 0, r.stderr[-2000:]
    recs = [json.loads(x) for x in (tmp_path / "rec" / "boards.jsonl").read_text().splitlines()]
    assert [(x["start_line"], x["end_line"]) for x in recs] == [(0, 300), (420, 520), (700, 1200)]
    assert recs[0]["verdict"] == "reject" and recs[0]["incomplete"]  # its start was never seen
    assert "start not seen" in recs[0]["reasons"][-1]
    assert recs[1]["verdict"] == "reject" and any(x.startswith("fragment: 100 lines") for x in recs[1]["reasons"])
    assert not recs[2]["incomplete"] and recs[2]["n_tiles"] > 0
    assert "fragment" in r.stderr  # and a log line says so


def test_touching_boards_of_different_extent_are_told_apart_at_the_seam():
    """Butted end to end with no gap, two boards of different width and position are two
    records, split where the board changes (within a few lines, whether the next board is
    narrower or wider); tiles never straddle the seam."""
    narrowing = scene(1500, 200, [(100, 700, 20, 180, 0.0), (700, 1300, 50, 150, 0.0)])
    widening = scene(1500, 200, [(100, 700, 50, 150, 0.0), (700, 1300, 20, 180, 0.0)], seed=1)
    for band, size in [(narrowing, 7), (narrowing, 64), (narrowing, 500), (widening, 7), (widening, 500)]:
        run = feed(Tiler(make_cfg(foreground_level=40, exit_fraction=0.05), 200, 1), strips_of(band, size))
        ends = [(b.start_line, b.end_line, b.reason, b.incomplete) for b in run.boards()]
        assert len(ends) == 2 and ends[0][2] == "seam" and ends[1][2] == "gap", ends
        assert abs(ends[0][1] - 700) <= 3 and ends[1][0] == ends[0][1] and not ends[1][3]
        for m, px in tiles_of(run):  # every tile lies within its own board's lines and columns
            b = run.boards()[m.board_id - 1]
            assert 0 <= m.y and b.start_line + m.y + T <= b.end_line
            assert px.min() > 40  # wood only


def test_seam_found_only_when_the_board_ends_leaves_the_segmenter_in_step():
    """The second of two butted boards is too short for its seam to be confirmed while it runs:
    the seam is found when the gap ends it. The boards after it are still segmented (a
    regression: the segmenter was restarted at that seam although it had already moved on)."""
    band = scene(2000, 200, [(100, 700, 20, 180, 0.0), (700, 820, 50, 150, 0.0), (1000, 1400, 20, 180, 0.0),
                             (1600, 1900, 20, 180, 0.0)])
    for size in (7, 64, 500, 2000):
        run = feed(Tiler(make_cfg(foreground_level=40, exit_fraction=0.05, min_board_lines=50), 200, 1),
                   strips_of(band, size))
        ends = [(b.start_line, b.end_line, b.reason) for b in run.boards()]
        assert len(ends) == 4, (size, ends)
        assert ends[0][2] == "seam" and abs(ends[0][1] - 700) <= 3 and ends[1][0] == ends[0][1]
        assert [e[1:] for e in ends[1:]] == [(820, "gap"), (1400, "gap"), (1900, "gap")], (size, ends)


def test_a_dark_end_knot_or_a_short_butted_piece_is_merged_not_split_off():
    """A dark knot across part of a board's first or last lines moves its lateral extent like a
    seam would; a piece shorter than min_board_lines on either side of such a change is no board
    of its own, so it stays with the board it touches (one record, no fragment), while two
    butted boards both long enough are still split (a regression: hard synthetic boards with an
    end knot were recorded as a 33-line fragment plus the rest)."""
    def knotted(y0: int, y1: int) -> np.ndarray:
        band = scene(1000, 200, [(100, 700, 20, 180, 0.0)])
        band[y0:y1, 20:80] = 10  # darker than the conveyor level: not board
        return band

    short_first = scene(1000, 200, [(100, 220, 50, 150, 0.0), (220, 800, 20, 180, 0.0)], seed=2)
    short_last = scene(1000, 200, [(100, 680, 20, 180, 0.0), (680, 800, 50, 150, 0.0)], seed=3)
    cases = [(knotted(100, 230), (100, 700)), (knotted(570, 700), (100, 700)), (short_first, (100, 800)),
             (short_last, (100, 800))]
    for band, want in cases:
        for size in (7, 64, 500, 1000):
            run = feed(Tiler(make_cfg(foreground_level=40, exit_fraction=0.05, min_board_lines=150), 200, 1),
                       strips_of(band, size))
            ends = [(b.start_line, b.end_line, b.reason) for b in run.boards()]
            assert ends == [(*want, "gap")], (want, size, ends)
    both_long = scene(1000, 200, [(100, 400, 20, 180, 0.0), (400, 800, 50, 150, 0.0)], seed=4)
    for size in (7, 64, 1000):
        run = feed(Tiler(make_cfg(foreground_level=40, exit_fraction=0.05, min_board_lines=150), 200, 1),
                   strips_of(both_long, size))
        ends = [(b.start_line, b.end_line, b.reason) for b in run.boards()]
        assert len(ends) == 2 and ends[0][2] == "seam" and abs(ends[0][1] - 400) <= 3, (size, ends)


def test_seam_stays_on_its_line_when_the_old_board_fades_under_the_level():
    """Dark wood whose last lines fall partly under the foreground level (its darker side, its
    shaded end) must not pull the seam early: the votes are centred on what the two boards'
    lines really show (a regression: the seam was put a few lines early, and the next board's
    record then overlapped this one)."""
    band = scene(1500, 200, [(100, 700, 20, 180, 0.0), (700, 1300, 50, 150, 0.0)], seed=5)
    rng = np.random.default_rng(6)
    for y in range(100, 700):  # its darker side: a third of the columns only it has under the level,
        share = 0.35 + 0.25 * max(0, y - 690) / 10  # and more in its last 10 lines
        for lo, hi in ((20, 50), (150, 180)):
            dark = rng.random(hi - lo) < share
            band[y, lo:hi][dark] = 20
    for size in (7, 64, 500):
        run = feed(Tiler(make_cfg(foreground_level=40, exit_fraction=0.05), 200, 1), strips_of(band, size))
        ends = [(b.start_line, b.end_line, b.reason) for b in run.boards()]
        assert len(ends) == 2 and ends[0][2] == "seam" and abs(ends[0][1] - 700) <= 1, (size, ends)


def test_butted_boards_in_a_row_every_tile_inside_its_own_board():
    """Continuous material: many butted boards of changing widths, each seam anywhere in its
    32-line block (also in the block before the one that shows the change). No tile row is cut
    past a seam waiting for min_board_lines to follow it (a regression: a row crossed such a
    seam, then read lines the band no longer held and the service's tiling stage failed)."""
    rng = np.random.default_rng(11)
    boards, y = [], 50
    for k in range(14):
        n = int(rng.integers(200, 420))
        x0, x1 = (20, 180) if k % 2 == 0 else (int(rng.integers(45, 70)), int(rng.integers(130, 155)))
        boards.append((y, y + n, x0, x1, 0.0))
        y += n
    band = scene(y + 100, 200, boards, seed=12)
    for size in (7, 64, 100):
        run = feed(Tiler(make_cfg(foreground_level=40, exit_fraction=0.05, min_board_lines=150,
                                  max_board_lines=100000, stride=16), 200, 1), strips_of(band, size))
        ends = [(b.start_line, b.end_line) for b in run.boards()]
        assert len(ends) == len(boards), (size, ends)
        assert all(abs(e[1] - b[1]) <= 3 for e, b in zip(ends, boards)), (size, ends)
        by_id = {b.board_id: b for b in run.boards()}
        for m, px in tiles_of(run):
            b = by_id[m.board_id]
            assert b.start_line + m.y + T <= b.end_line, (size, m, b)
            assert px.min() > 40


def test_butted_boards_of_the_same_width_but_another_shade_are_split():
    """Same extent, no gap: a board of grey 180 butted to one of grey 120 is two records, split
    where the shade steps; a line's shade is its median across the board, so a pale stain over
    less than half the width (its line means 18 % brighter) is one board, as is a board whose
    shade changes by 16 %."""
    band = scene(1500, 200, [(100, 700, 20, 180, 0.0), (700, 1300, 20, 180, 0.0)], seed=7)
    band[700:1300, 20:180] = (band[700:1300, 20:180].astype(np.float32) * (120 / 180)).astype(np.uint8)
    stained = scene(1500, 200, [(100, 1300, 20, 180, 0.0)], seed=8)
    stained[400:600, 40:110] = 255  # 70 of 160 columns far brighter for 200 lines: mean +18 %
    shaded = scene(1500, 200, [(100, 1300, 20, 180, 0.0)], seed=9)
    shaded[700:1300, 20:180] = (shaded[700:1300, 20:180].astype(np.float32) * 0.84).astype(np.uint8)
    for size in (7, 64, 500):
        cfg = make_cfg(foreground_level=40, exit_fraction=0.05, min_board_lines=150, max_board_lines=100000)
        ends = [(b.start_line, b.end_line, b.reason) for b in feed(Tiler(cfg, 200, 1), strips_of(band, size)).boards()]
        assert len(ends) == 2 and ends[0][2] == "seam" and abs(ends[0][1] - 700) <= 1, (size, ends)
        for one in (stained, shaded):
            ends = [(b.start_line, b.end_line, b.reason) for b in feed(Tiler(cfg, 200, 1), strips_of(one, size)).boards()]
            assert ends == [(100, 1300, "gap")], (size, ends)


def shade_ends(band: np.ndarray, y0: int, y1: int, x0: int, x1: int, depth: float = 0.10) -> None:
    """A board's sawn ends: a line d lines from either end `depth` x exp(-d / 6) darker (the way
    the synthetic generator draws them)."""
    for y in range(y0, y1):
        d = min(y - y0, y1 - 1 - y)
        band[y, x0:x1] = (band[y, x0:x1] * (1.0 - depth * np.exp(-d / 6.0))).astype(np.uint8)


# Per-line shade (median across the board) of the 64 lines the tiler searched for the seam between
# boards 28 and 29 of the hard-case scan of seed 86001, from line 26529: dark wood whose sawn end
# fades over its last 10 lines, then the darker board butted to it from line 26581.
SEED_86001_SHADES = [49.0, 50.0, 49.0, 49.0, 49.5, 50.0, 50.0, 49.0, 50.0, 49.0, 49.0, 50.0, 49.0, 50.0, 49.0,
                     49.0, 49.0, 50.0, 49.0, 49.0, 50.0, 49.0, 49.0, 49.0, 49.0, 49.0, 49.0, 49.5, 49.0, 49.0,
                     49.0, 49.0, 49.0, 49.0, 49.0, 49.0, 49.0, 49.0, 49.0, 49.0, 49.0, 49.0, 48.5, 48.0, 47.0,
                     47.0, 47.0, 47.0, 46.0, 46.0, 45.0, 44.0, 29.0, 30.0, 30.0, 31.0, 31.0, 31.0, 31.0, 31.0,
                     31.0, 32.0, 32.0, 32.0]


def test_a_seam_step_is_on_the_change_wherever_it_lies_in_the_window():
    """The change late in the window, after a fading end: the seam is on its line. A regression:
    the step was placed where the fading end crossed the midpoint of the two blocks' medians; with
    the change late in the second block that median was still the old board's, and the seam came
    8 lines early (26573), so the next board's record overlapped this one."""
    assert _step_at(-np.array(SEED_86001_SHADES), 26529) == 26581
    rng = np.random.default_rng(15)
    for at in (1, 5, 20, 32, 44, 59, 63):  # foreground votes rising anywhere, with noise
        votes = np.r_[np.zeros(at), np.full(64 - at, 80.0)] + rng.normal(0, 3, 64)
        assert _step_at(votes, 1000) == 1000 + at, at


def test_butted_boards_alike_in_width_and_shade_are_split_at_their_joint():
    """Same extent, shade within 25 %, no gap: the joint (sawn ends darker than the face for a
    few lines on each side, across the board) splits them within a line, whether the board after
    it is as bright, brighter or darker. A crack across the whole board two lines wide, a hole
    across it four lines wide (shorter than a gap), a dark band across 40 % of the width, a wide darker band across all of it, a step 15 % darker that
    lightens again over 20 lines, and boards whose ends are not shaded stay one record."""
    def butted(scale: float, seed: int, shaded: bool = True) -> np.ndarray:
        band = scene(1500, 200, [(100, 700, 20, 180, 0.0), (700, 1300, 20, 180, 0.0)], seed=seed)
        band[700:1300, 20:180] = (band[700:1300, 20:180] * scale).astype(np.uint8)
        if shaded:
            shade_ends(band, 100, 700, 20, 180)
            shade_ends(band, 700, 1300, 20, 180)
        return band

    def one_board(seed: int) -> np.ndarray:
        band = scene(1500, 200, [(100, 1300, 20, 180, 0.0)], seed=seed)
        shade_ends(band, 100, 1300, 20, 180)
        return band

    crack, hole, knot, ring, step = (one_board(seed) for seed in (14, 21, 15, 16, 20))
    crack[700:702, 20:180] = (crack[700:702, 20:180] * 0.75).astype(np.uint8)  # 2 lines, 25 % darker
    hole[700:704, 20:180] = 10                                             # 4 lines as dark as the belt
    knot[690:712, 20:84] = (knot[690:712, 20:84] * 0.6).astype(np.uint8)   # 64 of 160 columns
    ring[650:710, 20:180] = (ring[650:710, 20:180] * 0.88).astype(np.uint8)  # 60 lines, 12 % darker
    lighten = np.linspace(0.85, 1.0, 20)[:, None, None]
    step[700:720, 20:180] = (step[700:720, 20:180] * lighten).astype(np.uint8)
    cfg = make_cfg(foreground_level=40, exit_fraction=0.05, min_board_lines=150, max_board_lines=100000)
    for size in (7, 64, 500):
        for band in (butted(1.0, 13), butted(1.15, 17), butted(0.85, 18)):
            ends = [(b.start_line, b.end_line, b.reason) for b in feed(Tiler(cfg, 200, 1), strips_of(band, size)).boards()]
            assert len(ends) == 2 and ends[0][2] == "seam" and abs(ends[0][1] - 700) <= 1, (size, ends)
            assert ends[1] == (ends[0][1], 1300, "gap"), (size, ends)
        for one in (crack, hole, knot, ring, step, butted(1.0, 19, shaded=False)):
            ends = [(b.start_line, b.end_line, b.reason) for b in feed(Tiler(cfg, 200, 1), strips_of(one, size)).boards()]
            assert ends == [(100, 1300, "gap")], (size, ends)


def test_butted_boards_of_another_shade_are_split_on_the_line_of_the_change():
    """Boards of shades more than SHADE_JUMP apart, butted, split on the line where the shade
    changes, wherever that lies in a seam block. Two regressions:
    * darker wood with shaded ends, then brighter wood whose end is shaded only 4 %: the joint
      test found the joint in the block holding both, and a line or two early passed as deeper
      (seed 86001, board 48, pale wood butted to dark: the split came a line late);
    * 30 % darker wood, ends not shaded, the change mid-block: that block's shade lay halfway,
      the board's shade followed it as drift, and the next block was no jump from it either:
      one record for both boards."""
    cfg = make_cfg(foreground_level=40, exit_fraction=0.05, min_board_lines=150, max_board_lines=100000)
    for first, second, depth in ((1 / 1.4, 1.0, 0.04), (1.0, 0.7, 0.0)):
        for joint in range(690, 722, 3):
            band = scene(1500, 200, [(100, joint, 20, 180, 0.0), (joint, 1300, 20, 180, 0.0)], seed=joint)
            band[100:joint, 20:180] = (band[100:joint, 20:180] * first).astype(np.uint8)
            band[joint:1300, 20:180] = (band[joint:1300, 20:180] * second).astype(np.uint8)
            shade_ends(band, 100, joint, 20, 180, 0.10 if depth else 0.0)
            shade_ends(band, joint, 1300, 20, 180, depth)
            ends = [(b.start_line, b.end_line, b.reason) for b in feed(Tiler(cfg, 200, 1), strips_of(band, 64)).boards()]
            assert ends == [(100, joint, "seam"), (joint, 1300, "gap")], (first, second, joint, ends)
