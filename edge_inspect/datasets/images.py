"""Reading images as uint8 HxWxC (RGB order for colour) and cutting them into model-size tiles,
the one place that decides how an image becomes tiles for training, evaluation and parity."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_inspect.errors import InputDataError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})


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


def tile_starts(length: int, size: int) -> list[int]:
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
    tiles = [img[y : y + isize, x : x + isize] for y in tile_starts(h, isize) for x in tile_starts(w, isize)]
    return np.stack(tiles)


def resize_to_tile(img: np.ndarray, isize: int) -> np.ndarray:
    """Squeeze HxWxC to one isize x isize tile (area filter when shrinking)."""
    c = img.shape[2]
    interp = cv2.INTER_AREA if min(img.shape[:2]) > isize else cv2.INTER_LINEAR
    return cv2.resize(img, (isize, isize), interpolation=interp).reshape(isize, isize, c)
