"""`replay --report DIR`: one self-contained report.html (board pictures inline as base64 JPEG, the
histogram as inline SVG; no script, no network) that shows an operator what a replay decided
and why: a summary, the comparison with the ground truth where `synth` left one (per defect
type and size), the board-score histogram with the threshold, and a gallery of the rejected
boards and of the accepted boards closest to the threshold, each drawn by
`board_view.render_board`.

Memory stays bounded on long scans: board pictures are kept only for the first
`max_rejects` rejects and the `near_threshold` highest-scoring accepted boards (JPEG-encoded
when a board is decided); every board adds only its score to the histogram."""

from __future__ import annotations

import base64
import heapq
import html
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import count
from pathlib import Path
from typing import Protocol

import numpy as np

from edge_inspect.acquisition.ground_truth import SIZE_CLASSES, TruthComparison
from edge_inspect.atomic import write_atomic
from edge_inspect.decision.calibration_file import Calibration
from edge_inspect.decision.verdict import Verdict
from edge_inspect.monitoring.board_view import (
    BoardPicture,
    encoded,
    render_board,
    scan_label,
)

MAX_WIDTH = 512  # px of a board picture's board part


@dataclass
class Card:
    """One board of the gallery."""

    scan: str
    board_id: int
    start_line: int
    end_line: int
    score: float
    verdict: str
    reasons: list[str]
    jpeg: bytes


class ScanCounts(Protocol):
    """What the report reads of a scan's PipelineStats."""

    boards: int
    rejects: int
    incomplete: int
    tiles: int
    dropped_strips: int
    lines_lost: int
    wall_s: float

    @property
    def tiles_per_s(self) -> float: ...


@dataclass
class ScanResult:
    """A replayed scan's counts and its ground-truth comparison, if any."""

    label: str
    stats: ScanCounts
    truth: TruthComparison | None = None
    truth_file: str | None = None


