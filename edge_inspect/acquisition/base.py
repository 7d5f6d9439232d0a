"""The strip contract between every frame source and the tiling stage."""

from __future__ import annotations

from dataclasses import dataclass
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


class FrameSource(Protocol):
    """A source of strips. `live` sources (cameras, realtime replay) must never be blocked by the
    pipeline: a strip that finds no room is dropped and counted. Non-live sources (replay at max
    speed) are paced by back-pressure instead, since a file can wait."""

    name: str
    live: bool

    def strips(self) -> Iterator[Strip]:
        """Yield strips in line order until the source ends or `close()` is called."""
        ...

    def close(self) -> None:
        """Stop producing; safe to call from another thread and more than once."""
        ...
