"""The service's parts one by one, with real sockets, real SQLite files and the real pipeline."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import struct
import threading
import time
import uuid

import numpy as np
import pytest
from conftest import DEMO_CAL, DEMO_MODEL
from structlog.testing import capture_logs

from edge_inspect.acquisition.base import AcquisitionCounters
from edge_inspect.acquisition.replay import ReplaySource
from edge_inspect.config import (
    Config,
    DriftConfig,
    OnnxRuntimeBackendConfig,
    TcpSinkConfig,
)
from edge_inspect.decision.calibration_file import load_calibration
from edge_inspect.decision.verdict import Verdict
from edge_inspect.inference.base import warm_up
from edge_inspect.inference.registry import create_backend
from edge_inspect.monitoring.drift import DriftMonitor, ks_distance
from edge_inspect.monitoring.board_view import BoardPicture, encoded, render_board
from edge_inspect.monitoring.heatmaps import HeatmapWriter
from edge_inspect.monitoring.thumbnails import BoardThumbnails
from edge_inspect.outputs.tcp import TcpSink
from edge_inspect.pipeline import Pipeline
from edge_inspect.records.sqlite import SqliteRecords, read_records
from edge_inspect.service.heap import HeapTrimmer
from edge_inspect.service.notify import Notifier
from edge_inspect.service.watchdog import StallMonitor
from edge_inspect.tiling.events import TileMeta


def verdict(i: int, verdict: str = "accept", score: float = 0.1, **kw) -> Verdict:
    base = dict(board_id=i, source="s", start_line=i * 100, end_line=i * 100 + 50, width=64, n_tiles=1,
                score=score, verdict=verdict, reasons=["r"], defects=[], incomplete=False,
                t_first_line_ns=time.monotonic_ns(), t_verdict_ns=time.monotonic_ns(), model="m", calibration="c")
    base.update(kw)
    return Verdict(**base)


def test_notifier_abstract_socket_and_watchdog_env():
    name = f"@ei-unit-{uuid.uuid4().hex}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name[1:])
    s.settimeout(2)
    try:
        n = Notifier({"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "3000000"})
        assert n.watchdog_s == 3.0
        assert n.ready("ok")
        assert s.recv(1000).decode().split("\n")[:2] == ["READY=1", "STATUS=ok"]
        assert n.watchdog() and s.recv(100) == b"WATCHDOG=1"
        n.close()
    finally:
        s.close()
    assert not Notifier({}).ready() and Notifier({}).watchdog_s is None
    # a watchdog meant for another pid is not ours
    assert Notifier({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}).watchdog_s is None


def test_tcp_sink_full_queue_drops_oldest_counted_and_logged():
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    free = port.getsockname()[1]
    port.close()  # nothing listens: the sink keeps everything queued
    sink = TcpSink(TcpSinkConfig(type="tcp", host="127.0.0.1", port=free, queue=3, backoff_s=(0.05, 0.1)))
    with capture_logs() as logs:
        for i in range(5):
            sink.send(verdict(i))
    assert sink.dropped == 2 and [e["board_id"] for e in logs if e["event"] == "sink_message_dropped"] == [0, 1]
    # a server appears: the three newest arrive, in order
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", free))
    srv.listen(1)
    sink.start()
    conn, _ = srv.accept()
    conn.settimeout(3)
    data = b""
    while data.count(b"\n") < 3:
        data += conn.recv(4096)
    sink.close()
    conn.close()
    srv.close()
    assert [json.loads(x)["board_id"] for x in data.splitlines()] == [2, 3, 4]
    assert sink.counters() == {"sent": 3, "dropped": 2, "connects": 1, "queued": 0, "restarts": 0}


def _listener() -> socket.socket:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(2)
    srv.settimeout(5)
    return srv


def _acking_sink(srv: socket.socket, ack_timeout_s: float) -> TcpSink:
    return TcpSink(TcpSinkConfig(type="tcp", host="127.0.0.1", port=srv.getsockname()[1], ack=True,
                                 ack_timeout_s=ack_timeout_s, backoff_s=(0.05, 0.1)))


def _read_lines(conn: socket.socket, n: int) -> list[dict]:
    conn.settimeout(5)
    data = b""
    while data.count(b"\n") < n:
        chunk = conn.recv(4096)
        assert chunk, f"connection closed after {len(data.splitlines())} lines"
        data += chunk
    return [json.loads(x) for x in data.splitlines()]


def _wait_for(cond, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_tcp_sink_with_acks_resends_what_a_crashed_gateway_never_acknowledged():
    srv = _listener()
    sink = _acking_sink(srv, ack_timeout_s=30)
    sink.start()
    for i in range(5):
        sink.send(verdict(i))
    conn, _ = srv.accept()
    first = _read_lines(conn, 5)
    assert [m["seq"] for m in first] == [1, 2, 3, 4, 5] and [m["board_id"] for m in first] == [0, 1, 2, 3, 4]
    conn.sendall(b'{"ack": 2}\n')
    _wait_for(lambda: sink.acked == 2)
    # the gateway crashes (RST) having read 3, 4 and 5 but never acknowledged them
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
    conn, _ = srv.accept()
    again = _read_lines(conn, 3)
    assert [(m["seq"], m["board_id"]) for m in again] == [(3, 2), (4, 3), (5, 4)]
    sink.send(verdict(5))
    assert _read_lines(conn, 1)[0]["seq"] == 6
    conn.sendall(b'{"ack": 6}\n')
    sink.close()
    conn.close()
    srv.close()
    assert sink.counters() == {"sent": 9, "dropped": 0, "connects": 2, "queued": 0, "restarts": 0,
                               "acked": 6, "resent": 3, "unacked": 0}


def test_tcp_sink_reconnects_when_acks_stop_coming():
    srv = _listener()
    sink = _acking_sink(srv, ack_timeout_s=0.3)
    with capture_logs() as logs:
        sink.start()
        for i in range(3):
            sink.send(verdict(i))
        silent, _ = srv.accept()  # reads everything, answers nothing, stays connected
        assert [m["seq"] for m in _read_lines(silent, 3)] == [1, 2, 3]
        conn, _ = srv.accept()
        assert [m["seq"] for m in _read_lines(conn, 3)] == [1, 2, 3]
        conn.sendall(b'{"ack": 3}\n')
        sink.close()
    for c in (silent, conn, srv):
        c.close()
    assert any(e["event"] == "sink_disconnected" and "no ack within 0.3 s" in e["why"] for e in logs), logs
    assert sink.counters()["acked"] == 3 and sink.counters()["resent"] == 3 and sink.counters()["unacked"] == 0


def test_tcp_sink_ignores_every_kind_of_bad_ack_and_keeps_sending():
    srv = _listener()
    sink = _acking_sink(srv, ack_timeout_s=30)
    with capture_logs() as logs:
        sink.start()
        sink.send(verdict(0))
        conn, _ = srv.accept()
        assert _read_lines(conn, 1)[0]["seq"] == 1
        conn.sendall(b'{"ack": Infinity}\n{"ack": NaN}\n{"ack": 1.5}\n{"ack": "1"}\n{"ack": true}\n[1]\n'
                     b'not json\n' + b"[" * 3000 + b"\n" + b"x" * 5000)  # the last one never ends
        time.sleep(0.3)
        for i in range(1, 3):
            sink.send(verdict(i))
        assert [m["seq"] for m in _read_lines(conn, 2)] == [2, 3]   # still sending
        conn.sendall(b'\n{"ack": 3.0}\n')
        _wait_for(lambda: sink.acked == 3)
        sink.close()
    conn.close()
    srv.close()
    assert sink.alive() and sink.restarts == 0 and sink.counters()["unacked"] == 0
    bad = [e for e in logs if e["event"] == "sink_bad_ack"]
    assert len(bad) == 1 and bad[0]["line"] == '{"ack": Infinity}'  # the rest folded into the next line's count
    assert not any(e["event"] == "sink_failed" for e in logs)


class _FailsOnce(TcpSink):
    """Fault injection: the first run of the worker raises (as the OverflowError of a bad ack
    once did); no real reply can make the fixed sink do so any more."""

    def _run(self) -> None:
        if self.restarts == 0:
            raise OverflowError("cannot convert float infinity to integer")
        super()._run()


def test_a_sink_thread_that_fails_is_restarted_with_what_it_held():
    srv = _listener()
    sink = _FailsOnce(TcpSinkConfig(type="tcp", host="127.0.0.1", port=srv.getsockname()[1],
                                    backoff_s=(0.05, 0.1)))
    with capture_logs() as logs:
        for i in range(3):
            sink.send(verdict(i))
        sink.start()
        conn, _ = srv.accept()   # after the restart pause (0.5 s)
        assert [m["board_id"] for m in _read_lines(conn, 3)] == [0, 1, 2]
        sink.close()
    conn.close()
    srv.close()
    failed = [e for e in logs if e["event"] == "sink_failed"]
    assert len(failed) == 1 and "OverflowError" in failed[0]["error"] and failed[0]["exc_info"]
    assert sink.counters()["restarts"] == 1 and sink.counters()["sent"] == 3


class _DiesSilently(TcpSink):
    """Fault injection: a worker ended by SystemExit, which `threading` swallows without a word;
    the one way a sink thread can still die (every Exception restarts it)."""

    def _run(self) -> None:
        raise SystemExit


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the injected SystemExit
def test_a_dead_sink_thread_shows_in_metrics_status_and_the_watchdog(tmp_path, small_scan):
    """The real service parts (opened, not run): a dead sink makes `edge_inspect_sink_alive`
    0, the STATUS line say SINK DEAD, and the watchdog withhold its pings."""
    import urllib.request

    from edge_inspect.service.runner import Service
    cfg = Config.model_validate({
        "source": {"type": "replay", "path": str(small_scan)},
        "inference": {"backend": {"type": "onnxruntime", "model": str(DEMO_MODEL)}},
        "decision": {"calibration": str(DEMO_CAL)},
        "output": {"records_dir": str(tmp_path / "records")},
        "metrics": {"enabled": True, "port": 0},
    })
    svc = Service(cfg, create_backend(cfg.inference.backend), load_calibration(DEMO_CAL), environ={})
    svc.open()
    try:
        dead = _DiesSilently(TcpSinkConfig(type="tcp", host="127.0.0.1", port=9))
        svc.sinks.append(dead)
        dead.start()
        _wait_for(lambda: not dead.alive())
        assert "SINK DEAD (tcp:127.0.0.1:9)" in svc._status_text(0.0)
        assert StallMonitor(svc.pipeline, svc.source, 10.0, svc.sinks).stalled() == ["sink tcp:127.0.0.1:9"]
        text = urllib.request.urlopen(f"http://127.0.0.1:{svc.metrics.port}/metrics", timeout=5).read().decode()
        assert 'edge_inspect_sink_alive{sink="tcp:127.0.0.1:9"} 0.0' in text
        assert 'edge_inspect_sink_alive{sink="log"} 1.0' in text
        assert 'edge_inspect_sink_restarts_total{sink="tcp:127.0.0.1:9"} 0.0' in text
    finally:
        svc.abandon()


def test_log_every_folds_repeats_and_counts_them():
    from edge_inspect.logging import LogEvery
    every = LogEvery(5.0)
    assert [every.due(t) for t in (0.0, 1.0, 2.0, 4.9, 5.0, 5.1, 20.0)] == [1, 0, 0, 0, 4, 0, 2]


def test_sqlite_records_wal_and_retention(tmp_path):
    db = SqliteRecords(tmp_path / "b.sqlite", retention_days=1, max_rows=3, prune_interval_s=3600)
    for i in range(5):
        db.write(verdict(i, score=float("nan") if i == 0 else 0.5, defects=[{"x": 1}]))
    assert db._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert len(read_records(tmp_path / "b.sqlite")) == 5       # pruning is periodic, not per row
    assert db.prune() == 2
    rows = read_records(tmp_path / "b.sqlite")
    assert [r["board_id"] for r in rows] == [2, 3, 4] and rows[0]["defects"] == [{"x": 1}]
    assert rows[0]["reasons"] == ["r"] and rows[0]["incomplete"] is False
    assert db.prune(now=time.time() + 2 * 86400) == 3           # older than a day
    db.close()


def test_drift_alarm_on_shifted_good_scores():
    cal = load_calibration_stub(threshold=1.0)
    d = DriftMonitor(DriftConfig(window=20, min_boards=10, max_ratio=0.8), cal)
    with capture_logs() as logs:
        for i in range(20):
            d.observe(verdict(i, score=0.3))
        assert not d.alarm and d.ratio == pytest.approx(0.3)
        for i in range(20):
            d.observe(verdict(i, score=0.9))
        d.observe(verdict(99, "reject", score=5.0))           # rejects do not count
    assert d.alarm and d.ratio == pytest.approx(0.9)
    assert [e["event"] for e in logs] == ["drift_alarm"]


def load_calibration_stub(threshold: float, good_scores: list[float] | None = None):
    from edge_inspect.decision.calibration_file import Calibration

    return Calibration(version="v", created="now", score="s", tile_threshold=threshold, good_scores=good_scores)


def test_ks_distance_known_values():
    a = np.array([0.1, 0.2, 0.3, 0.4])
    assert ks_distance(a, a) == 0.0
    assert ks_distance(a, a + 1.0) == 1.0
    assert ks_distance(a, np.array([0.25, 0.35])) == pytest.approx(0.5)   # at 0.2: 2/4 vs 0/2


def test_drift_alarm_against_the_calibrations_good_boards():
    rng = np.random.default_rng(7)
    good = sorted(np.round(rng.normal(0.30, 0.04, 120), 6).tolist())
    cal = load_calibration_stub(0.45, good)
    d = DriftMonitor(DriftConfig(window=200, min_boards=50), cal)
    assert d.mode == "distribution" and d.reference == pytest.approx(np.median(good))
    with capture_logs() as logs:
        for i, s in enumerate(rng.normal(0.30, 0.04, 300)):       # the same wood: quiet
            d.observe(verdict(i, score=float(s)))
        assert not d.alarm and d.distance < 0.2 and d.ratio == pytest.approx(1.0, abs=0.05)
        for i, s in enumerate(rng.normal(0.36, 0.04, 200)):       # dirtier lens: +1.5 sd, still accepted
            d.observe(verdict(i, score=float(s)))
        assert d.alarm and d.distance > 0.5 and d.ratio > 1.1
        d.set_calibration(load_calibration_stub(0.5, sorted(np.round(rng.normal(0.36, 0.04, 120), 6).tolist())))
    assert [e["event"] for e in logs] == ["drift_alarm", "drift_alarm_cleared"]
    assert logs[0]["mode"] == "distribution" and logs[0]["max_distance"] == 0.35
    # an operator-given reference overrides the distribution
    d = DriftMonitor(DriftConfig(reference=0.3), cal)
    assert d.mode == "reference" and d.reference == 0.3


def test_calibration_good_scores_must_be_ascending():
    with pytest.raises(ValueError, match="ascending"):
        load_calibration_stub(0.5, [0.3, 0.2])


def test_thumbnails_follow_the_line_counter():
    th = BoardThumbnails(width=64, channels=1, scale=4, max_lines=400)
    lines = np.arange(100, dtype=np.uint8)[:, None, None].repeat(64, 1)
    th.add(lines[:30], 10)   # lines 10..39
    th.add(lines[30:], 40)   # 40..109
    img = th.board(12, 100)
    assert img.shape == (22, 16, 1)
    assert list(img[:3, 0, 0]) == [2, 6, 10]                  # lines 12, 16, 20 (line - 10)
    assert th.board(300, 320).max() == 0                      # never seen: black


def test_heatmaps_named_by_board_and_time_and_budget_removes_oldest_written(tmp_path):
    metas = [TileMeta(1, 0, 0, 0, 0), TileMeta(1, 0, 1, 32, 0)]
    scores = np.array([0.5, 2.0], np.float32)
    img = np.full((16, 16, 3), 120, np.uint8)
    size = len(encoded(render_board(BoardPicture.from_verdict(
        verdict(1, "reject", tile_scores=scores, tile_metas=metas), 1.0, 32, "s"), img, 4)))
    folder = tmp_path / "h"
    folder.mkdir()
    # two files of an earlier start (board ids begin again at 1): the name that sorts last is the oldest
    older, newer = folder / "board00000099_20260101T000000.000Z.png", folder / "board00000001_20260101T000001.000Z.png"
    for i, f in enumerate((older, newer)):
        f.write_bytes(b"x" * 10)
        os.utime(f, ns=(10**18 + i, 10**18 + i))
    w = HeatmapWriter(folder, max_bytes=size + 10, tile_size=32)  # room for one new file and one old one
    w.submit(verdict(1, "reject", tile_scores=scores, tile_metas=metas), img, 4, 1.0, "s")
    w.close()
    names = sorted(p.name for p in folder.glob("*.png"))
    assert names[0] == newer.name and len(names) == 2, names
    assert re.fullmatch(r"board00000001_\d{8}T\d{6}\.\d{3}Z\.png", names[1]), names
    assert w.written == 1 and w.removed == 1
    w = HeatmapWriter(folder, max_bytes=1, tile_size=32)  # room for one file only: the newest stays
    for i in range(3):
        w.submit(verdict(i + 2, "reject", tile_scores=scores, tile_metas=metas), img, 4, 1.0, "s")
    w.close()
    assert [p.name[:13] for p in folder.glob("*.png")] == ["board00000004"]
    assert w.written == 3 and w.removed == 4


class _StubPipe:
    def __init__(self) -> None:
        self.progress = {"acquisition": 0, "tiling": 0, "inference": 0, "decision": 0}
        self.waiting = {"acquisition": 1, "tiling": 0, "inference": 0, "decision": 0}

    def backlog(self) -> dict[str, int]:
        return dict(self.waiting)


class _Camera:
    """The two things the watchdog reads of a camera source (FrameSource.counters/reconnecting)."""

    def __init__(self) -> None:
        self.counters = AcquisitionCounters()
        self.reconnecting = False


def test_stall_monitor():
    pipe, cam = _StubPipe(), _Camera()
    m = StallMonitor(pipe, cam, stall_after_s=1.0)
    t = time.monotonic_ns()
    assert m.stalled(t) == []
    assert m.stalled(t + 2_000_000_000) == ["acquisition"]       # no frames, no timeouts: a hung fetch
    cam.counters.timeouts += 1                                    # an idle line: the fetch loop turns
    assert m.stalled(t + 3_000_000_000) == []
    pipe.waiting["inference"] = 5                                 # work waiting, no batch scored
    cam.counters.timeouts += 1
    m.stalled(t + 3_500_000_000)
    cam.counters.timeouts += 1
    assert m.stalled(t + 5_000_000_000) == ["inference"]
    pipe.progress["inference"] += 1
    cam.counters.timeouts += 1
    assert m.stalled(t + 5_100_000_000) == []
    pipe.waiting["inference"] = 0
    cam.reconnecting = True                                       # reconnect back-off: alive
    assert m.stalled(t + 9_000_000_000) == []


def test_model_swap_between_batches_keeps_every_board(tiny_model, small_scan):
    model, cal_path = tiny_model(3)
    cfg = Config.model_validate({
        "camera": {"lines_per_frame": 64},
        "inference": {"backend": {"type": "onnxruntime", "model": str(model), "threads": 1}, "batch_size": 4},
        "decision": {"calibration": str(cal_path)}})
    cal = load_calibration(cal_path)
    b1, b2 = create_backend(cfg.inference.backend), create_backend(cfg.inference.backend)
    src = ReplaySource(small_scan, 64, 5000, "max")
    verdicts: list[Verdict] = []

    def on_verdict(v: Verdict) -> None:
        verdicts.append(v)
        if len(verdicts) == 2:
            pipe.set_backend(b2, cal.model_copy(update={"version": "swapped"}))

    pipe = Pipeline(cfg, src, b1, cal, on_verdict, src.width, src.channels)
    with capture_logs() as logs:
        st = pipe.run()
    assert st.error is None and len(verdicts) == st.boards == 6
    assert pipe.backend is b2 and pipe.retired_backends == [b1]
    assert any(e["event"] == "model_swapped" for e in logs)
    assert verdicts[-1].calibration == "swapped"
    for v in verdicts:
        if any("model changed" in r for r in v.reasons):
            assert v.verdict == "reject"
    b1.close()
    b2.close()


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def test_heap_trimmer_hands_fragmented_free_memory_back():
    trimmer = HeapTrimmer(60.0)
    if not trimmer.available:
        pytest.skip("no glibc malloc_trim in this C library")
    # 60 MB of 1 kB blocks (malloc, not pymalloc), every 64th kept alive: the freed 63/64 sit
    # between live blocks, so free() alone can give none of it back
    blocks = [bytes(1000) for _ in range(60_000)]
    keep = blocks[::64]
    del blocks
    before = _rss_mb()
    assert not trimmer.maybe_trim(time.monotonic())       # not before its interval
    assert trimmer.maybe_trim(time.monotonic() + 61.0)
    after = _rss_mb()
    assert trimmer.trims == 1 and before - after > 30, (before, after)
    assert len(keep) == 938
    assert HeapTrimmer(0).available is False              # 0 turns it off


def test_onnxruntime_memory_flat_over_random_batch_sizes_after_warm_up():
    """A line at real time sends batches of every size from 1 to batch_size. ONNX Runtime with
    memory patterns grew about 66 MB over such a mix (12 MB without patterns but cold) and kept
    it; with patterns off and warm_up it measured +0.9 MB."""
    trimmer = HeapTrimmer(1.0)
    backend = create_backend(OnnxRuntimeBackendConfig(model=DEMO_MODEL, threads=1))
    warm_up(backend, 16)
    rng = np.random.default_rng(5)
    tiles = rng.integers(0, 255, (16, 256, 256, 3), dtype=np.uint8)
    trimmer.maybe_trim(time.monotonic() + 2)
    before = _rss_mb()
    for n in rng.integers(1, 17, 150):
        backend.score(tiles[:n])
    trimmer.maybe_trim(time.monotonic() + 4)
    assert _rss_mb() - before < 5.0, (before, _rss_mb())


def test_reload_with_a_new_model_file_warms_it_up_and_swaps_it_in(tmp_path, tiny_model, small_scan):
    """What SIGHUP does after an operator copied a new model and its calibration into place;
    the service runs in this process so the test can play the operator from a thread."""
    from edge_inspect.inference.manifest import manifest_path
    from edge_inspect.service.runner import Service

    tiny, tiny_cal = tiny_model(3)
    model, cal_path = tmp_path / "model.onnx", tmp_path / "current.yaml"
    for src, dst in ((tiny, model), (manifest_path(tiny), manifest_path(model)), (tiny_cal, cal_path)):
        shutil.copy(src, dst)
    cfg = Config.model_validate({
        "camera": {"lines_per_frame": 64, "line_rate_hz": 20000},
        "source": {"type": "replay", "path": str(small_scan), "loop": True, "speed": "realtime"},
        "inference": {"backend": {"type": "onnxruntime", "model": str(model), "threads": 1}, "batch_size": 8},
        "decision": {"calibration": str(cal_path)},
        "output": {"records_dir": str(tmp_path / "records")},
        "metrics": {"enabled": False},
    })
    svc = Service(cfg, create_backend(cfg.inference.backend), load_calibration(cal_path), environ={})

    def operator() -> None:
        time.sleep(1.5)
        for src, dst in ((DEMO_MODEL, model), (manifest_path(DEMO_MODEL), manifest_path(model)),
                         (DEMO_CAL, cal_path)):
            shutil.copy(src, dst)
        svc._reload.set()                      # the SIGHUP handler's whole job
        time.sleep(3.0)
        svc._stop.set()                        # SIGTERM's

    with capture_logs() as logs:
        svc.open()
        threading.Thread(target=operator, daemon=True).start()
        assert svc.run() == 0
    events = [e["event"] for e in logs]
    assert "reload_failed" not in events
    reloaded = next(e for e in logs if e["event"] == "reloaded")
    assert reloaded["model_changed"] and reloaded["model"] == load_calibration(DEMO_CAL).model[:12]
    warmed = [e["model"] for e in logs if e["event"] == "backend_warmed"]
    assert len(warmed) == 2 and warmed[1] == reloaded["model"]      # at start, then the new model
    records = [json.loads(x) for x in (tmp_path / "records" / "boards.jsonl").read_text().splitlines()]
    assert [r["board_id"] for r in records] == list(range(1, len(records) + 1))
    models = [r["model"] for r in records]
    assert models[0] != reloaded["model"] and models[-1] == reloaded["model"]
    assert models == sorted(models, key=lambda m: m == reloaded["model"])   # one switch, never back
