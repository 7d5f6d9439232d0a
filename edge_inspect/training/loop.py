"""Generic training loop for the GANomaly family on good tiles.

The family's step (``edge_inspect.training.steps``) does one G + D update; this loop owns data
order, augmentation, timing, resume and the outputs in ``out_dir``: ``model.pt`` (weights-only
checkpoint, with optimiser state so a run can resume), ``validation_scores.npz`` (scores of
held-out good tiles, for thresholds) and ``train.json`` (config, losses, timing).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch

from edge_inspect.atomic import write_atomic
from edge_inspect.datasets.tiles import check_tiles, split_train_val
from edge_inspect.errors import InputDataError
from edge_inspect.models.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    read_checkpoint,
)
from edge_inspect.models.registry import build_nets, build_scoring
from edge_inspect.models.scoring import preprocess, score_tiles
from edge_inspect.training.augment import flip, mse_augment
from edge_inspect.training.steps import STEPS
from edge_inspect.training_config import TrainingConfig

__all__ = ["TrainResult", "train"]

log = structlog.get_logger(__name__)

_PROGRESS_EVERY_S = 30.0
# config keys that fix the architecture: a resumed run must agree on them
_ARCH_KEYS = ("model", "nc", "isize", "ngf", "ndf", "nz", "max_channels", "attention_blocks")


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


def _device(cfg: TrainingConfig) -> torch.device:
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise InputDataError("training.device is cuda but torch sees no CUDA device")
        return torch.device("cuda")
    return torch.device("cpu")


def train(cfg: TrainingConfig, tiles: np.ndarray, out_dir: Path, resume: Path | None = None,
          extra_train: np.ndarray | None = None) -> TrainResult:
    """Train ``cfg.model`` on good uint8 tiles [N, T, T, C]; see the module docstring for outputs.

    ``resume``: a checkpoint of this run (same architecture) to continue from its last epoch up
    to ``cfg.epochs``. ``extra_train``: tiles added to the training part only, never to
    validation (the anti-noise study's defect contamination: thresholds stay clean).
    """
    tiles = check_tiles(tiles, cfg.isize, cfg.nc)
    train_np, val_np = split_train_val(tiles, cfg.val_fraction, cfg.seed, cfg.max_tiles)
    if extra_train is not None and len(extra_train):
        train_np = np.concatenate([train_np, check_tiles(extra_train, cfg.isize, cfg.nc)])
    if len(train_np) < 2:
        raise InputDataError(f"need at least 2 training tiles, got {len(train_np)} (of {len(tiles)})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    prev_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, train_np, val_np, out_dir, resume)
    finally:
        torch.set_num_threads(prev_threads)


def _load_resume(path: Path, cfg: TrainingConfig) -> dict[str, Any]:
    payload = read_checkpoint(Path(path))
    old = payload.get("config") or {}
    now = cfg.model_dump(mode="json")
    differ = [k for k in _ARCH_KEYS if old.get(k, TrainingConfig.model_fields[k].default) != now[k]]
    if differ:
        raise InputDataError(f"{path}: cannot resume, architecture differs in {', '.join(differ)}")
    if "train_state" not in payload:
        raise InputDataError(f"{path}: checkpoint has no optimiser state (written before resume existed)")
    return payload


def _train(cfg: TrainingConfig, train_np: np.ndarray, val_np: np.ndarray, out_dir: Path,
           resume: Path | None) -> TrainResult:
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    device = _device(cfg)
    netg, netd = build_nets(cfg)
    netg.to(device).train()
    netd.to(device).train()
    step = STEPS[cfg.model](cfg, netg, netd, device)
    start_epoch = 1
    if resume is not None:
        payload = _load_resume(resume, cfg)
        netg.load_state_dict(payload["netg"])
        netd.load_state_dict(payload["netd"])
        step.load_state_dict(payload["train_state"])
        gen.set_state(payload["train_state"]["rng"])
        start_epoch = int(payload.get("epochs_run", 0)) + 1
        log.info("train.resume", checkpoint=str(resume), from_epoch=start_epoch)

    data = torch.from_numpy(train_np)  # uint8 NHWC, converted per batch
    n = len(data)
    bs = min(cfg.batch_size, n)
    n_batches = n // bs + (1 if n % bs >= 2 else 0)  # a lone last tile would break BatchNorm
    total_tiles = max(cfg.epochs - start_epoch + 1, 0) * n
    deadline = None if cfg.max_minutes is None else cfg.max_minutes * 60.0
    log.info(
        "train.start", model=cfg.model, train_tiles=n, val_tiles=len(val_np), epochs=cfg.epochs,
        batch_size=bs, isize=cfg.isize, nc=cfg.nc, ngf=cfg.ngf, nz=cfg.nz, max_channels=cfg.max_channels,
        g_params=sum(p.numel() for p in netg.parameters()), threads=torch.get_num_threads(),
        device=str(device), amp=step.amp, mse_augment=cfg.mse_augment,
    )

    t0 = time.monotonic()
    last_progress = t0
    seen = 0
    losses: list[dict[str, float]] = []
    stopped: str | None = None
    epoch = start_epoch - 1
    for epoch in range(start_epoch, cfg.epochs + 1):
        order = torch.randperm(n, generator=gen)
        sums = dict.fromkeys(step.loss_keys, 0.0)
        steps = 0
        for b in range(n_batches):
            idx = order[b * bs : (b + 1) * bs]
            x = flip(preprocess(data[idx].to(device)), gen).contiguous()
            x_in = (mse_augment(x, gen, cfg.mse_area_ratio, cfg.mse_max_patch, cfg.mse_jitter)
                    if cfg.mse_augment else x)
            out = step(x_in, x)
            for key in sums:
                sums[key] += out[key]
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
    scorer = build_scoring(cfg, netg, netd)
    scorer.to(device)
    val_scores = score_tiles(scorer, val_np, batch_size=max(bs, 16))
    write_atomic(out_dir / "validation_scores.npz", lambda f: np.savez(f, **val_scores))
    ckpt = out_dir / "model.pt"
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "config": cfg.model_dump(mode="json"),
        "score_names": list(scorer.score_names),
        "decision_score": cfg.decision(),
        "epochs_run": epoch,
        "netg": {k: v.cpu() for k, v in netg.state_dict().items()},
        "netd": {k: v.cpu() for k, v in netd.state_dict().items()},
        "train_state": {**step.state_dict(), "rng": gen.get_state()},
    }
    write_atomic(ckpt, lambda f: torch.save(payload, f))
    summary = {
        "config": cfg.model_dump(mode="json"),
        "epochs_run": epoch,
        "resumed_from": start_epoch - 1 if resume is not None else None,
        "stopped_early": stopped,
        "train_tiles": int(len(train_np)),
        "val_tiles": int(len(val_np)),
        "tiles_seen": seen,
        "seconds": round(seconds, 3),
        "tiles_per_s": round(seen / max(seconds, 1e-9), 2),
        "d_reinits": step.d_reinits,
        "losses": losses,
        "validation": {
            name: {"mean": float(v.mean()), "max": float(v.max())} if len(v) else None
            for name, v in val_scores.items()
        },
        "device": str(device),
        "amp": step.amp,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    write_atomic(out_dir / "train.json", json.dumps(summary, indent=2))
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
