"""The one `edge-inspect` entry point. Exit codes: 0 ok, 1 failure, 2 usage, 78 bad configuration, 130 interrupted.

Known problems are one line on stderr, never a traceback (README, Commands: which problem gives
which code)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from edge_inspect.errors import EdgeInspectError


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None,
                   help="YAML config (default: built-in defaults, those of config/demo.yaml; paths relative to "
                        "the working directory)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seconds(text: str, least: float, strict: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and (value > least if strict else value >= least)):
        raise argparse.ArgumentTypeError(
            f"must be a finite number of seconds {'above' if strict else 'of at least'} {least:g}, got {text}")
    return value


def _positive_seconds(text: str) -> float:
    return _seconds(text, 0.0, strict=True)


def _non_negative_float(text: str) -> float:
    return _seconds(text, 0.0, strict=False)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="edge-inspect", description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--log-format", choices=["auto", "json", "console"], default=None,
                    help="log lines on stderr: JSON, or readable with progress bars (default: logging.format "
                         "of the config, auto: console on a terminal, JSON otherwise and under systemd)")
    ap.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default=None,
                    help="least severe log level shown (default: logging.level of the config, info)")
    ap.add_argument("--progress-every", type=_non_negative_float, default=10.0, metavar="S",
                    help="seconds between JSON progress events of long work when the logs are JSON "
                         "(default: %(default)s); with console logs a progress bar is drawn instead")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("replay", help="run recorded scans through the inspection pipeline")
    p.add_argument("scans", nargs="+", type=Path, metavar="SCAN",
                   help="scan image/.npy file, folder of frames, or recording folder")
    _add_config(p)
    p.add_argument("--out", type=Path, default=None,
                   help="folder for boards.jsonl (default: output.records_dir of the config)")
    p.add_argument("--speed", choices=["max", "realtime"], default="max",
                   help="max: as fast as the pipeline goes, nothing dropped; realtime: paced at "
                        "camera.line_rate_hz like a camera (default: %(default)s)")
    p.add_argument("--report", type=Path, default=None, metavar="DIR",
                   help="also write DIR/report.html: summary, ground truth, score histogram, rejected and "
                        "near-threshold boards as heatmaps (default: no report)")

    p = sub.add_parser("run", help="the inspection service on the configured source (camera)")
    _add_config(p)
    p.add_argument("--max-seconds", type=_positive_seconds, default=None,
                   help="drain and stop after this long (default: run until SIGTERM/SIGINT)")

    p = sub.add_parser("record", help="save raw frames from the configured source for replay and calibration")
    _add_config(p)
    p.add_argument("--out", type=Path, required=True, help="new folder for the recording")
    p.add_argument("--max-seconds", type=_positive_seconds, default=None,
                   help="stop after this long (default: until SIGTERM/SIGINT)")

    p = sub.add_parser("synth", help="make synthetic line-scan wood scans with ground truth")
    p.add_argument("--out", type=Path, required=True,
                   help="folder for scan.png (or scan/), mask.png and ground_truth.json")
    p.add_argument("--boards", type=int, default=20, help="number of boards (default: %(default)s)")
    p.add_argument("--defect-rate", type=float, default=0.5,
                   help="share of boards with defects, 0..1 (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed: same seed, same bytes (default: %(default)s)")
    p.add_argument("--width", type=int, default=1024, help="scan width in pixels (default: %(default)s)")
    p.add_argument("--grey", action="store_true", help="one channel instead of RGB")
    p.add_argument("--format", choices=["image", "frames"], default="image",
                   help="one scan image (a) or a folder of frame files (b) (default: %(default)s)")
    p.add_argument("--lines-per-frame", type=int, default=64,
                   help="frame height for --format frames (default: %(default)s)")
    p.add_argument("--style", choices=["standard", "hard"], default="standard",
                   help="standard: pale boards, 70-95 %% of the width, straight, evenly lit, apart; hard: each "
                        "board also draws the hard cases of real lines (dark wood, 40-100 %% widths anywhere "
                        "across, skew up to 1.5 degrees, boards touching end to end, lighting falling off "
                        "toward one side, dark knots cut by a board's end, large low-contrast marks); the "
                        "ground truth lists each board's (default: %(default)s)")
    p.add_argument("--board-lines", type=int, nargs=2, default=[600, 1000], metavar=("MIN", "MAX"),
                   help="board length range in lines, MIN >= 256 (default: 600 1000)")

    p = sub.add_parser("train", help="train a model on good tiles (needs the train extra)")
    _add_config(p)
    p.add_argument("--data", type=Path, required=True, nargs="+",
                   help="good data, one or more: an MVTec-layout folder, a folder of good images, a scan (image "
                        "file, synth folder) or a recording folder")
    p.add_argument("--data-kind", choices=("auto", "mvtec", "images", "scan", "recording"), default="auto",
                   help="how to read --data (default: %(default)s: recording, MVTec folder, scan file or synth "
                        "folder, else a folder of good images; a folder of scan frames needs 'scan')")
    p.add_argument("--out", type=Path, required=True, help="folder for model.pt, train.json, validation_scores.npz")
    p.add_argument("--force", action="store_true", help="overwrite a checkpoint already in --out (default: refuse)")
    p.add_argument("--contaminate", type=float, default=None, metavar="R",
                   help="mix round(R x train/good images) seeded defect images from test/<defect> into "
                        "training only (0 <= R < 0.5; list in contamination.json; default: "
                        "training.contaminate of the config)")

    p = sub.add_parser("export", help="export a trained checkpoint's scoring graph to ONNX")
    p.add_argument("--model", type=Path, required=True, help="checkpoint (model.pt) from train")
    p.add_argument("--out", type=Path, required=True, help="ONNX file to write; its manifest is <out>.json")
    p.add_argument("--fp16", action="store_true", help="half-precision graph (uint8 in, float32 scores out)")
    p.add_argument("--calibration", type=Path, default=None,
                   help="also write an initial calibration from the checkpoint's validation scores "
                        "(default: none)")
    p.add_argument("--score", default=None,
                   help="score the calibration uses (default: the model's decision_score, else residual_max)")

    p = sub.add_parser("bench", help="bare backend tiles/s versus end-to-end replay, per stage")
    _add_config(p)
    p.add_argument("--scan", type=Path, default=None, help="scan to replay (default: a synthetic one)")
    p.add_argument("--seconds", type=_positive_seconds, default=15.0,
                   help="time for the bare-backend runs, over all rounds (default: %(default)s)")
    p.add_argument("--rounds", type=_positive_int, default=3,
                   help="bare and end-to-end runs alternate this many times (default: %(default)s)")

    p = sub.add_parser("calibrate", help="new reject threshold from recent good boards, with a report")
    _add_config(p)
    p.add_argument("--scans", nargs="+", type=Path, default=None, metavar="SCAN",
                   help="scans of good boards, each scored on its own: an image file, a synth output folder, "
                        "a recording, or a folder of images (one scan when all are camera.lines_per_frame lines "
                        "high but the last, else one scan per image); required unless --rollback")
    p.add_argument("--defect-scans", nargs="+", type=Path, default=None, metavar="SCAN",
                   help="scans with defective boards (as --scans), to estimate detection (default: none)")
    p.add_argument("--allow-training-scans", action="store_true",
                   help="accept scans the model was trained on (refused otherwise); the false-reject "
                        "estimate is then optimistic")
    p.add_argument("--records", type=Path, default=None,
                   help="boards.jsonl the scans were inspected with: refuse if its model differs (default: no check)")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--target-frr", type=float, default=0.01,
                        help="share of the calibration's good boards the threshold may reject; unseen boards "
                             "then land near it, above it about half the time (default: %(default)s)")
    target.add_argument("--max-frr", type=float, default=None,
                        help="false-reject rate not to exceed: the lowest threshold whose 95 %% upper bound "
                             "stays within it (a higher threshold than --target-frr's, and more good boards "
                             "needed: 149 for 0.02; default: none, --target-frr applies)")
    p.add_argument("--score", default=None,
                   help="model output to use (default: the current calibration's, else residual_max)")
    p.add_argument("--report", type=Path, default=None,
                   help="report folder (default: calibration/reports/<version>/ beside the current file)")
    p.add_argument("--yes", action="store_true", help="apply without asking (scripts)")
    p.add_argument("--rollback", action="store_true", help="restore the previous calibration from history")
    p.add_argument("--pid-file", type=Path, default=None,
                   help="pid file of a running service to send SIGHUP after applying "
                        "(default: systemctl reload when the unit is active)")

    p = sub.add_parser("build-engine", help="TensorRT engine (.plan) + manifest from an ONNX model (needs a GPU)")
    p.add_argument("onnx", type=Path, metavar="F.onnx", help="exported model (use export --fp16 for an FP16 engine)")
    p.add_argument("--out", type=Path, required=True, help="engine file to write; its manifest is <out>.json")
    p.add_argument("--min-batch", type=int, default=1, help="smallest batch the engine takes (default: %(default)s)")
    p.add_argument("--opt-batch", type=int, default=16,
                   help="batch size TensorRT tunes for, = inference.batch_size (default: %(default)s)")
    p.add_argument("--max-batch", type=int, default=64, help="largest batch the engine takes (default: %(default)s)")
    p.add_argument("--workspace-mb", type=int, default=2048,
                   help="builder workspace limit in MiB (default: %(default)s)")
    p.add_argument("--timing-cache", type=Path, default=None,
                   help="timing cache file, read if present and written back (default: none)")
    p.add_argument("--device", type=int, default=0, help="CUDA device index (default: %(default)s)")

    p = sub.add_parser("parity", help="does a candidate model rank tiles like the FP32 reference? (exit 1 if not)")
    p.add_argument("--reference", type=Path, required=True, help="FP32 ONNX model (or checkpoint .pt)")
    p.add_argument("--candidate", type=Path, required=True, help="FP16 ONNX, TensorRT .plan, or checkpoint .pt")
    p.add_argument("--tiles", type=Path, required=True,
                   help="tiles .npy [N,T,T,C], an MVTec-layout folder (labels from test/<class>), or a scan")
    p.add_argument("--labels", type=Path, default=None,
                   help="0/1 per tile (.npy or text) for .npy tiles (default: unlabelled, no AUROC)")
    p.add_argument("--score", default=None, help="compare only this score (default: every common one)")
    p.add_argument("--device", default=None,
                   help="candidate device: cpu or cuda:N (torch), cuda:N (TensorRT index) "
                        "(default: cuda:0 when there is one, else cpu)")
    p.add_argument("--max-tiles", type=int, default=None,
                   help="use at most this many unlabelled tiles (default: all)")
    p.add_argument("--json", type=Path, default=None, help="also write the report as JSON (default: none)")

    p = sub.add_parser("evaluate", help="image and pixel metrics of a checkpoint on an MVTec-layout test set")
    p.add_argument("--model", type=Path, required=True, help="checkpoint (model.pt) from train")
    p.add_argument("--data", type=Path, required=True, help="MVTec-layout folder (test/good, test/<defect>, ground_truth/)")
    p.add_argument("--json", type=Path, default=None,
                   help="write every metric and per-image score as JSON (default: none)")
    p.add_argument("--plots", type=Path, default=None,
                   help="folder for PNG plots: ROC, histograms, worst cases (default: none)")
    p.add_argument("--batch-size", type=_positive_int, default=32,
                   help="tiles per forward pass (default: %(default)s)")
    p.add_argument("--device", default="auto",
                   help="auto (cuda when available), cpu, cuda or cuda:N (default: %(default)s)")

    sub.add_parser("doctor", help="what this machine can run: backends, GPU, TensorRT, pycuda, GenTL producers")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from edge_inspect import commands
    try:
        return getattr(commands, args.command.replace("-", "_"))(args)
    except EdgeInspectError as exc:
        sys.stderr.write(f"edge-inspect: error: {exc}\n")
        return exc.exit_code
    except OSError as exc:  # a disk full, a folder not writable: name the file, no traceback
        where = f"{exc.filename}: " if exc.filename else ""
        sys.stderr.write(f"edge-inspect: error: {where}{exc.strerror or exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("edge-inspect: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
