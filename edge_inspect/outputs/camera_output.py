"""Reject pulses on a camera's digital output line (GenICam SFNC nodes)."""

from __future__ import annotations

import heapq
import time
from typing import Any

import structlog

from edge_inspect.config import GenicamOutputSinkConfig
from edge_inspect.decision.verdict import Verdict
from edge_inspect.errors import ConfigError
from edge_inspect.outputs.base import ThreadedSink

log = structlog.get_logger(__name__)


_OUTPUT_NODES = ("LineSelector", "LineSource", "UserOutputSelector", "UserOutputValue")


class GenicamOutputSink(ThreadedSink):
    """A reject pulse on a camera digital output line through GenICam SFNC nodes:
    LineSelector=<line>, LineMode=Output (when the camera has it), LineSource=<user_output>;
    each pulse is UserOutputSelector=<user_output>, UserOutputValue true, then false after the
    pulse length. It starts `delay` after the board's first line was exposed (the ejector sits
    downstream of the camera); a verdict that comes later than that fires at once and counts
    as `late`. Overlapping pulses merge. Timing is software-timed (the node writes wait for the
    acquisition thread's fetch slice), i.e. good to a frame period, not to a line."""

    def __init__(self, cfg: GenicamOutputSinkConfig, source: Any, line_rate_hz: float, key: str) -> None:
        super().__init__()
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
        return {"sent": self.pulses, "late": self.late, "failed": self.failed, "restarts": self.restarts}

    def close(self) -> None:
        self._signal_stop(2.0)

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
