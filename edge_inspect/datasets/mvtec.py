"""The MVTec AD folder layout: ``train/good``, ``test/<class>``, ``ground_truth/<class>``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import structlog

from edge_inspect.datasets.images import (
    IMAGE_SUFFIXES,
    read_image,
    resize_to_tile,
    tile_image,
)
from edge_inspect.errors import InputDataError

log = structlog.get_logger(__name__)


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
        out.append(resize_to_tile(img, isize)[None] if mode == "resize" else tile_image(img, isize))
    tiles = np.ascontiguousarray(np.concatenate(out))
    log.info("dataset.loaded", root=str(root), split=split, images=len(files), tiles=len(tiles), mode=mode)
    return tiles
