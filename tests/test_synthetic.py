"""The synthetic scan generator: deterministic, and its ground truth matches its pixels."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import run_cli

from edge_inspect.acquisition.synthetic import (
    DEFECT_TYPES,
    SynthSpec,
    generate_scan,
    generate_scan_with_mask,
    write_synthetic_scans,
)
from edge_inspect.errors import InputDataError

SMALL = SynthSpec(boards=4, defect_rate=1.0, seed=3, width=512, board_lines=(256, 400), gap_lines=(40, 80))
# Enough boards that every hard case turns up, several times over.
HARD = SynthSpec(boards=30, defect_rate=0.7, seed=77, width=512, board_lines=(300, 700), style="hard")
HARD_FEATURES = {"dark_wood", "skew", "uneven_lighting", "touching_previous", "end_knot", "low_contrast_defect"}


@pytest.fixture(scope="module")
def small() -> tuple[np.ndarray, np.ndarray, dict]:
    return generate_scan_with_mask(SMALL)


@pytest.fixture(scope="module")
def hard() -> tuple[np.ndarray, np.ndarray, dict]:
    return generate_scan_with_mask(HARD)


def _grey(scan: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(scan, cv2.COLOR_RGB2GRAY) if scan.shape[2] == 3 else scan[:, :, 0]


def test_same_seed_same_bytes_different_seed_differs() -> None:
    a, gt_a = generate_scan(SMALL)
    b, gt_b = generate_scan(SMALL)
    assert a.tobytes() == b.tobytes()
    assert gt_a == gt_b
    c, _ = generate_scan(SynthSpec(**{**SMALL.__dict__, "seed": 4}))
    assert a.shape != c.shape or a.tobytes() != c.tobytes()


def test_shape_dtype_and_header(small: tuple[np.ndarray, np.ndarray, dict]) -> None:
    scan, mask, gt = small
    assert scan.dtype == np.uint8 and scan.ndim == 3 and scan.shape[2] == 3
    assert scan.shape[:2] == mask.shape == (gt["height"], gt["width"])
    assert gt["format_version"] == 1 and gt["generator"] == "edge-inspect synth"
    assert gt["channels"] == 3 and gt["mask"] == "mask.png"
    assert len(gt["boards"]) == SMALL.boards
    json.dumps(gt)  # must be JSON-able as is


def test_board_extents_match_pixels(small: tuple[np.ndarray, np.ndarray, dict]) -> None:
    scan, mask, gt = small
    grey = _grey(scan)
    bright = grey > 40
    inside = np.zeros(grey.shape[0], dtype=bool)
    prev_end = 0
    for b in gt["boards"]:
        assert prev_end < b["start_line"] < b["end_line"] <= gt["height"]
        assert 0 <= b["x0"] < b["x1"] <= gt["width"]
        assert 0.7 * gt["width"] - 2 <= b["x1"] - b["x0"] <= 0.95 * gt["width"] + 4
        inside[b["start_line"] : b["end_line"]] = True
        region = bright[b["start_line"] : b["end_line"], b["x0"] : b["x1"]]
        near_defect = cv2.dilate(mask[b["start_line"] : b["end_line"], b["x0"] : b["x1"]], np.ones((3, 3), np.uint8))
        # Every line is mostly board; wood away from defects (and from the outermost columns,
        # which the edge wobble may leave uncovered on some lines) is never as dark as the belt.
        assert region.mean(axis=1).min() > 0.9
        assert region[:, 3:-3][near_defect[:, 3:-3] == 0].all()
        # Outside the board's columns the line shows conveyor.
        assert not bright[b["start_line"] : b["end_line"], : max(0, b["x0"] - 2)].any()
        assert not bright[b["start_line"] : b["end_line"], b["x1"] + 2 :].any()
        prev_end = b["end_line"]
    # Scans start and end with gap; gap lines hold no board-bright pixels.
    assert not inside[0] and not inside[-1]
    assert bright[~inside].sum() == 0
    # Board grey levels are in the planed-softwood range.
    wood_grey = grey[inside][mask[inside] == 0]
    assert 90 <= np.median(wood_grey) <= 230


@pytest.mark.parametrize("which", ["small", "hard"])
def test_defects_inside_boards_and_mask_matches_boxes(which: str, request: pytest.FixtureRequest) -> None:
    _, mask, gt = request.getfixturevalue(which)
    boxes = np.zeros(mask.shape, dtype=bool)
    for b in gt["boards"]:
        assert b["defective"] == bool(b["defects"])
        for d in b["defects"]:
            assert d["type"] in DEFECT_TYPES
            x, y, w, h = d["x"], d["y"], d["w"], d["h"]
            assert w >= 1 and h >= 1
            assert b["x0"] <= x and x + w <= b["x1"]
            assert b["start_line"] <= y and y + h <= b["end_line"]
            box = mask[y : y + h, x : x + w] > 0
            # The box is tight: mask pixels touch all four of its sides.
            assert box[0].any() and box[-1].any() and box[:, 0].any() and box[:, -1].any()
            boxes[y : y + h, x : x + w] = True
    assert set(np.unique(mask)) <= {0, 255}
    assert not (mask[~boxes] > 0).any()


def test_defect_rate_extremes() -> None:
    none_scan, none_mask, none_gt = generate_scan_with_mask(SynthSpec(**{**SMALL.__dict__, "defect_rate": 0.0}))
    assert all(not b["defects"] and not b["defective"] for b in none_gt["boards"])
    assert not none_mask.any()
    spec = SynthSpec(boards=8, defect_rate=1.0, seed=11, width=512, board_lines=(256, 300), gap_lines=(32, 40))
    _, mask, gt = generate_scan_with_mask(spec)
    assert all(b["defective"] and 1 <= len(b["defects"]) <= 3 for b in gt["boards"])
    assert mask.any()


def test_defect_sizes_span_small_and_large() -> None:
    spec = SynthSpec(boards=12, defect_rate=1.0, seed=5, width=512, board_lines=(256, 320), gap_lines=(32, 40))
    _, gt = generate_scan(spec)
    defects = [d for b in gt["boards"] for d in b["defects"]]
    assert any(d["w"] < 20 or d["h"] < 20 for d in defects)
    assert any(d["w"] >= 20 and d["h"] >= 20 for d in defects)
    assert len({d["type"] for d in defects}) >= 3


def test_grey_channel() -> None:
    spec = SynthSpec(boards=2, defect_rate=0.5, seed=1, width=256, board_lines=(256, 256), gap_lines=(32, 32), channels=1)
    scan, gt = generate_scan(spec)
    assert scan.shape == (gt["height"], 256, 1) and gt["channels"] == 1
    assert gt["height"] == 2 * 256 + 3 * 32


def test_write_image_and_frames(tmp_path: Path, small: tuple[np.ndarray, np.ndarray, dict]) -> None:
    scan, mask, gt = small
    gt_path = write_synthetic_scans(tmp_path / "img", SMALL, fmt="image")
    assert gt_path == tmp_path / "img" / "ground_truth.json"
    assert json.loads(gt_path.read_text()) == json.loads(json.dumps(gt))
    png = cv2.imread(str(tmp_path / "img" / "scan.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(cv2.cvtColor(png, cv2.COLOR_BGR2RGB), scan)  # colours not swapped
    assert np.array_equal(cv2.imread(str(tmp_path / "img" / "mask.png"), cv2.IMREAD_UNCHANGED), mask)

    write_synthetic_scans(tmp_path / "frm", SMALL, fmt="frames", lines_per_frame=50)
    files = sorted((tmp_path / "frm" / "scan").glob("*.png"))
    assert files[0].name == "frame_000000.png"
    assert len(files) == -(-scan.shape[0] // 50)
    frames = [cv2.imread(str(f), cv2.IMREAD_UNCHANGED) for f in files]
    assert all(f.shape[0] == 50 for f in frames[:-1]) and 1 <= frames[-1].shape[0] <= 50
    joined = cv2.cvtColor(np.concatenate(frames, axis=0), cv2.COLOR_BGR2RGB)
    assert np.array_equal(joined, scan)
    assert (tmp_path / "frm" / "ground_truth.json").is_file() and (tmp_path / "frm" / "mask.png").is_file()


def test_frames_rewrite_removes_stale_frames(tmp_path: Path) -> None:
    spec = SynthSpec(boards=1, defect_rate=0.0, seed=0, width=256, board_lines=(256, 256), gap_lines=(32, 32))
    write_synthetic_scans(tmp_path, spec, fmt="frames", lines_per_frame=16)
    write_synthetic_scans(tmp_path, spec, fmt="frames", lines_per_frame=64)
    assert len(list((tmp_path / "scan").glob("frame_*.png"))) == 320 // 64


def test_grey_written_single_channel(tmp_path: Path) -> None:
    spec = SynthSpec(boards=1, defect_rate=1.0, seed=2, width=256, board_lines=(256, 256), gap_lines=(32, 32), channels=1)
    write_synthetic_scans(tmp_path, spec)
    png = cv2.imread(str(tmp_path / "scan.png"), cv2.IMREAD_UNCHANGED)
    assert png.ndim == 2 and png.shape == (320, 256)


def test_out_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "taken"
    f.write_text("x")
    with pytest.raises(InputDataError):
        write_synthetic_scans(f, SMALL)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"boards": 0}, "boards"),
        ({"seed": -1}, "seed"),
        ({"defect_rate": -0.1}, "defect_rate"),
        ({"defect_rate": 1.5}, "defect_rate"),
        ({"width": 255}, "width"),
        ({"width": 16385}, "width"),
        ({"channels": 2}, "channels"),
        ({"board_lines": (255, 400)}, "board_lines"),
        ({"board_lines": (400, 300)}, "board_lines"),
        ({"gap_lines": (31, 60)}, "gap_lines"),
        ({"gap_lines": (60, 40)}, "gap_lines"),
        ({"board_lines": (300,)}, "board_lines"),
        ({"style": "rough"}, "style"),
    ],
)
def test_bad_spec_raises(changes: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        generate_scan(SynthSpec(**{**SMALL.__dict__, **changes}))


def test_bad_format_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fmt"):
        write_synthetic_scans(tmp_path, SMALL, fmt="tiff")


# ---------------------------------------------------------------------------- the hard style


def _gap_rows(gt: dict) -> np.ndarray:
    """Lines of conveyor only (between boards, and before the first and after the last)."""
    inside = np.zeros(gt["height"], dtype=bool)
    for b in gt["boards"]:
        inside[b["start_line"] : b["end_line"]] = True
    return ~inside


def _wood_band(b: dict) -> slice:
    """Columns that are board on every line of `b`, kept clear of its edges."""
    return slice(max(b["x0_start"], b["x0_end"]) + 12, min(b["x1_start"], b["x1_end"]) - 12)


def test_hard_style_draws_every_case_and_says_so(hard: tuple[np.ndarray, np.ndarray, dict]) -> None:
    _, _, gt = hard
    assert gt["style"] == "hard" and gt["spec"]["style"] == "hard"
    boards = gt["boards"]
    seen = {f for b in boards for f in b["features"]}
    assert seen == HARD_FEATURES
    assert all(b["touching_previous"] == ("touching_previous" in b["features"]) for b in boards)
    assert all((b["skew_deg"] != 0) == ("skew" in b["features"]) for b in boards)
    assert all((b["lighting"] is not None) == ("uneven_lighting" in b["features"]) for b in boards)
    assert all(abs(b["skew_deg"]) <= 1.5 for b in boards)
    # widths of 40-100 % of the camera, anywhere across it, never out of it
    w = gt["width"]
    widths = [(b["x1"] - b["x0"]) / w for b in boards]
    assert min(widths) < 0.55 and max(widths) > 0.98
    assert all(0 <= b["x0"] < b["x1"] <= w for b in boards)
    assert min(b["x0"] for b in boards if b["x1"] - b["x0"] < 0.7 * w) < 0.1 * w
    assert max(b["x1"] for b in boards if b["x1"] - b["x0"] < 0.7 * w) > 0.9 * w


def test_hard_board_edges_at_both_ends_match_pixels(hard: tuple[np.ndarray, np.ndarray, dict]) -> None:
    """The ground truth's columns on a board's first and last line are where the pixels change
    from conveyor to wood, so a skewed board's edges are known at both ends."""
    scan, _, gt = hard
    grey = _grey(scan).astype(np.float32)
    checked = 0
    for b in gt["boards"]:
        for rows, (x0, x1) in ((slice(b["start_line"], b["start_line"] + 3), (b["x0_start"], b["x1_start"])),
                               (slice(b["end_line"] - 3, b["end_line"]), (b["x0_end"], b["x1_end"]))):
            profile = grey[rows].mean(axis=0)
            wood = np.median(profile[x0 + 12 : x1 - 12])
            near = max(0, x0 - 20)  # the search starts on the conveyor beside the board
            for edge, outside in ((x0, profile[max(0, x0 - 40) : max(0, x0 - 3)]), (x1, profile[x1 + 3 : x1 + 40])):
                if outside.size < 10:
                    continue  # the board reaches the side of the image: no conveyor to see there
                level = (np.median(outside) + wood) / 2
                found = near + np.nonzero(profile[near : x1 + 20] >= level)[0]
                found_edge = found.min() if edge == x0 else found.max() + 1
                assert abs(found_edge - edge) <= 2, (b["index"], edge, found_edge)
                checked += 1
        if b["skew_deg"]:
            drift = math.tan(math.radians(b["skew_deg"])) * (b["end_line"] - b["start_line"] - 1)
            assert abs((b["x0_end"] - b["x0_start"]) - drift) <= 4, b
    assert checked >= 2 * len(gt["boards"])


