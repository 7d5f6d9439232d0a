"""Skip-GANomaly generator (Akcay et al. 2019): a pix2pix U-Net, optionally with self-attention.

The skip connections let the decoder copy fine texture from the encoder, so a normal tile is
reconstructed sharply and the residual is left to what the network never learned (defects).
``attention_blocks`` puts a SAGAN self-attention after the listed encoder blocks (1-based):
every block is Skip-Attention GANomaly; only blocks 4 and 5 is the MIFE variant.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from edge_inspect.models.blocks import (
    DownBlock,
    SelfAttention,
    UpBlock,
    channel_plan,
    check_isize,
)

__all__ = ["SkipGenerator", "default_attention_blocks"]

#: default attention placement: blocks whose output is at most this many pixels a side
#: (attention memory grows with (h*w)^2: a 128x128 map would need 1 GB per tile)
ATTENTION_MAX_SIDE = 32


def default_attention_blocks(isize: int) -> tuple[int, ...]:
    """Every encoder block with an output of at most ATTENTION_MAX_SIDE pixels a side."""
    depth = check_isize(isize)
    return tuple(i for i in range(1, depth + 1) if isize >> i <= ATTENTION_MAX_SIDE)


class SkipGenerator(nn.Module):
    """U-Net from isize down to 1x1 and back; forward returns x_hat only (no latent pair)."""

    has_latent = False

    def __init__(
        self,
        isize: int = 256,
        nc: int = 3,
        ngf: int = 16,
        max_channels: int = 128,
        attention_blocks: Iterable[int] = (),
    ) -> None:
        super().__init__()
        depth = check_isize(isize)
        self.isize, self.nc = isize, nc
        chans = channel_plan(isize, ngf, max_channels, min_size=1)
        self.attention_blocks = tuple(sorted(set(int(b) for b in attention_blocks)))
        bad = [b for b in self.attention_blocks if not 1 <= b <= depth]
        if bad:
            raise ValueError(f"attention_blocks {bad} outside 1..{depth} (encoder blocks at isize {isize})")
        enc: list[nn.Module] = [DownBlock(nc, chans[0], norm=False)]
        enc += [DownBlock(a, b) for a, b in zip(chans[:-2], chans[1:-1])]
        enc.append(DownBlock(chans[-2], chans[-1], norm=False, act="relu"))  # innermost, 1x1
        self.encoder = nn.ModuleList(enc)
        self.attention = nn.ModuleDict({str(b): SelfAttention(chans[b - 1]) for b in self.attention_blocks})
        # decoder stage j maps the (concatenated) features at scale j+1 up to scale j
        dec = [UpBlock(chans[j + 1] * (1 if j == depth - 2 else 2), chans[j]) for j in range(depth - 1)]
        self.decoder = nn.ModuleList(dec)
        self.final = nn.Sequential(nn.ConvTranspose2d(chans[0] * 2, nc, 4, 2, 1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats: list[torch.Tensor] = []
        h = x
        for i, block in enumerate(self.encoder, start=1):
            h = block(h)
            key = str(i)
            if key in self.attention:
                h = self.attention[key](h)
            feats.append(h)
        y = feats[-1]
        for j in range(len(self.decoder) - 1, -1, -1):
            y = torch.cat([self.decoder[j](y), feats[j]], 1)
        return self.final(y)
