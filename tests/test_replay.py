import cv2
import numpy as np
import pytest

from edge_inspect.acquisition.replay import ReplaySource, read_scan_image
from edge_inspect.errors import InputDataError


def collect(src):
    return list(src.strips())


def test_image_delivered_in_frames_with_line_counters(tmp_path):
    img = np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "s.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    src = ReplaySource(tmp_path / "s.png", 64, 1000.0)
    strips = collect(src)
    assert [len(s.lines) for s in strips] == [64, 64, 64, 8]
    assert [s.first_line for s in strips] == [0, 64, 128, 192]
    assert np.array_equal(np.concatenate([s.lines for s in strips]), img)
    assert not src.live


def test_folder_of_frames_is_one_continuous_scan(tmp_path):
    img = np.random.default_rng(1).integers(0, 255, (150, 128), dtype=np.uint8)
    d = tmp_path / "scan"
    d.mkdir()
    for i, start in enumerate(range(0, 150, 50)):  # files of 50 lines, frames of 64
        np.save(d / f"f{i:03d}.npy", img[start:start + 50])
    strips = collect(ReplaySource(d, 64, 1000.0))
    assert [len(s.lines) for s in strips] == [64, 64, 22]
    assert np.array_equal(np.concatenate([s.lines for s in strips])[:, :, 0], img)


def test_realtime_paces_at_line_rate(tmp_path):
    np.save(tmp_path / "s.npy", np.zeros((100, 64), np.uint8))
    import time
    t = time.monotonic()
    src = ReplaySource(tmp_path / "s.npy", 10, 1000.0, speed="realtime")
    collect(src)
    assert src.live and time.monotonic() - t >= 0.09


@pytest.mark.parametrize("make,match", [
    (lambda p: p / "missing.png", "not found"),
    (lambda p: [(p / "bad.png").write_bytes(b"not a png"), p / "bad.png"][1], "not a readable image"),
    (lambda p: np.save(p / "f.npy", np.zeros((4, 4), np.float32)) or p / "f.npy", "must be uint8"),
    (lambda p: np.save(p / "f.npy", np.zeros((4, 4, 2), np.uint8)) or p / "f.npy", "H x W x 1|3"),
    (lambda p: [(p / "x.txt").write_text("x"), p / "x.txt"][1], "unsupported scan file type"),
])
def test_bad_scan_files(tmp_path, make, match):
    with pytest.raises(InputDataError, match=match):
        ReplaySource(make(tmp_path), 64, 1000.0)


def test_empty_folder(tmp_path):
    with pytest.raises(InputDataError, match="holds no scan images"):
        ReplaySource(tmp_path, 64, 1000.0)


def test_frames_of_different_width_in_one_folder(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((10, 64), np.uint8))
    np.save(tmp_path / "b.npy", np.zeros((10, 65), np.uint8))
    with pytest.raises(InputDataError, match="differs from"):
        collect(ReplaySource(tmp_path, 8, 1000.0))


def test_grey_png_reads_as_one_channel(tmp_path):
    cv2.imwrite(str(tmp_path / "g.png"), np.full((5, 7), 9, np.uint8))
    assert read_scan_image(tmp_path / "g.png").shape == (5, 7, 1)
