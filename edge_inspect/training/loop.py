"""GANomaly training on good tiles, following the reference training step (Akcay et al. 2018).

Per batch: G step (feature-matching adversarial + w_con * L1 image + w_enc * L2 latent), then D
step (BCE real/fake); D is re-initialised when its loss collapses, as in the reference code.
Outputs in ``out_dir``: ``model.pt`` (weights-only checkpoint), ``validation_scores.npz`` (scores
of held-out good tiles, for thresholds) and ``train.json`` (config, losses, timing).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from edge_inspect.errors import InputDataError
from edge_inspect.models.ganomaly import NetD, NetG, weights_init
from edge_inspect.models.scoring import SCORE_NAMES, ScoringModel, preprocess, score_tiles
from edge_inspect.training.config import TrainingConfig
from edge_inspect.training.datasets import check_tiles, split_train_val

__all__ = ["TrainResult", "train", "load_checkpoint", "build_scoring_model", "CHECKPOINT_FORMAT"]

log = structlog.get_logger(__name__)

CHECKPOINT_FORMAT = "edge-inspect/ganomaly"
CHECKPOINT_VERSION = 1
_D_COLLAPSE = 1e-5  # reference: re-initialise D when errD < 1e-5
_PROGRESS_EVERY_S = 30.0


@dataclass
class TrainResult:
    """What a run produced, for the CLI summary and for tests."""

    out_dir: Path
    checkpoint: Path
    epochs_run: int
    train_tiles: int
    val_tiles: int
    seconds: float
    tiles_per_s: float
    stopped_early: str | None
    losses: list[dict[str, float]] = field(default_factory=list)
    val_scores: dict[str, np.ndarray] = field(default_factory=dict)


def _build_nets(cfg: TrainingConfig) -> tuple[NetG, NetD]:
    netg = NetG(cfg.isize, cfg.nc, cfg.ngf, cfg.nz, cfg.max_channels)
    netd = NetD(cfg.isize, cfg.nc, cfg.ndf, cfg.max_channels)
    netg.apply(weights_init)
    netd.apply(weights_init)
    return netg, netd


def build_scoring_model(cfg: TrainingConfig, netg: NetG | None = None) -> ScoringModel:
    """The scoring graph for ``cfg`` (fresh DCGAN-initialised G unless one is given)."""
    if netg is None:
        netg = NetG(cfg.isize, cfg.nc, cfg.ngf, cfg.nz, cfg.max_channels)
        netg.apply(weights_init)
    return ScoringModel(netg, cfg.residual_kernel)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal and vertical flips per tile (wood grain is flip-invariant; nothing more)."""
    b = x.shape[0]
    h = (torch.rand(b, generator=gen) < 0.5).view(b, 1, 1, 1)
    v = (torch.rand(b, generator=gen) < 0.5).view(b, 1, 1, 1)
    x = torch.where(h, x.flip(3), x)
    return torch.where(v, x.flip(2), x)


