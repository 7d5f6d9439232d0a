"""Soak of the whole service: `edge-inspect run` as a subprocess on a looping replay, its RSS
sampled from /proc, then every record checked. Prints RSS growth (lowest RSS in the second
minute -> lowest in the last: the first minute is start-up, with the model loading, the
warm-up and the first heap trim at 60 s; the lowest, because a replay pass decodes the whole
scan and spikes in between), records lost, and verdict latency p50/p99 after a board's last
line.
Issue #6's targets: RSS growth < 2 %, 0 lost records. The lowest RSS of every 5 minutes is
printed too, to tell a step from a slope.

    python benchmarks/soak_service.py --minutes 30 --workdir /tmp/soak [--heap-trim-s 60]
        [--no-sqlite] [--env MALLOC_ARENA_MAX=2] [--smaps-every-s 60]

With `--smaps-every-s`, the resident size of every mapping is written to `smaps.jsonl` in the
work folder, so that `benchmarks/smaps_diff.py` can say which mapping grew between two lows.

The scan is 30 synthetic boards (seed 555) made once in the work folder; the service replays
it at `--line-rate` lines/s in real time with JSONL and SQLite records and metrics on.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def smaps_rss(pid: int) -> dict[str, int]:
    """Resident kB of each mapping, keyed 'start name' ('[anon]' for anonymous ones): the start,
    because a glibc arena grows in place by moving its end."""
    out: dict[str, int] = {}
    key = ""
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                head = line.split(maxsplit=5)
                if "-" in head[0] and not head[0].endswith(":"):
                    key = f"{head[0].split('-')[0]} {head[5].strip() if len(head) > 5 else '[anon]'}"
                elif head[0] == "Rss:" and int(head[1]):
                    out[key] = int(head[1])
    except OSError:
        return {}
    return out


def viky_cti() -> Path:
    import genicam  # the camera extra

    return Path(genicam.__file__).parent / "viky.cti"


def write_config(work: Path, scan: Path | None, line_rate: int, heap_trim_s: float, speed: str,
                 sqlite: bool) -> Path:
    """A looping replay of `scan`, or (scan None) viky's simulated camera: RGBa8, 800 px wide,
    100-line frames, cut into 2048-line boards, the production acquisition path."""
    cfg = work / "soak.yaml"
    if scan is None:
        source = (f"camera: {{lines_per_frame: 100, line_rate_hz: {line_rate}}}\n"
                  f"source: {{cti: [{viky_cti()}], pixel_format: RGBa8, width: 800, line_rate_hz: {line_rate}}}\n"
                  "tiling: {segmenter: {max_board_lines: 2048}}\n")
    else:
        source = (f"camera: {{lines_per_frame: 64, line_rate_hz: {line_rate}}}\n"
                  f"source: {{type: replay, path: {scan}, loop: true, speed: {speed}}}\n")
    cfg.write_text(source + f"""\
