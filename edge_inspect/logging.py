"""structlog setup: JSON lines for services and journald, readable console lines on a terminal."""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Literal

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def setup_logging(level: str = "info", fmt: Literal["auto", "json", "console"] = "auto") -> None:
    """Configure structlog once per process; logs go to stderr so stdout stays for results."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    processors: list = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if use_json:
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        processors += [structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
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
