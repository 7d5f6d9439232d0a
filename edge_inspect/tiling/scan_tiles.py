"""Tiles of a recorded scan without the threaded pipeline: for training data and benchmarks,
cut by the same tiler the pipeline uses."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from edge_inspect.acquisition.factory import open_scan
from edge_inspect.config import Config
from edge_inspect.tiling.events import TilesCut
from edge_inspect.tiling.tiler import Tiler


def iter_scan_tiles(scan: Path, cfg: Config) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (board id, uint8 [n, T, T, C] block of its tiles) in scan order (a scan file or
    folder, or a recording)."""
    src = open_scan(scan, cfg)
    tiler = Tiler(cfg.tiling, src.width, src.channels)
    t = cfg.tiling.tile_size

    def blocks(events: list) -> Iterator[np.ndarray]:
        for ev in events:
            if isinstance(ev, TilesCut):
                block = np.empty((len(ev.metas), t, t, src.channels), np.uint8)
                ev.write_into(block)
                yield ev.board_id, block

    try:
        for strip in src.strips():
            yield from blocks(tiler.push(strip))
        yield from blocks(tiler.flush())
    finally:
        src.close()
