"""Where verdicts go besides the records: the log, a PLC gateway over TCP, a camera output line.

Every sink's `send` is called from the decision thread and never blocks it: the TCP client and
the camera-output pulser have their own threads and bounded queues. A message that cannot be
kept (queue full) is dropped oldest-first, counted and logged, never silently."""

from __future__ import annotations

import heapq
import json
import select
import socket
import threading
import time
from collections import deque
from typing import Any, Protocol

import structlog

from edge_inspect.config import Config, GenicamOutputSinkConfig, LogSinkConfig, SinkConfig, TcpSinkConfig
from edge_inspect.decision.aggregator import Verdict
from edge_inspect.decision.records import finite_or_none
from edge_inspect.errors import ConfigError

log = structlog.get_logger(__name__)


class Sink(Protocol):
    name: str

    def start(self) -> None: ...

    def send(self, v: Verdict) -> None: ...

    def counters(self) -> dict[str, int]: ...

    def close(self) -> None: ...


def verdict_message(v: Verdict) -> dict:
    """The reject-signal message: what a PLC needs to act on one board."""
    return {"board_id": v.board_id, "verdict": v.verdict, "reasons": v.reasons, "score": finite_or_none(v.score),
            "incomplete": v.incomplete, "start_line": v.start_line, "end_line": v.end_line,
            "t_first_line_ns": v.t_first_line_ns, "t_verdict_ns": v.t_verdict_ns}


class LogSink:
    """One structlog event per board (JSON to journald under systemd)."""

    def __init__(self, cfg: LogSinkConfig, name: str = "log") -> None:
        self.cfg = cfg
        self.name = name
        self._n = 0

    def start(self) -> None:
        pass

    def send(self, v: Verdict) -> None:
        if self.cfg.only_rejects and v.verdict != "reject":
            return
        self._n += 1
        log.info("board", board_id=v.board_id, verdict=v.verdict, score=v.score, tiles=v.n_tiles,
                 start_line=v.start_line, end_line=v.end_line, reasons=v.reasons, incomplete=v.incomplete)

    def counters(self) -> dict[str, int]:
        return {"sent": self._n}

    def close(self) -> None:
        pass


class TcpSink:
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
        self.cfg = cfg
        self.name = name or f"tcp:{cfg.host}:{cfg.port}"
        self._q: deque[tuple[int, int, bytes]] = deque()  # (board_id, seq, JSON line) to send
        self._unacked: deque[tuple[int, int, bytes, float]] = deque()  # sent, waiting: (..., sent at)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seq = 0
        self._rx = b""
        self.sent = 0
        self.dropped = 0
        self.connects = 0
        self.acked = 0
        self.resent = 0
        self.connected = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"ei-sink-{self.name}", daemon=True)
        self._thread.start()

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
        c = {"sent": self.sent, "dropped": self.dropped, "connects": self.connects, "queued": len(self._q)}
        if self.cfg.ack:
            c.update(acked=self.acked, resent=self.resent, unacked=len(self._unacked))
        return c

    def close(self, timeout: float = 3.0) -> None:
        """Deliver (and, with acks, have acknowledged) what is kept for up to `timeout` s, then stop."""
        self._stop.set()
        with self._cond:
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
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
        *lines, self._rx = (self._rx + data).split(b"\n")
        for line in lines:
            try:
                upto = int(json.loads(line)["ack"])
            except (ValueError, KeyError, TypeError):
                log.warning("sink_bad_ack", sink=self.name, line=line[:200].decode(errors="replace"))
                continue
            with self._cond:
                while self._unacked and self._unacked[0][1] <= upto:
                    self._unacked.popleft()
                    self.acked += 1

    def _disconnect(self, s: socket.socket, why: str) -> None:
        """Closes; messages sent but not acknowledged go back to the front of the queue."""
        s.close()
        self.connected = False
        with self._cond:
            back = [item[:3] for item in self._unacked]
            self._unacked.clear()
            self._q.extendleft(reversed(back))
            self.resent += len(back)
        log.warning("sink_disconnected", sink=self.name, why=why, queued=len(self._q), resend=len(back))

    def _run(self) -> None:
        lo, hi = self.cfg.backoff_s
        wait = lo
        sock: socket.socket | None = None
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


_OUTPUT_NODES = ("LineSelector", "LineSource", "UserOutputSelector", "UserOutputValue")


