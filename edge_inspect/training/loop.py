"""Training loop for the GANomaly family on good images, built for small real sets.

A plant brings 50-300 good images; as one tile each they are far too few samples. So:

* **patches**: every image is a source of patches of the model's tile size at native resolution
  (`datasets/patches.py`): training draws random crops (every position, so small shifts come for
  free), validation and evaluation use the grid at `patch_stride`. An epoch counts patches seen
  (`epoch_patches`, default the training images' grid), not images.
* **a held-out split by image** (`val_fraction`): no validation patch overlaps a training patch.
* **augmentation that keeps good product good**: flips, brightness and contrast jitter within
  set limits (`training/augment.py`); FEGAN's M-SE on request.
* **a learning-rate schedule**: linear warm-up, then cosine decay to zero at the end of the run,
  the end being `epochs` or `max_minutes`, whichever comes first.
* **checkpoint selection on held-out good patches only**: every `val_every` patches the model
  scores the validation patches and the same patches with one synthetic defect each
  (`training/proxy.py`); the state with the best proxy AUROC is kept. Test images never take part.
* **normalised scores**: per score, (raw - median) / (1.4826 MAD) of the validation patches,
  stored in the graph, so a combined score adds like with like and thresholds transfer.

The family's step (`training/steps/`) does one G + D update; this loop writes to ``out_dir``:
``model.pt`` (weights-only checkpoint with optimiser state, to resume), ``validation_scores.npz``
(normalised scores of the validation patches: the first threshold), ``validation_images.npz``
(each validation image's worst patch: image-level thresholds) and ``train.json`` (config,
losses, every validation, timing).
"""

from __future__ import annotations

import copy
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
from edge_inspect.datasets.patches import PatchSet, split_images
from edge_inspect.errors import InputDataError
from edge_inspect.evaluation.metrics import auroc
from edge_inspect.models.checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, read_checkpoint
from edge_inspect.models.names import COMPOSITE_PARTS
from edge_inspect.models.registry import build_nets, build_scoring
from edge_inspect.models.scoring import ScoringModel, preprocess, score_tiles
from edge_inspect.progress import Progress
from edge_inspect.training.augment import flip, jitter, mse_augment
from edge_inspect.training.proxy import with_proxy_defects
from edge_inspect.training.steps import STEPS
from edge_inspect.training_config import TrainingConfig

__all__ = ["TrainResult", "train", "robust_normalization"]

log = structlog.get_logger(__name__)

# config keys that fix the architecture: a resumed run must agree on them
_ARCH_KEYS = ("model", "nc", "isize", "ngf", "ndf", "nz", "max_channels", "attention_blocks")
_MAD_TO_SIGMA = 1.4826  # MAD x this = standard deviation for normal data


@dataclass
class TrainResult:
    """What a run produced, for the CLI summary, the quality benchmark and tests."""

    out_dir: Path
    checkpoint: Path
    epochs_run: int
    train_tiles: int          # training images (a tile given as such counts as one image)
    val_tiles: int            # validation images
    seconds: float
    tiles_per_s: float        # training patches per second
    stopped_early: str | None
    patches_seen: int = 0
    decision_score: str = ""
    selected: dict[str, Any] = field(default_factory=dict)
    losses: list[dict[str, float]] = field(default_factory=list)
    val_scores: dict[str, np.ndarray] = field(default_factory=dict)


