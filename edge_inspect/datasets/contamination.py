"""Defect contamination of the training set (the anti-noise study).

Real good-only training data is never perfectly clean: some defective parts slip into it. To
measure how a model copes, ``train --contaminate R`` mixes round(R x n) defect images from the
dataset's ``test/<defect>`` folders into the TRAINING part only (n = images in ``train/good``);
validation stays clean so thresholds are still set on good data. The pick is seeded and written
to ``contamination.json`` beside the checkpoint, so ``evaluate`` can drop exactly those images
from the test set it reports on (a model must not be scored on images it was trained on).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from edge_inspect.atomic import write_atomic
from edge_inspect.datasets.images import (
    IMAGE_SUFFIXES,
    read_image,
)
from edge_inspect.datasets.mvtec import list_good_images
from edge_inspect.errors import InputDataError

__all__ = [
    "CONTAMINATION_FILE",
    "Contamination",
    "contamination_images",
    "defect_images",
    "pick_contamination",
    "read_contamination",
    "record_contamination",
    "write_contamination",
]

log = structlog.get_logger(__name__)

CONTAMINATION_FILE = "contamination.json"
_FORMAT = "edge-inspect/contamination"


@dataclass(frozen=True)
class Contamination:
    """The defect images mixed into training: paths relative to the dataset root, POSIX style
    (``test/<defect>/<name>``) so the list still matches when the dataset is moved or copied."""

    ratio: float
    seed: int
    n_good_train: int
    images: tuple[str, ...]
    data: str = ""

    def by_type(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for rel in self.images:
            kind = rel.split("/")[1]
            out[kind] = out.get(kind, 0) + 1
        return dict(sorted(out.items()))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": _FORMAT, "ratio": self.ratio, "seed": self.seed, "n_good_train": self.n_good_train,
            "n_images": len(self.images), "by_type": self.by_type(), "data": self.data,
            "images": list(self.images),
        }


def defect_images(root: Path) -> list[str]:
    """Every image under ``root/test/<defect>/`` (not ``good``), relative POSIX paths, sorted."""
    test = Path(root) / "test"
    if not test.is_dir():
        raise InputDataError(f"{test}: missing; --contaminate takes defect images from test/<defect>/")
    out = [
        f"test/{d.name}/{p.name}"
        for d in sorted(test.iterdir()) if d.is_dir() and d.name != "good"
        for p in sorted(d.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not out:
        raise InputDataError(f"{test}: no defect images in test/<defect>/ to contaminate training with")
    return out


def pick_contamination(root: Path, ratio: float, seed: int) -> Contamination:
    """Seeded choice of round(ratio x n_good_train) defect images, pooled over all defect types."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"contamination ratio must be in [0, 1), got {ratio}")
    root = Path(root)
    n_good = len(list_good_images(root, "train"))
    pool = defect_images(root)
    k = round(ratio * n_good)
    if k > len(pool):
        raise InputDataError(
            f"{root}: --contaminate {ratio} needs {k} defect images (of {n_good} good training images), "
            f"test/ holds only {len(pool)}"
        )
    rng = np.random.default_rng(seed)
    chosen = sorted(pool[i] for i in rng.choice(len(pool), size=k, replace=False)) if k else []
    return Contamination(ratio=float(ratio), seed=int(seed), n_good_train=n_good, images=tuple(chosen),
                         data=str(root.resolve()))


def contamination_images(root: Path, picked: Contamination, nc: int) -> list[np.ndarray]:
    """The picked defect images, read like the good ones (``nc`` channels)."""
    return [read_image(Path(root) / rel, nc) for rel in picked.images]


def write_contamination(out_dir: Path, picked: Contamination | None) -> None:
    """Write the list beside the checkpoint (atomically); remove a stale one when there is none."""
    path = Path(out_dir) / CONTAMINATION_FILE
    if picked is None:
        path.unlink(missing_ok=True)
        return
    write_atomic(path, json.dumps(picked.to_json(), indent=2))


def read_contamination(ckpt_dir: Path) -> Contamination | None:
    """The list written by ``train --contaminate`` (None when the model was trained clean)."""
    path = Path(ckpt_dir) / CONTAMINATION_FILE
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("format") != _FORMAT:
            raise ValueError(f"no '{_FORMAT}' marker")
        images = tuple(str(x) for x in doc["images"])
        return Contamination(ratio=float(doc["ratio"]), seed=int(doc["seed"]),
                             n_good_train=int(doc["n_good_train"]), images=images, data=str(doc.get("data", "")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputDataError(f"{path}: unreadable contamination list ({exc})") from None


def record_contamination(out_dir: Path, picked: Contamination | None) -> None:
    """After training: the list beside the checkpoint, and a summary in ``train.json`` (whose
    ``config.contaminate`` already holds the ratio) so a run's report shows what it saw."""
    out_dir = Path(out_dir)
    write_contamination(out_dir, picked)
    summary_path = out_dir / "train.json"
    if not summary_path.is_file():
        return
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    summary["contamination"] = None if picked is None else {
        "ratio": picked.ratio, "seed": picked.seed, "n_good_train": picked.n_good_train,
        "n_images": len(picked.images), "by_type": picked.by_type(), "file": CONTAMINATION_FILE,
    }
    write_atomic(summary_path, json.dumps(summary, indent=2))
