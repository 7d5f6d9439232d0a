"""One picture of a board for everyone who looks at one: `run`'s heatmap PNGs, the replay
report's gallery and calibrate's worst-boards figure. The board (downscaled) with each tile's
score blended over it as a heat colour (the threshold at the middle of the scale, red at twice
the threshold), tiles over the threshold framed, detected regions and known defects boxed, a
caption (board, where in the scan, score against threshold, verdict, reasons) and a colour bar
with the threshold and the board's score marked, so a picture read on its own says what it
shows. OpenCV only: the service draws in its writer thread and needs no matplotlib."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

from edge_inspect.decision.verdict import Verdict

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TEXT = 0.45           # font scale of captions
_LINE = 18             # caption line height, px
_MIN_WIDTH = 440       # narrower boards get a wider canvas, so the caption fits
_BAR_H = 14
_REGION = (255, 0, 255)    # BGR: detected region (tiles over the threshold, 8-connected)
_TRUTH = (0, 200, 0)       # BGR: a known defect (synth ground truth)
_REJECT = (0, 0, 200)
_ACCEPT = (0, 140, 0)


@dataclass
class BoardPicture:
    """What is drawn: tile positions and boxes in board pixels (x: camera column, y: lines from
    the board's first line), scores on the calibration's scale."""

    board_id: int
    start_line: int
    end_line: int
    score: float
    threshold: float
    verdict: str
    reasons: list[str]
    tile_x: np.ndarray
    tile_y: np.ndarray
    tile_scores: np.ndarray
    tile_size: int
    defects: list[dict] = field(default_factory=list)   # detected regions: x, y, w, h
    truth: list[dict] = field(default_factory=list)     # known defects: type, x, y, w, h
    source: str = ""

    @classmethod
    def from_verdict(cls, v: Verdict, threshold: float, tile_size: int, source: str = "") -> BoardPicture:
        return cls(v.board_id, v.start_line, v.end_line, v.score, threshold, v.verdict, list(v.reasons),
                   np.array([m.x for m in v.tile_metas], np.int64), np.array([m.y for m in v.tile_metas], np.int64),
                   np.asarray(v.tile_scores, np.float32), tile_size, list(v.defects), [], source)


def scan_label(path: str | Path) -> str:
    """A scan's name with its folder: every synth scan is called scan.png."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}" if p.parent.name else p.name


def heatmap_name(board_id: int, when: datetime) -> str:
    """`board00000042_20261130T101500.123Z.png`: the board and the UTC wall-clock time."""
    return f"board{board_id:08d}_{when:%Y%m%dT%H%M%S}.{when.microsecond // 1000:03d}Z.png"


def encoded(bgr: np.ndarray, ext: str = ".png") -> bytes:
    """A picture as PNG (lossless, for files an operator keeps) or JPEG (a tenth of the size,
    for pages that embed many boards)."""
    ok, data = cv2.imencode(ext, bgr, [cv2.IMWRITE_JPEG_QUALITY, 85] if ext == ".jpg" else [])
    if not ok:
        raise RuntimeError(f"{ext} encoding failed")
    return data.tobytes()


def heat_colours(ratio: np.ndarray) -> np.ndarray:
    """BGR colours of score/threshold ratios: the threshold (1.0) at the middle of JET."""
    level = np.clip(np.asarray(ratio, np.float32) * 127.5, 0, 255).astype(np.uint8)
    return cv2.applyColorMap(level.reshape(-1, 1), cv2.COLORMAP_JET).reshape(*level.shape, 3)


def _fmt(x: float) -> str:
    return f"{x:.4f}" if math.isfinite(x) else "n/a"


def _wrap(text: str, width: int) -> list[str]:
    words, lines, cur = text.split(), [], ""
    for w in words:
        trial = f"{cur} {w}".strip()
        if cur and cv2.getTextSize(trial, _FONT, _TEXT, 1)[0][0] > width:
            lines.append(cur)
            cur = w
        else:
            cur = trial
    return lines + [cur] if cur else lines


def _overlay(pic: BoardPicture, image: np.ndarray, scale: float, alpha: float = 0.45) -> np.ndarray:
    """The board with the heat colours blended over the tiles and the boxes drawn."""
    h, w = image.shape[:2]
    base = cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR) if image.shape[2] == 1 else image[:, :, ::-1].copy()
    thr = pic.threshold if pic.threshold > 0 and math.isfinite(pic.threshold) else 1.0
    heat = np.full((h, w), -1.0, np.float32)
    t = pic.tile_size
    for x, y, s in zip(pic.tile_x, pic.tile_y, pic.tile_scores):
        region = heat[int(y / scale):math.ceil((y + t) / scale), int(x / scale):math.ceil((x + t) / scale)]
        np.maximum(region, float(s) / thr, out=region)  # overlapping tiles keep their highest score
    covered = heat >= 0
    out = base.copy()
    blend = cv2.addWeighted(base, 1 - alpha, heat_colours(np.maximum(heat, 0)), alpha, 0)
    out[covered] = blend[covered]

    def box(b: dict, colour: tuple[int, int, int], thick: int) -> None:
        x0, y0 = int(b["x"] / scale), int(b["y"] / scale)
        x1, y1 = math.ceil((b["x"] + b["w"]) / scale) - 1, math.ceil((b["y"] + b["h"]) / scale) - 1
        cv2.rectangle(out, (x0, y0), (max(x0, min(w - 1, x1)), max(y0, min(h - 1, y1))), colour, thick)

    for x, y, s in zip(pic.tile_x, pic.tile_y, pic.tile_scores):
        if s > pic.threshold:
            box({"x": x, "y": y, "w": t, "h": t}, (255, 255, 255), 1)
    for d in pic.truth:
        box(d, _TRUTH, 1)
        cv2.putText(out, d.get("type", ""), (int(d["x"] / scale), max(10, int(d["y"] / scale) - 3)),
                    _FONT, 0.35, _TRUTH, 1, cv2.LINE_AA)
    for d in pic.defects:
        box(d, _REGION, 2)
    return out


