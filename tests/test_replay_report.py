"""The board picture (one renderer for run's heatmaps, the replay report and calibrate's figure),
the ground-truth breakdown per defect type and size, and `replay --report` end to end through
the real CLI on a synthetic scan with the shipped model."""

from __future__ import annotations

import base64
import json
import re
import time
from datetime import datetime, timezone

import cv2
import numpy as np
import pytest
from conftest import DEMO_CAL, DEMO_MODEL, run_cli
from test_cli import config_file

from edge_inspect.acquisition.ground_truth import compare
from edge_inspect.decision.calibration_file import Calibration, load_calibration
from edge_inspect.inference.manifest import sha256_file
from edge_inspect.decision.verdict import Verdict
from edge_inspect.monitoring.board_view import (
    BoardPicture,
    heat_colours,
    heatmap_name,
    montage,
    render_board,
    scan_label,
)
from edge_inspect.monitoring.replay_report import ReportCollector, histogram_svg
from edge_inspect.tiling.events import TileMeta


def _verdict(board_id: int, scores: list[float], verdict: str = "accept", start: int = 0, **kw) -> Verdict:
    metas = [TileMeta(board_id, 0, i, 64 * i, 0) for i in range(len(scores))]
    base = dict(board_id=board_id, source="s", start_line=start, end_line=start + 64, width=64 * len(scores),
                n_tiles=len(scores), score=max(scores), verdict=verdict, reasons=["why"] if verdict == "reject" else [],
                defects=[], incomplete=False, t_first_line_ns=0, t_verdict_ns=time.monotonic_ns(), model="m",
                calibration="c", tile_scores=np.array(scores, np.float32), tile_metas=metas)
    base.update(kw)
    return Verdict(**base)


def test_board_picture_heat_boxes_caption_and_colour_bar():
    v = _verdict(7, [0.1, 1.0, 2.5], "reject", start=1200,
                 defects=[{"x": 128, "y": 0, "w": 64, "h": 64, "peak_score": 2.5, "tiles": 1}])
    pic = BoardPicture.from_verdict(v, 1.0, 64, "day1/scan.png")
    pic.truth = [{"type": "knot", "x": 140, "y": 10, "w": 20, "h": 20}]
    image = np.full((32, 96, 3), 128, np.uint8)  # the board at half size: 64 lines x 192 columns
    out = render_board(pic, image, 2)
    h, w = out.shape[:2]
    assert w == 440 and h > 32 + 60  # narrow boards get a canvas wide enough for the caption
    white = (out == 255).all(axis=2)
    board_y = next(y for y in range(h) if not white[y, 5:90].any())  # first row of the board itself
    assert not white[:board_y, 8:200].all()  # the caption's text above it
    assert not white[board_y + 33:, 300:].all()  # ... and the colour bar below it, wider than the board
    row = out[board_y + 10].astype(int)
    low, thr, high = row[16], row[48], row[75]  # tiles of 0.1, 1.0 and 2.5 x threshold (BGR)
    assert low[0] > low[2] and high[2] > high[0]          # blue below, red above the threshold
    assert thr[1] > thr[0] + 30 and thr[1] > thr[2] + 30   # the threshold is mid-scale: green
    assert (out[board_y:board_y + 32, 64:96] == (255, 0, 255)).all(axis=2).any()  # the detected region box
    assert (out[board_y:board_y + 32, 64:96] == (0, 200, 0)).all(axis=2).any()    # the known defect box
    bar = out[-40:]
    assert (np.abs(bar.astype(int) - heat_colours(np.array([0.0]))[0]).sum(axis=-1) < 10).any()  # bar's blue end


def test_heatmap_name_says_board_and_utc_time():
    when = datetime(2026, 11, 30, 10, 15, 0, 123456, tzinfo=timezone.utc)
    assert heatmap_name(42, when) == "board00000042_20261130T101500.123Z.png"
    assert scan_label("/data/day1/scan.png") == "day1/scan.png"


def test_montage_lays_pictures_in_a_grid():
    a, b, c = (np.zeros((10, 20, 3), np.uint8), np.zeros((30, 10, 3), np.uint8), np.zeros((5, 5, 3), np.uint8))
    m = montage([a, b, c], columns=2, gap=4)
    assert m.shape == (30 + 4 + 5, 2 * (20 + 4), 3)


def test_collector_keeps_bounded_pictures_first_rejects_and_closest_good():
    cal = Calibration(version="v", created="t", score="s", tile_threshold=1.0)
    col = ReportCollector(cal, 64, max_rejects=2, near_threshold=3)
    col.begin_scan(__import__("pathlib").Path("day/scan.png"), None)
    image = np.full((8, 24, 3), 100, np.uint8)
    goods = [0.2, 0.9, 0.5, 0.95, 0.1, 0.7]
    bid = 0
    for i, g in enumerate(goods):
        for s, fate in ((g, "accept"), (1.5 + i, "reject")):
            bid += 1
            v = _verdict(bid, [s], fate)
            col.verdict(v, None)
            col.board_image(v, image, 8)
    assert [c.board_id for c in col.rejects] == [2, 4] and col.rejects_not_shown == 4
    assert [round(c.score, 2) for c in col.near] == [0.95, 0.9, 0.7]
    assert len(col.scores) == 12 and sum(r for _, r in col.scores) == 6
    assert all(c.jpeg[:2] == b"\xff\xd8" for c in col.rejects + col.near)


