"""structlog setup: JSON lines for services and journald, readable console lines on a terminal."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Literal, Mapping

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_console: bool | None = None  # what setup_logging chose; None before it ran


def under_systemd(environ: Mapping[str, str] | None = None, stream=None) -> bool:
    """True for a systemd service: NOTIFY_SOCKET is set, or JOURNAL_STREAM names this stderr
    (systemd's advice: a shell started from a user service inherits JOURNAL_STREAM, so the
    variable alone does not say where stderr goes)."""
    env = os.environ if environ is None else environ
    if env.get("NOTIFY_SOCKET"):
        return True
    journal = env.get("JOURNAL_STREAM", "")
    if not journal:
        return False
    try:
        st = os.fstat((stream or sys.stderr).fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return journal == f"{st.st_dev}:{st.st_ino}"


def interactive_stderr(environ: Mapping[str, str] | None = None, stream=None) -> bool:
    """stderr is a person's terminal (not a pipe, file or journald)."""
    s = stream or sys.stderr
    try:
        tty = s.isatty()
    except (ValueError, AttributeError):
        tty = False
    return tty and not under_systemd(environ, s)


def console_output() -> bool:
    """Readable lines and progress bars (True), or JSON lines and progress events (False)."""
    return interactive_stderr() if _console is None else _console


class _AboveBars:
    """stderr for console log lines: written above any progress bar instead of through it."""

    def write(self, text: str) -> None:
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr, end="")

    def flush(self) -> None:
        sys.stderr.flush()


def setup_logging(level: str = "info", fmt: Literal["auto", "json", "console"] = "auto") -> None:
    """Configure structlog once per process; logs go to stderr so stdout stays for results."""
    global _console
    use_json = fmt == "json" or (fmt == "auto" and not interactive_stderr())
    _console = not use_json
    processors: list = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if use_json:
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
        factory = structlog.PrintLoggerFactory(file=sys.stderr)
    else:
        processors += [structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
        factory = structlog.WriteLoggerFactory(file=_AboveBars())
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )


class LogEvery:
    """Folds a warning that can repeat thousands of times a minute (dropped strips under
    overload, lost camera frames, a gateway's bad acks) into at most one line per `seconds`.
    `due()` is called per event and returns how many events the line about to be written stands
    for (this one and those folded since the last line), or 0 when this one is folded. The
    first event always gets its line; running totals belong in the line itself and in metrics."""

    def __init__(self, seconds: float = 5.0) -> None:
        self.seconds = seconds
        self._next = float("-inf")
        self._folded = 0
        self._lock = threading.Lock()

    def due(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._folded += 1
            if now < self._next:
                return 0
            n, self._folded = self._folded, 0
            self._next = now + self.seconds
            return n

    def last(self) -> int:
        """A final event that always gets its line (the end of a stream): how many events it
        stands for, those folded since the last line included."""
        with self._lock:
            n, self._folded = self._folded + 1, 0
            return n
