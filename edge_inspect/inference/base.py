"""The scoring-backend contract: uint8 NHWC tiles in, named per-tile scores out."""

from __future__ import annotations

import time
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


def warm_up(backend: Backend, max_batch: int) -> float:
    """Score one all-zero batch of every size from `max_batch` down to 1, before the service says
    READY: allocators that keep per-size state (ONNX Runtime's CPU arena, CUDA graph pools,
    TensorRT shape contexts) reach their working size now, rather than stepping up hours later
    when a rare batch size first turns up. Returns the seconds spent."""
    t0 = time.perf_counter()
    tiles = np.zeros((max_batch, backend.tile_size, backend.tile_size, backend.channels), np.uint8)
    for n in range(max_batch, 0, -1):
        backend.score(tiles[:n])
    return time.perf_counter() - t0


@dataclass
class Ticket:
    """A batch submitted to a GPU backend (`submit`/`collect`): `n` tiles on stream slot
    `slot`, or an already-computed `result`."""

    n: int
    slot: int = -1
    result: dict[str, np.ndarray] | None = None