def test_hard_touching_boards_have_no_gap_and_gaps_are_conveyor(hard: tuple[np.ndarray, np.ndarray, dict]) -> None:
    scan, _, gt = hard
    grey = _grey(scan).astype(np.float32)
    gap = _gap_rows(gt)
    belt = float(np.median(grey[gap]))
    assert belt <= 16  # the hard style's conveyor is dark
    bright = (grey > 1.6 * belt).mean(axis=1)
    assert bright[gap].max() < 0.02
    pairs = [(gt["boards"][b["index"] - 1], b) for b in gt["boards"] if b["touching_previous"]]
    assert pairs
    for prev, b in pairs:
        assert b["start_line"] == prev["end_line"]
        assert bright[prev["start_line"] : b["end_line"]].min() > 0.3, b["index"]


def test_hard_dark_wood_is_below_the_old_level_and_above_the_conveyor(hard: tuple[np.ndarray, np.ndarray, dict]) -> None:
    scan, mask, gt = hard
    grey = _grey(scan)
    belt = float(np.median(grey[_gap_rows(gt)]))
    medians = {}
    for b in gt["boards"]:
        rows, cols = slice(b["start_line"] + 10, b["end_line"] - 10), _wood_band(b)
        medians[b["index"]] = float(np.median(grey[rows, cols][mask[rows, cols] == 0]))
    dark = [b for b in gt["boards"] if "dark_wood" in b["features"]]
    assert dark
    for b in dark:
        assert 30 <= b["wood_level"] <= 60
        assert belt + 8 <= medians[b["index"]] <= 62, (b["index"], medians[b["index"]], belt)
    assert min(medians[b["index"]] for b in dark) < 40  # under the old fixed foreground_level
    assert all(medians[b["index"]] >= 90 for b in gt["boards"] if "dark_wood" not in b["features"])


