"""benchmarks/quality.py: its results schema on a tiny stand-in dataset (the real datasets take
20 minutes a model), and its clear skip when the data folder is absent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT

SCRIPT = ROOT / "benchmarks" / "quality.py"
FIELDS = {"dataset", "model", "score", "image_auroc", "pixel_auroc", "f1_at_validation_threshold", "train_seconds",
          "epochs", "patches_seen", "machine", "commit"}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)


def _dataset(root: Path) -> None:
    """An MVTec-layout grey set in the shape of KolektorSDD, small: stripes with dark defects."""
    rng = np.random.default_rng(0)

    def img() -> np.ndarray:
        xx = np.arange(160)[None, :]
        return np.clip(120 + 25 * np.sin(xx / 5.0) + rng.normal(0, 3, (200, 160)), 0, 255).astype(np.uint8)

    for split, n in (("train/good", 8), ("test/good", 3)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(root / split / f"{i}.png"), img())
    (root / "test/defect").mkdir(parents=True)
    (root / "ground_truth/defect").mkdir(parents=True)
    for i in range(3):
        im, mask = img(), np.zeros((200, 160), np.uint8)
        mask[80:100, 40:120] = 255
        im[mask > 0] = 20
        cv2.imwrite(str(root / "test/defect" / f"{i}.png"), im)
        cv2.imwrite(str(root / "ground_truth/defect" / f"{i}_mask.png"), mask)


@pytest.mark.slow
@pytest.mark.train
def test_results_schema_and_attempt_log(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    _dataset(tmp_path / "data" / "kolektorsdd")
    out = tmp_path / "q" / "results.json"
    r = _run("--data", str(tmp_path / "data"), "--datasets", "kolektorsdd", "magnetic_tile", "--models",
             "ganomaly", "--minutes", "0.02", "--out", str(out), "--work", str(tmp_path / "work"))
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    assert "skipped magnetic_tile" in r.stdout  # absent here: said, not failed
    rows = json.loads(out.read_text())
    assert rows and all(FIELDS <= set(row) for row in rows), rows
    assert {row["score"] for row in rows} == {"latent_l2", "image_l1", "residual_max"}
    assert sum(row["decision"] for row in rows) == 1
    for row in rows:
        assert 0 <= row["image_auroc"] <= 1 and 0 <= row["f1_at_validation_threshold"] <= 1
        assert row["patches_seen"] > 0 and row["epochs"] >= 1 and row["train_seconds"] > 0
    assert next(row for row in rows if row["score"] == "residual_max")["pixel_auroc"] is not None
    attempts = (out.parent / "attempts.jsonl").read_text().splitlines()
    assert len(attempts) == len(rows)
    table = _run("--out", str(out), "--table")
    assert "| kolektorsdd | ganomaly |" in table.stdout


def test_skips_clearly_without_the_data(tmp_path: Path) -> None:
    r = _run("--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r.json"))
    assert r.returncode == 0 and r.stdout.count("skipped") == 2 and "not found" in r.stdout
    assert not (tmp_path / "r.json").exists()
