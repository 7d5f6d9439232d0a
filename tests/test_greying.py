"""greying_max (models/greying.py): a neutral lift of a few grey levels over wood, which the
network's residual cannot tell from grain, against what wood itself does: grain and lighting
change its brightness, latewood turns it redder, its edge meets the conveyor, pale wood clips.

The tiles are drawn here from those physics (no network, no generator: the score reads pixels
only), with the synthetic camera's sensor noise (1.5 grey levels per channel)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_inspect.models.greying import greying_max
from edge_inspect.models.scoring import raw_nchw

PALE, DARK, NEAR_CLIPPING = (200, 170, 130), (55, 45, 33), (236, 203, 150)


def _wood(base: tuple[int, int, int], lift: float = 0.0, conveyor_from: float | None = None,
          streak: float = 0.0, seed: int = 0) -> np.ndarray:
    """A 256 x 256 colour tile of wood: growth rings (latewood darker and redder), grain, a light
    falling off by 20 % across the width, per-pixel brightness noise; optionally a neutral lift
    over a 70 px disc (a worn chalk mark), a dark streak of the wood's own colour, or the
    conveyor from column ``conveyor_from`` on (the board's edge mixed over one pixel)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:256, 0:256].astype(np.float32)
    phase = ((x + 6 * np.sin(y / 40)) / 19.0) % 1.0
    latewood = np.clip((phase - 0.62) / 0.35, 0, 1)[..., None]
    lum = (1 + 0.05 * np.sin(x / 3.1) + 0.015 * rng.standard_normal((256, 256))) * np.linspace(1.0, 0.8, 256)
    if streak:
        lum = lum * (1 - streak * ((x > 100) & (x < 130)))
    rgb = np.asarray(base, np.float32) * lum[..., None] * (1 - 0.2 * latewood * np.array([0.8, 1, 1.35]))
    rgb = rgb + lift * (((x - 128) ** 2 + (y - 128) ** 2) < 35**2)[..., None]
    if conveyor_from is not None:
        board = np.clip(conveyor_from - x, 0, 1)[..., None]
        rgb = rgb * board + np.array([18.0, 19.0, 20.5]) * (1 - board)
    rgb = rgb + 1.5 * rng.standard_normal(rgb.shape)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def _score(tile: np.ndarray) -> float:
    return float(greying_max(raw_nchw(torch.from_numpy(tile[None])), 16)[0])


@pytest.mark.parametrize("base", [PALE, DARK, NEAR_CLIPPING], ids=["pale", "dark", "near-clipping"])
def test_a_faint_neutral_lift_stands_out_where_grain_rings_and_light_do_not(base: tuple[int, int, int]) -> None:
    clean = _score(_wood(base))
    assert clean < 0.35  # the sensor's noise, smoothed, and nothing else
    assert _score(_wood(base, lift=3.0)) > 2.0 * clean
    assert _score(_wood(base, lift=5.0)) > 3.5 * clean
    # a streak 40 % darker in the wood's own colour is brightness, not grey
    assert _score(_wood(base, streak=0.4)) < clean + 0.1


@pytest.mark.parametrize("base", [PALE, DARK], ids=["pale", "dark"])
def test_the_board_edge_against_the_conveyor_does_not_count(base: tuple[int, int, int]) -> None:
    """The conveyor is grey and a pixel of the edge mixes it with wood; it is dark, so it and the
    pixel around it are left out."""
    assert _score(_wood(base, conveyor_from=180.4)) < _score(_wood(base)) + 0.1


def test_clipped_pale_wood_does_not_read_as_grey() -> None:
    """Wood so pale that its red channel clips at 255 in places: a clipped pixel is greyer than
    its wood (counted, they make it 0.9-6.2), so clipped pixels are left out, and a good board
    that the exposure clips is not a mark."""
    for red in (250, 262, 280):
        tile = _wood((red, int(red * 0.86), int(red * 0.635)))
        assert (tile[..., 0] == 255).mean() > 0.03
        assert _score(tile) < 0.35


def test_one_score_per_tile_in_a_batch() -> None:
    tiles = np.stack([_wood(PALE), _wood(PALE, lift=5.0), _wood(DARK)])
    got = greying_max(raw_nchw(torch.from_numpy(tiles)), 16).numpy()
    want = [_score(t) for t in tiles]
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_wood_broken_by_specks_is_judged_by_its_wood_pixels() -> None:
    """Dark specks every 5 px leave no 4 x 4 px block of wood throughout; each block's colour is
    that of its wood pixels, so plain wood does not read as grey, and a lift still does."""
    tile, lifted = _wood(PALE), _wood(PALE, lift=5.0)
    tile[::5, ::5] = lifted[::5, ::5] = 10
    assert _score(tile) < 0.35 and _score(lifted) > 3 * _score(tile)


def test_wood_in_thin_strips_is_judged_against_its_mean_colour() -> None:
    """Strips of wood 3 lines wide between dark bands: no 4 x 4 px block is half wood, so the
    reference is the mean colour of the wood pixels (without it the score would be the tile's
    brightness, about 12 grey levels)."""
    tile, strips = _wood(PALE), np.full((256, 256, 3), 10, np.uint8)
    for top in range(4, 256, 8):
        strips[top:top + 3] = tile[top:top + 3]
    assert _score(strips) < 0.35
