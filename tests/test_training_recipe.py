"""The small-set training recipe (issue 13): data in the forms plants have it, patches at native
resolution, augmentation within its limits, a split by image, checkpoint selection on held-out
good patches only, and normalised scores; all on tiny synthetic data in a few seconds."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import run_cli

from edge_inspect.config import Config
from edge_inspect.datasets.images import image_tiles, tile_origins
from edge_inspect.datasets.patches import PatchSet, split_images
from edge_inspect.datasets.sources import training_data
from edge_inspect.errors import ConfigError, InputDataError
from edge_inspect.tiling.cutter import grid_positions
from edge_inspect.training.proxy import with_proxy_defects
from edge_inspect.training_config import TrainingConfig

TINY = dict(ngf=4, ndf=4, nz=8, max_channels=16)


def _grain(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Grey 'good surface': soft stripes, a lit ramp and noise."""
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    img = 130 + 30 * np.sin(xx / 4.0 + rng.uniform(0, 6)) + 0.3 * (yy - h / 2) + rng.normal(0, 3, (h, w))
    return np.clip(img, 0, 255).astype(np.uint8)


def _cfg(**training) -> Config:
    t = {"isize": 32, "nc": 1, **TINY, **training}
    return Config.model_validate({"tiling": {"tile_size": 32, "stride": 32, "segmenter": {"min_board_lines": 32}},
                                  "training": t})


# -- data forms ---------------------------------------------------------------------------------
def test_training_data_reads_every_form_and_says_which(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    mvtec = tmp_path / "mvtec"
    (mvtec / "train" / "good").mkdir(parents=True)
    (mvtec / "test" / "crack").mkdir(parents=True)
    folder = tmp_path / "good"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(mvtec / "train" / "good" / f"{i}.png"), _grain(rng, 50, 70))
        cv2.imwrite(str(folder / f"board_{i}.jpg"), _grain(rng, 40, 90))
    (mvtec / "test" / "crack" / "broken.png").write_bytes(b"not an image")  # never read by training
    d = training_data(mvtec, _cfg())
    assert d.kind == "mvtec" and len(d.images) == 3 and d.images[0].shape == (50, 70, 1)  # native size
    assert "MVTec-layout folder" in d.describe() and len(d.manifest()["files"]) == 3
    d = training_data(folder, _cfg())
    assert d.kind == "images" and [im.shape for im in d.images] == [(40, 90, 1)] * 3
    assert all(len(f["sha256"]) == 64 for f in d.manifest()["files"])
    d = training_data(folder, _cfg(data_mode="resize"))
    assert [im.shape for im in d.images] == [(32, 32, 1)] * 3  # squeezed only when asked


def test_scan_and_recording_are_cut_by_the_run_time_tiler(tmp_path: Path) -> None:
    from edge_inspect.acquisition.recording import Recorder
    from edge_inspect.acquisition.replay import ReplaySource

    rng = np.random.default_rng(1)
    scan = np.zeros((200, 96, 1), np.uint8)
    scan[20:90, :, 0] = _grain(rng, 70, 96)
    scan[120:190, :, 0] = _grain(rng, 70, 96)
    path = tmp_path / "scan.png"
    cv2.imwrite(str(path), scan[:, :, 0])
    cfg = _cfg()
    d = training_data(path, cfg)
    assert d.kind == "scan" and all(im.shape == (32, 32, 1) for im in d.images) and len(d.images) > 4
    assert sorted(set(d.groups)) == [1, 2] and len(d.groups) == len(d.images)  # tiles know their board
    src = ReplaySource(path, 50, 5000)
    with Recorder(tmp_path / "rec", width=96, channels=1, lines_per_frame=50, max_bytes=1 << 30,
                  max_file_frames=100) as rec:
        for strip in src.strips():
            rec.write(strip)
    r = training_data(tmp_path / "rec", cfg)
    assert r.kind == "recording" and len(r.images) == len(d.images)
    np.testing.assert_array_equal(np.stack(r.images), np.stack(d.images))


