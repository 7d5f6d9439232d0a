"""`edge-inspect bench`: the bare backend's tiles/s against end-to-end replay of the same model
and batch size, measured in one run, with busy time per stage."""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from edge_inspect.config import Config
from edge_inspect.decision.calibration_file import (
    Calibration,
    check_against_model,
    load_calibration,
)
from edge_inspect.errors import ConfigError
from edge_inspect.inference.registry import create_configured_backend


def _bench_calibration(cfg: Config, backend) -> Calibration:
    """The configured calibration when it fits the model; verdicts do not change the timing."""
    try:
        cal = load_calibration(cfg.decision.calibration)
        check_against_model(cal, cfg.decision.calibration, backend.model_sha256, backend.score_names)
        return cal
    except ConfigError:
        return Calibration(version="bench", created="", score=backend.score_names[0], tile_threshold=float("inf"))


def _sample_tiles(cfg: Config, scan: Path, n: int) -> np.ndarray:
    """Real tiles from the scan, cut by the production tiler, so both runs score the same data."""
    from edge_inspect.tiling.scan_tiles import iter_scan_tiles

    got: list[np.ndarray] = []
    for _, block in iter_scan_tiles(scan, cfg):
        got.append(block)
        if sum(map(len, got)) >= n:
            break
    if not got:
        raise ConfigError(f"{scan}: no tiles found to benchmark with (no boards?)")
    tiles = np.concatenate(got)
    return np.ascontiguousarray(tiles[np.arange(n) % len(tiles)])


def _bare_rate(backend, batch: np.ndarray, seconds: float) -> tuple[float, list[float]]:
    n, lat = 0, []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        t = time.perf_counter()
        backend.score(batch)
        lat.append(time.perf_counter() - t)
        n += len(batch)
    return n / (time.perf_counter() - t0), lat


def run_bench(cfg: Config, scan: Path | None, seconds: float, rounds: int = 3) -> Iterator[str]:
    """Bare and end-to-end runs alternate for `rounds` rounds, so a load that comes and goes on
    the machine touches both alike; medians are reported."""
    from edge_inspect.acquisition.factory import open_scan
    from edge_inspect.pipeline import Pipeline

    with tempfile.TemporaryDirectory() as tmp:
        if scan is None:
            from edge_inspect.acquisition.synthetic import (
                SynthSpec,
                write_synthetic_scans,
            )

            write_synthetic_scans(Path(tmp), SynthSpec(boards=30, seed=123))
            scan = Path(tmp) / "scan.png"
        backend = create_configured_backend(cfg.inference.backend)
        cal = _bench_calibration(cfg, backend)
        b = cfg.inference.batch_size
        batch = _sample_tiles(cfg, scan, b)
        yield (f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, "
               f"{platform.system()} {platform.release()}, python {platform.python_version()}")
        yield f"backend: {backend.name}, model {backend.model_sha256[:12]}, batch {b}, score {cal.score}, scan {scan}"
        backend.score(batch)  # warm-up
        bare, e2e, lat, runs = [], [], [], []
        for r in range(rounds):
            rate, l = _bare_rate(backend, batch, seconds / rounds)
            bare.append(rate)
            lat += l
            source = open_scan(scan, cfg, "max")
            st = Pipeline(cfg, source, backend, cal, lambda v: None, source.width, source.channels).run()
            e2e.append(st.tiles_per_s)
            runs.append(st)
            yield f"round {r + 1}: bare {rate:8.1f} tiles/s   end-to-end {st.tiles_per_s:8.1f} tiles/s   ratio {st.tiles_per_s / rate:.3f}"
        mb, me = float(np.median(bare)), float(np.median(e2e))
        st = runs[int(np.argsort(e2e)[len(e2e) // 2])]
        yield f"bare backend:   {mb:9.1f} tiles/s  (median; batch latency p50 {np.median(lat) * 1e3:.1f} ms, p99 {np.percentile(lat, 99) * 1e3:.1f} ms)"
        yield f"end-to-end:     {me:9.1f} tiles/s  (median; {st.tiles} tiles, {st.boards} boards, {st.wall_s:.2f} s wall, {st.dropped_strips} drops)"
        yield f"ratio end-to-end / bare: {me / mb:.3f}"
        yield "stage busy time of the median end-to-end run (s, and ms per tile; waiting excluded):"
        for name in ("acquisition", "tiling", "inference", "decision"):
            s = getattr(st.stage_s, name)
            yield f"  {name:12s} {s:8.3f} s  {1e3 * s / max(st.tiles, 1):7.3f} ms/tile"
        backend.close()
