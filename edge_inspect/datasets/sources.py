"""Good training data in the forms plants have it, as a list of images for the patch recipe:

* an MVTec-layout folder (its ``train/good`` images),
* a folder of good images (any names; PNG, JPEG, TIFF, BMP),
* a scan (an image file, a `synth` output folder, or a folder of frames with ``--data-kind scan``),
* a recording (format c: a folder with ``recording.json``).

Images keep their native resolution (``data_mode: resize`` squeezes them to one tile, only when
asked). A scan or recording is cut by the run-time tiler, so training tiles are exactly the
tiles the line scores. Grey data for a colour model (or the reverse) is refused, naming both.
What was read is listed with its sha256, so the model can say what it was trained on."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import structlog

from edge_inspect.acquisition.ground_truth import resolve_scan
from edge_inspect.acquisition.recording import is_recording
from edge_inspect.acquisition.replay import scan_files
from edge_inspect.acquisition.scan_sets import scan_sha256
from edge_inspect.config import Config
from edge_inspect.datasets.contamination import Contamination, contamination_images, pick_contamination
from edge_inspect.datasets.images import IMAGE_SUFFIXES, read_image, resize_to_tile
from edge_inspect.datasets.mvtec import list_good_images
from edge_inspect.errors import ConfigError, InputDataError
from edge_inspect.tiling.scan_tiles import iter_scan_tiles
from edge_inspect.training_config import TrainingConfig

log = structlog.get_logger(__name__)

DataKind = Literal["auto", "mvtec", "images", "scan", "recording"]
_KIND_WORDS = {"mvtec": "MVTec-layout folder", "images": "folder of good images", "scan": "scan",
               "recording": "recording", "mixed": "data"}


@dataclass
class TrainingData:
    """Good images (uint8 HxWxC) and where they came from."""

    images: list[np.ndarray]
    kind: str
    path: Path
    files: list[Path] = field(default_factory=list)
    groups: list[int] | None = None  # a scan's tiles: the board of each (held out whole)

    def describe(self) -> str:
        pixels = sum(im.shape[0] * im.shape[1] for im in self.images)
        unit = "tiles cut by the run-time tiler" if self.kind in ("scan", "recording") else "images"
        return (f"{_KIND_WORDS.get(self.kind, self.kind)} {self.path}: {len(self.images)} {unit} from "
                f"{len(self.files)} file(s), {pixels / 1e6:.1f} Mpx")

    def manifest(self) -> dict:
        """What the model was trained on: the files with their sha256 (for `calibrate`'s check)."""
        return {"kind": self.kind, "path": str(self.path),
                "files": [{"path": str(f), "sha256": scan_sha256(f)} for f in self.files]}


def combined(parts: list[TrainingData]) -> TrainingData:
    """Several data paths as one set: images in order, each part's groups kept apart (a scan's
    boards, or each image on its own), the files of all."""
    if len(parts) == 1:
        return parts[0]
    images: list[np.ndarray] = []
    groups: list[int] = []
    for part in parts:
        own = part.groups if part.groups is not None else list(range(len(part.images)))
        base = max(groups, default=-1) + 1
        groups += [base + g - min(own) for g in own]
        images += part.images
    kinds = sorted({p.kind for p in parts})
    return TrainingData(images, kinds[0] if len(kinds) == 1 else "mixed", Path(", ".join(str(p.path) for p in parts)),
                        [f for p in parts for f in p.files], groups)


def detect_kind(data: Path) -> str:
    """auto: recording > MVTec folder > synth folder or image file (a scan) > folder of images."""
    if not data.exists():
        raise InputDataError(f"{data}: training data not found")
    if is_recording(data):
        return "recording"
    if (data / "train" / "good").is_dir():
        return "mvtec"
    if data.is_file() or (data / "ground_truth.json").is_file():
        return "scan"
    return "images"


def _check_channels(img: np.ndarray, path: Path, nc: int) -> np.ndarray:
    if img.shape[2] != nc:
        have = "grey (1 channel)" if img.shape[2] == 1 else "colour (3 channels)"
        want = "grey (1 channel)" if nc == 1 else "colour (3 channels)"
        raise ConfigError(f"{path} is {have} but training.nc is {nc}, {want}: set training.nc to match the data")
    return img


def _image_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputDataError(f"{folder}: holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def training_data(data: Path, cfg: Config, kind: DataKind = "auto") -> TrainingData:
    """The good images of `data` (see the module docstring); says what it read in the log."""
    tc = cfg.training
    if tc.isize != cfg.tiling.tile_size:
        raise ConfigError(f"training.isize ({tc.isize}) must equal tiling.tile_size ({cfg.tiling.tile_size}): "
                          "the line cuts the tiles the model was trained on")
    data = Path(data)
    kind = detect_kind(data) if kind == "auto" else kind
    if kind in ("mvtec", "images"):
        files = list_good_images(data, "train") if kind == "mvtec" else _image_files(data)
        images = [_check_channels(read_image(f, None), f, tc.nc) for f in files]
        if tc.data_mode == "resize":
            images = [resize_to_tile(im, tc.isize) for im in images]
        out = TrainingData(images, kind, data, files)
    else:
        scan = data if kind == "recording" else resolve_scan(data)
        files = [scan] if kind == "recording" else scan_files(scan)
        cut = list(iter_scan_tiles(scan, cfg))
        if not cut:
            raise InputDataError(f"{scan}: no boards found, so no training tiles (check tiling.segmenter)")
        _check_channels(cut[0][1][0], scan, tc.nc)
        images = [tile for _, block in cut for tile in block]
        groups = [bid for bid, block in cut for _ in range(len(block))]
        out = TrainingData(images, kind, scan, files, groups)
    log.info("training_data", kind=kind, path=str(out.path), images=len(out.images), files=len(out.files))
    return out


def training_contamination(data: Path, tc: TrainingConfig) -> tuple[Contamination | None, list[np.ndarray] | None]:
    """``training.contaminate`` > 0: the seeded defect images to add to the training part only;
    (None, None) for a clean run."""
    if tc.contaminate <= 0:
        return None, None
    if not (data / "train" / "good").is_dir():
        raise InputDataError(f"{data}: --contaminate needs an MVTec-layout folder (train/good, test/<defect>)")
    picked = pick_contamination(data, tc.contaminate, tc.seed)
    images = contamination_images(data, picked, tc.nc)
    if tc.data_mode == "resize":
        images = [resize_to_tile(im, tc.isize) for im in images]
    log.info("training_contamination", ratio=tc.contaminate, images=len(picked.images), by_type=picked.by_type())
    return picked, (images or None)