def test_hard_lighting_falls_off_as_the_ground_truth_says(hard: tuple[np.ndarray, np.ndarray, dict]) -> None:
    """The lighting gain lies on the board's lines, conveyor beside it included, so the conveyor
    there against the same columns in the gaps measures it."""
    scan, _, gt = hard
    grey = _grey(scan).astype(np.float64)
    w = gt["width"]
    unlit = grey[_gap_rows(gt)].mean(axis=0)
    t = np.linspace(0.0, 1.0, w)
    spread = 0.0
    for b in gt["boards"]:
        if b["lighting"] is None:
            continue
        tb = t if b["lighting"]["darker_side"] == "right" else t[::-1]
        gain = 1.0 - b["lighting"]["falloff"] * tb**2
        lit = grey[b["start_line"] : b["end_line"]].mean(axis=0)
        sides = [cols for cols in (np.arange(0, b["x0"] - 3), np.arange(b["x1"] + 3, w)) if cols.size >= 20]
        for cols in sides:
            assert abs((lit[cols] / unlit[cols]).mean() - gain[cols].mean()) < 0.03, b["index"]
        if len(sides) == 2:
            spread = max(spread, abs(gain[sides[0]].mean() - gain[sides[1]].mean()))
    assert spread > 0.1  # some lit board shows the fall-off from one side of it to the other


