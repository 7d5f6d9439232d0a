"""The scoring-backend contract: uint8 NHWC tiles in, named per-tile scores out."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Backend(Protocol):
    """Every backend takes the same uint8 [B, T, T, C] tiles; preprocessing is in the model graph."""

    name: str
    model_sha256: str
    tile_size: int
    channels: int
    score_names: tuple[str, ...]

    def score(self, tiles: np.ndarray) -> dict[str, np.ndarray]:
        """Per-tile float32 scores [B] for each name in `score_names`."""
        ...

    def close(self) -> None:
        ...
