"""Issue 14's targets on unseen synthetic boards, with the shipped model and calibration:

    python benchmarks/board_targets.py [--seeds 90211 ...] [--styles standard hard] [--boards 60]
        [--config config/demo.yaml] [--work .targets]

For each (style, seed) it makes a fresh scan with `edge-inspect synth`, replays it with the real
`edge-inspect replay` and compares the records with the ground truth:

* good boards rejected (target <= 2 %),
* boards with exactly one record covering >= 95 % of their lines (target: all; boards butted end
  to end with no gap are one piece of material to the camera: their one record covers both),
* boards with a defect of at least 20 x 20 px rejected (target >= 95 %).

Seeds are never used for training (1, 2) or calibration (4001-4003); pick new ones to check
that nothing was tuned on these.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "edge_inspect.cli", "--log-level", "error", *args], cwd=ROOT,
                   check=True, stdout=subprocess.DEVNULL)


def measure(records: list[dict], truth: dict) -> dict:
    good = bad_big = good_rej = big_rej = covered = 0
    for tb in truth["boards"]:
        length = tb["end_line"] - tb["start_line"]
        over = [(min(r["end_line"], tb["end_line"]) - max(r["start_line"], tb["start_line"]), r) for r in records]
        over = [(o, r) for o, r in over if o > 0]
        covered += len(over) == 1 and over[0][0] >= 0.95 * length
        rejected = any(r["verdict"] == "reject" for _, r in over)
        if not tb["defects"]:
            good += 1
            good_rej += rejected
        if any(d["w"] >= 20 and d["h"] >= 20 for d in tb["defects"]):
            bad_big += 1
            big_rej += rejected
    n = len(truth["boards"])
    return {"boards": n, "records": len(records), "one_record_95": covered, "good": good, "good_rejected": good_rej,
            "defect20": bad_big, "defect20_rejected": big_rej}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[90211, 90212, 90213])
    ap.add_argument("--styles", nargs="+", default=["standard", "hard"], choices=("standard", "hard"))
    ap.add_argument("--boards", type=int, default=60, help="boards per scan (default: %(default)s)")
    ap.add_argument("--config", type=Path, default=ROOT / "config" / "demo.yaml")
    ap.add_argument("--work", type=Path, default=ROOT / ".targets")
    args = ap.parse_args(argv)
    print("| style | seed | boards | records | one record >= 95 % | good rejected | defect >= 20 px rejected |")
    print("|---|---|---|---|---|---|---|")
    total: dict[str, dict] = {}
    for style in args.styles:
        for seed in args.seeds:
            scans, out = args.work / f"{style}-{seed}", args.work / f"{style}-{seed}-records"
            _cli("synth", "--out", str(scans), "--boards", str(args.boards), "--seed", str(seed), "--style", style)
            (out / "boards.jsonl").unlink(missing_ok=True)  # replay appends: left by a run cut short
            _cli("replay", str(scans / "scan.png"), "--config", str(args.config), "--out", str(out))
            recs = [json.loads(x) for x in (out / "boards.jsonl").read_text().splitlines()]
            m = measure(recs, json.loads((scans / "ground_truth.json").read_text()))
            t = total.setdefault(style, dict.fromkeys(m, 0))
            for k, v in m.items():
                t[k] += v
            print(_row(style, str(seed), m))
    for style, m in total.items():
        print(_row(style, "all", m))
    return 0


def _row(style: str, seed: str, m: dict) -> str:
    def pct(a: int, b: int) -> str:
        return f"{a}/{b} ({100 * a / b:.1f} %)" if b else "-"
    return (f"| {style} | {seed} | {m['boards']} | {m['records']} | {pct(m['one_record_95'], m['boards'])} | "
            f"{pct(m['good_rejected'], m['good'])} | {pct(m['defect20_rejected'], m['defect20'])} |")


if __name__ == "__main__":
    sys.exit(main())
