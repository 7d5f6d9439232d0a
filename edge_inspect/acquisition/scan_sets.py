"""What a path given as scans stands for, where several scans must each stay a scan of their own
(`calibrate --scans`: boards never join across files), and the sha256 that names a scan's files.

A path is an image file (one scan), a `synth` output folder (its scan), a recording folder (one
scan), or a folder of images: ONE scan in frame format (b) when every image is
`lines_per_frame` lines high (the last may be shorter), else one scan per image.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from edge_inspect.acquisition.ground_truth import resolve_scan
from edge_inspect.acquisition.recording import chunk_files, is_recording
from edge_inspect.acquisition.replay import scan_files
from edge_inspect.errors import InputDataError


@dataclass(frozen=True)
class ScanSet:
    """The scans one path stands for, and in what form it was read."""

    path: Path
    scans: list[Path]
    form: str

    def describe(self) -> str:
        n = len(self.scans)
        return f"{n} scan{'s' if n != 1 else ''} ({self.form})"


def image_height(path: Path) -> int:
    """Lines in a scan image, read from its header only (a .npy's too)."""
    try:
        if path.suffix.lower() == ".npy":
            return int(np.load(path, mmap_mode="r", allow_pickle=False).shape[0])
        with Image.open(path) as img:
            return int(img.size[1])
    except (OSError, ValueError, UnidentifiedImageError) as exc:
        raise InputDataError(f"{path}: not a readable scan image ({exc})") from None


def scan_set(path: Path, lines_per_frame: int) -> ScanSet:
    """The scans `path` stands for (see the module docstring); a path that is none of these is
    a clear error before any work starts."""
    path = Path(path)
    if is_recording(path):
        return ScanSet(path, [path], "recording")
    if path.is_dir() and (path / "ground_truth.json").is_file():
        scan = resolve_scan(path)
        scan_files(scan)
        return ScanSet(path, [scan], f"synth folder: {scan.name}{'/' if scan.is_dir() else ''}")
    files = scan_files(path)
    if not path.is_dir():
        return ScanSet(path, [path], "image file")
    heights = [image_height(f) for f in files]
    if all(h == lines_per_frame for h in heights[:-1]) and heights[-1] <= lines_per_frame:
        return ScanSet(path, [path], f"frames of {lines_per_frame} lines")
    return ScanSet(path, files, "one per image: not frames of camera.lines_per_frame lines")


def scan_sha256(path: Path) -> str:
    """The sha256 that names a scan file, or a recording (its chunk files in order), as training
    records what it read and calibration checks it."""
    h = hashlib.sha256()
    for part in chunk_files(path) if is_recording(path) else [path]:
        with open(part, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def scan_hashes(scan: Path) -> dict[Path, str]:
    """Each file of one scan (a recording counts as one) with its sha256."""
    files = [scan] if is_recording(scan) else scan_files(scan)
    return {f: scan_sha256(f) for f in files}
