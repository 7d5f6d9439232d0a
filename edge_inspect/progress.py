"""Progress of long work (replay of a scan, calibrate's scoring, evaluate, export, parity,
engine builds, training): a tqdm bar with rate and ETA when a person watches a terminal; a
structured `progress` log event at most every `every_s` seconds otherwise (a pipe, a file,
journald under systemd), so logs get a readable trace instead of carriage-return noise.

    with Progress("replay scan.png", total=n_lines, unit="lines") as p:
        p.set(lines_done)          # absolute, for polled counters
        p.update(16)               # or relative, for loops
    with Progress("train", total=steps, unit="steps", max_seconds=cap_s) as p:
        ...                        # ETA is the sooner of "steps left at this rate" and the cap

Which of the two follows the log format (`edge_inspect.logging.console_output`): console logs
get a bar, JSON logs get events.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType

import structlog

from edge_inspect.logging import console_output

log = structlog.get_logger(__name__)

DEFAULT_EVERY_S = 10.0
_every_s = DEFAULT_EVERY_S


def set_interval(seconds: float) -> None:
    """Seconds between progress events when not on a terminal (`--progress-every`)."""
    global _every_s
    _every_s = seconds


def echo(text: str) -> None:
    """A result line on stdout that does not tear a progress bar drawn on the same terminal."""
    from tqdm import tqdm

    tqdm.write(text, file=sys.stdout)
    sys.stdout.flush()


class Progress:
    """One piece of work with an optional known total and an optional time cap."""

    def __init__(self, task: str, total: float | None = None, unit: str = "it", *,
                 max_seconds: float | None = None, every_s: float | None = None,
                 console: bool | None = None) -> None:
        self.task = task
        self.total = total if total and total > 0 else None
        self.unit = unit
        self.max_seconds = max_seconds
        self.done: float = 0
        self._events = 0  # structured progress events emitted so far
        self._note: str | None = None
        self._every = _every_s if every_s is None else every_s
        self.started = time.monotonic()  # when the work began (monotonic clock)
        self._next_event = self.started + self._every
        self._bar = None
        self._closed = False
        if console_output() if console is None else console:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=task, unit=unit, unit_scale=True, file=sys.stderr,
                             dynamic_ncols=True, mininterval=0.25, leave=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.set(self.done + n)

    def set(self, done: float) -> None:
        """Absolute amount done (a counter read from elsewhere)."""
        delta, self.done = done - self.done, done
        now = time.monotonic()
        if self._bar is not None:
            if delta:
                self._bar.update(delta)
            cap = self._cap_left(now)
            if cap is not None:
                self._bar.set_postfix_str(f"time cap in {self._bar.format_interval(cap)}", refresh=False)
        elif now >= self._next_event:
            self._emit(now)
            self._next_event = now + self._every

    def note(self, text: str) -> None:
        """What is being done now (a phase name); shown beside the bar or in the next event."""
        self._note = text
        if self._bar is not None:
            self._bar.set_description_str(f"{self.task}: {text}")

    def eta_s(self, now: float | None = None) -> float | None:
        """Seconds left: by the rate so far, or the time cap if that comes first."""
        now = time.monotonic() if now is None else now
        elapsed = now - self.started
        eta = None
        if self.total is not None and self.done > 0 and elapsed > 0:
            eta = max(0.0, self.total - self.done) / (self.done / elapsed)
        cap = self._cap_left(now)
        if cap is not None:
            eta = cap if eta is None else min(eta, cap)
        return eta

    def _cap_left(self, now: float) -> float | None:
        return None if self.max_seconds is None else max(0.0, self.max_seconds - (now - self.started))

    def _emit(self, now: float, finished: bool = False) -> None:
        elapsed = now - self.started
        eta = self.eta_s(now)
        fields = {"task": self.task, "done": round(self.done, 3), "total": self.total, "unit": self.unit,
                  "rate_per_s": round(self.done / elapsed, 3) if elapsed > 0 else None,
                  "elapsed_s": round(elapsed, 1), "eta_s": None if eta is None else round(eta, 1)}
        if self.total is not None:
            fields["percent"] = round(100.0 * self.done / self.total, 1)
        if self._note is not None:
            fields["phase"] = self._note
        if finished:
            fields["finished"] = True
        log.info("progress", **fields)
        self._events += 1

    def close(self) -> None:
        """End the bar; a structured trace that started also says where it ended."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._events:
            self._emit(time.monotonic(), finished=True)
