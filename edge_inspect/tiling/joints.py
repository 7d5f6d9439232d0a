"""The joint between two boards butted end to end: a narrow dark band across the whole board.

Why: the extent and shade seams (`tiler.py`) cannot tell apart butted boards of the same width,
place and shade, so two such boards were one record, and a good board was rejected for its
neighbour's defect or for the joint itself. What they still show is the joint: a sawn end is
rougher and its arris eased, so it catches less light than the face, and the lines next to a
joint are darker than both faces for a few lines on each side, across the common width.

A joint between lines j-1 and j is where, in at least JOINT_SHARE of JOINT_BLOCKS column blocks
across the board, each side darkens toward it: its face (lines 8-20 away) is brighter than its
two lines next to the joint by JOINT_DIP and than its lines 3-5 away by JOINT_WIDE, and those
are brighter than the two next to the joint by JOINT_STEEP. Each window is a median over its
lines (one bright or dark line in it changes nothing), and each side is compared with its own
face, so boards of different shades still count. Things that are not a joint:

* a knot, a stain or a crack along the grain darkens only a few blocks;
* a crack across the board is a line or two wide: its lines 3-5 away are as bright as the face;
* a step to darker wood that lightens again over the next lines: the side before it does not
  darken toward the step over lines 3-5, the side after it is darkest at the step, not next
  to a later line;
* a slow change of shade (growth rings, lighting) darkens no narrow band;
* noise: a block whose lines differ from one to the next by JOINT_DIP or more does not vote.

Measured on the development scans (8 x 60 synthetic boards of seeds 6001-6004, 55 butted
joints; seeds 6005-6006 then checked the whole tiler): at a joint the median block's face was
8 % brighter than the lines next to it and 4.5 % than lines 3-5 away, and 62-100 % of blocks
passed (all but 5 joints 100 %); inside boards, on any line at least 55 lines from a board's
end, at most 25 % of blocks did.
"""

from __future__ import annotations

import numpy as np

JOINT_BLOCKS = 8    # column blocks across the board
JOINT_SHARE = 0.6   # ...of which at least this share must show the band
JOINT_DIP = 0.04    # the face over the two lines next to the joint, minus 1
JOINT_WIDE = 0.02   # the face over lines 3-5 from the joint, minus 1
JOINT_STEEP = 0.01  # lines 3-5 from the joint over the two next to it, minus 1
JOINT_INSET = 8     # px inside the board's edges (their own shading is left out)
JOINT_SAMPLES = 256  # columns a profile line averages (per block: JOINT_SAMPLES / JOINT_BLOCKS)
JOINT_REACH = 20    # lines a joint test reads on each side (the face is lines 8-20 away)
JOINT_SLACK = 5     # lines beyond its window a joint test compares depths over
_NEAR, _WIDE, _FACE = (0, 2), (2, 5), (8, 20)


