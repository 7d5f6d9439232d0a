"""The scoring-backend contract: uint8 NHWC tiles in, named per-tile scores out."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass
class Ticket:
    """A batch submitted to a GPU backend (`submit`/`collect`): `n` tiles on stream slot
    `slot`, or an already-computed `result`."""

    n: int
    slot: int = -1
    result: dict[str, np.ndarray] | None = None