def test_hard_end_knots_are_cut_by_the_end_and_dark(hard: tuple[np.ndarray, np.ndarray, dict]) -> None:
    scan, mask, gt = hard
    grey = _grey(scan)
    knots = [(b, d) for b in gt["boards"] for d in b["defects"] if d["cut_by_end"]]
    assert {d["cut_by_end"] for _, d in knots} == {"start", "end"}
    for b, d in knots:
        assert d["type"] == "knot" and "end_knot" in b["features"]
        if d["cut_by_end"] == "start":
            assert d["y"] == b["start_line"]
        else:
            assert d["y"] + d["h"] == b["end_line"]
        box = (slice(d["y"], d["y"] + d["h"]), slice(d["x"], d["x"] + d["w"]))
        rows = slice(b["start_line"] + 10, b["end_line"] - 10)
        wood = np.median(grey[rows, _wood_band(b)])
        assert grey[box][mask[box] > 0].mean() < 0.6 * wood


def test_hard_low_contrast_defects_are_large_and_a_few_levels_above_the_wood(
        hard: tuple[np.ndarray, np.ndarray, dict]) -> None:
    scan, mask, gt = hard
    grey = _grey(scan).astype(np.float32)
    faint = [d for b in gt["boards"] for d in b["defects"] if d["low_contrast"]]
    assert {d["type"] for d in faint} == {"chalk_mark", "light_stain"}
    for d in faint:
        assert max(d["w"], d["h"]) >= 40
        y, x, h, w = d["y"], d["x"], d["h"], d["w"]
        # The grain runs along the board: the same columns just before and after the mark are
        # the wood under it.
        cols = slice(x, x + w)
        on = mask[y : y + h, cols] > 0
        around = np.concatenate([grey[y - 16 : y - 4, cols], grey[y + h + 4 : y + h + 16, cols]])
        clear = np.concatenate([mask[y - 16 : y - 4, cols], mask[y + h + 4 : y + h + 16, cols]]) == 0
        keep = on.any(axis=0) & clear.all(axis=0)
        marked = (grey[y : y + h, cols] * on).sum(axis=0)[keep] / on.sum(axis=0)[keep]
        lift = float(np.mean(marked - around.mean(axis=0)[keep]))
        assert 1.5 <= lift <= 9.0, (d, lift)


