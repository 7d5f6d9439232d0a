"""Networks of each model family, chosen by ``training.model``; one place maps a config to nets
so training, checkpoint loading and export always build the same architecture."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from edge_inspect.models.blocks import weights_init
from edge_inspect.models.ganomaly import NetD, NetG
from edge_inspect.models.scoring import ScoringModel
from edge_inspect.models.skip import SkipGenerator, default_attention_blocks
from edge_inspect.models.skip_pp import SkipPPGenerator
from edge_inspect.training_config import TrainingConfig

__all__ = ["build_generator", "build_discriminator", "build_nets", "build_scoring"]


def build_generator(cfg: TrainingConfig) -> nn.Module:
    """The generator of ``cfg.model`` (not initialised)."""
    if cfg.model == "ganomaly":
        return NetG(cfg.isize, cfg.nc, cfg.ngf, cfg.nz, cfg.max_channels)
    if cfg.model == "skip_ganomaly":
        return SkipGenerator(cfg.isize, cfg.nc, cfg.ngf, cfg.max_channels)
    if cfg.model == "skip_attention":
        blocks = cfg.attention_blocks if cfg.attention_blocks is not None else default_attention_blocks(cfg.isize)
        return SkipGenerator(cfg.isize, cfg.nc, cfg.ngf, cfg.max_channels, attention_blocks=blocks)
    if cfg.model == "skip_ganomaly_pp":
        return SkipPPGenerator(cfg.isize, cfg.nc, cfg.ngf, cfg.max_channels)
    raise ValueError(f"unknown model {cfg.model!r}")


def build_discriminator(cfg: TrainingConfig) -> NetD:
    """Every family uses the DCGAN discriminator."""
    return NetD(cfg.isize, cfg.nc, cfg.ndf, cfg.max_channels)


def build_nets(cfg: TrainingConfig) -> tuple[nn.Module, NetD]:
    """Fresh DCGAN-initialised (G, D) for ``cfg``."""
    netg, netd = build_generator(cfg), build_discriminator(cfg)
    netg.apply(weights_init)
    netd.apply(weights_init)
    return netg, netd


def build_scoring(
    cfg: TrainingConfig, netg: nn.Module, netd: nn.Module | None, vgg_weights: Path | None = None
) -> ScoringModel:
    """The scoring graph of ``cfg``: D goes in only when an exported score needs it; the VGG
    branch only when its weights file is configured (or given)."""
    vgg = None
    path = vgg_weights if vgg_weights is not None else cfg.vgg19_weights
    if path is not None:
        from edge_inspect.models.vgg import load_vgg19_features

        vgg = load_vgg19_features(Path(path))
    return ScoringModel(
        netg, cfg.residual_kernel, netd=netd if cfg.needs_discriminator() else None,
        scores=cfg.score_names(), lam=cfg.score_lambda, vgg=vgg, brightness=cfg.brightness_norm,
    )
