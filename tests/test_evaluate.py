"""Numpy detection metrics against values worked out by hand; `evaluate` and `train --contaminate`
end to end on tiny synthetic MVTec folders (and, when present, a slice of ../shared/data)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_inspect.cli import main
from edge_inspect.evaluation.metrics import (
    auroc,
    average_precision,
    f1_at,
    f1_max,
    iou_at,
    roc_curve,
)
from edge_inspect.evaluation.testset import list_test_images


def test_auroc_hand_values() -> None:
    # pairs (defect, good) ranked right: 3 of 4 -> 0.75
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert auroc([0, 1], [0.2, 0.9]) == 1.0 and auroc([1, 0], [0.2, 0.9]) == 0.0
    assert auroc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)  # a tie counts one half
    fpr, tpr, thr = roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    assert thr[0] == np.inf
    with pytest.raises(ValueError):
        auroc([1, 1], [0.1, 0.2])


def test_auroc_matches_scikit_learn_with_ties() -> None:
    """The project's one AUROC (evaluation, parity, quality benchmark) against scikit-learn's
    roc_auc_score, on random scores with many ties and on the parity gate's tie case."""
    sklearn_metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn (dev extra) not installed")
    rng = np.random.default_rng(7)
    for _ in range(50):
        n = int(rng.integers(2, 300))
        labels = rng.integers(0, 2, n)
        labels[:2] = [0, 1]
        scores = np.round(rng.normal(labels * rng.uniform(0, 2), 1.0), int(rng.integers(0, 3)))
        assert auroc(labels, scores) == pytest.approx(sklearn_metrics.roc_auc_score(labels, scores), abs=1e-12)
    assert auroc([0, 0, 1, 1], [0.1, 0.5, 0.5, 0.3]) == pytest.approx(2.5 / 4)


def test_average_precision_hand_values() -> None:
    # ranked: 0.8 (1), 0.4 (0), 0.35 (1), 0.1 (0): AP = 0.5*1 + 0.5*(2/3)
    assert average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.5 + 1 / 3)
    assert average_precision([0, 1, 1], [0.1, 0.5, 0.9]) == pytest.approx(1.0)


def test_f1_hand_values() -> None:
    y, s = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    # thresholds 0.8: P1 R.5 F1 2/3; 0.4: P.5 R.5 F1 .5; 0.35: P2/3 R1 F1 .8; 0.1: P.5 R1 F1 2/3
    best, thr = f1_max(y, s)
    assert best == pytest.approx(0.8) and thr == pytest.approx(0.35)
    assert f1_at(y, s, 0.5) == pytest.approx(2 / 3)
    assert f1_at(y, s, 0.9) == 0.0


def test_iou_hand_values() -> None:
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True  # 4 px
    amap = np.zeros((4, 4))
    amap[1:3, 1:3] = 1.0  # 4 px, 1 shared
    assert iou_at(mask, amap, 0.5) == pytest.approx(1 / 7)
    assert iou_at(np.zeros((2, 2)), np.zeros((2, 2)), 0.5) == 1.0


# -- edge-inspect evaluate and train --contaminate, end to end on a tiny synthetic MVTec folder --




@pytest.fixture(autouse=True)
def _structlog_defaults():
    """The CLI run in-process configures structlog (level, pytest's stream): put the defaults
    back so later tests log as usual."""
    import structlog

    yield
    structlog.reset_defaults()


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TINY_YAML = """\
tiling: {{tile_size: 32, stride: 32, segmenter: {{min_board_lines: 32}}}}
training: {{isize: 32, nc: {nc}, ngf: 4, ndf: 4, nz: 8, max_channels: 16, epochs: {epochs}, batch_size: 8,
           val_fraction: 0.2, data_mode: {mode}, seed: 3}}
"""


