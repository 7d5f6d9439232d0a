"""Model zoo: every family builds, trains a few steps, scores in one pass and exports to ONNX
with ORT matching torch (tiny sizes: isize 32/64, ngf 4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge_inspect.errors import InputDataError  # noqa: E402
from edge_inspect.models.blocks import ASPP, SelfAttention  # noqa: E402
from edge_inspect.models.checkpoint import build_scoring_model, load_checkpoint  # noqa: E402
from edge_inspect.models.registry import build_nets  # noqa: E402
from edge_inspect.models.scoring import (  # noqa: E402
    ALL_SCORES,
    SCORE_NAMES,
    REL_FLOOR,
    ScoringModel,
    map_tiles,
    score_tiles,
)
from edge_inspect.models.skip import SkipGenerator, default_attention_blocks  # noqa: E402
from edge_inspect.training.augment import mse_augment  # noqa: E402
from edge_inspect.training.loop import train  # noqa: E402
from edge_inspect.training_config import TrainingConfig  # noqa: E402

pytestmark = pytest.mark.train

FAMILIES = ("ganomaly", "skip_ganomaly", "skip_attention", "skip_ganomaly_pp")
TINY = dict(ngf=4, ndf=4, nz=8, max_channels=16)


def _tiles(n: int, size: int, nc: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(60, 190, size, dtype=np.float32)
    base = np.broadcast_to(ramp[None, None, :, None], (1, size, size, nc))
    offs = rng.uniform(-30, 30, size=(n, 1, 1, 1))
    noise = rng.normal(0, 4, size=(n, size, size, nc))
    return np.clip(base + offs + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("model", FAMILIES)
@pytest.mark.parametrize("isize,nc", [(32, 3), (64, 1)])
def test_forward_shapes_and_scores(model: str, isize: int, nc: int) -> None:
    cfg = TrainingConfig(model=model, isize=isize, nc=nc, **TINY)
    netg, netd = build_nets(cfg)
    x = torch.rand(2, nc, isize, isize) * 2 - 1
    with torch.no_grad():
        out = netg(x)
    x_hat = out[0] if model == "ganomaly" else out
    assert x_hat.shape == x.shape and float(x_hat.abs().max()) <= 1.0
    scorer = build_scoring_model(cfg, netg, netd).eval()
    assert scorer.score_names == cfg.score_names()
    tiles = torch.from_numpy(_tiles(3, isize, nc))
    with torch.no_grad():
        scores = scorer(tiles)
    assert len(scores) == len(cfg.score_names())
    for s in scores:
        assert s.shape == (3,) and s.dtype == torch.float32 and torch.isfinite(s).all()


def test_ganomaly_with_d_adds_outputs_after_the_contract() -> None:
    cfg = TrainingConfig(isize=32, nc=3, scores=ALL_SCORES, **TINY)
    assert cfg.needs_discriminator()
    netg, netd = build_nets(cfg)
    full = build_scoring_model(cfg, netg, netd).eval()
    plain = ScoringModel(netg).eval()
    assert plain.score_names == SCORE_NAMES and full.score_names[:3] == SCORE_NAMES
    tiles = _tiles(4, 32, 3)
    a, b = score_tiles(full, tiles), score_tiles(plain, tiles)
    for name in SCORE_NAMES:  # adding D changes nothing of the three contract scores
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6)
    brightness = tiles.reshape(4, -1).mean(1) / 255.0  # residual_rel: residual_max over brightness + floor
    np.testing.assert_allclose(a["residual_rel"], a["residual_max"] / (brightness + REL_FLOOR), rtol=1e-4)
    lam = full.lam
    np.testing.assert_allclose(a["combined"], lam * a["image_l1"] + (1 - lam) * a["feature_l2"], rtol=1e-5)
    np.testing.assert_allclose(a["residual_colour"], np.maximum(a["residual_max"], a["colour_max"]), rtol=1e-6)
    np.testing.assert_allclose(a["residual_colour_greying"], np.maximum(a["residual_colour"], a["greying_max"]),
                               rtol=1e-6)
    maps = map_tiles(full, tiles)
    assert maps.shape == (4, 32, 32)
    np.testing.assert_allclose(maps.reshape(4, -1).max(1), a["pixel_max"], rtol=1e-5)


def test_brightness_norm_judges_dark_wood_at_pale_contrast(tmp_path: Path) -> None:
    """A dark tile and the same tile 4x brighter (exactly, no clipping) are one input to a model
    with brightness_norm, in torch and in the exported ONNX graph; without it they differ."""
    ort = pytest.importorskip("onnxruntime")
    from edge_inspect.export.onnx_export import export_onnx
    from edge_inspect.models.scoring import preprocess

    rng = np.random.default_rng(5)
    dark = rng.integers(10, 60, size=(3, 32, 32, 3)).astype(np.uint8)  # grey 10-60: dark wood
    pale = dark * 4                                                     # 40-240
    d, p = torch.from_numpy(dark), torch.from_numpy(pale)
    torch.testing.assert_close(preprocess(d, 0.5), preprocess(p, 0.5), rtol=0, atol=1e-5)
    assert float((preprocess(d) - preprocess(p)).abs().max()) > 0.5
    mean = float(((preprocess(d, 0.5) + 1) * 127.5).mean())
    assert mean == pytest.approx(0.5 * 255, rel=1e-4)
    black = torch.zeros(1, 32, 32, 3, dtype=torch.uint8)  # a black tile is not divided by 0
    assert bool(torch.isfinite(preprocess(black, 0.5)).all())

    cfg = TrainingConfig(isize=32, nc=3, epochs=1, batch_size=4, brightness_norm=0.5, **TINY)
    result = train(cfg, np.concatenate([dark, pale, _tiles(6, 32, 3)]), tmp_path / "run")
    model, cfg2 = load_checkpoint(result.checkpoint)
    assert cfg2.brightness_norm == 0.5 and model.brightness == 0.5
    a, b = score_tiles(model, dark), score_tiles(model, pale)
    for name in model.score_names:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-4)
    export_onnx(result.checkpoint, tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got_dark, got_pale = sess.run(None, {"tiles": dark}), sess.run(None, {"tiles": pale})
    for i, name in enumerate(model.score_names):
        np.testing.assert_allclose(got_dark[i], a[name], rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(got_pale[i], got_dark[i], rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError):
        TrainingConfig(brightness_norm=0)


def test_config_rules() -> None:
    with pytest.raises(ValueError, match="latent_l2"):
        TrainingConfig(model="skip_ganomaly", scores=["latent_l2", "image_l1"])
    with pytest.raises(ValueError, match="ONNX contract"):
        TrainingConfig(scores=["image_l1", "latent_l2", "residual_max"])
    with pytest.raises(ValueError, match="attention_blocks"):
        TrainingConfig(model="skip_attention", isize=32, attention_blocks=[6])
    with pytest.raises(ValueError, match="skip_attention only"):
        TrainingConfig(model="skip_ganomaly", attention_blocks=[4])
    with pytest.raises(ValueError, match="decision_score"):
        TrainingConfig(decision_score="pixel_max")
    contract = ["latent_l2", "image_l1", "residual_max"]
    with pytest.raises(ValueError, match="made of residual_max and colour_max"):
        TrainingConfig(scores=[*contract, "residual_colour"])
    with pytest.raises(ValueError, match="nc 3"):
        TrainingConfig(nc=1, scores=[*contract, "colour_max"])
    with pytest.raises(ValueError, match="normalize_scores"):
        TrainingConfig(scores=[*contract, "colour_max", "residual_colour"], normalize_scores=False)
    assert TrainingConfig(model="skip_ganomaly").decision() == "residual_max"
    assert TrainingConfig(model="skip_ganomaly", decision_score="combined").decision() == "combined"


def test_attention_placement() -> None:
    assert default_attention_blocks(256) == (3, 4, 5, 6, 7, 8)  # 128x128 and 64x64 maps left out
    assert default_attention_blocks(32) == (1, 2, 3, 4, 5)
    mife = SkipGenerator(64, 1, 4, 16, attention_blocks=(4, 5))
    assert sorted(mife.attention) == ["4", "5"]
    sa = SelfAttention(8)
    x = torch.randn(2, 8, 4, 4)
    torch.testing.assert_close(sa(x), x)  # gamma = 0 at init: identity
    assert ASPP(8, 6)(torch.randn(2, 8, 4, 4)).shape == (2, 6, 4, 4)


def test_mse_augment_patches() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.linspace(-1, 1, 64).view(1, 1, 1, 64).expand(4, 3, 64, 64).contiguous()
    y = mse_augment(x, gen, area_ratio=0.05, max_patch=0.01, jitter=0.2)
    assert y.shape == x.shape and float(y.abs().max()) <= 1.0
    changed = (y != x).any(1).float().mean((1, 2))
    assert bool((changed > 0).all()) and bool((changed <= 0.06).all())
    with pytest.raises(ValueError):
        mse_augment(x, gen, max_patch=0.02)


@pytest.fixture(scope="module", params=FAMILIES)
def trained(request, tmp_path_factory: pytest.TempPathFactory):
    model = request.param
    out = tmp_path_factory.mktemp(model)
    extra = {"attention_blocks": (2, 3)} if model == "skip_attention" else {}
    cfg = TrainingConfig(model=model, isize=32, nc=3, epochs=3, batch_size=8, val_fraction=0.2,
                         mse_augment=model == "skip_ganomaly", lr_schedule="constant", brightness_jitter=0,
                         contrast_jitter=0, **TINY, **extra)
    return cfg, train(cfg, _tiles(40, 32, 3), out)


def test_training_reduces_loss_and_round_trips(trained) -> None:
    cfg, result = trained
    assert result.epochs_run == 3
    assert result.losses[-1]["con"] < result.losses[0]["con"]
    with np.load(result.out_dir / "validation_scores.npz") as npz:
        assert list(npz.files) == list(cfg.score_names())
    model, cfg2 = load_checkpoint(result.checkpoint)
    assert cfg2 == cfg and model.score_names == cfg.score_names()
    tiles = _tiles(5, 32, 3, seed=3)
    a, b = score_tiles(model, tiles), score_tiles(load_checkpoint(result.checkpoint)[0], tiles)
    for name in model.score_names:
        np.testing.assert_array_equal(a[name], b[name])


def test_export_matches_torch(trained, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from edge_inspect.export.onnx_export import export_onnx

    cfg, result = trained
    out = tmp_path / "m.onnx"
    manifest = export_onnx(result.checkpoint, out)
    assert manifest["outputs"] == list(cfg.score_names()) and manifest["decision_score"] == cfg.decision()
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == list(cfg.score_names())
    if cfg.model == "ganomaly":
        assert [o.name for o in sess.get_outputs()][:3] == list(SCORE_NAMES)
    model, _ = load_checkpoint(result.checkpoint)
    tiles = _tiles(3, 32, 3, seed=9)
    want = score_tiles(model, tiles)
    for name, got in zip(cfg.score_names(), sess.run(None, {"tiles": tiles})):
        np.testing.assert_allclose(got, want[name], rtol=1e-3, atol=1e-5)


def test_export_all_scores_isize64(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from edge_inspect.export.onnx_export import export_onnx

    every = [s for s in ALL_SCORES if s != "latent_l2"]  # the opt-in residual_rel and colour scores too
    cfg = TrainingConfig(model="skip_ganomaly_pp", isize=64, nc=3, epochs=1, batch_size=4,
                         decision_score="pixel_max", scores=every, **TINY)
    result = train(cfg, _tiles(10, 64, 3), tmp_path / "run")
    manifest = export_onnx(result.checkpoint, tmp_path / "m.onnx")
    assert manifest["decision_score"] == "pixel_max" and set(manifest["parity_max_abs_diff"]) == set(every)


def test_resume_continues_epochs(trained, tmp_path: Path) -> None:
    cfg, result = trained
    more = cfg.model_copy(update={"epochs": 4})
    res2 = train(more, _tiles(40, 32, 3), tmp_path, resume=result.checkpoint)
    assert res2.epochs_run == 4 and len(res2.losses) == 1 and res2.losses[0]["epoch"] == 4
    other = cfg.model_copy(update={"ngf": 8})
    with pytest.raises(InputDataError, match="architecture differs"):
        train(other, _tiles(40, 32, 3), tmp_path / "x", resume=result.checkpoint)


def test_old_checkpoint_without_new_keys_loads(trained, tmp_path: Path) -> None:
    cfg, result = trained
    if cfg.model != "ganomaly":
        pytest.skip("old checkpoints are GANomaly only")
    raw = torch.load(result.checkpoint, weights_only=True)
    old_cfg = {k: v for k, v in raw["config"].items() if k in (
        "model", "nc", "isize", "ngf", "ndf", "nz", "max_channels", "residual_kernel", "epochs", "batch_size",
        "lr", "beta1", "beta2", "w_adv", "w_con", "w_enc", "seed", "val_fraction", "data_mode", "max_tiles",
        "max_minutes", "threads")}
    old = {k: raw[k] for k in ("format", "format_version", "score_names", "epochs_run", "netg", "netd")}
    old["config"] = old_cfg
    path = tmp_path / "old.pt"
    torch.save(old, path)
    model, cfg2 = load_checkpoint(path)
    assert model.score_names == SCORE_NAMES and cfg2.model == "ganomaly"


def test_vgg_branch_needs_a_user_file(tmp_path: Path) -> None:
    from edge_inspect.models.vgg import VGG19Features, load_vgg19_features

    with pytest.raises(InputDataError, match="never downloads"):
        load_vgg19_features(tmp_path / "vgg19.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, bad)
    with pytest.raises(InputDataError, match="not a torchvision vgg19"):
        load_vgg19_features(bad)
    good = tmp_path / "vgg19.pth"
    torch.save({f"features.{k}": v for k, v in VGG19Features().features.state_dict().items()}, good)
    cfg = TrainingConfig(model="skip_ganomaly", isize=32, nc=1, vgg19_weights=str(good), **TINY)
    scorer = build_scoring_model(cfg).eval()
    assert scorer.vgg is not None
    s = score_tiles(scorer, _tiles(2, 32, 1))
    assert np.isfinite(s["pixel_max"]).all()
