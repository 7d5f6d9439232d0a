"""The scoring graph: uint8 NHWC tiles in, per-tile anomaly scores out.

This one ``forward`` is what training validation, evaluation and ONNX export all run, so a
score means the same thing in every stage. Preprocessing lives inside the graph so every backend
takes the same uint8 tiles (H2D moves bytes, not floats).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge_inspect.models.ganomaly import NetG

__all__ = ["SCORE_NAMES", "ScoringModel", "preprocess", "residual_kernel_for", "score_tiles"]

#: Output order of :class:`ScoringModel` (and the ONNX output names).
SCORE_NAMES: tuple[str, ...] = ("latent_l2", "image_l1", "residual_max")


def preprocess(tiles: torch.Tensor) -> torch.Tensor:
    """uint8 [B, T, T, C] -> float32 NCHW in [-1, 1], the decoder's Tanh range (shared with training)."""
    return tiles.permute(0, 3, 1, 2).to(torch.float32) * (1.0 / 127.5) - 1.0


def residual_kernel_for(tile: int) -> int:
    """Smoothing window of ``residual_max``: 16 px at 256, scaled with the tile size, at least 2."""
    return max(2, round(16 * tile / 256))


class ScoringModel(nn.Module):
    """GANomaly generator plus preprocessing and scores.

    Scores (each float32 [B], order :data:`SCORE_NAMES`):
      * ``latent_l2``: mean (z - z_hat)^2, GANomaly's own score;
      * ``image_l1``: mean |x - x_hat| over the tile;
      * ``residual_max``: max of the channel-mean |x - x_hat| map after a k x k box filter, a
        localised score so a small defect is not diluted by the whole tile.

    ``half=True`` runs the generator in FP16 (for an FP16 export); input stays uint8 and the
    residuals and scores are computed in FP32.
    """

    def __init__(self, netg: NetG, residual_kernel: int | None = None, half: bool = False) -> None:
        super().__init__()
        self.netg = netg
        self.tile = netg.isize
        self.channels = netg.nc
        self.residual_kernel = int(residual_kernel or residual_kernel_for(netg.isize))
        if not 1 <= self.residual_kernel <= netg.isize:
            raise ValueError(f"residual_kernel must be in [1, {netg.isize}], got {self.residual_kernel}")
        self.half_precision = half
        if half:
            self.netg.half()

    def forward(self, tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = preprocess(tiles)
        if self.half_precision:
            x_hat, z, z_hat = self.netg(x.to(torch.float16))
            x_hat, z, z_hat = x_hat.float(), z.float(), z_hat.float()
        else:
            x_hat, z, z_hat = self.netg(x)
        latent_l2 = (z - z_hat).pow(2).flatten(1).mean(1)
        diff = (x - x_hat).abs()
        image_l1 = diff.flatten(1).mean(1)
        amap = diff.mean(1, keepdim=True)
        k = self.residual_kernel
        if k > 1:
            amap = F.avg_pool2d(amap, k, stride=1)
        residual_max = amap.flatten(1).amax(1)
        return latent_l2, image_l1, residual_max


@torch.no_grad()
def score_tiles(model: ScoringModel, tiles: np.ndarray, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Score a uint8 [N, T, T, C] array in eval mode; returns {score name: float32 [N]}."""
    was_training = model.training
    model.eval()
    parts: list[tuple[torch.Tensor, ...]] = []
    try:
        for start in range(0, len(tiles), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(tiles[start : start + batch_size]))
            parts.append(model(batch))
    finally:
        model.train(was_training)
    if not parts:
        return {name: np.zeros(0, np.float32) for name in SCORE_NAMES}
    return {
        name: torch.cat([p[i] for p in parts]).float().numpy()
        for i, name in enumerate(SCORE_NAMES)
    }
