"""`edge-inspect calibrate`: statistics against known values, then real end-to-end runs on
synthetic scans with the shipped model, in a tmp folder with a copy of the calibration file
(the repository's calibration/current.yaml is never touched)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import structlog
import yaml
from conftest import DEMO_CAL, DEMO_MODEL, run_cli

from edge_inspect import cli
from edge_inspect.acquisition.synthetic import SynthSpec, write_synthetic_scans
from edge_inspect.config import DriftConfig
from edge_inspect.decision.aggregator import BoardAggregator
from edge_inspect.decision.calibration_file import (
    BoardRule,
    Calibration,
    load_calibration,
    write_calibration,
)
from edge_inspect.monitoring.drift import DriftMonitor
from edge_inspect.recalibration import apply as apply_mod
from edge_inspect.recalibration.proposal import build_proposal, summary_lines
from edge_inspect.recalibration.scoring import BoardScores, ScanScores
from edge_inspect.recalibration.thresholds import (
    allowed_exceedances,
    allowed_within_bound,
    binom_cdf,
    board_statistic,
    clopper_pearson_upper,
    find_outliers,
    min_good_boards,
    min_good_boards_for_bound,
    pick_threshold,
)
from edge_inspect.tiling.events import BoardEnded, BoardStarted, TileMeta

# ---------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("k, n, expected, tol", [
    # Beta(k+1, n-k) 0.95 quantiles (mpmath betainc inverted by bisection, 15 digits)
    (0, 100, 1 - 0.05 ** (1 / 100), 1e-9),   # closed form for k = 0: 0.0295
    (0, 20, 1 - 0.05 ** (1 / 20), 1e-9),
    (1, 20, 0.216106164206847, 1e-9),
    (1, 100, 0.0465598114535389, 1e-9),
    (5, 100, 0.102253377643274, 1e-9),
    (10, 1000, 0.0169031751205625, 1e-9),
    (3, 50, 0.147837176364181, 1e-9),
])
def test_clopper_pearson_upper_known_values(k, n, expected, tol):
    assert clopper_pearson_upper(k, n) == pytest.approx(expected, abs=tol)


def test_clopper_pearson_edges_and_binomial_cdf():
    assert clopper_pearson_upper(7, 7) == 1.0
    assert clopper_pearson_upper(0, 100) < clopper_pearson_upper(1, 100) < clopper_pearson_upper(2, 100)
    assert binom_cdf(1, 3, 0.5) == pytest.approx(0.5)
    assert binom_cdf(0, 10, 0.1) == pytest.approx(0.9 ** 10)
    assert binom_cdf(3, 3, 0.4) == 1.0
    with pytest.raises(ValueError):
        clopper_pearson_upper(3, 2)


def test_minimum_boards_and_allowed_exceedances():
    assert min_good_boards(0.01) == 100
    assert min_good_boards(0.05) == 20
    assert min_good_boards(0.03) == 34
    assert allowed_exceedances(0.07, 100) == 7      # 0.07 * 100 is 7.000000000000001
    assert allowed_exceedances(0.29, 100) == 29     # ... and 0.29 * 100 is 28.999999999999996
    assert allowed_exceedances(0.05, 24) == 1


def test_threshold_is_midway_above_the_allowed_boards():
    rng = np.random.default_rng(0)
    scores = rng.permutation(np.arange(1.0, 21.0))  # 20 boards, 1..20
    c = pick_threshold(scores, 0.10)                 # k = 2: boards 20 and 19 may be rejected
    assert c.threshold == pytest.approx(18.5)
    assert (c.n, c.allowed, c.exceedances) == (20, 2, 2)
    assert c.expected_frr == pytest.approx(0.10)
    assert c.frr_upper95 == pytest.approx(clopper_pearson_upper(2, 20))


def test_threshold_with_ties_never_rejects_more_than_allowed():
    scores = np.array([5.0, 5.0, 5.0] + list(np.linspace(1, 4, 17)))
    c = pick_threshold(scores, 0.05)                 # k = 1, but three boards tie at the top
    assert c.threshold == 5.0
    assert c.exceedances == 0 and c.expected_frr == 0.0
    assert c.frr_upper95 == pytest.approx(clopper_pearson_upper(0, 20))
    scores = np.array([9.0, 5.0, 5.0] + list(np.linspace(1, 4, 17)))
    c = pick_threshold(scores, 0.10)                 # k = 2, the tie sits on the boundary
    assert c.threshold == 5.0 and c.exceedances == 1


def test_bound_target_allows_what_keeps_the_upper_bound_within_it():
    assert min_good_boards_for_bound(0.02) == 149 and min_good_boards_for_bound(0.05) == 59
    assert clopper_pearson_upper(0, 149) <= 0.02 < clopper_pearson_upper(0, 148)
    assert [allowed_within_bound(0.02, n) for n in (148, 149, 300, 600)] == [-1, 0, 1, 6]
    assert clopper_pearson_upper(6, 600) <= 0.02 < clopper_pearson_upper(7, 600)
    scores = np.random.default_rng(1).permutation(np.arange(1.0, 601.0))  # 600 boards, 1..600
    c = pick_threshold(scores, 0.02, "bound")        # k = 6 (a measured 2 % target allows 12)
    assert c.threshold == pytest.approx(594.5) and (c.allowed, c.exceedances) == (6, 6)
    assert c.expected_frr == pytest.approx(0.01) and c.frr_upper95 <= 0.02
    assert pick_threshold(scores, 0.02).exceedances == 12
    with pytest.raises(ValueError, match="cannot bound"):
        pick_threshold(scores[:148], 0.02, "bound")


def test_threshold_with_no_allowed_exceedance_sits_above_the_worst_board():
    c = pick_threshold(np.array([1.0, 2.0, 3.0, 4.0]), 0.01)
    assert c.threshold == pytest.approx(4.5) and c.exceedances == 0


def _aggregator_rejects(scores: np.ndarray, rule: BoardRule, thr: float) -> bool:
    cal = Calibration(version="t", created="t", score="s", tile_threshold=thr, board_rule=rule)
    agg = BoardAggregator(cal, 256, "0" * 64, "test")
    agg.started(BoardStarted(0, 0, 0))
    metas = [TileMeta(0, 0, i, 256 * i, 0) for i in range(scores.size)]
    agg.scored(metas, scores)
    (v,) = agg.ended(BoardEnded(0, 0, 256, 256 * scores.size, scores.size, "end", False, 0))
    return v.verdict == "reject"


@pytest.mark.parametrize("rule", [BoardRule(type="max"), BoardRule(type="topk_mean", k=3),
                                  BoardRule(type="count", min_count=2)])
def test_board_statistic_decides_like_the_aggregator(rule):
    rng = np.random.default_rng(1)
    for _ in range(30):
        scores = rng.random(rng.integers(1, 9)).astype(np.float32)
        stat = board_statistic(scores, rule)
        for thr in (0.2, 0.5, 0.8, float(scores.max())):
            assert (stat > thr) == _aggregator_rejects(scores, rule, thr)


def test_outliers_robust_to_the_outliers_themselves():
    good = np.linspace(0.20, 0.40, 40)
    assert not find_outliers(good).too_many
    assert not find_outliers(np.append(good, 5.0)).too_many          # one stray board: allowed
    out = find_outliers(np.append(good, [3.0, 4.0, 5.0]))             # 3 of 43 > max(1, 5 %)
    assert out.too_many and out.mask.sum() == 3
    flat = find_outliers(np.array([1.0] * 30 + [1.04, 1.04]))          # MAD 0: the 1 % floor applies
    assert not flat.too_many and flat.mad == pytest.approx(0.01)


def _scan_of(name: str, scores: np.ndarray) -> ScanScores:
    zero = np.zeros(1, np.int64)
    return ScanScores(Path(name), [BoardScores(Path(name), i, 0, 600, np.array([v], np.float32), zero, zero, False)
                                   for i, v in enumerate(scores)])


def test_proposal_states_each_scans_false_rejects_and_names_a_scan_unlike_the_rest():
    """Pooled, 4 of 200 good boards over the threshold is 2 %, at most 4.5 %; but if all 4 come
    from one scan of 40 boards, that scan's boards are rejected at 10 %: the report says so."""
    rng = np.random.default_rng(3)
    plain = _scan_of("day1", rng.uniform(0.2, 0.4, 160))
    odd = _scan_of("day2", np.r_[rng.uniform(0.2, 0.4, 36), [0.45, 0.46, 0.47, 0.48, 0.6]])
    p = build_proposal([plain, odd], [], 0.02, "residual_max", BoardRule(), "ab" * 32, "v1", None)
    assert p.choice.exceedances == 4 and p.choice.n == 201
    assert [(r.scan.name, r.boards, r.rejected) for r in p.per_scan] == [("day1", 160, 0), ("day2", 41, 4)]
    assert p.per_scan[1].upper_bound == pytest.approx(clopper_pearson_upper(4, 41))
    assert [r.scan.name for r in p.unlike_scans] == ["day2"]
    lines = summary_lines(p)
    assert "Per scan: day1 0 of 160 (0.0 %, at most 1.9 %); day2 4 of 41 (9.8 %, at most 21.0 %)" in lines
    assert any(line.startswith("Unlike the rest: day2 has 9.8 % of its good boards over the threshold") for line in lines)
    twin = _scan_of("day3", np.array([float(b.tile_scores[0]) + 1e-3 for b in plain.boards]))  # boards like day1's
    alike = build_proposal([plain, twin], [], 0.02, "residual_max", BoardRule(), "ab" * 32, "v2", None)
    assert [r.rejected for r in alike.per_scan] == [3, 3]
    assert alike.unlike_scans == [] and not any(line.startswith("Unlike") for line in summary_lines(alike))


