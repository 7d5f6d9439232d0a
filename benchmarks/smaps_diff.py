"""Which mappings of the service grew during a soak: compares two snapshots of the
`smaps.jsonl` that `soak_service.py --smaps-every-s` writes, each the lowest-RSS snapshot of a
5-minute window (a replay pass decodes the whole scan, so RSS spikes in between and only the
lows compare like with like).

    python benchmarks/smaps_diff.py /tmp/soak/smaps.jsonl --from-min 5 --to-min 120
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def lowest(snaps: list[dict], start_min: float, end_min: float) -> dict:
    window = [s for s in snaps if start_min * 60 <= s["t"] < end_min * 60 and s["rss_kb"]]
    if not window:
        raise SystemExit(f"no snapshot between minute {start_min:g} and {end_min:g}")
    return min(window, key=lambda s: s["rss_kb"])


def kind(key: str) -> str:
    """'[heap]', '[anon]', or the file name of a mapped library or file."""
    name = key.split(" ", 1)[1]
    return name if name.startswith("[") else Path(name).name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("smaps", type=Path)
    ap.add_argument("--from-min", type=float, default=5.0)
    ap.add_argument("--to-min", type=float, required=True)
    ap.add_argument("--top", type=int, default=8)
    a = ap.parse_args()
    snaps = [json.loads(x) for x in a.smaps.read_text().splitlines() if x.strip()]
    s0 = lowest(snaps, a.from_min, a.from_min + 5)
    s1 = lowest(snaps, a.to_min - 5, a.to_min)
    print(f"snapshot at {s0['t'] / 60:.1f} min, RSS {s0['rss_kb'] / 1024:.1f} MiB -> "
          f"{s1['t'] / 60:.1f} min, RSS {s1['rss_kb'] / 1024:.1f} MiB "
          f"({(s1['rss_kb'] - s0['rss_kb']) / 1024:+.1f} MiB)")
    keys = set(s0["maps"]) | set(s1["maps"])
    delta = {k: s1["maps"].get(k, 0) - s0["maps"].get(k, 0) for k in keys}
    by_kind: dict[str, int] = {}
    for k, d in delta.items():
        by_kind[kind(k)] = by_kind.get(kind(k), 0) + d
    print("by kind (MiB):", ", ".join(f"{n} {d / 1024:+.2f}" for n, d in
                                      sorted(by_kind.items(), key=lambda kv: -abs(kv[1]))[:a.top] if d))
    print("largest changes (kB): mapping, before -> after")
    for k in [k for k in sorted(keys, key=lambda k: -abs(delta[k])) if delta[k]][:a.top]:
        print(f"  {k}: {s0['maps'].get(k, 0)} -> {s1['maps'].get(k, 0)} ({delta[k]:+d})")


if __name__ == "__main__":
    main()
