"""Writing every board record to every store while a store may fail for hours (a full disk,
an I/O error, a remounted share). The service must keep sending reject signals meanwhile, so a
failing store never raises into the decision thread: its records wait in a bounded backlog, in
order, and are written when the store works again (tried every `retry_s`). What the backlog
cannot hold is dropped oldest-first and counted; what is still unwritten at stop is logged whole,
so journald keeps it when the records disk cannot."""

from __future__ import annotations

import errno
import sqlite3
import time
from collections import deque
from typing import Protocol

import structlog

from edge_inspect.decision.verdict import Verdict

log = structlog.get_logger(__name__)

STORE_ERRORS = (OSError, sqlite3.Error)
_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EIO)


def is_disk_failure(exc: BaseException) -> bool:
    """A store error the disk causes and may cure (full, over quota, I/O error), as opposed to a
    wrong file or path: such a store is waited for, never a reason to stop inspecting."""
    if isinstance(exc, OSError):
        return exc.errno in _DISK_ERRNOS
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", "") or ""  # Python >= 3.11
        text = str(exc)
        return name.startswith(("SQLITE_FULL", "SQLITE_IOERR")) or "disk is full" in text or "disk I/O error" in text
    return False


class RecordStore(Protocol):
    path: object

    def write(self, v: Verdict) -> None: ...

    def close(self) -> None: ...


class _Slot:
    """One store and the records it still owes."""

    def __init__(self, store: RecordStore) -> None:
        self.store = store
        self.pending: deque[Verdict] = deque()
        self.failing = False
        self.retry_at = 0.0
        self.error = ""  # the store's last failure
        self.dropped = 0


class RecordKeeper:
    def __init__(self, stores: list[RecordStore], backlog: int = 10_000, retry_s: float = 5.0) -> None:
        self._slots = [_Slot(s) for s in stores]
        self.backlog = backlog
        self.retry_s = retry_s
        self.failures = 0
        self.dropped = 0

    @property
    def stores(self) -> list[RecordStore]:
        return [s.store for s in self._slots]

    @property
    def pending(self) -> int:
        return sum(len(s.pending) for s in self._slots)

    def counters(self) -> dict[str, int]:
        return {"record_write_failures": self.failures, "records_pending": self.pending,
                "records_dropped": self.dropped}

    def write(self, v: Verdict) -> None:
        now = time.monotonic()
        for slot in self._slots:
            slot.pending.append(v)
            if len(slot.pending) > self.backlog:
                lost = slot.pending.popleft()
                self.dropped += 1
                slot.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.error("record_dropped", store=str(slot.store.path), board_id=lost.board_id,
                              why=f"store failing and its backlog of {self.backlog} is full", dropped=self.dropped)
            if not slot.failing or now >= slot.retry_at:
                self._flush(slot, now)

    def _flush(self, slot: _Slot, now: float) -> None:
        written = 0
        while slot.pending:
            try:
                slot.store.write(slot.pending[0])
            except STORE_ERRORS as exc:
                self.failures += 1
                slot.error = str(exc)
                slot.retry_at = now + self.retry_s
                if not slot.failing:
                    slot.failing = True
                    log.error("records_write_failed", store=str(slot.store.path), error=str(exc),
                              board_id=slot.pending[0].board_id, retry_s=self.retry_s)
                return
            slot.pending.popleft()
            written += 1
        if slot.failing:
            slot.failing = False
            log.warning("records_write_recovered", store=str(slot.store.path), written_from_backlog=written)

    def close(self) -> list[str]:
        """One last try for each store; records still unwritten go to the log, whole. Returns one
        line per store that did not get all its records, naming it (empty: every record written)."""
        problems = []
        for slot in self._slots:
            if slot.pending:
                self._flush(slot, time.monotonic())
            for v in slot.pending:
                log.error("record_unwritten", store=str(slot.store.path), record=v.to_record())
            if slot.pending or slot.dropped:
                problems.append(
                    f"{slot.store.path}: {len(slot.pending) + slot.dropped} board record(s) not written "
                    f"({slot.error}); {len(slot.pending)} are in the log as record_unwritten"
                    + (f", {slot.dropped} were dropped beyond the backlog" if slot.dropped else ""))
            try:
                slot.store.close()
            except STORE_ERRORS as exc:
                log.error("records_close_failed", store=str(slot.store.path), error=str(exc))
        return problems