@dataclass
class ReportCollector:
    """The pipeline observer that gathers what the report shows (decision thread only)."""

    calibration: Calibration
    tile_size: int
    max_rejects: int = 48
    near_threshold: int = 6
    scans: list[ScanResult] = field(default_factory=list)
    scores: list[tuple[float, bool]] = field(default_factory=list)  # (board score, rejected)
    rejects: list[Card] = field(default_factory=list)
    rejects_not_shown: int = 0
    _near: list[tuple[float, int, Card]] = field(default_factory=list)  # min-heap on score
    _order: count = field(default_factory=count)
    _label: str = ""
    _truth_defects: list[dict] = field(default_factory=list)

    def image_scale(self, width: int) -> int:
        """Every k-th line and column: board pictures at most MAX_WIDTH px wide."""
        return max(1, -(-width // MAX_WIDTH))

    def begin_scan(self, scan: Path, truth: dict | None) -> None:
        self._label = scan_label(scan)
        self._truth_defects = [d for b in truth["boards"] for d in b.get("defects", [])] if truth else []

    def end_scan(self, scan: Path, stats: ScanCounts, truth: TruthComparison | None, truth_file: Path | None) -> None:
        self.scans.append(ScanResult(scan_label(scan), stats, truth, str(truth_file) if truth_file else None))

    # -- PipelineObserver hooks ------------------------------------------------------------
    def batch_scored(self, n_tiles: int, seconds: float) -> None:
        """Not shown in the report."""

    def verdict(self, v: Verdict, t_last_line_ns: int | None) -> None:
        if math.isfinite(v.score):
            self.scores.append((v.score, v.verdict == "reject"))

    def board_image(self, v: Verdict, image: np.ndarray, scale: int) -> None:
        if v.verdict == "reject":
            if len(self.rejects) >= self.max_rejects:
                self.rejects_not_shown += 1
                return
            self.rejects.append(self._card(v, image, scale))
        elif math.isfinite(v.score) and self.near_threshold > 0:
            if len(self._near) < self.near_threshold:
                heapq.heappush(self._near, (v.score, next(self._order), self._card(v, image, scale)))
            elif v.score > self._near[0][0]:
                heapq.heapreplace(self._near, (v.score, next(self._order), self._card(v, image, scale)))

    def _card(self, v: Verdict, image: np.ndarray, scale: int) -> Card:
        pic = BoardPicture.from_verdict(v, self.calibration.tile_threshold, self.tile_size, self._label)
        pic.truth = [dict(d, y=d["y"] - v.start_line) for d in self._truth_defects
                     if v.start_line <= d["y"] < v.end_line]
        return Card(self._label, v.board_id, v.start_line, v.end_line, v.score, v.verdict, list(v.reasons),
                    encoded(render_board(pic, image, scale), ".jpg"))

    @property
    def near(self) -> list[Card]:
        """Accepted boards closest to the threshold, highest score first."""
        return [c for _, _, c in sorted(self._near, key=lambda e: (-e[0], e[1]))]


# -- the page ------------------------------------------------------------------------------
_CSS = """
body{font-family:sans-serif;margin:1em auto;max-width:76em;color:#222}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:1em}
figure{margin:0;border:1px solid #ddd;padding:.4em;background:#fafafa}
figure img{width:100%;height:auto;display:block}
figcaption{font-size:.85em;margin-top:.3em}
.reject{color:#b00;font-weight:bold} .accept{color:#070;font-weight:bold}
.legend span{display:inline-block;width:1.2em;height:.8em;vertical-align:middle;margin:0 .3em 0 1em;border:2px solid}
"""


def _e(x: object) -> str:
    return html.escape(str(x))


def _board_limit(cal: Calibration) -> tuple[float, str]:
    """Where the histogram's line goes, on the board-score scale, and what it means."""
    if cal.board_rule.type == "count":
        return cal.board_rule.min_count - 0.5, f"reject at {cal.board_rule.min_count} tiles over"
    return cal.tile_threshold, f"threshold {cal.tile_threshold:.4f}"


def histogram_svg(scores: list[tuple[float, bool]], limit: float, limit_label: str, x_label: str,
                  width: int = 720, height: int = 260, bins: int = 30) -> str:
    """Board scores as a stacked histogram (accepted green, rejected red) with the threshold."""
    ml, mr, mt, mb = 48, 16, 24, 40
    pw, ph = width - ml - mr, height - mt - mb
    vals = np.array([s for s, _ in scores], np.float64)
    rej = np.array([r for _, r in scores], bool)
    lo = float(min(vals.min(), limit)) if vals.size else 0.0
    hi = float(max(vals.max(), limit)) if vals.size else 1.0
    lo, hi = (lo - 0.5, hi + 0.5) if hi <= lo else (lo - 0.02 * (hi - lo), hi + 0.02 * (hi - lo))
    edges = np.linspace(lo, hi, bins + 1)
    acc_n = np.histogram(vals[~rej], edges)[0]
    rej_n = np.histogram(vals[rej], edges)[0]
    top = max(1, int((acc_n + rej_n).max()) if vals.size else 1)

    def x(v: float) -> float:
        return ml + (v - lo) / (hi - lo) * pw

    def y(n: float) -> float:
        return mt + ph - n / top * ph

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="board score histogram">',
             f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="#fff" stroke="#999"/>']
    bw = pw / bins
    for i in range(bins):
        x0 = ml + i * bw
        if acc_n[i]:
            parts.append(f'<rect x="{x0:.1f}" y="{y(acc_n[i]):.1f}" width="{bw - 1:.1f}" '
                         f'height="{y(0) - y(acc_n[i]):.1f}" fill="#3a3"/>')
        if rej_n[i]:
            parts.append(f'<rect x="{x0:.1f}" y="{y(acc_n[i] + rej_n[i]):.1f}" width="{bw - 1:.1f}" '
                         f'height="{y(acc_n[i]) - y(acc_n[i] + rej_n[i]):.1f}" fill="#c33"/>')
    for v in np.linspace(lo, hi, 5):
        parts.append(f'<text x="{x(v):.1f}" y="{mt + ph + 16}" font-size="11" text-anchor="middle">{v:.3g}</text>')
    parts.append(f'<text x="{ml - 6}" y="{mt + 10}" font-size="11" text-anchor="end">{top}</text>'
                 f'<text x="{ml - 6}" y="{mt + ph}" font-size="11" text-anchor="end">0</text>'
                 f'<text x="{ml + pw / 2:.0f}" y="{height - 6}" font-size="12" text-anchor="middle">{_e(x_label)}</text>'
                 f'<text x="12" y="{mt + ph / 2:.0f}" font-size="12" text-anchor="middle" '
                 f'transform="rotate(-90 12 {mt + ph / 2:.0f})">boards</text>')
    xt = x(limit)
    parts.append(f'<line x1="{xt:.1f}" y1="{mt - 4}" x2="{xt:.1f}" y2="{mt + ph}" stroke="#000" '
                 f'stroke-width="2" stroke-dasharray="6 3"/>'
                 f'<text x="{xt + 4:.1f}" y="{mt - 8}" font-size="12">{_e(limit_label)}</text>')
    legend_x = ml + pw - 150
    parts.append(f'<rect x="{legend_x}" y="{mt + 8}" width="10" height="10" fill="#3a3"/>'
                 f'<text x="{legend_x + 14}" y="{mt + 17}" font-size="11">accepted ({int((~rej).sum())})</text>'
                 f'<rect x="{legend_x}" y="{mt + 24}" width="10" height="10" fill="#c33"/>'
                 f'<text x="{legend_x + 14}" y="{mt + 33}" font-size="11">rejected ({int(rej.sum())})</text>')
    parts.append("</svg>")
    return "".join(parts)


def _summary_table(scans: list[ScanResult]) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("scan", "boards", "rejects", "incomplete", "tiles", "tiles/s",
                                             "dropped strips", "lost lines"))
    rows = []
    for s in scans:
        st = s.stats
        rows.append(f"<tr><td>{_e(s.label)}</td><td>{st.boards}</td><td>{st.rejects}</td><td>{st.incomplete}</td>"
                    f"<td>{st.tiles}</td><td>{st.tiles_per_s:.1f}</td><td>{st.dropped_strips}</td>"
                    f"<td>{st.lines_lost}</td></tr>")
    if len(scans) > 1:
        tot = [sum(getattr(s.stats, k) for s in scans) for k in ("boards", "rejects", "incomplete", "tiles",
                                                                   "dropped_strips", "lines_lost")]
        wall = sum(s.stats.wall_s for s in scans)
        rows.append(f"<tr><th>all</th><th>{tot[0]}</th><th>{tot[1]}</th><th>{tot[2]}</th><th>{tot[3]}</th>"
                    f"<th>{tot[3] / wall if wall else 0:.1f}</th><th>{tot[4]}</th><th>{tot[5]}</th></tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _truth_section(s: ScanResult) -> str:
    c = s.truth
    head = (f"<h3>{_e(s.label)} <small>({_e(s.truth_file)})</small></h3>"
            f"<p>Defective boards rejected <b>{c.defective_rejected}/{c.defective}</b> (with a defect of at least "
            f"20x20 px: {c.large_defective_rejected}/{c.large_defective}); good boards rejected "
            f"<b>{c.good_rejected}/{c.good}</b>; boards without a verdict {len(c.missed_boards)}.</p>")
    if not c.by_type:
        return head
    sizes = [label for _, label in SIZE_CLASSES]
    cols = "".join(f"<th>{_e(x)}</th>" for x in sizes)
    rows = []
    for kind in sorted(c.by_type):
        cells = []
        for size in sizes + ["all"]:
            tallies = list(c.by_type[kind].values()) if size == "all" else [c.by_type[kind].get(size)]
            tallies = [t for t in tallies if t is not None]
            n = sum(t.defects for t in tallies)
            if not n:
                cells.append("<td>-</td>")
                continue
            rej, loc = sum(t.board_rejected for t in tallies), sum(t.located for t in tallies)
            cells.append(f"<td>{rej}/{n} <small>(located {loc})</small></td>")
        rows.append(f"<tr><td>{_e(kind)}</td>{''.join(cells)}</tr>")
    return (head + "<table><tr><th>defect type</th>" + cols + "<th>all sizes</th></tr>" + "".join(rows)
            + "</table><p><small>Each cell: defects whose board was rejected / defects of that type and size "
              "(the smaller side of its box); located: a reported region (tiles over the threshold) overlaps "
              "the defect.</small></p>")


def _figure(c: Card) -> str:
    fate = "reject" if c.verdict == "reject" else "accept"
    score = f"{c.score:.4f}" if math.isfinite(c.score) else "n/a"
    reasons = "; ".join(c.reasons) or "no tile over the threshold"
    b64 = base64.b64encode(c.jpeg).decode("ascii")
    return (f'<figure><img alt="board {c.board_id} of {_e(c.scan)} with tile-score heatmap" '
            f'src="data:image/jpeg;base64,{b64}"><figcaption><b>board {c.board_id}</b> &middot; {_e(c.scan)} '
            f'lines {c.start_line}-{c.end_line} &middot; score {score} &middot; <span class="{fate}">'
            f'{fate.upper()}</span><br>{_e(reasons)}</figcaption></figure>')


def write_replay_report(out_dir: Path, col: ReportCollector, model: str, model_sha256: str) -> Path:
    """report.html in `out_dir` (created); returns its path."""
    cal = col.calibration
    scans = col.scans
    limit, limit_label = _board_limit(cal)
    rule = cal.board_rule.type + (f" (k {cal.board_rule.k})" if cal.board_rule.type == "topk_mean" else "")
    boards = sum(s.stats.boards for s in scans)
    rejects = sum(s.stats.rejects for s in scans)
    incomplete = sum(s.stats.incomplete for s in scans)
    wall = sum(s.stats.wall_s for s in scans)
    tiles_s = sum(s.stats.tiles for s in scans) / wall if wall else 0.0
    truths = [s for s in scans if s.truth is not None]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    more = (f"<p>{col.rejects_not_shown} further rejected boards are not drawn here (the report keeps the first "
            f"{col.max_rejects}); every board is in boards.jsonl.</p>" if col.rejects_not_shown else "")
    x_label = ("tiles over the threshold per board" if cal.board_rule.type == "count"
               else f"board score ({cal.score}, {cal.board_rule.type})")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edge-inspect replay report</title>
<style>{_CSS}</style></head><body>
<h1>Replay report</h1>
<p><b>{boards}</b> boards, <b class="reject">{rejects}</b> rejected ({incomplete} incomplete), {tiles_s:.1f} tiles/s.
Model <code>{_e(model)}</code> (sha256 {_e(model_sha256[:12])}); calibration <b>{_e(cal.version)}</b>:
score {_e(cal.score)}, tile threshold {cal.tile_threshold:.4f}, board rule {_e(rule)}. Made {now}.</p>
{_summary_table(scans)}
{'<h2>Ground truth</h2>' + ''.join(_truth_section(s) for s in truths) if truths else ''}
<h2>Board scores</h2>
{histogram_svg(col.scores, limit, limit_label, x_label)}
<h2>How to read a board</h2>
<p class="legend">Tile scores as heat colours over the board: blue is far below the threshold, green-yellow
near it, red twice it or more (the colour bar under each board, threshold marked, the worst tile as a
triangle).<span style="border-color:#fff;background:#888"></span>tile over the threshold
<span style="border-color:#f0f"></span>region reported as a defect
<span style="border-color:#0c0"></span>known defect (synthetic ground truth)</p>
<h2>Rejected boards ({rejects})</h2>
{more}<div class="gallery">{''.join(_figure(c) for c in col.rejects) or '<p>none</p>'}</div>
<h2>Accepted boards closest to the threshold</h2>
<div class="gallery">{''.join(_figure(c) for c in col.near) or '<p>none</p>'}</div>
</body></html>
"""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.html"
    write_atomic(path, page)
    return path
