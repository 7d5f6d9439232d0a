"""Skip-GANomaly++ generator: stem, residual encoder units, ASPP bottleneck, residual decoders
with skips. Residual units train deeper encoders stably; ASPP adds multi-scale context at the
bottleneck so a large defect is not reconstructed as if it were texture."""

from __future__ import annotations

import torch
from torch import nn

from edge_inspect.models.blocks import (
    ASPP,
    ResidualDown,
    ResidualUp,
    channel_plan,
    check_isize,
)

__all__ = ["SkipPPGenerator"]


class SkipPPGenerator(nn.Module):
    """isize -> 4x4 by residual units, ASPP, back up with skips; forward returns x_hat."""

    has_latent = False

    def __init__(self, isize: int = 256, nc: int = 3, ngf: int = 16, max_channels: int = 128) -> None:
        super().__init__()
        check_isize(isize)
        self.isize, self.nc = isize, nc
        chans = channel_plan(isize, ngf, max_channels, min_size=4)
        self.stem = nn.Sequential(nn.Conv2d(nc, ngf, 3, 1, 1, bias=False), nn.BatchNorm2d(ngf), nn.LeakyReLU(0.2))
        self.encoder = nn.ModuleList(ResidualDown(a, b) for a, b in zip([ngf] + chans[:-1], chans))
        self.aspp = ASPP(chans[-1], chans[-1])
        skips = [ngf] + chans[:-1]  # channels of the skip feature at each decoder's output scale
        self.decoder = nn.ModuleList(ResidualUp(c_in, c_skip, c_skip) for c_in, c_skip in zip(chans, skips))
        self.final = nn.Sequential(nn.Conv2d(ngf, nc, 3, 1, 1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # standard layout: the uint8 NHWC input arrives as a channels-last view, and torch 2.13's
        # CPU backward of the strided 1x1 shortcut conv corrupts memory on channels-last input
        feats = [self.stem(x.contiguous())]
        for block in self.encoder:
            feats.append(block(feats[-1]))
        y = self.aspp(feats[-1])
        for j in range(len(self.decoder) - 1, -1, -1):
            y = self.decoder[j](y, feats[j])
        return self.final(y)
