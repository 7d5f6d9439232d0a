"""Verdicts as structured log events (JSON to journald under systemd)."""

from __future__ import annotations

import structlog

from edge_inspect.config import LogSinkConfig
from edge_inspect.decision.verdict import Verdict

log = structlog.get_logger(__name__)


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

    def alive(self) -> bool:
        return True  # no thread of its own: it runs in the decision thread

    def close(self) -> None:
        pass
