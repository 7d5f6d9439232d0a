"""Procedural line-scan images of planed softwood boards on a dark conveyor, with ground truth.

Why: the whole pipeline (segmentation, tiling, training, calibration, decisions) needs scans
whose board extents and defects are known exactly, without access to a production line. The
generator is fully vectorised (loops only per board, per defect and per crack segment) and
deterministic: every random stream is derived from `SynthSpec.seed` through a `SeedSequence`
spawn key, so a board's look does not depend on how many boards come after it. `style: hard`
adds the hard cases of real lines (`synthetic_looks.py`) from streams of their own, so the
standard style's bytes for a seed stay what they were.

Image axes: [H, W, C] with H = lines (time, along the board), W = camera pixels (across it).
Colour arrays are RGB; `write_synthetic_scans` converts to BGR only for `cv2.imwrite`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import structlog

from edge_inspect.acquisition.synthetic_looks import (
    BELT_SCALE,
    FAINT_CONTRAST,
    STYLES,
    BoardLook,
    draw_look,
    features,
)
from edge_inspect.atomic import write_atomic
from edge_inspect.errors import InputDataError

log = structlog.get_logger(__name__)

# From the production-line wood study: knots, holes, cracks, black stains, chalk marks, others;
# drawn at random with these weights (knots dominate real softwood defect statistics).
_DRAWN_TYPES = ("knot", "hole", "crack", "black_stain", "chalk_mark", "resin_pocket")
_TYPE_WEIGHTS = np.array([0.30, 0.10, 0.15, 0.15, 0.15, 0.15])
# The hard style's low-contrast marks add a pale stain (water, sap bleach).
DEFECT_TYPES = (*_DRAWN_TYPES, "light_stain")

# Typical planed softwood colours (RGB): spruce, pine, yellowish sapwood, larch, fir.
_PALETTE = np.array(
    [
        (226, 205, 168),
        (218, 182, 130),
        (224, 196, 140),
        (200, 150, 110),
        (210, 190, 160),
    ],
    dtype=np.float32,
)

_GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # RGB -> luma (BT.601)

# Spawn-key namespaces, so that adding a stream never shifts another.
_KEY_LAYOUT, _KEY_BOARD, _KEY_CONVEYOR, _KEY_NOISE, _KEY_LOOK = 0, 1, 2, 3, 4

FORMAT_VERSION = 1


@dataclass(frozen=True)
class SynthSpec:
    """What to generate; the whole output is a pure function of these fields."""

    boards: int = 20
    defect_rate: float = 0.5  # probability that a board has >= 1 defect (0: all good, for training)
    seed: int = 0
    width: int = 1024  # camera width in pixels
    board_lines: tuple[int, int] = (600, 1000)  # min/max board length in lines
    gap_lines: tuple[int, int] = (60, 160)  # dark conveyor between boards
    channels: int = 3  # 3 = colour (RGB order), 1 = grey; arrays are always [H, W, C]
    style: str = "standard"  # "hard": every board draws the hard cases of real lines (synthetic_looks.py)

    def validate(self) -> None:
        """Raise ValueError naming the field, so a bad CLI flag gets a clear message."""
        if int(self.boards) < 1:
            raise ValueError(f"boards must be >= 1, got {self.boards}")
        if not 0.0 <= float(self.defect_rate) <= 1.0:
            raise ValueError(f"defect_rate must be in [0, 1], got {self.defect_rate}")
        if int(self.seed) < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if not 256 <= int(self.width) <= 16384:
            raise ValueError(f"width must be in 256..16384, got {self.width}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.style not in STYLES:
            raise ValueError(f"style must be one of {', '.join(STYLES)}, got {self.style!r}")
        _check_range("board_lines", self.board_lines, 256)
        _check_range("gap_lines", self.gap_lines, 32)


def _check_range(name: str, pair: tuple[int, int], least: int) -> None:
    """A (min, max) field: two values, the min at least `least`, the max not below the min."""
    if len(pair) != 2:
        raise ValueError(f"{name} must be (min, max), got {pair}")
    low, high = pair
    if low < least:
        raise ValueError(f"{name} min must be >= {least}, got {low}")
    if high < low:
        raise ValueError(f"{name} max must be >= min, got {pair}")


# --------------------------------------------------------------------------- small helpers


def _rng(seed: int, *key: int) -> np.random.Generator:
    """An independent stream per (namespace, index): stable regardless of other streams."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=tuple(key)))


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _lowres_noise(rng: np.random.Generator, h: int, w: int, cell_y: float, cell_x: float) -> np.ndarray:
    """Smooth unit-ish noise of shape (h, w), cheap because it is upsampled from a coarse grid
    (a big Gaussian blur along the lines would cost far more)."""
    gh = max(2, int(math.ceil(h / cell_y)) + 2)
    gw = max(2, int(math.ceil(w / cell_x)) + 2)
    coarse = rng.standard_normal((gh, gw)).astype(np.float32)
    big = cv2.resize(coarse, (int(gw * cell_x), int(gh * cell_y)), interpolation=cv2.INTER_CUBIC)
    return big[:h, :w]


