"""Building blocks shared by the GANomaly family (DCGAN stages, U-Net stages, attention, ASPP).

Kept in one place so every generator uses the same conv recipe (4x4 stride-2, no bias before
BatchNorm, DCGAN init) and a change to a block changes every model the same way.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ASPP",
    "DownBlock",
    "ResidualDown",
    "ResidualUp",
    "SelfAttention",
    "UpBlock",
    "channel_plan",
    "check_isize",
    "weights_init",
]


def check_isize(isize: int) -> int:
    """Validate a tile size (power of 2, >= 16) and return log2 of it: the U-Net depth."""
    if isize < 16 or isize & (isize - 1):
        raise ValueError(f"isize must be a power of 2 >= 16, got {isize}")
    return int(math.log2(isize))


def channel_plan(isize: int, base: int, max_channels: int, min_size: int = 4) -> list[int]:
    """Channels after each stride-2 stage, from isize/2 down to ``min_size`` (doubling, capped).

    Decoders mirror the same list, so encoder and decoder agree at every scale.
    """
    check_isize(isize)
    if base < 1 or max_channels < base:
        raise ValueError(f"need 1 <= base ({base}) <= max_channels ({max_channels})")
    chans = []
    size, ch = isize // 2, base
    while True:
        chans.append(min(ch, max_channels))
        if size <= min_size:
            return chans
        size //= 2
        ch *= 2


class DownBlock(nn.Sequential):
    """4x4 stride-2 conv (+ BatchNorm) + LeakyReLU(0.2): one DCGAN / pix2pix encoder stage."""

    def __init__(self, c_in: int, c_out: int, norm: bool = True, act: str = "lrelu") -> None:
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=not norm)]
        if norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.LeakyReLU(0.2, inplace=True) if act == "lrelu" else nn.ReLU(inplace=True))
        super().__init__(*layers)


class UpBlock(nn.Sequential):
    """4x4 stride-2 transposed conv + BatchNorm + ReLU: one DCGAN / pix2pix decoder stage."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(
            nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
        )


class SelfAttention(nn.Module):
    """SAGAN self-attention (Zhang et al. 2019): y = gamma * softmax(Q^T K) V + x.

    gamma starts at 0, so the block is the identity at init and the network learns how much
    non-local context to mix in (a defect is judged against the whole tile, not a neighbourhood).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        inner = max(1, channels // 8)
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # B, N, C'
        k = self.key(x).flatten(2)  # B, C', N
        attn = torch.softmax(torch.bmm(q, k), dim=-1)  # B, N, N
        v = self.value(x).flatten(2)  # B, C, N
        out = torch.bmm(v, attn.transpose(1, 2)).view(b, c, h, w)
        return self.gamma * out + x


class ResidualDown(nn.Module):
    """Residual encoder unit (Skip-GANomaly++): 3x3 s2 conv-BN-LReLU, 3x3 conv-BN, plus a 1x1 s2
    projection shortcut; residual units keep gradients flowing through a deeper encoder.

    The shortcut subsamples, then applies a 1x1 conv: the same function (and weights) as a 1x1
    stride-2 conv, but torch 2.13's oneDNN backward of that strided 1x1 conv corrupts the heap on
    the CPU ("double free or corruption" within 200 steps at isize 32-128), and without oneDNN
    training ran ten times slower."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, inplace=False),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out),
        )
        self.short = nn.Sequential(nn.Conv2d(c_in, c_out, 1, 1, 0, bias=False), nn.BatchNorm2d(c_out))
        self.act = nn.LeakyReLU(0.2, inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.short(x[:, :, ::2, ::2]))


class ResidualUp(nn.Module):
    """Residual decoder unit: 4x4 s2 transposed conv up, concat the skip, then a residual 3x3 pair."""

    def __init__(self, c_in: int, c_skip: int, c_out: int) -> None:
        super().__init__()
        self.up = UpBlock(c_in, c_out)
        c_cat = c_out + c_skip
        self.body = nn.Sequential(
            nn.Conv2d(c_cat, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=False),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out),
        )
        self.short = nn.Sequential(nn.Conv2d(c_cat, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        self.act = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        y = self.up(x)
        if skip is not None:
            y = torch.cat([y, skip], 1)
        return self.act(self.body(y) + self.short(y))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLab v3): parallel 1x1, dilated 3x3 and image-pool
    branches fused by a 1x1 conv, so the bottleneck sees context at several scales."""

    def __init__(self, c_in: int, c_out: int, rates: tuple[int, ...] = (1, 2, 3)) -> None:
        super().__init__()

        def cbr(k: int, d: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, k, 1, 0 if k == 1 else d, dilation=d, bias=False),
                nn.BatchNorm2d(c_out), nn.ReLU(inplace=False),
            )

        self.branches = nn.ModuleList([cbr(1, 1)] + [cbr(3, r) for r in rates])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c_in, c_out, 1, bias=False), nn.ReLU(inplace=False))
        self.project = nn.Sequential(
            nn.Conv2d(c_out * (len(rates) + 2), c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.branches]
        outs.append(self.pool(x).expand(-1, -1, x.shape[2], x.shape[3]))
        return self.project(torch.cat(outs, 1))


def weights_init(module: nn.Module) -> None:
    """DCGAN init (conv N(0, 0.02), BN weight N(1, 0.02), bias 0); use with ``net.apply``."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def upsample_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of a [B, 1, h, w] map to size x size (ONNX Resize, linear)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
