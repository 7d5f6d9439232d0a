"""The configured sinks, built and checked against the camera before anything starts."""

from __future__ import annotations

from typing import Any

from edge_inspect.config import Config, LogSinkConfig, TcpSinkConfig
from edge_inspect.outputs.base import Sink
from edge_inspect.outputs.camera_output import GenicamOutputSink
from edge_inspect.outputs.log import LogSink
from edge_inspect.outputs.tcp import TcpSink


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
