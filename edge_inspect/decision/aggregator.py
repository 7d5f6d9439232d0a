"""Per-board accumulation of tile scores into a verdict, whatever order tiles and board ends
arrive in (they come from different threads)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_inspect.decision.board_rule import apply_board_rule
from edge_inspect.decision.calibration_file import Calibration
from edge_inspect.decision.verdict import Verdict
from edge_inspect.tiling.events import BoardEnded, BoardStarted, TileMeta


@dataclass(slots=True)
class _Board:
    start_line: int
    t_first_ns: int
    metas: list[TileMeta] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    n_scored: int = 0
    ended: BoardEnded | None = None


class BoardAggregator:
    """Collects scores per board and decides once the board has ended and every tile it cut
    has been scored."""

    def __init__(self, cal: Calibration, tile_size: int, model_sha256: str, source: str) -> None:
        self.cal = cal
        self.tile_size = tile_size
        self.model = model_sha256[:12]
        self.source = source
        self._boards: dict[int, _Board] = {}

    def set_calibration(self, cal: Calibration) -> None:
        self.cal = cal

    def set_model(self, model_sha256: str, cal: Calibration) -> None:
        """Scores from now on come from another model, judged by its own calibration."""
        self.model = model_sha256[:12]
        self.cal = cal

    def started(self, ev: BoardStarted) -> None:
        self._boards[ev.board_id] = _Board(ev.start_line, ev.t_ns)

    def scored(self, metas: list[TileMeta], scores: np.ndarray) -> list[Verdict]:
        """Add scores for tiles (possibly of several boards); return verdicts now complete."""
        done: list[Verdict] = []
        i = 0
        while i < len(metas):
            bid = metas[i].board_id
            j = i
            while j < len(metas) and metas[j].board_id == bid:
                j += 1
            b = self._boards[bid]
            b.metas.extend(metas[i:j])
            b.scores.append(scores[i:j])
            b.n_scored += j - i
            if b.ended is not None and b.n_scored >= b.ended.n_tiles:
                done.append(self._decide(bid, b.ended))
            i = j
        return done

    def ended(self, ev: BoardEnded) -> list[Verdict]:
        self._boards[ev.board_id].ended = ev
        if self._boards[ev.board_id].n_scored >= ev.n_tiles:
            return [self._decide(ev.board_id, ev)]
        return []

    def abandon_open(self, reason: str) -> list[Verdict]:
        """Shutdown with boards not fully scored: each still gets a record, rejected incomplete."""
        out = []
        for bid in sorted(self._boards):
            b = self._boards[bid]
            ev = b.ended
            if ev is None:
                end = b.start_line + (max((m.y for m in b.metas), default=-self.tile_size) + self.tile_size)
                ev = BoardEnded(bid, b.start_line, end, 0, b.n_scored, reason, True, 0)
            out.append(self._decide(bid, ev, extra_reason=reason))
        return out

    @property
    def open_boards(self) -> int:
        return len(self._boards)

    def open_board_ids(self) -> set[int]:
        """Boards begun and not yet decided (their scores so far came from the current model)."""
        return set(self._boards)

    def _decide(self, bid: int, ev: BoardEnded, extra_reason: str | None = None) -> Verdict:
        b = self._boards.pop(bid)
        scores = np.concatenate(b.scores) if b.scores else np.zeros(0, np.float32)
        board_score, bad, reasons = apply_board_rule(scores, self.cal)
        if ev.reason == "fragment":  # material that is not a board of its own never passes unseen
            bad = True
            reasons.append(f"fragment: {ev.end_line - ev.start_line} lines, shorter than a board")
        incomplete = ev.incomplete or b.n_scored < ev.n_tiles
        if incomplete:
            why = extra_reason or ev.reason
            if ev.incomplete and why in ("gap", "max_length", "end_of_stream", "fragment"):
                why = "start not seen (in view when the stream began, or after lost lines)"
            missing = ev.n_tiles - b.n_scored
            reasons.append(f"incomplete: {why}" + (f", {missing} tiles unscored" if missing > 0 else ""))
        if scores.size == 0 and not incomplete:
            incomplete = True
            reasons.append("incomplete: no tiles scored")
        verdict = "reject" if (bad or incomplete) else "accept"
        return Verdict(
            board_id=bid, source=self.source, start_line=ev.start_line, end_line=ev.end_line,
            width=ev.width, n_tiles=int(scores.size), score=board_score, verdict=verdict,
            reasons=reasons, defects=self._regions(b.metas, scores, scores > self.cal.tile_threshold),
            incomplete=incomplete, t_first_line_ns=b.t_first_ns, t_verdict_ns=time.monotonic_ns(),
            model=self.model, calibration=self.cal.version, tile_scores=scores, tile_metas=b.metas,
        )

    def _regions(self, metas: list[TileMeta], scores: np.ndarray, over: np.ndarray) -> list[dict]:
        """Tiles over the threshold grouped into 8-connected regions on the tile grid, each as
        a box (x in camera columns, `board_x` from the board's left edge, y from the board's
        first line) with its peak score."""
        hot = np.flatnonzero(over)
        if not hot.size:
            return []
        rows = np.array([metas[i].row for i in hot])
        cols = np.array([metas[i].col for i in hot])
        grid = np.zeros((rows.max() + 1, cols.max() + 1), np.uint8)
        grid[rows, cols] = 1
        n, labels, stats, _ = cv2.connectedComponentsWithStats(grid, connectivity=8)
        region_of = labels[rows, cols]
        t = self.tile_size
        regions = []
        for label in range(1, n):  # raster order of each region's first tile; 0 is the background
            members = hot[region_of == label]
            xs = [metas[i].x for i in members]
            bxs = [metas[i].bx for i in members]
            ys = [metas[i].y for i in members]
            x0, y0 = min(xs), min(ys)
            regions.append({
                "x": x0, "board_x": min(bxs), "y": y0, "w": max(xs) + t - x0, "h": max(ys) + t - y0,
                "peak_score": float(scores[members].max()), "tiles": int(stats[label, cv2.CC_STAT_AREA]),
            })
        return regions
