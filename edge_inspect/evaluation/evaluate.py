"""``edge-inspect evaluate``: how well a trained checkpoint separates good from defective images
of an MVTec-layout test set, per score, with thresholds fixed on validation data only.

Images are prepared as the checkpoint was trained (``data_mode``: resized to one tile, or tiled
at native resolution, where an image's score is its worst tile and its pixel map is stitched
back from the tile maps). Every score comes from one forward pass; the pixel map is the one the
model's localised score is the maximum of (``pixel_max``: FEGAN's map; else ``residual_max``:
the box-filtered residual), so "IoU at the validation threshold" thresholds the map on the same
scale as that score's validation threshold. Only scores, sampled pixels and per-image IoU are
kept, so memory does not grow with image size; the few images drawn as worst cases are scored
again for their maps.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch
import torch.nn.functional as F

from edge_inspect.datasets.contamination import CONTAMINATION_FILE, read_contamination
from edge_inspect.datasets.images import image_tiles, read_image, resize_to_tile
from edge_inspect.decision.calibration_file import MARGIN
from edge_inspect.errors import InputDataError
from edge_inspect.evaluation.metrics import (
    auroc,
    average_precision,
    f1_at,
    f1_max,
    iou_at,
)
from edge_inspect.evaluation.plots import write_plots
from edge_inspect.evaluation.report import EvalReport
from edge_inspect.evaluation.testset import list_test_images, read_mask
from edge_inspect.models.checkpoint import load_checkpoint
from edge_inspect.models.scoring import ScoringModel, map_tiles
from edge_inspect.progress import Progress

__all__ = ["PIXEL_BUDGET", "WORST_CASES", "EvalReport", "evaluate", "image_view", "validation_thresholds"]

log = structlog.get_logger(__name__)

PIXEL_BUDGET = 2_000_000  # pixels kept for pixel AUROC (about 10 MB), sampled evenly over images
WORST_CASES = 4           # good and defect images each drawn in the worst-case figure


# -- thresholds ----------------------------------------------------------------------------------
def validation_thresholds(ckpt: Path, names: tuple[str, ...]) -> tuple[dict[str, float], dict[str, float], int]:
    """({score: max validation + MARGIN}, {score: validation max}, n validation tiles), the rule of
    the first calibration (``recalibration.initial``): held-out good tiles, never test data."""
    path = Path(ckpt).parent / "validation_scores.npz"
    if not path.is_file():
        raise InputDataError(f"{path}: missing; evaluate takes thresholds from the checkpoint's validation scores")
    try:
        with np.load(path) as z:
            arrays = {k: np.asarray(z[k], np.float64) for k in z.files}
    except (OSError, ValueError) as exc:
        raise InputDataError(f"{path}: unreadable validation scores ({exc})") from None
    thr, vmax = {}, {}
    n = 0
    for name in names:
        v = arrays.get(name)
        if v is None:
            raise InputDataError(f"{path}: no validation scores for {name!r} (has {', '.join(arrays) or 'none'})")
        if v.size == 0 or not np.isfinite(v).all():
            raise InputDataError(f"{path}: validation scores for {name!r} are empty or not finite "
                                 "(trained with val_fraction 0?)")
        vmax[name] = float(v.max())
        thr[name] = float(v.max() * (1 + MARGIN))
        n = int(v.size)
    return thr, vmax, n


# -- images -> tiles -> maps -----------------------------------------------------------------------
def image_view(img: np.ndarray, isize: int, mode: str, stride: int | None = None
               ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """(tiles [n, T, T, C], the image at map resolution, tile origins (y, x)).

    Mirrors the training preparation: ``resize`` squeezes to one tile; ``tile`` cuts at native
    resolution on the run-time tiler's grid at `stride` (a side shorter than the tile is
    padded), so the map lines up with the view.
    """
    if mode == "resize":
        view = resize_to_tile(img, isize)
        return view[None], view, [(0, 0)]
    tiles, origins, view = image_tiles(img, isize, stride)
    return tiles, view, origins


def stitch(maps: np.ndarray, origins: list[tuple[int, int]], shape: tuple[int, int]) -> np.ndarray:
    """Tile maps back into one image map; where edge-aligned tiles overlap the larger value wins."""
    if len(origins) == 1 and maps.shape[1:] == tuple(shape):
        return maps[0]
    t = maps.shape[1]
    out = np.full(shape, -np.inf, np.float32)
    for m, (y, x) in zip(maps, origins):
        np.maximum(out[y : y + t, x : x + t], m, out=out[y : y + t, x : x + t])
    return out


class _Scorer:
    """All scores of a tile batch from one forward pass, plus the pixel map: ``residual_max``'s
    smoothed residual is built from the x_hat of that same pass (a hook on G); FEGAN's map (for
    ``pixel_max``) needs D's feature stages, so it takes a second pass through ``map_tiles``."""

    def __init__(self, model: ScoringModel, batch_size: int) -> None:
        self.model = model
        self.batch_size = batch_size
        self.device = next(model.netg.parameters()).device
        names = model.score_names
        self.map_score = "pixel_max" if "pixel_max" in names else ("residual_max" if "residual_max" in names else None)
        self._x_hat: torch.Tensor | None = None

    def _grab(self, _module: torch.nn.Module, _inp: Any, out: Any) -> None:
        self._x_hat = (out[0] if isinstance(out, tuple) else out).float()

    def _residual_map(self, x: torch.Tensor) -> torch.Tensor:
        r = (x - self._x_hat).abs().mean(1, keepdim=True)
        if self.map_score == "residual_max" and self.model.residual_kernel > 1:
            k = self.model.residual_kernel
            r = F.avg_pool2d(r, k, stride=1)  # exactly residual_max's map: its max is the score
            a = (k - 1) // 2
            r = F.pad(r, (a, k - 1 - a, a, k - 1 - a), mode="replicate")  # window centres, full size
        return r[:, 0]

    @torch.no_grad()
    def __call__(self, tiles: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        names = self.model.score_names
        scores: list[tuple[torch.Tensor, ...]] = []
        maps: list[np.ndarray] = []
        handle = self.model.netg.register_forward_hook(self._grab)
        try:
            for start in range(0, len(tiles), self.batch_size):
                chunk = np.ascontiguousarray(tiles[start : start + self.batch_size])
                batch = torch.from_numpy(chunk).to(self.device)
                scores.append(tuple(s.float().cpu() for s in self.model(batch)))
                if self.map_score == "pixel_max":
                    maps.append(map_tiles(self.model, chunk, self.batch_size))
                else:
                    maps.append(self._residual_map(self.model.prepare(batch)).float().cpu().numpy())
        finally:
            handle.remove()
            self._x_hat = None
        out = {name: torch.cat([s[i] for s in scores]).numpy() for i, name in enumerate(names)}
        # the map in its score's units (the graph normalises scores, not maps), so the score's
        # validation threshold applies to it and its maximum is the score
        centre, scale = self.model.normalization().get(self.map_score or "", (0.0, 1.0))
        return out, (np.concatenate(maps) - centre) / scale


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InputDataError(f"--device {name}: not a torch device (auto, cpu, cuda, cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputDataError(f"--device {name}: torch sees no CUDA device")
    return dev


def _check_contamination_record(ckpt_dir: Path) -> None:
    """A model trained with contamination must come with its list, or test images it saw would
    be scored as unseen."""
    summary = ckpt_dir / "train.json"
    if (ckpt_dir / CONTAMINATION_FILE).is_file() or not summary.is_file():
        return
    try:
        ratio = float((json.loads(summary.read_text(encoding="utf-8")).get("config") or {}).get("contaminate") or 0)
    except (OSError, ValueError, TypeError, AttributeError):
        return
    if ratio > 0:
        raise InputDataError(f"{ckpt_dir / CONTAMINATION_FILE}: missing, but the model was trained with "
                             f"contaminate {ratio}: cannot tell which test images it saw")


def evaluate(model_path: Path, data: Path, batch_size: int = 32, device: str = "auto",
             plots: Path | None = None, pixel_budget: int = PIXEL_BUDGET, seed: int = 0) -> EvalReport:
    """Score every test image once with all the model's scores and measure them (see module doc)."""
    model_path, data = Path(model_path), Path(data)
    contam = None
    # cheap checks first: a wrong folder is reported before the model loads
    if model_path.is_file():
        _check_contamination_record(model_path.parent)
        contam = read_contamination(model_path.parent)
    items, dropped = list_test_images(data, contam.images if contam else ())
    model, cfg = load_checkpoint(model_path)
    names = tuple(model.score_names)
    thresholds, vmax, n_val = validation_thresholds(model_path, names)
    dev = _device(device)
    model.to(dev)
    scorer = _Scorer(model, batch_size)
    map_thr = thresholds.get(scorer.map_score) if scorer.map_score else None
    if contam is not None:
        missing = len(contam.images) - len(dropped)
        if missing:
            log.warning("evaluate.contamination_not_found", listed=len(contam.images), found=len(dropped),
                        hint="the list names images by test/<type>/<name>; is this the dataset it was trained on?")

    labels = np.array([it.label for it in items])
    pixel_ok = [it.label == 0 or it.mask is not None for it in items]
    has_masks = any(it.mask is not None for it in items)
    rng = np.random.default_rng(seed)
    rate: float | None = None
    px_vals: list[np.ndarray] = []
    px_labs: list[np.ndarray] = []
    ious: list[float | None] = [None] * len(items)
    empty_masks = 0
    per_image = {name: np.zeros(len(items), np.float64) for name in names}

    t0 = time.monotonic()
    pending: list[tuple[int, tuple[int, int], list[tuple[int, int]]]] = []
    pending_tiles: list[np.ndarray] = []

    def flush() -> None:
        nonlocal rate, empty_masks
        tiles = np.concatenate(pending_tiles)
        scores, maps = scorer(tiles)
        start = 0
        for idx, shape, origins in pending:
            stop = start + len(origins)
            for name in names:
                per_image[name][idx] = float(scores[name][start:stop].max())
            it = items[idx]
            if has_masks and pixel_ok[idx]:
                amap = stitch(maps[start:stop], origins, shape)
                mask = read_mask(it.mask, shape)
                if it.label == 1 and not mask.any():
                    empty_masks += 1  # a defect without marked pixels: no pixel truth to measure
                else:
                    if rate is None:
                        rate = min(1.0, pixel_budget / max(1, sum(pixel_ok) * amap.size))
                    keep = rng.random(amap.size) < rate
                    px_vals.append(amap.ravel()[keep])
                    px_labs.append(mask.ravel()[keep])
                    if it.label == 1 and map_thr is not None:
                        ious[idx] = iou_at(mask, amap, map_thr)
            start = stop
        bar.update(len(pending))
        pending.clear()
        pending_tiles.clear()

    count = 0
    with Progress("evaluate", total=len(items), unit="images") as bar:
        for i, it in enumerate(items):
            tiles, view, origins = image_view(read_image(it.path, cfg.nc), cfg.isize, cfg.data_mode, cfg.stride())
            pending.append((i, view.shape[:2], origins))
            pending_tiles.append(tiles)
            count += len(tiles)
            if count >= batch_size:
                flush()
                count = 0
        if pending:
            flush()
    seconds = time.monotonic() - t0
    log.info("evaluate.scored", images=len(items), seconds=round(seconds, 2), device=str(dev))

    types = sorted({it.defect_type for it in items if it.label == 1})
    kinds = np.array([it.defect_type for it in items])
    score_docs: dict[str, dict[str, Any]] = {}
    px_doc = None
    if px_vals:
        vals, labs = np.concatenate(px_vals), np.concatenate(px_labs)
        defect_ious = [v for v in ious if v is not None]
        px_doc = {
            "map": scorer.map_score or "residual",
            "threshold_score": scorer.map_score,
            "threshold": map_thr,
            "auroc": auroc(labs, vals) if labs.any() and not labs.all() else None,
            "iou_mean": float(np.mean(defect_ious)) if defect_ious else None,
            "iou_images": len(defect_ious),
            "images": int(sum(pixel_ok)) - empty_masks,
            "defect_images": int(sum(1 for it in items if it.label == 1 and it.mask is not None)) - empty_masks,
            "defect_images_without_mask": int(sum(1 for it in items if it.label == 1 and it.mask is None)),
            "empty_masks": empty_masks,
            "pixels_sampled": int(vals.size),
            "sample_rate": rate,
        }
    for name in names:
        s = per_image[name]
        thr = thresholds[name]
        pred = s >= thr
        best, best_thr = f1_max(labels, s)
        per_type = {}
        for t in types:
            sel = (labels == 0) | (kinds == t)
            per_type[t] = {"auroc": auroc(labels[sel], s[sel]), "n": int(np.sum(kinds == t))}
        own_map = px_doc is not None and name == scorer.map_score
        score_docs[name] = {
            "auroc": auroc(labels, s),
            "aupr": average_precision(labels, s),
            "f1_max": best,
            "f1_max_threshold": best_thr,
            "val_max": vmax[name],
            "val_threshold": thr,
            "f1_at_val": f1_at(labels, s, thr),
            "tpr_at_val": float(pred[labels == 1].mean()),
            "fpr_at_val": float(pred[labels == 0].mean()),
            "per_type": per_type,
            "pixel_auroc": px_doc["auroc"] if own_map else None,
            "iou_mean": px_doc["iou_mean"] if own_map else None,
        }

    decision = cfg.decision() if cfg.decision() in names else names[0]
    ds = per_image[decision]
    good_idx = [int(i) for i in np.argsort(-ds, kind="stable") if labels[i] == 0][:WORST_CASES]
    bad_idx = [int(i) for i in np.argsort(ds, kind="stable") if labels[i] == 1][:WORST_CASES]
    doc: dict[str, Any] = {
        "model": str(model_path),
        "model_family": cfg.model,
        "isize": cfg.isize,
        "nc": cfg.nc,
        "data_mode": cfg.data_mode,
        "data": str(data),
        "score_names": list(names),
        "decision_score": decision,
        "device": str(dev),
        "seconds": round(seconds, 3),
        "images_per_s": round(len(items) / max(seconds, 1e-9), 2),
        "test_set": {
            "good": int(np.sum(labels == 0)),
            "defect": int(np.sum(labels == 1)),
            "by_type": {t: int(np.sum(kinds == t)) for t in types},
            "excluded_contaminated": len(dropped),
            "excluded": dropped,
        },
        "validation": {"file": str(model_path.parent / "validation_scores.npz"), "n": n_val, "margin": MARGIN,
                       "rule": f"max of the held-out good validation tiles + {MARGIN:.0%}"},
        "scores": score_docs,
        "pixel": px_doc,
        "worst": {"good": [items[i].rel for i in good_idx], "defect": [items[i].rel for i in bad_idx]},
        "plots": [],
        "images": [
            {"path": it.rel, "type": it.defect_type, "label": it.label,
             "scores": {name: float(per_image[name][i]) for name in names}, "iou": ious[i]}
            for i, it in enumerate(items)
        ],
    }
    report = EvalReport(doc=doc, items=items, scores=per_image)
    if plots is not None:
        def render(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
            it = items[i]
            tiles, view, origins = image_view(read_image(it.path, cfg.nc), cfg.isize, cfg.data_mode, cfg.stride())
            _, maps = scorer(tiles)
            mask = read_mask(it.mask, view.shape[:2]) if it.mask is not None else None
            return view, stitch(maps, origins, view.shape[:2]), mask

        doc["plots"] = [str(p) for p in write_plots(report, Path(plots), render, good_idx, bad_idx,
                                                    thresholds, map_thr)]
    return report

