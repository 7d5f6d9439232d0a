"""What a path given to `calibrate --scans` stands for, on real files: image files, synth folders,
recordings, folders of frames and folders of separate scans; and the sha256 that names them,
the same as training records."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_inspect.acquisition.recording import Recorder
from edge_inspect.acquisition.replay import ReplaySource
from edge_inspect.acquisition.scan_sets import image_height, scan_hashes, scan_set, scan_sha256
from edge_inspect.acquisition.synthetic import SynthSpec, write_synthetic_scans
from edge_inspect.datasets.sources import TrainingData
from edge_inspect.errors import InputDataError
from edge_inspect.inference.manifest import sha256_file

SPEC = SynthSpec(boards=2, defect_rate=0.0, seed=8801, width=256, board_lines=(256, 300), gap_lines=(40, 60))


def _images(folder: Path, heights: list[int]) -> list[Path]:
    folder.mkdir()
    rng = np.random.default_rng(len(heights))
    paths = []
    for i, h in enumerate(heights):
        paths.append(folder / f"part_{i:02d}.png")
        cv2.imwrite(str(paths[-1]), rng.integers(0, 255, (h, 40), dtype=np.uint8))
    return paths


def test_a_folder_of_frames_is_one_scan_and_other_folders_one_scan_per_image(tmp_path: Path) -> None:
    _images(tmp_path / "frames", [64, 64, 64, 20])
    s = scan_set(tmp_path / "frames", 64)
    assert s.scans == [tmp_path / "frames"] and s.describe() == "1 scan (frames of 64 lines)"
    two = _images(tmp_path / "two", [300, 280])
    s = scan_set(tmp_path / "two", 64)
    assert s.scans == two and s.describe().startswith("2 scans (one per image")
    # frames of another height than the camera's, or a short one in the middle: separate scans
    assert len(scan_set(tmp_path / "frames", 32).scans) == 4
    odd = _images(tmp_path / "odd", [64, 20, 64])
    assert scan_set(tmp_path / "odd", 64).scans == odd
    np.save(tmp_path / "frames" / "part_99.npy", np.zeros((64, 40), np.uint8))  # .npy counts, by its header
    assert image_height(tmp_path / "frames" / "part_99.npy") == 64
    assert len(scan_set(tmp_path / "frames", 64).scans) == 5  # the 20-line frame is no longer last


def test_files_synth_folders_and_recordings(tmp_path: Path) -> None:
    write_synthetic_scans(tmp_path / "img", SPEC)
    write_synthetic_scans(tmp_path / "frm", SPEC, fmt="frames", lines_per_frame=64)
    assert scan_set(tmp_path / "img", 64).scans == [tmp_path / "img" / "scan.png"]
    assert scan_set(tmp_path / "img", 64).describe() == "1 scan (synth folder: scan.png)"
    assert scan_set(tmp_path / "frm", 64).scans == [tmp_path / "frm" / "scan"]
    s = scan_set(tmp_path / "img" / "scan.png", 64)
    assert s.scans == [tmp_path / "img" / "scan.png"] and s.form == "image file"

    rec = Recorder(tmp_path / "rec", width=256, channels=3, lines_per_frame=64, max_file_frames=4)
    for strip in ReplaySource(tmp_path / "img" / "scan.png", 64, 5000.0).strips():
        if len(strip.lines) == 64:
            rec.write(strip)
    rec.close()
    s = scan_set(tmp_path / "rec", 64)
    assert s.scans == [tmp_path / "rec"] and s.describe() == "1 scan (recording)"
    chunks = sorted((tmp_path / "rec").glob("chunk_*.npz"))
    assert len(chunks) > 1
    want = hashlib.sha256(b"".join(c.read_bytes() for c in chunks)).hexdigest()
    assert scan_hashes(tmp_path / "rec") == {tmp_path / "rec": want}
    # training names its files with the same hashes calibrate checks
    for f in (tmp_path / "rec", tmp_path / "img" / "scan.png"):
        assert TrainingData([], "scan", f, [f]).manifest()["files"][0]["sha256"] == scan_sha256(f)
    frames = sorted((tmp_path / "frm" / "scan").glob("*.png"))
    assert scan_hashes(tmp_path / "frm" / "scan") == {f: sha256_file(f) for f in frames}


def test_what_is_no_scan_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputDataError, match="folder holds no scan images"):
        scan_set(tmp_path / "empty", 64)
    with pytest.raises(InputDataError, match="scan not found"):
        scan_set(tmp_path / "nope.png", 64)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_bytes(b"not a png")
    (tmp_path / "bad" / "b.png").write_bytes(b"not a png")
    with pytest.raises(InputDataError, match="a.png: not a readable scan image"):
        scan_set(tmp_path / "bad", 64)
