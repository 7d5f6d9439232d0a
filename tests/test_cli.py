"""Bad input through the real CLI: one clear line, the right exit code, no traceback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_CAL, DEMO_MODEL, run_cli


def config_file(tmp_path: Path, extra: str = "", model: Path = DEMO_MODEL, cal: Path = DEMO_CAL) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(f"""
inference:
  backend: {{type: onnxruntime, model: {model}}}
decision: {{calibration: {cal}}}
output: {{records_dir: {tmp_path / 'records'}}}
{extra}
""")
    return p


def assert_clean_error(r, code: int, *fragments: str) -> None:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert "edge-inspect: error:" in r.stderr
    for f in fragments:
        assert f in r.stderr, r.stderr


def test_usage_error_exits_2():
    r = run_cli("replay")
    assert r.returncode == 2 and "usage:" in r.stderr


def test_config_typos_and_unknown_keys_exit_78(tmp_path, small_scan):
    cfg = config_file(tmp_path, "camera: {lines_per_frme: 64}\ntiling: {stride: -3}\n")
    r = run_cli("replay", small_scan, "--config", cfg)
    assert_clean_error(r, 78, "camera.lines_per_frme: unknown key", "tiling.stride:")


@pytest.mark.parametrize("make,fragment", [
    (lambda d: d / "missing.png", "scan not found"),
    (lambda d: [(d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage"), d / "corrupt.png"][1],
     "not a readable image"),
    (lambda d: [np.save(d / "f.npy", np.zeros((300, 512, 3), np.float32)), d / "f.npy"][1], "must be uint8"),
    (lambda d: [np.save(d / "s.npy", np.zeros((9, 300, 512, 3), np.uint8)), d / "s.npy"][1], "shape"),
    (lambda d: [(d / "empty").mkdir(), d / "empty"][1], "holds no scan images"),
])
def test_bad_scans(tmp_path, make, fragment):
    r = run_cli("replay", make(tmp_path), "--config", config_file(tmp_path))
    assert_clean_error(r, 1, fragment)


def test_model_file_that_is_not_onnx(tmp_path, small_scan):
    fake = tmp_path / "model.onnx"
    fake.write_text("this is not a model")
    r = run_cli("replay", small_scan, "--config", config_file(tmp_path, model=fake))
    assert_clean_error(r, 1, "model.onnx: not a loadable ONNX model")


def test_calibration_of_another_model_exit_78(tmp_path, small_scan):
    cal = tmp_path / "cal.yaml"
    cal.write_text("version: t\ncreated: now\nmodel: 0123456789ab\nscore: residual_max\ntile_threshold: 1.0\n")
    r = run_cli("replay", small_scan, "--config", config_file(tmp_path, cal=cal))
    assert_clean_error(r, 78, "calibration is for model 0123456789ab")


def test_model_changed_after_export_is_refused(tmp_path, small_scan):
    model = tmp_path / "demo.onnx"
    shutil.copy(DEMO_MODEL, model)
    shutil.copy(DEMO_MODEL.with_name("demo.onnx.json"), tmp_path / "demo.onnx.json")
    with open(model, "ab") as f:
        f.write(b"\0")
    r = run_cli("replay", small_scan, "--config", config_file(tmp_path, model=model))
    assert_clean_error(r, 1, "does not match its manifest")


def test_calibration_missing_or_broken_exit_78(tmp_path, small_scan):
    r = run_cli("replay", small_scan, "--config", config_file(tmp_path, cal=tmp_path / "none.yaml"))
    assert_clean_error(r, 78, "calibration (decision.calibration) file not found")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ntile_threshold: high\n")
    r = run_cli("replay", small_scan, "--config", config_file(tmp_path, cal=bad))
    assert_clean_error(r, 78, "tile_threshold", "score: Field required")


def _frames(small_scan: Path, folder: Path) -> int:
    """The scan as a folder of 64-line PNG frames (replay format b); returns the frame count."""
    import cv2
    folder.mkdir()
    img = cv2.imread(str(small_scan))
    n = -(-len(img) // 64)
    for i in range(n):
        cv2.imwrite(str(folder / f"f{i:05d}.png"), img[i * 64:(i + 1) * 64])
    return n


def _recording(small_scan: Path, folder: Path) -> None:
    """The scan as a recording (format c), 10 frames of 64 lines per chunk, by the real Recorder."""
    import cv2

    from edge_inspect.acquisition.base import Strip
    from edge_inspect.acquisition.recording import Recorder
    img = cv2.cvtColor(cv2.imread(str(small_scan)), cv2.COLOR_BGR2RGB)
    with Recorder(folder, width=img.shape[1], channels=3, lines_per_frame=64, max_file_frames=10) as rec:
        for i in range(0, len(img), 64):
            rec.write(Strip(img[i:i + 64], i, i * 100_000, i // 64))


def _flip_byte_in(chunk: Path, member: str, at: int = -1) -> None:
    """Overwrite one byte of a zip member's stored data in place (a bit flip on disk)."""
    import zipfile
    with zipfile.ZipFile(chunk) as zf:
        info = zf.getinfo(member)
    data = bytearray(chunk.read_bytes())
    name_len = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little")
    extra_len = int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    pos = start + (at if at >= 0 else info.compress_size + at)
    data[pos] ^= 0xFF
    chunk.write_bytes(bytes(data))


