"""Training losses of each family, apart from the networks and the training step (as anomalib
keeps them), so a loss can be tested or swapped without touching the loop."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["bce", "discriminator_loss", "ganomaly_generator_loss", "skip_generator_loss"]


def bce(prob: torch.Tensor, target: float) -> torch.Tensor:
    """BCE on probabilities in FP32 with autocast off (BCE on FP16 probabilities is unsafe, and
    autocast refuses it)."""
    with torch.autocast(device_type=prob.device.type, enabled=False):
        p = prob.float()
        return F.binary_cross_entropy(p, torch.full_like(p, target))


def discriminator_loss(pred_real: torch.Tensor, pred_fake: torch.Tensor) -> torch.Tensor:
    """D: real -> 1, fake -> 0 (mean of the two BCEs)."""
    return 0.5 * (bce(pred_real, 1.0) + bce(pred_fake, 0.0))


def ganomaly_generator_loss(
    netd: nn.Module, x: torch.Tensor, x_hat: torch.Tensor, z: torch.Tensor, z_hat: torch.Tensor,
    w_adv: float, w_con: float, w_enc: float,
) -> dict[str, torch.Tensor]:
    """GANomaly (Akcay et al. 2018): feature matching on D's features + L1 image + L2 latent."""
    feat_real = netd(x)[1].detach()
    feat_fake = netd(x_hat)[1]
    adv = F.mse_loss(feat_fake.float(), feat_real.float())
    con = F.l1_loss(x_hat.float(), x.float())
    enc = F.mse_loss(z_hat.float(), z.float())
    return {"err_g": w_adv * adv + w_con * con + w_enc * enc, "adv": adv, "con": con, "enc": enc}


def skip_generator_loss(
    netd: nn.Module, x: torch.Tensor, x_hat: torch.Tensor, w_adv: float, w_con: float, w_lat: float,
) -> dict[str, torch.Tensor]:
    """Skip-GANomaly (Akcay et al. 2019): BCE adversarial (fool D) + L1 image + L2 between D's
    last features of x and x_hat (the latent loss, taken from D since a U-Net has no bottleneck
    code worth matching)."""
    with torch.no_grad():
        feat_real = netd(x)[1]
    pred_fake, feat_fake = netd(x_hat)
    adv = bce(pred_fake, 1.0)
    con = F.l1_loss(x_hat.float(), x.float())
    lat = F.mse_loss(feat_fake.float(), feat_real.float())
    return {"err_g": w_adv * adv + w_con * con + w_lat * lat, "adv": adv, "con": con, "lat": lat}
