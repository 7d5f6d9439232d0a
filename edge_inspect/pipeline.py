"""Wires acquisition -> tiling -> inference -> decision in threads. The same code serves
`replay` and `run`; only the source differs."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import structlog

from edge_inspect.acquisition.base import FrameSource
from edge_inspect.config import Config
from edge_inspect.decision.aggregator import BoardAggregator, Verdict
from edge_inspect.decision.calibration import Calibration
from edge_inspect.errors import EdgeInspectError, InputDataError
from edge_inspect.inference.base import Backend
from edge_inspect.inference.ring import RingClosed, TileRing
from edge_inspect.tiling.events import BoardEnded, BoardStarted, TileMeta, TilesCut
from edge_inspect.tiling.tiler import Tiler

log = structlog.get_logger(__name__)

_END = object()  # end-of-stream marker passed down every queue


@dataclass
class StageTimes:
    """Busy seconds per stage (waiting excluded), for `bench` and the summary."""

    acquisition: float = 0.0
    tiling: float = 0.0
    inference: float = 0.0
    decision: float = 0.0


@dataclass
class PipelineStats:
    frames: int = 0
    lines: int = 0
    dropped_strips: int = 0
    lines_lost: int = 0
    tiles: int = 0
    batches: int = 0
    boards: int = 0
    rejects: int = 0
    incomplete: int = 0
    ignored_segments: int = 0
    wall_s: float = 0.0
    stage_s: StageTimes = field(default_factory=StageTimes)
    error: str | None = None

    @property
    def tiles_per_s(self) -> float:
        return self.tiles / self.wall_s if self.wall_s > 0 else 0.0


class Pipeline:
    """Four threads joined by bounded queues. A live source is never blocked: a strip that
    finds the strip queue full is dropped and counted, and the tiler sees the line gap and
    rejects the affected board as incomplete."""

    def __init__(
        self,
        cfg: Config,
        source: FrameSource,
        backend: Backend,
        calibration: Calibration,
        on_verdict: Callable[[Verdict], None],
        width: int,
        channels: int,
    ) -> None:
        t = cfg.tiling.tile_size
        if backend.tile_size != t:
            raise InputDataError(f"model takes {backend.tile_size}px tiles but tiling.tile_size is {t}")
        if backend.channels != channels:
            raise InputDataError(
                f"model takes {backend.channels}-channel tiles but the scan has {channels} channel(s)"
            )
        if width < t:
            raise InputDataError(f"scan width {width} is narrower than one tile ({t}px)")
        self.cfg = cfg
        self.source = source
        self.backend = backend
        self.on_verdict = on_verdict
        self.stats = PipelineStats()
        self._score_name = calibration.score
        self._tiler = Tiler(cfg.tiling, width=width, channels=channels)
        self._ring = TileRing(cfg.inference.ring_tiles, t, channels)
        self._chunk = max(1, cfg.inference.ring_tiles // 2)
        b = cfg.inference.batch_size
        self._gather = np.empty((b, t, t, channels), np.uint8)
        self._agg = BoardAggregator(calibration, t, backend.model_sha256, source.name)
        self._strip_q: queue.Queue = queue.Queue(maxsize=cfg.output.strip_queue)
        self._infer_q: queue.Queue = queue.Queue()
        self._decision_q: queue.Queue = queue.Queue()
        self._abort = threading.Event()
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_progress_ns = time.monotonic_ns()

    # -- control -------------------------------------------------------------------------
    def start(self) -> None:
        self._t0 = time.perf_counter()
        for name, fn in (("acquisition", self._acquire), ("tiling", self._tile),
                         ("inference", self._infer), ("decision", self._decide)):
            th = threading.Thread(target=self._guard(name, fn), name=f"ei-{name}", daemon=True)
            th.start()
            self._threads.append(th)

    def stop(self) -> None:
        """Drain: the source stops, every board begun is finished and recorded (a board still
        in view is rejected as incomplete: its end was never seen)."""
        self._stopped.set()
        self.source.close()

    def join(self) -> PipelineStats:
        for th in self._threads:
            th.join()
        self.stats.wall_s = time.perf_counter() - self._t0
        return self.stats

    def run(self) -> PipelineStats:
        self.start()
        return self.join()

    def set_calibration(self, cal: Calibration) -> None:
        self._decision_q.put(("calibration", cal))

    def _guard(self, name: str, fn: Callable[[], None]) -> Callable[[], None]:
        """A failing stage stops the source; each stage passes the end marker on in `finally`.
        After an acquisition error what was already read drains normally; after a downstream
        error the producers stop waiting. Either way every board begun gets a record (rejected
        as incomplete when it could not be finished)."""
        def run() -> None:
            try:
                fn()
            except RingClosed:
                pass  # the inference stage failed and has reported it
            except Exception as exc:  # a stage must never die silently
                msg = str(exc) if isinstance(exc, EdgeInspectError) else f"{type(exc).__name__}: {exc}"
                if self.stats.error is None:
                    self.stats.error = msg
                log.error("stage_failed", stage=name, error=msg,
                          exc_info=not isinstance(exc, EdgeInspectError))
                self.source.close()
                if name != "acquisition":  # a dead consumer: producers must stop waiting on it
                    self._abort.set()
                if name == "inference":  # nothing will free ring slots any more
                    self._ring.close()
        return run

    # -- stages --------------------------------------------------------------------------
    def _acquire(self) -> None:
        st = self.stats
        live = self.source.live
        busy = 0.0
        t = time.perf_counter()
        try:
            for strip in self.source.strips():
                busy += time.perf_counter() - t
                if self._abort.is_set():
                    break
                st.frames += 1
                st.lines += len(strip.lines)
                if live:
                    try:
                        self._strip_q.put_nowait(strip)
                    except queue.Full:
                        st.dropped_strips += 1
                        log.warning("strip_dropped", frame_id=strip.frame_id, first_line=strip.first_line,
                                    dropped=st.dropped_strips, why="strip queue full")
                else:
                    self._put(self._strip_q, strip)
                t = time.perf_counter()
        finally:
            st.stage_s.acquisition = busy
            self._put(self._strip_q, _END)

    def _put(self, q: queue.Queue, item: object) -> None:
        while True:
            try:
                q.put(item, timeout=0.2)
                return
            except queue.Full:
                if self._abort.is_set():
                    return

    def _tile(self) -> None:
        st = self.stats
        busy = 0.0
        try:
            while not self._abort.is_set():
                strip = self._strip_q.get()
                if strip is _END:
                    t = time.perf_counter()
                    events = self._tiler.flush(stopped=self._stopped.is_set())
                    busy += time.perf_counter() - t
                    busy += self._dispatch(events)
                    break
                t = time.perf_counter()
                events = self._tiler.push(strip)
                busy += time.perf_counter() - t
                busy += self._dispatch(events)
        finally:
            st.lines_lost = self._tiler.lines_lost
            st.ignored_segments = self._tiler.ignored_segments
            st.stage_s.tiling = busy
            self._infer_q.put(_END)

    def _dispatch(self, events: list) -> float:
        """Send tiling events on; returns busy time (waiting for ring room excluded)."""
        busy = 0.0
        for ev in events:
            if isinstance(ev, TilesCut):
                n = len(ev.metas)
                for lo in range(0, n, self._chunk):  # a cut larger than the ring goes in pieces
                    hi = min(n, lo + self._chunk)
                    start = None
                    while start is None:
                        start = self._ring.reserve(hi - lo, timeout=0.2)
                        if start is None and self._abort.is_set():
                            raise RingClosed()
                    t = time.perf_counter()
                    ev.write_into(self._ring.view(start, hi - lo), lo, hi)
                    busy += time.perf_counter() - t
                    self._infer_q.put((start, ev.metas[lo:hi]))
                self.stats.tiles += n
            elif isinstance(ev, (BoardStarted, BoardEnded)):
                self._decision_q.put(ev)
        return busy

    def _infer(self) -> None:
        b = self.cfg.inference.batch_size
        max_wait = self.cfg.inference.max_wait_ms / 1000.0
        items: list[tuple[int, list[TileMeta]]] = []
        n = 0
        deadline = 0.0
        busy = 0.0
        try:
            while True:
                timeout = 0.5 if n == 0 else max(0.0, deadline - time.monotonic())
                try:
                    item = self._infer_q.get(timeout=timeout)
                except queue.Empty:
                    if n:
                        busy += self._score(items, n)
                        items, n = [], 0
                    continue
                if item is _END:
                    break
                start, metas = item
                while metas:
                    take = min(b - n, len(metas))
                    if n == 0:
                        deadline = time.monotonic() + max_wait
                    items.append((start, metas[:take]))
                    start += take
                    metas = metas[take:]
                    n += take
                    if n == b:
                        busy += self._score(items, n)
                        items, n = [], 0
            if n:
                busy += self._score(items, n)
        finally:
            self.stats.stage_s.inference = busy
            self._decision_q.put(_END)

    def _score(self, items: list[tuple[int, list[TileMeta]]], n: int) -> float:
        cap = self._ring.capacity
        first = items[0][0]
        contiguous = all(
            (s % cap) == (first % cap) + off
            for (s, _), off in zip(items, np.cumsum([0] + [len(m) for _, m in items[:-1]]))
        )
        t = time.perf_counter()
        if contiguous:
            batch = self._ring.view(first, n)
        else:
            off = 0
            for s, m in items:
                self._gather[off:off + len(m)] = self._ring.view(s, len(m))
                off += len(m)
            batch = self._gather[:n]
        scores = self.backend.score(batch)[self._score_name]
        busy = time.perf_counter() - t
        last_start, last_metas = items[-1]
        self._ring.release(last_start + len(last_metas))
        metas = [m for _, ms in items for m in ms]
        self._decision_q.put(("scored", metas, scores))
        self.stats.batches += 1
        self._last_progress_ns = time.monotonic_ns()
        return busy

    def _decide(self) -> None:
        busy = 0.0
        while True:
            item = self._decision_q.get()
            if item is _END:
                break
            t = time.perf_counter()
            if isinstance(item, BoardStarted):
                self._agg.started(item)
                verdicts = []
            elif isinstance(item, BoardEnded):
                verdicts = self._agg.ended(item)
            elif item[0] == "scored":
                verdicts = self._agg.scored(item[1], item[2])
            else:  # ("calibration", cal)
                self._agg.set_calibration(item[1])
                verdicts = []
            for v in verdicts:
                self._emit(v)
            busy += time.perf_counter() - t
        for v in self._agg.abandon_open(self.stats.error or "stream ended before the board was scored"):
            self._emit(v)
        self.stats.stage_s.decision = busy

    def _emit(self, v: Verdict) -> None:
        st = self.stats
        st.boards += 1
        st.rejects += v.verdict == "reject"
        st.incomplete += v.incomplete
        self.on_verdict(v)
