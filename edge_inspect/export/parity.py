"""Parity gate (`edge-inspect parity`): does a candidate model (FP16 ONNX, TensorRT engine, or a
torch checkpoint) rank tiles like the FP32 reference?

Absolute differences alone say little (FP16 shifts every score a bit; the threshold is
recalibrated anyway); what decides verdicts is the order of the scores and, with labels, the
separation of good from defect. So the gate is: Spearman rank correlation >= 0.999 for every
compared score and, when labels exist, |AUROC(candidate) - AUROC(reference)| <= 0.002.
Max abs/rel errors are reported for information.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_inspect.errors import InputDataError
from edge_inspect.evaluation.metrics import auroc
from edge_inspect.progress import Progress

SPEARMAN_MIN = 0.999
AUROC_DELTA_MAX = 0.002


# -- statistics (own implementations: no scipy in the runtime) -----------------------------------
def average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank (as scipy.stats.rankdata 'average')."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], len(xs)]
    avg = (starts + ends + 1) / 2.0  # mean of 1-based ranks start+1 .. end
    ranks = np.empty(len(x), np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho: Pearson correlation of the average ranks (ties handled). NaN when either
    side is constant (no order to compare)."""
    if len(a) != len(b):
        raise ValueError(f"length mismatch {len(a)} != {len(b)}")
    ra, rb = average_ranks(a), average_ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    den = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


# -- report ------------------------------------------------------------------------------------
@dataclass
class ScoreParity:
    name: str
    max_abs: float
    max_rel: float
    spearman: float
    auroc_ref: float | None = None
    auroc_cand: float | None = None

    @property
    def auroc_delta(self) -> float | None:
        if self.auroc_ref is None or self.auroc_cand is None:
            return None
        return self.auroc_cand - self.auroc_ref

    def problems(self) -> list[str]:
        out = []
        if not self.spearman >= SPEARMAN_MIN:  # NaN fails too
            out.append(f"{self.name}: Spearman {self.spearman:.5f} < {SPEARMAN_MIN}")
        d = self.auroc_delta
        if d is not None and abs(d) > AUROC_DELTA_MAX:
            out.append(f"{self.name}: |AUROC delta| {abs(d):.4f} > {AUROC_DELTA_MAX}")
        return out


