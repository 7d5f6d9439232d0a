"""Board records when the disk is not kind: a partial last line from a crash, a full disk
(/dev/full gives a real ENOSPC), a SQLite file at its size limit (a real SQLITE_FULL), and the
service that keeps sending reject signals meanwhile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, needs_small_disk, run_cli, run_cli_on_small_disk
from structlog.testing import capture_logs
from test_service import NotifyListener
from test_service_units import verdict

from edge_inspect.records.jsonl import JsonlRecords
from edge_inspect.records.keeper import RecordKeeper
from edge_inspect.records.sqlite import SqliteRecords, read_records

needs_dev_full = pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")


def ids(path: Path) -> list[int]:
    return [json.loads(x)["board_id"] for x in path.read_text().splitlines()]


def test_a_partial_last_line_is_cut_when_the_file_is_opened(tmp_path):
    path = tmp_path / "boards.jsonl"
    w = JsonlRecords(path)
    w.write(verdict(1))
    w.write(verdict(2))
    w.close()
    with open(path, "ab") as f:
        f.write(b'{"board_id":3,"sour')  # power cut mid-write
    with capture_logs() as logs:
        w = JsonlRecords(path)
    w.write(verdict(3))
    w.close()
    assert ids(path) == [1, 2, 3]
    assert [e["bytes"] for e in logs if e["event"] == "records_partial_line_removed"] == [19]


def test_jsonl_rotates_at_its_size_and_deletes_rotated_files_past_retention(tmp_path):
    path = tmp_path / "boards.jsonl"
    w = JsonlRecords(path, max_bytes=1500, retention_days=1)
    for i in range(12):
        w.write(verdict(i))
    rotated = w.rotated_files()
    assert w.rotations == len(rotated) >= 2 and all(p.stat().st_size >= 1500 for p in rotated)
    assert sum((ids(p) for p in [*rotated, path]), []) == list(range(12))  # nothing lost, in order
    old = rotated[0]
    os.utime(old, (time.time() - 2 * 86400,) * 2)  # two days old: past retention
    with capture_logs() as logs:
        for i in range(12, 24):
            w.write(verdict(i))
    w.close()
    assert not old.exists() and rotated[1].exists()
    assert sum(e["removed_old"] for e in logs if e["event"] == "records_rotated") == 1


@needs_dev_full
def test_a_full_disk_keeps_records_in_order_until_it_has_room_again(tmp_path):
    real, link = tmp_path / "real.jsonl", tmp_path / "boards.jsonl"
    link.symlink_to("/dev/full")
    keeper = RecordKeeper([JsonlRecords(link)], backlog=100, retry_s=0.05)
    with capture_logs() as logs:
        for i in range(5):
            keeper.write(verdict(i))  # never raises: the reject signal must still go out
        assert keeper.counters() == {"record_write_failures": 1, "records_pending": 5, "records_dropped": 0}
        tmp = tmp_path / "link.tmp"
        tmp.symlink_to(real)
        os.replace(tmp, link)  # room again (say, an operator freed space)
        time.sleep(0.06)
        keeper.write(verdict(5))
    assert ids(real) == [0, 1, 2, 3, 4, 5]
    assert keeper.counters()["records_pending"] == 0
    events = [e["event"] for e in logs]
    assert events.count("records_write_failed") == 1 and "records_write_recovered" in events
    keeper.close()


def test_sqlite_at_its_size_limit_drops_oldest_beyond_the_backlog_then_recovers(tmp_path):
    store = SqliteRecords(tmp_path / "b.sqlite")
    db = store._db  # noqa: SLF001 - the test caps the real file's size to make SQLite report SQLITE_FULL
    db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")
    keeper = RecordKeeper([store], backlog=5, retry_s=0.05)
    with capture_logs() as logs:
        for i in range(100):
            keeper.write(verdict(i))
        before = len(read_records(tmp_path / "b.sqlite"))  # rows that fitted before the limit
        assert before < 90 and keeper.failures > 0 and keeper.dropped == 100 - before - 5
        db.execute("PRAGMA max_page_count = 1000000")
        time.sleep(0.06)
        keeper.write(verdict(100))
    rows = [r["board_id"] for r in read_records(tmp_path / "b.sqlite")]
    assert rows == list(range(before)) + [96, 97, 98, 99, 100]  # the newest 5 waited; 100 pushed out 95
    assert keeper.dropped == 101 - before - 5 and keeper.counters()["records_pending"] == 0
    dropped = [e for e in logs if e["event"] == "record_dropped"]
    assert dropped[0]["board_id"] == before and "backlog of 5 is full" in dropped[0]["why"]
    keeper.close()


@needs_dev_full
def test_service_with_a_full_records_disk_still_signals_every_board(tmp_path, tiny_model, small_scan):
    model, cal = tiny_model(3)
    records = tmp_path / "records"
    records.mkdir()
    (records / "boards.jsonl").symlink_to("/dev/full")
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"""camera: {{lines_per_frame: 64, line_rate_hz: 2000}}
source: {{type: replay, path: {small_scan}, speed: realtime}}
tiling: {{segmenter: {{min_gap_lines: 8}}}}
inference: {{backend: {{type: onnxruntime, model: {model}}}}}
decision: {{calibration: {cal}}}
output: {{records_dir: {records}}}
sinks: [{{type: log}}]
service: {{status_interval_s: 0.2}}
logging: {{format: json}}
""")
    notify = NotifyListener(abstract=True)
    try:
        r = subprocess.run([sys.executable, "-m", "edge_inspect.cli", "run", "--config", str(cfg),
                            "--max-seconds", "60"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, NOTIFY_SOCKET=notify.name))
    finally:
        notify.close()
    assert r.returncode == 0, r.stderr[-3000:]
    ev = [json.loads(x) for x in r.stderr.splitlines() if x.startswith("{")]
    signalled = [e["board_id"] for e in ev if e["event"] == "board"]
    unwritten = [e["record"]["board_id"] for e in ev if e["event"] == "record_unwritten"]
    stopped = next(e for e in ev if e["event"] == "stopped")
    assert signalled == unwritten == list(range(1, stopped["boards"] + 1)) and stopped["boards"] >= 6
    assert stopped["record_write_failures"] >= 1 and stopped["records_pending"] == stopped["boards"]
    assert sum(e["event"] == "records_write_failed" for e in ev) == 1
    # what `systemctl status` shows says so
    assert any(m.startswith("STATUS=") and "RECORDS FAILING" in m for _, m in notify.messages), notify.messages[-5:]


def _replay_config(tmp_path: Path) -> Path:
    from test_cli import config_file
    return config_file(tmp_path)


@pytest.mark.parametrize("disk", [
    pytest.param("dev_full", marks=needs_dev_full),
    pytest.param("tmpfs", marks=needs_small_disk),
])
def test_replay_onto_a_full_records_disk_prints_every_verdict_and_names_the_file(tmp_path, small_scan, disk):
    """boards.jsonl on /dev/full, or on a full tmpfs: every verdict is still printed, every
    record is in the log whole (record_unwritten), and the one error line blames the records
    file, not the scan; no traceback anywhere."""
    cfg = _replay_config(tmp_path)
    args = ["--log-format", "json", "replay", str(small_scan), "--config", str(cfg)]
    if disk == "dev_full":
        out = tmp_path / "rec"
        out.mkdir()
        (out / "boards.jsonl").symlink_to("/dev/full")
        r = run_cli(*args, "--out", out)
    else:
        out = tmp_path / "disk"
        r = run_cli_on_small_disk(out, "64k", *args, "--out", out, fill=True)
    assert r.returncode == 1, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "exc_info" not in r.stderr
    boards = [x for x in r.stdout.splitlines() if x.startswith("board ")]
    assert len(boards) == 6
    err = [x for x in r.stderr.splitlines() if x.startswith("edge-inspect: error:")]
    assert err == [f"edge-inspect: error: {out / 'boards.jsonl'}: 6 board record(s) not written "
                   "([Errno 28] No space left on device); 6 are in the log as record_unwritten"]
    logged = [json.loads(x) for x in r.stderr.splitlines() if x.startswith("{")]
    assert [e["record"]["board_id"] for e in logged if e["event"] == "record_unwritten"] == [1, 2, 3, 4, 5, 6]


def _service_config(tmp_path: Path, model: Path, cal: Path, scan: Path, records: Path) -> Path:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"""camera: {{lines_per_frame: 64, line_rate_hz: 20000}}
source: {{type: replay, path: {scan}, speed: max}}
inference: {{backend: {{type: onnxruntime, model: {model}}}}}
decision: {{calibration: {cal}}}
output: {{records_dir: {records}}}
records: {{jsonl: true, sqlite: true}}
metrics: {{enabled: false}}
logging: {{format: json}}
""")
    return cfg


@pytest.mark.parametrize("content", ["random bytes", "another boards table"])
def test_a_sqlite_file_that_is_not_a_records_store_is_refused_naming_it(tmp_path, tiny_model, small_scan, content):
    import sqlite3
    model, cal = tiny_model(3)
    records = tmp_path / "records"
    records.mkdir()
    db_path = records / "boards.sqlite"
    if content == "random bytes":
        db_path.write_bytes(os.urandom(5000))
    else:
        db = sqlite3.connect(db_path)
        db.execute("CREATE TABLE boards (board TEXT, ok INTEGER)")
        db.commit()
        db.close()
    before = db_path.read_bytes()
    r = run_cli("run", "--config", _service_config(tmp_path, model, cal, small_scan, records), "--max-seconds", "30")
    assert r.returncode == 78, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    err = [x for x in r.stderr.splitlines() if x.startswith("edge-inspect: error:")]
    assert len(err) == 1 and f"{db_path}: cannot be used as the SQLite records store" in err[0]
    assert sorted(p.name for p in records.iterdir()) == ["boards.sqlite"]  # no boards.jsonl was begun
    assert db_path.read_bytes() == before


@needs_small_disk
def test_service_starting_on_a_full_records_disk_still_signals_every_board(tmp_path, tiny_model, small_scan):
    """Both stores on a full disk at start: the service runs as with a store failing later,
    every board is signalled and every record is logged whole, exit 0."""
    model, cal = tiny_model(3)
    disk = tmp_path / "disk"
    cfg = _service_config(tmp_path, model, cal, small_scan, disk / "records")
    r = run_cli_on_small_disk(disk, "64k", "run", "--config", cfg, "--max-seconds", "60", fill=True)
    assert r.returncode == 0, r.stderr[-3000:]
    ev = [json.loads(x) for x in r.stderr.splitlines() if x.startswith("{")]
    stopped = next(e for e in ev if e["event"] == "stopped")
    signalled = [e["board_id"] for e in ev if e["event"] == "board"]
    assert signalled == list(range(1, stopped["boards"] + 1)) and stopped["boards"] >= 6
    for store in ("boards.jsonl", "boards.sqlite"):
        unwritten = [e["record"]["board_id"] for e in ev if e["event"] == "record_unwritten"
                     and e["store"].endswith(store)]
        assert unwritten == signalled, store
    assert any(e["event"] == "records_store_unavailable" and e["path"].endswith("boards.sqlite") for e in ev)
