"""GANomaly networks (Akcay et al. 2018): encoder-decoder-encoder generator and DCGAN discriminator.

The layer recipe follows the reference implementation (DCGAN blocks, 4x4 convolutions, stride 2,
no conv bias, BatchNorm after every inner conv), with one addition: ``max_channels`` caps the
channel pyramid so a 256x256 model stays small enough to ship (a few MB as ONNX FP32) and fast
enough for a CPU.
"""

from __future__ import annotations

import torch
from torch import nn

from edge_inspect.models.blocks import channel_plan, weights_init

__all__ = ["Encoder", "Decoder", "NetG", "NetD", "weights_init", "channel_plan"]


class Encoder(nn.Module):
    """DCGAN encoder: isize -> 4x4 by stride-2 convs, then a 4x4 valid conv to ``nz`` x 1 x 1."""

    def __init__(
        self, isize: int, nz: int, nc: int, ndf: int, max_channels: int, add_final_conv: bool = True
    ) -> None:
        super().__init__()
        chans = channel_plan(isize, ndf, max_channels)
        layers: list[nn.Module] = [
            nn.Conv2d(nc, chans[0], 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            layers += [
                nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        if add_final_conv:
            layers.append(nn.Conv2d(chans[-1], nz, 4, 1, 0, bias=False))
        self.main = nn.Sequential(*layers)
        self.out_channels = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class Decoder(nn.Module):
    """Mirror of :class:`Encoder`: nz x 1 x 1 -> 4x4 -> ... -> isize, Tanh output in [-1, 1]."""

    def __init__(self, isize: int, nz: int, nc: int, ngf: int, max_channels: int) -> None:
        super().__init__()
        chans = channel_plan(isize, ngf, max_channels)[::-1]  # 4x4 first
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(nz, chans[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(chans[0]),
            nn.ReLU(True),
        ]
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(True),
            ]
        layers += [nn.ConvTranspose2d(chans[-1], nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


class NetG(nn.Module):
    """Generator: encoder1 -> decoder -> encoder2; returns (x_hat, z, z_hat).

    z and z_hat are [B, nz, 1, 1]; their distance is GANomaly's anomaly score, since the
    second encoder only learns to reproduce the latent code of normal images.
    """

    def __init__(
        self, isize: int = 256, nc: int = 3, ngf: int = 16, nz: int = 100, max_channels: int = 128
    ) -> None:
        super().__init__()
        self.isize, self.nc, self.nz = isize, nc, nz
        self.encoder1 = Encoder(isize, nz, nc, ngf, max_channels)
        self.decoder = Decoder(isize, nz, nc, ngf, max_channels)
        self.encoder2 = Encoder(isize, nz, nc, ngf, max_channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = self.encoder1(x)
        x_hat = self.decoder(z)
        z_hat = self.encoder2(x_hat)
        return x_hat, z, z_hat


class NetD(nn.Module):
    """Discriminator: DCGAN encoder body (features) + 4x4 conv to one logit + Sigmoid.

    Returns (probability [B], features [B, C, 4, 4]); the features drive the generator's
    feature-matching adversarial loss.
    """

    def __init__(self, isize: int = 256, nc: int = 3, ndf: int = 16, max_channels: int = 128) -> None:
        super().__init__()
        self.features = Encoder(isize, 1, nc, ndf, max_channels, add_final_conv=False)
        self.classifier = nn.Sequential(
            nn.Conv2d(self.features.out_channels, 1, 4, 1, 0, bias=False), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(x)
        prob = self.classifier(feats).reshape(-1)
        return prob, feats
