"""Drift alarm: are good boards still scoring the way the calibration assumed?

The statistic is a quantile (median by default) of the scores of the last `window` accepted
boards. It is compared with a reference: `drift.reference` when the operator gives one (e.g. the
median board score of the calibration's good boards, from its report), else the calibration's
tile threshold. Their ratio outside [min_ratio, max_ratio] raises the alarm (a log event on
each change, and the metrics edge_inspect_drift_ratio / edge_inspect_drift_alarm). A rising
ratio means good wood now scores close to the threshold: false rejects are coming; recalibrate
or check the lighting and lens. A calibration reload resets the window."""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import structlog

from edge_inspect.config import DriftConfig
from edge_inspect.decision.aggregator import Verdict
from edge_inspect.decision.calibration import Calibration

log = structlog.get_logger(__name__)


class DriftMonitor:
    def __init__(self, cfg: DriftConfig, cal: Calibration) -> None:
        self.cfg = cfg
        self._scores: deque[float] = deque(maxlen=cfg.window)
        self.ratio: float | None = None
        self.alarm = False
        self.set_calibration(cal)

    def set_calibration(self, cal: Calibration) -> None:
        self.reference = self.cfg.reference or cal.tile_threshold
        self.calibration = cal.version
        self._scores.clear()
        self.ratio = None
        if self.alarm:
            log.info("drift_alarm_cleared", why="new calibration", calibration=cal.version)
        self.alarm = False

    def observe(self, v: Verdict) -> None:
        """Decision thread, every verdict; only accepted boards with a finite score count."""
        if v.verdict != "accept" or not math.isfinite(v.score):
            return
        self._scores.append(v.score)
        if len(self._scores) < self.cfg.min_boards or self.reference <= 0:
            return
        stat = float(np.quantile(np.fromiter(self._scores, float), self.cfg.quantile))
        self.ratio = stat / self.reference
        out = not (self.cfg.min_ratio <= self.ratio <= self.cfg.max_ratio)
        if out != self.alarm:
            self.alarm = out
            (log.warning if out else log.info)(
                "drift_alarm" if out else "drift_alarm_cleared", ratio=round(self.ratio, 4),
                quantile=self.cfg.quantile, score=round(stat, 6), reference=self.reference,
                bounds=[self.cfg.min_ratio, self.cfg.max_ratio], boards=len(self._scores),
                calibration=self.calibration)
