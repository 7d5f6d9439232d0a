"""Calibration files: the threshold and board rule that turn scores into verdicts."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edge_inspect.atomic import write_atomic
from edge_inspect.config import format_validation_error, read_yaml_mapping
from edge_inspect.errors import ConfigError

#: The first calibration's rule (`export --calibration`, and `evaluate`'s validation threshold):
#: the worst held-out good validation tile plus this headroom, since a few validation tiles
#: underestimate the tail.
MARGIN = 0.10


class BoardRule(BaseModel):
    """How tile scores make a board score: `max` (the worst tile), `topk_mean` (mean of the k
    worst, steadier against single-tile noise) or `count` (number of tiles over the threshold)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["max", "topk_mean", "count"] = "max"
    k: int = Field(3, ge=1, description="tiles averaged by topk_mean")
    min_count: int = Field(1, ge=1, description="tiles over threshold that reject a board (count)")


class Calibration(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: str
    created: str
    model: str | None = Field(None, description="sha256 of the model the thresholds belong to")
    score: str = Field(description="model output the decision uses")
    tile_threshold: float
    board_rule: BoardRule = BoardRule()
    target_frr: float | None = Field(None, ge=0, le=1)
    expected_frr: float | None = Field(None, ge=0, le=1)
    expected_detection: float | None = Field(None, ge=0, le=1)
    source: str = ""
    good_scores: list[float] | None = Field(
        None, description="board scores of the calibration's accepted good boards, ascending: the drift reference")

    @model_validator(mode="after")
    def _finite(self) -> "Calibration":
        if self.tile_threshold != self.tile_threshold:
            raise ValueError("tile_threshold is NaN")
        if self.good_scores is not None:
            g = self.good_scores
            if not g or any(math.isnan(x) for x in g) or any(a > b for a, b in zip(g, g[1:])):
                raise ValueError("good_scores must be a non-empty ascending list of numbers")
        return self


def write_calibration(path: Path, cal: Calibration) -> None:
    """The calibration as YAML, written atomically (a service reloading it never reads half)."""
    write_atomic(path, yaml.safe_dump(cal.model_dump(mode="json"), sort_keys=False))


def load_calibration(path: Path) -> Calibration:
    data = read_yaml_mapping(path, "calibration (decision.calibration)")
    try:
        return Calibration.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, str(path))) from None


def check_against_model(cal: Calibration, path: Path, model_sha256: str, score_names: tuple[str, ...]) -> None:
    """Thresholds from another model are meaningless: refuse them rather than mis-sort boards."""
    if cal.model and not model_sha256.startswith(cal.model):
        raise ConfigError(
            f"{path}: calibration is for model {cal.model[:12]} but the loaded model is "
            f"{model_sha256[:12]}; recalibrate (edge-inspect calibrate) or load the matching model"
        )
    if cal.score not in score_names:
        raise ConfigError(f"{path}: score {cal.score!r} is not an output of the model ({', '.join(score_names)})")
