"""The scoring-backend contract: uint8 NHWC tiles in, named per-tile scores out.

Every backend scores synchronously (`score`) and asynchronously (`submit` returns a `Ticket` at
once, `collect` waits for it), so the pipeline can keep two batches in flight: on a GPU the next
batch is gathered and copied while the current one computes. A CPU backend computes in `submit`
(`SyncSubmit`); the GPU backends share their slot bookkeeping (`inference.in_flight`)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class Ticket:
    """A submitted batch of `n` tiles: in flight on stream slot `slot`, or already computed
    (`result`)."""

    n: int
    slot: int = -1
    result: dict[str, np.ndarray] | None = None


class Backend(Protocol):
    """Every backend takes the same uint8 [B, T, T, C] tiles; preprocessing is in the model graph.
    The tiles of a submitted batch must stay untouched until its `collect` (a GPU copies them
    asynchronously)."""

    name: str
    model_sha256: str
    trained_on: dict | None   # train's record of the model's data (files and sha256); None: unknown
    tile_size: int
    channels: int
    score_names: tuple[str, ...]

    def score(self, tiles: np.ndarray) -> dict[str, np.ndarray]:
        """Per-tile float32 scores [B] for each name in `score_names`."""
        ...

    def submit(self, tiles: np.ndarray) -> Ticket:
        """Start scoring; returns at once where the hardware allows."""
        ...

    def collect(self, ticket: Ticket) -> dict[str, np.ndarray]:
        """Wait for a submitted batch; its scores as `score` gives them."""
        ...

    def close(self) -> None:
        ...


class SyncSubmit:
    """`submit`/`collect` for a backend that computes on the calling thread: the work is done in
    `submit`, so two batches in flight cost nothing and change no order."""

    def score(self, tiles: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def submit(self, tiles: np.ndarray) -> Ticket:
        return Ticket(n=len(tiles), result=self.score(tiles))

    def collect(self, ticket: Ticket) -> dict[str, np.ndarray]:
        if ticket.result is None:
            raise ValueError("ticket was not submitted to this backend")
        return ticket.result


def warm_up(backend: Backend, max_batch: int, stop: threading.Event | None = None) -> float:
    """Score one all-zero batch of every size from `max_batch` down to 1, before the service says
    READY: allocators that keep per-size state (ONNX Runtime's CPU arena, CUDA graph pools,
    TensorRT shape contexts) reach their working size now, rather than stepping up hours later
    when a rare batch size first turns up. `stop` set ends it early (a stop during start-up).
    Returns the seconds spent."""
    t0 = time.perf_counter()
    tiles = np.zeros((max_batch, backend.tile_size, backend.tile_size, backend.channels), np.uint8)
    for n in range(max_batch, 0, -1):
        if stop is not None and stop.is_set():
            break
        backend.score(tiles[:n])
    return time.perf_counter() - t0