def test_histogram_marks_the_threshold_and_counts_boards():
    svg = histogram_svg([(0.2, False), (0.3, False), (0.9, True)], 0.5, "threshold 0.5000", "board score")
    assert svg.startswith("<svg") and "threshold 0.5000" in svg
    assert "accepted (2)" in svg and "rejected (1)" in svg
    assert len(re.findall(r'fill="#c33"', svg)) == 2  # one bar and the legend swatch


def test_truth_breakdown_per_type_and_size_with_location():
    truth = {"boards": [
        {"index": 0, "start_line": 0, "end_line": 500, "defects": [
            {"type": "knot", "x": 100, "y": 200, "w": 30, "h": 30},     # 20-49 px, inside the region
            {"type": "crack", "x": 400, "y": 50, "w": 8, "h": 120}]},   # < 20 px, outside it
        {"index": 1, "start_line": 600, "end_line": 1100, "defects": [
            {"type": "knot", "x": 10, "y": 700, "w": 60, "h": 80}]},    # >= 50 px, board accepted
        {"index": 2, "start_line": 1200, "end_line": 1700, "defects": []}]}
    records = [
        {"start_line": 0, "end_line": 500, "verdict": "reject",
         "defects": [{"x": 64, "y": 128, "w": 128, "h": 128}]},
        {"start_line": 600, "end_line": 1100, "verdict": "accept", "defects": []},
        {"start_line": 1200, "end_line": 1700, "verdict": "accept", "defects": []}]
    c = compare(records, truth)
    assert (c.defective, c.defective_rejected, c.good, c.good_rejected) == (2, 1, 1, 0)
    knot = c.by_type["knot"]
    assert (knot["20-49 px"].defects, knot["20-49 px"].board_rejected, knot["20-49 px"].located) == (1, 1, 1)
    assert (knot[">= 50 px"].defects, knot[">= 50 px"].board_rejected, knot[">= 50 px"].located) == (1, 0, 0)
    crack = c.by_type["crack"]["< 20 px"]
    assert (crack.defects, crack.board_rejected, crack.located) == (1, 1, 0)


@pytest.mark.slow
def test_replay_report_end_to_end(tmp_path, small_scan):
    report = tmp_path / "report"
    r = run_cli("replay", small_scan, "--config", config_file(tmp_path), "--out", tmp_path / "rec",
                "--report", report)
    assert r.returncode == 0, r.stderr
    assert f"report: {report / 'report.html'}" in r.stdout.splitlines()
    page = (report / "report.html").read_text()
    records = [json.loads(x) for x in (tmp_path / "rec" / "boards.jsonl").read_text().splitlines()]
    truth = json.loads((small_scan.parent / "ground_truth.json").read_text())
    rejected = [x for x in records if x["verdict"] == "reject"]
    accepted = [x for x in records if x["verdict"] == "accept"]
    assert rejected and accepted
    # self-contained: no scripts, no stylesheets or images fetched from anywhere
    assert "<script" not in page and "<link" not in page and "url(" not in page
    srcs = re.findall(r'src="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/jpeg;base64,") for s in srcs)
    assert len(srcs) == len(rejected) + min(6, len(accepted))
    for s in srcs:  # every embedded picture decodes, and is a board picture
        img = cv2.imdecode(np.frombuffer(base64.b64decode(s.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape[1] >= 440
    # summary, ground truth per type and size, histogram with the threshold, gallery captions
    shipped = load_calibration(DEMO_CAL)  # the report names the model and calibration it ran with
    assert f"<b>{len(records)}</b> boards" in page and f"sha256 {sha256_file(DEMO_MODEL)[:12]}" in page
    assert shipped.version in page and f"tile threshold {shipped.tile_threshold:.4f}" in page
    types = {d["type"] for b in truth["boards"] for d in b["defects"]}
    assert all(f"<td>{t}</td>" in page for t in types)
    assert f"threshold {shipped.tile_threshold:.4f}</text>" in page  # the histogram marks it
    label = f"{small_scan.parent.name}/scan.png"
    for rec in rejected:
        assert f"<b>board {rec['board_id']}</b> &middot; {label} lines {rec['start_line']}-{rec['end_line']}" in page
    closest = sorted(accepted, key=lambda x: -x["score"])[:6]
    shown = re.findall(r"<b>board (\d+)</b>", page.split("closest to the threshold")[1])
    assert [int(b) for b in shown] == [x["board_id"] for x in closest]
