"""The recording format: write strips, read them back bit for bit with their counters."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge_inspect.acquisition.base import Strip
from edge_inspect.acquisition.recording import Recorder, RecordingSource, is_recording
from edge_inspect.errors import InputDataError
from conftest import needs_small_disk, run_cli_on_small_disk

LINES, WIDTH = 8, 48


def make_strips(n: int, channels: int = 3, seed: int = 0, gap_at: int | None = None) -> list[Strip]:
    rng = np.random.default_rng(seed)
    out, line = [], 0
    for i in range(n):
        if i == gap_at:
            line += 5 * LINES  # lost frames stay lost
        lines = rng.integers(0, 256, (LINES, WIDTH, channels), dtype=np.uint8)
        out.append(Strip(lines=lines, first_line=line, t_ns=1_000_000 + i * 2_000_000, frame_id=line // LINES))
        line += LINES
    return out


def record(out: Path, strips: list[Strip], channels: int = 3, **kw) -> Recorder:
    rec = Recorder(out, width=WIDTH, channels=channels, lines_per_frame=LINES,
                   camera={"model": "test"}, source="numpy", **kw)
    for s in strips:
        rec.write(s)
    rec.close()
    return rec


def assert_same(got: list[Strip], want: list[Strip]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert np.array_equal(g.lines, w.lines)
        assert (g.first_line, g.t_ns, g.frame_id) == (w.first_line, w.t_ns, w.frame_id)
        assert g.lines.dtype == np.uint8 and g.lines.shape == w.lines.shape


@pytest.mark.parametrize("channels", [1, 3])
def test_round_trip_with_chunks_and_gaps(tmp_path, channels):
    strips = make_strips(25, channels, gap_at=13)
    rec = record(tmp_path / "rec", strips, channels, max_file_frames=10)
    assert rec.chunks_written == 3
    d = tmp_path / "rec"
    assert is_recording(d) and not is_recording(tmp_path)
    assert sorted(p.name for p in d.iterdir()) == [
        "chunk_000000.npz", "chunk_000001.npz", "chunk_000002.npz", "recording.json"]
    meta = json.loads((d / "recording.json").read_text())
    assert meta["format"] == "edge-inspect-recording" and meta["version"] == 1
    assert (meta["width"], meta["channels"], meta["lines_per_frame"]) == (WIDTH, channels, LINES)
    assert meta["closed"] and meta["frames"] == 25 and meta["camera"] == {"model": "test"}
    with np.load(d / "chunk_000002.npz") as z:  # plain numpy reads a chunk
        assert z["lines"].shape == (5, LINES, WIDTH, channels)
        assert z["first_line"].dtype == np.int64 and z["t_ns"].dtype == np.int64
    src = RecordingSource(d)
    assert (src.width, src.channels, src.lines_per_frame, src.live) == (WIDTH, channels, LINES, False)
    got = list(src.strips())
    assert_same(got, strips)
    firsts = np.array([s.first_line for s in got])
    assert np.diff(firsts).max() == 6 * LINES  # the gap survived


def test_disk_budget_removes_oldest_chunks(tmp_path):
    strips = make_strips(50)
    chunk_bytes = 10 * LINES * WIDTH * 3
    rec = record(tmp_path / "rec", strips, max_file_frames=10, max_bytes=int(3.5 * chunk_bytes))
    names = sorted(p.name for p in (tmp_path / "rec").glob("chunk_*.npz"))
    assert names == ["chunk_000003.npz", "chunk_000004.npz"]  # 2 kept + room for the next one
    assert rec.chunks_removed == 3
    total = sum(p.stat().st_size for p in (tmp_path / "rec").iterdir())
    assert total <= 3.5 * chunk_bytes
    assert_same(list(RecordingSource(tmp_path / "rec").strips()), strips[30:])


def test_budget_below_one_chunk_keeps_the_newest(tmp_path):
    record(tmp_path / "rec", make_strips(30), max_file_frames=10, max_bytes=100)
    assert [p.name for p in (tmp_path / "rec").glob("chunk_*.npz")] == ["chunk_000002.npz"]


def test_corrupt_or_missing_files_are_clear_errors(tmp_path):
    d = tmp_path / "rec"
    record(d, make_strips(25), max_file_frames=10)
    # a truncated chunk in the middle: the frames before it come out, then a clear error
    c1 = d / "chunk_000001.npz"
    c1.write_bytes(c1.read_bytes()[: c1.stat().st_size // 2])
    src = RecordingSource(d)
    got = []
    with pytest.raises(InputDataError, match="chunk_000001.npz: corrupt chunk"):
        for s in src.strips():
            got.append(s)
    assert len(got) == 10
    # garbage as the first chunk: refused at open
    (d / "chunk_000000.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(InputDataError, match="chunk_000000.npz: corrupt chunk"):
        RecordingSource(d)
    (d / "recording.json").write_text("{ not json")
    with pytest.raises(InputDataError, match="recording.json: corrupt"):
        RecordingSource(d)
    (d / "recording.json").write_text(json.dumps({"format": "edge-inspect-recording", "version": 99}))
    with pytest.raises(InputDataError, match="version 99"):
        RecordingSource(d)
    (d / "recording.json").unlink()
    assert not is_recording(d)
    with pytest.raises(InputDataError, match="recording.json missing"):
        RecordingSource(d)


def test_chunk_with_wrong_shape_is_refused(tmp_path):
    d = tmp_path / "rec"
    record(d, make_strips(5))
    np.savez(d / "chunk_000000.npz", lines=np.zeros((5, LINES, WIDTH + 1, 3), np.uint8),
             first_line=np.zeros(5, np.int64), t_ns=np.zeros(5, np.int64), frame_id=np.zeros(5, np.int64))
    with pytest.raises(InputDataError, match="corrupt chunk"):
        RecordingSource(d)


def test_empty_recording_and_bad_frames(tmp_path):
    rec = Recorder(tmp_path / "empty", width=WIDTH, channels=3, lines_per_frame=LINES)
    with pytest.raises(InputDataError, match="expected uint8"):
        rec.write(Strip(lines=np.zeros((LINES + 1, WIDTH, 3), np.uint8), first_line=0, t_ns=0, frame_id=0))
    rec.close()
    rec.close()
    with pytest.raises(InputDataError, match="no chunk files"):
        RecordingSource(tmp_path / "empty")
    with pytest.raises(InputDataError, match="already holds a recording"):
        Recorder(tmp_path / "empty", width=WIDTH, channels=3, lines_per_frame=LINES)


def test_interrupted_recording_leftovers_are_ignored(tmp_path):
    d = tmp_path / "rec"
    rec = Recorder(d, width=WIDTH, channels=3, lines_per_frame=LINES, max_file_frames=10)
    strips = make_strips(15)
    for s in strips:
        rec.write(s)
    # no close(): the process died; chunk 0 is complete, chunk 1 is only a .part file
    assert (d / "chunk_000001.npz.part").is_file()
    assert_same(list(RecordingSource(d).strips()), strips[:10])
    rec.close()


def test_realtime_paces_by_recorded_time_and_close_stops(tmp_path):
    strips = make_strips(10)  # 2 ms apart
    strips = [Strip(s.lines, s.first_line, s.t_ns * 10, s.frame_id) for s in strips]  # 20 ms apart
    record(tmp_path / "rec", strips)
    src = RecordingSource(tmp_path / "rec", speed="realtime")
    assert src.live
    t = time.monotonic()
    assert len(list(src.strips())) == 10
    assert 0.15 < time.monotonic() - t < 2.0
    src = RecordingSource(tmp_path / "rec", speed="realtime")
    threading.Timer(0.05, src.close).start()
    assert len(list(src.strips())) < 10


def test_records_a_live_camera(tmp_path):
    """81 frames of the viky GenTL camera recorded and read back identically (a frame count, not
    a time: a loaded machine may take longer to fetch them)."""
    pytest.importorskip("harvesters.core", reason="harvesters (camera extra) not installed")
    genicam = pytest.importorskip("genicam", reason="genicam (camera extra) not installed")
    cti = Path(genicam.__file__).parent / "viky.cti"
    if not cti.is_file():
        pytest.skip(f"viky GenTL producer not found at {cti}")
    from edge_inspect.acquisition.genicam import GenicamSource
    from edge_inspect.config import CameraSourceConfig, RecordConfig

    cam = GenicamSource(CameraSourceConfig(cti=[cti], width=320, pixel_format="RGBa8",
                                           line_rate_hz=100 * 100.0), 100)
    rec = Recorder.for_source(tmp_path / "cam", cam, RecordConfig(max_file_frames=40))
    seen = []
    t0 = time.monotonic()
    for s in cam.strips():
        rec.write(s)
        seen.append(Strip(s.lines.copy(), s.first_line, s.t_ns, s.frame_id))  # pool slots are reused
        if len(seen) >= 81 or time.monotonic() - t0 > 60.0:
            cam.close()
    rec.close()
    assert len(seen) >= 81 and rec.chunks_written >= 2
    src = RecordingSource(tmp_path / "cam")
    assert src.meta["camera"]["model"] == "Viky" and src.meta["camera"]["pixel_format"] == "RGBa8"
    assert_same(list(src.strips()), seen)


def _record_config(tmp_path: Path, scan: Path, extra: str = "") -> Path:
    cfg = tmp_path / "record.yaml"
    cfg.write_text(f"camera: {{lines_per_frame: 64}}\nsource: {{type: replay, path: {scan}, speed: max}}\n{extra}")
    return cfg


def test_record_keeps_the_short_last_frame_of_a_scan(tmp_path, small_scan):
    """small_scan is 3206 lines: 50 frames of 64 and 6 lines over. `record` keeps those 6 lines
    (a padded last frame with its real line count), and a replay of the recording gives back
    every line of the scan, bit for bit."""
    import cv2
    from conftest import run_cli
    img = cv2.cvtColor(cv2.imread(str(small_scan)), cv2.COLOR_BGR2RGB)
    assert len(img) % 64 == 6
    r = run_cli("record", "--config", _record_config(tmp_path, small_scan), "--out", tmp_path / "rec")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "recorded 51 frames" in r.stdout and "1 short frame(s)" in r.stdout
    meta = json.loads((tmp_path / "rec" / "recording.json").read_text())
    assert meta["closed"] and meta["frames"] == 51 and meta["short_frames"] == 1
    strips = list(RecordingSource(tmp_path / "rec").strips())
    assert [len(s.lines) for s in strips] == [64] * 50 + [6]
    assert np.array_equal(np.concatenate([s.lines for s in strips]), img)
    assert [s.first_line for s in strips] == list(range(0, 3206, 64))


def test_short_frames_round_trip_and_lines_valid_are_checked(tmp_path):
    strips = make_strips(3)
    short = Strip(strips[2].lines[:3], strips[2].first_line, strips[2].t_ns, strips[2].frame_id)
    rec = record(tmp_path / "rec", [*strips[:2], short], max_file_frames=2)
    assert rec.short_frames == 1
    assert_same(list(RecordingSource(tmp_path / "rec").strips()), [*strips[:2], short])
    with pytest.raises(InputDataError, match="expected uint8"):
        Recorder(tmp_path / "other", width=WIDTH, channels=3, lines_per_frame=LINES).write(
            Strip(np.zeros((0, WIDTH, 3), np.uint8), 0, 0, 0))


def test_pixel_bytes_overwritten_in_a_chunk_are_refused_before_any_frame(tmp_path):
    """The zip CRC-32 covers the pixels too: a chunk with one changed pixel byte delivers no
    frame at all (its scores would silently change), it is a clear error naming the file."""
    import zipfile
    d = tmp_path / "rec"
    record(d, make_strips(25), max_file_frames=10)
    c1 = d / "chunk_000001.npz"
    with zipfile.ZipFile(c1) as zf:
        info = zf.getinfo("lines.npy")
    data = bytearray(c1.read_bytes())
    data[info.header_offset + 200] ^= 0x01  # inside the first frame's pixels (after the headers)
    c1.write_bytes(bytes(data))
    got = []
    with pytest.raises(InputDataError, match="chunk_000001.npz: corrupt chunk \\(pixel data fails its CRC-32"):
        for s in RecordingSource(d).strips():
            got.append(s)
    assert len(got) == 10  # chunk 0 only: not one frame of the damaged chunk


@needs_small_disk
def test_record_onto_a_full_disk_closes_the_recording_and_names_the_folder(tmp_path, small_scan):
    """A 1 MiB disk: chunk 0 (4 frames, 393 KiB) fits, chunk 1 does not. The command exits 1 with
    one line naming the folder; no .part or temp file is left; recording.json is closed and
    counts the complete chunk, which replays."""
    disk = tmp_path / "disk"
    cfg = _record_config(tmp_path, small_scan, "record: {max_file_frames: 4}\n")
    r = run_cli_on_small_disk(disk, "1m", "record", "--config", cfg, "--out", disk / "rec")
    assert r.returncode == 1, (r.stdout, r.stderr[-2000:])
    err = [x for x in r.stderr.splitlines() if x.startswith("edge-inspect: error:")]
    assert len(err) == 1 and "Traceback" not in r.stderr
    assert f"{disk / 'rec'}: recording stopped: No space left on device; kept 4 frames in 1 complete chunk(s)" in err[0]
    rec = disk.with_name("disk.after") / "rec"
    assert sorted(p.name for p in rec.iterdir()) == ["chunk_000000.npz", "recording.json"]
    meta = json.loads((rec / "recording.json").read_text())
    assert (meta["closed"], meta["frames"], meta["chunks"]) == (True, 4, 1)
    assert [s.first_line for s in RecordingSource(rec).strips()] == [0, 64, 128, 192]
