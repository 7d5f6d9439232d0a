"""Generator step of the U-Net families (Skip-GANomaly, Skip-Attention/MIFE, Skip-GANomaly++):
losses adv (BCE) / con (L1) / lat (D-feature L2)."""

from __future__ import annotations

import torch

from edge_inspect.models.losses import skip_generator_loss
from edge_inspect.training.steps.base import AdversarialStep

__all__ = ["SkipStep"]


class SkipStep(AdversarialStep):
    loss_keys = ("err_g", "err_d", "adv", "con", "lat")

    def generator_losses(self, x_in: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x_hat = self.netg(x_in)
        c = self.cfg
        return x_hat, skip_generator_loss(self.netd, x, x_hat, c.w_adv, c.w_con, c.w_lat)
