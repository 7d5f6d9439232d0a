"""The tile ring: allocated once, written by the tiling thread, read in batches in place."""

from __future__ import annotations

import threading

import numpy as np


class RingClosed(Exception):
    """The ring was closed while a writer waited for room."""


class TileRing:
    """Fixed tile slots addressed by absolute counters. A reservation is always contiguous in
    memory (slots left at the end are skipped), so a batch is usually a view, not a copy.
    Slots are released in order, after the batch that reads them is scored."""

    def __init__(self, capacity: int, tile_size: int, channels: int, slots: np.ndarray | None = None) -> None:
        """`slots` lets a GPU backend supply pinned host memory (`backend.allocate_ring`)."""
        self.capacity = capacity
        shape = (capacity, tile_size, tile_size, channels)
        if slots is None:
            slots = np.zeros(shape, dtype=np.uint8)
        elif slots.shape != shape or slots.dtype != np.uint8 or not slots.flags.c_contiguous:
            raise ValueError(f"ring slots must be a C-contiguous uint8 array {shape}, got {slots.dtype} {slots.shape}")
        self.slots = slots
        self._head = 0
        self._tail = 0
        self._closed = False
        self._cond = threading.Condition()

    @property
    def used(self) -> int:
        return self._head - self._tail

    def reserve(self, n: int, timeout: float | None = None) -> int | None:
        """Reserve n contiguous slots; return the absolute index of the first, or None when no
        room came within `timeout`. Raises RingClosed if the ring is closed while waiting."""
        if n > self.capacity:
            raise ValueError(f"{n} tiles do not fit a ring of {self.capacity} slots")
        with self._cond:
            idx = self._head % self.capacity
            skip = self.capacity - idx if idx + n > self.capacity else 0
            need = skip + n
            ok = self._cond.wait_for(
                lambda: self._closed or self.capacity - (self._head - self._tail) >= need, timeout
            )
            if self._closed:
                raise RingClosed()
            if not ok:
                return None
            start = self._head + skip
            self._head += need
            return start

    def view(self, start: int, n: int) -> np.ndarray:
        """The slots [start, start+n) as one array; contiguous by construction of `reserve`."""
        i = start % self.capacity
        return self.slots[i:i + n]

    def release(self, upto: int) -> None:
        """Free every slot before absolute index `upto` (exclusive)."""
        with self._cond:
            if upto > self._tail:
                self._tail = upto
                self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