def _texture(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """A wood-like colour texture: a lit ramp, soft stripes and sensor noise."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi)
    base = 150 + 25 * np.sin(xx / 5.0 + phase) + 0.4 * (yy - size / 2) + rng.normal(0, 4, (size, size))
    rgb = np.stack([base, base * 0.85, base * 0.6], -1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def make_mvtec(root: Path, n_train: int = 20, n_good: int = 6, defects: dict[str, int] | None = None,
               seed: int = 0, masks: bool = True, grey_train: bool = False) -> Path:
    """train/good (colour, or grey with `grey_train`), test/good (half stored grey, so colour
    conversion is exercised), test/<defect> with dark 16x16 blobs (blob) or dark 3 px lines
    (scratch), and their masks."""
    rng = np.random.default_rng(seed)
    defects = {"blob": 5, "scratch": 4} if defects is None else defects

    def save(path: Path, img: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), img[..., ::-1] if img.ndim == 3 else img)

    for i in range(n_train):
        img = _texture(rng)
        save(root / "train" / "good" / f"{i:03d}.png", cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if grey_train else img)
    for i in range(n_good):
        img = _texture(rng)
        save(root / "test" / "good" / f"{i:03d}.png", img if i % 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY))
    for kind, n in defects.items():
        for i in range(n):
            img = _texture(rng)
            mask = np.zeros((64, 64), np.uint8)
            y, x = rng.integers(4, 44, 2)
            if kind == "blob":
                mask[y : y + 16, x : x + 16] = 255
            else:
                mask[y : y + 3, 4:60] = 255
            img[mask > 0] = (img[mask > 0] * 0.25).astype(np.uint8)
            save(root / "test" / kind / f"{i:03d}.png", img)
            if masks:
                save(root / "ground_truth" / kind / f"{i:03d}_mask.png", mask)
    return root


def _train(tmp: Path, data: Path, mode: str, nc: int, epochs: int = 3, contaminate: float | None = None) -> Path:
    cfg = tmp / f"cfg_{mode}.yaml"
    cfg.write_text(TINY_YAML.format(nc=nc, epochs=epochs, mode=mode), encoding="utf-8")
    out = tmp / f"model_{mode}"
    extra = ["--contaminate", str(contaminate)] if contaminate is not None else []
    assert main(["--log-level", "warning", "train", "--config", str(cfg), "--data", str(data),
                 "--out", str(out), *extra]) == 0
    return out / "model.pt"


@pytest.fixture(scope="module")
def mvtec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mvtec(tmp_path_factory.mktemp("mvtec") / "ds")


@pytest.fixture(scope="module")
def contaminated_model(tmp_path_factory: pytest.TempPathFactory, mvtec: Path) -> Path:
    """Resize mode, colour, 25 % contamination (5 of the 9 defect images mixed into training)."""
    pytest.importorskip("torch")
    return _train(tmp_path_factory.mktemp("resize"), mvtec, "resize", nc=3, contaminate=0.25)


@pytest.fixture(scope="module")
def tile_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tile mode (nine 32 px patches per 64 px image at the default stride 16), grey, trained
    clean on the grey twin of `mvtec` (same seed: the same test images)."""
    pytest.importorskip("torch")
    grey = make_mvtec(tmp_path_factory.mktemp("mvtec_grey") / "ds", grey_train=True)
    return _train(tmp_path_factory.mktemp("tile"), grey, "tile", nc=1, epochs=2)


SCORE_KEYS = {"auroc", "aupr", "f1_max", "f1_max_threshold", "val_max", "val_threshold", "f1_at_val",
              "tpr_at_val", "fpr_at_val", "per_type", "pixel_auroc", "iou_mean"}
DOC_KEYS = {"model", "model_family", "isize", "nc", "data_mode", "data", "score_names", "decision_score",
            "device", "seconds", "images_per_s", "test_set", "validation", "scores", "pixel", "worst",
            "plots", "images"}


@pytest.mark.train
def test_evaluate_end_to_end(contaminated_model: Path, mvtec: Path, tmp_path: Path, capsys) -> None:
    out_json, plots = tmp_path / "eval.json", tmp_path / "plots"
    capsys.readouterr()
    rc = main(["--log-format", "json", "--progress-every", "0", "evaluate", "--model", str(contaminated_model),
               "--data", str(mvtec), "--json", str(out_json), "--plots", str(plots), "--batch-size", "4"])
    stdout, stderr = capsys.readouterr()
    assert rc == 0
    logged = [json.loads(x) for x in stderr.splitlines() if x.startswith("{")]
    prog = [e for e in logged if e.get("event") == "progress"]
    assert prog and {e["task"] for e in prog} == {"evaluate"} and prog[-1]["finished"]
    assert prog[-1]["done"] == prog[-1]["total"] == 6 + 9 - 5 and prog[-1]["unit"] == "images"
    doc = json.loads(out_json.read_text())
    assert DOC_KEYS <= set(doc)
    names = doc["score_names"]
    assert names == ["latent_l2", "image_l1", "residual_max"] and doc["decision_score"] == "residual_max"
    contam = json.loads((contaminated_model.parent / "contamination.json").read_text())
    types = sorted(doc["test_set"]["by_type"])
    for name in names:
        m = doc["scores"][name]
        assert SCORE_KEYS <= set(m)
        for key in ("auroc", "aupr", "f1_max", "f1_at_val", "tpr_at_val", "fpr_at_val"):
            assert 0.0 <= m[key] <= 1.0, (name, key)
        assert sorted(m["per_type"]) == types
        assert all(0.0 <= v["auroc"] <= 1.0 and v["n"] >= 1 for v in m["per_type"].values())
        # one row per score in the table
        assert sum(line.startswith(name) for line in stdout.splitlines()) == 2  # metrics + per-type rows
    # the threshold is the first calibration's rule: max of the validation scores + 10 %
    with np.load(contaminated_model.parent / "validation_scores.npz") as z:
        for name in names:
            assert doc["scores"][name]["val_threshold"] == pytest.approx(float(z[name].max()) * 1.1, rel=1e-9)
            assert doc["scores"][name]["val_max"] == pytest.approx(float(z[name].max()))
    # pixel metrics on the residual_max map, masks resized to the 32 px map
    px = doc["pixel"]
    assert px["map"] == "residual_max" and px["threshold"] == doc["scores"]["residual_max"]["val_threshold"]
    assert 0.0 <= px["auroc"] <= 1.0 and 0.0 <= px["iou_mean"] <= 1.0
    assert px["iou_images"] == doc["test_set"]["defect"] and px["sample_rate"] == 1.0
    assert px["pixels_sampled"] == len(doc["images"]) * 32 * 32
    assert doc["scores"]["residual_max"]["pixel_auroc"] == px["auroc"]
    # the contaminated images are out of the reported test set, and counted
    tested = {im["path"] for im in doc["images"]}
    assert len(contam["images"]) == 5 and not tested & set(contam["images"])
    assert sorted(doc["test_set"]["excluded"]) == sorted(contam["images"])
    assert doc["test_set"]["good"] == 6 and doc["test_set"]["defect"] == 9 - 5
    assert "5 images left out" in stdout
    for name in ("roc.png", "histograms.png", "worst_cases.png"):
        assert (plots / name).stat().st_size > 1000
    assert len(doc["worst"]["good"]) == 4 and len(doc["worst"]["defect"]) == 4


@pytest.mark.train
def test_contamination_is_training_only_and_seeded(contaminated_model: Path, mvtec: Path) -> None:
    from edge_inspect.datasets.contamination import pick_contamination

    ckpt = contaminated_model.parent
    contam = json.loads((ckpt / "contamination.json").read_text())
    summary = json.loads((ckpt / "train.json").read_text())
    assert summary["config"]["contaminate"] == 0.25
    assert summary["contamination"]["n_images"] == 5 == round(0.25 * 20)
    assert contam["n_good_train"] == 20 and contam["seed"] == 3
    assert all(p.split("/")[1] in ("blob", "scratch") for p in contam["images"])
    # same seed, same pick; another seed, (here) another pick
    again = pick_contamination(mvtec, 0.25, seed=3)
    assert list(again.images) == contam["images"]
    assert list(pick_contamination(mvtec, 0.25, seed=4).images) != contam["images"]
    # validation is the clean good split (4 of 20 good images); the 5 defects went to training only
    assert summary["val_tiles"] == 4 and summary["train_tiles"] == 16 + 5
    with np.load(ckpt / "validation_scores.npz") as z:
        assert all(len(z[k]) == 4 for k in z.files)


@pytest.mark.train
def test_evaluate_tile_mode_stitches_maps(tile_model: Path, mvtec: Path, tmp_path: Path) -> None:
    from edge_inspect.datasets.images import read_image
    from edge_inspect.evaluation.evaluate import evaluate, image_view, stitch
    from edge_inspect.models.checkpoint import load_checkpoint
    from edge_inspect.models.scoring import score_tiles

    rep = evaluate(tile_model, mvtec, batch_size=4)  # 4 does not divide 9 tiles/image: batches span images
    doc = rep.doc
    assert doc["data_mode"] == "tile" and doc["nc"] == 1 and doc["test_set"]["excluded_contaminated"] == 0
    assert doc["test_set"]["defect"] == 9 and not (tile_model.parent / "contamination.json").exists()
    assert json.loads((tile_model.parent / "train.json").read_text())["contamination"] is None
    model, _ = load_checkpoint(tile_model)
    item = rep.items[-1]
    tiles, view, origins = image_view(read_image(item.path, 1), 32, "tile", stride=16)  # the default: isize / 2
    assert tiles.shape == (9, 32, 32, 1) and view.shape == (64, 64, 1) and len(origins) == 9
    direct = score_tiles(model, tiles)
    for name in doc["score_names"]:  # image score = the worst of its tiles
        assert rep.scores[name][-1] == pytest.approx(float(direct[name].max()), rel=1e-5)
    # the stitched residual_max map: full image size, and its maximum is the image's score
    from edge_inspect.evaluation.evaluate import _Scorer

    _, maps = _Scorer(model, 8)(tiles)
    amap = stitch(maps, origins, (64, 64))
    assert amap.shape == (64, 64) and np.isfinite(amap).all()
    assert float(amap.max()) == pytest.approx(float(direct["residual_max"].max()), rel=1e-5)
    assert doc["pixel"]["pixels_sampled"] == len(doc["images"]) * 64 * 64


def _error(capsys, *argv: str) -> str:
    capsys.readouterr()
    rc = main(["--log-level", "error", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1, err
    assert len(err) == 1 and err[0].startswith("edge-inspect: error: "), err
    return err[0]


@pytest.mark.train
def test_evaluate_bad_inputs(tile_model: Path, mvtec: Path, tmp_path: Path, capsys) -> None:
    import shutil

    ev = ["evaluate", "--model", str(tile_model), "--data"]
    assert "nope: dataset folder not found" in _error(capsys, *ev, str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    assert "test: missing" in _error(capsys, *ev, str(tmp_path / "empty"))
    only_good = make_mvtec(tmp_path / "only_good", n_train=1, n_good=2, defects={})
    assert "no defect classes" in _error(capsys, *ev, str(only_good))
    broken = make_mvtec(tmp_path / "broken", n_train=1, n_good=2, defects={"blob": 2})
    (broken / "test" / "blob" / "001.png").write_bytes(b"\x89PNG not really")
    assert "001.png: not a readable image" in _error(capsys, *ev, str(broken))
    assert "checkpoint not found" in _error(capsys, "evaluate", "--model", str(tmp_path / "x.pt"),
                                            "--data", str(mvtec))
    junk = tmp_path / "junk" / "model.pt"
    junk.parent.mkdir()
    junk.write_bytes(b"not a checkpoint")
    assert "not a readable edge-inspect checkpoint" in _error(capsys, "evaluate", "--model", str(junk),
                                                              "--data", str(mvtec))
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(tile_model, lone / "model.pt")
    assert "validation_scores.npz: missing" in _error(capsys, "evaluate", "--model", str(lone / "model.pt"),
                                                      "--data", str(mvtec))
    # a contaminated run whose list was lost must not be scored as if it saw no test image
    shutil.copy(tile_model.parent / "validation_scores.npz", lone)
    (lone / "train.json").write_text(json.dumps({"config": {"contaminate": 0.1}}))
    assert "contamination.json: missing" in _error(capsys, "evaluate", "--model", str(lone / "model.pt"),
                                                   "--data", str(mvtec))


@pytest.mark.train
def test_contaminate_bad_inputs(mvtec: Path, tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(TINY_YAML.format(nc=3, epochs=1, mode="resize"), encoding="utf-8")
    base = ["train", "--config", str(cfg), "--data", str(mvtec), "--out", str(tmp_path / "m")]
    capsys.readouterr()
    assert main(["--log-level", "error", *base, "--contaminate", "0.7"]) == 78
    assert "--contaminate 0.7" in capsys.readouterr().err
    few = make_mvtec(tmp_path / "few", n_train=20, n_good=1, defects={"blob": 2})
    msg = _error(capsys, "train", "--config", str(cfg), "--data", str(few), "--out", str(tmp_path / "m"),
                 "--contaminate", "0.3")
    assert "needs 6 defect images" in msg and "only 2" in msg


def test_list_test_images_excludes_and_masks(tmp_path: Path) -> None:
    root = make_mvtec(tmp_path / "ds", n_train=1, n_good=2, defects={"blob": 2, "scratch": 1})
    (root / "ground_truth" / "scratch" / "000_mask.png").unlink()
    items, dropped = list_test_images(root, exclude=["test/blob/000.png", "test/blob/zzz.png"])
    assert [it.rel for it in items] == ["test/blob/001.png", "test/good/000.png", "test/good/001.png",
                                        "test/scratch/000.png"]
    assert dropped == ["test/blob/000.png"]
    assert items[0].mask is not None and items[0].label == 1 and items[1].mask is None and items[1].label == 0
    assert items[3].mask is None


@pytest.mark.train
def test_evaluate_real_magnetic_tile_subset(tmp_path: Path) -> None:
    """Optional: a real dataset from ../shared/data (skipped where it is absent), tiny model."""
    src = SHARED / "magnetic_tile"
    if not (src / "test").is_dir():
        pytest.skip(f"{src} not present")
    pytest.importorskip("torch")
    import shutil

    ds = tmp_path / "mt"  # a subset keeps this under the time budget on 2 cores
    for sub, n in (("train/good", 60), ("test/good", 20)):
        (ds / sub).mkdir(parents=True)
        for p in sorted((src / sub).iterdir())[:n]:
            shutil.copy(p, ds / sub / p.name)
    for kind in ("blowhole", "crack"):
        (ds / "test" / kind).mkdir(parents=True)
        (ds / "ground_truth" / kind).mkdir(parents=True)
        for p in sorted((src / "test" / kind).iterdir())[:8]:
            shutil.copy(p, ds / "test" / kind / p.name)
            m = src / "ground_truth" / kind / f"{p.stem}_mask.png"
            if m.is_file():
                shutil.copy(m, ds / "ground_truth" / kind / m.name)
    model = _train(tmp_path, ds, "resize", nc=1, epochs=1)
    from edge_inspect.evaluation.evaluate import evaluate

    doc = evaluate(model, ds, batch_size=16).doc
    assert doc["test_set"] == {"good": 20, "defect": 16, "by_type": {"blowhole": 8, "crack": 8},
                               "excluded_contaminated": 0, "excluded": []}
    assert all(0.0 <= m["auroc"] <= 1.0 for m in doc["scores"].values())
    assert doc["pixel"] is not None and 0.0 <= doc["pixel"]["auroc"] <= 1.0


def test_per_type_table_keeps_whole_type_names() -> None:
    from edge_inspect.evaluation.report import EvalReport

    metrics = {"auroc": 0.9, "aupr": 0.8, "f1_max": 0.7, "f1_max_threshold": 0.5, "val_threshold": 0.6,
               "f1_at_val": 0.6, "tpr_at_val": 0.5, "fpr_at_val": 0.1, "pixel_auroc": None, "iou_mean": None,
               "per_type": {"black_stain": {"auroc": 0.875}, "knot": {"auroc": 0.5}}}
    doc = {"data": "d", "model": "m.pt", "model_family": "ganomaly", "data_mode": "tile", "isize": 256, "nc": 3,
           "validation": {"n": 10}, "decision_score": "residual_max", "pixel": None, "scores": {"residual_max": metrics},
           "test_set": {"good": 4, "defect": 2, "by_type": {"black_stain": 1, "knot": 1}, "excluded_contaminated": 0}}
    lines = EvalReport(doc).lines()
    head = next(line for line in lines if line.startswith("AUROC by type"))
    row = next(line for line in lines if line.startswith("residual_max ") and "0.875" in line)
    assert head.split()[3:] == ["black_stain", "knot"]
    assert head.index("black_stain") + len("black_stain") == row.index("0.875") + len("0.875")  # aligned
