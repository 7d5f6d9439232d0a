"""What every reject-signal sink offers the decision stage, and the message a PLC gets.

`send` is called from the decision thread and never blocks it: sinks that talk to hardware or
the network have their own thread and bounded queue (`ThreadedSink`). A message that cannot be
kept (queue full) is dropped oldest-first, counted and logged, never silently. A sink thread
that hits an unexpected error is logged with its traceback, counted (`restarts`) and started
again with what it holds; `alive()` says whether it still runs, for the service's metrics,
STATUS line and watchdog."""

from __future__ import annotations

import threading
from typing import Protocol

import structlog

from edge_inspect.decision.verdict import Verdict, finite_or_none

log = structlog.get_logger(__name__)

_RESTART_PAUSE_S = (0.5, 30.0)  # first and largest pause before a failed sink thread runs again


class Sink(Protocol):
    name: str

    def start(self) -> None: ...

    def send(self, v: Verdict) -> None: ...

    def counters(self) -> dict[str, int]: ...

    def alive(self) -> bool:
        """False when the sink can no longer deliver (its thread has ended while it should run)."""
        ...

    def close(self) -> None: ...


class ThreadedSink:
    """A sink with one worker thread (`_run`), started by `start` and told to stop by `close`
    through `_stop` and `_cond`. The thread supervises `_run`: an exception it did not expect
    is logged, counted in `restarts` and `_run` is started again after a pause (doubling up to
    30 s), so a malformed reply or a bug costs a restart, never the reject signals."""

    name: str

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.restarts = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._supervise, name=f"ei-sink-{self.name}", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        """True from `start` until `close` while the worker thread runs."""
        return self._thread is not None and (self._thread.is_alive() or self._stop.is_set())

    def _supervise(self) -> None:
        pause, longest = _RESTART_PAUSE_S
        while True:
            try:
                self._run()
                return
            except Exception as exc:
                self.restarts += 1
                stopping = self._stop.is_set()
                log.error("sink_failed", sink=self.name, error=f"{type(exc).__name__}: {exc}",
                          restarts=self.restarts, action="stopping" if stopping else f"restart in {pause:g} s",
                          exc_info=True)
                if stopping:
                    return
                self._stop.wait(pause)  # a stop meanwhile still gets one more delivery attempt
                pause = min(longest, pause * 2)

    def _signal_stop(self, timeout: float) -> None:
        """Wake the worker to finish and wait up to `timeout` s for it."""
        self._stop.set()
        with self._cond:
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        raise NotImplementedError


def verdict_message(v: Verdict) -> dict:
    """The reject-signal message: what a PLC needs to act on one board."""
    return {"board_id": v.board_id, "verdict": v.verdict, "reasons": v.reasons, "score": finite_or_none(v.score),
            "incomplete": v.incomplete, "start_line": v.start_line, "end_line": v.end_line,
            "t_first_line_ns": v.t_first_line_ns, "t_verdict_ns": v.t_verdict_ns}
