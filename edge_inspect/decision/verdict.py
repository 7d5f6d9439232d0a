"""A board's verdict and its record: the one object every output (records, sinks, heatmaps,
metrics) is handed."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edge_inspect.tiling.events import TileMeta


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN or infinity: a score that is not a number is written as null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


@dataclass(slots=True)
class Verdict:
    """One board's decision; `to_record` gives the design's board-record fields. The tile
    scores and positions ride along for calibration and heatmaps, not for the record."""

    board_id: int
    source: str
    start_line: int
    end_line: int
    width: int
    n_tiles: int
    score: float
    verdict: str
    reasons: list[str]
    defects: list[dict]
    incomplete: bool
    t_first_line_ns: int
    t_verdict_ns: int
    model: str
    calibration: str
    tile_scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False)
    tile_metas: list[TileMeta] = field(default_factory=list, repr=False)

    def to_record(self) -> dict:
        """The board record as JSON-safe values (a non-finite score becomes null)."""
        return {
            "board_id": self.board_id, "source": self.source, "start_line": self.start_line,
            "end_line": self.end_line, "width": self.width, "n_tiles": self.n_tiles,
            "score": finite_or_none(self.score), "verdict": self.verdict, "reasons": self.reasons,
            "defects": self.defects, "incomplete": self.incomplete,
            "t_first_line_ns": self.t_first_line_ns, "t_verdict_ns": self.t_verdict_ns,
            "model": self.model, "calibration": self.calibration,
        }
