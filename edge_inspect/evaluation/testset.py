"""The labelled test set of an MVTec-layout folder: ``test/good`` (label 0), ``test/<defect>``
(label 1, the folder names the defect type) and ``ground_truth/<defect>/<stem>_mask.png``.

Plain numpy/OpenCV: listing and masks need no torch, so they are checked before a model loads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_inspect.datasets.images import IMAGE_SUFFIXES
from edge_inspect.errors import InputDataError

__all__ = ["TestImage", "list_test_images", "read_mask"]

_MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".jpg")


@dataclass(frozen=True)
class TestImage:
    """One test image; ``rel`` (``test/<type>/<name>``) is its stable name in reports and in
    the contamination list."""

    path: Path
    rel: str
    defect_type: str  # "good" for good images
    mask: Path | None  # ground-truth mask file, if the dataset has one

    __test__ = False  # not a pytest class, despite the name

    @property
    def label(self) -> int:
        return 0 if self.defect_type == "good" else 1


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _mask_for(root: Path, defect_type: str, stem: str) -> Path | None:
    folder = root / "ground_truth" / defect_type
    for suffix in _MASK_SUFFIXES:
        cand = folder / f"{stem}_mask{suffix}"
        if cand.is_file():
            return cand
    return None


def list_test_images(root: Path, exclude: Iterable[str] = ()) -> tuple[list[TestImage], list[str]]:
    """(test images in type/name order, the excluded ``rel`` names actually found).

    Refuses a set that cannot be measured: no ``test/`` folder, no good images, no defect images
    (after ``exclude``, the images a contaminated model was trained on).
    """
    root = Path(root)
    test = root / "test"
    if not root.is_dir():
        raise InputDataError(f"{root}: dataset folder not found")
    if not test.is_dir():
        raise InputDataError(f"{test}: missing; expected the MVTec AD layout (test/good/, test/<defect>/)")
    skip = set(exclude)
    items: list[TestImage] = []
    dropped: list[str] = []
    for folder in sorted(d for d in test.iterdir() if d.is_dir()):
        kind = folder.name
        for path in _images(folder):
            rel = f"test/{kind}/{path.name}"
            if rel in skip:
                dropped.append(rel)
                continue
            mask = None if kind == "good" else _mask_for(root, kind, path.stem)
            items.append(TestImage(path=path, rel=rel, defect_type=kind, mask=mask))
    if not any(it.label == 0 for it in items):
        raise InputDataError(f"{test / 'good'}: missing or holds no images; metrics need good test images")
    if not any(it.label == 1 for it in items):
        what = " (all were in the model's contamination list)" if dropped else ""
        raise InputDataError(f"{test}: no defect classes (test/<defect>/ folders with images){what}")
    return items, dropped


def read_mask(path: Path | None, shape: tuple[int, int]) -> np.ndarray:
    """Boolean defect mask resized (nearest) to ``shape`` (H, W); all False without a file."""
    if path is None:
        return np.zeros(shape, bool)
    m = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if m is None:
        raise InputDataError(f"{path}: not a readable mask image")
    if m.shape != tuple(shape):
        m = cv2.resize(m, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return m > (127 if m.max() > 1 else 0)  # 0/255 masks (MVTec), or 0/1
