"""Wires acquisition -> tiling -> inference -> decision in threads. The same code serves
`replay` and `run`; only the source differs."""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np
import structlog

from edge_inspect.acquisition.base import FrameSource
from edge_inspect.config import Config
from edge_inspect.decision.aggregator import BoardAggregator
from edge_inspect.decision.calibration_file import Calibration
from edge_inspect.decision.messages import (
    BoardImage,
    CalibrationChanged,
    ModelSwapped,
    Scored,
)
from edge_inspect.decision.verdict import Verdict
from edge_inspect.errors import ConfigError, EdgeInspectError, InputDataError
from edge_inspect.inference.base import Backend, Ticket
from edge_inspect.inference.ring import RingClosed, TileRing
from edge_inspect.logging import LogEvery
from edge_inspect.monitoring.thumbnails import BoardThumbnails
from edge_inspect.tiling.events import BoardEnded, BoardStarted, TileMeta, TilesCut
from edge_inspect.tiling.tiler import END_OF_STREAM, Tiler

log = structlog.get_logger(__name__)

_END = object()  # end-of-stream marker passed down every queue


def check_fit(backend: Backend, tile_size: int, what: str, width: int, channels: int,
              error: type[EdgeInspectError] = ConfigError) -> None:
    """Refuse a model and a source that do not fit, naming `what` (the source): a tile size
    that differs is always the configuration's (exit 78); channels or a width below one tile are
    `error`: the configuration's for the configured source, InputDataError (exit 1) for a scan
    given on the command line."""
    if backend.tile_size != tile_size:
        raise ConfigError(f"tiling.tile_size is {tile_size} but the model takes {backend.tile_size}px tiles")
    if backend.channels != channels:
        kind = {1: "grey", 3: "colour"}
        raise error(f"{what}: {kind.get(channels, channels)} ({channels} channel(s)) but the model takes "
                    f"{kind.get(backend.channels, backend.channels)} tiles ({backend.channels} channel(s))")
    if width < tile_size:
        raise error(f"{what}: {width} px wide, narrower than one tile ({tile_size} px)")


def _error_text(exc: BaseException) -> str:
    """A stage error as one line: our own errors already name the problem; others get their type."""
    return str(exc) if isinstance(exc, EdgeInspectError) else f"{type(exc).__name__}: {exc}"


class PipelineObserver(Protocol):
    """Optional hooks for the service (metrics, heatmaps); called from the stage threads, so
    they must be quick and must not block."""

    def batch_scored(self, n_tiles: int, seconds: float) -> None: ...

    def verdict(self, v: Verdict, t_last_line_ns: int | None) -> None: ...

    def board_image(self, v: Verdict, image: np.ndarray, scale: int) -> None: ...


@dataclass
class _InFlight:
    """A batch submitted to the backend and not yet collected (inference thread only)."""

    ticket: Ticket
    metas: list[TileMeta]
    ring_end: int      # ring position just after its tiles: released once it is collected
    t_submit: float


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
    fragments: int = 0
    wall_s: float = 0.0
    stage_s: StageTimes = field(default_factory=StageTimes)
    error: str | None = None
    first_line: int | None = None  # camera line counter of the first strip
    last_line: int = 0             # ... just after the last strip read
    decided_to: int = 0            # ... up to which every board has its verdict

    @property
    def tiles_per_s(self) -> float:
        return self.tiles / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def lines_decided(self) -> int:
        """Lines of the stream whose boards all have verdicts: what a progress bar counts (lines
        read run ahead by the queues and the tile ring)."""
        return 0 if self.first_line is None else max(0, self.decided_to - self.first_line)


