"""The first calibration of a freshly exported model, from the validation tiles that
training held out of the good data (never from test data)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edge_inspect.decision.calibration_file import (
    MARGIN,
    BoardRule,
    Calibration,
    write_calibration,
)
from edge_inspect.errors import InputDataError


def write_initial_calibration(val_scores: Path, score: str, model_sha256: str, out: Path) -> Calibration:
    try:
        with np.load(val_scores) as z:
            if score not in z.files:
                raise InputDataError(f"{val_scores}: no validation scores for {score!r} (has {', '.join(z.files)})")
            values = np.asarray(z[score], dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise InputDataError(f"{val_scores}: unreadable validation scores ({exc})") from None
    if values.size == 0 or not np.isfinite(values).all():
        raise InputDataError(f"{val_scores}: validation scores for {score!r} are empty or not finite")
    now = datetime.now(timezone.utc)
    cal = Calibration(
        version=now.strftime("%Y%m%dT%H%M%SZ"),
        created=now.isoformat(timespec="seconds"),
        model=model_sha256,
        score=score,
        tile_threshold=float(values.max() * (1 + MARGIN)),
        board_rule=BoardRule(type="max"),
        source=f"{values.size} held-out good validation tiles ({val_scores.name}), max + {MARGIN:.0%}",
    )
    write_calibration(out, cal)
    return cal