def _wobble(rng: np.random.Generator, n: int, amplitude: float, periods: tuple[float, float]) -> np.ndarray:
    """A smooth 1-D curve (sum of three sinusoids): edge wobble, grain warp."""
    y = np.arange(n, dtype=np.float32)
    out = np.zeros(n, dtype=np.float32)
    for weight in (1.0, 0.5, 0.25):
        period = rng.uniform(*periods)
        out += weight * np.sin(2.0 * np.pi * y / period + rng.uniform(0, 2 * np.pi)).astype(np.float32)
    return out * (amplitude / 1.75)


# --------------------------------------------------------------------------- defects

# A defect renderer returns (alpha, colour, mask) for its own patch: alpha in [0, 1] is how
# strongly the colour covers the wood, colour is RGB 0..255, mask is the ground-truth pixels.
_Patch = tuple[np.ndarray, np.ndarray, np.ndarray]


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return yy - (h - 1) / 2.0, xx - (w - 1) / 2.0


def _knot(rng: np.random.Generator, wood: np.ndarray) -> _Patch:
    """Dark brown elliptic blob, elongated along the grain, with rings and a darker rim."""
    d = rng.uniform(15, 90)
    rx, ry = d / 2.0, d / 2.0 * rng.uniform(1.0, 1.6)
    h, w = int(2 * ry + 8), int(2 * rx + 8)
    dy, dx = _grid(h, w)
    ang = np.arctan2(dy, dx)
    r_eff = 1.0 + 0.06 * np.sin(3 * ang + rng.uniform(0, 6.3)) + 0.04 * np.sin(5 * ang + rng.uniform(0, 6.3))
    r = np.sqrt((dx / rx) ** 2 + (dy / ry) ** 2) / r_eff
    n_rings = rng.uniform(3, 8)
    darkness = rng.uniform(0.35, 0.6)  # dead knots are darker than sound ones
    base = wood * darkness * np.array([1.0, 0.82, 0.65], dtype=np.float32)
    shade = (1.0 - 0.18 * (0.5 + 0.5 * np.cos(2 * np.pi * r * n_rings))) * (1.0 - 0.45 * _smoothstep(0.72, 0.95, r))
    shade *= 1.0 + 0.04 * rng.standard_normal((h, w)).astype(np.float32)
    colour = base[None, None, :] * shade[..., None]
    alpha = 1.0 - _smoothstep(0.95, 1.08, r)
    return alpha, colour, alpha >= 0.5


def _hole(rng: np.random.Generator, wood: np.ndarray) -> _Patch:
    """Near-black round hole with a thin dark brown rim (the bore wall)."""
    d = rng.uniform(8, 40)
    rad = d / 2.0
    h = w = int(d + 6)
    dy, dx = _grid(h, w)
    ang = np.arctan2(dy, dx)
    r = np.sqrt(dx**2 + dy**2) / (rad * (1.0 + 0.05 * np.sin(2 * ang + rng.uniform(0, 6.3))))
    inner = np.array([12, 10, 9], dtype=np.float32)
    rim = wood * 0.35 * np.array([1.0, 0.85, 0.7], dtype=np.float32)
    t = _smoothstep(0.6, 0.95, r)[..., None]
    colour = inner * (1 - t) + rim * t
    alpha = 1.0 - _smoothstep(0.95, 1.05, r)
    return alpha, colour, alpha >= 0.5


