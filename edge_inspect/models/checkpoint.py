"""Checkpoints (``model.pt`` from ``train``): the one place that reads them, for every user of a
trained model (the torch backend, export, evaluation, training's resume). Weights only: loading
runs no code from the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from edge_inspect.errors import InputDataError
from edge_inspect.models.registry import (
    build_discriminator,
    build_generator,
    build_nets,
    build_scoring,
)
from edge_inspect.models.scoring import ScoringModel
from edge_inspect.training_config import TrainingConfig

CHECKPOINT_FORMAT = "edge-inspect/ganomaly"  # the family's marker; ``config.model`` names the member
CHECKPOINT_VERSION = 1


def build_scoring_model(cfg: TrainingConfig, netg: torch.nn.Module | None = None,
                        netd: torch.nn.Module | None = None) -> ScoringModel:
    """The scoring graph for ``cfg`` (fresh DCGAN-initialised nets unless given)."""
    if netg is None or (netd is None and cfg.needs_discriminator()):
        g0, d0 = build_nets(cfg)
        netg = netg if netg is not None else g0
        netd = netd if netd is not None else d0
    return build_scoring(cfg, netg, netd)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint safely (weights only: no code runs) and check its marker and version."""
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
    return payload


def load_nets(path: Path) -> tuple[torch.nn.Module, torch.nn.Module | None, TrainingConfig]:
    """(G, D or None, config) of a checkpoint in eval mode; D is None when the file has none."""
    return _nets(Path(path), read_checkpoint(Path(path)))


def _nets(path: Path, payload: dict[str, Any]) -> tuple[torch.nn.Module, torch.nn.Module | None, TrainingConfig]:
    try:
        cfg = TrainingConfig.model_validate(payload.get("config"))
    except ValidationError as exc:
        raise InputDataError(f"{path}: checkpoint holds an invalid training config ({exc.error_count()} problems)") from None
    netg = build_generator(cfg)
    netd = build_discriminator(cfg) if "netd" in payload else None
    try:
        netg.load_state_dict(payload["netg"])
        if netd is not None:
            netd.load_state_dict(payload["netd"])
    except (KeyError, RuntimeError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputDataError(f"{path}: checkpoint weights do not match its config ({first[:160]})") from None
    netg.eval()
    if netd is not None:
        netd.eval()
    return netg, netd, cfg


def checkpoint_trained_on(path: Path) -> dict | None:
    """What the checkpoint was trained on (train's `trained_on`: kind, path, files with their
    sha256), or None when it does not say."""
    found = read_checkpoint(Path(path)).get("trained_on")
    return found if isinstance(found, dict) else None


def load_checkpoint(path: Path) -> tuple[ScoringModel, TrainingConfig]:
    """Load ``model.pt`` safely (weights only) as an eval-mode ScoringModel, with the score
    normalisation training fitted (``score_norm``; none in older checkpoints), and its config."""
    path = Path(path)
    payload = read_checkpoint(path)
    netg, netd, cfg = _nets(path, payload)
    if netd is None and cfg.needs_discriminator():
        raise InputDataError(f"{path}: its scores need the discriminator, which the checkpoint lacks")
    model = build_scoring(cfg, netg, netd)
    norm = payload.get("score_norm") or {}
    try:
        model.set_normalization({name: (float(c), float(s)) for name, (c, s) in norm.items()})
    except (ValueError, TypeError) as exc:
        raise InputDataError(f"{path}: invalid score normalisation ({exc})") from None
    model.eval()
    return model, cfg
