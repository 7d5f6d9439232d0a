"""The synthetic scan generator: deterministic, and its ground truth matches its pixels."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_inspect.acquisition.synthetic import (
    DEFECT_TYPES,
    SynthSpec,
    generate_scan,
    generate_scan_with_mask,
    write_synthetic_scans,
)
from edge_inspect.errors import InputDataError

SMALL = SynthSpec(boards=4, defect_rate=1.0, seed=3, width=512, board_lines=(256, 400), gap_lines=(40, 80))


@pytest.fixture(scope="module")
def small() -> tuple[np.ndarray, np.ndarray, dict]:
    return generate_scan_with_mask(SMALL)


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


def test_defects_inside_boards_and_mask_matches_boxes(small: tuple[np.ndarray, np.ndarray, dict]) -> None:
    _, mask, gt = small
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
    ],
)
def test_bad_spec_raises(changes: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        generate_scan(SynthSpec(**{**SMALL.__dict__, **changes}))


def test_bad_format_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fmt"):
        write_synthetic_scans(tmp_path, SMALL, fmt="tiff")
