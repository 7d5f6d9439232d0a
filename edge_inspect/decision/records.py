"""Board records as JSON lines: appended and flushed per board, so a crash loses nothing
already decided."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import IO

from edge_inspect.decision.aggregator import Verdict


def _clean(value: float) -> float | None:
    return None if isinstance(value, float) and not math.isfinite(value) else value


class JsonlRecords:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._f: IO[str] = open(path, "a", encoding="utf-8")

    def write(self, v: Verdict) -> None:
        rec = v.to_record()
        rec["score"] = _clean(rec["score"])
        self._f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()
