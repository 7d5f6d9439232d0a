"""Prometheus metrics of the service. Counts the pipeline already keeps (frames, tiles, boards,
drops, queue depths) are read at scrape time by a collector, so the hot path pays nothing for
them; only the two latency histograms are observed as events happen."""

from __future__ import annotations

from typing import Any, Iterable

import structlog
from prometheus_client import (
    CollectorRegistry,
    Histogram,
    Info,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

log = structlog.get_logger(__name__)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


_RECORD_DOCS = {"record_write_failures": "failed writes to a record store (full disk, I/O error)",
                "records_pending": "records waiting for a failing store",
                "records_dropped": "records a failing store never got (its backlog was full)"}
_SINK_GAUGES = {"queued", "unacked"}  # levels; every other sink counter only grows


def _sink_families(sinks: Iterable[Any]) -> Iterable:
    """One family per counter name with a `sink` label per sink: Prometheus rejects a metric
    name whose HELP/TYPE comes twice, which one family per sink would write."""
    families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
    for sink in sinks:
        for key, value in sink.counters().items():
            fam = families.get(key)
            if fam is None:
                kind = GaugeMetricFamily if key in _SINK_GAUGES else CounterMetricFamily
                fam = families[key] = kind(f"edge_inspect_sink_{key}", f"reject-signal sink {key}", labels=["sink"])
            fam.add_metric([sink.name], float(value))
    return families.values()


class _PipelineCollector:
    """Reads the pipeline's plain counters when Prometheus scrapes."""

    def __init__(self, service: Any) -> None:
        self._svc = service

    def describe(self) -> Iterable:
        return []

    def collect(self) -> Iterable:
        pipe = self._svc.pipeline
        if pipe is None:
            return
        st = pipe.stats
        cam = self._svc.source.counters
        counters = {
            "frames": ("frames received from the source", st.frames),
            "lost_frames": ("frames the camera/producer lost (frame-id gaps)", cam.lost_frames if cam else 0),
            "lines_lost": ("camera lines missing from the line counter", st.lines_lost),
            "dropped_strips": ("strips dropped because the strip queue was full", st.dropped_strips),
            "camera_timeouts": ("fetch timeouts (no frame within fetch_timeout_s)", cam.timeouts if cam else 0),
            "camera_reconnects": ("camera reconnects", cam.reconnects if cam else 0),
            "tiles": ("tiles cut and sent to inference (rate() gives tiles/s)", st.tiles),
            "batches": ("batches scored", st.batches),
            "boards": ("board verdicts", st.boards),
            "rejects": ("boards rejected", st.rejects),
            "incomplete": ("boards rejected as incomplete", st.incomplete),
            "fragments": ("pieces shorter than a board, recorded and rejected as fragments", pipe.fragments),
        }
        for name, (doc, value) in counters.items():
            c = CounterMetricFamily(f"edge_inspect_{name}", doc)
            c.add_metric([], float(value))
            yield c
        yield from _sink_families(self._svc.sinks)
        g = GaugeMetricFamily("edge_inspect_sink_alive", "1 while a reject-signal sink can deliver, 0 once its "
                              "thread has died (the watchdog then withholds its pings)", labels=["sink"])
        for sink in self._svc.sinks:
            g.add_metric([sink.name], 1.0 if sink.alive() else 0.0)
        yield g
        keeper = self._svc.records
        if keeper is not None:
            for key, value in keeper.counters().items():
                kind = GaugeMetricFamily if key == "records_pending" else CounterMetricFamily
                fam = kind(f"edge_inspect_{key}", _RECORD_DOCS[key])
                fam.add_metric([], float(value))
                yield fam
        g = GaugeMetricFamily("edge_inspect_stage_stalled",
                              "1 while a stage has work waiting and has made no progress for service.stall_after_s",
                              labels=["stage"])
        for stage in pipe.progress:
            g.add_metric([stage], 1.0 if stage in self._svc.stalled else 0.0)
        yield g
        c = CounterMetricFamily("edge_inspect_stalls", "times a stage was found stalled (the watchdog stops pinging)")
        c.add_metric([], float(self._svc.stalls))
        yield c
        g = GaugeMetricFamily("edge_inspect_foreground_level", "grey level above which a pixel is board "
                              "(follows the conveyor when segmenter.conveyor_margin is set)")
        g.add_metric([], float(pipe.foreground_level))
        yield g
        g = GaugeMetricFamily("edge_inspect_queue_depth", "items waiting in front of a stage", labels=["queue"])
        for q, depth in pipe.queue_depths.items():
            g.add_metric([q], float(depth))
        yield g
        drift = self._svc.drift
        if drift is not None:
            g = GaugeMetricFamily("edge_inspect_drift_ratio",
                                  "rolling quantile of accepted boards' scores / the calibration's")
            g.add_metric([], float(drift.ratio) if drift.ratio is not None else float("nan"))
            yield g
            g = GaugeMetricFamily("edge_inspect_drift_distance",
                                  "KS distance of accepted boards' scores from the calibration's good boards")
            g.add_metric([], float(drift.distance) if drift.distance is not None else float("nan"))
            yield g
            g = GaugeMetricFamily("edge_inspect_drift_alarm", "1 while the good-board scores are out of bounds")
            g.add_metric([], 1.0 if drift.alarm else 0.0)
            yield g


class Metrics:
    """Registry, histograms, info and the HTTP server (own registry: no process-global state)."""

    def __init__(self, service: Any) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.batch_latency = Histogram("edge_inspect_batch_seconds", "time to score one batch",
                                       buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.verdict_latency = Histogram("edge_inspect_verdict_latency_seconds",
                                         "from a board's last camera line to its verdict",
                                         buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.info = Info("edge_inspect", "backend, model and calibration in use", registry=self.registry)
        self.registry.register(_PipelineCollector(service))
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes etc., for leak alarms
        self._server: Any = None
        self.port: int | None = None

    def set_info(self, backend: str, model: str, calibration: str, source: str) -> None:
        self.info.info({"backend": backend, "model": model, "calibration": calibration, "source": source})

    def serve(self, host: str, port: int) -> bool:
        """Start the HTTP endpoint; a port in use is logged, not fatal (inspection matters more)."""
        try:
            result = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            log.error("metrics_unavailable", host=host, port=port, error=str(exc))
            return False
        self._server = result[0] if isinstance(result, tuple) else result
        self.port = getattr(self._server, "server_port", port)
        log.info("metrics_listening", host=host, port=self.port)
        return True

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
