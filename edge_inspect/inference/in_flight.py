"""Batches in flight on GPU stream slots: the bookkeeping the torch (CUDA) and TensorRT backends
share. Each slot holds at most one batch; `submit` takes the next slot round-robin and, when
that slot is still busy, finishes its batch first (its result is kept on its ticket), so any
number of submits is safe and results come back in submit order."""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_inspect.errors import InputDataError
from edge_inspect.inference.base import Ticket


class InFlight:
    """Subclasses set `name`, `tile_size`, `channels`, `score_names`, `_max_batch` and `_slots`
    (objects with a `busy` attribute) and implement `_launch` and `_finish`."""

    name: str
    tile_size: int
    channels: int
    score_names: tuple[str, ...]
    _max_batch: int
    _slots: list[Any]
    _next_slot: int = 0

    def _launch(self, slot: Any, tiles: np.ndarray) -> None:
        """Enqueue H2D, inference and the score D2H of `tiles` on `slot`; return at once."""
        raise NotImplementedError

    def _finish(self, slot: Any, n: int) -> dict[str, np.ndarray]:
        """Wait for `slot`'s batch of `n` tiles; copies of its scores."""
        raise NotImplementedError

    def check_tiles(self, tiles: np.ndarray) -> None:
        t, c = self.tile_size, self.channels
        if tiles.dtype != np.uint8 or tiles.ndim != 4 or tiles.shape[1:] != (t, t, c):
            raise InputDataError(
                f"{self.name} backend takes uint8 [B, {t}, {t}, {c}] tiles, got {tiles.dtype} {tiles.shape}")

    def empty_scores(self) -> dict[str, np.ndarray]:
        return {name: np.zeros(0, np.float32) for name in self.score_names}

    def score(self, tiles: np.ndarray) -> dict[str, np.ndarray]:
        """Synchronous; a batch larger than `_max_batch` goes in chunks that overlap on the slots."""
        self.check_tiles(tiles)
        n = len(tiles)
        if n == 0:
            return self.empty_scores()
        step = self._max_batch
        tickets = [self.submit(tiles[i:i + step]) for i in range(0, n, step)]
        parts = [self.collect(t) for t in tickets]
        return {name: np.concatenate([p[name] for p in parts]) for name in self.score_names}

    def submit(self, tiles: np.ndarray) -> Ticket:
        """Start scoring up to `_max_batch` tiles on the next slot; do not touch `tiles` until
        `collect`."""
        self.check_tiles(tiles)
        n = len(tiles)
        if n == 0:
            return Ticket(n=0, result=self.empty_scores())
        if n > self._max_batch:
            raise ValueError(f"submit takes at most {self._max_batch} tiles, got {n}; score() splits larger batches")
        i = self._next_slot
        self._next_slot = (i + 1) % len(self._slots)
        slot = self._slots[i]
        if slot.busy is not None:  # every slot in flight: finish the oldest, keep its result
            slot.busy.result = self._finish(slot, slot.busy.n)
            slot.busy = None
        self._launch(slot, tiles)
        ticket = Ticket(n=n, slot=i)
        slot.busy = ticket
        return ticket

    def collect(self, ticket: Ticket) -> dict[str, np.ndarray]:
        if ticket.result is None:
            slot = self._slots[ticket.slot]
            if slot.busy is not ticket:
                raise ValueError("ticket was already collected")
            ticket.result = self._finish(slot, ticket.n)
            slot.busy = None
        return ticket.result
