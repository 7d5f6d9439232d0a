"""GANomaly model, scoring graph, training loop, checkpoint and ONNX export (tiny sizes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from structlog.testing import capture_logs  # noqa: E402

from edge_inspect import progress  # noqa: E402

from edge_inspect.errors import InputDataError  # noqa: E402
from edge_inspect.inference.manifest import sha256_file  # noqa: E402
from edge_inspect.models.checkpoint import build_scoring_model, load_checkpoint  # noqa: E402
from edge_inspect.models.ganomaly import NetD, NetG  # noqa: E402
from edge_inspect.models.scoring import SCORE_NAMES, score_tiles  # noqa: E402
from edge_inspect.training.loop import train  # noqa: E402
from edge_inspect.training_config import TrainingConfig  # noqa: E402

pytestmark = pytest.mark.train

TINY = dict(isize=32, ngf=4, ndf=4, nz=8, max_channels=16)


def _smooth_tiles(n: int, size: int, nc: int, seed: int = 0) -> np.ndarray:
    """Easy 'good' data: smooth horizontal gradients with a little noise, like clean wood grain."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(60, 190, size, dtype=np.float32)
    base = np.broadcast_to(ramp[None, :, None, None], (1, size, size, nc)).transpose(0, 2, 1, 3)
    offs = rng.uniform(-30, 30, size=(n, 1, 1, 1))
    noise = rng.normal(0, 4, size=(n, size, size, nc))
    return np.clip(base + offs + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("run")
    # the loop's mechanics on a few steps: no schedule or jitter to blur the loss trend
    cfg = TrainingConfig(nc=3, epochs=4, batch_size=8, val_fraction=0.2, lr_schedule="constant",
                         brightness_jitter=0, contrast_jitter=0, **TINY)
    result = train(cfg, _smooth_tiles(48, 32, 3), out)
    return cfg, result


@pytest.mark.parametrize("isize,nc", [(32, 1), (64, 3)])
def test_shapes(isize: int, nc: int) -> None:
    g = NetG(isize=isize, nc=nc, ngf=4, nz=8, max_channels=16)
    d = NetD(isize=isize, nc=nc, ndf=4, max_channels=16)
    x = torch.rand(3, nc, isize, isize) * 2 - 1
    with torch.no_grad():
        x_hat, z, z_hat = g(x)
        prob, feats = d(x)
    assert x_hat.shape == x.shape and z.shape == (3, 8, 1, 1) and z_hat.shape == z.shape
    assert float(x_hat.abs().max()) <= 1.0
    assert prob.shape == (3,) and feats.shape[2:] == (4, 4)
    assert float(prob.min()) >= 0 and float(prob.max()) <= 1


def test_bad_isize_rejected() -> None:
    with pytest.raises(ValueError):
        NetG(isize=48)
    with pytest.raises(ValueError):
        TrainingConfig(isize=48)
    with pytest.raises(ValueError):
        TrainingConfig(bogus=1)


def test_scoring_model_uint8_nhwc_fixed_order() -> None:
    cfg = TrainingConfig(nc=3, **TINY)
    model = build_scoring_model(cfg).eval()
    tiles = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8)
    with torch.no_grad():
        out = model(tiles)
    assert isinstance(out, tuple) and len(out) == len(SCORE_NAMES) == 3
    assert SCORE_NAMES == ("latent_l2", "image_l1", "residual_max")
    for t in out:
        assert t.shape == (4,) and t.dtype == torch.float32 and torch.isfinite(t).all()
    # the localised score is never below the tile mean of the same residual map
    assert bool((out[2] >= out[1] - 1e-6).all())
    scores = score_tiles(model, tiles.numpy(), batch_size=3)
    assert list(scores) == list(SCORE_NAMES)
    np.testing.assert_allclose(scores["image_l1"], out[1].numpy(), rtol=1e-5)


