"""What the decision stage is told besides the tiling events (BoardStarted, BoardEnded), in
stream order: every message is a small frozen dataclass and the stage dispatches on its type."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_inspect.decision.calibration_file import Calibration
from edge_inspect.tiling.events import TileMeta


@dataclass(frozen=True, slots=True)
class Scored:
    """One scored batch: the decision score of each tile, in `metas` order."""

    metas: list[TileMeta]
    scores: np.ndarray


@dataclass(frozen=True, slots=True)
class BoardImage:
    """A board's downscaled pixels (every `scale`-th line and column) for its heatmap; sent
    just before the board's BoardEnded."""

    board_id: int
    image: np.ndarray
    scale: int


@dataclass(frozen=True, slots=True)
class ModelSwapped:
    """Scores after this message come from a new model (`model_sha256`) judged by `calibration`."""

    model_sha256: str
    calibration: Calibration


@dataclass(frozen=True, slots=True)
class CalibrationChanged:
    """Same model, new thresholds: every verdict after this message uses them."""

    calibration: Calibration
