"""Parity gate: own Spearman/AUROC against hand-computed values, and the CLI on FP32 vs FP16
ONNX exports of a tiny trained model (CPU, ONNX Runtime)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_MODEL, run_cli

from edge_inspect.export.parity import average_ranks, compare, spearman


def test_average_ranks_share_ties() -> None:
    np.testing.assert_array_equal(average_ranks(np.array([3.0, 1.0, 3.0, 2.0, 3.0])), [4, 1, 4, 2, 4])


def test_spearman_with_ties_matches_pearson_of_ranks() -> None:
    a = np.array([1.0, 2.0, 2.0, 3.0, 5.0])
    b = np.array([1.0, 3.0, 2.0, 4.0, 4.0])
    ra, rb = np.array([1, 2.5, 2.5, 4, 5.0]), np.array([1, 3, 2, 4.5, 4.5])
    assert spearman(a, b) == pytest.approx(np.corrcoef(ra, rb)[0, 1])
    assert spearman(a, a * 10 + 3) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert np.isnan(spearman(a, np.ones(5)))


def test_gate_fails_on_rank_or_auroc_drift() -> None:
    ref = {"s": np.arange(10.0)}
    ok = compare(ref, {"s": np.arange(10.0) * 1.01}, ["s"], np.arange(10), np.r_[np.zeros(5), np.ones(5)])
    assert ok.passed and ok.scores[0].auroc_delta == 0.0
    swapped = np.arange(10.0)
    swapped[[4, 5]] = swapped[[5, 4]]  # one swap across the class boundary
    bad = compare(ref, {"s": swapped}, ["s"], np.arange(10), np.r_[np.zeros(5), np.ones(5)])
    assert not bad.passed
    assert any("Spearman" in p for p in bad.problems) and any("AUROC" in p for p in bad.problems)


@pytest.fixture(scope="module")
def fp16_pair(tiny_model, tmp_path_factory):
    """(FP32 onnx, FP16 onnx, tiles.npy, labels.npy): good tiles are noise like the training
    tiles, 'defect' tiles carry a black square."""
    from edge_inspect.export.onnx_export import export_onnx

    onnx, _ = tiny_model(3)
    d = tmp_path_factory.mktemp("parity")
    f16 = d / "tiny_fp16.onnx"
    export_onnx(onnx.parent / "model" / "model.pt", f16, fp16=True)
    rng = np.random.default_rng(7)
    tiles = rng.integers(0, 255, (24, 256, 256, 3), dtype=np.uint8)
    tiles[12:, 60:160, 60:160] = 0
    labels = np.r_[np.zeros(12), np.ones(12)].astype(np.int64)
    np.save(d / "tiles.npy", tiles)
    np.save(d / "labels.npy", labels)
    return onnx, f16, d / "tiles.npy", d / "labels.npy"


@pytest.mark.train
def test_parity_cli_fp32_vs_fp16(fp16_pair, tmp_path: Path) -> None:
    f32, f16, tiles, labels = fp16_pair
    out = tmp_path / "parity.json"
    r = run_cli("--progress-every", "0", "parity", "--reference", f32, "--candidate", f16, "--tiles", tiles,
                "--labels", labels, "--json", out)
    rep = json.loads(out.read_text())
    logged = [json.loads(x) for x in r.stderr.splitlines() if x.startswith("{")]
    prog = [e for e in logged if e.get("event") == "progress"]
    assert prog[-1] == {**prog[-1], "task": "parity", "done": 48, "total": 48, "finished": True}, prog[-1]
    assert {e.get("phase") for e in prog} == {"reference", "candidate"}
    assert rep["labelled"] and rep["n_tiles"] == 24
    assert {s["name"] for s in rep["scores"]} == {"latent_l2", "image_l1", "residual_max"}
    for s in rep["scores"]:
        assert s["auroc_delta"] is not None
        # scores are normalised (robust sigmas of good patches); latent_l2 of this one-epoch model
        # is nearly constant (raw MAD ~1e-7), so FP16's rounding of z moves it by whole sigmas,
        # a shift that keeps its ranks (the gate); the image scores stay within 1 % of a sigma
        if s["name"] != "latent_l2":
            assert s["max_abs"] < 0.01
    assert r.returncode == (0 if rep["passed"] else 1), r.stdout + r.stderr
    assert "spearman" in r.stdout and ("PASS" in r.stdout or "FAIL" in r.stdout)
    # the image-level score is the one thresholds use; FP16 keeps its order on these tiles
    img = next(s for s in rep["scores"] if s["name"] == "image_l1")
    assert img["spearman"] >= 0.999


@pytest.mark.train
def test_parity_cli_fails_for_another_model(fp16_pair) -> None:
    f32, _, tiles, _ = fp16_pair
    r = run_cli("parity", "--reference", DEMO_MODEL, "--candidate", f32, "--tiles", tiles, "--score", "image_l1")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL: image_l1: Spearman" in r.stdout


@pytest.mark.train
def test_parity_cli_refuses_mismatched_tiles(fp16_pair, tiny_model) -> None:
    f32, _, tiles, _ = fp16_pair
    grey, _ = tiny_model(1)
    r = run_cli("parity", "--reference", f32, "--candidate", grey, "--tiles", tiles)
    assert r.returncode == 1 and "3-channel" in r.stderr and "Traceback" not in r.stderr