def test_residual_max_localises_a_small_defect() -> None:
    cfg = TrainingConfig(nc=1, isize=64, ngf=4, ndf=4, nz=8, max_channels=16)
    model = build_scoring_model(cfg).eval()
    clean = np.full((1, 64, 64, 1), 128, np.uint8)
    spot = clean.copy()
    spot[0, 20:26, 30:36] = 255
    s_clean, s_spot = (score_tiles(model, a) for a in (clean, spot))
    gain_max = s_spot["residual_max"][0] - s_clean["residual_max"][0]
    gain_l1 = s_spot["image_l1"][0] - s_clean["image_l1"][0]
    assert gain_max > 5 * gain_l1 > 0


class _PlainWood(torch.nn.Module):
    """Stands in for a trained generator: it reconstructs every tile as flat wood of the tile's
    median, so the residual is exactly the defect's contrast."""

    isize, nc, has_latent = 64, 1, False

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()), requires_grad=False)  # tells score_tiles the device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).median(1).values[:, None, None, None].expand_as(x)


def test_residual_rel_scores_a_knot_alike_on_dark_and_pale_wood() -> None:
    """The same knot (half the wood's grey) on pale wood (grey 180) and on dark wood (grey 40):
    residual_max sees the dark one about 4x weaker; residual_rel, relative to the brightness,
    scores both within 25 %."""
    from edge_inspect.models.scoring import ScoringModel

    model = ScoringModel(_PlainWood(), residual_kernel=4, scores=("image_l1", "residual_max", "residual_rel")).eval()
    tiles = np.stack([np.full((64, 64, 1), g, np.uint8) for g in (180, 40)])
    tiles[0, 20:30, 20:30] = 90
    tiles[1, 20:30, 20:30] = 20
    s = score_tiles(model, tiles)
    assert s["residual_max"][0] > 3.5 * s["residual_max"][1]
    assert abs(s["residual_rel"][0] / s["residual_rel"][1] - 1) < 0.25, s["residual_rel"]


class _PlainColourWood(_PlainWood):
    """_PlainWood in colour: every tile reconstructed as flat wood of its per-channel median."""

    nc = 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(2).median(2).values[:, :, None, None].expand_as(x)


def test_colour_max_sees_a_white_mark_that_grain_of_the_same_strength_does_not_trip() -> None:
    """Brown wood with a dark grain streak (the wood's own colour, 40 % darker) and with a white
    chalk stroke of about the same brightness residual: residual_max scores them alike, colour_max
    only the chalk (grain and lighting move along the wood's colour, chalk turns it grey); the
    composite residual_colour is the larger of the normalised two."""
    from edge_inspect.models.scoring import ScoringModel

    model = ScoringModel(_PlainColourWood(), residual_kernel=4,
                         scores=("image_l1", "residual_max", "colour_max", "residual_colour")).eval()
    wood = np.array([200, 170, 130], np.float32)
    tiles = np.broadcast_to(wood, (2, 64, 64, 3)).astype(np.uint8)
    tiles[0, 20:28, 10:50] = (0.6 * wood).astype(np.uint8)
    tiles[1, 20:28, 10:50] = (240, 240, 235)
    s = score_tiles(model, tiles)
    assert abs(s["residual_max"][1] / s["residual_max"][0] - 1) < 0.25, s["residual_max"]
    assert s["colour_max"][1] > 10 * s["colour_max"][0], s["colour_max"]
    model.set_normalization({"residual_max": (0.0, 2.0), "colour_max": (0.0, 0.5)})
    t = score_tiles(model, tiles)
    np.testing.assert_allclose(t["residual_colour"], np.maximum(s["residual_max"] / 2.0, s["colour_max"] / 0.5),
                               rtol=1e-5)


