"""Training settings: the ``training:`` section of the YAML config, also stored in every
checkpoint (the architecture keys rebuild its networks).

No torch import here: the CPU runtime loads the whole config without the train extra.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge_inspect.models.names import (
    ALL_SCORES,
    COLOUR_SCORES,
    COMPOSITE_PARTS,
    D_SCORES,
    GANOMALY_SCORES,
    OPT_IN_SCORES,
    ModelName,
    ScoreName,
)


class TrainingConfig(BaseModel):
    """A training run of one GANomaly-family model; unknown keys are errors so a typo never falls
    back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: ModelName = "ganomaly"
    attention_blocks: tuple[int, ...] | None = Field(
        None, description="skip_attention: encoder blocks (1-based) followed by self-attention; "
        "None = every block of at most 32x32 output; [4, 5] = MIFE",
    )
    scores: tuple[ScoreName, ...] | None = Field(
        None, description="exported score outputs; None = the family's default (GANomaly: "
        "latent_l2, image_l1, residual_max; skip families: every score but latent_l2)",
    )
    decision_score: ScoreName | Literal["auto"] | None = Field(
        None, description="score the decision (calibration) uses; None = residual_max; auto = the exported "
        "score with the best proxy AUROC on the validation patches (training/proxy.py)"
    )
    score_lambda: float = Field(0.9, ge=0, le=1, description="lambda of the combined and pixel_max scores")
    w_lat: float = Field(1.0, ge=0, description="skip families: weight of the D-feature L2 (latent) loss")
    mse_augment: bool = Field(False, description="FEGAN M-SE: paste jittered patches of the tile into itself")
    mse_area_ratio: float = Field(0.05, gt=0, le=0.5, description="M-SE: total pasted area / tile area")
    mse_max_patch: float = Field(0.01, gt=0, le=0.01, description="M-SE: largest patch / tile area")
    mse_jitter: float = Field(0.1, ge=0, le=0.5, description="M-SE: colour jitter strength (gain, offset)")
    vgg19_weights: str | None = Field(
        None, description="torchvision-format vgg19 state dict for the pixel map's feature branch (never downloaded)"
    )
    contaminate: float = Field(
        0.0, ge=0, lt=0.5, description="anti-noise study: share of defect images (from test/) in the training set"
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when available")
    amp: bool = Field(True, description="mixed precision on CUDA (ignored on CPU)")
    nc: Literal[1, 3] = Field(3, description="image channels: 1 grey, 3 colour")
    isize: int = Field(256, ge=16, le=1024, description="tile size in pixels, a power of 2")
    ngf: int = Field(16, ge=1, le=512, description="generator base channels")
    ndf: int = Field(16, ge=1, le=512, description="discriminator base channels")
    nz: int = Field(100, ge=1, le=4096, description="latent size")
    max_channels: int = Field(128, ge=1, le=2048, description="cap of the channel pyramid")
    residual_kernel: int | None = Field(
        None, ge=1, description="box filter of the residual_max score; None = 16 px scaled to isize"
    )
    brightness_norm: float | None = Field(
        None, gt=0, le=1, description="scale every tile to this mean brightness (0-1) before the model, in "
        "training and in the exported graph, so dark wood is judged at pale wood's contrast; None = off"
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
    val_fraction: float = Field(
        0.1, ge=0, lt=1, description="share of the good images (or scan boards) held out, whole, for checkpoint "
        "selection, score normalisation and the first threshold")
    data_mode: Literal["resize", "tile"] = Field(
        "tile", description="tile: patches at native resolution, as the tiler cuts at run time; resize: each "
        "image squeezed to one tile (only when asked: it changes the scale of defects)"
    )
    patch_stride: int | None = Field(
        None, ge=1, description="grid step of validation and evaluation patches, and of an epoch's patch count; "
        "None = isize // 2")
    epoch_patches: int | None = Field(
        None, ge=1, description="training patches (random crops) per epoch; None = the training images' grid "
        "patches at patch_stride")
    flip: bool = Field(True, description="random horizontal and vertical flips (false for a product with a direction)")
    brightness_jitter: float = Field(
        0.05, ge=0, le=0.3, description="augmentation: add up to +-this share of the grey range per patch")
    contrast_jitter: float = Field(
        0.05, ge=0, le=0.3, description="augmentation: scale contrast around the patch mean by 1 +- up to this")
    lr_schedule: Literal["cosine", "constant"] = Field(
        "cosine", description="cosine: decays to 0 at the end of the run (epochs or max_minutes, whichever "
        "comes first), after a linear warm-up")
    warmup: float = Field(0.03, ge=0, lt=0.5, description="share of the run with a rising learning rate")
    val_every: int = Field(8192, ge=1, description="training patches between checkpoint evaluations")
    select: Literal["proxy_auroc", "last"] = Field(
        "proxy_auroc", description="keep the checkpoint with the best proxy AUROC on the validation patches "
        "(good versus synthetic defects, training/proxy.py), or the last one")
    normalize_scores: bool = Field(
        True, description="scores as (raw - median) / (1.4826 MAD) of the validation patches")
    max_val_patches: int = Field(1024, ge=8, description="cap on validation patches (an even seeded subset)")
    max_tiles: int | None = Field(None, ge=1, description="cap on training images (or tiles; a random subset)")
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
        depth = max(self.isize, 1).bit_length() - 1
        if self.attention_blocks is not None:
            if self.model != "skip_attention":
                problems.append("attention_blocks applies to model skip_attention only")
            bad = [b for b in self.attention_blocks if not 1 <= b <= depth]
            if bad:
                problems.append(f"attention_blocks {bad} outside 1..{depth} (encoder blocks at isize {self.isize})")
        if self.scores is not None:
            if len(set(self.scores)) != len(self.scores) or not self.scores:
                problems.append("scores must be a non-empty list of distinct names")
            if self.model != "ganomaly" and "latent_l2" in self.scores:
                problems.append("latent_l2 needs model ganomaly (encoder-decoder-encoder)")
            if self.model == "ganomaly" and tuple(self.scores[:3]) != GANOMALY_SCORES:
                problems.append("ganomaly scores must start with latent_l2, image_l1, residual_max (ONNX contract)")
            if COLOUR_SCORES & set(self.scores) and self.nc < 3:
                problems.append(f"{' and '.join(sorted(COLOUR_SCORES))} need colour tiles (nc 3)")
            for name, parts in COMPOSITE_PARTS.items():
                if name in self.scores and not set(parts) <= set(self.scores):
                    problems.append(f"score {name} is made of {' and '.join(parts)}: list them in scores too")
                if name in self.scores and not self.normalize_scores:
                    problems.append(f"score {name} adds normalised scores: it needs normalize_scores true")
        if self.decision_score not in (None, "auto") and self.decision_score not in self.score_names():
            problems.append(f"decision_score {self.decision_score} is not among the exported scores {list(self.score_names())}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def score_names(self) -> tuple[str, ...]:
        """Exported score outputs, in order (the family default when ``scores`` is unset)."""
        if self.scores is not None:
            return tuple(self.scores)
        if self.model == "ganomaly":
            return GANOMALY_SCORES
        return tuple(s for s in ALL_SCORES if s != "latent_l2" and s not in OPT_IN_SCORES)

    def stride(self) -> int:
        """Grid step of validation and evaluation patches."""
        return self.patch_stride or max(1, self.isize // 2)

    def decision(self) -> str:
        """The score calibration and the line decision use (``auto`` is resolved by training
        and stored in the checkpoint; unresolved it reads as the default)."""
        if self.decision_score and self.decision_score != "auto":
            return self.decision_score
        names = self.score_names()
        return "residual_max" if "residual_max" in names else names[0]

    def needs_discriminator(self) -> bool:
        """Whether the scoring graph must carry D (a D-feature score is exported)."""
        return bool(D_SCORES & set(self.score_names()))