# ---------------------------------------------------------------------------- apply / rollback


def _cal(version: str, thr: float, model: str = "ab" * 32) -> Calibration:
    return Calibration(version=version, created="2026-01-01T00:00:00+00:00", model=model,
                       score="residual_max", tile_threshold=thr)


def test_apply_keeps_history_and_rollback_restores(tmp_path):
    current = tmp_path / "current.yaml"
    write_calibration(current, _cal("20260101T000000Z", 0.5))
    apply_mod.apply_calibration(_cal("20260102T000000Z", 0.6), current)
    assert sorted(p.name for p in (tmp_path / "history").iterdir()) == [
        "20260101T000000Z.yaml", "20260102T000000Z.yaml"]
    assert load_calibration(current).tile_threshold == 0.6
    restored, replaced = apply_mod.rollback(current, "ab" * 32)
    assert (restored.version, replaced.version) == ("20260101T000000Z", "20260102T000000Z")
    assert load_calibration(current).tile_threshold == 0.5
    with pytest.raises(Exception, match="no earlier calibration"):
        apply_mod.rollback(current, "ab" * 32)
    apply_mod.apply_calibration(_cal("20260103T000000Z", 0.7), current)
    with pytest.raises(Exception, match="belongs to model"):   # the service would refuse it
        apply_mod.rollback(current, "cd" * 32)
    assert load_calibration(current).tile_threshold == 0.7