def _bad_frame_text(d: Path, name: str) -> None:
    (d / name).write_bytes(b"this is text, not a PNG")


def _bad_frame_wide(d: Path, name: str) -> None:
    import cv2
    cv2.imwrite(str(d / name), np.full((64, 900, 3), 128, np.uint8))


def _bad_frame_grey(d: Path, name: str) -> None:
    import cv2
    cv2.imwrite(str(d / name), np.full((64, 512), 128, np.uint8))


# small_scan's board 3 (lines 1626-2105) is good wood; frame 30 / chunk 3 begins at line 1920, in
# the middle of it, and chunk 1 begins at line 640, 8 lines before the end of board 0 (157-648)
@pytest.mark.parametrize("kind,cut_at,fragment", [
    ("frame: text in a .png", 1920, "not a readable image"),
    ("frame: 900 px wide", 1920, "differs from"),
    ("frame: grey among colour frames", 1920, "differs from"),
    ("recording: chunk 3 truncated", 1920, "corrupt chunk"),
    ("recording: chunk 1 with a bad CRC", 640, "corrupt chunk"),
    ("recording: chunk 3 pixel bytes overwritten", 1920, "pixel data fails its CRC-32 check"),
])
def test_corrupt_input_mid_board_rejects_the_cut_board_with_the_error(tmp_path, small_scan, kind, cut_at, fragment):
    """A corrupt frame or chunk in the middle of a board: the boards before it keep their
    verdicts, the board in flight is rejected as incomplete with the error as its reason (never
    accepted on the lines it had), exit 1 with one line naming the file."""
    scan = tmp_path / "scan"
    if kind.startswith("frame"):
        _frames(small_scan, scan)
        bad = scan / "f00030.png"
        {"text": _bad_frame_text, "900 ": _bad_frame_wide, "grey": _bad_frame_grey}[
            next(k for k in ("text", "900 ", "grey") if k in kind)](scan, bad.name)
    else:
        _recording(small_scan, scan)
        bad = scan / f"chunk_00000{kind.split('chunk ')[1][0]}.npz"
        if "truncated" in kind:
            bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
        elif "bad CRC" in kind:
            _flip_byte_in(bad, "t_ns.npy")
        else:
            _flip_byte_in(bad, "lines.npy", at=5000)
    r = run_cli("replay", scan, "--config", config_file(tmp_path), "--out", tmp_path / "rec")
    assert_clean_error(r, 1, bad.name, fragment)
    recs = [json.loads(line) for line in (tmp_path / "rec" / "boards.jsonl").read_text().splitlines()]
    truth = json.loads((small_scan.parent / "ground_truth.json").read_text())
    begun = [b for b in truth["boards"] if b["start_line"] < cut_at]
    assert len(recs) == len(begun)  # every board begun before the error has exactly one record
    *whole, cut = recs
    assert all(not r["incomplete"] and r["end_line"] <= cut_at for r in whole)
    assert cut["end_line"] == cut_at and cut["verdict"] == "reject" and cut["incomplete"]
    assert bad.name in cut["reasons"][-1] and cut["reasons"][-1].startswith("incomplete: ")
    boards, _, incomplete = map(int, r.stdout.splitlines()[-2].split()[1:4])  # the summary row
    assert (boards, incomplete) == (len(recs), 1)


