"""Synthetic defects on held-out good patches: the yardstick that picks a checkpoint (and, with
`decision_score: auto`, a score) without ever looking at real defects or test images.

Good validation patches are scored as they are and once more with one synthetic defect each;
the AUROC between the two ("proxy AUROC") says how well a checkpoint separates local oddities
from good surface. The defects are deliberately generic (a thin scratch, a dark or bright blob,
a patch of the surface pasted elsewhere with its grey level shifted), sized like the defects a
line rejects (2-20 % of the tile side), and seeded, so every checkpoint faces the same set."""

from __future__ import annotations

import cv2
import numpy as np


def _scratch(tile: np.ndarray, rng: np.random.Generator) -> None:
    t = tile.shape[0]
    length = rng.uniform(0.15, 0.5) * t
    angle = rng.uniform(0, np.pi)
    cy, cx = rng.uniform(0.2, 0.8, 2) * t
    dy, dx = np.sin(angle) * length / 2, np.cos(angle) * length / 2
    p0 = (int(cx - dx), int(cy - dy))
    p1 = (int(cx + dx), int(cy + dy))
    level = int(np.clip(tile.mean() + rng.choice([-1, 1]) * rng.uniform(40, 90), 0, 255))
    cv2.line(tile, p0, p1, (level,) * tile.shape[2], thickness=max(1, int(t * rng.uniform(0.01, 0.03))))


def _blob(tile: np.ndarray, rng: np.random.Generator) -> None:
    t = tile.shape[0]
    axes = (max(1, int(rng.uniform(0.03, 0.1) * t)), max(1, int(rng.uniform(0.03, 0.1) * t)))
    centre = (int(rng.uniform(0.2, 0.8) * t), int(rng.uniform(0.2, 0.8) * t))
    level = int(np.clip(tile.mean() + rng.choice([-1, 1]) * rng.uniform(30, 80), 0, 255))
    cv2.ellipse(tile, centre, axes, float(rng.uniform(0, 180)), 0, 360, (level,) * tile.shape[2], -1)


def _paste(tile: np.ndarray, rng: np.random.Generator) -> None:
    t = tile.shape[0]
    s = max(2, int(rng.uniform(0.1, 0.2) * t))
    sy, sx, ty, tx = (int(v) for v in rng.integers(0, t - s + 1, 4))
    shift = rng.choice([-1, 1]) * rng.uniform(25, 50)
    patch = tile[sy:sy + s, sx:sx + s].astype(np.float32)
    tile[ty:ty + s, tx:tx + s] = np.clip(patch[::-1, ::-1] + shift, 0, 255).astype(np.uint8)


_KINDS = (_scratch, _blob, _paste)


def with_proxy_defects(tiles: np.ndarray, seed: int) -> np.ndarray:
    """A copy of uint8 [N, T, T, C] tiles with one synthetic defect each (kinds in turn)."""
    rng = np.random.default_rng(seed)
    out = tiles.copy()
    for i in range(len(out)):
        tile = np.ascontiguousarray(out[i])
        _KINDS[i % len(_KINDS)](tile, rng)
        out[i] = tile
    return out