def _atomic_write_bytes(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def train(cfg: TrainingConfig, tiles: np.ndarray, out_dir: Path) -> TrainResult:
    """Train GANomaly on good uint8 tiles [N, T, T, C]; see the module docstring for outputs."""
    tiles = check_tiles(tiles, cfg.isize, cfg.nc)
    train_np, val_np = split_train_val(tiles, cfg.val_fraction, cfg.seed, cfg.max_tiles)
    if len(train_np) < 2:
        raise InputDataError(f"need at least 2 training tiles, got {len(train_np)} (of {len(tiles)})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    prev_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, train_np, val_np, out_dir)
    finally:
        torch.set_num_threads(prev_threads)


def _train(cfg: TrainingConfig, train_np: np.ndarray, val_np: np.ndarray, out_dir: Path) -> TrainResult:
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    netg, netd = _build_nets(cfg)
    netg.train()
    netd.train()
    betas = (cfg.beta1, cfg.beta2)
    opt_g = torch.optim.Adam(netg.parameters(), lr=cfg.lr, betas=betas)
    opt_d = torch.optim.Adam(netd.parameters(), lr=cfg.lr, betas=betas)

    data = torch.from_numpy(train_np)  # uint8 NHWC, converted per batch
    n = len(data)
    bs = min(cfg.batch_size, n)
    n_batches = n // bs + (1 if n % bs >= 2 else 0)  # a lone last tile would break BatchNorm
    total_tiles = cfg.epochs * n
    deadline = None if cfg.max_minutes is None else cfg.max_minutes * 60.0
    log.info(
        "train.start", train_tiles=n, val_tiles=len(val_np), epochs=cfg.epochs, batch_size=bs,
        isize=cfg.isize, nc=cfg.nc, ngf=cfg.ngf, nz=cfg.nz, max_channels=cfg.max_channels,
        g_params=sum(p.numel() for p in netg.parameters()), threads=torch.get_num_threads(),
    )

    t0 = time.monotonic()
    last_progress = t0
    seen = 0
    losses: list[dict[str, float]] = []
    stopped: str | None = None
    d_reinits = 0
    epoch = 0
    for epoch in range(1, cfg.epochs + 1):
        order = torch.randperm(n, generator=gen)
        sums = dict.fromkeys(("err_g", "err_d", "adv", "con", "enc"), 0.0)
        steps = 0
        for b in range(n_batches):
            idx = order[b * bs : (b + 1) * bs]
            x = _augment(preprocess(data[idx]), gen)

            # G step: feature matching + contextual L1 + latent L2 (reference weights 1/50/1)
            x_hat, z, z_hat = netg(x)
            feat_real = netd(x)[1].detach()
            feat_fake = netd(x_hat)[1]
            err_adv = F.mse_loss(feat_fake, feat_real)
            err_con = F.l1_loss(x_hat, x)
            err_enc = F.mse_loss(z_hat, z)
            err_g = cfg.w_adv * err_adv + cfg.w_con * err_con + cfg.w_enc * err_enc
            opt_g.zero_grad(set_to_none=True)
            err_g.backward()
            opt_g.step()

            # D step: BCE on real vs (detached) fake
            pred_real, _ = netd(x)
            pred_fake, _ = netd(x_hat.detach())
            err_d = 0.5 * (
                F.binary_cross_entropy(pred_real, torch.ones_like(pred_real))
                + F.binary_cross_entropy(pred_fake, torch.zeros_like(pred_fake))
            )
            opt_d.zero_grad(set_to_none=True)
            err_d.backward()
            opt_d.step()
            if err_d.item() < _D_COLLAPSE:
                netd.apply(weights_init)
                d_reinits += 1
                log.info("train.reinit_d", epoch=epoch, step=b, err_d=err_d.item())

            for key, val in (("err_g", err_g), ("err_d", err_d), ("adv", err_adv), ("con", err_con), ("enc", err_enc)):
                sums[key] += float(val.item())
            steps += 1
            seen += len(idx)
            now = time.monotonic()
            elapsed = now - t0
            if deadline is not None and elapsed >= deadline:
                stopped = "max_minutes"
                break
            if now - last_progress >= _PROGRESS_EVERY_S:
                last_progress = now
                rate = seen / elapsed
                log.info(
                    "train.progress", epoch=epoch, step=b + 1, steps=n_batches,
                    tiles_per_s=round(rate, 1), eta_s=round(_eta(total_tiles - seen, rate, elapsed, deadline)),
                    con=round(sums["con"] / steps, 5),
                )
        epoch_losses = {k: v / max(steps, 1) for k, v in sums.items()}
        epoch_losses["epoch"] = epoch
        losses.append(epoch_losses)
        elapsed = time.monotonic() - t0
        rate = seen / max(elapsed, 1e-9)
        log.info(
            "train.epoch", epoch=epoch, epochs=cfg.epochs,
            **{k: round(v, 5) for k, v in epoch_losses.items() if k != "epoch"},
            tiles_per_s=round(rate, 1), elapsed_s=round(elapsed, 1),
            eta_s=round(_eta(total_tiles - seen, rate, elapsed, deadline)),
        )
        if stopped:
            log.warning("train.stopped", reason=stopped, epoch=epoch, max_minutes=cfg.max_minutes)
            break
    seconds = time.monotonic() - t0

    netg.eval()
    netd.eval()
    scorer = ScoringModel(netg, cfg.residual_kernel)
    val_scores = score_tiles(scorer, val_np, batch_size=max(bs, 16))
    _atomic_write_bytes(out_dir / "validation_scores.npz", lambda p: _save_npz(p, val_scores))
    ckpt = out_dir / "model.pt"
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "config": cfg.model_dump(mode="json"),
        "score_names": list(SCORE_NAMES),
        "epochs_run": epoch,
        "netg": netg.state_dict(),
        "netd": netd.state_dict(),
    }
    _atomic_write_bytes(ckpt, lambda p: torch.save(payload, p))
    summary = {
        "config": cfg.model_dump(mode="json"),
        "epochs_run": epoch,
        "stopped_early": stopped,
        "train_tiles": int(len(train_np)),
        "val_tiles": int(len(val_np)),
        "tiles_seen": seen,
        "seconds": round(seconds, 3),
        "tiles_per_s": round(seen / max(seconds, 1e-9), 2),
        "d_reinits": d_reinits,
        "losses": losses,
        "validation": {
            name: {"mean": float(v.mean()), "max": float(v.max())} if len(v) else None
            for name, v in val_scores.items()
        },
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    _atomic_write_bytes(
        out_dir / "train.json", lambda p: p.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    )
    log.info("train.done", seconds=round(seconds, 1), epochs=epoch, checkpoint=str(ckpt), stopped_early=stopped)
    return TrainResult(
        out_dir=out_dir, checkpoint=ckpt, epochs_run=epoch, train_tiles=len(train_np),
        val_tiles=len(val_np), seconds=seconds, tiles_per_s=seen / max(seconds, 1e-9),
        stopped_early=stopped, losses=losses, val_scores=val_scores,
    )


def _eta(tiles_left: int, rate: float, elapsed: float, deadline: float | None) -> float:
    eta = tiles_left / rate if rate > 0 else math.inf
    if deadline is not None:
        eta = min(eta, max(deadline - elapsed, 0.0))
    return 0.0 if math.isinf(eta) else eta


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:  # file handle: np.savez would append ".npz" to the tmp name
        np.savez(f, **arrays)


def load_checkpoint(path: Path) -> tuple[ScoringModel, TrainingConfig]:
    """Load ``model.pt`` safely (weights only) as an eval-mode ScoringModel and its config."""
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (pickle, zip, runtime) for a bad file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputDataError(f"{path}: not a readable edge-inspect checkpoint ({first[:160]})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise InputDataError(f"{path}: not an edge-inspect GANomaly checkpoint (no '{CHECKPOINT_FORMAT}' marker)")
    if payload.get("format_version") != CHECKPOINT_VERSION:
        raise InputDataError(
            f"{path}: checkpoint format version {payload.get('format_version')} is not supported "
            f"(this build reads {CHECKPOINT_VERSION})"
        )
    try:
        cfg = TrainingConfig.model_validate(payload.get("config"))
    except ValidationError as exc:
        raise InputDataError(f"{path}: checkpoint holds an invalid training config ({exc.error_count()} problems)") from None
    model = build_scoring_model(cfg)
    try:
        model.netg.load_state_dict(payload["netg"])
    except (KeyError, RuntimeError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputDataError(f"{path}: checkpoint weights do not match its config ({first[:160]})") from None
    model.eval()
    return model, cfg