@pytest.mark.parametrize("fail", ["replace", "write"])
def test_interrupted_apply_leaves_current_byte_identical(tmp_path, monkeypatch, fail):
    current = tmp_path / "current.yaml"
    write_calibration(current, _cal("20260101T000000Z", 0.5))
    before = current.read_bytes()
    if fail == "replace":
        real = os.replace

        def replace(src, dst):
            if Path(dst) == current:
                raise OSError("disk full")
            return real(src, dst)
        monkeypatch.setattr(os, "replace", replace)
    else:
        real_fsync = os.fsync

        def fsync(fd):  # the temp file is half written when the disk fills
            if os.readlink(f"/proc/self/fd/{fd}").endswith(f".{current.name}.tmp"):
                os.write(fd, b"version: half-writ")
                raise OSError("disk full")
            return real_fsync(fd)
        monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError):
        apply_mod.apply_calibration(_cal("20260102T000000Z", 0.6), current)
    assert current.read_bytes() == before


def test_reload_signal_to_a_running_service(tmp_path, monkeypatch):
    monkeypatch.setattr(apply_mod.shutil, "which", lambda name: None)   # no systemd in the picture
    assert apply_mod.notify_service(None) == "no running service found; the new calibration applies at next start"
    got = tmp_path / "got_hup"
    code = ("import signal, sys, time, pathlib  # edge-inspect stand-in\n"
            "signal.signal(signal.SIGHUP, lambda *a: (pathlib.Path(sys.argv[1]).write_text('hup'), sys.exit(0)))\n"
            "print('ready', flush=True)\ntime.sleep(30)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(got)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        pid_file = tmp_path / "edge-inspect.pid"
        pid_file.write_text(f"{proc.pid}\n")
        assert "sent SIGHUP" in apply_mod.notify_service(pid_file)
        proc.wait(timeout=10)
        assert got.read_text() == "hup"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # a stale pid file (process gone) falls through to the plain message
    assert "no running service found" in apply_mod.notify_service(pid_file)


# ---------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> dict[str, Path]:
    """Small synthetic scans (512 px wide, short boards: about 4 tiles each)."""
    root = tmp_path_factory.mktemp("calib_scans")
    specs = {"good": (24, 0.0, 101), "good2": (24, 0.0, 11), "fresh": (48, 0.0, 202), "defect": (8, 1.0, 303)}
    for name, (boards, rate, seed) in specs.items():
        write_synthetic_scans(root / name, SynthSpec(boards=boards, defect_rate=rate, seed=seed,
                                                     width=512, board_lines=(300, 500)))
    return {name: root / name for name in specs}


@pytest.fixture(autouse=True)
def _structlog_defaults():
    """The CLI run in-process points structlog at pytest's capture stream, which is closed after
    the test: put the defaults back so later tests can still log."""
    yield
    structlog.reset_defaults()


def _cli(capsys, *args) -> tuple[int, str, str]:
    rc = cli.main(["--log-format", "json", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.slow
def test_calibrate_apply_meets_its_bound_on_fresh_boards_then_rollback(scans, site, capsys):
    original = site["cal"].read_bytes()
    report = site["tmp"] / "report"
    rc, out, err = _cli(capsys, "calibrate", "--config", site["cfg"], "--scans", scans["good"], scans["good2"],
                        "--defect-scans", scans["defect"] / "scan.png", "--target-frr", "0.05",
                        "--report", report, "--yes")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[:3] == [f"--scans {scans['good']}: 1 scan (synth folder: scan.png)",
                         f"--scans {scans['good2']}: 1 scan (synth folder: scan.png)",
                         f"--defect-scans {scans['defect'] / 'scan.png'}: 1 scan (image file)"]
    assert lines[3].startswith("Boards scored: 48 good (2 scans), 8 defect")
    current = yaml.safe_load(original)["tile_threshold"]
    assert lines[4].startswith(f"Current threshold {current:.4f}")
    assert lines[5] == "Target false-reject rate: 5 % measured on the calibration boards"
    assert lines[6].startswith("Proposed threshold ") and "with 95 % confidence, Clopper-Pearson" in lines[6]
    assert "of 8 defect boards" in lines[6]
    assert any(line.startswith("Applied: ") for line in lines)
    assert any("applies at next start" in line or "reload" in line for line in lines)

    new = load_calibration(site["cal"])
    summary = json.loads((report / "summary.json").read_text())
    assert new.tile_threshold == pytest.approx(summary["calibration"]["tile_threshold"])
    assert new.target_frr == 0.05 and new.target_rule == "measured" and new.expected_detection is not None
    assert len(new.model) == 64 and DEMO_MODEL.name not in new.model
    hist = sorted(p.name for p in (site["dir"] / "history").iterdir())
    assert hist == sorted([f"{yaml.safe_load(original)['version']}.yaml", f"{new.version}.yaml"])
    page = (report / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2
    # the drift reference: the good boards the new threshold accepts, ascending
    assert new.good_scores == sorted(new.good_scores) and max(new.good_scores) <= new.tile_threshold
    assert len(new.good_scores) == 48 - summary["exceedances"]

    # the stated bound holds on good boards the calibration never saw, through replay itself
    rc, out, err = _cli(capsys, "replay", scans["fresh"] / "scan.png", "--config", site["cfg"],
                        "--out", site["tmp"] / "fresh")
    assert rc == 0, err
    recs = [json.loads(x) for x in (site["tmp"] / "fresh" / "boards.jsonl").read_text().splitlines()]
    assert len(recs) == 48 and all(r["calibration"] == new.version for r in recs)
    fresh_rejects = sum(r["verdict"] == "reject" for r in recs)
    # 48 boards each side keep the fresh sample's own noise small next to the bound
    assert fresh_rejects / len(recs) <= summary["frr_upper95"], (fresh_rejects, summary)
    # fresh good boards score like the calibration's: the drift monitor stays quiet
    drift = DriftMonitor(DriftConfig(min_boards=40), new)
    for r in recs:
        drift.observe(SimpleNamespace(verdict=r["verdict"], score=r["score"]))
    assert drift.mode == "distribution" and not drift.alarm and drift.distance < 0.25, drift.distance

    rc, out, err = _cli(capsys, "calibrate", "--config", site["cfg"], "--rollback")
    assert rc == 0, err
    assert "Rolled back" in out
    assert load_calibration(site["cal"]) == load_calibration(DEMO_CAL)
    rc, out, err = _cli(capsys, "calibrate", "--config", site["cfg"], "--rollback")
    assert rc == 1 and "no earlier calibration" in err


@pytest.mark.slow
def test_without_terminal_or_yes_nothing_is_applied(scans, site, capsys):
    before = site["cal"].read_bytes()
    rc, out, err = _cli(capsys, "calibrate", "--config", site["cfg"], "--scans", scans["good"] / "scan.png",
                        "--target-frr", "0.05")
    assert rc == 0, err
    assert "Not applied" in out and "Report: " in out
    assert site["cal"].read_bytes() == before
    assert not (site["dir"] / "history").exists()
    assert len(list((site["dir"] / "reports").glob("*/report.html"))) == 1


def _refused(capsys, site, *args) -> str:
    before = site["cal"].read_bytes()
    rc, out, err = _cli(capsys, "calibrate", "--config", site["cfg"], *args)
    assert rc == 1, (out, err)
    assert site["cal"].read_bytes() == before
    assert sorted(p.name for p in site["dir"].iterdir()) == ["current.yaml"]   # nothing written
    return err


@pytest.mark.slow
def test_refuses_too_few_good_boards(scans, site, capsys):
    err = _refused(capsys, site, "--scans", scans["good"], "--target-frr", "0.01", "--yes")
    assert ("need at least 100 good boards for a false-reject target of 1 % measured on the calibration boards, "
            "got 24; record more (with 24 boards no false reject can be allowed") in err
    # as a ceiling, 5 % needs 59 boards: 0 rejects in 58 still leaves the 95 % bound at 5.0 %
    err = _refused(capsys, site, "--scans", scans["good"], "--max-frr", "0.05", "--yes")
    assert ("need at least 59 good boards for a false-reject target of at most 5 % with 95 % confidence, got 24; "
            "record more (with 24 boards even none rejected leaves the 95 % bound above 5 %)") in err


def test_refuses_scans_scored_with_another_model(scans, site, capsys):
    records = site["tmp"] / "boards.jsonl"
    records.write_text(json.dumps({"board_id": 0, "model": "0123456789ab", "verdict": "accept"}) + "\n")
    err = _refused(capsys, site, "--scans", scans["good"], "--records", records, "--target-frr", "0.05", "--yes")
    assert "another model" in err and "0123456789ab" in err


@pytest.mark.slow
def test_refuses_defect_boards_passed_as_good(scans, site, capsys):
    err = _refused(capsys, site, "--scans", scans["good"], scans["defect"], "--target-frr", "0.05", "--yes")
    assert "boards score far above the rest" in err and "--defect-scans" in err


def test_usage_errors(site, capsys):
    rc, _, err = _cli(capsys, "calibrate", "--config", site["cfg"])
    assert rc == 2 and "--scans" in err
    with pytest.raises(SystemExit) as stop:  # argparse: one way of reading the target at a time
        _cli(capsys, "calibrate", "--config", site["cfg"], "--scans", site["tmp"], "--target-frr", "0.02",
             "--max-frr", "0.02")
    assert stop.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    rc, _, err = _cli(capsys, "calibrate", "--config", site["cfg"], "--scans", site["tmp"], "--max-frr", "2")
    assert rc == 2 and "--max-frr must be between 0 and 1, got 2.0" in err


@pytest.mark.slow
def test_each_file_and_recording_is_a_scan_of_its_own(scans, site):
    """A folder of two scan images is two scans (a board cut by the file boundary is not joined
    back), a recording is one; each argument says what it gave, through the real CLI."""
    import cv2

    from edge_inspect.acquisition.recording import Recorder
    from edge_inspect.acquisition.replay import ReplaySource

    truth = json.loads((scans["good2"] / "ground_truth.json").read_text())
    b = truth["boards"][len(truth["boards"]) // 2]
    cut = (b["start_line"] + b["end_line"]) // 2   # inside a board
    img = cv2.imread(str(scans["good2"] / "scan.png"), cv2.IMREAD_UNCHANGED)
    split = site["tmp"] / "split"
    split.mkdir()
    cv2.imwrite(str(split / "a.png"), img[:cut])
    cv2.imwrite(str(split / "b.png"), img[cut:])
    rec = Recorder(site["tmp"] / "rec", width=512, channels=3, lines_per_frame=64, max_file_frames=50)
    for strip in ReplaySource(scans["good"] / "scan.png", 64, 5000.0).strips():
        if len(strip.lines) == 64:
            rec.write(strip)
    rec.close()

    report = site["tmp"] / "report"
    r = run_cli("--log-format", "json", "calibrate", "--config", site["cfg"], "--scans", split, site["tmp"] / "rec",
                "--target-frr", "0.05", "--report", report)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout.splitlines()
    assert out[:2] == [f"--scans {split}: 2 scans (one per image: not frames of camera.lines_per_frame lines)",
                       f"--scans {site['tmp'] / 'rec'}: 1 scan (recording)"]
    events = [json.loads(line) for line in r.stderr.splitlines() if line.startswith("{")]
    scored = {e["scan"]: e["boards"] for e in events if e["event"] == "scan_scored"}
    assert set(scored) == {str(split / "a.png"), str(split / "b.png"), str(site["tmp"] / "rec")}
    assert scored[str(site["tmp"] / "rec")] == 24
    # the board the cut went through is whole in neither file: read as one scan, the two files
    # would give exactly the truth's boards (fragments are debris, or boards of their own)
    assert scored[str(split / "a.png")] + scored[str(split / "b.png")] != len(truth["boards"])
    assert out[2].startswith("Boards scored: ") and "good (3 scans)" in out[2]
    assert not [e for e in events if e["event"] == "board_crop_failed"]   # worst boards drawn from the recording too
    assert (report / "report.html").read_text().count("data:image/png;base64,") == 2
