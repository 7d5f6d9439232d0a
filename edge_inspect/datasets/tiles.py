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


def split_train_val(
    tiles: np.ndarray, val_fraction: float, seed: int = 0, max_tiles: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of good tiles into (train, validation).

    ``max_tiles`` caps the training part (a random subset); validation keeps its share of the
    whole set so thresholds still see the data's variety. With val_fraction > 0 and at least
    two tiles, validation gets at least one tile.
    """
    n = len(tiles)
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    val_idx, train_idx = np.sort(order[:n_val]), order[n_val:]
    if max_tiles is not None:
        train_idx = train_idx[:max_tiles]
    return tiles[np.sort(train_idx)], tiles[val_idx]
