"""The scoring graph: uint8 NHWC tiles in, per-tile anomaly scores out.

This one ``forward`` is what training validation, evaluation and ONNX export all run, so a
score means the same thing in every stage. Preprocessing lives inside the graph so every backend
takes the same uint8 tiles (H2D moves bytes, not floats). All requested scores come from one
pass of G (and of D, when a score needs it).
"""

from __future__ import annotations

import copy

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge_inspect.models.blocks import upsample_to
from edge_inspect.models.greying import greying_max
from edge_inspect.models.names import (ALL_SCORES, COLOUR_SCORES, COMPOSITE_PARTS, D_SCORES, GANOMALY_SCORES,
                                      OPT_IN_SCORES)

__all__ = [
    "ALL_SCORES",
    "D_SCORES",
    "SCORE_NAMES",
    "ScoringModel",
    "d_feature_stages",
    "preprocess",
    "REL_FLOOR",
    "residual_kernel_for",
    "score_tiles",
]

SCORE_NAMES = GANOMALY_SCORES  # output order of a GANomaly ScoringModel without D
REL_FLOOR = 0.05  # residual_rel's brightness floor (about 13 grey): a near-black tile is not divided by ~0


def raw_nchw(tiles: torch.Tensor) -> torch.Tensor:
    """uint8 [B, T, T, C] -> float32 [B, C, T, T], still 0-255 (what pixel-level scores read)."""
    return tiles.permute(0, 3, 1, 2).to(torch.float32)


def preprocess(tiles: torch.Tensor, brightness: float | None = None) -> torch.Tensor:
    """uint8 [B, T, T, C] -> float32 NCHW in [-1, 1], the decoder's Tanh range (shared with training).

    With ``brightness`` (0-1), each tile is first scaled so its mean is that brightness (gain at
    most brightness / REL_FLOOR, clipped at white): a defect's contrast scales with the wood's
    brightness, so on dark wood (grey 35-45) a crack or knot leaves a residual within pale wood's
    grain noise and the L1 loss hardly weighs dark tiles. Normalised, every wood shade (and
    every part of an unevenly lit width) reaches the model, its loss and the scores at the same
    contrast.
    """
    x = raw_nchw(tiles)
    if brightness is not None:
        mean = x.mean(dim=(1, 2, 3), keepdim=True).clamp_min(REL_FLOOR * 255.0)
        x = (x * (brightness * 255.0 / mean)).clamp(0.0, 255.0)
    return x * (1.0 / 127.5) - 1.0


def residual_kernel_for(tile: int) -> int:
    """Smoothing window of ``residual_max``: 16 px at 256, scaled with the tile size, at least 2."""
    return max(2, round(16 * tile / 256))