class Pipeline:
    """Four threads joined by bounded queues. A live source is never blocked: a strip that
    finds the strip queue full is dropped and counted, and the tiler sees the line gap and
    rejects the affected board as incomplete. The inference stage keeps two batches in flight
    (`Backend.submit`/`collect`): the next batch is gathered while the backend scores the
    current one, and results go to the decision stage in submit order."""

    def __init__(
        self,
        cfg: Config,
        source: FrameSource,
        backend: Backend,
        calibration: Calibration,
        on_verdict: Callable[[Verdict], None],
        width: int,
        channels: int,
        observer: PipelineObserver | None = None,
        image_scale: int = 0,
    ) -> None:
        """`observer` gets batch/verdict timings; with `image_scale` > 0 it also gets the board
        image (every image_scale-th line and column) of each board that ended, just after its
        verdict; the observer picks the ones it keeps."""
        t = cfg.tiling.tile_size
        check_fit(backend, t, f"source {source.name}", width, channels)
        self.cfg = cfg
        self.source = source
        self.backend = backend
        self.on_verdict = on_verdict
        self.stats = PipelineStats()
        self._score_name = calibration.score
        try:
            self._tiler = Tiler(cfg.tiling, width=width, channels=channels)
        except MemoryError:
            raise ConfigError(f"tiling.segmenter: a band for min_board_lines + min_gap_lines at {width} px "
                              f"cannot be allocated") from None
        # GPU backends hand out pinned host memory, so H2D copies read the ring in place.
        allocate = getattr(backend, "allocate_ring", None)
        n_ring = cfg.inference.ring_tiles
        try:
            slots = allocate(n_ring, t, channels) if allocate else None
            self._ring = TileRing(n_ring, t, channels, slots=slots)
        except MemoryError:
            raise ConfigError(f"inference.ring_tiles: {n_ring} tiles of {t}x{t}x{channels} "
                              f"({n_ring * t * t * channels / 2**30:.1f} GiB) cannot be allocated") from None
        self._chunk = max(1, cfg.inference.ring_tiles // 2)
        b = cfg.inference.batch_size
        # a batch whose tiles are not contiguous in the ring is gathered; two buffers, because the
        # previous batch may still be read by the backend while the next one is gathered
        self._gather = [np.empty((b, t, t, channels), np.uint8) for _ in range(2)]
        self._next_gather = 0
        self._in_flight: deque[_InFlight] = deque()
        self._agg = BoardAggregator(calibration, t, backend.model_sha256, source.name)
        self._strip_q: queue.Queue = queue.Queue(maxsize=cfg.output.strip_queue)
        self._infer_q: queue.Queue = queue.Queue()
        self._decision_q: queue.Queue = queue.Queue()
        self._abort = threading.Event()
        self._stopped = threading.Event()
        self._source_error: str | None = None  # why the source failed, read by tiling at the end marker
        self._drop_log = LogEvery()
        self._threads: list[threading.Thread] = []
        self._last_progress_ns = time.monotonic_ns()
        self.observer = observer
        seg = cfg.tiling.segmenter
        self._thumbs = (BoardThumbnails(width, channels, image_scale,
                                        seg.max_board_lines + 2 * seg.min_gap_lines + 8 * cfg.camera.lines_per_frame)
                        if image_scale > 0 and observer is not None else None)
        self._images: dict[int, BoardImage] = {}   # decision thread: board images awaiting verdicts
        self._t_last: dict[int, int] = {}          # decision thread: board id -> time of its last line
        #: per-stage work items done (strips in, strips tiled, batches scored, decision messages);
        #: the service's watchdog compares them with the backlogs to find a stalled stage
        self.progress = {"acquisition": 0, "tiling": 0, "inference": 0, "decision": 0}
        self._pending_tiles = 0  # tiles of the batch being gathered and of the batches in flight
        self._new_backend: tuple[Backend, Calibration] | None = None
        self._swap_lock = threading.Lock()
        self._straddling: set[int] = set()  # boards open when the model changed (decision thread)
        #: backends replaced by set_backend, for the caller to close after join()
        self.retired_backends: list[Backend] = []

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

    def running(self) -> bool:
        """True while any stage thread is still working (including draining after stop())."""
        return any(th.is_alive() for th in self._threads)

    def run(self, tick: Callable[[PipelineStats], None] | None = None, every_s: float = 0.25) -> PipelineStats:
        """Start, wait for the end of the stream, join. `tick` (a progress bar, say) gets the
        live stats every `every_s` and once at the end, from the calling thread: never from a
        stage, so it cannot slow one down."""
        self.start()
        if tick is not None:
            while self.running():
                tick(self.stats)
                self._threads[-1].join(every_s)  # the decision stage is the last to finish
            tick(self.stats)
        return self.join()

    def set_calibration(self, cal: Calibration) -> None:
        """New thresholds, same model: applied by the decision stage in stream order, so every
        verdict after it uses them and no frame waits."""
        self._decision_q.put(CalibrationChanged(cal))

    def set_backend(self, backend: Backend, cal: Calibration) -> None:
        """New model (and its calibration): the inference stage swaps it in between two batches;
        the decision stage switches the calibration at the same point of the stream. Boards
        whose tiles were scored partly by each model are rejected (fail safe)."""
        if backend.tile_size != self.backend.tile_size or backend.channels != self.backend.channels:
            raise InputDataError(
                f"new model takes {backend.tile_size}px {backend.channels}-channel tiles, the running "
                f"pipeline {self.backend.tile_size}px {self.backend.channels}-channel")
        with self._swap_lock:
            self._new_backend = (backend, cal)

    def backlog(self) -> dict[str, int]:
        """Work waiting in front of each stage (approximate; read from any thread). The camera
        always counts as having work: it must keep fetching even when the line is idle."""
        return {"acquisition": 1, "tiling": self._strip_q.qsize(),
                "inference": self._infer_q.qsize() + self._pending_tiles,
                "decision": self._decision_q.qsize()}

    @property
    def fragments(self) -> int:
        """Fragments so far (the stats field is filled when the stream ends)."""
        return self._tiler.fragments

    @property
    def foreground_level(self) -> int:
        """The grey level the tiler judges board pixels by now (it may follow the conveyor)."""
        return self._tiler.foreground_level

    @property
    def queue_depths(self) -> dict[str, int]:
        return {"strips": self._strip_q.qsize(), "inference": self._infer_q.qsize(),
                "decision": self._decision_q.qsize(), "ring_tiles": int(self._ring.used)}

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
                msg = _error_text(exc)
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
                if st.first_line is None:
                    st.first_line = strip.first_line
                st.last_line = strip.first_line + len(strip.lines)
                self.progress["acquisition"] += 1
                if live:
                    try:
                        self._strip_q.put_nowait(strip)
                    except queue.Full:
                        st.dropped_strips += 1
                        n = self._drop_log.due()
                        if n:  # overload drops thousands: one line per few seconds, with counts
                            log.warning("strip_dropped", frame_id=strip.frame_id, first_line=strip.first_line,
                                        dropped=st.dropped_strips, since_last_line=n, why="strip queue full")
                else:
                    self._put(self._strip_q, strip)
                t = time.perf_counter()
        except Exception as exc:  # set before the end marker goes out: tiling cuts the open board with it
            self._source_error = _error_text(exc)
            raise
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
                    events = self._tiler.flush(self._source_error
                                               or ("stopped" if self._stopped.is_set() else END_OF_STREAM),
                                               stream_end=st.last_line)
                    busy += time.perf_counter() - t
                    busy += self._dispatch(events)
                    break
                t = time.perf_counter()
                if self._thumbs is not None:
                    self._thumbs.add(strip.lines, strip.first_line)
                events = self._tiler.push(strip)
                busy += time.perf_counter() - t
                busy += self._dispatch(events)
                self.progress["tiling"] += 1
        finally:
            st.lines_lost = self._tiler.lines_lost
            st.fragments = self._tiler.fragments
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
                if isinstance(ev, BoardEnded) and self._thumbs is not None:
                    image = self._thumbs.board(ev.start_line, ev.end_line)
                    self._decision_q.put(BoardImage(ev.board_id, image, self._thumbs.scale))
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
                if n == 0 and self._in_flight:
                    timeout = 0.0  # nothing to gather yet: do not hold back a batch in flight
                try:
                    item = self._infer_q.get(timeout=timeout)
                except queue.Empty:
                    if n:
                        busy += self._submit(items, n)
                        items, n = [], 0
                    elif self._in_flight:
                        busy += self._collect_oldest()
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
                    self._pending_tiles += take
                    if n == b:
                        busy += self._submit(items, n)
                        items, n = [], 0
            if n:
                busy += self._submit(items, n)
            while self._in_flight:
                busy += self._collect_oldest()
        finally:
            self.stats.stage_s.inference = busy
            self._decision_q.put(_END)

    def _submit(self, items: list[tuple[int, list[TileMeta]]], n: int) -> float:
        """Hand one batch to the backend; then, with two batches in flight, wait for the older
        one. Returns busy seconds."""
        cap = self._ring.capacity
        first = items[0][0]
        contiguous = all(
            (s % cap) == (first % cap) + off
            for (s, _), off in zip(items, np.cumsum([0] + [len(m) for _, m in items[:-1]]))
        )
        t = time.perf_counter()
        busy = 0.0
        if self._new_backend is not None:
            busy += self._swap_backend()
            t = time.perf_counter()
        if contiguous:
            batch = self._ring.view(first, n)
        else:
            gather = self._gather[self._next_gather]
            self._next_gather ^= 1
            off = 0
            for s, m in items:
                gather[off:off + len(m)] = self._ring.view(s, len(m))
                off += len(m)
            batch = gather[:n]
        ticket = self.backend.submit(batch)
        last_start, last_metas = items[-1]
        self._in_flight.append(_InFlight(ticket, [m for _, ms in items for m in ms],
                                         last_start + len(last_metas), t))
        busy += time.perf_counter() - t
        while len(self._in_flight) > 1:
            busy += self._collect_oldest()
        return busy

    def _collect_oldest(self) -> float:
        """Wait for the oldest batch in flight, free its ring slots and pass its scores on."""
        t = time.perf_counter()
        job = self._in_flight.popleft()
        scores = self.backend.collect(job.ticket)[self._score_name]
        done = time.perf_counter()
        self._ring.release(job.ring_end)
        self._decision_q.put(Scored(job.metas, scores))
        self.stats.batches += 1
        self.progress["inference"] += 1
        self._pending_tiles -= len(job.metas)
        self._last_progress_ns = time.monotonic_ns()
        if self.observer is not None:
            self.observer.batch_scored(len(job.metas), done - job.t_submit)
        return done - t

    def _swap_backend(self) -> float:
        """Inference thread, between batches: what the old model has in flight is finished first,
        then the next batch is scored by the new model. Returns busy seconds."""
        busy = 0.0
        while self._in_flight:
            busy += self._collect_oldest()
        with self._swap_lock:
            backend, cal = self._new_backend  # type: ignore[misc]
            self._new_backend = None
        old, self.backend = self.backend, backend
        self._score_name = cal.score
        self._decision_q.put(ModelSwapped(backend.model_sha256, cal))
        self.retired_backends.append(old)
        log.info("model_swapped", old=old.model_sha256[:12], new=backend.model_sha256[:12], calibration=cal.version)
        return busy

    def _decide(self) -> None:
        handlers: dict[type, Callable[[Any], list[Verdict]]] = {
            BoardStarted: self._on_started, BoardEnded: self._on_ended, Scored: self._on_scored,
            BoardImage: self._on_image, ModelSwapped: self._on_model, CalibrationChanged: self._on_calibration,
        }
        busy = 0.0
        while True:
            item = self._decision_q.get()
            if item is _END:
                break
            t = time.perf_counter()
            self.progress["decision"] += 1
            for v in handlers[type(item)](item):
                self._emit(v)
            busy += time.perf_counter() - t
        for v in self._agg.abandon_open(self.stats.error or "stream ended before the board was scored"):
            self._emit(v)
        self.stats.decided_to = max(self.stats.decided_to, self.stats.last_line)  # the gap after the last board
        self.stats.stage_s.decision = busy

    # -- decision-stage handlers, one per message type -----------------------------------
    def _on_started(self, ev: BoardStarted) -> list[Verdict]:
        self._agg.started(ev)
        return []

    def _on_ended(self, ev: BoardEnded) -> list[Verdict]:
        self._t_last[ev.board_id] = ev.t_last_ns
        return self._agg.ended(ev)

    def _on_scored(self, msg: Scored) -> list[Verdict]:
        return self._agg.scored(msg.metas, msg.scores)

    def _on_image(self, msg: BoardImage) -> list[Verdict]:
        self._images[msg.board_id] = msg
        return []

    def _on_model(self, msg: ModelSwapped) -> list[Verdict]:
        """Later scores come from the new model: boards holding old-model scores are straddling."""
        self._straddling = self._agg.open_board_ids()
        self._agg.set_model(msg.model_sha256, msg.calibration)
        return []

    def _on_calibration(self, msg: CalibrationChanged) -> list[Verdict]:
        self._agg.set_calibration(msg.calibration)
        return []

    def _emit(self, v: Verdict) -> None:
        if v.board_id in self._straddling:
            self._straddling.discard(v.board_id)
            if v.n_tiles:
                v.verdict = "reject"
                v.reasons.append("model changed while the board was being scored (fail safe)")
        t_last = self._t_last.pop(v.board_id, None)
        image = self._images.pop(v.board_id, None)
        st = self.stats
        st.boards += 1
        st.rejects += v.verdict == "reject"
        st.incomplete += v.incomplete
        st.decided_to = max(st.decided_to, v.end_line)
        self.on_verdict(v)
        obs = self.observer
        if obs is not None:
            obs.verdict(v, t_last)
            if image is not None:
                obs.board_image(v, image.image, image.scale)
