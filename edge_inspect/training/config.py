"""Training settings (the ``training:`` section of the YAML config).

No torch import here: the CPU runtime loads the whole config without the train extra.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TrainingConfig(BaseModel):
    """GANomaly training run; unknown keys are errors so a typo never falls back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Literal["ganomaly"] = "ganomaly"
    nc: Literal[1, 3] = Field(3, description="image channels: 1 grey, 3 colour")
    isize: int = Field(256, ge=16, le=1024, description="tile size in pixels, a power of 2")
    ngf: int = Field(16, ge=1, le=512, description="generator base channels")
    ndf: int = Field(16, ge=1, le=512, description="discriminator base channels")
    nz: int = Field(100, ge=1, le=4096, description="latent size")
    max_channels: int = Field(128, ge=1, le=2048, description="cap of the channel pyramid")
    residual_kernel: int | None = Field(
        None, ge=1, description="box filter of the residual_max score; None = 16 px scaled to isize"
    )
    epochs: int = Field(15, ge=1, le=100000)
    batch_size: int = Field(32, ge=2, le=4096, description="BatchNorm needs at least 2")
    lr: float = Field(2e-4, gt=0, le=1)
    beta1: float = Field(0.5, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    w_adv: float = Field(1.0, ge=0, description="weight of the feature-matching adversarial loss")
    w_con: float = Field(50.0, ge=0, description="weight of the contextual (image L1) loss")
    w_enc: float = Field(1.0, ge=0, description="weight of the latent (encoder L2) loss")
    seed: int = Field(0, ge=0)
    val_fraction: float = Field(0.1, ge=0, lt=1, description="good tiles held out for thresholds")
    data_mode: Literal["resize", "tile"] = Field(
        "tile", description="MVTec images: squeeze each to one tile, or tile at native resolution"
    )
    max_tiles: int | None = Field(None, ge=1, description="cap on training tiles (random subset)")
    max_minutes: float | None = Field(None, gt=0, description="wall-clock cap; stops after the step")
    threads: int = Field(0, ge=0, le=1024, description="torch intra-op threads; 0 = torch default")

    @model_validator(mode="after")
    def _shapes(self) -> "TrainingConfig":
        problems = []
        if self.isize & (self.isize - 1):
            problems.append(f"isize must be a power of 2, got {self.isize}")
        if self.max_channels < max(self.ngf, self.ndf):
            problems.append("max_channels must be at least ngf and ndf")
        if self.residual_kernel is not None and self.residual_kernel > self.isize:
            problems.append("residual_kernel must not exceed isize")
        if problems:
            raise ValueError("; ".join(problems))
        return self
