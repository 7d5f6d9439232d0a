"""Handing freed heap memory back to the kernel, for a process that runs for months.

glibc's malloc keeps memory freed by large short-lived buffers (a scan image decoded by
replay, a board image encoded as a heatmap PNG, a model loaded on reload) inside its arenas
when small live allocations sit above it, and raises its mmap threshold after each large free,
so later large buffers come from the arenas too. Nothing leaks, yet the resident size stays
higher than needed: about 7 MiB in the soak, from the first trim on (benchmarks/RESULTS.md).
`malloc_trim(0)` returns every free page of every arena; the service calls it periodically
from its supervising thread, never from the hot path. Other C libraries (musl) lack it: then
this is a no-op and says so once."""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from typing import Any

import structlog

log = structlog.get_logger(__name__)


def _libc_malloc_trim() -> Any | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        fn = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


class HeapTrimmer:
    """Calls `malloc_trim(0)` at most every `interval_s` seconds (0 turns it off)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._fn = _libc_malloc_trim() if interval_s > 0 else None
        self._next = time.monotonic() + interval_s
        self.trims = 0
        self.seconds = 0.0
        if interval_s > 0 and self._fn is None:
            log.warning("heap_trim_unavailable", why="this C library has no malloc_trim (not glibc)")

    @property
    def available(self) -> bool:
        return self._fn is not None

    def maybe_trim(self, now: float) -> bool:
        """Trim when the interval has passed; True when memory was handed back."""
        if self._fn is None or now < self._next:
            return False
        self._next = now + self.interval_s
        t0 = time.perf_counter()
        released = bool(self._fn(0))
        self.seconds += time.perf_counter() - t0
        self.trims += 1
        return released