def test_grey_colour_mismatch_names_both(tmp_path: Path) -> None:
    folder = tmp_path / "good"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.zeros((40, 40, 3), np.uint8) + 90)
    with pytest.raises(ConfigError, match=r"a\.png is colour \(3 channels\) but training.nc is 1"):
        training_data(folder, _cfg())
    with pytest.raises(InputDataError, match="not found"):
        training_data(tmp_path / "nope", _cfg())
    with pytest.raises(ConfigError, match="training.isize .64. must equal tiling.tile_size .32."):
        training_data(folder, _cfg(isize=64))


def test_train_cli_says_what_it_read(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    folder, more = tmp_path / "good", tmp_path / "more"
    folder.mkdir()
    more.mkdir()
    rng = np.random.default_rng(2)
    for i in range(6):
        cv2.imwrite(str(folder / f"{i}.png"), _grain(rng, 48, 64))
    for i in range(3):
        cv2.imwrite(str(more / f"{i}.png"), _grain(rng, 40, 80))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("tiling: {tile_size: 32, stride: 32, segmenter: {min_board_lines: 32}}\n"
                   "training: {isize: 32, nc: 1, ngf: 4, ndf: 4, nz: 8, max_channels: 16, epochs: 1, batch_size: 4,\n"
                   "           val_fraction: 0.34, val_every: 8}\n")
    r = run_cli("train", "--config", cfg, "--data", folder, more, "--out", tmp_path / "m")
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"training data: folder of good images {folder}: 6 images from 6 file(s)" in r.stdout
    assert f"training data: folder of good images {more}: 3 images from 3 file(s)" in r.stdout
    summary = json.loads((tmp_path / "m" / "train.json").read_text())
    assert summary["trained_on"]["kind"] == "images" and len(summary["trained_on"]["files"]) == 9
    assert summary["train_images"] + summary["val_images"] == 9


# -- patches, split, augmentation ----------------------------------------------------------------
def test_patch_grid_is_the_tilers_grid_and_crops_stay_inside() -> None:
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (70, 100, 1), dtype=np.uint8)
    ps = PatchSet.of([img], 32, 16)
    assert ps.origins(0) == [(y, x) for y in grid_positions(70, 32, 16) for x in grid_positions(100, 32, 16)]
    assert ps.origins(0)[-1] == (70 - 32, 100 - 32)  # the last row and column sit on the edge
    grid, owner = ps.grid()
    assert len(grid) == ps.grid_count() == len(tile_origins(70, 100, 32, 16)) and set(owner) == {0}
    np.testing.assert_array_equal(grid[-1], img[38:, 68:])
    crops = ps.sample(rng, 200)
    windows = {img[y:y + 32, x:x + 32].tobytes() for y in range(39) for x in range(69)}
    assert all(c.tobytes() in windows for c in crops)  # every crop is a window of the image
    small = rng.integers(0, 256, (20, 50, 1), dtype=np.uint8)  # shorter than a tile: padded, not resized
    tiles, _, view = image_tiles(small, 32)
    assert view.shape[:2] == (32, 50) and (view[6:26] == small).all() and tiles.shape[1:] == (32, 32, 1)


def test_split_is_by_image_seeded_and_disjoint() -> None:
    tr, va = split_images(10, 0.2, seed=3)
    tr2, va2 = split_images(10, 0.2, seed=3)
    assert list(va) == list(va2) and len(va) == 2 and len(tr) == 8 and not set(tr) & set(va)
    assert len(split_images(3, 0.01, 0)[1]) == 1  # at least one validation image
    assert len(split_images(1, 0.5, 0)[1]) == 0
    groups = [1, 1, 1, 2, 2, 3, 3, 3, 3, 4]  # a scan's tiles: a board is held out whole
    tr, va = split_images(10, 0.25, seed=1, groups=groups)
    assert {groups[i] for i in tr}.isdisjoint({groups[i] for i in va}) and len(tr) + len(va) == 10


