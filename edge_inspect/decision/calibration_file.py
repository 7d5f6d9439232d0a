"""Calibration files: the threshold and board rule that turn scores into verdicts."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from edge_inspect.atomic import write_atomic
from edge_inspect.config import load_yaml_model
from edge_inspect.errors import ConfigError

#: The first calibration's rule (`export --calibration`, and `evaluate`'s validation threshold):
#: the worst held-out good validation tile plus this headroom, since a few validation tiles
#: underestimate the tail.
MARGIN = 0.10

#: A calibration file's `model`: the sha256 of its model, whole or a prefix of at least 12 hex digits.
_MODEL_ID = re.compile(r"[0-9a-f]{12,64}")
#: Validation context of a calibration read from a file (see `load_calibration`).
_FROM_FILE = {"from_file": True}


def _from_file(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("from_file"))


# How a false-reject target is read. `measured`: the share of calibration good boards over the
# threshold is the target, so unseen boards land near it and above it about half the time.
# `bound`: the target is a ceiling, the threshold the lowest whose one-sided 95 % upper bound
# stays within it, so unseen boards like these stay under it 19 times in 20.
TargetRule = Literal["measured", "bound"]


class BoardRule(BaseModel):
    """How tile scores make a board score: `max` (the worst tile), `topk_mean` (mean of the k
    worst, steadier against single-tile noise) or `count` (number of tiles over the threshold)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["max", "topk_mean", "count"] = "max"
    k: int = Field(3, ge=1, description="tiles averaged by topk_mean")
    min_count: int = Field(1, ge=1, description="tiles over threshold that reject a board (count)")


class Calibration(BaseModel):
    """Thresholds that turn scores into verdicts. In memory a calibration may be provisional
    (`calibrate` scores with model None and an infinite threshold); one read from a file must
    name its model and have a finite threshold >= 0, or every board would pass (inf) or fail
    (negative) without anyone noticing."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: str
    created: str
    model: str | None = Field(None, validate_default=True,
                              description="sha256 of the model the thresholds belong to")
    score: str = Field(description="model output the decision uses")
    tile_threshold: float
    board_rule: BoardRule = BoardRule()
    target_frr: float | None = Field(None, ge=0, le=1)
    target_rule: TargetRule = Field(
        "measured", description="target_frr as the calibration boards' measured rate, or as its 95 % upper bound")
    expected_frr: float | None = Field(None, ge=0, le=1)
    expected_detection: float | None = Field(None, ge=0, le=1)
    source: str = ""
    good_scores: list[float] | None = Field(
        None, description="board scores of the calibration's accepted good boards, ascending: the drift reference")

    @field_validator("model")
    @classmethod
    def _model_id(cls, v: str | None, info: ValidationInfo) -> str | None:
        if _from_file(info) and (v is None or not _MODEL_ID.fullmatch(v)):
            got = "nothing" if v is None else repr(v)
            raise ValueError("must be the sha256 (lowercase hex, at least 12 digits) of the model the thresholds "
                             f"belong to, got {got}: without it the calibration cannot be checked against its model")
        return v

    @field_validator("tile_threshold")
    @classmethod
    def _usable_threshold(cls, v: float, info: ValidationInfo) -> float:
        if _from_file(info) and not (math.isfinite(v) and v >= 0):
            raise ValueError(f"must be a finite number >= 0, got {v!r} (inf would accept every board, "
                             "a negative one reject every board)")
        return v

    @model_validator(mode="after")
    def _finite(self) -> "Calibration":
        if self.tile_threshold != self.tile_threshold:
            raise ValueError("tile_threshold is NaN")
        if self.good_scores is not None:
            g = self.good_scores
            if not g or not all(math.isfinite(x) for x in g) or any(a > b for a, b in zip(g, g[1:])):
                raise ValueError("good_scores must be a non-empty ascending list of numbers")
        return self


def write_calibration(path: Path, cal: Calibration) -> None:
    """The calibration as YAML, written atomically (a service reloading it never reads half)."""
    write_atomic(path, yaml.safe_dump(cal.model_dump(mode="json"), sort_keys=False))


def load_calibration(path: Path) -> Calibration:
    """A calibration file, checked as one the decision can rely on (ConfigError listing every
    problem otherwise)."""
    return load_yaml_model(path, "calibration (decision.calibration)", Calibration, _FROM_FILE)


def check_against_model(cal: Calibration, path: Path, model_sha256: str, score_names: tuple[str, ...]) -> None:
    """Thresholds from another model are meaningless: refuse them rather than mis-sort boards."""
    if cal.model and not model_sha256.startswith(cal.model):
        raise ConfigError(
            f"{path}: calibration is for model {cal.model[:12]} but the loaded model is "
            f"{model_sha256[:12]}; recalibrate (edge-inspect calibrate) or load the matching model"
        )
    if cal.score not in score_names:
        raise ConfigError(f"{path}: score {cal.score!r} is not an output of the model ({', '.join(score_names)})")