@pytest.mark.parametrize("args,fragment", [
    (["--boards", "0"], "boards must be >= 1"),
    (["--defect-rate", "1.5"], "defect_rate"),
    (["--width", "100"], "width must be in 256..16384"),
    (["--seed", "-1"], "seed"),
    (["--format", "frames", "--lines-per-frame", "0"], "lines_per_frame"),
])
def test_synth_bad_arguments_are_usage_errors(tmp_path, args, fragment):
    r = run_cli("synth", "--out", tmp_path / "x", *args)
    assert_clean_error(r, 2, fragment)
    assert not (tmp_path / "x").exists()


def test_records_folder_that_cannot_be_created(tmp_path, small_scan):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the records folder should go")
    r = run_cli("replay", small_scan, "--config", config_file(tmp_path), "--out", blocker / "records")
    assert_clean_error(r, 1, str(blocker))


def test_every_flag_has_help_with_its_default():
    """`edge-inspect COMMAND --help` documents every flag; one with a default says it."""
    import argparse

    from edge_inspect.cli import build_parser

    ap = build_parser()
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for name, parser in [("", ap), *sub.choices.items()]:
        for a in parser._actions:
            if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            flag = f"{name} {'/'.join(a.option_strings) or a.dest}".strip()
            if not a.help:
                missing.append(f"{flag}: no help")
            elif (a.option_strings and not a.required and not isinstance(a, argparse._StoreTrueAction)
                  and "default" not in a.help and "required unless" not in a.help):
                missing.append(f"{flag}: help does not say the default")
    assert not missing, "\n".join(missing)
    r = run_cli("synth", "--help")
    assert r.returncode == 0 and "number of boards (default: 20)" in " ".join(r.stdout.split())


def _grey_scan(small_scan: Path, tmp_path: Path) -> Path:
    import cv2
    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), cv2.imread(str(small_scan), cv2.IMREAD_GRAYSCALE))
    return grey


@pytest.mark.parametrize("case", ["model key missing", "tile_size 128", "grey replay source"])
def test_model_and_config_that_do_not_fit_exit_78(tmp_path, small_scan, case):
    """A configuration that cannot work with its model is a configuration problem (78, which
    systemd does not restart), the same as a missing calibration."""
    if case == "model key missing":  # the default engines/demo.onnx, relative to a working directory without it
        cfg = tmp_path / "cfg.yaml"
        cfg.write_text(f"decision: {{calibration: {DEMO_CAL}}}\n")
        r = run_cli("replay", small_scan, "--config", cfg, cwd=tmp_path)
        assert_clean_error(r, 78, "inference.backend.model: engines/demo.onnx: model file not found")
    elif case == "tile_size 128":
        r = run_cli("replay", small_scan, "--config", config_file(tmp_path, "tiling: {tile_size: 128, stride: 128}"))
        assert_clean_error(r, 78, "tiling.tile_size is 128 but the model takes 256px tiles")
    else:
        grey = _grey_scan(small_scan, tmp_path)
        cfg = config_file(tmp_path, f"source: {{type: replay, path: {grey}, speed: max}}\nmetrics: {{enabled: false}}")
        r = run_cli("run", "--config", cfg, "--max-seconds", "30")
        assert_clean_error(r, 78, f"source {grey}: grey (1 channel(s)) but the model takes colour tiles")
        assert not (tmp_path / "records").exists()


def test_grey_scan_with_a_colour_model_names_the_scan(tmp_path, small_scan):
    grey = _grey_scan(small_scan, tmp_path)
    r = run_cli("replay", grey, "--config", config_file(tmp_path), "--out", tmp_path / "rec")
    assert_clean_error(r, 1, f"{grey}: grey (1 channel(s)) but the model takes colour tiles (3 channel(s))")


