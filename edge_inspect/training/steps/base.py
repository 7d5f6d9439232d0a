"""The adversarial training step shared by every family: G update from the family's loss, then
D update (BCE real/fake), D re-initialised when its loss collapses (reference GANomaly code).
AMP (FP16 autocast + gradient scaling) runs on CUDA only; on CPU the step is plain FP32."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edge_inspect.models.blocks import weights_init
from edge_inspect.models.losses import discriminator_loss
from edge_inspect.training_config import TrainingConfig

__all__ = ["AdversarialStep", "D_COLLAPSE"]

D_COLLAPSE = 1e-5  # reference: re-initialise D when errD < 1e-5


class AdversarialStep:
    """One G + D update; subclasses provide :meth:`generator_losses` and ``loss_keys``."""

    loss_keys: tuple[str, ...] = ("err_g", "err_d")

    def __init__(self, cfg: TrainingConfig, netg: nn.Module, netd: nn.Module, device: torch.device) -> None:
        self.cfg = cfg
        self.netg, self.netd = netg, netd
        self.device = device
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(netg.parameters(), lr=cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam(netd.parameters(), lr=cfg.lr, betas=betas)
        self.amp = bool(cfg.amp and device.type == "cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.d_reinits = 0

    def generator_losses(self, x_in: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(x_hat, losses with 'err_g') for generator input ``x_in`` and clean target ``x``."""
        raise NotImplementedError

    def __call__(self, x_in: torch.Tensor, x: torch.Tensor) -> dict[str, float]:
        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp):
            x_hat, losses = self.generator_losses(x_in, x)
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(losses["err_g"]).backward()
        self.scaler.step(self.opt_g)

        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp):
            pred_real, _ = self.netd(x)
            pred_fake, _ = self.netd(x_hat.detach())
            err_d = discriminator_loss(pred_real, pred_fake)
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler.scale(err_d).backward()
        self.scaler.step(self.opt_d)
        self.scaler.update()
        losses["err_d"] = err_d
        out = {k: float(v.item()) for k, v in losses.items()}
        if out["err_d"] < D_COLLAPSE:
            self.netd.apply(weights_init)
            self.d_reinits += 1
        return out

    def state_dict(self) -> dict[str, Any]:
        """Optimiser and scaler state, for resuming."""
        return {"opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
