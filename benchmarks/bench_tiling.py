"""Tiling-stage throughput on one core: an in-memory 4096-px mono line-scan source at 80 kHz,
frames of 64 lines, boards of 2000-6000 lines with 200-line gaps, stride 128 (50 % overlap).
Prints tiles/s and lines/s sustained by stitch + segment + cut + copy into a ring, the rate the
camera would demand, their ratio, and lines lost (must be 0).

    python benchmarks/bench_tiling.py [--seconds 10] [--width 4096] [--stride 128]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from edge_inspect.acquisition.base import Strip
from edge_inspect.config import SegmenterConfig, TilingConfig
from edge_inspect.tiling.events import TilesCut
from edge_inspect.tiling.tiler import Tiler


def make_band(width: int, lines: int, seed: int = 0) -> np.ndarray:
    """Bright textured boards on a dark belt, as a camera would see them."""
    rng = np.random.default_rng(seed)
    band = rng.integers(5, 30, (lines, width, 1), dtype=np.uint8)
    y = 200
    while y < lines:
        n = int(rng.integers(2000, 6000))
        x0, x1 = int(rng.integers(0, width // 10)), int(width - rng.integers(0, width // 10))
        band[y:y + n, x0:x1] = rng.integers(100, 220, (min(n, lines - y), x1 - x0, 1), dtype=np.uint8)
        y += n + 200
    return band


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--width", type=int, default=4096)
    ap.add_argument("--stride", type=int, default=128)
    ap.add_argument("--lines-per-frame", type=int, default=64)
    ap.add_argument("--line-rate", type=float, default=80_000.0)
    args = ap.parse_args()
    cfg = TilingConfig(tile_size=256, stride=args.stride,
                       segmenter=SegmenterConfig(min_gap_lines=32, min_board_lines=256, max_board_lines=40000))
    band = make_band(args.width, 200_000)
    lpf = args.lines_per_frame
    tiler = Tiler(cfg, args.width, 1)
    ring = np.empty((1024, 256, 256, 1), np.uint8)
    pos = 0
    tiles = lines = 0
    line = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < args.seconds:
        start = line % (len(band) - lpf)
        strip = Strip(band[start:start + lpf], line, 0, line // lpf)
        for ev in tiler.push(strip):
            if isinstance(ev, TilesCut):
                n = len(ev.metas)
                if pos + n > len(ring):
                    pos = 0
                ev.write_into(ring[pos:pos + n])
                pos += n
                tiles += n
        line += lpf
        lines += lpf
    dt = time.perf_counter() - t0
    cols = -(-(args.width - 256) // args.stride) + 1
    demand = args.line_rate / args.stride * cols
    print(f"tiling {args.width} px mono, frames of {lpf} lines, stride {args.stride}, one thread")
    print(f"sustained: {tiles / dt:,.0f} tiles/s, {lines / dt:,.0f} lines/s over {dt:.1f} s")
    print(f"camera at {args.line_rate:,.0f} lines/s demands {demand:,.0f} tiles/s (on boards); "
          f"ratio sustained/demand {tiles / dt / demand:.2f}; line-rate ratio {lines / dt / args.line_rate:.2f}")
    print(f"lines lost: {tiler.lines_lost}")


if __name__ == "__main__":
    main()