def test_augmentation_keeps_good_product_within_its_limits() -> None:
    torch = pytest.importorskip("torch")
    from edge_inspect.training.augment import flip, jitter

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 16, 16) * 1.2 - 0.6  # inside [-1, 1]
    y = jitter(x, gen, brightness=0.05, contrast=0.1)
    assert y.min() >= -1 and y.max() <= 1
    shift = (y.mean((1, 2, 3)) - x.mean((1, 2, 3))).abs()
    assert shift.max() <= 2 * 0.05 + 1e-6 and shift.max() > 0  # at most 5 % of the grey range
    spread = y.std((1, 2, 3)) / x.std((1, 2, 3))
    assert spread.min() >= 0.9 - 1e-4 and spread.max() <= 1.1 + 1e-4
    f = flip(x, gen)
    assert torch.equal(f.flatten(1).sort(1).values, x.flatten(1).sort(1).values)  # same pixels, moved


def test_proxy_defects_are_seeded_local_changes() -> None:
    rng = np.random.default_rng(4)
    good = np.stack([_grain(rng, 32, 32)[..., None] for _ in range(9)])
    a, b = with_proxy_defects(good, 7), with_proxy_defects(good, 7)
    np.testing.assert_array_equal(a, b)
    changed = (a != good).reshape(9, -1).mean(1)
    assert (changed > 0).all() and (changed < 0.5).all()


# -- the recipe end to end -------------------------------------------------------------------------
def test_recipe_selects_on_validation_and_normalises_scores(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from edge_inspect.models.checkpoint import load_checkpoint
    from edge_inspect.models.scoring import score_tiles
    from edge_inspect.training.loop import train

    rng = np.random.default_rng(5)
    tint = np.array([1.0, 0.85, 0.65])  # wood-coloured, so colour_max and the composite are tested too
    images = [(_grain(rng, 64, 96)[..., None] * tint).astype(np.uint8) for _ in range(10)]
    cfg = TrainingConfig(isize=32, nc=3, epochs=3, batch_size=8, val_fraction=0.2, val_every=32,
                         decision_score="auto", **TINY,
                         scores=["latent_l2", "image_l1", "residual_max", "colour_max", "residual_colour"])
    res = train(cfg, images, tmp_path)
    summary = json.loads((tmp_path / "train.json").read_text())
    assert summary["train_images"] == 8 and summary["val_images"] == 2
    assert summary["val_patches"] == 2 * len(tile_origins(64, 96, 32, 16))
    vals = summary["validations"]
    assert len(vals) >= 3 and all(set(v["proxy_auroc"]) == set(cfg.score_names()) for v in vals)
    best = max(range(len(vals)), key=lambda i: vals[i]["proxy_auroc"][res.decision_score])
    assert summary["selected"]["validation"] == res.selected["validation"]
    # the kept state is the best validation for the chosen score (ties: the first)
    assert vals[res.selected["validation"]]["proxy_auroc"][res.decision_score] == vals[best]["proxy_auroc"][res.decision_score]
    final = summary["proxy_auroc_final"]
    assert res.decision_score == max(final, key=final.get)  # auto: best proxy on validation patches
    model, saved = load_checkpoint(res.checkpoint)
    assert saved.decision_score == res.decision_score and set(model.normalization()) == set(cfg.score_names())
    with np.load(tmp_path / "validation_scores.npz") as z:
        for name in z.files:  # normalised on the validation patches: median 0, robust sigma 1
            v = z[name]
            assert abs(np.median(v)) < 1e-4 and np.median(np.abs(v)) * 1.4826 == pytest.approx(1.0, rel=1e-3)
    with np.load(tmp_path / "validation_images.npz") as z:
        assert all(len(z[k]) == 2 for k in z.files)
    # the checkpoint scores as training said, in normalised units
    val = PatchSet.of([images[i] for i in split_images(10, 0.2, 0)[1]], 32, 16).grid(1024, np.random.default_rng(0))[0]
    got = score_tiles(model, val)
    with np.load(tmp_path / "validation_scores.npz") as z:
        np.testing.assert_allclose(got[res.decision_score], z[res.decision_score], rtol=1e-4, atol=1e-4)
    assert torch.is_tensor(model.score_norm)


def test_recipe_refuses_images_of_the_wrong_channels(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from edge_inspect.training.loop import train

    with pytest.raises(InputDataError, match="1 channel.* training.nc is 3"):
        train(TrainingConfig(isize=32, nc=3, epochs=1, batch_size=4, **TINY),
              [np.zeros((40, 40, 1), np.uint8)] * 4, tmp_path)
