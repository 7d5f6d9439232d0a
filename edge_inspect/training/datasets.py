"""Good-only training data as uint8 tiles [N, T, T, C] (HWC, RGB order for colour).

Two sources: an MVTec-AD style folder (``train/good``) resized or tiled to the model size, and
in-memory tiles the production tiler cut from recorded or synthetic scans. Everything stays
numpy/OpenCV (no torch) so tiles can be prepared on a box without the train extra.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import structlog

from edge_inspect.errors import InputDataError

__all__ = [
    "IMAGE_SUFFIXES",
    "list_good_images",
    "read_image",
    "to_channels",
    "tile_image",
    "mvtec_good_tiles",
    "check_tiles",
    "split_train_val",
]

log = structlog.get_logger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})


def list_good_images(root: Path, split: str = "train") -> list[Path]:
    """Image files of ``root/<split>/good`` in name order; clear errors for a wrong folder."""
    root = Path(root)
    folder = root / split / "good"
    if not root.is_dir():
        raise InputDataError(f"{root}: dataset folder not found")
    if not folder.is_dir():
        raise InputDataError(f"{folder}: missing; expected the MVTec AD layout ({split}/good/*.png)")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputDataError(f"{folder}: holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def to_channels(img: np.ndarray, nc: int) -> np.ndarray:
    """HxWxC uint8 with C in {1, 3} converted to ``nc`` channels (luminance or replication)."""
    c = img.shape[-1]
    if c == nc:
        return img
    if nc == 1:
        # ITU-R BT.601 luminance (as cv2's RGB2GRAY) on any leading shape; chunked along the first
        # axis so a large tile stack never needs a full-size float temporary
        flat = img.reshape(-1, img.shape[-2], img.shape[-1]) if img.ndim > 3 else img[None]
        out = np.empty(flat.shape[:-1] + (1,), np.uint8)
        w = np.array([0.299, 0.587, 0.114], np.float32)
        for i in range(0, len(flat), 64):
            grey = flat[i : i + 64].astype(np.float32) @ w
            out[i : i + 64, ..., 0] = np.clip(np.rint(grey), 0, 255)
        return out.reshape(img.shape[:-1] + (1,))
    return np.repeat(img, nc, axis=-1)


def read_image(path: Path, nc: int) -> np.ndarray:
    """Read an image as uint8 HxWx``nc`` (RGB for colour); 16-bit images are scaled to 8 bits."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputDataError(f"{path}: not a readable image (corrupt or unsupported format)")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise InputDataError(f"{path}: unsupported pixel type {img.dtype} (need 8 or 16 bit)")
    if img.ndim == 2:
        img = img[:, :, None]
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    elif img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    else:
        raise InputDataError(f"{path}: unsupported channel count {img.shape[2]}")
    return np.ascontiguousarray(to_channels(img, nc))


def _starts(length: int, size: int) -> list[int]:
    """Non-overlapping tile origins; the last tile is aligned to the edge so no pixel is lost."""
    starts = list(range(0, length - size + 1, size))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def tile_image(img: np.ndarray, isize: int) -> np.ndarray:
    """Cut HxWxC into [n, isize, isize, C] at native resolution (upscaled if a side is short)."""
    h, w = img.shape[:2]
    if min(h, w) < isize:
        scale = isize / min(h, w)
        size = (max(isize, round(w * scale)), max(isize, round(h * scale)))
        img = cv2.resize(img, size, interpolation=cv2.INTER_LINEAR).reshape(size[1], size[0], -1)
        h, w = img.shape[:2]
    tiles = [img[y : y + isize, x : x + isize] for y in _starts(h, isize) for x in _starts(w, isize)]
    return np.stack(tiles)


def _resize(img: np.ndarray, isize: int) -> np.ndarray:
    c = img.shape[2]
    interp = cv2.INTER_AREA if min(img.shape[:2]) > isize else cv2.INTER_LINEAR
    return cv2.resize(img, (isize, isize), interpolation=interp).reshape(isize, isize, c)


def mvtec_good_tiles(
    root: Path,
    split: str = "train",
    isize: int = 256,
    nc: int = 3,
    mode: Literal["resize", "tile"] = "resize",
) -> np.ndarray:
    """All good images of an MVTec-layout folder as uint8 tiles [N, isize, isize, nc].

    ``resize`` squeezes each image to one tile (the MVTec convention); ``tile`` keeps native
    resolution, as the line-scan tiler does in production, so defect scale matches deployment.
    """
    if mode not in ("resize", "tile"):
        raise ValueError(f"mode must be 'resize' or 'tile', got {mode!r}")
    if nc not in (1, 3):
        raise ValueError(f"nc must be 1 or 3, got {nc}")
    files = list_good_images(Path(root), split)
    out: list[np.ndarray] = []
    for path in files:
        img = read_image(path, nc)
        out.append(_resize(img, isize)[None] if mode == "resize" else tile_image(img, isize))
    tiles = np.ascontiguousarray(np.concatenate(out))
    log.info("dataset.loaded", root=str(root), split=split, images=len(files), tiles=len(tiles), mode=mode)
    return tiles


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
