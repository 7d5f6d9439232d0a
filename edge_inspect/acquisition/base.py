"""The strip contract between every frame source and the tiling stage."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterator, Protocol

import numpy as np


@dataclass(frozen=True, slots=True)
class Strip:
    """One camera frame: `lines` is uint8 [n, W, C]; `first_line` is the camera line counter
    of its first line, so a gap between consecutive strips means lost lines."""

    lines: np.ndarray
    first_line: int
    t_ns: int
    frame_id: int


@dataclass
class AcquisitionCounters:
    """What a camera's acquisition saw; read at any time (plain ints, updated by the strips()
    thread). The watchdog reads them to tell an idle line (timeouts moving) from a hung fetch."""

    frames: int = 0
    lost_frames: int = 0  # frame-id gaps: frames the producer or camera dropped
    incomplete_buffers: int = 0  # buffers the producer flagged incomplete, or of the wrong size/format
    timeouts: int = 0  # fetch_timeout_s passed without a frame
    reconnects: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class FrameSource(Protocol):
    """A source of strips. `live` sources (cameras, realtime replay) must never be blocked by the
    pipeline: a strip that finds no room is dropped and counted. Non-live sources (replay at max
    speed) are paced by back-pressure instead, since a file can wait.

    What the service reads besides the strips: `width`/`channels`/`lines_per_frame` (the tiler,
    the recorder), `counters` (None for file sources: they have no camera to count) and
    `reconnecting` (True while a camera waits in its reconnect back-off: the watchdog counts
    that as alive, not hung)."""

    name: str
    live: bool
    width: int
    channels: int
    lines_per_frame: int
    counters: AcquisitionCounters | None
    reconnecting: bool

    def strips(self) -> Iterator[Strip]:
        """Yield strips in line order until the source ends or `close()` is called."""
        ...

    def close(self) -> None:
        """Stop producing; safe to call from another thread and more than once."""
        ...
