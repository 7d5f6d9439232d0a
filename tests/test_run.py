"""`edge-inspect run` and `record` with the real viky GenTL producer (harvesters), and with a
looping replay source: the whole pipeline from camera frames to board records."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, run_cli

from edge_inspect.acquisition.recording import Recorder, RecordingSource
from edge_inspect.config import CameraSourceConfig, TilingConfig
from edge_inspect.tiling.events import TilesCut
from edge_inspect.tiling.tiler import Tiler

genicam = pytest.importorskip("genicam", reason="camera extra (genicam) not installed")
pytest.importorskip("harvesters", reason="camera extra (harvesters) not installed")
VIKY = Path(genicam.__file__).parent / "viky.cti"
needs_viky = pytest.mark.skipif(not VIKY.is_file(), reason=f"viky GenTL producer not found at {VIKY}")


def service_config(tmp_path: Path, model: Path, cal: Path, source: str, lines: int = 100) -> Path:
    p = tmp_path / "service.yaml"
    p.write_text(f"""
camera: {{lines_per_frame: {lines}, line_rate_hz: {lines * 150}}}
source: {source}
tiling: {{segmenter: {{max_board_lines: 2048}}}}
inference: {{backend: {{type: onnxruntime, model: {model}}}, batch_size: 16}}
decision: {{calibration: {cal}}}
output: {{records_dir: {tmp_path / 'records'}}}
logging: {{format: json}}
""")
    return p


def events(stderr: str) -> list[dict]:
    out = []
    for line in stderr.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


@needs_viky
@pytest.mark.parametrize("fmt,nc", [("Mono8", 1), ("RGBa8", 3)])
def test_run_camera_at_150fps_through_the_whole_pipeline(tmp_path, tiny_model, fmt, nc):
    """Accounting, not speed: on a loaded machine the camera may lose frames or the pipeline drop
    strips, but every frame is delivered or counted lost, every lost line rejects the board it
    hit, and every board has exactly one record. Throughput belongs to benchmarks/."""
    model, cal = tiny_model(nc)
    cfg = service_config(tmp_path, model, cal, f"{{cti: [{VIKY}], pixel_format: {fmt}, width: 800, line_rate_hz: 15000}}")
    r = run_cli("run", "--config", cfg, "--max-seconds", "4")
    assert r.returncode == 0, r.stderr[-2000:]
    ev = {e["event"]: e for e in events(r.stderr)}
    st = ev["stopped"]
    assert st["error"] is None and st["frames"] > 0, st
    records = [json.loads(x) for x in (tmp_path / "records" / "boards.jsonl").read_text().splitlines()]
    assert len(records) == st["boards"] >= 2
    assert sum(r["n_tiles"] for r in records) == st["tiles"]
    starts = [r["start_line"] for r in records]
    assert starts == sorted(starts) and all(a["end_line"] <= b["start_line"] for a, b in zip(records, records[1:]))
    assert records[-1]["incomplete"] and records[-1]["reasons"][-1].startswith("incomplete: stopped")
    for rec in records:  # an incomplete board is always a reject that says why
        assert rec["incomplete"] == any(x.startswith("incomplete:") for x in rec["reasons"]), rec
        assert not rec["incomplete"] or rec["verdict"] == "reject", rec
    lost = st["lost_frames"] + st["dropped_strips"] + st["incomplete_buffers"]
    if lost == 0:  # nothing lost: only the boards in view at the start and at the stop are incomplete
        assert st["lines_lost"] == 0 and all(not r["incomplete"] for r in records[1:-1])
        assert not records[0]["incomplete"] or "start not seen" in records[0]["reasons"][-1]
    else:  # a loaded machine: every lost line is a gap that rejected the board it hit
        assert st["lines_lost"] >= 100
        assert any("lines_lost" in x for r in records for x in r["reasons"])


@needs_viky
def test_record_then_replay_gives_the_same_tiles(tmp_path):
    from edge_inspect.acquisition.genicam import GenicamSource

    cfg = TilingConfig()
    src = GenicamSource(CameraSourceConfig(cti=[VIKY], pixel_format="RGBa8", width=800,
                                           line_rate_hz=100 * 150), 100)
    live_tiles, tiler = [], Tiler(cfg, src.width, src.channels)
    t_end = time.monotonic() + 1.5
    with Recorder.for_source(tmp_path / "rec", src, type("R", (), {"max_bytes": 1 << 30, "max_file_frames": 50})()) as rec:
        for strip in src.strips():
            rec.write(strip)
            for ev in tiler.push(strip):
                if isinstance(ev, TilesCut):
                    block = np.empty((len(ev.metas), 256, 256, 3), np.uint8)
                    ev.write_into(block)
                    live_tiles.append((ev.metas, block))
            if time.monotonic() > t_end:
                src.close()
    replayed, tiler2 = [], Tiler(cfg, src.width, src.channels)
    for strip in RecordingSource(tmp_path / "rec").strips():
        for ev in tiler2.push(strip):
            if isinstance(ev, TilesCut):
                block = np.empty((len(ev.metas), 256, 256, 3), np.uint8)
                ev.write_into(block)
                replayed.append((ev.metas, block))
    assert live_tiles and len(live_tiles) == len(replayed)
    for (m1, b1), (m2, b2) in zip(live_tiles, replayed):
        assert m1 == m2 and np.array_equal(b1, b2)


@needs_viky
def test_record_command_then_replay_command(tmp_path, tiny_model):
    model, cal = tiny_model(3)
    cfg = service_config(tmp_path, model, cal, f"{{cti: [{VIKY}], pixel_format: RGBa8, width: 800, line_rate_hz: 15000}}")
    r = run_cli("record", "--config", cfg, "--out", tmp_path / "rec", "--max-seconds", "2")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "recorded" in r.stdout
    lost = int(r.stdout.split("lost_frames ")[1].split(",")[0])  # a loaded machine may lose frames
    r = run_cli("replay", tmp_path / "rec", "--config", cfg, "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr[-2000:]
    records = [json.loads(x) for x in (tmp_path / "out" / "boards.jsonl").read_text().splitlines()]
    assert records
    if lost:  # the recording keeps the camera's gaps: replay rejects the boards they hit
        assert any("lines_lost" in x for rec in records for x in rec["reasons"])


def test_run_on_a_looping_replay_drains_on_sigterm(tmp_path, tiny_model, small_scan):
    """SIGTERM mid-run: the service drains, every board begun gets a record, exit 0."""
    model, cal = tiny_model(3)
    cfg = service_config(tmp_path, model, cal, f"{{type: replay, path: {small_scan}, loop: true, speed: realtime}}",
                         lines=64)
    text = cfg.read_text().replace("line_rate_hz: 9600", "line_rate_hz: 20000")
    cfg.write_text(text)
    log_file = tmp_path / "stderr.log"  # a file, not a pipe: a full pipe would stall the service
    with open(log_file, "w") as log_fh:
        proc = subprocess.Popen([sys.executable, "-m", "edge_inspect.cli", "run", "--config", str(cfg)],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log_fh, text=True)
    out_file = tmp_path / "records" / "boards.jsonl"
    deadline = time.monotonic() + 120  # start-up and scoring are slower on a loaded machine
    while time.monotonic() < deadline and proc.poll() is None:
        if out_file.is_file() and out_file.read_text().count("\n") > 6:  # more than one pass of the scan
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    err = log_file.read_text()
    assert proc.returncode == 0, err[-2000:]
    st = {e["event"]: e for e in events(err)}["stopped"]
    records = [json.loads(x) for x in (tmp_path / "records" / "boards.jsonl").read_text().splitlines()]
    assert len(records) == st["boards"] > 6          # more than one pass of the scan
    starts = [r["start_line"] for r in records]
    assert starts == sorted(starts)                  # the line counter runs on across passes


@needs_viky
def test_camera_vanishing_under_a_running_pipeline(tmp_path, tiny_model, demo_cfg):
    """The image acquirer is destroyed mid-board (an unplugged camera) while the full pipeline
    runs: the source reconnects, the board in flight is rejected as incomplete, inspection goes
    on, and the process never stops."""
    from edge_inspect.acquisition.genicam import GenicamSource
    from edge_inspect.decision.calibration_file import load_calibration
    from edge_inspect.inference.registry import create_backend
    from edge_inspect.pipeline import Pipeline

    model, cal_path = tiny_model(3)
    backend_cfg = demo_cfg.inference.backend.model_copy(update={"model": model})
    seg = demo_cfg.tiling.segmenter.model_copy(update={"max_board_lines": 2048})
    cfg = demo_cfg.model_copy(update={
        "camera": demo_cfg.camera.model_copy(update={"lines_per_frame": 100}),
        "tiling": demo_cfg.tiling.model_copy(update={"segmenter": seg}),
        "inference": demo_cfg.inference.model_copy(update={"backend": backend_cfg}),
    })
    src = GenicamSource(CameraSourceConfig(cti=[VIKY], pixel_format="RGBa8", width=800, line_rate_hz=10_000,
                                           reconnect_backoff_s=(0.2, 1.0)), 100)
    verdicts = []
    pipe = Pipeline(cfg, src, create_backend(backend_cfg), load_calibration(cal_path), verdicts.append,
                    src.width, src.channels)

    def unplug_then_stop():
        time.sleep(1.5)
        with src.io_lock:  # between two fetches: harvesters frees its buffers in destroy()
            src.image_acquirer.destroy()
        deadline = time.monotonic() + 10
        while src.counters.reconnects == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2.0)
        pipe.stop()

    th = threading.Thread(target=unplug_then_stop)
    pipe.start()
    th.start()
    st = pipe.join()
    th.join()
    assert st.error is None and src.counters.reconnects >= 1
    assert st.lines_lost > 0                          # the outage is a gap in the line counter
    lost = [v for v in verdicts if any("lines_lost" in r for r in v.reasons)]
    assert lost and all(v.verdict == "reject" and v.incomplete for v in lost)
    after = [v for v in verdicts if v.start_line > lost[0].end_line and not v.incomplete]
    assert after, "inspection goes on after the reconnect"


@needs_viky
def test_a_camera_whose_pixel_format_does_not_fit_the_model_exits_78(tmp_path, tiny_model):
    """Mono8 from the camera, an RGB model: a configuration problem (78, no restart loop), found
    before anything is written or announced."""
    model, cal = tiny_model(3)
    cfg = service_config(tmp_path, model, cal, f"{{cti: [{VIKY}], pixel_format: Mono8, width: 800}}")
    r = run_cli("run", "--config", cfg, "--max-seconds", "10")
    assert r.returncode == 78, r.stderr[-2000:]
    err = [x for x in r.stderr.splitlines() if x.startswith("edge-inspect: error:")]
    assert len(err) == 1 and "grey (1 channel(s)) but the model takes colour tiles (3 channel(s))" in err[0]
    assert "Traceback" not in r.stderr and not (tmp_path / "records").exists()