def block_profile(lines: np.ndarray, extent: tuple[int, int]) -> np.ndarray | None:
    """Mean grey per line of JOINT_BLOCKS column blocks across [x0, x1) (inset by JOINT_INSET, about
    JOINT_SAMPLES columns in all, evenly spaced in each block): [n, JOINT_BLOCKS] float32, or None
    when the board is too narrow. Grain runs along the board, so a column's streak is in every
    line and cancels in the ratios `joint_in` takes; 32 columns a block place a joint to the line
    on the development scans, 8 moved five of them by one."""
    x0, x1 = extent[0] + JOINT_INSET, extent[1] - JOINT_INSET
    if x1 - x0 < 4 * JOINT_BLOCKS:
        return None
    per_block = (x1 - x0) // JOINT_BLOCKS
    stride = max(1, per_block // (JOINT_SAMPLES // JOINT_BLOCKS))
    n, _, c = lines.shape
    blocks = lines[:, x0:x0 + JOINT_BLOCKS * per_block].reshape(n, JOINT_BLOCKS, per_block, c)
    return blocks[:, :, ::stride].mean(axis=(2, 3), dtype=np.float32)  # a strided view: no copy


def joint_in(profile: np.ndarray, first: int, last: int) -> int | None:
    """The line j in [first, last) such that a joint lies between profile lines j-1 and j, or
    None. It is the deepest band within JOINT_SLACK lines of [first, last) too: next to a joint
    where the board after it is brighter, a line or two early passes as well (its side after
    the joint sees the brighter board), and a window ending there must not take it. Needs
    JOINT_REACH + JOINT_SLACK lines of the profile on either side of [first, last)."""
    reach = JOINT_REACH + JOINT_SLACK
    if first < reach or last + reach > profile.shape[0] or first >= last:
        raise ValueError(f"joint test over [{first}, {last}) needs {reach} lines either side")
    first, last = first - JOINT_SLACK, last + JOINT_SLACK
    j = np.arange(first, last)

    def median(a: int, b: int) -> np.ndarray:
        """Per joint line and block, the median of profile lines [j + a, j + b)."""
        windows = np.lib.stride_tricks.sliding_window_view(profile, b - a, axis=0)  # [n', K, b-a]
        return np.median(windows[j + a], axis=2)

    def darkens(near: np.ndarray, wide: np.ndarray, face: np.ndarray) -> np.ndarray:
        near, wide = np.maximum(near, 1.0), np.maximum(wide, 1.0)
        return (face / near - 1 >= JOINT_DIP) & (face / wide - 1 >= JOINT_WIDE) & (wide / near - 1 >= JOINT_STEEP)

    (n0, n1), (w0, w1), (f0, f1) = _NEAR, _WIDE, _FACE
    sides = [(median(-n1, -n0), median(-w1, -w0), median(-f1, -f0)),  # before the joint
             (median(n0, n1), median(w0, w1), median(f0, f1))]        # after it
    # A block whose lines already differ from one to the next by JOINT_DIP (median) cannot show
    # a band of JOINT_DIP: its noise would, so it does not vote (development wood: at most 1.7 %).
    steady = np.median(np.abs(np.diff(profile, axis=0)), axis=0) < JOINT_DIP * np.median(profile, axis=0)
    share = (np.logical_and(*(darkens(*side) for side in sides)) & steady).mean(axis=1)
    if share.max() < JOINT_SHARE:
        return None
    deep = np.minimum(*(face / np.maximum(near, 1.0) for near, _, face in sides))
    depth = np.where(share >= JOINT_SHARE, np.median(deep, axis=1), -np.inf)
    best = int(np.argmax(depth))
    return first + best if JOINT_SLACK <= best < len(j) - JOINT_SLACK else None


def may_hold_joint(line_means: np.ndarray, first: int, last: int) -> bool:
    """Whether the mean across the board (one value per line) dips by JOINT_SHARE x JOINT_DIP on
    both sides of any joint line in [first, last) (JOINT_SLACK lines wider, as `joint_in`): where
    it does not, no JOINT_SHARE of the blocks can dip by JOINT_DIP, and `joint_in` need not run.
    Why: the tiler asks this of every 32 lines of every board, and a camera 4096 px wide at 80 kHz
    leaves the tiling stage little time; this reads 32 numbers per block the tiler keeps anyway
    and takes a few contiguous slices, where the full test reads the band again and sorts."""
    cs = np.concatenate([[0.0], np.cumsum(line_means, dtype=np.float64)])
    lo, hi = first - JOINT_SLACK, last + JOINT_SLACK

    def mean(a: int, b: int) -> np.ndarray:  # of lines [j + a, j + b) for every j in [lo, hi)
        return (cs[lo + b:hi + b] - cs[lo + a:hi + a]) / (b - a)

    (n0, n1), (f0, f1), least = _NEAR, _FACE, 1.0 + JOINT_SHARE * JOINT_DIP
    before = mean(-f1, -f0) >= least * np.maximum(mean(-n1, -n0), 1.0)
    after = mean(f0, f1) >= least * np.maximum(mean(n0, n1), 1.0)
    return bool(np.any(before & after))