def _colour_bar(pic: BoardPicture, width: int) -> np.ndarray:
    """0 .. 2 x threshold, the threshold marked at the middle, the worst tile as a triangle (the
    tile scale whatever the board rule; under `max` it is the board score)."""
    pad, h = 12, _BAR_H + 2 * _LINE + 4
    panel = np.full((h, width, 3), 255, np.uint8)
    bar_w = width - 2 * pad
    panel[_LINE:_LINE + _BAR_H, pad:pad + bar_w] = heat_colours(np.linspace(0, 2, bar_w))[None]
    mid = pad + bar_w // 2
    cv2.line(panel, (mid, _LINE - 4), (mid, _LINE + _BAR_H + 3), (0, 0, 0), 2)
    thr = pic.threshold
    label = f"threshold {_fmt(thr)}"
    tw = cv2.getTextSize(label, _FONT, _TEXT, 1)[0][0]
    cv2.putText(panel, label, (mid - tw // 2, _LINE - 6), _FONT, _TEXT, (0, 0, 0), 1, cv2.LINE_AA)
    y_lab = _LINE + _BAR_H + _LINE - 2
    cv2.putText(panel, "0", (pad, y_lab), _FONT, _TEXT, (0, 0, 0), 1, cv2.LINE_AA)
    top = f"{_fmt(2 * thr)}+"
    top_w = cv2.getTextSize(top, _FONT, _TEXT, 1)[0][0]
    cv2.putText(panel, top, (pad + bar_w - top_w, y_lab), _FONT, _TEXT, (0, 0, 0), 1, cv2.LINE_AA)
    worst = float(np.max(pic.tile_scores)) if pic.tile_scores.size else math.nan
    if math.isfinite(worst) and thr > 0 and math.isfinite(thr):
        x = pad + int(np.clip(worst / thr / 2, 0, 1) * (bar_w - 1))
        y = _LINE + _BAR_H + 1
        cv2.fillPoly(panel, [np.array([(x, y), (x - 6, y + 9), (x + 6, y + 9)], np.int32)], (0, 0, 0))
        lab = "worst tile"
        lw = cv2.getTextSize(lab, _FONT, _TEXT, 1)[0][0]
        lx = int(np.clip(x - lw // 2, pad + 16, pad + bar_w - top_w - lw - 8))  # between the end labels
        cv2.putText(panel, lab, (lx, y_lab), _FONT, _TEXT, (0, 0, 0), 1, cv2.LINE_AA)
    return panel


def _caption(pic: BoardPicture, width: int) -> np.ndarray:
    head = f"board {pic.board_id}  lines {pic.start_line}-{pic.end_line}"
    if pic.source:
        head += f"  {pic.source}"
    rows: list[tuple[str, tuple[int, int, int]]] = [(line, (0, 0, 0)) for line in _wrap(head, width - 16)]
    fate = pic.verdict.upper()
    rows.append((f"score {_fmt(pic.score)} / threshold {_fmt(pic.threshold)}: {fate}",
                 _REJECT if pic.verdict == "reject" else _ACCEPT))
    for r in pic.reasons:
        rows += [(line, (60, 60, 60)) for line in _wrap(f"- {r}", width - 16)]
    panel = np.full((len(rows) * _LINE + 8, width, 3), 255, np.uint8)
    for i, (text, colour) in enumerate(rows):
        cv2.putText(panel, text, (8, (i + 1) * _LINE), _FONT, _TEXT, colour, 1, cv2.LINE_AA)
    return panel


def render_board(pic: BoardPicture, image: np.ndarray, scale: float) -> np.ndarray:
    """BGR uint8 picture of a board. `image` is uint8 [h, w, C] (RGB or grey) holding the board's
    lines at 1/`scale` of its size (every scale-th line and column, or resized)."""
    board = _overlay(pic, image, scale)
    width = max(board.shape[1], _MIN_WIDTH)
    if board.shape[1] < width:
        board = cv2.copyMakeBorder(board, 0, 0, 0, width - board.shape[1], cv2.BORDER_CONSTANT, value=(255, 255, 255))
    return np.vstack([_caption(pic, width), board, _colour_bar(pic, width)])


def montage(pictures: list[np.ndarray], columns: int = 2, gap: int = 12) -> np.ndarray:
    """Pictures in a grid on white, for a figure of several boards in one PNG."""
    if not pictures:
        return np.full((gap, gap, 3), 255, np.uint8)
    rows = [pictures[i:i + columns] for i in range(0, len(pictures), columns)]
    cell_w = max(p.shape[1] for p in pictures)
    out = []
    for row in rows:
        cell_h = max(p.shape[0] for p in row)
        cells = [cv2.copyMakeBorder(p, 0, cell_h - p.shape[0], 0, cell_w - p.shape[1] + gap, cv2.BORDER_CONSTANT,
                                    value=(255, 255, 255)) for p in row]
        cells += [np.full((cell_h, cell_w + gap, 3), 255, np.uint8)] * (columns - len(row))
        out.append(np.hstack(cells))
        out.append(np.full((gap, out[-1].shape[1], 3), 255, np.uint8))
    return np.vstack(out[:-1])
