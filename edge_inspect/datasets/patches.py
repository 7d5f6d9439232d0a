"""Training patches from a few images: a plant brings 50-300 good images, which as one tile each
are far too few samples. Each image is instead a source of many patches of the model's tile size:
a grid at `stride` (validation, evaluation: every position, reproducible) and random crops
(training: every position of every image, so small shifts come for free). Images are never
resized here; one smaller than the tile in a dimension is reflect-padded up to it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_inspect.datasets.images import pad_to_tile, tile_origins


@dataclass
class PatchSet:
    """Images (uint8 HxWxC, each at least `size` on both sides after `pad_to_tile`) as patches."""

    images: list[np.ndarray]
    size: int
    stride: int

    @classmethod
    def of(cls, images: list[np.ndarray], size: int, stride: int) -> PatchSet:
        return cls([np.ascontiguousarray(pad_to_tile(im, size)) for im in images], size, stride)

    def origins(self, i: int) -> list[tuple[int, int]]:
        """Grid origins (y, x) of image i: every `stride`, the last row and column on the edge."""
        h, w = self.images[i].shape[:2]
        return tile_origins(h, w, self.size, self.stride)

    def grid_count(self) -> int:
        return sum(len(self.origins(i)) for i in range(len(self.images)))

    def grid(self, limit: int | None = None, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(patches uint8 [N, T, T, C], image index of each) for every grid position; with
        `limit`, a seeded even subset of at most that many (validation stays affordable)."""
        owner = [(i, o) for i in range(len(self.images)) for o in self.origins(i)]
        if limit is not None and len(owner) > limit:
            pick = np.sort((rng or np.random.default_rng(0)).choice(len(owner), limit, replace=False))
            owner = [owner[k] for k in pick]
        t = self.size
        out = np.empty((len(owner), t, t, self.images[0].shape[2]), np.uint8)
        for k, (i, (y, x)) in enumerate(owner):
            out[k] = self.images[i][y:y + t, x:x + t]
        return out, np.array([i for i, _ in owner], np.int64)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n random crops: an image drawn in proportion to its area, then any position in it."""
        areas = np.array([(im.shape[0] - self.size + 1) * (im.shape[1] - self.size + 1) for im in self.images], float)
        which = rng.choice(len(self.images), n, p=areas / areas.sum())
        t = self.size
        out = np.empty((n, t, t, self.images[0].shape[2]), np.uint8)
        for k, i in enumerate(which):
            im = self.images[i]
            y = int(rng.integers(0, im.shape[0] - t + 1))
            x = int(rng.integers(0, im.shape[1] - t + 1))
            out[k] = im[y:y + t, x:x + t]
        return out


def split_images(n: int, val_fraction: float, seed: int, groups: list[int] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) image indices, split by image (or, with `groups`, by group: a board's
    tiles stay together) so that no validation patch overlaps a training patch; validation gets
    at least one image (group) when there are two or more."""
    keys = np.arange(n) if groups is None else np.asarray(groups)
    uniq = np.unique(keys)
    order = np.random.default_rng(seed).permutation(len(uniq))
    n_val = int(round(len(uniq) * val_fraction))
    if val_fraction > 0 and len(uniq) >= 2:
        n_val = min(max(n_val, 1), len(uniq) - 1)
    val = np.isin(keys, uniq[order[:n_val]])
    return np.flatnonzero(~val), np.flatnonzero(val)
