"""Reject signals as JSON lines to a PLC gateway over TCP, with optional acknowledgements."""

from __future__ import annotations

import json
import math
import select
import socket
import time
from collections import deque

import structlog

from edge_inspect.config import TcpSinkConfig
from edge_inspect.decision.verdict import Verdict
from edge_inspect.logging import LogEvery
from edge_inspect.outputs.base import ThreadedSink, verdict_message

log = structlog.get_logger(__name__)

_MAX_ACK_LINE = 4096  # bytes: a longer line without a newline is not an ack


def _ack_number(line: bytes) -> int | None:
    """N of an `{"ack": N}` line; None for anything else (Infinity and NaN included)."""
    try:
        n = json.loads(line)["ack"]
    except (ValueError, KeyError, TypeError, IndexError, RecursionError):
        return None
    if isinstance(n, float) and math.isfinite(n) and n.is_integer():
        n = int(n)
    return n if isinstance(n, int) and not isinstance(n, bool) else None


class TcpSink(ThreadedSink):
    """JSON lines to a PLC gateway. Its own thread connects, sends and reconnects with
    exponential back-off; while disconnected messages wait in a bounded queue (oldest dropped,
    counted and logged, when full). Before each send the socket is checked for the peer's close
    (EOF), so a gateway that restarts gracefully loses nothing: the message goes out on the new
    connection.

    TCP alone cannot tell whether a gateway that crashed hard read what sat in the kernel's
    buffers. With `ack: true` every message carries a `seq`, the gateway answers `{"ack": N}`
    lines (everything up to seq N is in its hands), and messages stay kept until acknowledged:
    after a disconnect, or when no ack came within `ack_timeout_s`, they are sent again on a new
    connection (at least once; the gateway drops a `seq` it has seen)."""

    def __init__(self, cfg: TcpSinkConfig, name: str | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.name = name or f"tcp:{cfg.host}:{cfg.port}"
        self._q: deque[tuple[int, int, bytes]] = deque()  # (board_id, seq, JSON line) to send
        self._unacked: deque[tuple[int, int, bytes, float]] = deque()  # sent, waiting: (..., sent at)
        self._seq = 0
        self._rx = b""
        self._bad_acks = LogEvery()
        self.sent = 0
        self.dropped = 0
        self.connects = 0
        self.acked = 0
        self.resent = 0
        self.connected = False

    def send(self, v: Verdict) -> None:
        if self.cfg.only_rejects and v.verdict != "reject":
            return
        body = verdict_message(v)
        with self._cond:
            self._seq += 1
            if self.cfg.ack:
                body["seq"] = self._seq
            msg = (json.dumps(body, separators=(",", ":")) + "\n").encode()
            if len(self._q) + len(self._unacked) >= self.cfg.queue:
                maybe_delivered = bool(self._unacked)
                lost = (self._unacked or self._q).popleft()[0]
                self.dropped += 1
                log.warning("sink_message_dropped", sink=self.name, why="queue full", queue=self.cfg.queue,
                            dropped=self.dropped, board_id=lost, maybe_delivered=maybe_delivered)
            self._q.append((v.board_id, self._seq, msg))
            self._cond.notify()

    def counters(self) -> dict[str, int]:
        c = {"sent": self.sent, "dropped": self.dropped, "connects": self.connects, "queued": len(self._q),
             "restarts": self.restarts}
        if self.cfg.ack:
            c.update(acked=self.acked, resent=self.resent, unacked=len(self._unacked))
        return c

    def close(self, timeout: float = 3.0) -> None:
        """Deliver (and, with acks, have acknowledged) what is kept for up to `timeout` s, then stop."""
        self._signal_stop(timeout)
        if self._q or self._unacked:
            log.warning("sink_undelivered", sink=self.name, messages=len(self._q) + len(self._unacked))

    def _connect(self) -> socket.socket | None:
        try:
            s = socket.create_connection((self.cfg.host, self.cfg.port), timeout=self.cfg.connect_timeout_s)
        except OSError as exc:
            if self.connected or self.connects == 0:
                log.warning("sink_connect_failed", sink=self.name, error=str(exc), queued=len(self._q))
            self.connected = False
            return None
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(self.cfg.connect_timeout_s)
        self.connects += 1
        self.connected = True
        self._rx = b""
        log.info("sink_connected", sink=self.name, connects=self.connects, queued=len(self._q))
        return s

    def _read_peer(self, s: socket.socket) -> str | None:
        """Reads what the gateway sent (acks, or anything, ignored without `ack`); returns why
        the connection is gone (EOF, an error, an ack overdue) or None while it is good."""
        try:
            while select.select([s], [], [], 0)[0]:
                data = s.recv(4096, socket.MSG_DONTWAIT)
                if not data:
                    return "peer closed"
                if self.cfg.ack:
                    self._take_acks(data)
        except (OSError, ValueError) as exc:
            return str(exc) or type(exc).__name__
        if self._unacked and time.monotonic() - self._unacked[0][3] > self.cfg.ack_timeout_s:
            return f"no ack within {self.cfg.ack_timeout_s:g} s"
        return None

    def _take_acks(self, data: bytes) -> None:
        """Acknowledgements in; anything that is not `{"ack": <integer>}` (Infinity, 1.5, text, a
        line without end) is logged and ignored: what it meant to acknowledge stays kept and is
        sent again after ack_timeout_s."""
        *lines, self._rx = (self._rx + data).split(b"\n")
        if len(self._rx) > _MAX_ACK_LINE:
            lines.append(self._rx)
            self._rx = b""
        for line in lines:
            upto = _ack_number(line)
            if upto is None:
                n = self._bad_acks.due()
                if n:
                    log.warning("sink_bad_ack", sink=self.name, line=line[:200].decode(errors="replace"),
                                bad_acks=n, expected='{"ack": N} with N an integer')
                continue
            with self._cond:
                while self._unacked and self._unacked[0][1] <= upto:
                    self._unacked.popleft()
                    self.acked += 1

    def _disconnect(self, s: socket.socket, why: str) -> None:
        """Closes; messages sent but not acknowledged go back to the front of the queue."""
        s.close()
        self.connected = False
        back = self._requeue_unacked()
        log.warning("sink_disconnected", sink=self.name, why=why, queued=len(self._q), resend=back)

    def _requeue_unacked(self) -> int:
        """Messages sent but not acknowledged go back to the front of the queue; returns how many."""
        with self._cond:
            back = [item[:3] for item in self._unacked]
            self._unacked.clear()
            self._q.extendleft(reversed(back))
            self.resent += len(back)
        return len(back)

    def _run(self) -> None:
        lo, hi = self.cfg.backoff_s
        wait = lo
        sock: socket.socket | None = None
        self.connected = False
        self._requeue_unacked()  # after a restart (ThreadedSink): the old connection is gone
        try:
            while True:
                with self._cond:
                    while not self._q and not self._unacked and not self._stop.is_set():
                        self._cond.wait(0.5)
                    if not self._q and not self._unacked:
                        return  # stopped and everything delivered
                    item = self._q[0] if self._q else None
                if sock is None:
                    sock = self._connect()
                    if sock is None:
                        if self._stop.is_set():
                            return
                        self._stop.wait(wait)
                        wait = min(hi, wait * 2)
                        continue
                    wait = lo
                why = self._read_peer(sock)
                if why is not None:
                    self._disconnect(sock, why)
                    sock = None
                    continue
                if item is None:  # everything sent, acks outstanding: a new message wakes us at once
                    with self._cond:
                        if not self._q:
                            self._cond.wait(0.02)
                    continue
                try:
                    sock.sendall(item[2])
                except OSError as exc:
                    self._disconnect(sock, str(exc))
                    sock = None
                    continue
                with self._cond:
                    if self._q and self._q[0] is item:
                        self._q.popleft()
                        if self.cfg.ack:
                            self._unacked.append((*item, time.monotonic()))
                    self.sent += 1
        finally:
            if sock is not None:
                sock.close()
