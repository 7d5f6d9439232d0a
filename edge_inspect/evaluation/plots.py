"""PNG plots of an evaluation, so a number like "AUROC 0.91" can be checked by eye: ROC curves
of every score, good-vs-defect histograms with the validation threshold, and the worst cases
(highest-scoring good images, lowest-scoring defects) with their pixel maps over the image."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge_inspect.evaluation.metrics import roc_curve
from edge_inspect.evaluation.report import EvalReport

__all__ = ["write_plots"]

Render = Callable[[int], tuple[np.ndarray, np.ndarray, "np.ndarray | None"]]


def _pyplot():
    """matplotlib only when plots are asked for, always headless."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _roc(report: EvalReport, path: Path) -> None:
    plt = _pyplot()
    labels = np.array([it.label for it in report.items])
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=100)
    for name, s in report.scores.items():
        fpr, tpr, _ = roc_curve(labels, s)
        ax.plot(fpr, tpr, lw=1.5, label=f"{name} ({report.doc['scores'][name]['auroc']:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
    ax.set_xlabel("false positive rate (good images flagged)")
    ax.set_ylabel("true positive rate (defects found)")
    ax.set_title("image-level ROC")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _histograms(report: EvalReport, thresholds: dict[str, float], path: Path) -> None:
    plt = _pyplot()
    labels = np.array([it.label for it in report.items])
    names = list(report.scores)
    fig, axes = plt.subplots(len(names), 1, figsize=(8, 2.6 * len(names)), dpi=100, squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        s = report.scores[name]
        thr = thresholds[name]
        lo, hi = float(min(s.min(), thr)), float(max(s.max(), thr))
        bins = np.linspace(lo, hi, 41) if hi > lo else 10
        ax.hist(s[labels == 0], bins=bins, alpha=0.7, color="tab:green", label=f"good ({int(np.sum(labels == 0))})")
        ax.hist(s[labels == 1], bins=bins, alpha=0.6, color="tab:red", label=f"defect ({int(np.sum(labels == 1))})")
        ax.axvline(thr, color="black", lw=1.5, label=f"validation threshold {thr:.4g}")
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=8)
    axes[-1, 0].set_xlabel("image score (max over tiles)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _worst(report: EvalReport, render: Render, good: list[int], bad: list[int], map_thr: float | None,
           path: Path) -> None:
    plt = _pyplot()
    rows = [("good, scored highest", good), ("defect, scored lowest", bad)]
    cols = max(len(good), len(bad), 1)
    fig, axes = plt.subplots(2, cols, figsize=(3.2 * cols, 7), dpi=100, squeeze=False)
    rendered = {i: render(i) for i in good + bad}
    top = max([float(np.max(m)) for _, m, _ in rendered.values()] + [map_thr or 0.0, 1e-9])
    decision = report.doc["decision_score"]
    for r, (title, idx) in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.axis("off")
            if c >= len(idx):
                continue
            i = idx[c]
            view, amap, mask = rendered[i]
            ax.imshow(view[..., 0] if view.shape[2] == 1 else view, cmap="gray", vmin=0, vmax=255)
            ax.imshow(amap, cmap="jet", alpha=0.45, vmin=0.0, vmax=top)  # one scale for all panels
            if map_thr is not None and float(amap.max()) >= map_thr:
                ax.contour(amap >= map_thr, levels=[0.5], colors="white", linewidths=1.0)
            if mask is not None and mask.any():
                ax.contour(mask, levels=[0.5], colors="lime", linewidths=1.0)
            it = report.items[i]
            ax.set_title(f"{it.defect_type}/{it.path.name}\n{decision} {report.scores[decision][i]:.4g}", fontsize=8)
        axes[r, 0].text(-0.08, 0.5, title, rotation=90, va="center", ha="right", transform=axes[r, 0].transAxes)
    fig.suptitle("worst cases: pixel map over the image (white: map over the validation threshold; "
                 "green: ground truth)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_plots(report: EvalReport, out: Path, render: Render, good: list[int], bad: list[int],
                thresholds: dict[str, float], map_thr: float | None) -> list[Path]:
    """Write ``roc.png``, ``histograms.png`` and ``worst_cases.png`` into ``out``; their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "roc.png", out / "histograms.png", out / "worst_cases.png"]
    _roc(report, paths[0])
    _histograms(report, thresholds, paths[1])
    _worst(report, render, good, bad, map_thr, paths[2])
    return paths
