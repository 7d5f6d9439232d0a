"""Anomaly networks and their scoring graph (needs torch: the ``train`` extra)."""

from edge_inspect.models.ganomaly import Decoder, Encoder, NetD, NetG, weights_init
from edge_inspect.models.scoring import SCORE_NAMES, ScoringModel, residual_kernel_for, score_tiles

__all__ = [
    "Decoder",
    "Encoder",
    "NetD",
    "NetG",
    "SCORE_NAMES",
    "ScoringModel",
    "residual_kernel_for",
    "score_tiles",
    "weights_init",
]
