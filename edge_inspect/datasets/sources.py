"""Where training tiles come from: an MVTec-layout folder, or good scans cut by the same tiler
the pipeline uses, so training tiles look exactly like the tiles scored at the line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import structlog

from edge_inspect.acquisition.ground_truth import resolve_scan
from edge_inspect.acquisition.replay import scan_files
from edge_inspect.config import Config
from edge_inspect.datasets.contamination import (
    Contamination,
    contamination_tiles,
    pick_contamination,
)
from edge_inspect.datasets.mvtec import mvtec_good_tiles
from edge_inspect.datasets.tiles import check_tiles
from edge_inspect.errors import ConfigError, InputDataError
from edge_inspect.tiling.scan_tiles import iter_scan_tiles
from edge_inspect.training_config import TrainingConfig

log = structlog.get_logger(__name__)


def tiles_from_scan(scan: Path, cfg: Config) -> np.ndarray:
    blocks = list(iter_scan_tiles(scan, cfg))
    if not blocks:
        raise InputDataError(f"{scan}: no boards found, so no training tiles (check tiling.segmenter)")
    return np.concatenate(blocks)


def training_tiles(data: Path, cfg: Config) -> np.ndarray:
    """Good tiles, uint8 [N, T, T, nc]."""
    tc = cfg.training
    if tc.isize != cfg.tiling.tile_size:
        raise ConfigError(f"training.isize ({tc.isize}) must equal tiling.tile_size ({cfg.tiling.tile_size})")
    if not data.exists():
        raise InputDataError(f"{data}: training data not found")
    if (data / "train" / "good").is_dir():
        tiles = mvtec_good_tiles(data, "train", tc.isize, tc.nc, mode=tc.data_mode)
    else:
        scan = resolve_scan(data)
        scan_files(scan)
        tiles = tiles_from_scan(scan, cfg)
        log.info("training_tiles_from_scan", scan=str(scan), tiles=len(tiles))
    return check_tiles(tiles, tc.isize, tc.nc)


def training_contamination(data: Path, tc: TrainingConfig) -> tuple[Contamination | None, np.ndarray | None]:
    """``training.contaminate`` > 0: the seeded defect images (and their tiles) to add to the
    training part only; (None, None) for a clean run."""
    if tc.contaminate <= 0:
        return None, None
    if not (data / "train" / "good").is_dir():
        raise InputDataError(f"{data}: --contaminate needs an MVTec-layout folder (train/good, test/<defect>)")
    picked = pick_contamination(data, tc.contaminate, tc.seed)
    tiles = contamination_tiles(data, picked, tc.isize, tc.nc, tc.data_mode)
    log.info("training_contamination", ratio=tc.contaminate, images=len(picked.images), tiles=len(tiles),
             by_type=picked.by_type())
    return picked, (tiles if len(tiles) else None)
