"""The first calibration of a freshly exported model, from the validation tiles that
training held out of the good data (never from test data)."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import yaml

from edge_inspect.decision.calibration import BoardRule, Calibration
from edge_inspect.errors import InputDataError

MARGIN = 0.10  # headroom over the worst validation tile: few validation tiles underestimate the tail


def write_yaml_atomic(path: Path, data: dict) -> None:
    """Write to a temporary file and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            yaml.safe_dump(data, f, sort_keys=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
    write_yaml_atomic(out, cal.model_dump(mode="json"))
    return cal
