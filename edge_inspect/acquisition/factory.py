"""Opens the source the config or command line names: camera, scan file/folder or recording."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Iterator

from edge_inspect.acquisition.base import FrameSource, Strip
from edge_inspect.acquisition.recording import RecordingSource, is_recording
from edge_inspect.acquisition.replay import ReplaySource
from edge_inspect.config import Config


def open_scan(path: Path, cfg: Config, speed: str = "max") -> ReplaySource | RecordingSource:
    """Replay formats (a) and (b) (image file, folder of frames) and (c) (a recording); both
    know their length (`total_lines`, for progress bars)."""
    if is_recording(path):
        return RecordingSource(path, speed)
    return ReplaySource(path, cfg.camera.lines_per_frame, cfg.camera.line_rate_hz, speed)


class LoopingSource:
    """Replays a scan again and again with the line counter running on, as a camera's would:
    for soak tests and unattended demos of the service."""

    def __init__(self, opener: Callable[[], FrameSource]) -> None:
        self._opener = opener
        self._current = opener()
        self.name = self._current.name
        self.live = self._current.live
        self.width = self._current.width
        self.channels = self._current.channels
        self.lines_per_frame = self._current.lines_per_frame
        self.counters = None
        self.reconnecting = False
        self._stop = threading.Event()

    def strips(self) -> Iterator[Strip]:
        line_offset = frame_offset = 0
        while not self._stop.is_set():
            end_line = end_frame = 0
            for s in self._current.strips():
                yield Strip(s.lines, s.first_line + line_offset, s.t_ns, s.frame_id + frame_offset)
                end_line, end_frame = s.first_line + len(s.lines), s.frame_id + 1
            if end_line == 0 or self._stop.is_set():
                return
            line_offset += end_line
            frame_offset += end_frame
            self._current = self._opener()

    def close(self) -> None:
        self._stop.set()
        self._current.close()


def open_source(cfg: Config) -> FrameSource:
    """The source of `run` and `record` (config section `source`)."""
    s = cfg.source
    if s.type == "genicam":
        from edge_inspect.acquisition.genicam import GenicamSource

        return GenicamSource.from_config(cfg)
    if s.loop:
        return LoopingSource(lambda: open_scan(s.path, cfg, s.speed))
    return open_scan(s.path, cfg, s.speed)