inference: {{backend: {{type: onnxruntime, model: {ROOT / 'engines/demo.onnx'}, threads: 1}}}}
decision: {{calibration: {ROOT / 'calibration/current.yaml'}}}
output: {{records_dir: {work / 'records'}}}
records: {{jsonl: true, sqlite: {str(sqlite).lower()}}}
metrics: {{enabled: true, port: 0}}
service: {{heap_trim_interval_s: {heap_trim_s}}}
logging: {{format: json}}
""")
    return cfg


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--line-rate", type=int, default=5000)
    ap.add_argument("--heap-trim-s", type=float, default=60.0, help="service.heap_trim_interval_s (0 = off)")
    ap.add_argument("--speed", choices=["realtime", "max"], default="realtime",
                    help="max: as fast as the machine scores, for many boards in little time")
    ap.add_argument("--sample-s", type=float, default=5.0)
    ap.add_argument("--no-sqlite", action="store_true", help="JSONL records only")
    ap.add_argument("--source", choices=["replay", "camera"], default="replay",
                    help="camera: viky's simulated GenICam camera through harvesters (no scan decoded per pass)")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="extra environment for the service (MALLOC_ARENA_MAX=2, say)")
    ap.add_argument("--smaps-every-s", type=float, default=0.0,
                    help="write every mapping's RSS to smaps.jsonl this often (0 = never)")
    a = ap.parse_args()
    work = a.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    exe = [sys.executable, "-m", "edge_inspect.cli"]
    scan = work / "scans" / "scan.png" if a.source == "replay" else None
    if scan is not None and not scan.exists():
        subprocess.run([*exe, "synth", "--out", str(work / "scans"), "--boards", "30", "--seed", "555"],
                       check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    for old in (work / "records").glob("boards.*"):
        old.unlink()
    cfg = write_config(work, scan, a.line_rate, a.heap_trim_s, a.speed, not a.no_sqlite)
    seconds = a.minutes * 60
    env = dict(os.environ, **dict(kv.split("=", 1) for kv in a.env))
    with open(work / "stderr.log", "w") as err:
        proc = subprocess.Popen([*exe, "run", "--config", str(cfg), "--max-seconds", str(seconds)],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, env=env)
        t0 = time.monotonic()
        samples: list[tuple[float, int]] = []
        next_smaps = a.smaps_every_s
        with open(work / "rss.log", "w") as log, open(work / "smaps.jsonl", "w") as maps:
            while proc.poll() is None:
                kb = rss_kb(proc.pid)
                t = time.monotonic() - t0
                if kb is not None:
                    samples.append((t, kb))
                    log.write(f"{t:.1f} {kb}\n")
                    log.flush()
                if a.smaps_every_s and t >= next_smaps:
                    next_smaps += a.smaps_every_s
                    maps.write(json.dumps({"t": round(t, 1), "rss_kb": kb, "maps": smaps_rss(proc.pid)}) + "\n")
                    maps.flush()
                time.sleep(a.sample_s)
    events = [json.loads(x) for x in (work / "stderr.log").read_text().splitlines() if x.startswith("{")]
    stopped = next((e for e in reversed(events) if e.get("event") == "stopped"), {})
    ids = [json.loads(x)["board_id"] for x in (work / "records" / "boards.jsonl").read_text().splitlines()]
    sql_ids = ids
    if not a.no_sqlite:
        with sqlite3.connect(work / "records" / "boards.sqlite") as db:
            sql_ids = [r[0] for r in db.execute("SELECT board_id FROM boards ORDER BY board_id")]
    boards = stopped.get("boards", 0)
    expected = list(range(1, boards + 1))
    lost = len(set(expected) - set(ids)) + len(set(expected) - set(sql_ids))
    first = min(kb for t, kb in samples if 60 <= t < 120)
    last = min(kb for t, kb in samples if seconds - 60 <= t < seconds)  # not while it stops
    growth = (last - first) / first * 100
    print(f"exit code {proc.returncode}, {seconds / 60:.0f} min, source {a.source} at speed {a.speed}, heap trim every "
          f"{a.heap_trim_s:g} s, SQLite {'off' if a.no_sqlite else 'on'}, env {' '.join(a.env) or '-'}")
    print(f"boards {boards}, JSONL records {len(ids)}, SQLite rows {len(sql_ids)}, lost {lost}")
    print(f"dropped strips {stopped.get('dropped_strips')}, lines lost {stopped.get('lines_lost')}, "
          f"error {stopped.get('error')}, heap trims {stopped.get('heap_trims')} "
          f"({stopped.get('heap_trim_ms')} ms in all)")
    print(f"verdict latency p50 {stopped.get('verdict_latency_p50_ms')} ms, p99 {stopped.get('verdict_latency_p99_ms')} ms")
    print(f"RSS lowest in minute 2 {first / 1024:.1f} MiB -> lowest in the last minute {last / 1024:.1f} MiB: "
          f"{growth:+.2f} % (target < 2 %), peak {max(kb for _, kb in samples) / 1024:.1f} MiB")
    settled = [kb for t, kb in samples if 300 <= t < 600]
    if settled and seconds >= 900:  # a heap may reach its peak size in the first minutes
        print(f"RSS lowest in minutes 5-10 {min(settled) / 1024:.1f} MiB -> last minute: "
              f"{(last - min(settled)) / min(settled) * 100:+.2f} % (for reading only; PASS uses minute 2)")
    lows = {}
    for t, kb in samples:
        if t < 5 or t >= seconds:
            continue
        lows[int(t // 300)] = min(kb, lows.get(int(t // 300), kb))
    print("RSS lowest per 5 min (MiB):", " ".join(f"{lows[k] / 1024:.1f}" for k in sorted(lows)))
    ok = proc.returncode == 0 and boards > 0 and lost == 0 and ids == sql_ids == expected and growth < 2.0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
