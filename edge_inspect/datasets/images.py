"""Reading images as uint8 HxWxC (RGB order for colour) and cutting them into model-size tiles,
the one place that decides how an image becomes tiles for training, evaluation and parity."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_inspect.errors import InputDataError
from edge_inspect.tiling.cutter import grid_positions

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


def read_image(path: Path, nc: int | None) -> np.ndarray:
    """Read an image as uint8 HxWx``nc`` (RGB for colour; ``None``: as stored, 1 or 3 channels);
    16-bit images are scaled to 8 bits."""
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
    return np.ascontiguousarray(img if nc is None else to_channels(img, nc))


def pad_to_tile(img: np.ndarray, size: int) -> np.ndarray:
    """`img` reflect-padded (centred) so both sides are at least `size`; unchanged if they are.
    Padding, not resizing: the pixels keep their scale, as at run time."""
    h, w = img.shape[:2]
    ph, pw = max(0, size - h), max(0, size - w)
    if not ph and not pw:
        return img
    mode = "reflect" if ph < h and pw < w else "symmetric"  # reflect needs the pad below the size
    return np.pad(img, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode=mode)


def tile_origins(h: int, w: int, size: int, stride: int) -> list[tuple[int, int]]:
    """(y, x) of every tile of an h x w image: the run-time tiler's grid (every `stride`, the last
    row and column aligned to the edge)."""
    return [(y, x) for y in grid_positions(h, size, stride) for x in grid_positions(w, size, stride)]


def image_tiles(img: np.ndarray, size: int, stride: int | None = None) -> tuple[np.ndarray, list[tuple[int, int]], np.ndarray]:
    """(tiles uint8 [n, size, size, C], their origins, the padded image they were cut from): the
    image at native resolution on the tiler's grid (`stride` defaults to `size`: no overlap)."""
    view = pad_to_tile(img, size)
    origins = tile_origins(view.shape[0], view.shape[1], size, stride or size)
    return np.stack([view[y:y + size, x:x + size] for y, x in origins]), origins, view


def resize_to_tile(img: np.ndarray, isize: int) -> np.ndarray:
    """Squeeze HxWxC to one isize x isize tile (area filter when shrinking)."""
    c = img.shape[2]
    interp = cv2.INTER_AREA if min(img.shape[:2]) > isize else cv2.INTER_LINEAR
    return cv2.resize(img, (isize, isize), interpolation=interp).reshape(isize, isize, c)