def _crack(rng: np.random.Generator, wood: np.ndarray) -> _Patch:
    """Thin jagged dark line along the grain, tapering at both ends."""
    length = int(rng.uniform(40, 200))
    width = int(rng.integers(3, 7))
    pad = width + 2
    n = max(4, length // 6)
    steps = rng.normal(0.0, 1.2, n).astype(np.float32)
    xs = np.cumsum(steps)
    xs += np.linspace(0, rng.uniform(-6, 6), n)
    xs -= xs.min()
    h = length + 2 * pad
    w = int(math.ceil(xs.max())) + 2 * pad + 1
    ys = np.linspace(pad, pad + length - 1, n)
    canvas = np.zeros((h, w), dtype=np.uint8)
    for i in range(n - 1):
        # Tapered ends: the crack is widest in its middle.
        taper = min(i + 1, n - 1 - i) / max(1.0, n / 5.0)
        thick = max(1, int(round(width * min(1.0, 0.4 + taper))))
        p0 = (int(round(xs[i] + pad)), int(round(ys[i])))
        p1 = (int(round(xs[i + 1] + pad)), int(round(ys[i + 1])))
        cv2.line(canvas, p0, p1, 255, thickness=thick, lineType=cv2.LINE_AA)
    alpha = canvas.astype(np.float32) / 255.0
    colour = np.broadcast_to(wood * 0.2 * np.array([1.0, 0.9, 0.85], dtype=np.float32), (h, w, 3)).copy()
    return alpha, colour, alpha >= 0.5


def _blotch(rng: np.random.Generator, s: float) -> np.ndarray:
    """Coverage (0..1) of an irregular blotch about `s` px across: noise thresholded in an
    elliptic envelope."""
    h, w = int(s * rng.uniform(0.8, 1.3)) + 6, int(s) + 6
    dy, dx = _grid(h, w)
    env = 1.0 - (dx / ((w - 6) / 2.0)) ** 2 - (dy / ((h - 6) / 2.0)) ** 2
    noise = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), max(1.5, s / 8.0))
    noise /= float(noise.std()) + 1e-6
    field = env + 0.35 * noise
    field[h // 2 - 1 : h // 2 + 2, w // 2 - 1 : w // 2 + 2] = 1.0  # never empty
    field = cv2.GaussianBlur(field, (0, 0), 1.0)
    return _smoothstep(0.1, 0.35, field)


def _black_stain(rng: np.random.Generator, wood: np.ndarray) -> _Patch:
    """Irregular dark grey blotch (fungal/blue stain, dirt)."""
    alpha = _blotch(rng, rng.uniform(15, 70))
    h, w = alpha.shape
    grey = rng.uniform(25, 55)
    mottle = 1.0 + 0.15 * _lowres_noise(rng, h, w, 6, 6)
    colour = np.array([grey, grey, grey * 1.05], dtype=np.float32)[None, None, :] * mottle[..., None]
    return alpha, colour, alpha >= 0.5


def _strokes(rng: np.random.Generator, length: float, thick: int, cross: bool) -> np.ndarray:
    """Coverage (0..1) of a hand-drawn stroke, or a cross of two, cropped to its ink."""
    size = int(length + 2 * thick + 4)
    canvas = np.zeros((size, size), dtype=np.uint8)
    c = size / 2.0
    angles = [rng.uniform(0, np.pi)]
    if cross:
        angles.append(angles[0] + np.pi / 2 + rng.uniform(-0.3, 0.3))
    for a in angles:
        half = length / 2.0 * (rng.uniform(0.7, 1.0) if len(angles) > 1 else 1.0)
        ts = np.linspace(-half, half, 5)
        bend = rng.normal(0, 2.0, 5)
        pts = np.stack([c + ts * np.cos(a) - bend * np.sin(a), c + ts * np.sin(a) + bend * np.cos(a)], axis=1)
        cv2.polylines(canvas, [np.round(pts).astype(np.int32)], False, 255, thickness=thick, lineType=cv2.LINE_AA)
    shape = canvas.astype(np.float32) / 255.0
    ys, xs = np.nonzero(shape > 0)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return shape[max(0, y0 - 1) : y1 + 1, max(0, x0 - 1) : x1 + 1]


def _chalk_mark(rng: np.random.Generator, wood: np.ndarray) -> _Patch:
    """Pale hand-drawn stroke or cross left by a grader's chalk."""
    length = rng.uniform(40, 150)
    thick = int(rng.integers(4, 9))
    shape = _strokes(rng, length, thick, rng.random() < 0.4)
    h, w = shape.shape
    grain = np.clip(0.8 + 0.2 * rng.standard_normal((h, w)).astype(np.float32), 0.45, 1.0)
    alpha = shape * grain
    tint = np.array([240, 240, 235], dtype=np.float32) if rng.random() < 0.8 else np.array([225, 235, 245], dtype=np.float32)
    colour = np.broadcast_to(tint, (h, w, 3)).copy()
    return alpha, colour, shape >= 0.5


def _resin_pocket(rng: np.random.Generator, wood: np.ndarray) -> _Patch:
    """Small lens-shaped amber streak along the grain, darker at its rim, glossy inside."""
    ry = rng.uniform(10, 40) / 2.0
    rx = rng.uniform(4, 10) / 2.0
    h, w = int(2 * ry + 6), int(2 * rx + 6)
    dy, dx = _grid(h, w)
    # Lens shape: the half-width shrinks towards the pointed ends.
    half_w = rx * np.sqrt(np.clip(1.0 - (dy / ry) ** 2, 0.0, 1.0)) + 1e-3
    r = np.maximum(np.abs(dx) / half_w, np.abs(dy) / ry)
    amber = np.array([195, 130, 45], dtype=np.float32) * rng.uniform(0.75, 1.0)
    t = _smoothstep(0.5, 0.95, r)[..., None]
    colour = amber * (1.0 - 0.45 * t) + 25.0 * (1.0 - _smoothstep(0.0, 0.4, r))[..., None]
    alpha = 1.0 - _smoothstep(0.9, 1.1, r)
    return alpha, colour, alpha >= 0.5


def _faint_chalk(rng: np.random.Generator, wood: np.ndarray) -> _Patch:
    """A large chalk mark worn almost off (60-120 px): its colour is a lift of a few grey levels
    over the wood under it, added rather than blended."""
    shape = _strokes(rng, rng.uniform(60, 120), int(rng.integers(8, 17)), rng.random() < 0.3)
    h, w = shape.shape
    alpha = shape * np.clip(0.85 + 0.1 * rng.standard_normal((h, w)).astype(np.float32), 0.6, 1.0)
    lift = np.full((h, w, 3), rng.uniform(*FAINT_CONTRAST), dtype=np.float32)
    return alpha, lift, shape >= 0.5


def _light_stain(rng: np.random.Generator, wood: np.ndarray) -> _Patch:
    """A large pale stain (water, sap bleach; 60-120 px) a few grey levels over the wood (added)."""
    alpha = _blotch(rng, rng.uniform(70, 130))
    h, w = alpha.shape
    lift = rng.uniform(*FAINT_CONTRAST) * (1.0 + 0.15 * _lowres_noise(rng, h, w, 12, 12))
    return alpha, np.repeat(lift[..., None], 3, axis=2), alpha >= 0.5


_RENDERERS: dict[str, Callable[[np.random.Generator, np.ndarray], _Patch]] = {
    "knot": _knot,
    "hole": _hole,
    "crack": _crack,
    "black_stain": _black_stain,
    "chalk_mark": _chalk_mark,
    "resin_pocket": _resin_pocket,
}
# Low-contrast marks: their colour is a lift added to the wood.
_FAINT_RENDERERS: dict[str, Callable[[np.random.Generator, np.ndarray], _Patch]] = {
    "chalk_mark": _faint_chalk,
    "light_stain": _light_stain,
}


# --------------------------------------------------------------------------- boards


@dataclass
class _Board:
    """A rendered board region: rgb and coverage over columns [rx0, rx0 + width)."""

    rgb: np.ndarray  # float32 [L, Rw, 3]
    alpha: np.ndarray  # float32 [L, Rw]
    mask: np.ndarray  # bool [L, Rw]
    rx0: int
    defects: list[dict[str, Any]]  # x/y/w/h relative to the region
    wood_level: float  # grey level of the wood's base colour


def _render_board(rng: np.random.Generator, length: int, scan_w: int, defect_rate: float,
                  look: BoardLook | None = None) -> _Board:
    """Render one board: shape, colour, grain, growth rings, shading, then its defects. A hard
    look (`synthetic_looks.py`) changes width, place, skew and colour, and adds its defects."""
    frac = rng.uniform(0.70, 0.95)
    bw = frac * scan_w
    margin = 4.0
    left0 = rng.uniform(margin, scan_w - bw - margin)
    slope = 0.0
    if look is not None:
        bw, left0, slope = look.placement(scan_w, length)
    drift = abs(slope) * (length - 1) / 2.0
    rx0 = int(max(0, math.floor(left0 - drift - 3)))
    rx1 = int(min(scan_w, math.ceil(left0 + bw + drift + 3)))
    rw = rx1 - rx0

    left = left0 - rx0 + _wobble(rng, length, rng.uniform(0.3, 1.5), (300, 3000))
    right = left0 + bw - rx0 + _wobble(rng, length, rng.uniform(0.3, 1.5), (300, 3000))
    y1 = np.arange(length, dtype=np.float32)[:, None]
    x1 = np.arange(rw, dtype=np.float32)[None, :]
    # Skew: both edges drift sideways along the board, and so does its grain (below).
    shift = (slope * (y1[:, 0] - (length - 1) / 2.0)).astype(np.float32)
    if slope:
        left, right = left + shift, right + shift
    xc = x1 + 0.5
    dist = np.minimum(xc - left[:, None], right[:, None] - xc)
    alpha = np.clip(dist + 0.5, 0.0, 1.0)

    # Grain: streaks follow u = x + warp(y), so they run along the board and meander slowly.
    warp = _wobble(rng, length, rng.uniform(3, 25), (400, 4000)) + rng.uniform(-0.01, 0.01) * y1[:, 0]
    if slope:
        warp -= shift
    u = x1 + warp[:, None]
    umin = int(math.floor(float(u.min()))) - 1
    n_prof = int(math.ceil(float(u.max()))) - umin + 2
    prof = np.zeros((1, n_prof), dtype=np.float32)
    for sigma, weight in ((0.8, 0.2), (3.0, 0.35), (15.0, 0.4)):
        layer = cv2.GaussianBlur(rng.standard_normal((1, n_prof)).astype(np.float32), (0, 0), sigmaX=sigma, sigmaY=0.1)
        prof += weight * layer / (float(layer.std()) + 1e-6)
    prof /= float(prof.std()) + 1e-6
    idx = np.clip((u - umin).astype(np.int32), 0, n_prof - 1)
    grain = prof[0][idx] * rng.uniform(0.025, 0.045)
    grain += 0.025 * _lowres_noise(rng, length, rw, 48, 3)  # streaks fade in and out

    # Growth rings: elongated ellipses around a pith that may lie off the board: cathedral arcs
    # where the pith is near, nearly straight latewood lines far from it.
    cx = rng.uniform(-0.2, 1.2) * rw
    cy = rng.uniform(-0.2, 1.2) * length
    elong = rng.uniform(10, 30)
    period = rng.uniform(10, 28)
    depth = rng.uniform(0, 4) * period  # the face lies above the pith: the innermost arc is flat
    d = np.sqrt((u - cx) ** 2 + ((y1 - cy) / elong) ** 2 + depth**2)
    phase = d / period + 0.15 * _lowres_noise(rng, length, rw, 160, 60)
    t = phase - np.floor(phase)
    # Earlywood darkens into a narrow latewood band, then an abrupt step to the next ring.
    latewood = _smoothstep(0.62, 0.97, t)
    ring_tint = rng.uniform(0.14, 0.26) * np.array([0.8, 1.0, 1.35], dtype=np.float32)

    lum = 1.0 + grain + 0.04 * _lowres_noise(rng, length, rw, 200, 150)
    lum += 0.015 * rng.standard_normal((length, rw), dtype=np.float32)
    # Edge shading: the chamfered/rough edges catch less light; the sawn ends a bit too.
    lum *= 1.0 - 0.15 * np.exp(-np.clip(dist, 0, None) / 12.0)
    lum *= 1.0 - 0.10 * np.exp(-np.minimum(y1, length - 1 - y1) / 6.0)

    pick = rng.choice(len(_PALETTE), size=2)
    mix = rng.uniform()
    base = (_PALETTE[pick[0]] * mix + _PALETTE[pick[1]] * (1 - mix)) * rng.uniform(0.82, 1.05)
    warmth = rng.uniform(-0.03, 0.06)  # hue shift per board: paler/greyer to redder, never green
    base = (base * np.array([1.0 + warmth, 1.0, 1.0 - 1.5 * warmth])).astype(np.float32)
    if look is not None and look.dark_level is not None:  # same hue, darker: walnut, wet or old wood
        base = (base * (look.dark_level / float(base @ _GREY_WEIGHTS))).astype(np.float32)
    rgb = base[None, None, :] * lum[..., None] * (1.0 - latewood[..., None] * ring_tint)
    rgb = rgb.astype(np.float32)

    mask = np.zeros((length, rw), dtype=bool)
    defects: list[dict[str, Any]] = []
    if rng.random() < defect_rate:
        inner = (int(math.ceil(float(left.max()))) + 6, int(math.floor(float(right.min()))) - 6)
        defects = _add_defects(rng, rgb, mask, base, inner, look)
    return _Board(rgb=rgb, alpha=alpha.astype(np.float32), mask=mask, rx0=rx0, defects=defects,
                  wood_level=float(base @ _GREY_WEIGHTS))


def _add_defects(rng: np.random.Generator, rgb: np.ndarray, mask: np.ndarray, base: np.ndarray,
                 inner: tuple[int, int], look: BoardLook | None) -> list[dict[str, Any]]:
    """Draw 1-3 defects into `rgb` and `mask` between the columns `inner`, apart from each other;
    a hard look places its end knot and its low-contrast mark first. Returns their boxes."""
    length = rgb.shape[0]
    inner_x0, inner_x1 = inner
    want = int(rng.integers(1, 4))
    first: list[str] = []
    if look is not None:
        first = (["end_knot"] if look.end_knot else []) + (["faint"] if look.faint_defect else [])
        want = max(want, len(first))
    defects: list[dict[str, Any]] = []
    taken: list[tuple[int, int, int, int]] = []
    for _ in range(40 * want):
        if len(defects) >= want:
            break
        special = first[len(defects)] if len(defects) < len(first) else None
        if special == "faint":
            kind = str(rng.choice(list(_FAINT_RENDERERS)))
            a, colour, m = _FAINT_RENDERERS[kind](rng, base)
        else:
            kind = "knot" if special else _DRAWN_TYPES[int(rng.choice(len(_TYPE_WEIGHTS), p=_TYPE_WEIGHTS))]
            a, colour, m = _RENDERERS[kind](rng, base)
        ph, pw = a.shape
        if ph > length - 12 or pw > inner_x1 - inner_x0:
            continue
        if special == "end_knot":  # a dead knot the saw cut through: darker, cropped by the end
            colour = colour * 0.6
            cut = int(4 + (ph - 8) * rng.uniform(0.2, 0.45))
            py = -cut if look.end_knot == "start" else length - ph + cut
        else:
            py = int(rng.integers(6, length - 6 - ph + 1))
        px = int(rng.integers(inner_x0, inner_x1 - pw + 1))
        if any(py < ty1 + 8 and ty0 < py + ph + 8 and px < tx1 + 8 and tx0 < px + pw + 8 for ty0, ty1, tx0, tx1 in taken):
            continue
        top, bottom = max(py, 0), min(py + ph, length)
        a, colour, m = a[top - py : bottom - py], colour[top - py : bottom - py], m[top - py : bottom - py]
        if not m.any():
            continue
        taken.append((py, py + ph, px, px + pw))
        sl = (slice(top, bottom), slice(px, px + pw))
        if special == "faint":
            rgb[sl] += colour * a[..., None]
        else:
            rgb[sl] = rgb[sl] * (1.0 - a[..., None]) + colour * a[..., None]
        mask[sl] |= m
        ys, xs = np.nonzero(m)
        defects.append(
            {
                "type": kind,
                "x": px + int(xs.min()),
                "y": top + int(ys.min()),
                "w": int(xs.max() - xs.min() + 1),
                "h": int(ys.max() - ys.min() + 1),
                "low_contrast": special == "faint",
                "cut_by_end": look.end_knot if special == "end_knot" else None,
            }
        )
    return defects


# --------------------------------------------------------------------------- scan


def _board_columns(board: _Board) -> dict[str, int]:
    """Columns the board covers (coverage >= 0.5) in scan coordinates, end exclusive: over all
    its lines (x0, x1), on its first line (x0_start, x1_start) and on its last (x0_end, x1_end)."""
    out = {}
    for key, cover in (("", (board.alpha >= 0.5).any(axis=0)), ("_start", board.alpha[0] >= 0.5),
                       ("_end", board.alpha[-1] >= 0.5)):
        cols = np.nonzero(cover)[0]
        out[f"x0{key}"], out[f"x1{key}"] = board.rx0 + int(cols.min()), board.rx0 + int(cols.max()) + 1
    return out


def generate_scan_with_mask(spec: SynthSpec) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Return (scan uint8 [H, W, C], defect mask uint8 [H, W] 0/255, ground_truth dict).

    The mask is separate from the JSON-able ground truth because it is a full-size image."""
    spec.validate()
    W = int(spec.width)
    layout = _rng(spec.seed, _KEY_LAYOUT)
    lengths = [int(layout.integers(spec.board_lines[0], spec.board_lines[1] + 1)) for _ in range(spec.boards)]
    gaps = [int(layout.integers(spec.gap_lines[0], spec.gap_lines[1] + 1)) for _ in range(spec.boards + 1)]
    looks: list[BoardLook | None] = [
        draw_look(_rng(spec.seed, _KEY_LOOK, i), i) if spec.style == "hard" else None for i in range(spec.boards)
    ]
    for i, look in enumerate(looks):
        if look is not None and look.touching_previous:
            gaps[i] = 0  # butted against the board before: no conveyor between them
    H = sum(lengths) + sum(gaps)

    # Whole-scan constants: lens/illumination fall-off across the line and per-pixel gain
    # (line-scan sensors show a fixed column pattern), belt colour and its lengthwise streaks.
    xn = (np.arange(W, dtype=np.float32) - (W - 1) / 2.0) / (W / 2.0)
    col_gain = (1.0 - layout.uniform(0.06, 0.12) * xn**2) * (1.0 + 0.006 * layout.standard_normal(W).astype(np.float32))
    belt_level = layout.uniform(14, 22)
    belt_tint = np.array([0.95, 1.0, 1.08], dtype=np.float32)
    belt_cols = belt_level + 2.0 * cv2.GaussianBlur(
        layout.standard_normal((1, W)).astype(np.float32), (0, 0), sigmaX=6.0, sigmaY=0.1
    )[0] / 0.2
    belt_cols = np.clip(belt_cols, 10.0, 25.0)
    if spec.style == "hard":  # a darker belt, so that dark wood stays clearly above it
        belt_cols = belt_cols * BELT_SCALE

    scan = np.empty((H, W, spec.channels), dtype=np.uint8)
    mask = np.zeros((H, W), dtype=np.uint8)
    gt_boards: list[dict[str, Any]] = []

    def finish(seg: np.ndarray, y0: int, key: int) -> None:
        """Gain, sensor noise, quantisation; write rows [y0, y0 + n) of the scan."""
        n = seg.shape[0]
        noise_rng = _rng(spec.seed, _KEY_NOISE, key)
        seg *= col_gain[None, :, None]
        seg += 1.5 * noise_rng.standard_normal(seg.shape, dtype=np.float32)
        if spec.channels == 1:
            out = seg @ _GREY_WEIGHTS
            scan[y0 : y0 + n, :, 0] = np.clip(out + 0.5, 0, 255).astype(np.uint8)
        else:
            scan[y0 : y0 + n] = np.clip(seg + 0.5, 0, 255).astype(np.uint8)

    def conveyor(n: int, key: int) -> np.ndarray:
        crng = _rng(spec.seed, _KEY_CONVEYOR, key)
        lum = belt_cols[None, :] * (1.0 + 0.06 * crng.standard_normal((n, W), dtype=np.float32))
        return lum[..., None] * belt_tint[None, None, :]

    y = 0
    for i in range(spec.boards):
        g = gaps[i]
        finish(conveyor(g, 2 * i), y, 2 * i)
        y += g
        L = lengths[i]
        look = looks[i]
        board = _render_board(_rng(spec.seed, _KEY_BOARD, i), L, W, float(spec.defect_rate), look)
        seg = conveyor(L, 2 * i + 1)
        rw = board.rgb.shape[1]
        cols = slice(board.rx0, board.rx0 + rw)
        a = board.alpha[..., None]
        seg[:, cols] = seg[:, cols] * (1.0 - a) + board.rgb * a
        if look is not None and look.lighting is not None:  # the board's lines, conveyor beside it too
            seg *= look.lighting.gain(W)[None, :, None]
        finish(seg, y, 2 * i + 1)
        mask[y : y + L, cols][board.mask] = 255
        defects = [{**d, "x": d["x"] + board.rx0, "y": d["y"] + y} for d in board.defects]
        gt_boards.append(
            {
                "index": i,
                "start_line": y,
                "end_line": y + L,
                **_board_columns(board),
                "skew_deg": round(look.skew_deg, 4) if look is not None else 0.0,
                "wood_level": round(board.wood_level, 2),
                "lighting": asdict(look.lighting) if look is not None and look.lighting is not None else None,
                "touching_previous": look is not None and look.touching_previous,
                "features": features(look, defects),
                "defects": defects,
                "defective": bool(defects),
            }
        )
        y += L
    finish(conveyor(gaps[-1], 2 * spec.boards), y, 2 * spec.boards)

    gt: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "generator": "edge-inspect synth",
        "style": spec.style,
        "spec": asdict(spec),
        "height": H,
        "width": W,
        "channels": spec.channels,
        "boards": gt_boards,
        "mask": "mask.png",
    }
    return scan, mask, gt


def generate_scan(spec: SynthSpec) -> tuple[np.ndarray, dict[str, Any]]:
    """Return (scan uint8 [H, W, C], ground_truth dict). Deterministic for a given spec."""
    scan, _mask, gt = generate_scan_with_mask(spec)
    return scan, gt


def _imwrite(path: Path, img: np.ndarray) -> None:
    """cv2.imwrite reports failure by returning False; turn that into an error that names it."""
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim == 3:
        img = img[:, :, 0]
    if not cv2.imwrite(str(path), img):
        raise InputDataError(f"could not write image {path}")


def write_synthetic_scans(out: Path, spec: SynthSpec, fmt: str = "image", lines_per_frame: int = 64) -> Path:
    """Write the scan and ground truth under `out`; return the ground-truth path.

    fmt "image": out/scan.png (one continuous scan); fmt "frames": out/scan/frame_NNNNNN.png of
    `lines_per_frame` lines each (the last may be shorter). Always out/ground_truth.json and
    out/mask.png."""
    if fmt not in ("image", "frames"):
        raise ValueError(f"fmt must be 'image' or 'frames', got {fmt!r}")
    if int(lines_per_frame) < 1:
        raise ValueError(f"lines_per_frame must be >= 1, got {lines_per_frame}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputDataError(f"output path {out} exists and is not a directory")
    scan, mask, gt = generate_scan_with_mask(spec)
    out.mkdir(parents=True, exist_ok=True)

    if fmt == "image":
        _imwrite(out / "scan.png", scan)
        written = 1
    else:
        frames_dir = out / "scan"
        if frames_dir.exists() and not frames_dir.is_dir():
            raise InputDataError(f"output path {frames_dir} exists and is not a directory")
        frames_dir.mkdir(exist_ok=True)
        # Stale frames from a longer earlier run would be replayed as part of this scan.
        for old in frames_dir.glob("frame_*.png"):
            old.unlink()
        written = 0
        for k, y0 in enumerate(range(0, scan.shape[0], int(lines_per_frame))):
            _imwrite(frames_dir / f"frame_{k:06d}.png", scan[y0 : y0 + int(lines_per_frame)])
            written += 1

    _imwrite(out / "mask.png", mask)
    gt_path = out / "ground_truth.json"
    write_atomic(gt_path, json.dumps(gt, indent=2) + "\n")
    log.info(
        "synthetic scan written",
        out=str(out),
        fmt=fmt,
        files=written,
        height=gt["height"],
        width=gt["width"],
        boards=len(gt["boards"]),
        defective=sum(b["defective"] for b in gt["boards"]),
    )
    return gt_path