def robust_normalization(scores: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """(median, 1.4826 x MAD) per score, the scale floored so a constant score cannot divide by 0."""
    out = {}
    for name, v in scores.items():
        v = np.asarray(v, np.float64)
        med = float(np.median(v))
        mad = float(np.median(np.abs(v - med))) * _MAD_TO_SIGMA
        out[name] = (med, max(mad, 1e-6 * abs(med), 1e-12))
    return out


def _device(cfg: TrainingConfig) -> torch.device:
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise InputDataError("training.device is cuda but torch sees no CUDA device")
        return torch.device("cuda")
    return torch.device("cpu")


def _as_images(data: np.ndarray | list[np.ndarray], cfg: TrainingConfig, what: str) -> list[np.ndarray]:
    """uint8 HxWxC images with C == cfg.nc; a [N, T, T, C] array is N images of one tile each."""
    images = list(data) if isinstance(data, list) else [data[i] for i in range(len(data))]
    for im in images:
        if not isinstance(im, np.ndarray) or im.dtype != np.uint8 or im.ndim != 3:
            raise InputDataError(f"{what} must be uint8 H x W x C images, got "
                                 f"{getattr(im, 'dtype', type(im))} {getattr(im, 'shape', '')}")
        if im.shape[2] != cfg.nc:
            raise InputDataError(f"{what} have {im.shape[2]} channel(s) but training.nc is {cfg.nc}: "
                                 "convert the data or set nc to match")
    return images


def train(cfg: TrainingConfig, data: np.ndarray | list[np.ndarray], out_dir: Path, resume: Path | None = None,
          extra_train: np.ndarray | list[np.ndarray] | None = None, trained_on: dict | None = None,
          groups: list[int] | None = None) -> TrainResult:
    """Train ``cfg.model`` on good images (uint8 HxWxC each, or tiles [N, T, T, C]); see the module
    docstring for the recipe and the outputs.

    ``resume``: a checkpoint of this run (same architecture) to continue from its last epoch up
    to ``cfg.epochs``. ``extra_train``: images added to the training part only, never to
    validation (the anti-noise study's defect contamination: thresholds stay clean).
    ``trained_on``: what the data was (kind, files and their sha256), kept in the checkpoint and
    train.json so that calibration can refuse the model's own training scans. ``groups``: which
    images belong together (a scan's tiles: their board), held out together.
    """
    images = _as_images(data, cfg, "training images")
    if not images:
        raise InputDataError("no training images")
    train_idx, val_idx = split_images(len(images), cfg.val_fraction, cfg.seed, groups)
    if cfg.max_tiles is not None:
        train_idx = np.sort(np.random.default_rng(cfg.seed).permutation(train_idx)[:cfg.max_tiles])
    train_images = [images[i] for i in train_idx]
    if extra_train is not None and len(extra_train):
        train_images += _as_images(extra_train, cfg, "contamination images")
    if not train_images:
        raise InputDataError(f"need at least 1 training image, got 0 (of {len(images)})")
    stride = cfg.stride()
    train_set = PatchSet.of(train_images, cfg.isize, stride)
    val_set = PatchSet.of([images[i] for i in val_idx], cfg.isize, stride)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    prev_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _Run(cfg, train_set, val_set, out_dir, resume, trained_on).run()
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


class _Validation:
    """Validation patches, their synthetic-defect twins and the image each came from."""

    def __init__(self, cfg: TrainingConfig, val_set: PatchSet) -> None:
        if val_set.images:
            self.good, self.owner = val_set.grid(cfg.max_val_patches, np.random.default_rng(cfg.seed))
        else:
            self.good = np.zeros((0, cfg.isize, cfg.isize, cfg.nc), np.uint8)
            self.owner = np.zeros(0, np.int64)
        self.bad = with_proxy_defects(self.good, cfg.seed + 1)
        self.n_images = len(val_set.images)

    def proxy(self, scorer: ScoringModel, batch: int) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """(proxy AUROC per score, the scores of the good patches as ``scorer`` gives them)."""
        good = score_tiles(scorer, self.good, batch)
        if len(self.good) == 0:
            return {}, good
        bad = score_tiles(scorer, self.bad, batch)
        labels = np.r_[np.zeros(len(self.good)), np.ones(len(self.bad))]
        return {n: auroc(labels, np.r_[good[n], bad[n]]) for n in good}, good

    def per_image_max(self, scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for name, v in scores.items():
            m = np.full(self.n_images, -np.inf)
            np.maximum.at(m, self.owner, v)
            out[name] = m[np.isfinite(m)].astype(np.float32)
        return out


class _Run:
    def __init__(self, cfg: TrainingConfig, train_set: PatchSet, val_set: PatchSet, out_dir: Path,
                 resume: Path | None, trained_on: dict | None) -> None:
        self.cfg, self.train_set, self.val_set, self.out_dir, self.resume = cfg, train_set, val_set, out_dir, resume
        self.trained_on = trained_on

    def run(self) -> TrainResult:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        device = _device(cfg)
        netg, netd = build_nets(cfg)
        netg.to(device).train()
        netd.to(device).train()
        step = STEPS[cfg.model](cfg, netg, netd, device)
        start_epoch = 1
        if self.resume is not None:
            payload = _load_resume(self.resume, cfg)
            state = payload["train_state"]  # go on from where training stopped, not the selected state
            netg.load_state_dict(state.get("last_netg", payload["netg"]))
            netd.load_state_dict(state.get("last_netd", payload["netd"]))
            step.load_state_dict(state)
            gen.set_state(payload["train_state"]["rng"])
            rng = np.random.default_rng(payload["train_state"].get("np_seed", cfg.seed))
            start_epoch = int(payload.get("epochs_run", 0)) + 1
            log.info("train.resume", checkpoint=str(self.resume), from_epoch=start_epoch)
        val = _Validation(cfg, self.val_set)
        per_epoch = cfg.epoch_patches or self.train_set.grid_count()
        bs = min(cfg.batch_size, max(2, per_epoch))
        steps_per_epoch = max(1, per_epoch // bs)
        total_steps = max(cfg.epochs - start_epoch + 1, 0) * steps_per_epoch
        deadline = None if cfg.max_minutes is None else cfg.max_minutes * 60.0
        log.info(
            "train.start", model=cfg.model, train_images=len(self.train_set.images),
            val_images=len(self.val_set.images), val_patches=len(val.good), epoch_patches=steps_per_epoch * bs,
            epochs=cfg.epochs, batch_size=bs, isize=cfg.isize, stride=self.train_set.stride, nc=cfg.nc,
            g_params=sum(p.numel() for p in netg.parameters()), threads=torch.get_num_threads(),
            device=str(device), amp=step.amp, lr_schedule=cfg.lr_schedule, select=cfg.select,
        )
        bar = Progress(f"train {cfg.model}", total=total_steps * bs, unit="patches", max_seconds=deadline)
        t0 = time.monotonic()
        seen = 0
        since_val = 0
        done_steps = 0
        losses: list[dict[str, float]] = []
        validations: list[dict[str, Any]] = []
        best: dict[str, Any] | None = None
        stopped: str | None = None
        epoch = start_epoch - 1
        decision = cfg.decision()
        for epoch in range(start_epoch, cfg.epochs + 1):
            sums = dict.fromkeys(step.loss_keys, 0.0)
            steps = 0
            for _ in range(steps_per_epoch):
                elapsed = time.monotonic() - t0
                progress = max(done_steps / max(total_steps, 1), elapsed / deadline if deadline else 0.0)
                self._set_lr(step, progress)
                x = self._batch(rng, gen, bs, device)
                x_in = (mse_augment(x, gen, cfg.mse_area_ratio, cfg.mse_max_patch, cfg.mse_jitter)
                        if cfg.mse_augment else x)
                out = step(x_in, x)
                for key in sums:
                    sums[key] += out[key]
                steps += 1
                done_steps += 1
                seen += bs
                since_val += bs
                now = time.monotonic()
                bar.update(bs)
                if since_val >= cfg.val_every and cfg.select == "proxy_auroc":
                    since_val = 0
                    best = self._validate(netg, netd, val, epoch, seen, now - t0, decision, validations, best)
                    bar.note(f"epoch {epoch}, proxy AUROC {validations[-1]['proxy_auroc'].get(decision, '-')}")
                if deadline is not None and now - t0 >= deadline:
                    stopped = "max_minutes"
                    break
            epoch_losses = {k: v / max(steps, 1) for k, v in sums.items()}
            epoch_losses["epoch"] = epoch
            losses.append(epoch_losses)
            elapsed = time.monotonic() - t0
            log.info("train.epoch", epoch=epoch, epochs=cfg.epochs,
                     **{k: round(v, 5) for k, v in epoch_losses.items() if k != "epoch"},
                     patches_per_s=round(seen / max(elapsed, 1e-9), 1), elapsed_s=round(elapsed, 1))
            if stopped:
                log.warning("train.stopped", reason=stopped, epoch=epoch, max_minutes=cfg.max_minutes)
                break
        bar.close()
        seconds = time.monotonic() - t0
        if cfg.select == "proxy_auroc":  # the end of the run is a candidate too
            best = self._validate(netg, netd, val, epoch, seen, seconds, decision, validations, best)
        last_state = (copy.deepcopy(netg.state_dict()), copy.deepcopy(netd.state_dict()))
        selected = {"validation": len(validations) - 1, "rule": "last"}
        if best is not None:
            netg.load_state_dict(best["netg"])
            netd.load_state_dict(best["netd"])
            selected = {"validation": best["index"], "rule": "best proxy AUROC", **validations[best["index"]]}
        netg.eval()
        netd.eval()
        return self._finish(netg, netd, step, gen, rng, val, epoch, seen, seconds, stopped, losses, validations,
                            selected, last_state, device, bs)

    # -- pieces of the run -------------------------------------------------------------------
    def _set_lr(self, step: Any, progress: float) -> None:
        cfg = self.cfg
        if cfg.lr_schedule == "constant":
            factor = 1.0
        elif progress < cfg.warmup:
            factor = (progress + 1e-3) / cfg.warmup
        else:
            factor = 0.5 * (1.0 + math.cos(math.pi * min(1.0, (progress - cfg.warmup) / (1.0 - cfg.warmup))))
        for opt in (step.opt_g, step.opt_d):
            for group in opt.param_groups:
                group["lr"] = cfg.lr * max(factor, 0.01)  # never quite 0: the last steps still learn

    def _batch(self, rng: np.random.Generator, gen: torch.Generator, bs: int, device: torch.device) -> torch.Tensor:
        cfg = self.cfg
        x = preprocess(torch.from_numpy(self.train_set.sample(rng, bs)).to(device), cfg.brightness_norm)
        if cfg.flip:
            x = flip(x, gen)
        if cfg.brightness_jitter or cfg.contrast_jitter:
            x = jitter(x, gen, cfg.brightness_jitter, cfg.contrast_jitter)
        return x.contiguous()

    def _scorer(self, netg: torch.nn.Module, netd: torch.nn.Module, device: torch.device) -> ScoringModel:
        return build_scoring(self.cfg, netg, netd).to(device).eval()

    def _fit_normalization(self, scorer: ScoringModel, val: _Validation, bs: int) -> None:
        """Fit (median, MAD) of every score on the held-out good patches and set it on ``scorer``.

        A composite adds normalised parts, so the parts are fitted first and the composite is
        then fitted on its own values (one more pass)."""
        raw = score_tiles(scorer, val.good, bs)
        norm = robust_normalization(raw)
        composites = [n for n in COMPOSITE_PARTS if n in raw]
        if composites:
            scorer.set_normalization({k: v for k, v in norm.items() if k not in composites})
            again = score_tiles(scorer, val.good, bs)
            norm.update(robust_normalization({n: again[n] for n in composites}))
        scorer.set_normalization(norm)

    def _validate(self, netg: torch.nn.Module, netd: torch.nn.Module, val: _Validation, epoch: int, seen: int,
                  elapsed: float, decision: str, validations: list[dict[str, Any]],
                  best: dict[str, Any] | None) -> dict[str, Any] | None:
        """Proxy AUROC of the current state; returns the best state so far."""
        if len(val.good) == 0:
            return best
        was = netg.training, netd.training
        netg.eval()
        netd.eval()
        try:
            scorer = self._scorer(netg, netd, next(netg.parameters()).device)
            if COMPOSITE_PARTS.keys() & set(scorer.score_names):  # a composite means nothing unnormalised
                self._fit_normalization(scorer, val, max(self.cfg.batch_size, 16))
            proxy, good = val.proxy(scorer, max(self.cfg.batch_size, 16))
        finally:
            netg.train(was[0])
            netd.train(was[1])
        key = max(proxy, key=lambda n: proxy[n]) if self.cfg.decision_score == "auto" else decision
        entry = {"epoch": epoch, "patches_seen": seen, "seconds": round(elapsed, 1),
                 "proxy_auroc": {n: round(v, 5) for n, v in proxy.items()},
                 "val_mean": {n: float(np.mean(v)) for n, v in good.items()}}
        validations.append(entry)
        log.info("train.validation", epoch=epoch, patches_seen=seen, proxy_auroc=entry["proxy_auroc"])
        score = proxy.get(key, -1.0)
        if best is None or score > best["score"]:
            return {"score": score, "index": len(validations) - 1,
                    "netg": copy.deepcopy(netg.state_dict()), "netd": copy.deepcopy(netd.state_dict())}
        return best

    def _finish(self, netg: torch.nn.Module, netd: torch.nn.Module, step: Any, gen: torch.Generator,
                rng: np.random.Generator, val: _Validation, epoch: int, seen: int, seconds: float,
                stopped: str | None, losses: list[dict[str, float]], validations: list[dict[str, Any]],
                selected: dict[str, Any], last_state: tuple[dict, dict], device: torch.device,
                bs: int) -> TrainResult:
        cfg = self.cfg
        scorer = self._scorer(netg, netd, device)
        if cfg.normalize_scores and len(val.good):
            self._fit_normalization(scorer, val, max(bs, 16))
        proxy, _ = val.proxy(scorer, max(bs, 16))
        val_scores = score_tiles(scorer, val.good, max(bs, 16))
        chosen = max(proxy, key=lambda n: proxy[n]) if cfg.decision_score == "auto" and proxy else cfg.decision()
        saved_cfg = cfg.model_copy(update={"decision_score": chosen}) if cfg.decision_score == "auto" else cfg
        out_dir = self.out_dir
        write_atomic(out_dir / "validation_scores.npz", lambda f: np.savez(f, **val_scores))
        write_atomic(out_dir / "validation_images.npz", lambda f: np.savez(f, **val.per_image_max(val_scores)))
        ckpt = out_dir / "model.pt"
        payload = {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "config": saved_cfg.model_dump(mode="json"),
            "score_names": list(scorer.score_names),
            "decision_score": saved_cfg.decision(),
            "score_norm": {n: [c, s] for n, (c, s) in scorer.normalization().items()},
            "trained_on": self.trained_on,
            "epochs_run": epoch,
            "netg": {k: v.cpu() for k, v in netg.state_dict().items()},
            "netd": {k: v.cpu() for k, v in netd.state_dict().items()},
            "train_state": {**step.state_dict(), "rng": gen.get_state(), "np_seed": int(rng.integers(2**31)),
                            "last_netg": {k: v.cpu() for k, v in last_state[0].items()},
                            "last_netd": {k: v.cpu() for k, v in last_state[1].items()}},
        }
        write_atomic(ckpt, lambda f: torch.save(payload, f))
        summary = {
            "config": saved_cfg.model_dump(mode="json"),
            "trained_on": self.trained_on,
            "epochs_run": epoch,
            "resumed_from": None if self.resume is None else str(self.resume),
            "stopped_early": stopped,
            "train_tiles": len(self.train_set.images),
            "val_tiles": len(self.val_set.images),
            "train_images": len(self.train_set.images),
            "val_images": len(self.val_set.images),
            "val_patches": int(len(val.good)),
            "patches_seen": seen,
            "tiles_seen": seen,
            "seconds": round(seconds, 3),
            "patches_per_s": round(seen / max(seconds, 1e-9), 2),
            "tiles_per_s": round(seen / max(seconds, 1e-9), 2),
            "d_reinits": step.d_reinits,
            "losses": losses,
            "validations": validations,
            "selected": {k: v for k, v in selected.items() if k != "val_mean"},
            "decision_score": saved_cfg.decision(),
            "proxy_auroc_final": {n: round(v, 5) for n, v in proxy.items()},
            "score_norm": {n: [c, s] for n, (c, s) in scorer.normalization().items()},
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
        log.info("train.done", seconds=round(seconds, 1), epochs=epoch, patches_seen=seen, checkpoint=str(ckpt),
                 stopped_early=stopped, decision_score=saved_cfg.decision(), selected=selected.get("validation"),
                 proxy_auroc=summary["proxy_auroc_final"].get(saved_cfg.decision()))
        return TrainResult(
            out_dir=out_dir, checkpoint=ckpt, epochs_run=epoch, train_tiles=len(self.train_set.images),
            val_tiles=len(self.val_set.images), seconds=seconds, tiles_per_s=seen / max(seconds, 1e-9),
            stopped_early=stopped, patches_seen=seen, decision_score=saved_cfg.decision(), selected=selected,
            losses=losses, val_scores=val_scores,
        )
