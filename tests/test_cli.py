"""Bad input through the real CLI: one clear line, the right exit code, no traceback."""

from __future__ import annotations

import json
import shutil
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


def test_corrupt_frame_mid_scan_keeps_what_was_accepted(tmp_path, small_scan):
    """Frames after a corrupt file are lost, but every board begun gets a record, and the
    one cut short by the error is rejected as incomplete."""
    frames = tmp_path / "frames"
    frames.mkdir()
    import cv2
    img = cv2.imread(str(small_scan))
    n = len(img) // 64
    for i in range(n):
        cv2.imwrite(str(frames / f"f{i:05d}.png"), img[i * 64:(i + 1) * 64])
    bad_at = int(n * 0.7)
    (frames / f"f{bad_at:05d}.png").write_bytes(b"broken")
    r = run_cli("replay", frames, "--config", config_file(tmp_path), "--out", tmp_path / "rec")
    assert_clean_error(r, 1, f"f{bad_at:05d}.png", "not a readable image")
    recs = [json.loads(line) for line in (tmp_path / "rec" / "boards.jsonl").read_text().splitlines()]
    truth = json.loads((small_scan.parent / "ground_truth.json").read_text())
    # every board whose lines began before the bad frame has a record; a piece cut short by the
    # error is rejected (incomplete, or a fragment when fewer than min_board_lines were read)
    begun = [b for b in truth["boards"] if b["start_line"] < bad_at * 64]
    assert len(recs) == len(begun)
    last = recs[-1]
    if truth["boards"][len(begun) - 1]["end_line"] > bad_at * 64:  # board cut by the error
        assert last["verdict"] == "reject" and (last["incomplete"] or "fragment" in last["reasons"][-1])


def test_synth_bad_arguments(tmp_path):
    r = run_cli("synth", "--out", tmp_path / "x", "--boards", "0")
    assert_clean_error(r, 1, "boards")


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
