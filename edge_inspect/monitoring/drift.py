"""Drift alarm: are good boards still scoring the way the calibration assumed?

The service keeps the scores of the last `window` accepted boards. When the calibration file
carries the scores of its own accepted good boards (`good_scores`, written by `calibrate`), the
two distributions are compared: the Kolmogorov-Smirnov distance (the largest gap between their
cumulative distributions, 0..1) above `max_distance` raises the alarm, and the ratio of their
`quantile`s (median by default) tells the direction: above 1, good wood now scores closer to the
threshold and false rejects are coming. Calibrations without `good_scores` (the first one
written by `export`), or a `drift.reference` given in the config, fall back to a single number:
the window's quantile divided by that reference (default the tile threshold), alarmed outside
[min_ratio, max_ratio]. Either way: a log event on each change, and the metrics
edge_inspect_drift_ratio / _distance / _alarm. A calibration reload resets the window."""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import structlog

from edge_inspect.config import DriftConfig
from edge_inspect.decision.calibration_file import Calibration
from edge_inspect.decision.verdict import Verdict

log = structlog.get_logger(__name__)


def ks_distance(sample: np.ndarray, reference: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic of two ascending arrays."""
    points = np.concatenate([sample, reference])
    cdf_s = np.searchsorted(sample, points, side="right") / len(sample)
    cdf_r = np.searchsorted(reference, points, side="right") / len(reference)
    return float(np.max(np.abs(cdf_s - cdf_r)))


class DriftMonitor:
    def __init__(self, cfg: DriftConfig, cal: Calibration) -> None:
        self.cfg = cfg
        self._scores: deque[float] = deque(maxlen=cfg.window)
        self.ratio: float | None = None
        self.distance: float | None = None
        self.alarm = False
        self.set_calibration(cal)

    def set_calibration(self, cal: Calibration) -> None:
        self._good: np.ndarray | None = None
        if self.cfg.reference is None and cal.good_scores:
            self._good = np.asarray(cal.good_scores, np.float64)
            self.reference = float(np.quantile(self._good, self.cfg.quantile))
        else:
            self.reference = self.cfg.reference or cal.tile_threshold
        self.calibration = cal.version
        self._scores.clear()
        self.ratio = self.distance = None
        if self.alarm:
            log.info("drift_alarm_cleared", why="new calibration", calibration=cal.version)
        self.alarm = False

    @property
    def mode(self) -> str:
        """What the window is compared with: the calibration's good boards, or one number."""
        return "distribution" if self._good is not None else "reference"

    def observe(self, v: Verdict) -> None:
        """Decision thread, every verdict; only accepted boards with a finite score count."""
        if v.verdict != "accept" or not math.isfinite(v.score):
            return
        self._scores.append(v.score)
        if len(self._scores) < self.cfg.min_boards or self.reference <= 0:
            return
        window = np.sort(np.fromiter(self._scores, float))
        stat = float(np.quantile(window, self.cfg.quantile))
        self.ratio = stat / self.reference
        if self._good is not None:
            self.distance = ks_distance(window, self._good)
            out = self.distance > self.cfg.max_distance
        else:
            out = not (self.cfg.min_ratio <= self.ratio <= self.cfg.max_ratio)
        if out != self.alarm:
            self.alarm = out
            bounds = ({"max_distance": self.cfg.max_distance} if self._good is not None
                      else {"bounds": [self.cfg.min_ratio, self.cfg.max_ratio]})
            (log.warning if out else log.info)(
                "drift_alarm" if out else "drift_alarm_cleared", mode=self.mode, ratio=round(self.ratio, 4),
                distance=None if self.distance is None else round(self.distance, 4),
                quantile=self.cfg.quantile, score=round(stat, 6), reference=round(self.reference, 6),
                boards=len(self._scores), calibration=self.calibration, **bounds)