@dataclass
class ParityReport:
    n_tiles: int
    n_items: int
    labelled: bool
    scores: list[ScoreParity] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [p for s in self.scores for p in s.problems()]

    @property
    def passed(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        head = f"{self.n_tiles} tiles" + (f", {self.n_items} labelled images" if self.labelled else "")
        out = [head, f"{'score':14s} {'max abs':>10s} {'max rel':>10s} {'spearman':>9s} {'AUROC ref':>10s} {'AUROC cand':>10s} {'delta':>8s}"]
        for s in self.scores:
            a = (f"{s.auroc_ref:10.4f} {s.auroc_cand:10.4f} {s.auroc_delta:+8.4f}"
                 if s.auroc_delta is not None else f"{'-':>10s} {'-':>10s} {'-':>8s}")
            out.append(f"{s.name:14s} {s.max_abs:10.3g} {s.max_rel:10.3g} {s.spearman:9.5f} {a}")
        out.append("PASS" if self.passed else "FAIL: " + "; ".join(self.problems))
        return out

    def to_json(self) -> dict[str, Any]:
        return {"n_tiles": self.n_tiles, "n_items": self.n_items, "labelled": self.labelled, "passed": self.passed,
                "problems": self.problems,
                "scores": [{**s.__dict__, "auroc_delta": s.auroc_delta} for s in self.scores],
                "limits": {"spearman_min": SPEARMAN_MIN, "auroc_delta_max": AUROC_DELTA_MAX}}


def compare(ref: dict[str, np.ndarray], cand: dict[str, np.ndarray], names: list[str],
            item_of_tile: np.ndarray | None = None, item_labels: np.ndarray | None = None) -> ParityReport:
    """Compare per-tile scores; with labels, AUROC per item (image) over its max tile score."""
    n = len(next(iter(ref.values())))
    labelled = item_labels is not None and item_of_tile is not None
    rep = ParityReport(n_tiles=n, n_items=len(item_labels) if labelled else n, labelled=labelled)
    for name in names:
        r = np.asarray(ref[name], np.float64)
        c = np.asarray(cand[name], np.float64)
        diff = np.abs(c - r)
        rel = diff / np.maximum(np.abs(r), 1e-12)
        sp = ScoreParity(name, float(diff.max(initial=0.0)), float(rel.max(initial=0.0)), spearman(r, c))
        if labelled:
            sp.auroc_ref = auroc(item_labels, _item_max(r, item_of_tile, len(item_labels)))
            sp.auroc_cand = auroc(item_labels, _item_max(c, item_of_tile, len(item_labels)))
        rep.scores.append(sp)
    return rep


def _item_max(scores: np.ndarray, item_of_tile: np.ndarray, n_items: int) -> np.ndarray:
    out = np.full(n_items, -np.inf)
    np.maximum.at(out, item_of_tile, scores)
    return out


# -- tiles ---------------------------------------------------------------------------------------
@dataclass
class TileSet:
    tiles: np.ndarray                       # uint8 [N, T, T, C]
    item_of_tile: np.ndarray | None = None  # int [N]: which labelled image each tile came from
    item_labels: np.ndarray | None = None   # int [M]: 0 good, 1 defect


def load_tiles(source: Path, tile_size: int, channels: int, labels: Path | None = None,
               max_tiles: int | None = None) -> TileSet:
    """Tiles to compare on: a `.npy` [N, T, T, C] (labels from `--labels F.npy|.txt`, one per
    tile); an MVTec-layout folder (its `test/` images tiled, labels from the folder names: good
    = 0, any defect = 1); or a scan (file, frame folder, synth output) cut by the pipeline's tiler."""
    from edge_inspect.acquisition.replay import read_uint8_npy
    from edge_inspect.datasets.images import IMAGE_SUFFIXES, image_tiles, read_image
    from edge_inspect.datasets.tiles import check_tiles

    source = Path(source)
    if not source.exists():
        raise InputDataError(f"{source}: tiles not found")
    if source.suffix.lower() == ".npy":
        ts = TileSet(check_tiles(read_uint8_npy(source), tile_size, channels))
        if labels is not None:
            lab = _read_labels(labels)
            if len(lab) != len(ts.tiles):
                raise InputDataError(f"{labels}: {len(lab)} labels for {len(ts.tiles)} tiles")
            ts.item_of_tile, ts.item_labels = np.arange(len(lab)), lab
    elif source.is_dir() and (source / "test").is_dir():
        files = sorted(p for p in (source / "test").rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputDataError(f"{source / 'test'}: holds no images")
        blocks, owner, lab = [], [], []
        for k, path in enumerate(files):
            t = image_tiles(read_image(path, channels), tile_size)[0]
            blocks.append(t)
            owner.append(np.full(len(t), k))
            lab.append(0 if path.parent.name == "good" else 1)
        ts = TileSet(np.ascontiguousarray(np.concatenate(blocks)), np.concatenate(owner), np.array(lab))
        if labels is not None:
            raise InputDataError("--labels is for .npy tiles; an MVTec folder's labels come from test/<class>/")
    else:
        from edge_inspect.acquisition.ground_truth import resolve_scan
        from edge_inspect.config import Config
        from edge_inspect.tiling.scan_tiles import iter_scan_tiles

        cfg = Config()
        cfg = cfg.model_copy(update={"tiling": cfg.tiling.model_copy(update={"tile_size": tile_size, "stride": tile_size})})
        blocks = [b for _, b in iter_scan_tiles(resolve_scan(source), cfg)]
        if not blocks:
            raise InputDataError(f"{source}: no boards found, so no tiles to compare (check tiling.segmenter)")
        ts = TileSet(check_tiles(np.concatenate(blocks), tile_size, channels))
    if max_tiles is not None and len(ts.tiles) > max_tiles and ts.item_labels is None:
        ts.tiles = ts.tiles[:max_tiles]
    if ts.item_labels is not None and len(set(ts.item_labels.tolist())) < 2:
        ts.item_of_tile = ts.item_labels = None  # one class only: no AUROC
    return ts


def _read_labels(path: Path) -> np.ndarray:
    try:
        lab = np.load(path) if Path(path).suffix == ".npy" else np.loadtxt(path, ndmin=1)
    except (OSError, ValueError) as exc:
        raise InputDataError(f"{path}: unreadable labels ({exc})") from None
    lab = np.asarray(lab).reshape(-1)
    if not np.isin(lab, (0, 1)).all():
        raise InputDataError(f"{path}: labels must be 0 (good) or 1 (defect)")
    return lab.astype(np.int64)


# -- models --------------------------------------------------------------------------------------
def open_model(path: Path, device: str | None = None) -> Any:
    """A backend for a model file by its kind: .onnx (ONNX Runtime), .plan/.engine (TensorRT),
    .pt (torch checkpoint; CUDA FP16 when available, else CPU FP32)."""
    from edge_inspect.inference.registry import create_backend

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from edge_inspect.config import OnnxRuntimeBackendConfig

        return create_backend(OnnxRuntimeBackendConfig(model=path))
    if suffix in (".plan", ".engine"):
        from edge_inspect.config import TensorRTBackendConfig

        idx = int(device.split(":")[1]) if device and ":" in device else 0
        return create_backend(TensorRTBackendConfig(type="tensorrt", engine=path, device=idx))
    if suffix == ".pt":
        from edge_inspect.config import TorchBackendConfig

        if device is None:
            try:
                import torch

                device = "cuda:0" if torch.cuda.is_available() else "cpu"
            except ImportError:
                device = "cpu"
        return create_backend(TorchBackendConfig(type="torch", model=path, device=device))
    raise InputDataError(f"{path}: unknown model kind {suffix!r} (.onnx, .plan/.engine or .pt)")


def score_all(backend: Any, tiles: np.ndarray, batch: int = 32, bar: Progress | None = None) -> dict[str, np.ndarray]:
    parts = []
    for i in range(0, len(tiles), batch):
        chunk = np.ascontiguousarray(tiles[i:i + batch])
        parts.append(backend.score(chunk))
        if bar is not None:
            bar.update(len(chunk))
    return {n: np.concatenate([p[n] for p in parts]) for n in backend.score_names}


def run_parity(reference: Path, candidate: Path, tiles: Path, labels: Path | None = None,
               score: str | None = None, device: str | None = None, max_tiles: int | None = None) -> ParityReport:
    """Score the same tiles with both models and compare every common score (or `score`)."""
    ref = open_model(reference, "cpu" if Path(reference).suffix == ".pt" else None)
    try:
        cand = open_model(candidate, device)
        try:
            if (ref.tile_size, ref.channels) != (cand.tile_size, cand.channels):
                raise InputDataError(
                    f"reference takes {ref.tile_size}px {ref.channels}-channel tiles, the candidate "
                    f"{cand.tile_size}px {cand.channels}-channel")
            names = [n for n in ref.score_names if n in cand.score_names]
            if score is not None:
                if score not in names:
                    raise InputDataError(f"score {score!r} is not an output of both models ({', '.join(names)})")
                names = [score]
            if not names:
                raise InputDataError("the models have no score in common")
            ts = load_tiles(tiles, ref.tile_size, ref.channels, labels, max_tiles)
            with Progress("parity", total=2 * len(ts.tiles), unit="tiles") as bar:
                bar.note("reference")
                ref_scores = score_all(ref, ts.tiles, bar=bar)
                bar.note("candidate")
                cand_scores = score_all(cand, ts.tiles, bar=bar)
            return compare(ref_scores, cand_scores, names, ts.item_of_tile, ts.item_labels)
        finally:
            cand.close()
    finally:
        ref.close()
