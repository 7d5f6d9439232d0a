"""Board records in SQLite (WAL mode): the JSONL fields as columns, `reasons` and `defects` as
JSON text, plus `recorded_at` (UTC unix seconds, wall clock) for retention, which is applied
every `prune_interval_s` by age and/or row count. WAL lets dashboards read while the service
writes; every board is committed on its own (synchronous=NORMAL: a power cut may lose the last
commits, never corrupt the file)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import structlog

from edge_inspect.decision.verdict import Verdict
from edge_inspect.errors import ConfigError
from edge_inspect.records.keeper import STORE_ERRORS, is_disk_failure

log = structlog.get_logger(__name__)

_COLUMNS = (
    ("board_id", "INTEGER"), ("source", "TEXT"), ("start_line", "INTEGER"), ("end_line", "INTEGER"),
    ("width", "INTEGER"), ("n_tiles", "INTEGER"), ("score", "REAL"), ("verdict", "TEXT"),
    ("reasons", "TEXT"), ("defects", "TEXT"), ("incomplete", "INTEGER"), ("t_first_line_ns", "INTEGER"),
    ("t_verdict_ns", "INTEGER"), ("model", "TEXT"), ("calibration", "TEXT"),
)


class SchemaMismatch(sqlite3.DatabaseError):
    """The file holds a `boards` table that is not ours: writing into it would mix records."""


class SqliteRecords:
    """Opened at start: a file that is not an SQLite database, or whose `boards` table is not
    edge-inspect's, is a ConfigError naming it (exit 78, nothing else written). A full or failing
    disk at start is not: the store stays closed, its records wait in the RecordKeeper's backlog,
    and every write tries to open it again."""

    def __init__(self, path: Path, retention_days: float | None = None, max_rows: int | None = None,
                 prune_interval_s: float = 600.0) -> None:
        self.path = path
        self.retention_days = retention_days
        self.max_rows = max_rows
        self.prune_interval_s = prune_interval_s
        self.pruned = 0
        names = ", ".join(n for n, _ in _COLUMNS)
        self._insert = f"INSERT INTO boards (recorded_at, {names}) VALUES (?, {', '.join('?' * len(_COLUMNS))})"
        self._next_prune = time.monotonic()  # prune once at start
        self._db: sqlite3.Connection | None = None
        try:
            self._open()
        except STORE_ERRORS as exc:
            if not is_disk_failure(exc):
                raise ConfigError(f"{path}: cannot be used as the SQLite records store ({exc}); move it "
                                  f"away or set records.sqlite_path") from None
            log.error("records_store_unavailable", path=str(path), error=str(exc),
                      action="records wait in memory; the store is opened again at each write")

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        try:  # checked before anything is written: a file that is not ours is left as it was
            have = {row[1] for row in db.execute("PRAGMA table_info(boards)")}
            missing = [n for n in ("id", "recorded_at", *(n for n, _ in _COLUMNS)) if n not in have]
            if have and missing:
                raise SchemaMismatch(f"its boards table is not edge-inspect's: no column(s) {', '.join(missing)}")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            cols = ", ".join(f"{n} {t}" for n, t in _COLUMNS)
            db.execute(f"CREATE TABLE IF NOT EXISTS boards (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                       f"recorded_at REAL NOT NULL, {cols})")
            db.execute("CREATE INDEX IF NOT EXISTS boards_recorded_at ON boards (recorded_at)")
        except BaseException:
            db.close()
            raise
        self._db = db

    def write(self, v: Verdict) -> None:
        if self._db is None:
            self._open()
        rec = v.to_record()
        rec["reasons"] = json.dumps(rec["reasons"])
        rec["defects"] = json.dumps(rec["defects"])
        rec["incomplete"] = int(rec["incomplete"])
        self._db.execute(self._insert, (time.time(), *(rec[n] for n, _ in _COLUMNS)))
        if time.monotonic() >= self._next_prune:
            try:
                self.prune()
            except sqlite3.Error as exc:  # the row is in; retention waits for the next interval
                self._next_prune = time.monotonic() + self.prune_interval_s
                log.warning("records_prune_failed", path=str(self.path), error=str(exc))

    def prune(self, now: float | None = None) -> int:
        """Apply retention now; returns rows removed."""
        now = time.time() if now is None else now
        removed = 0
        if self.retention_days is not None:
            removed += self._db.execute("DELETE FROM boards WHERE recorded_at < ?",
                                        (now - self.retention_days * 86400,)).rowcount
        if self.max_rows is not None:
            removed += self._db.execute(
                "DELETE FROM boards WHERE id <= (SELECT id FROM boards ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (self.max_rows,)).rowcount
        self._next_prune = time.monotonic() + self.prune_interval_s
        if removed:
            self.pruned += removed
            log.info("records_pruned", path=str(self.path), rows=removed)
        return removed

    def close(self) -> None:
        if self._db is None:
            return
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._db.close()
            self._db = None


def read_records(path: Path) -> list[dict]:
    """Rows as JSONL-style dicts (reasons/defects decoded), oldest first: for tests and tools."""
    db = sqlite3.connect(str(path))
    try:
        names = [n for n, _ in _COLUMNS]
        rows = db.execute(f"SELECT {', '.join(names)} FROM boards ORDER BY id").fetchall()
    finally:
        db.close()
    out = []
    for row in rows:
        rec = dict(zip(names, row))
        rec["reasons"] = json.loads(rec["reasons"])
        rec["defects"] = json.loads(rec["defects"])
        rec["incomplete"] = bool(rec["incomplete"])
        out.append(rec)
    return out
