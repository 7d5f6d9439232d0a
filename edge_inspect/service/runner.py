"""`edge-inspect run`: the pipeline as a systemd service.

Start-up order is what makes a bad configuration harmless: config, calibration and model, the
source, the sinks (checked against the camera) and the pipeline are all validated before any
file is written, any port is opened or READY=1 is sent; a ConfigError on the way exits 78 with
nothing half started. Then records, heatmaps and metrics open, the stage threads start (the
backend is loaded and the source is open, so the first frame can be scored) and READY=1 goes
out. The main thread then only supervises: watchdog pings while no stage is stalled
(service/watchdog.py), STATUS= lines, SIGHUP reloads, SIGTERM/SIGINT drains. The signal
handlers go in before anything slow (model load, camera open, warm-up: seconds on a loaded
machine), so a stop during start-up is a logged, clean exit 0, never death by the default
handler."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import structlog

from edge_inspect.config import Config
from edge_inspect.decision.calibration_file import (
    Calibration,
    check_against_model,
    load_calibration,
)
from edge_inspect.decision.verdict import Verdict
from edge_inspect.errors import EdgeInspectError
from edge_inspect.inference.base import warm_up
from edge_inspect.records.keeper import RecordKeeper
from edge_inspect.service.heap import HeapTrimmer
from edge_inspect.service.notify import Notifier
from edge_inspect.service.watchdog import StallMonitor

if TYPE_CHECKING:  # imported where used: start-up validates before these modules load
    from edge_inspect.acquisition.base import FrameSource
    from edge_inspect.inference.base import Backend
    from edge_inspect.monitoring.drift import DriftMonitor
    from edge_inspect.monitoring.heatmaps import HeatmapWriter
    from edge_inspect.outputs.base import Sink
    from edge_inspect.pipeline import Pipeline
    from edge_inspect.records.keeper import RecordStore
    from edge_inspect.service.metrics import Metrics

log = structlog.get_logger(__name__)


class ServiceSignals:
    """SIGTERM/SIGINT set `stop`, SIGHUP sets `reload`; the main thread acts on them. `install`
    may be called again (harvesters puts in its own SIGINT handler when a camera opens);
    `restore` puts back what was there first."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.reload = threading.Event()
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        for sig, event in ((signal.SIGTERM, self.stop), (signal.SIGINT, self.stop), (signal.SIGHUP, self.reload)):
            previous = signal.signal(sig, lambda *_, event=event: event.set())
            self._previous.setdefault(sig, previous)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def _file_stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class Service:
    """Holds what `run` opened; the decision thread calls `on_verdict` and the observer hooks."""

    def __init__(self, cfg: Config, backend: Backend, cal: Calibration, max_seconds: float | None = None,
                 environ: dict[str, str] | None = None, signals: ServiceSignals | None = None) -> None:
        self.cfg = cfg
        self.backend = backend
        self.cal = cal
        self.max_seconds = max_seconds
        self.notifier = Notifier(environ)
        self.source: FrameSource | None = None
        self.pipeline: Pipeline | None = None
        self.sinks: list[Sink] = []
        self.records: RecordKeeper | None = None
        self.heatmaps: HeatmapWriter | None = None
        self.metrics: Metrics | None = None
        self.drift: DriftMonitor | None = None
        # the last 100,000 verdict latencies for the summary at stop: allocated once, never grows
        self._latencies = np.full(100_000, np.nan)
        self._n_latencies = 0
        #: stages stalled at the last check, and how many times a stall began (metrics, alerts)
        self.stalled: list[str] = []
        self.stalls = 0
        self.signals = signals or ServiceSignals()
        self._stop = self.signals.stop
        self._reload = self.signals.reload
        self._model_stamp = _file_stamp(Path(cfg.inference.backend.model))

    # -- start-up -----------------------------------------------------------------------------
    def open(self) -> None:
        """Validate everything that can be wrong before writing or announcing anything."""
        from edge_inspect.acquisition.factory import open_source
        from edge_inspect.outputs.factory import build_sinks
        from edge_inspect.pipeline import Pipeline

        cfg = self.cfg
        self.source = open_source(cfg)
        self.signals.install()  # again: harvesters sets its own SIGINT handler when a camera opens
        self.sinks = build_sinks(cfg, self.source)
        width = self.source.width
        scale = max(1, -(-width // cfg.heatmaps.max_width)) if cfg.heatmaps.enabled else 0
        self.pipeline = Pipeline(cfg, self.source, self.backend, self.cal, self.on_verdict, width,
                                 self.source.channels, observer=self, image_scale=scale)
        self._warm(self.backend)
        if self._stop.is_set():
            return  # stopped during start-up: nothing is written (run_service says so)
        if cfg.drift.enabled:
            from edge_inspect.monitoring.drift import DriftMonitor

            self.drift = DriftMonitor(cfg.drift, self.cal)
        # -- from here on things are written --
        rd, r = cfg.output.records_dir, cfg.records
        stores: list[RecordStore] = []
        if r.sqlite:  # first: a database that is not a records store is refused before any file is written
            from edge_inspect.records.sqlite import SqliteRecords

            stores.append(SqliteRecords(r.sqlite_path or rd / "boards.sqlite", r.retention_days,
                                        r.max_rows, r.prune_interval_s))
        if r.jsonl:
            from edge_inspect.records.jsonl import JsonlRecords

            try:
                stores.insert(0, JsonlRecords(rd / "boards.jsonl", r.jsonl_max_mb and int(r.jsonl_max_mb * 2**20),
                                              r.retention_days))
            except BaseException:
                for store in stores:
                    store.close()
                raise
        self.records = RecordKeeper(stores, r.backlog, r.retry_s)
        if cfg.heatmaps.enabled:
            from edge_inspect.monitoring.heatmaps import HeatmapWriter

            h = cfg.heatmaps
            self.heatmaps = HeatmapWriter(h.dir or rd / "heatmaps", h.max_bytes, cfg.tiling.tile_size, h.queue)
        if cfg.metrics.enabled:
            from edge_inspect.service.metrics import Metrics

            self.metrics = Metrics(self)
            self._set_info()
            self.metrics.serve(cfg.metrics.host, cfg.metrics.port)

    def _warm(self, backend: Backend) -> None:
        """Every batch size once, before the backend scores boards (inference/base.py)."""
        b = self.cfg.inference.batch_size
        log.info("backend_warmed", backend=backend.name, model=backend.model_sha256[:12], batch_sizes=f"1..{b}",
                 seconds=round(warm_up(backend, b, self._stop), 2))

    def _set_info(self) -> None:
        if self.metrics is not None:
            self.metrics.set_info(self.backend.name, self.backend.model_sha256[:12], self.cal.version,
                                  self.source.name)

    # -- decision-thread hooks ----------------------------------------------------------------
    def on_verdict(self, v: Verdict) -> None:
        self.records.write(v)  # never raises for a failing store: the reject signal must go out
        for s in self.sinks:
            s.send(v)
        if self.drift is not None:
            self.drift.observe(v)

    def batch_scored(self, n_tiles: int, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.batch_latency.observe(seconds)

    def verdict(self, v: Verdict, t_last_line_ns: int | None) -> None:
        if t_last_line_ns is None or t_last_line_ns <= 0:
            return
        dt = max(0.0, (v.t_verdict_ns - t_last_line_ns) / 1e9)
        self._latencies[self._n_latencies % len(self._latencies)] = dt
        self._n_latencies += 1
        if self.metrics is not None:
            self.metrics.verdict_latency.observe(dt)

    def board_image(self, v: Verdict, image: np.ndarray, scale: int) -> None:
        if self.heatmaps is not None and v.verdict == "reject":
            self.heatmaps.submit(v, image, scale, self.cal.tile_threshold, self.source.name)

    # -- supervision --------------------------------------------------------------------------
    def run(self) -> int:
        pipe = self.pipeline
        self.signals.install()
        for s in self.sinks:
            s.start()
        pipe.start()
        t_start = time.monotonic()
        self.notifier.ready(self._status_text(0.0))
        log.info("started", source=self.source.name, backend=self.backend.name,
                 model=self.backend.model_sha256[:12], calibration=self.cal.version,
                 records=[str(r.path) for r in self.records.stores],
                 notify=self.notifier.enabled, watchdog_s=self.notifier.watchdog_s)
        monitor = StallMonitor(pipe, self.source, self.cfg.service.stall_after_s, self.sinks)
        heap = HeapTrimmer(self.cfg.service.heap_trim_interval_s)
        wd_every = self.notifier.watchdog_s / 2 if self.notifier.watchdog_s else None
        check_every = wd_every or 1.0  # stalls are looked for (and shown in metrics) without a watchdog too
        st_every = self.cfg.service.status_interval_s
        next_wd = time.monotonic()
        next_status = time.monotonic() + st_every
        last_boards, last_t = 0, time.monotonic()
        stopping = False
        try:
            while pipe.running():
                now = time.monotonic()
                if not stopping and (self._stop.is_set() or (self.max_seconds and now - t_start >= self.max_seconds)):
                    stopping = True
                    self.notifier.stopping()
                    log.info("stopping", why="signal" if self._stop.is_set() else "max_seconds")
                    pipe.stop()
                if self._reload.is_set() and not stopping:
                    self._reload.clear()
                    self.reload()
                if now >= next_wd:
                    stalled = monitor.stalled()
                    if not stalled:
                        if wd_every is not None:
                            self.notifier.watchdog()
                    elif stalled != self.stalled:
                        self.stalls += 1
                        log.error("pipeline_stalled", stages=stalled, backlog=pipe.backlog(),
                                  action="watchdog pings withheld: systemd will restart the service"
                                  if wd_every is not None else "no systemd watchdog: logged only")
                    self.stalled = stalled
                    next_wd = now + check_every
                if now >= next_status:
                    boards = pipe.stats.boards
                    rate = (boards - last_boards) / max(1e-9, now - last_t)
                    last_boards, last_t = boards, now
                    self.notifier.status(self._status_text(rate))
                    next_status = now + st_every
                heap.maybe_trim(now)
                self._stop.wait(0.05)
        finally:
            st = pipe.join()
            self.signals.restore()
            self.close()
        lat = self._latencies[:self._n_latencies]
        counters = self.source.counters
        log.info("stopped", boards=st.boards, rejects=st.rejects, incomplete=st.incomplete, tiles=st.tiles,
                 tiles_per_s=round(st.tiles_per_s, 1), dropped_strips=st.dropped_strips, lines_lost=st.lines_lost,
                 error=st.error,
                 verdict_latency_p50_ms=round(float(np.percentile(lat, 50)) * 1e3, 2) if lat.size else None,
                 verdict_latency_p99_ms=round(float(np.percentile(lat, 99)) * 1e3, 2) if lat.size else None,
                 sinks={s.name: s.counters() for s in self.sinks}, **self.records.counters(),
                 heap_trims=heap.trims, heap_trim_ms=round(heap.seconds * 1e3, 1),
                 **(counters.as_dict() if counters else {}))
        return 1 if st.error else 0

    def _status_text(self, boards_per_s: float) -> str:
        st = self.pipeline.stats
        text = (f"{st.boards} boards ({boards_per_s:.2f}/s), {st.rejects} rejects, {st.incomplete} incomplete, "
                f"{st.frames} frames, {st.dropped_strips} dropped strips, calibration {self.cal.version}")
        if self.records is not None and self.records.pending:
            text += f", RECORDS FAILING ({self.records.pending} waiting)"
        dead = [s.name for s in self.sinks if not s.alive()]
        if dead:
            text += f", SINK DEAD ({', '.join(dead)})"
        if self.drift is not None and self.drift.alarm:
            d = self.drift
            text += f", DRIFT ratio {d.ratio:.3f}" + (f" distance {d.distance:.2f}" if d.distance is not None else "")
        return text

    def reload(self) -> None:
        """SIGHUP: re-read the calibration; when the model file changed, load the new model and
        let the inference stage swap it in between batches. The pipeline keeps running all the
        while (no frame waits); a reload that fails keeps the old state and says why."""
        from edge_inspect.inference.registry import create_configured_backend

        self.notifier.reloading()
        cfg = self.cfg
        path = cfg.decision.calibration
        new_backend = None
        try:
            cal = load_calibration(path)
            stamp = _file_stamp(Path(cfg.inference.backend.model))
            if stamp != self._model_stamp:
                new_backend = create_configured_backend(cfg.inference.backend)
                if new_backend.model_sha256 == self.backend.model_sha256:
                    new_backend.close()
                    new_backend = None
            target = new_backend or self.backend
            check_against_model(cal, path, target.model_sha256, target.score_names)
            if new_backend is not None:
                self._warm(new_backend)
                self.pipeline.set_backend(new_backend, cal)
                self.backend = new_backend
            else:
                self.pipeline.set_calibration(cal)
            self._model_stamp = stamp
        except EdgeInspectError as exc:
            if new_backend is not None:
                new_backend.close()
            log.error("reload_failed", error=str(exc), kept_calibration=self.cal.version,
                      kept_model=self.backend.model_sha256[:12])
            self.notifier.ready_again(f"reload failed, kept {self.cal.version}: {exc}"[:400])
            return
        old = self.cal.version
        self.cal = cal
        if self.drift is not None:
            self.drift.set_calibration(cal)
        self._set_info()
        log.info("reloaded", calibration=cal.version, previous_calibration=old,
                 model=self.backend.model_sha256[:12], model_changed=new_backend is not None)
        self.notifier.ready_again(f"reloaded calibration {cal.version}")

    def _release(self) -> None:
        """Close sinks (they deliver what they can), record files, heatmaps, metrics, backend."""
        for s in self.sinks:
            try:
                s.close()
            except Exception as exc:
                log.error("sink_close_failed", sink=s.name, error=str(exc))
        if self.records is not None:
            self.records.close()
        if self.heatmaps is not None:
            self.heatmaps.close()
        if self.metrics is not None:
            self.metrics.close()
        self.backend.close()

    def close(self) -> None:
        """After the pipeline has drained."""
        if self.pipeline is not None:
            for b in self.pipeline.retired_backends:
                b.close()
        self._release()
        self.notifier.close()

    def abandon(self) -> None:
        """Start-up failed: release what was opened (nothing was written yet)."""
        if self.source is not None:
            self.source.close()
        self._release()


def run_service(cfg: Config, max_seconds: float | None,
                model_and_calibration: Callable[[Config], tuple[Backend, Calibration]]) -> int:
    signals = ServiceSignals()
    signals.install()
    t0 = time.monotonic()
    log.info("starting", pid=os.getpid(), source=cfg.source.type, model=str(cfg.inference.backend.model))
    try:
        backend, cal = model_and_calibration(cfg)
        svc = Service(cfg, backend, cal, max_seconds, signals=signals)
        try:
            if not signals.stop.is_set():
                svc.open()
        except BaseException:
            svc.abandon()
            raise
        if signals.stop.is_set():
            svc.notifier.stopping()
            log.info("stopped_during_startup", why="signal", seconds=round(time.monotonic() - t0, 2),
                     note="stopped before READY: nothing was inspected")
            svc.abandon()
            return 0
        return svc.run()
    finally:
        signals.restore()
