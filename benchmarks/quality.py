"""Quality benchmark: train and evaluate every model of the zoo on the real defect datasets.

    python benchmarks/quality.py [--data ../shared/data] [--datasets kolektorsdd magnetic_tile]
        [--models ganomaly skip_ganomaly skip_attention skip_ganomaly_pp fegan] [--minutes 20]
        [--device cpu|cuda] [--out benchmarks/quality/results.json] [--work .quality]

Each (dataset, model) is trained with the small-set recipe (`edge_inspect/training/loop.py`) by
the real `edge-inspect train` command, capped at `--minutes` of training on this machine, on
`train/good` only; checkpoint, score normalisation, decision score and validation threshold come
from held-out good images. Then `edge-inspect evaluate` measures it on `test/` (never used for
anything else). Each run is a subprocess, so one model's failure (or a crash in a native
library) is recorded and the others go on.

Writes `results.json`: one object per (dataset, model, score) with `dataset`, `model`, `score`,
`image_auroc`, `pixel_auroc`, `f1_at_validation_threshold`, `train_seconds`, `epochs`,
`patches_seen`, `machine`, `commit`, plus `decision` (the score the model decides on),
`proxy_auroc` (validation: good versus synthetic defects) and `load_avg` (the machine's load
while it trained). Rows of earlier runs of other (dataset, model) pairs are kept; every run
(failed ones too) is also appended to `attempts.jsonl` beside it, so no attempt is lost.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ("kolektorsdd", "magnetic_tile")
RECIPE = "small-set v1"
# the zoo: training keys of each member (FEGAN here: Skip-GANomaly with M-SE augmentation and the
# pixel map from D's features; the VGG19 branch needs weights nobody downloads for us)
MODELS: dict[str, dict] = {
    "ganomaly": {"model": "ganomaly"},
    "skip_ganomaly": {"model": "skip_ganomaly"},
    "skip_attention": {"model": "skip_attention", "attention_blocks": [4, 5]},  # MIFE's placement
    "skip_ganomaly_pp": {"model": "skip_ganomaly_pp"},
    "fegan": {"model": "skip_ganomaly", "mse_augment": True},
}
# per dataset: grey images, patches of 128 px at native resolution (never resized)
DATA_KEYS: dict[str, dict] = {
    "kolektorsdd": {"nc": 1, "isize": 128},
    "magnetic_tile": {"nc": 1, "isize": 128},
}
COMMON = {"ngf": 16, "ndf": 16, "max_channels": 128, "nz": 100, "batch_size": 32, "epochs": 10000,
          "decision_score": "auto", "val_fraction": 0.1, "seed": 0}


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.machine()}, {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}"


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    sha = git("rev-parse", "--short=12", "HEAD") or "unknown"
    return sha + ("-dirty" if git("status", "--porcelain", "--untracked-files=no", "edge_inspect") else "")


def _config(dataset: str, model: str, minutes: float, device: str) -> str:
    training = {**COMMON, **DATA_KEYS[dataset], **MODELS[model], "max_minutes": minutes,
                "device": device, "threads": 0}
    isize = training["isize"]
    return json.dumps({  # JSON is YAML
        "tiling": {"tile_size": isize, "stride": isize // 2, "segmenter": {"min_board_lines": isize}},
        "training": training,
    })


def _cli(*args: str, log: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log, "a", encoding="utf-8") as f:
        return subprocess.run([sys.executable, "-m", "edge_inspect.cli", "--log-format", "json", *args],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=f, text=True, env=env)


def run_one(dataset: str, model: str, data: Path, work: Path, minutes: float, device: str) -> list[dict]:
    """Train and evaluate one (dataset, model); its result rows (or one row saying why it failed)."""
    out = work / dataset / model
    out.mkdir(parents=True, exist_ok=True)
    cfg = out / "config.yaml"
    cfg.write_text(_config(dataset, model, minutes, device), encoding="utf-8")
    log = out / "log.jsonl"
    base = {"dataset": dataset, "model": model, "recipe": RECIPE, "machine": machine(), "commit": commit(),
            "device": device, "minutes_cap": minutes}
    t0 = time.monotonic()
    load0 = os.getloadavg()[0]
    shutil.rmtree(out / "model", ignore_errors=True)  # a fresh run each time
    r = _cli("train", "--config", str(cfg), "--data", str(data), "--out", str(out / "model"), log=log)
    train_wall = time.monotonic() - t0
    load = round((load0 + os.getloadavg()[0]) / 2, 2)
    if r.returncode != 0:
        return [{**base, "error": f"train exited {r.returncode}: {_tail(log)}", "load_avg": load}]
    summary = json.loads((out / "model" / "train.json").read_text())
    ev = out / "evaluate.json"
    r = _cli("evaluate", "--model", str(out / "model" / "model.pt"), "--data", str(data), "--json", str(ev),
             "--device", device, log=log)
    if r.returncode != 0:
        return [{**base, "error": f"evaluate exited {r.returncode}: {_tail(log)}", "load_avg": load}]
    doc = json.loads(ev.read_text())
    rows = []
    for score, m in doc["scores"].items():
        rows.append({
            **base, "score": score, "decision": score == doc["decision_score"],
            "image_auroc": round(m["auroc"], 4),
            "pixel_auroc": None if m["pixel_auroc"] is None else round(m["pixel_auroc"], 4),
            "f1_at_validation_threshold": round(m["f1_at_val"], 4),
            "aupr": round(m["aupr"], 4),
            "proxy_auroc": summary["proxy_auroc_final"].get(score),
            "train_seconds": round(summary["seconds"], 1), "train_wall_seconds": round(train_wall, 1),
            "epochs": summary["epochs_run"], "patches_seen": summary["patches_seen"],
            "selected_validation": summary["selected"].get("validation"),
            "train_images": summary["train_images"], "val_images": summary["val_images"],
            "test_images": doc["test_set"]["good"] + doc["test_set"]["defect"], "load_avg": load,
        })
    return rows


def _tail(log: Path) -> str:
    try:
        lines = log.read_text(encoding="utf-8").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(lines[-3:])[-600:]


def table(rows: list[dict]) -> str:
    """The RESULTS.md table: one line per (dataset, model), its decision score's numbers, the
    pixel AUROC of its map (pixel_max's when it has one, else residual_max's), and the best image
    AUROC of any of its scores (for reading only: test data never chose it)."""
    out = ["| dataset | model | decision score (validation) | image AUROC | pixel AUROC | F1 @ val thr | "
           "best score on test (AUROC) | patches | train s | load |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for (dataset, model) in dict.fromkeys((r["dataset"], r["model"]) for r in rows):
        mine = [r for r in rows if (r["dataset"], r["model"]) == (dataset, model)]
        if "error" in mine[0]:
            out.append(f"| {dataset} | {model} | failed: {mine[0]['error'][:80]} | | | | | | | |")
            continue
        d = next(r for r in mine if r["decision"])
        best = max(mine, key=lambda r: r["image_auroc"])
        pixel = [r["pixel_auroc"] for r in mine if r["pixel_auroc"] is not None]  # the model's map
        px = f"{pixel[0]:.3f}" if pixel else "-"
        out.append(f"| {dataset} | {model} | {d['score']} | {d['image_auroc']:.3f} | {px} | "
                   f"{d['f1_at_validation_threshold']:.3f} | {best['score']} ({best['image_auroc']:.3f}) | "
                   f"{d['patches_seen']} | {d['train_seconds']:.0f} | {d['load_avg']} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data",
                    help="folder holding the datasets (default: %(default)s)")
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--minutes", type=float, default=20.0, help="training cap per model (default: %(default)s)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="default: %(default)s")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "quality" / "results.json")
    ap.add_argument("--work", type=Path, default=ROOT / ".quality", help="checkpoints and logs (default: %(default)s)")
    ap.add_argument("--table", action="store_true", help="print the markdown table of --out and stop")
    args = ap.parse_args(argv)
    if args.table:
        print(table(json.loads(args.out.read_text())))
        return 0
    if not 0 < args.minutes <= 600:
        ap.error(f"--minutes must be in (0, 600], got {args.minutes}")
    present = [d for d in args.datasets if (args.data / d / "train" / "good").is_dir()]
    for d in args.datasets:
        if d not in present:
            print(f"skipped {d}: {args.data / d} not found (the datasets live in ../shared/data; see its README)")
    if not present:
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    attempts = args.out.with_name("attempts.jsonl")
    for dataset in present:
        for model in args.models:
            print(f"{dataset} / {model}: training (cap {args.minutes:g} min) ...", flush=True)
            rows = run_one(dataset, model, args.data / dataset, args.work, args.minutes, args.device)
            with open(attempts, "a", encoding="utf-8") as f:
                for row in rows:
                    f.write(json.dumps(row) + "\n")
            old = json.loads(args.out.read_text()) if args.out.is_file() else []
            keep = [r for r in old if (r["dataset"], r["model"]) != (dataset, model)]
            args.out.write_text(json.dumps(keep + rows, indent=1) + "\n", encoding="utf-8")
            for row in rows:
                if "error" in row:
                    print(f"  FAILED: {row['error']}")
                elif row["decision"]:
                    print(f"  {row['score']}: image AUROC {row['image_auroc']}, pixel AUROC {row['pixel_auroc']}, "
                          f"F1@val {row['f1_at_validation_threshold']} ({row['patches_seen']} patches, "
                          f"{row['train_seconds']:.0f} s)", flush=True)
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