def _calibration(tmp_path: Path, **changes) -> Path:
    import yaml
    data = yaml.safe_load(DEMO_CAL.read_text())
    for k, v in changes.items():
        if v is None:
            data.pop(k, None)
        else:
            data[k] = v
    p = tmp_path / "cal.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize("changes,fragment", [
    ({"tile_threshold": float("inf")}, "tile_threshold: Value error, must be a finite number >= 0, got inf"),
    ({"tile_threshold": -0.1}, "tile_threshold: Value error, must be a finite number >= 0, got -0.1"),
    ({"model": None}, "model: Value error, must be the sha256"),
    ({"model": ""}, "got ''"),
    ({"model": "the demo model"}, "got 'the demo model'"),
])
def test_calibration_files_that_would_pass_or_fail_everything_are_refused(tmp_path, small_scan, changes, fragment):
    r = run_cli("replay", small_scan, "--config", config_file(tmp_path, cal=_calibration(tmp_path, **changes)),
                "--out", tmp_path / "rec")
    assert_clean_error(r, 78, "cal.yaml", fragment)
    assert not (tmp_path / "rec").exists()


def test_shipped_and_written_calibrations_still_load():
    from edge_inspect.decision.calibration_file import load_calibration
    for path in [DEMO_CAL, *sorted((DEMO_CAL.parent / "history").glob("*.yaml"))]:
        assert load_calibration(path).model


@pytest.mark.parametrize("args", [
    ["bench", "--rounds", "0"], ["bench", "--seconds", "-5"], ["bench", "--seconds", "nan"],
    ["run", "--max-seconds", "0"], ["run", "--max-seconds", "nan"], ["run", "--max-seconds", "-3"],
    ["run", "--max-seconds", "inf"], ["record", "--out", "x", "--max-seconds", "0"],
])
def test_out_of_range_arguments_are_usage_errors(args):
    r = run_cli(*args)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "usage:" in r.stderr and "error: argument" in r.stderr


def test_top_level_help_lists_every_exit_code():
    r = run_cli("--help")
    assert r.returncode == 0
    assert "0 ok, 1 failure, 2 usage, 78 bad configuration, 130 interrupted" in " ".join(r.stdout.split())


def test_train_refuses_to_overwrite_a_checkpoint_without_force(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    ckpt = out / "model.pt"
    ckpt.write_bytes(b"hours of training")
    r = run_cli("train", "--data", tmp_path, "--out", out)
    assert_clean_error(r, 2, f"{ckpt}: a checkpoint is already there", "--force")
    assert ckpt.read_bytes() == b"hours of training"


def test_sigint_during_replay_drains_and_exits_130(tmp_path, small_scan):
    """Ctrl-C mid-replay: what was read drains (every board begun gets its record), later scans
    are not begun, and the exit code says the replay was cut short, with one line saying so."""
    cfg = config_file(tmp_path, "camera: {line_rate_hz: 1000}")  # realtime: a scan takes about 3 s
    proc = subprocess.Popen([sys.executable, "-m", "edge_inspect.cli", "replay", str(small_scan), str(small_scan),
                             "--config", str(cfg), "--out", str(tmp_path / "rec"), "--speed", "realtime"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    first = proc.stdout.readline()  # the first verdict: the replay is under way
    assert first.startswith("board "), first
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.startswith("edge-inspect:")]
    assert len(lines) == 1 and lines[0].startswith("edge-inspect: interrupted by SIGINT: drained, every board begun")
    recs = [json.loads(x) for x in (tmp_path / "rec" / "boards.jsonl").read_text().splitlines()]
    assert f"({len(recs)} boards)" in lines[0]
    assert len([x for x in (first + out).splitlines() if x.startswith("board ")]) == len(recs)
    assert all(r["verdict"] in ("accept", "reject") for r in recs)
    assert all(r["verdict"] == "reject" for r in recs if r["incomplete"])