def d_feature_stages(netd: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Outputs of every stage of a DCGAN discriminator body (isize/2 ... 4x4), one D pass.

    The last one equals ``netd(x)[1]``, the features the generators are trained to match.
    """
    stages = []
    h = x
    for layer in netd.features.main:
        h = layer(h)
        if isinstance(layer, nn.LeakyReLU):
            stages.append(h)
    return stages


def default_scores(has_latent: bool, has_d: bool) -> tuple[str, ...]:
    """GANomaly without D keeps the historical three outputs; with D every score it can make."""
    if not has_d:
        return SCORE_NAMES if has_latent else ("image_l1", "residual_max")
    return tuple(s for s in ALL_SCORES if (has_latent or s != "latent_l2") and s not in OPT_IN_SCORES)


class ScoringModel(nn.Module):
    """Generator (optionally discriminator and a VGG trunk) plus preprocessing and scores.

    Scores (each float32 [B], in ``score_names`` order; x, x_hat in [-1, 1]):
      * ``latent_l2``: mean (z - z_hat)^2, GANomaly's own score (GANomaly only);
      * ``image_l1``: mean |x - x_hat| over the tile;
      * ``residual_max``: max of the channel-mean |x - x_hat| map after a k x k box filter, a
        localised score so a small defect is not diluted by the whole tile;
      * ``residual_rel``: ``residual_max`` divided by the tile's mean brightness (0-1) plus
        REL_FLOOR: a defect's contrast, and so its residual, scales with the wood's brightness,
        so a knot on dark wood (grey 40) leaves a residual a few times smaller than the same knot
        on pale wood; relative to the brightness they compare (issue 14's dark-wood misses);
      * ``colour_max``: like ``residual_max``, but of the residual's part orthogonal to the tile's
        mean reconstructed colour: wood's grain and lighting change its brightness along that
        colour, a white chalk mark or a pale stain turns it towards grey, so a mark that the
        grain's brightness residual hides stands out in colour (opt-in);
      * ``residual_colour``: the larger of the normalised ``residual_max`` and ``colour_max``
        (both must be exported; opt-in);
      * ``greying_max``: how far the tile's wood turns grey past its own greyest (earlywood)
        colour, from the camera's pixels alone (``greying.py``: a chalk mark or a pale stain of a
        few grey levels, which no residual separates from grain), over the default window of
        ``residual_kernel_for`` (16 px at 256; opt-in, colour only);
      * ``residual_colour_greying``: the largest of the normalised ``residual_max``,
        ``colour_max`` and ``greying_max`` (all three exported; opt-in);
      * ``feature_l1`` / ``feature_l2``: mean |f(x) - f(x_hat)| / mean (f(x) - f(x_hat))^2 of D's
        last features f (the wood study's discriminator residuals; Skip-GANomaly's latent score);
      * ``combined``: lam * image_l1 + (1 - lam) * feature_l2 (Skip-GANomaly's A(x), lam = 0.9;
        the paper min-max scales both over a test set, which a per-tile graph cannot do; with a
        score normalisation set, the two parts are normalised before they are combined);
      * ``pixel_max``: max of the FEGAN map S = lam * F + (1 - lam) * R, R the channel-mean
        |x - x_hat|, F the mean over feature stages (D's, or VGG19's when given) of the
        channel-mean |f(x) - f(x_hat)| upsampled bilinearly to the tile.

    ``brightness`` (training's ``brightness_norm``): tiles are scaled to that mean brightness
    before anything else (see ``preprocess``); None keeps them as the camera saw them.

    ``half=True`` runs the networks in FP16 (for an FP16 export); input stays uint8 and the
    residuals and scores are computed in FP32.

    Score normalisation (``set_normalization``, fitted by training on held-out good patches):
    every output becomes (raw - centre) / scale, e.g. median and 1.4826 x MAD, so a score reads
    "robust standard deviations above good surface" whatever its raw scale. It is a buffer of the
    graph, so ONNX, TensorRT and torch all give the same normalised numbers; unset, it is the
    identity (checkpoints written before it existed score as they did).
    """

    def __init__(
        self,
        netg: nn.Module,
        residual_kernel: int | None = None,
        half: bool = False,
        netd: nn.Module | None = None,
        scores: Sequence[str] | None = None,
        lam: float = 0.9,
        vgg: nn.Module | None = None,
        brightness: float | None = None,
    ) -> None:
        super().__init__()
        self.netg = netg
        self.tile = netg.isize
        self.channels = netg.nc
        self.has_latent = bool(getattr(netg, "has_latent", True))
        self.residual_kernel = int(residual_kernel or residual_kernel_for(netg.isize))
        if not 1 <= self.residual_kernel <= netg.isize:
            raise ValueError(f"residual_kernel must be in [1, {netg.isize}], got {self.residual_kernel}")
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {lam}")
        self.netd = netd
        self.vgg = vgg
        self.lam = float(lam)
        if brightness is not None and not 0.0 < brightness <= 1.0:
            raise ValueError(f"brightness must be in (0, 1], got {brightness}")
        self.brightness = brightness
        names = tuple(scores) if scores else default_scores(self.has_latent, netd is not None)
        unknown = [s for s in names if s not in ALL_SCORES]
        if unknown or len(set(names)) != len(names) or not names:
            raise ValueError(f"scores must be distinct names from {ALL_SCORES}, got {list(names)}")
        missing = [f"{n} needs {' and '.join(p)}" for n, p in COMPOSITE_PARTS.items()
                   if n in names and not set(p) <= set(names)]
        if missing:
            raise ValueError(f"composite scores need their parts among the scores: {'; '.join(missing)}")
        if COLOUR_SCORES & set(names) and self.channels < 3:
            raise ValueError(f"{' and '.join(sorted(COLOUR_SCORES))} need colour tiles (nc 3)")
        if "latent_l2" in names and not self.has_latent:
            raise ValueError("latent_l2 needs a GANomaly generator (encoder-decoder-encoder)")
        if netd is None and D_SCORES & set(names):
            raise ValueError(f"scores {sorted(D_SCORES & set(names))} need the discriminator (netd)")
        self.score_names: tuple[str, ...] = names
        # (centre, scale) per score of ALL_SCORES, identity until set_normalization
        self.register_buffer("score_norm", torch.tensor([[0.0, 1.0]] * len(ALL_SCORES)))
        self.half_precision = half
        if half:
            for net in (self.netg, self.netd, self.vgg):
                if net is not None:
                    net.half()

    def as_half(self) -> ScoringModel:
        """An FP16 copy (networks in half, scores in FP32, the same normalisation): what the FP16
        export and the torch backend on CUDA run."""
        m = ScoringModel(copy.deepcopy(self.netg), self.residual_kernel, half=True, netd=copy.deepcopy(self.netd),
                         scores=self.score_names, lam=self.lam, vgg=copy.deepcopy(self.vgg),
                         brightness=self.brightness)
        m.set_normalization(self.normalization())
        return m.train(self.training)

    def set_normalization(self, norm: dict[str, tuple[float, float]]) -> None:
        """(centre, scale) per score name; scores not named keep the identity."""
        table = self.score_norm.clone()
        for name, (centre, scale) in norm.items():
            if not scale > 0:
                raise ValueError(f"normalisation scale of {name} must be > 0, got {scale}")
            table[ALL_SCORES.index(name)] = torch.tensor([float(centre), float(scale)])
        self.score_norm.copy_(table)

    def normalization(self) -> dict[str, tuple[float, float]]:
        """The (centre, scale) of every score that is not the identity."""
        return {name: (float(c), float(s)) for name, (c, s) in zip(ALL_SCORES, self.score_norm.tolist())
                if (c, s) != (0.0, 1.0)}

    def _norm(self, name: str, raw: torch.Tensor) -> torch.Tensor:
        i = ALL_SCORES.index(name)
        return (raw - self.score_norm[i, 0]) / self.score_norm[i, 1]

    def _run(self, x: torch.Tensor, need_stages: bool) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """One pass of G (and D / VGG when needed); results in FP32."""
        dt = torch.float16 if self.half_precision else torch.float32
        xin = x.to(dt) if self.half_precision else x
        out = self.netg(xin)
        if self.has_latent:
            x_hat, z, z_hat = out
            res: dict = {"x_hat": x_hat.float(), "z": z.float(), "z_hat": z_hat.float()}
        else:
            res = {"x_hat": out.float()}
        if need_stages and self.netd is not None:
            both = torch.cat([xin, res["x_hat"].to(dt)], 0)  # one D pass for x and x_hat
            res["d_stages"] = [s.float() for s in d_feature_stages(self.netd, both)]
        if need_stages and self.vgg is not None:
            both = torch.cat([xin, res["x_hat"].to(dt)], 0)
            res["vgg_stages"] = [s.float() for s in self.vgg(both)]
        return res

    def _feature_map(self, res: dict, b: int) -> torch.Tensor:
        """F: mean over stages of the upsampled channel-mean |f(x) - f(x_hat)|, [B, 1, T, T]."""
        stages = res["vgg_stages"] if "vgg_stages" in res else res["d_stages"]
        maps = [upsample_to((s[:b] - s[b:]).abs().mean(1, keepdim=True), self.tile) for s in stages]
        return torch.stack(maps, 0).mean(0)

    def anomaly_map(self, x: torch.Tensor, res: dict | None = None) -> torch.Tensor:
        """Pixel map [B, T, T] for a preprocessed batch: FEGAN's S when D or VGG is there, else R."""
        if res is None:
            res = self._run(x, need_stages=True)
        r = (x - res["x_hat"]).abs().mean(1, keepdim=True)
        if "d_stages" not in res and "vgg_stages" not in res:
            return r[:, 0]
        s = self.lam * self._feature_map(res, x.shape[0]) + (1.0 - self.lam) * r
        return s[:, 0]

    def _colour_max(self, r: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """``colour_max`` of the signed residual r = x - x_hat: the norm of r's part orthogonal to
        the tile's mean reconstructed colour (0-1), box-filtered, its maximum."""
        colour = ((x_hat + 1.0) * 0.5).mean(dim=(2, 3), keepdim=True)
        unit = colour / colour.pow(2).sum(1, keepdim=True).sqrt().clamp_min(1e-3)
        orth = r - (r * unit).sum(1, keepdim=True) * unit
        return self._smoothed_max(orth.pow(2).sum(1, keepdim=True).sqrt())

    def _smoothed_max(self, amap: torch.Tensor) -> torch.Tensor:
        """The largest mean of an anomaly map [B, 1, H, W] over residual_kernel x residual_kernel
        windows: one pixel of noise does not make a tile's score, a defect of that size does."""
        if self.residual_kernel > 1:
            amap = F.avg_pool2d(amap, self.residual_kernel, stride=1)
        return amap.flatten(1).amax(1)

    def prepare(self, tiles: torch.Tensor) -> torch.Tensor:
        """This model's preprocessing of uint8 tiles (its brightness normalisation included)."""
        return preprocess(tiles, self.brightness)

    def forward(self, tiles: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.prepare(tiles)
        names = self.score_names
        res = self._run(x, need_stages=bool(D_SCORES & set(names)))
        x_hat = res["x_hat"]
        b = x.shape[0]
        signed = x - x_hat
        diff = signed.abs()
        got: dict[str, torch.Tensor] = {}
        if "latent_l2" in names:
            got["latent_l2"] = (res["z"] - res["z_hat"]).pow(2).flatten(1).mean(1)
        got["image_l1"] = diff.flatten(1).mean(1)
        if "residual_max" in names or "residual_rel" in names:
            got["residual_max"] = self._smoothed_max(diff.mean(1, keepdim=True))
            brightness = (x.flatten(1).mean(1) + 1.0) * 0.5
            got["residual_rel"] = got["residual_max"] / (brightness + REL_FLOOR)
        if "colour_max" in names:
            got["colour_max"] = self._colour_max(signed, x_hat)
        if "greying_max" in names:
            got["greying_max"] = greying_max(raw_nchw(tiles), residual_kernel_for(self.tile))
        for composite in ("residual_colour", "residual_colour_greying"):
            if composite in names:
                parts = [self._norm(p, got[p]) for p in COMPOSITE_PARTS[composite]]
                got[composite] = torch.stack(parts, 0).amax(0)
        if "d_stages" in res:
            last = res["d_stages"][-1]
            fdiff = last[:b] - last[b:]
            got["feature_l1"] = fdiff.abs().flatten(1).mean(1)
            got["feature_l2"] = fdiff.pow(2).flatten(1).mean(1)
            got["combined"] = (self.lam * self._norm("image_l1", got["image_l1"])
                               + (1.0 - self.lam) * self._norm("feature_l2", got["feature_l2"]))
            if "pixel_max" in names:
                got["pixel_max"] = self.anomaly_map(x, res).flatten(1).amax(1)
        return tuple(self._norm(name, got[name]) for name in names)


@torch.no_grad()
def score_tiles(model: ScoringModel, tiles: np.ndarray, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Score a uint8 [N, T, T, C] array in eval mode; returns {score name: float32 [N]}."""
    names = model.score_names
    was_training = model.training
    model.eval()
    parts: list[tuple[torch.Tensor, ...]] = []
    device = next(model.netg.parameters()).device
    try:
        for start in range(0, len(tiles), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(tiles[start : start + batch_size])).to(device)
            parts.append(tuple(t.cpu() for t in model(batch)))
    finally:
        model.train(was_training)
    if not parts:
        return {name: np.zeros(0, np.float32) for name in names}
    return {name: torch.cat([p[i] for p in parts]).float().numpy() for i, name in enumerate(names)}


@torch.no_grad()
def map_tiles(model: ScoringModel, tiles: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Pixel anomaly maps (float32 [N, T, T]) of uint8 tiles, for evaluation and heatmaps."""
    was_training = model.training
    model.eval()
    device = next(model.netg.parameters()).device
    out = []
    try:
        for start in range(0, len(tiles), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(tiles[start : start + batch_size])).to(device)
            out.append(model.anomaly_map(model.prepare(batch)).float().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, model.tile, model.tile), np.float32)
