"""What every reject-signal sink offers the decision stage, and the message a PLC gets.

`send` is called from the decision thread and never blocks it: sinks that talk to hardware or
the network have their own thread and bounded queue (`ThreadedSink`). A message that cannot be
kept (queue full) is dropped oldest-first, counted and logged, never silently."""

from __future__ import annotations

import threading
from typing import Protocol

from edge_inspect.decision.verdict import Verdict, finite_or_none


class Sink(Protocol):
    name: str

    def start(self) -> None: ...

    def send(self, v: Verdict) -> None: ...

    def counters(self) -> dict[str, int]: ...

    def close(self) -> None: ...


class ThreadedSink:
    """A sink with one worker thread (`_run`), started by `start` and told to stop by `close`
    through `_stop` and `_cond`."""

    name: str

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"ei-sink-{self.name}", daemon=True)
        self._thread.start()

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