def test_training_reduces_contextual_loss(trained, tmp_path: Path) -> None:
    cfg, result = trained
    assert result.epochs_run == 4 and result.stopped_early is None
    assert result.losses[-1]["con"] < result.losses[0]["con"]
    assert result.train_tiles + result.val_tiles == 48 and result.val_tiles == 10
    summary = json.loads((result.out_dir / "train.json").read_text())
    assert summary["config"]["nz"] == 8 and len(summary["losses"]) == 4
    with np.load(result.out_dir / "validation_scores.npz") as npz:
        assert sorted(npz.files) == sorted(SCORE_NAMES)
        assert all(npz[k].shape == (10,) and np.isfinite(npz[k]).all() for k in SCORE_NAMES)


def test_training_respects_max_minutes(tmp_path: Path) -> None:
    cfg = TrainingConfig(nc=1, epochs=1000, batch_size=4, max_minutes=1e-4, **TINY)
    progress.set_interval(0)  # an event for every step
    try:
        with capture_logs() as logs:
            result = train(cfg, _smooth_tiles(16, 32, 1), tmp_path)
    finally:
        progress.set_interval(progress.DEFAULT_EVERY_S)
    assert result.stopped_early == "max_minutes" and result.epochs_run < 1000
    assert (tmp_path / "model.pt").is_file()
    events = [e for e in logs if e["event"] == "progress" and e["task"] == "train ganomaly"]
    assert events and events[-1]["finished"] and events[-1]["done"] == result.patches_seen


def test_checkpoint_round_trip(trained) -> None:
    cfg, result = trained
    model, cfg2 = load_checkpoint(result.checkpoint)
    assert cfg2 == cfg and not model.training
    raw = torch.load(result.checkpoint, weights_only=True)
    assert raw["config"]["isize"] == 32
    tiles = _smooth_tiles(6, 32, 3, seed=1)
    a = score_tiles(model, tiles)
    b = score_tiles(load_checkpoint(result.checkpoint)[0], tiles)
    for name in SCORE_NAMES:
        np.testing.assert_array_equal(a[name], b[name])


def test_bad_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(InputDataError, match="junk.pt"):
        load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(InputDataError, match="not an edge-inspect"):
        load_checkpoint(other)


def test_truncated_checkpoint(trained, tmp_path: Path) -> None:
    data = trained[1].checkpoint.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputDataError):
        load_checkpoint(cut)


@pytest.mark.parametrize("fp16", [False, True])
def test_export_matches_torch(trained, tmp_path: Path, fp16: bool) -> None:
    ort = pytest.importorskip("onnxruntime")
    from edge_inspect.export.onnx_export import export_onnx

    out = tmp_path / "demo.onnx"
    progress.set_interval(0)  # an event for every step of the export
    try:
        with capture_logs() as logs:
            manifest = export_onnx(trained[1].checkpoint, out, fp16=fp16)
    finally:
        progress.set_interval(progress.DEFAULT_EVERY_S)
    steps = [e for e in logs if e["event"] == "progress"]
    assert [e["done"] for e in steps] == [1, 2, 3, 3] and steps[-1]["finished"] and steps[0]["task"] == "export demo.onnx"
    assert manifest["sha256"] == sha256_file(out)
    on_disk = json.loads((tmp_path / "demo.onnx.json").read_text())
    assert on_disk == manifest
    assert manifest["input"] == {"name": "tiles", "shape": ["batch", 32, 32, 3], "dtype": "uint8", "layout": "NHWC"}
    assert manifest["outputs"] == list(SCORE_NAMES) and manifest["precision"] == ("fp16" if fp16 else "fp32")
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == list(SCORE_NAMES)
    model, _ = load_checkpoint(trained[1].checkpoint)
    for b in (1, 5):
        tiles = _smooth_tiles(b, 32, 3, seed=b)
        got = sess.run(None, {"tiles": tiles})
        want = score_tiles(model, tiles)
        for name, g in zip(SCORE_NAMES, got):
            assert g.dtype == np.float32 and g.shape == (b,)
            tol = dict(rtol=5e-2, atol=2e-2) if fp16 else dict(rtol=1e-3, atol=1e-5)
            np.testing.assert_allclose(g, want[name], **tol)
