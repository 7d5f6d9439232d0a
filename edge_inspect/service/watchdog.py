"""When the service counts as alive for systemd's watchdog.

A stage is stalled when it has work waiting (its input queue, or the batch it is filling) and
its progress counter has not moved for `stall_after_s`. The acquisition stage always "has work":
it must keep running its fetch loop even on an idle line. An idle line (no frames, the camera's
fetch timing out) is alive as long as the fetch loop shows it is turning: its timeout counter
(or reconnect/lost/incomplete counters) moves, or the camera is in its reconnect back-off
(a missing camera is logged and counted, and a restart would not bring it back). A replay
source has no such counters: it is alive while frames arrive. A hung fetch, a stuck tiler,
a backend that never returns or a blocked decision stage stops the pings, so systemd restarts
the service (Restart=on-failure after WatchdogSec). So does a reject-signal sink whose thread
has died: a sink restarts its own thread after an unexpected error (outputs/base.py), so one
that is dead anyway cannot deliver, and boards would pass without their signal."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Sequence

from edge_inspect.acquisition.base import FrameSource

if TYPE_CHECKING:
    from edge_inspect.outputs.base import Sink
    from edge_inspect.pipeline import Pipeline

_CAMERA_COUNTERS = ("timeouts", "reconnects", "lost_frames", "incomplete_buffers")


class StallMonitor:
    def __init__(self, pipeline: Pipeline, source: FrameSource, stall_after_s: float,
                 sinks: Sequence[Sink] = ()) -> None:
        self._pipe = pipeline
        self._source = source
        self._sinks = sinks
        self._stall_ns = int(stall_after_s * 1e9)
        now = time.monotonic_ns()
        self._last: dict[str, tuple[int, int]] = {k: (-1, now) for k in pipeline.progress}

    def _acquisition_mark(self) -> int:
        """A number that changes whenever the acquisition loop does something."""
        mark = self._pipe.progress["acquisition"]
        counters = self._source.counters
        if counters is not None:
            mark += sum(int(getattr(counters, c, 0)) for c in _CAMERA_COUNTERS)
        return mark

    def stalled(self, now_ns: int | None = None) -> list[str]:
        """Names of the stages stalled and the sinks dead now (empty: alive)."""
        now = time.monotonic_ns() if now_ns is None else now_ns
        backlog = self._pipe.backlog()
        out = []
        for stage, done in self._pipe.progress.items():
            mark = self._acquisition_mark() if stage == "acquisition" else done
            last_mark, since = self._last[stage]
            if mark != last_mark or backlog.get(stage, 0) == 0:
                self._last[stage] = (mark, now)
                continue
            if stage == "acquisition" and self._source.reconnecting:
                self._last[stage] = (mark, now)  # in the camera's reconnect back-off: a loop that waits, not a hang
                continue
            if now - since > self._stall_ns:
                out.append(stage)
        return out + [f"sink {s.name}" for s in self._sinks if not s.alive()]