class GenicamOutputSink:
    """A reject pulse on a camera digital output line through GenICam SFNC nodes:
    LineSelector=<line>, LineMode=Output (when the camera has it), LineSource=<user_output>;
    each pulse is UserOutputSelector=<user_output>, UserOutputValue true, then false after the
    pulse length. It starts `delay` after the board's first line was exposed (the ejector sits
    downstream of the camera); a verdict that comes later than that fires at once and counts
    as `late`. Overlapping pulses merge. Timing is software-timed (the node writes wait for the
    acquisition thread's fetch slice), i.e. good to a frame period, not to a line."""

    def __init__(self, cfg: GenicamOutputSinkConfig, source: Any, line_rate_hz: float, key: str) -> None:
        self.cfg = cfg
        self.name = f"genicam_output:{cfg.line}"
        self._source = source
        self._key = key
        ns_per_line = 1e9 / line_rate_hz
        self._delay_ns = int(cfg.delay_lines * ns_per_line if cfg.delay_lines is not None
                             else (cfg.delay_ms or 0.0) * 1e6)
        self._pulse_ns = int(cfg.pulse_lines * ns_per_line if cfg.pulse_lines is not None
                             else (cfg.pulse_ms if cfg.pulse_ms is not None else 50.0) * 1e6)
        self._heap: list[tuple[int, int]] = []  # (t_on_ns, t_off_ns)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.pulses = 0
        self.late = 0
        self.failed = 0
        self._check_and_route()

    def _nodes(self, fn: Any) -> Any:
        with_node_map = getattr(self._source, "with_node_map", None)
        if with_node_map is None:
            raise ConfigError(f"{self._key}: genicam_output needs the camera source (source.type: genicam)")
        return with_node_map(fn)

    def _check_and_route(self) -> None:
        """Fail at start (exit 78) naming every node or entry the camera lacks."""
        cfg = self.cfg

        def check(nm: Any) -> list[str]:
            from genicam import genapi

            def node(name: str) -> Any:
                try:
                    n = nm.get_node(name)
                except Exception:
                    return None
                return n if n is not None and genapi.is_implemented(n) else None

            missing = [n for n in _OUTPUT_NODES if node(n) is None]
            if missing:
                return [f"camera has no node(s) {', '.join(missing)}: its digital outputs cannot be driven"]
            problems = []
            for name, entry in (("LineSelector", cfg.line), ("LineSource", cfg.user_output),
                                ("UserOutputSelector", cfg.user_output)):
                if name == "LineSource":
                    continue  # offered entries depend on the selected line: checked after selecting it
                entries = list(node(name).symbolics)
                if entry not in entries:
                    problems.append(f"{name} has no entry {entry!r} (offered: {', '.join(entries)})")
            if problems:
                return problems
            node("LineSelector").value = cfg.line
            mode = node("LineMode")
            if mode is not None and genapi.is_writable(mode) and "Output" in list(mode.symbolics):
                mode.value = "Output"
            src = node("LineSource")
            if cfg.user_output not in list(src.symbolics):
                return [f"LineSource of {cfg.line} has no entry {cfg.user_output!r} (offered: {', '.join(src.symbolics)})"]
            src.value = cfg.user_output
            node("UserOutputSelector").value = cfg.user_output
            node("UserOutputValue").value = False
            return []

        problems = self._nodes(check)
        if problems:
            raise ConfigError(f"{self._key} (genicam_output): " + "; ".join(problems))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"ei-sink-{self.name}", daemon=True)
        self._thread.start()

    def send(self, v: Verdict) -> None:
        if self.cfg.only_rejects and v.verdict != "reject":
            return
        t_on = v.t_first_line_ns + self._delay_ns
        now = time.monotonic_ns()
        if t_on < now:
            self.late += 1
            log.warning("reject_pulse_late", board_id=v.board_id, late_ms=round((now - t_on) / 1e6, 1))
            t_on = now
        with self._cond:
            heapq.heappush(self._heap, (t_on, t_on + self._pulse_ns))
            self._cond.notify()

    def counters(self) -> dict[str, int]:
        return {"sent": self.pulses, "late": self.late, "failed": self.failed}

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(2.0)

    def _write(self, value: bool) -> bool:
        def set_value(nm: Any) -> None:
            nm.get_node("UserOutputSelector").value = self.cfg.user_output
            nm.get_node("UserOutputValue").value = value
        try:
            self._nodes(set_value)
            return True
        except Exception as exc:
            self.failed += 1
            log.error("reject_pulse_failed", line=self.cfg.line, value=value, error=str(exc), failed=self.failed)
            return False

    def _run(self) -> None:
        off_at: int | None = None
        while True:
            with self._cond:
                while True:
                    now = time.monotonic_ns()
                    next_on = self._heap[0][0] if self._heap else None
                    due = [t for t in (next_on, off_at) if t is not None]
                    if self._stop.is_set() and off_at is None:
                        return
                    if due and min(due) <= now:
                        break
                    self._cond.wait(min(0.5, (min(due) - now) / 1e9) if due else 0.5)
                if next_on is not None and next_on <= now:
                    _, t_off = heapq.heappop(self._heap)
                    turn_on = off_at is None
                    off_at = max(off_at or 0, t_off)
                else:
                    turn_on = False
            if turn_on:
                if self._write(True):
                    self.pulses += 1
            elif off_at is not None and off_at <= time.monotonic_ns():
                self._write(False)
                off_at = None


def build_sinks(cfg: Config, source: Any) -> list[Sink]:
    """Sinks of the config, validated against the camera now (a ConfigError before anything
    starts); none is started yet."""
    out: list[Sink] = []
    for i, sc in enumerate(cfg.sinks):
        key = f"sinks.{i}"
        if isinstance(sc, LogSinkConfig):
            out.append(LogSink(sc))
        elif isinstance(sc, TcpSinkConfig):
            out.append(TcpSink(sc))
        else:
            rate = getattr(cfg.source, "line_rate_hz", None) or cfg.camera.line_rate_hz
            out.append(GenicamOutputSink(sc, source, rate, key))
    return out


__all__ = ["Sink", "LogSink", "TcpSink", "GenicamOutputSink", "build_sinks", "verdict_message", "SinkConfig"]
