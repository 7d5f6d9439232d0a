"""``greying_max``: how far a tile's wood turns towards grey, past the greyest of its own wood.

Wood's grain, its lighting and the lens fall-off change its brightness along one colour; its
latewood turns it redder. Its earlywood is the greyest it gets. A chalk mark worn almost off or
a pale water stain adds a few grey levels to every channel alike, which turns the wood greyer
than its own earlywood: a change the network's brightness residual cannot see under the grain
(issue 14: marks of 3-8 grey levels over 60-120 px). This score measures that, from the tile's
own pixels; it needs no network and no training, only colour tiles.

Per tile: the reference colour is the mean of its greyest 40 % of wood (its earlywood); each
pixel's part towards grey orthogonal to that colour, smoothed over 3 x 3 px, counts by what it
exceeds 0.5 grey levels (the sensor's noise after that smoothing); the score is its largest mean
over kernel x kernel px windows, in grey levels.
Clipped pixels (a channel at 255: clipping makes pale wood grey) and dark ones (under
0.75 of the tile's mean brightness: conveyor, the board's edge mixed with it, knots), with a
pixel around them, do not count, so the score does not fire at a board's edge.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CLIPPED = 255.0     # a channel at the sensor's top: the pixel's colour is not the wood's
DARK_SHARE = 0.75   # pixels darker than this share of the tile's mean brightness are not wood face
GREYEST_SHARE = 0.4  # the share of the tile's wood whose mean colour is the reference (earlywood)
FLOOR = 0.5         # grey levels that count as none: the sensor's noise (1.5 per channel) over 3 x 3 px


def _towards_grey(colour: torch.Tensor) -> torch.Tensor:
    """Unit vectors [B, 3, 1, 1] orthogonal to ``colour``, pointing towards grey (1, 1, 1)."""
    unit = colour / colour.pow(2).sum(1, keepdim=True).sqrt().clamp_min(1e-3)
    grey = torch.full_like(unit, 3.0 ** -0.5)
    out = grey - (grey * unit).sum(1, keepdim=True) * unit
    return out / out.pow(2).sum(1, keepdim=True).sqrt().clamp_min(1e-6)


def _masked_mean(v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Mean of v [B, C, H, W] over the pixels where w [B, 1, H, W] is 1, per tile and channel."""
    return (v * w).sum((2, 3), keepdim=True) / w.sum((2, 3), keepdim=True).clamp_min(1.0)


def _box(v: torch.Tensor, k: int, pad: bool) -> torch.Tensor:
    """k x k box mean, as two 1-D passes (a 2-D window costs k times more); ``pad`` keeps the size."""
    p = k // 2 if pad else 0
    v = F.avg_pool2d(v, (k, 1), stride=1, padding=(p, 0))
    return F.avg_pool2d(v, (1, k), stride=1, padding=(0, p))


def wood_mask(raw: torch.Tensor) -> torch.Tensor:
    """1 where a pixel of raw [B, 3, H, W] (0-255) is unclipped wood face, with a pixel of margin."""
    bright = raw.mean(1, keepdim=True)
    unclipped = (raw.amax(1, keepdim=True) < CLIPPED).to(raw.dtype)  # a clipped pixel is greyer than its wood
    level = _masked_mean(bright, unclipped)
    ok = unclipped * (bright >= DARK_SHARE * level).to(raw.dtype)
    return -F.max_pool2d(-ok, 3, stride=1, padding=1)


def greying_map(raw: torch.Tensor) -> torch.Tensor:
    """Per-pixel greying [B, 1, H, W] (grey levels, >= 0) of raw colour tiles [B, 3, H, W] (0-255)."""
    ok = wood_mask(raw)
    # the reference from 4 x 4 px blocks, each the mean colour of its wood pixels, where they are at
    # least half of it: less noise, and a 16th of the work
    share = F.avg_pool2d(ok, 4)
    colours = F.avg_pool2d(raw * ok, 4) / share.clamp_min(1e-3)
    usable = share >= 0.5
    s0 = (colours * _towards_grey(_masked_mean(colours, usable.to(raw.dtype)))).sum(1, keepdim=True)
    ranked = torch.sort(torch.where(usable, s0, torch.full_like(s0, -1e6)).flatten(1), dim=1, descending=True).values
    # the GREYEST_SHARE quantile of those blocks
    nth = (GREYEST_SHARE * usable.flatten(1).sum(1, keepdim=True) - 1.0).clamp_min(0.0).to(torch.int64)
    cut = torch.gather(ranked, 1, nth).view(-1, 1, 1, 1)
    greyest = (usable & (s0 >= cut)).to(raw.dtype)
    # no such block (wood in specks): the mean colour of its wood pixels instead
    reference = torch.where(usable.flatten(1).any(1).view(-1, 1, 1, 1), _masked_mean(colours, greyest),
                            _masked_mean(raw, ok))
    s = _box((raw * _towards_grey(reference)).sum(1, keepdim=True) * ok, 3, pad=True)
    return F.relu(s - FLOOR) * ok


def greying_max(raw: torch.Tensor, kernel: int) -> torch.Tensor:
    """``greying_max`` [B] of raw colour tiles [B, 3, H, W] (0-255): the largest kernel x kernel
    mean of ``greying_map``."""
    return _box(greying_map(raw), kernel, pad=False).flatten(1).amax(1)
