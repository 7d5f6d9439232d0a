"""Calibration that keeps its promise (issue 14): the model says what it was trained on and
`calibrate` refuses those scans as fresh boards; the false-reject bound a calibration states
holds on good boards it never saw. Everything through the real CLI, in tmp folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import run_cli

from edge_inspect.inference.engine_manifest import engine_trained_on
from edge_inspect.inference.manifest import read_manifest, sha256_file

TINY_TRAINING = {"isize": 64, "nc": 3, "ngf": 4, "ndf": 4, "nz": 8, "max_channels": 16, "epochs": 1,
                 "batch_size": 8, "val_fraction": 0.25, "val_every": 8}


def _synth(out: Path, boards: int, seed: int, *extra: str) -> Path:
    r = run_cli("synth", "--out", out, "--boards", boards, "--defect-rate", "0", "--seed", seed, *extra)
    assert r.returncode == 0, r.stderr
    return out


def _config(tmp: Path, backend: dict, cal: Path, **sections) -> Path:
    cfg = tmp / f"config-{backend['type']}.yaml"
    cfg.write_text(yaml.safe_dump({"inference": {"backend": backend}, "decision": {"calibration": str(cal)},
                                   "output": {"records_dir": str(tmp / "records")}, **sections}))
    return cfg


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """A tiny model trained (train CLI) on one synth scan and exported (export CLI)."""
    pytest.importorskip("torch")
    tmp = tmp_path_factory.mktemp("trained_on")
    small = ("--width", "256", "--board-lines", "256", "300")
    train = _synth(tmp / "train", 4, 8811, *small)
    cal = tmp / "cal" / "current.yaml"
    cal.parent.mkdir()
    sections = {"tiling": {"tile_size": 64, "stride": 64}, "training": TINY_TRAINING}
    cfg = _config(tmp, {"type": "onnxruntime", "model": str(tmp / "tiny.onnx")}, cal, **sections)
    r = run_cli("train", "--config", cfg, "--data", train, "--out", tmp / "m")
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_cli("export", "--model", tmp / "m" / "model.pt", "--out", tmp / "tiny.onnx", "--calibration", cal)
    assert r.returncode == 0, r.stderr[-2000:]
    torch_cfg = _config(tmp, {"type": "torch", "model": str(tmp / "m" / "model.pt")}, cal, **sections)
    return {"tmp": tmp, "train": train, "fresh": _synth(tmp / "fresh", 8, 8812, *small), "cfg": cfg,
            "torch_cfg": torch_cfg, "cal": cal, "onnx": tmp / "tiny.onnx"}


@pytest.mark.slow
@pytest.mark.train
def test_export_copies_what_the_model_was_trained_on(tiny) -> None:
    trained_on = read_manifest(tiny["onnx"])["trained_on"]
    assert trained_on["kind"] == "scan"
    assert trained_on["files"] == [{"path": str(tiny["train"] / "scan.png"),
                                    "sha256": sha256_file(tiny["train"] / "scan.png")}]
    # a TensorRT plan's manifest points at its ONNX, whose manifest says it
    plan = tiny["tmp"] / "tiny.plan"
    assert engine_trained_on(plan, {"onnx": {"file": "tiny.onnx"}, "model_sha256": sha256_file(tiny["onnx"])}) == trained_on
    assert engine_trained_on(plan, {"onnx": {"file": "tiny.onnx"}, "model_sha256": "0" * 64}) is None  # another ONNX
    assert engine_trained_on(plan, {"onnx": {"file": "gone.onnx"}, "model_sha256": "0" * 64}) is None


@pytest.mark.slow
@pytest.mark.train
@pytest.mark.parametrize("backend", ["cfg", "torch_cfg"])
def test_calibrate_refuses_training_scans(tiny, backend) -> None:
    before = sorted(p.name for p in tiny["cal"].parent.iterdir())
    r = run_cli("calibrate", "--config", tiny[backend], "--scans", tiny["fresh"], tiny["train"], "--target-frr", "0.2")
    assert r.returncode == 1
    train_scan = tiny["train"] / "scan.png"
    assert r.stderr.strip().splitlines()[-1] == (
        f"edge-inspect: error: --scans {tiny['train']}: {train_scan} was training data of the model (scan.png has "
        f"the sha256 of training file {train_scan}); a false-reject rate measured on boards the model learned is "
        f"optimistic: calibrate on scans it never saw, or pass --allow-training-scans")
    assert "Traceback" not in r.stderr
    assert sorted(p.name for p in tiny["cal"].parent.iterdir()) == before  # nothing written
    # passed as defect scans too: still refused, naming the option
    r = run_cli("calibrate", "--config", tiny[backend], "--scans", tiny["fresh"], "--defect-scans", tiny["train"],
                "--target-frr", "0.2")
    assert r.returncode == 1 and f"--defect-scans {tiny['train']}: " in r.stderr


@pytest.mark.slow
@pytest.mark.train
def test_allowed_training_scans_make_the_estimate_optimistic(tiny) -> None:
    report = tiny["tmp"] / "report-allowed"
    r = run_cli("calibrate", "--config", tiny["cfg"], "--scans", tiny["fresh"], tiny["train"], "--target-frr", "0.2",
                "--allow-training-scans", "--report", report)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout.splitlines()
    assert f"--scans {tiny['train']}: 1 scan (synth folder: scan.png)" in out
    assert f"--scans {tiny['train']}: {tiny['train'] / 'scan.png'} was training data of the model " \
           "(allowed by --allow-training-scans)" in out
    assert any(line.startswith("Optimistic: 1 of the good scans were training data of the model") for line in out)
    summary = json.loads((report / "summary.json").read_text())
    assert summary["false_rejects"]["optimistic"] is True
    assert summary["training_scans"] == [str(tiny["train"] / "scan.png")]
    assert "Optimistic" in summary["false_rejects"]["statement"]
    assert "training data of the model, allowed" in summary["calibration"]["source"]
    # fresh scans only: no note, and the estimate is not flagged
    r = run_cli("calibrate", "--config", tiny["cfg"], "--scans", tiny["fresh"], "--target-frr", "0.2",
                "--report", tiny["tmp"] / "report-fresh")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "training data" not in r.stdout
    assert json.loads((tiny["tmp"] / "report-fresh" / "summary.json").read_text())["false_rejects"]["optimistic"] is False


# ---------------------------------------------------------------------------- the promise


@pytest.mark.slow
def test_stated_false_reject_bound_holds_on_fresh_good_boards(site) -> None:
    """Calibrate the shipped model on fresh good boards; on another fresh set the share of good
    boards rejected lies within the upper bound the calibration stated. By the bound's own
    definition about 1 calibration in 20 falls short of it (and the fresh set's noise adds a
    little): the seeds are fixed, so this is deterministic, and if a new model makes it fail, try
    other seeds before calling the promise broken."""
    narrow = ("--width", "512", "--board-lines", "300", "500")
    cal_a = _synth(site["tmp"] / "cal-a", 60, 61001, *narrow)
    cal_b = _synth(site["tmp"] / "cal-b", 60, 61002, *narrow)
    fresh = _synth(site["tmp"] / "fresh", 120, 61003, *narrow)
    report = site["tmp"] / "report"
    r = run_cli("--log-format", "json", "calibrate", "--config", site["cfg"], "--scans", cal_a, cal_b,
                "--target-frr", "0.05", "--report", report)
    assert r.returncode == 0, r.stderr[-2000:]
    # the shipped manifest lists what the model was trained on; these fresh scans are not among them
    assert "training_scans_unchecked" not in r.stderr and "training data" not in r.stdout
    summary = json.loads((report / "summary.json").read_text())
    frr = summary["false_rejects"]
    assert frr["good_boards"] == 120 and frr["rejected"] == 6 and frr["optimistic"] is False
    bound = frr["upper_bound"]
    assert 0.05 < bound < 0.12  # 6 in 120 at 95 %: about 9.6 %
    assert f"at most {100 * bound:.1f} % with 95 % confidence" in r.stdout
    assert f"at most {100 * bound:.1f} % with 95 % confidence" in (report / "report.html").read_text()

    cfg = yaml.safe_load(site["cfg"].read_text())
    cfg["decision"]["calibration"] = str(report / "proposed.yaml")
    proposed_cfg = site["tmp"] / "proposed.yaml"
    proposed_cfg.write_text(yaml.safe_dump(cfg))
    r = run_cli("replay", fresh / "scan.png", "--config", proposed_cfg, "--out", site["tmp"] / "fresh-records")
    assert r.returncode == 0, r.stderr[-2000:]
    records = [json.loads(x) for x in (site["tmp"] / "fresh-records" / "boards.jsonl").read_text().splitlines()]
    assert len(records) == 120
    rejected = sum(rec["verdict"] == "reject" for rec in records)
    assert rejected / len(records) <= bound, (rejected, bound)

    # the same boards read as a ceiling: the threshold whose bound stays within 5 %
    bounded = site["tmp"] / "report-bound"
    r = run_cli("calibrate", "--config", site["cfg"], "--scans", cal_a, cal_b, "--max-frr", "0.05",
                "--report", bounded)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Target false-reject rate: at most 5 % with 95 % confidence" in r.stdout.splitlines()
    summary_b = json.loads((bounded / "summary.json").read_text())
    frr_b = summary_b["false_rejects"]
    assert frr_b["rejected"] == 1 and frr_b["upper_bound"] <= 0.05  # 1 in 120: 3.9 %; 2 in 120: 5.2 %
    assert summary_b["calibration"]["target_rule"] == "bound"
    assert summary_b["calibration"]["tile_threshold"] > summary["calibration"]["tile_threshold"]
    cfg["decision"]["calibration"] = str(bounded / "proposed.yaml")
    proposed_cfg.write_text(yaml.safe_dump(cfg))
    r = run_cli("replay", fresh / "scan.png", "--config", proposed_cfg, "--out", site["tmp"] / "fresh-records-b")
    assert r.returncode == 0, r.stderr[-2000:]
    records = [json.loads(x) for x in (site["tmp"] / "fresh-records-b" / "boards.jsonl").read_text().splitlines()]
    assert len(records) == 120
    assert sum(rec["verdict"] == "reject" for rec in records) / len(records) <= 0.05
