"""Checks and splits of in-memory tile stacks (uint8 [N, T, T, C])."""

from __future__ import annotations

import numpy as np

from edge_inspect.datasets.images import to_channels
from edge_inspect.errors import InputDataError


def check_tiles(tiles: np.ndarray, isize: int, nc: int) -> np.ndarray:
    """Validate in-memory tiles (uint8 [N, isize, isize, C]); converts C to ``nc`` if needed."""
    if not isinstance(tiles, np.ndarray) or tiles.dtype != np.uint8:
        raise InputDataError(f"training tiles must be a uint8 numpy array, got {getattr(tiles, 'dtype', type(tiles))}")
    if tiles.ndim == 3:
        tiles = tiles[..., None]
    if tiles.ndim != 4 or tiles.shape[1:3] != (isize, isize) or tiles.shape[3] not in (1, 3):
        raise InputDataError(f"training tiles must be [N, {isize}, {isize}, 1|3], got shape {tiles.shape}")
    if len(tiles) == 0:
        raise InputDataError("no training tiles")
    return np.ascontiguousarray(to_channels(tiles, nc))
