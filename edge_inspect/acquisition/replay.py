"""Replay of recorded scans: an image file (or .npy) read top to bottom, or a folder of such
files in name order, delivered as camera frames of `lines_per_frame` lines."""

from __future__ import annotations

import threading
import time
import zipfile
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from edge_inspect.acquisition.base import Strip
from edge_inspect.errors import InputDataError

IMAGE_SUFFIXES = {".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".npy"}


def read_uint8_npy(path: Path) -> np.ndarray:
    """A .npy file of uint8 pixels (no pickles: a .npy runs no code); clear error otherwise."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, MemoryError, zipfile.BadZipFile) as exc:
        raise InputDataError(f"{path}: not a readable .npy array ({type(exc).__name__}: {exc})") from None
    if not isinstance(arr, np.ndarray):  # np.load opens a zip archive (.npz) whatever the name
        arr.close()
        raise InputDataError(f"{path}: an .npz archive, not one .npy array")
    if arr.dtype != np.uint8:
        raise InputDataError(f"{path}: array must be uint8, got {arr.dtype}")
    return arr


def read_scan_image(path: Path) -> np.ndarray:
    """Read one scan file as uint8 [H, W, C] (RGB order for colour); clear error otherwise."""
    if not path.is_file():
        raise InputDataError(f"{path}: scan file not found")
    if path.suffix.lower() == ".npy":
        arr = read_uint8_npy(path)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3 or arr.shape[2] not in (1, 3):
            raise InputDataError(f"{path}: scan array must be H x W or H x W x 1|3, got shape {arr.shape}")
        return np.ascontiguousarray(arr)
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputDataError(f"{path}: not a readable image (corrupt or unsupported format)")
    if img.dtype != np.uint8:
        raise InputDataError(f"{path}: scan images must be 8-bit, got {img.dtype}")
    if img.ndim == 2:
        return img[:, :, None]
    if img.shape[2] == 4:
        img = img[:, :, :3]
    return np.ascontiguousarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))


def scan_files(path: Path) -> list[Path]:
    """The files of one scan: the file itself, or a folder's image files in name order."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputDataError(f"{path}: folder holds no scan images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return files
    if not path.exists():
        raise InputDataError(f"{path}: scan not found")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise InputDataError(f"{path}: unsupported scan file type {path.suffix!r}")
    return [path]


class ReplaySource:
    """Frames from scan files. At speed "max" it is not live (the pipeline may make it wait);
    at "realtime" it paces at `line_rate_hz` and is live, like a camera."""

    def __init__(self, path: Path, lines_per_frame: int, line_rate_hz: float, speed: str = "max") -> None:
        self.name = str(path)
        self.files = scan_files(path)
        self.lines_per_frame = lines_per_frame
        self.line_rate_hz = line_rate_hz
        self.live = speed == "realtime"
        self.counters = None  # a file has no camera counters
        self.reconnecting = False
        self._stop = threading.Event()
        first = read_scan_image(self.files[0])
        self.width, self.channels = first.shape[1], first.shape[2]
        self._first = first
        #: lines in the scan, for progress bars (a folder's: estimated from its first file)
        self.total_lines = len(first) * len(self.files)

    def _images(self) -> Iterator[tuple[Path, np.ndarray]]:
        for i, f in enumerate(self.files):
            img = self._first if i == 0 else read_scan_image(f)
            if img.shape[1:] != (self.width, self.channels):
                raise InputDataError(
                    f"{f}: shape {img.shape[1]}x{img.shape[2]} (width x channels) differs from "
                    f"{self.files[0].name}'s {self.width}x{self.channels}"
                )
            yield f, img
        self._first = None

    def strips(self) -> Iterator[Strip]:
        n = self.lines_per_frame
        line = 0
        frame = 0
        t0 = time.monotonic_ns()
        carry: np.ndarray | None = None
        for _, img in self._images():
            if carry is not None and len(carry):
                img = np.concatenate([carry, img], axis=0)
            full = (len(img) // n) * n
            for start in range(0, full, n):
                if self._stop.is_set():
                    return
                yield self._strip(img[start:start + n], line, frame, t0)
                line += n
                frame += 1
            carry = img[full:]
        if carry is not None and len(carry) and not self._stop.is_set():
            yield self._strip(carry, line, frame, t0)

    def _strip(self, lines: np.ndarray, first_line: int, frame: int, t0: int) -> Strip:
        t_ns = t0 + int(first_line * 1e9 / self.line_rate_hz)
        if self.live:
            wait = (t_ns + int(len(lines) * 1e9 / self.line_rate_hz) - time.monotonic_ns()) / 1e9
            if wait > 0:
                self._stop.wait(wait)
        return Strip(lines=np.ascontiguousarray(lines), first_line=first_line, t_ns=t_ns, frame_id=frame)

    def close(self) -> None:
        self._stop.set()
