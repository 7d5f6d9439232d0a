"""GANomaly's generator step: encoder-decoder-encoder, losses adv (feature matching) / con / enc."""

from __future__ import annotations

import torch

from edge_inspect.models.losses import ganomaly_generator_loss
from edge_inspect.training.steps.base import AdversarialStep

__all__ = ["GanomalyStep"]


class GanomalyStep(AdversarialStep):
    loss_keys = ("err_g", "err_d", "adv", "con", "enc")

    def generator_losses(self, x_in: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x_hat, z, z_hat = self.netg(x_in)
        c = self.cfg
        return x_hat, ganomaly_generator_loss(self.netd, x, x_hat, z, z_hat, c.w_adv, c.w_con, c.w_enc)