def test_hard_same_seed_same_bytes(hard: tuple[np.ndarray, np.ndarray, dict]) -> None:
    scan, mask, gt = hard
    again, mask2, gt2 = generate_scan_with_mask(HARD)
    assert again.tobytes() == scan.tobytes() and mask2.tobytes() == mask.tobytes() and gt2 == gt
    other, _ = generate_scan(SynthSpec(**{**HARD.__dict__, "seed": 78}))
    assert other.shape != scan.shape or other.tobytes() != scan.tobytes()


def test_synth_cli_style_and_board_lines(tmp_path: Path) -> None:
    r = run_cli("synth", "--out", tmp_path / "h", "--boards", "3", "--width", "256", "--seed", "9",
                "--style", "hard", "--board-lines", "300", "400", "--defect-rate", "1")
    assert r.returncode == 0, r.stderr
    assert "wrote 3 hard boards" in r.stdout
    gt = json.loads((tmp_path / "h" / "ground_truth.json").read_text())
    assert gt["style"] == "hard" and len(gt["boards"]) == 3
    assert all(300 <= b["end_line"] - b["start_line"] <= 400 for b in gt["boards"])
    assert gt == json.loads(json.dumps(generate_scan(SynthSpec(boards=3, width=256, seed=9, style="hard", defect_rate=1.0,
                                                                board_lines=(300, 400)))[1]))
    r = run_cli("synth", "--out", tmp_path / "s", "--boards", "1", "--width", "256")
    assert r.returncode == 0 and json.loads((tmp_path / "s" / "ground_truth.json").read_text())["style"] == "standard"
    r = run_cli("synth", "--out", tmp_path / "x", "--style", "rough")
    assert r.returncode == 2 and "invalid choice: 'rough'" in r.stderr
    r = run_cli("synth", "--out", tmp_path / "x", "--board-lines", "100", "400")
    assert r.returncode == 2 and r.stderr.strip() == "edge-inspect: error: synth: board_lines min must be >= 256, got 100"
    assert "--style {standard,hard}" in run_cli("synth", "--help").stdout
