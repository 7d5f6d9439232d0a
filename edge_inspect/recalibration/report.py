"""The calibration report: histograms with both thresholds, and the worst good boards with their
tile heatmaps (drawn as every board is, by monitoring/board_view.py), so an operator sees what
the new threshold will do before applying it. PNG files plus one self-contained HTML page
(images embedded as base64)."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import cv2
import numpy as np
import structlog

from edge_inspect.atomic import write_atomic
from edge_inspect.monitoring.board_view import (
    BoardPicture,
    encoded,
    montage,
    render_board,
    scan_label,
)
from edge_inspect.recalibration.proposal import (
    Proposal,
    false_reject_statement,
    summary_lines,
    target_words,
)
from edge_inspect.recalibration.scoring import BoardScores, board_pixels

log = structlog.get_logger(__name__)

WORST_BOARDS = 4
BOARD_WIDTH = 400  # px of a board in the worst-boards figure


def _pyplot():
    """matplotlib only when a report is drawn, always headless (a line PC has no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _rule_label(p: Proposal) -> str:
    r = p.rule
    if r.type == "topk_mean":
        return f"mean of the {r.k} worst tiles"
    if r.type == "count":
        return f"{r.min_count}-th worst tile (count rule)"
    return "worst tile"


def histogram_png(p: Proposal, path: Path) -> None:
    plt = _pyplot()
    good = p.good_stats[np.isfinite(p.good_stats)]
    defect = p.defect_stats[np.isfinite(p.defect_stats)]
    values = np.concatenate([good, defect, [p.choice.threshold]])
    cur = p.current.tile_threshold if p.current is not None and p.current_good_rejects is not None else None
    if cur is not None and np.isfinite(cur):
        values = np.append(values, cur)
    bins = np.linspace(values.min(), values.max(), 41) if values.max() > values.min() else 10
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=100)
    ax.hist(good, bins=bins, alpha=0.7, color="tab:green", label=f"good boards ({good.size})")
    if defect.size:
        ax.hist(defect, bins=bins, alpha=0.6, color="tab:red", label=f"defect boards ({defect.size})")
    if cur is not None and np.isfinite(cur):
        ax.axvline(cur, color="grey", ls="--", lw=2, label=f"current {cur:.4f}")
    ax.axvline(p.choice.threshold, color="black", lw=2, label=f"proposed {p.choice.threshold:.4f}")
    ch = p.choice
    title = (f"Proposed: false rejects {100 * ch.expected_frr:.1f} % (at most {100 * ch.frr_upper95:.1f} % "
             f"at 95 %)")
    if p.detection is not None:
        title += f", detection {100 * p.detection:.1f} % ({p.caught}/{len(p.defect)})"
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(f"board score: {p.calibration.score}, {_rule_label(p)}")
    ax.set_ylabel("boards")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _board_image(b: BoardScores) -> tuple[np.ndarray, int] | None:
    """The board's lines from its scan, downscaled to at most BOARD_WIDTH px wide, and the factor."""
    try:
        px = board_pixels(b.scan, b.start_line, b.end_line)
    except Exception as exc:  # a report must not fail the calibration over a picture
        log.warning("board_crop_failed", scan=str(b.scan), board=b.board_id, error=str(exc))
        return None
    if px is None or px.size == 0:
        return None
    h, w = px.shape[:2]
    f = max(1, -(-w // BOARD_WIDTH))
    small = cv2.resize(px, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
    return small.reshape(small.shape[0], small.shape[1], px.shape[2]), f


def worst_boards_png(p: Proposal, path: Path, tile_size: int, n: int = WORST_BOARDS) -> list[BoardScores]:
    """The good boards closest to (or over) the proposed threshold, drawn as every board is
    (monitoring/board_view.py): the ones an operator should look at to judge whether they are
    really good."""
    order = np.argsort(-np.nan_to_num(p.good_stats, nan=-np.inf))[:n]
    worst = [p.good[i] for i in order]
    thr = p.choice.threshold
    pictures = []
    for b, i in zip(worst, order):
        stat = float(p.good_stats[i])
        fate = "reject" if stat > thr else "accept"
        why = [f"{_rule_label(p)} {stat:.4f} > proposed threshold {thr:.4f}"] if fate == "reject" else []
        pic = BoardPicture(b.board_id, b.start_line, b.end_line, stat, thr, fate, why, b.xs, b.ys,
                           b.tile_scores, tile_size, source=scan_label(b.scan))
        board = _board_image(b)
        image, scale = board if board is not None else (np.zeros((1, 1, 1), np.uint8), 1)
        pictures.append(render_board(pic, image, scale))
    write_atomic(path, encoded(montage(pictures, columns=2)))
    return worst


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def write_report(p: Proposal, out_dir: Path, tile_size: int) -> Path:
    """Write report.png, worst_boards.png, report.html and summary.json; return the HTML path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    hist = out_dir / "report.png"
    worst_png = out_dir / "worst_boards.png"
    histogram_png(p, hist)
    worst = worst_boards_png(p, worst_png, tile_size) if p.good else []
    cal = p.calibration
    rows = "".join(
        f"<tr><td>{html.escape(str(b.scan))}</td><td>{b.board_id}</td><td>{b.start_line}-{b.end_line}</td>"
        f"<td>{b.tile_scores.size}</td><td>{float(b.tile_scores.max()):.4f}</td></tr>" for b in worst
    )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>edge-inspect calibration {html.escape(cal.version)}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:1em auto}} pre{{background:#f4f4f4;padding:.5em}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:.2em .5em}}</style></head><body>
<h1>Calibration proposal {html.escape(cal.version)}</h1>
<pre>{html.escape(chr(10).join(summary_lines(p)))}</pre>
<h2>False rejects</h2>
<p>{html.escape(false_reject_statement(p))} Boards unlike these (another wood, other lighting) are not covered:
calibrate on scans from several days, and watch the drift alarm.</p>
<p>Model {html.escape(cal.model or '?')}, score <b>{html.escape(cal.score)}</b>, board rule
<b>{html.escape(p.rule.type)}</b>, target false-reject rate {html.escape(target_words(cal.target_frr or 0.0, cal.target_rule))}.</p>
<img alt="board score histogram" src="data:image/png;base64,{_b64(hist)}">
<h2>Worst good boards</h2>
<p>The good boards that score highest, with their tile scores as heat colours against the proposed threshold
(the middle of the colour bar; tiles over it framed in white). If one of them shows a real defect, remove its
scan from the good data and calibrate again.</p>
<table><tr><th>scan</th><th>board</th><th>lines</th><th>tiles</th><th>worst tile</th></tr>{rows}</table>
{f'<img alt="worst good boards" src="data:image/png;base64,{_b64(worst_png)}">' if worst else ''}
<h2>Data</h2><p>{html.escape(cal.source)}</p>
</body></html>
"""
    page_path = out_dir / "report.html"
    page_path.write_text(page, encoding="utf-8")
    summary = {
        "calibration": cal.model_dump(mode="json"),
        "good_board_scores": [float(x) if np.isfinite(x) else None for x in p.good_stats],
        "defect_board_scores": [float(x) if np.isfinite(x) else None for x in p.defect_stats],
        "exceedances": p.choice.exceedances, "allowed": p.choice.allowed,
        "frr_upper95": p.choice.frr_upper95, "caught": p.caught,
        "current_good_rejects": p.current_good_rejects,
        "false_rejects": {
            "good_boards": p.choice.n, "rejected": p.choice.exceedances,
            "measured_rate": p.choice.expected_frr, "upper_bound": p.choice.frr_upper95,
            "bound": "one-sided 95 % Clopper-Pearson upper bound",
            "optimistic": bool(p.optimistic), "statement": false_reject_statement(p),
            "per_scan": [{"scan": str(r.scan), "good_boards": r.boards, "rejected": r.rejected,
                          "measured_rate": r.rate, "upper_bound": r.upper_bound} for r in p.per_scan],
            "unlike_scans": [str(r.scan) for r in p.unlike_scans],
        },
        "training_scans": [str(s) for s in p.training_scans],
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    log.info("calibration_report", path=str(page_path))
    return page_path
