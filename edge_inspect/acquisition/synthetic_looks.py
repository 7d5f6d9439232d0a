"""The hard cases of real lines for `synth --style hard`: what each board looks like, drawn from
the board's own random stream.

Why: a segmenter and a model tuned on the standard boards (pale wood, 70-95 % of the camera,
straight, evenly lit, a gap before each) passed the demo but failed on a real line: dark wood
below the segmenter's fixed level, boards that fill the camera or lie at its side, skewed
boards, boards butted end to end, a lamp falling off toward one side, knots cut by a board's
end, and large marks only a few grey levels off the wood. In the hard style every board draws
each of these on its own, so one scan holds them in every mix, and the ground truth says which
board has which (`features`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

STYLES = ("standard", "hard")

# Odds per board of each case in the hard style.
_P_FULL, _P_SKEW, _P_DARK, _P_LIGHTING, _P_TOUCHING, _P_END_KNOT, _P_FAINT = 0.15, 0.5, 0.35, 0.4, 0.2, 0.5, 0.5

WIDTH_FRACTIONS = (0.40, 1.00)    # board width as a share of the camera width
MAX_SKEW_DEG = 1.5                # the board's edges drift sideways by tan(skew) px per line
DARK_LEVELS = (30.0, 60.0)        # grey level of dark wood's base colour: the old fixed
                                  # foreground_level 40 lies inside this range
BELT_SCALE = 0.65                 # hard-style conveyor: about 9-14 grey (standard: 14-22)
MAX_FALLOFF = 0.30                # lighting gain at the far side: down to 1 - 0.30
EDGE_WOBBLE = 1.5                 # the largest sideways wobble of an edge (synthetic._wobble amplitude)
FAINT_CONTRAST = (3.0, 8.0)       # grey levels a low-contrast mark lies above the wood


@dataclass(frozen=True)
class Lighting:
    """A lamp falling off toward one side of the camera: gain(x) = 1 - falloff * t(x)**2, t going
    from 0 at the bright side of the camera to 1 at the darker side."""

    darker_side: str   # "left" | "right"
    falloff: float

    def gain(self, width: int) -> np.ndarray:
        t = np.linspace(0.0, 1.0, width, dtype=np.float32)
        if self.darker_side == "left":
            t = t[::-1]
        return (1.0 - self.falloff * t * t).astype(np.float32)


@dataclass(frozen=True)
class BoardLook:
    """How one hard-style board departs from a standard one."""

    width_frac: float
    position: float            # 0..1: where the board lies in the room the camera leaves beside it
    skew_deg: float            # signed; 0 = straight
    dark_level: float | None   # grey level of the wood's base colour, None for ordinary wood
    lighting: Lighting | None
    touching_previous: bool    # no conveyor between this board and the one before
    end_knot: str | None       # "start" | "end": a dark knot cut by that end (defective boards only)
    faint_defect: bool         # one defect is a large low-contrast mark (defective boards only)

    def placement(self, scan_w: int, length: int) -> tuple[float, float, float]:
        """(board width, left edge at the middle line, sideways px per line): the board keeps
        its edges, wobble and drift included, inside the camera."""
        slope = math.tan(math.radians(self.skew_deg))
        drift = abs(slope) * (length - 1) / 2.0
        room = scan_w - 2.0 * (drift + EDGE_WOBBLE)
        width = min(self.width_frac * scan_w, room)
        return width, drift + EDGE_WOBBLE + self.position * (room - width), slope


def draw_look(rng: np.random.Generator, index: int) -> BoardLook:
    """Every case drawn on its own (the first board of a scan follows conveyor, never a board)."""
    width_frac = 1.0 if rng.random() < _P_FULL else float(rng.uniform(*WIDTH_FRACTIONS))
    position = float(rng.uniform())
    skew = float(rng.uniform(0.3, MAX_SKEW_DEG) * rng.choice((-1.0, 1.0))) if rng.random() < _P_SKEW else 0.0
    dark = float(rng.uniform(*DARK_LEVELS)) if rng.random() < _P_DARK else None
    lighting = None
    if rng.random() < _P_LIGHTING:
        lighting = Lighting(str(rng.choice(("left", "right"))), float(rng.uniform(0.12, MAX_FALLOFF)))
    touching = bool(rng.random() < _P_TOUCHING) and index > 0
    end_knot = str(rng.choice(("start", "end"))) if rng.random() < _P_END_KNOT else None
    faint = bool(rng.random() < _P_FAINT)
    return BoardLook(width_frac, position, skew, dark, lighting, touching, end_knot, faint)


def features(look: BoardLook | None, defects: list[dict]) -> list[str]:
    """The hard cases a board shows, as the ground truth lists them."""
    if look is None:
        return []
    out = []
    if look.dark_level is not None:
        out.append("dark_wood")
    if look.skew_deg:
        out.append("skew")
    if look.lighting is not None:
        out.append("uneven_lighting")
    if look.touching_previous:
        out.append("touching_previous")
    if any(d.get("cut_by_end") for d in defects):
        out.append("end_knot")
    if any(d["low_contrast"] for d in defects):
        out.append("low_contrast_defect")
    return out
