"""GenicamSource against a real GenTL stack: the viky producer shipped in the genicam wheel
(three simulated cameras, Width/Height 100-800, Mono8/RGBa8, AcquisitionFrameRate 1-200)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs

from edge_inspect.acquisition.genicam import (
    CameraUnavailableError,
    GenicamSource,
    convert_frame,
    select_device,
)
from edge_inspect.config import CameraSourceConfig, Config
from edge_inspect.errors import ConfigError

harvesters = pytest.importorskip("harvesters.core", reason="harvesters (camera extra) not installed")
genicam = pytest.importorskip("genicam", reason="genicam (camera extra) not installed")
VIKY = Path(genicam.__file__).parent / "viky.cti"
pytestmark = pytest.mark.skipif(not VIKY.is_file(), reason=f"viky GenTL producer not found at {VIKY}")

LINES = 100
WIDTH = 800


def viky_cfg(**kw) -> CameraSourceConfig:
    base = dict(cti=[VIKY], width=WIDTH, pixel_format="Mono8", line_rate_hz=200.0 * LINES)
    base.update(kw)
    return CameraSourceConfig(**base)


def run_for(src: GenicamSource, seconds: float, keep: int = 0) -> tuple[list, float]:
    """(first_line, frame copy or None) per strip for `seconds`, and the elapsed time."""
    out = []
    t0 = time.monotonic()
    for s in src.strips():
        out.append((s.first_line, s.lines.copy() if len(out) < keep else None, s))
        if time.monotonic() - t0 >= seconds:
            src.close()
    return out, time.monotonic() - t0


def device_infos() -> list[dict]:
    h = harvesters.Harvester()
    try:
        h.add_file(str(VIKY))
        h.update()
        return [dict(d.property_dict) for d in h.device_info_list]
    finally:
        h.reset()


def test_open_by_index_and_by_serial():
    infos = device_infos()
    assert len(infos) >= 2
    src = GenicamSource(viky_cfg(index=1), LINES)
    try:
        assert src.device_info["serial_number"] == infos[1]["serial_number"]
        assert (src.width, src.channels) == (WIDTH, 1)
        assert src.line_rate_node == "AcquisitionFrameRate"  # viky has no AcquisitionLineRate
    finally:
        src.close()
    serial = infos[2]["serial_number"]
    src = GenicamSource(viky_cfg(serial=str(serial)), LINES)
    try:
        assert src.device_info["serial_number"] == serial
        assert src.device_info["id_"] == infos[2]["id_"]
    finally:
        src.close()


def test_opening_keeps_the_programs_sigint_handler():
    before = signal.getsignal(signal.SIGINT)
    src = GenicamSource(viky_cfg(), LINES)
    src.close()
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize("fmt,channels", [("Mono8", 1), ("RGBa8", 3)])
def test_streams_with_every_frame_delivered_or_counted_lost(fmt, channels):
    """Accounting, not speed: at 200 fps a loaded machine may lose frames, but every frame is
    delivered or counted lost, and each lost frame is a gap of its lines in the line counter
    (throughput is measured in benchmarks/, not asserted here)."""
    src = GenicamSource(viky_cfg(pixel_format=fmt), LINES)
    got, _ = run_for(src, 3.0)
    firsts = np.array([g[0] for g in got])
    assert len(got) >= 20  # it streams
    assert src.counters.frames == len(got)
    assert src.counters.reconnects == 0
    steps = np.diff(firsts)
    assert (steps % LINES == 0).all() and (steps >= LINES).all()
    assert int((steps // LINES - 1).sum()) == src.counters.lost_frames  # gaps are exactly the lost frames
    last = got[-1][2]
    assert last.lines.shape == (LINES, WIDTH, channels) and last.lines.dtype == np.uint8
    assert last.frame_id == last.first_line // LINES


def test_pool_is_larger_than_the_strip_queue():
    cfg = Config.model_validate({"source": {"cti": [str(VIKY)], "buffers": 8},
                                 "camera": {"lines_per_frame": LINES}, "output": {"strip_queue": 20}})
    src = GenicamSource.from_config(cfg)
    try:
        assert src.pool_size == 24
    finally:
        src.close()


def test_strips_are_copies_in_a_pool_of_distinct_slots():
    """Each strip owns a pool slot until pool_size later frames: earlier strips keep their
    pixels while the GenTL buffers are refilled; slot k is reused by frame k + pool_size."""
    src = GenicamSource(viky_cfg(pixel_format="RGBa8", buffers=8), LINES)
    kept = []
    for s in src.strips():
        kept.append((s, s.lines.copy()))
        if len(kept) == src.pool_size + 1:
            src.close()
    for strip, copy in kept[1:]:
        assert np.array_equal(strip.lines, copy)
    assert len({id(s.lines.base) for s, _ in kept}) == 1  # one preallocated pool
    assert np.shares_memory(kept[0][0].lines, kept[-1][0].lines)
    assert not np.shares_memory(kept[0][0].lines, kept[1][0].lines)


@pytest.mark.parametrize("settings,expect", [
    ({"width": 5000}, ["source.width", "Width = 5000", "[100, 800]"]),
    ({"nodes": {"NoSuchNode": 3}}, ["source.nodes.NoSuchNode", "no node 'NoSuchNode'"]),
    ({"pixel_format": "BayerRG8"}, ["PixelFormat = 'BayerRG8'", "RGBa8", "Mono8"]),
    ({"line_rate_hz": 1e6}, ["source.line_rate_hz", "AcquisitionFrameRate = 10000", "[1, 200]"]),
    ({"nodes": {"Height": "tall"}}, ["source.nodes.Height", "integer"]),
])
def test_bad_settings_are_clear_config_errors(settings, expect):
    with pytest.raises(ConfigError) as err:
        GenicamSource(viky_cfg(**settings), LINES)
    for text in expect:
        assert text in str(err.value)


def test_every_problem_is_listed_at_once():
    with pytest.raises(ConfigError) as err:
        GenicamSource(viky_cfg(width=5000, nodes={"Nope": 1}), 5000)
    msg = str(err.value)
    assert "3 problem(s)" in msg and "source.width" in msg and "camera.lines_per_frame" in msg and "Nope" in msg


def test_lines_per_frame_out_of_camera_range():
    with pytest.raises(ConfigError, match=r"camera.lines_per_frame: Height = 64 .*\[100, 800\]"):
        GenicamSource(viky_cfg(), 64)


def test_missing_line_rate_and_triggers_are_warnings_not_guesses():
    with capture_logs() as logs:
        src = GenicamSource(viky_cfg(triggers=[{"selector": "LineStart", "source": "Line0"}]), LINES)
        src.close()
    events = [e["event"] for e in logs if e["log_level"] == "warning"]
    assert any(e.startswith("camera has no AcquisitionLineRate; applying") for e in events)
    assert any(e.startswith("camera has no TriggerSelector") for e in events)


def test_wrong_cti_path_and_no_producer(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="not found"):
        GenicamSource(viky_cfg(cti=[tmp_path / "nope.cti"]), LINES)
    monkeypatch.setenv("GENICAM_GENTL64_PATH", str(tmp_path))
    with pytest.raises(ConfigError) as e:
        GenicamSource(viky_cfg(cti=[]), LINES)
    assert str(e.value) == (f"source.cti: no GenTL producer: source.cti is empty and the folders in "
                            f"GENICAM_GENTL64_PATH={str(tmp_path)!r} hold no .cti files")
    monkeypatch.delenv("GENICAM_GENTL64_PATH")
    with pytest.raises(ConfigError) as e:
        GenicamSource(viky_cfg(cti=[]), LINES)
    assert str(e.value) == "source.cti: no GenTL producer: source.cti is empty and GENICAM_GENTL64_PATH is not set"
    bogus = tmp_path / "bogus.cti"
    bogus.write_bytes(b"not a library")
    with pytest.raises(ConfigError, match="not a loadable GenTL producer"):
        GenicamSource(viky_cfg(cti=[bogus]), LINES)


def test_producer_found_through_gentl_path(monkeypatch):
    monkeypatch.setenv("GENICAM_GENTL64_PATH", str(VIKY.parent))
    src = GenicamSource(viky_cfg(cti=[]), LINES)
    src.close()


def test_no_matching_device_lists_the_devices():
    with pytest.raises(CameraUnavailableError) as err:
        GenicamSource(viky_cfg(serial="does-not-exist"), LINES)
    msg = str(err.value)
    assert "serial='does-not-exist'" in msg and "Viky" in msg and "serial=0" in msg
    assert err.value.exit_code == 1
    with pytest.raises(CameraUnavailableError, match="devices found"):
        GenicamSource(viky_cfg(model="Viky", index=7), LINES)


def test_select_device_matches_serial_then_index():
    infos = [{"serial_number": "1", "model": "A"}, {"serial_number": "2", "model": "B"},
             {"serial_number": "3", "model": "B"}]
    assert select_device(infos, None, None, 0) == 0
    assert select_device(infos, "3", None, 0) == 2
    assert select_device(infos, None, "B", 1) == 2
    with pytest.raises(CameraUnavailableError):
        select_device(infos, "1", "B", 0)


def test_reconnects_after_the_camera_vanishes():
    """Destroying the image acquirer from another thread stands in for an unplugged camera."""
    src = GenicamSource(viky_cfg(reconnect_backoff_s=(0.2, 1.0)), LINES)

    def vanish():
        time.sleep(0.7)
        with src.io_lock:  # between two fetches: harvesters frees buffers in destroy()
            src.image_acquirer.destroy()

    def stop_later():
        deadline = time.monotonic() + 10
        while src.counters.reconnects == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.7)
        src.close()

    threads = [threading.Thread(target=vanish), threading.Thread(target=stop_later)]
    for t in threads:
        t.start()
    firsts = [s.first_line for s in src.strips()]
    for t in threads:
        t.join()
    assert src.counters.reconnects >= 1
    d = np.diff(firsts)
    gaps = np.flatnonzero(d != LINES)
    assert len(gaps) >= 1 and (d[gaps] > LINES).all()  # the counter jumps, never goes back
    assert len(firsts) - 1 - gaps[-1] >= 50  # strips continue after the reconnect


def test_close_during_back_off_is_prompt():
    src = GenicamSource(viky_cfg(reconnect_backoff_s=(5.0, 10.0)), LINES)
    ended = threading.Event()
    out: list[int] = []

    def consume():
        out.extend(s.first_line for s in src.strips())
        ended.set()

    th = threading.Thread(target=consume)
    th.start()
    time.sleep(0.4)
    with src.io_lock:
        src.image_acquirer.destroy()
    deadline = time.monotonic() + 3
    while src.image_acquirer is not None and time.monotonic() < deadline:  # fault seen: in back-off
        time.sleep(0.02)
    t = time.monotonic()
    src.close()
    assert ended.wait(4.0)
    assert time.monotonic() - t < 4.0  # well before the 5 s back-off would have ended
    th.join()
    assert out and src.counters.reconnects == 0
    # the camera was released: it can be opened again at once
    GenicamSource(viky_cfg(), LINES).close()


def test_close_before_strips_releases_the_camera():
    src = GenicamSource(viky_cfg(), LINES)
    src.close()
    src.close()
    assert list(src.strips()) == []
    again = GenicamSource(viky_cfg(), LINES)
    again.close()


def test_bayer_and_colour_conversions():
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 30
    planes = {"R": 0, "G": 1, "B": 2}
    for fmt in ("BayerRG8", "BayerGB8", "BayerGR8", "BayerBG8"):
        pattern = {"BayerRG8": "RGGB", "BayerGB8": "GBRG", "BayerGR8": "GRBG", "BayerBG8": "BGGR"}[fmt]
        mosaic = np.zeros((8, 8), np.uint8)
        for dy in (0, 1):
            for dx in (0, 1):
                mosaic[dy::2, dx::2] = rgb[dy::2, dx::2, planes[pattern[dy * 2 + dx]]]
        out = np.empty_like(rgb)
        convert_frame(mosaic, fmt, out)
        assert np.array_equal(out[2:6, 2:6], rgb[2:6, 2:6]), fmt
    bgr = rgb[..., ::-1].reshape(8, 24).copy()
    out = np.empty_like(rgb)
    convert_frame(bgr, "BGR8", out)
    assert np.array_equal(out, rgb)
    rgba = np.concatenate([rgb, np.full((8, 8, 1), 7, np.uint8)], axis=2).reshape(8, 32)
    convert_frame(rgba, "RGBa8", out)
    assert np.array_equal(out, rgb)
