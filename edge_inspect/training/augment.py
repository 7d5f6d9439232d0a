"""Training-time augmentation that keeps good product good: flips, brightness/contrast jitter
within set limits (the same surface under a slightly different light), and FEGAN's M-SE
self-enhancement (patches of a tile pasted elsewhere in the same tile, multi-scale aspect
ratios, colour jittered), which is the one that makes synthetic oddities on purpose.

M-SE makes synthetic, in-distribution "defects" from the tile itself; the generator gets the
pasted tile and must reconstruct the clean one, so it learns to remove local oddities instead
of copying them through its skip connections.
"""

from __future__ import annotations

import math

import torch

__all__ = ["flip", "jitter", "mse_augment", "ASPECTS"]

#: patch aspect ratios (w / h) drawn uniformly: multi-scale, both orientations
ASPECTS = (0.25, 0.5, 1.0, 2.0, 4.0)


def flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal and vertical flips per tile (wood grain is flip-invariant; nothing more)."""
    b = x.shape[0]
    h = (torch.rand(b, generator=gen) < 0.5).view(b, 1, 1, 1).to(x.device)
    v = (torch.rand(b, generator=gen) < 0.5).view(b, 1, 1, 1).to(x.device)
    x = torch.where(h, x.flip(3), x)
    return torch.where(v, x.flip(2), x)


def jitter(x: torch.Tensor, gen: torch.Generator, brightness: float, contrast: float) -> torch.Tensor:
    """Per tile: contrast scaled around the tile's mean by 1 +- up to `contrast`, then up to
    +-`brightness` of the grey range added ([-1, 1] is a range of 2); clipped to the range."""
    b = x.shape[0]
    gain = 1.0 + contrast * (2 * torch.rand(b, 1, 1, 1, generator=gen) - 1)
    offset = 2.0 * brightness * (2 * torch.rand(b, 1, 1, 1, generator=gen) - 1)
    mean = x.mean((1, 2, 3), keepdim=True)
    return ((x - mean) * gain.to(x) + mean + offset.to(x)).clamp(-1.0, 1.0)


def _rand(gen: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def mse_augment(
    x: torch.Tensor, gen: torch.Generator, area_ratio: float = 0.05, max_patch: float = 0.01, jitter: float = 0.1
) -> torch.Tensor:
    """Copy of ``x`` ([B, C, H, W] in [-1, 1]) with pasted self-patches per tile.

    Patches are drawn until their total area reaches ``area_ratio`` of the tile; each covers
    between max_patch/10 and ``max_patch`` of it (the 1 % cap keeps them defect-sized) with an
    aspect ratio from :data:`ASPECTS`; each gets a random gain and offset (per channel) of
    strength ``jitter``. Source and target are independent uniform positions.
    """
    if not 0 < max_patch <= 0.01:
        raise ValueError(f"max_patch must be in (0, 0.01], got {max_patch}")
    out = x.clone()
    b, c, h, w = x.shape
    area = h * w
    for i in range(b):
        pasted = 0.0
        while pasted < area_ratio * area:
            a = _rand(gen, max_patch / 10, max_patch) * area
            aspect = ASPECTS[int(torch.randint(len(ASPECTS), (), generator=gen))]
            ph = max(1, min(h, round(math.sqrt(a / aspect))))
            pw = max(1, min(w, round(a / ph)))
            while ph * pw > max_patch * area and (ph > 1 or pw > 1):  # rounding must not break the cap
                if pw >= ph:
                    pw -= 1
                else:
                    ph -= 1
            sy, sx = int(torch.randint(h - ph + 1, (), generator=gen)), int(torch.randint(w - pw + 1, (), generator=gen))
            ty, tx = int(torch.randint(h - ph + 1, (), generator=gen)), int(torch.randint(w - pw + 1, (), generator=gen))
            gain = 1.0 + jitter * (2 * torch.rand(c, 1, 1, generator=gen) - 1)
            offset = jitter * (2 * torch.rand(c, 1, 1, generator=gen) - 1)
            patch = x[i, :, sy : sy + ph, sx : sx + pw] * gain.to(x) + offset.to(x)
            out[i, :, ty : ty + ph, tx : tx + pw] = patch.clamp(-1.0, 1.0)
            pasted += ph * pw
    return out
