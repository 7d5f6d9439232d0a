"""The MVTec AD folder layout: ``train/good``, ``test/<class>``, ``ground_truth/<class>``."""

from __future__ import annotations

from pathlib import Path

import structlog

from edge_inspect.datasets.images import (
    IMAGE_SUFFIXES,
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
