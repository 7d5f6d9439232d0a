"""Detection metrics in plain numpy, so they run (and are checked) without sklearn or torch.

Conventions: a higher score means more anomalous; label 1 = defect. Ties are handled exactly
(ROC and PR curves step over all samples of one score at once).
"""

from __future__ import annotations

import numpy as np

__all__ = ["roc_curve", "auroc", "average_precision", "f1_max", "f1_at", "iou_at"]


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in size ({y.size} vs {s.size})")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    return y, s


def _counts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds descending, TP, FP) for 'predict defect when score >= threshold'."""
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last index of each distinct score
    tp = np.cumsum(y)[last]
    fp = np.cumsum(~y)[last]
    return s[last], tp, fp


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(FPR, TPR, thresholds), starting at (0, 0) with threshold +inf."""
    y, s = _check(labels, scores)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        raise ValueError("ROC needs both good and defect samples")
    thr, tp, fp = _counts(y, s)
    return np.r_[0.0, fp / neg], np.r_[0.0, tp / pos], np.r_[np.inf, thr]


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (trapezoids; ties count one half)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """AUPR as average precision: sum over thresholds of (recall step) x precision."""
    y, s = _check(labels, scores)
    pos = int(y.sum())
    if pos == 0:
        raise ValueError("AUPR needs defect samples")
    _, tp, fp = _counts(y, s)
    recall = tp / pos
    precision = tp / (tp + fp)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def f1_max(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """(best F1 over all thresholds, the threshold reaching it) — an optimistic upper bound,
    since the threshold is chosen on the test labels."""
    y, s = _check(labels, scores)
    pos = int(y.sum())
    if pos == 0:
        raise ValueError("F1 needs defect samples")
    thr, tp, fp = _counts(y, s)
    f1 = 2 * tp / (pos + tp + fp)
    i = int(np.argmax(f1))
    return float(f1[i]), float(thr[i])


def f1_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    """F1 when a sample is called defect at score >= threshold (e.g. the validation threshold)."""
    y, s = _check(labels, scores)
    pred = s >= threshold
    tp = int(np.sum(pred & y))
    denom = int(y.sum()) + int(pred.sum())
    return 2 * tp / denom if denom else 1.0


def iou_at(mask: np.ndarray, amap: np.ndarray, threshold: float) -> float:
    """Intersection over union of the defect mask and the map thresholded at ``threshold``
    (1.0 when both are empty)."""
    m = np.asarray(mask).astype(bool)
    p = np.asarray(amap) >= threshold
    if m.shape != p.shape:
        raise ValueError(f"mask {m.shape} and map {p.shape} differ in shape")
    union = int(np.sum(m | p))
    return int(np.sum(m & p)) / union if union else 1.0
