"""Board scores of recorded scans, made by the same Pipeline as `replay` and `run`, so the
numbers calibrated on are exactly the numbers the line will decide on."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np
import structlog

from edge_inspect.acquisition.factory import open_scan
from edge_inspect.acquisition.ground_truth import load_truth, truth_path_for
from edge_inspect.acquisition.recording import RecordingSource, is_recording
from edge_inspect.acquisition.replay import read_scan_image, scan_files
from edge_inspect.config import Config
from edge_inspect.decision.calibration_file import BoardRule, Calibration
from edge_inspect.decision.verdict import Verdict
from edge_inspect.errors import InputDataError
from edge_inspect.inference.base import Backend
from edge_inspect.monitoring.board_view import scan_label
from edge_inspect.pipeline import Pipeline, check_fit
from edge_inspect.progress import Progress

log = structlog.get_logger(__name__)


@dataclass
class BoardScores:
    """One board's tile scores and where its tiles lie (for the report's heatmaps)."""

    scan: Path
    board_id: int
    start_line: int
    end_line: int
    tile_scores: np.ndarray
    xs: np.ndarray      # tile positions in board pixels (TileMeta.x, .y)
    ys: np.ndarray
    incomplete: bool
    defective: bool | None = None  # from a ground_truth.json beside the scan, else unknown


@dataclass
class ScanScores:
    scan: Path
    boards: list[BoardScores] = field(default_factory=list)
    truth: Path | None = None

    @property
    def complete(self) -> list[BoardScores]:
        return [b for b in self.boards if not b.incomplete]


def provisional_calibration(score: str, rule: BoardRule) -> Calibration:
    """Infinite threshold: every board is accepted, only the scores matter here."""
    now = datetime.now(timezone.utc)
    return Calibration(version="calibrating", created=now.isoformat(timespec="seconds"), model=None,
                       score=score, tile_threshold=math.inf, board_rule=rule)


def score_scan(cfg: Config, backend: Backend, cal: Calibration, scan: Path) -> ScanScores:
    """One scan (a file, a folder of frames or a recording) on its own: its boards end with it."""
    source = open_scan(scan, cfg)
    check_fit(backend, cfg.tiling.tile_size, str(scan), source.width, source.channels, InputDataError)
    verdicts: list[Verdict] = []
    pipe = Pipeline(cfg, source, backend, cal, verdicts.append, source.width, source.channels)
    with Progress(f"scoring {scan_label(scan)}", total=source.total_lines, unit="lines") as bar:
        stats = pipe.run(tick=lambda st: bar.set(st.lines_decided))
    if stats.error:
        raise InputDataError(f"{scan}: {stats.error}")
    out = ScanScores(scan=scan, truth=truth_path_for(scan))
    for v in sorted(verdicts, key=lambda v: v.start_line):
        out.boards.append(BoardScores(
            scan=scan, board_id=v.board_id, start_line=v.start_line, end_line=v.end_line,
            tile_scores=np.asarray(v.tile_scores, np.float32),
            xs=np.array([m.x for m in v.tile_metas], np.int64),
            ys=np.array([m.y for m in v.tile_metas], np.int64),
            incomplete=v.incomplete,
        ))
    if out.truth is not None:
        _label_from_truth(out, load_truth(out.truth))
    log.info("scan_scored", scan=str(scan), boards=len(out.boards), incomplete=len(out.boards) - len(out.complete),
             tiles=stats.tiles, seconds=round(stats.wall_s, 2))
    return out


def _label_from_truth(scan: ScanScores, truth: dict) -> None:
    """Each board takes the label of the truth board it overlaps most in lines."""
    for b in scan.boards:
        best, best_overlap = None, 0
        for tb in truth["boards"]:
            overlap = min(b.end_line, tb["end_line"]) - max(b.start_line, tb["start_line"])
            if overlap > best_overlap:
                best, best_overlap = tb, overlap
        if best is not None:
            b.defective = bool(best.get("defects"))


def record_models(records: Path) -> dict[str, int]:
    """Model prefixes in a board-records file, with how many boards each scored."""
    counts: dict[str, int] = {}
    try:
        lines = records.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputDataError(f"{records}: cannot read board records ({exc})") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            model = json.loads(line).get("model")
        except (ValueError, AttributeError):
            raise InputDataError(f"{records}:{i}: not a board record (JSON object per line)") from None
        if model:
            counts[str(model)] = counts.get(str(model), 0) + 1
    if not counts:
        raise InputDataError(f"{records}: no board records with a model field")
    return counts


def check_records_model(records: Path, model_sha256: str) -> None:
    """Scores from another model are on another scale: a threshold from them is meaningless."""
    others = {m: c for m, c in record_models(records).items() if not model_sha256.startswith(m)}
    if others:
        listed = ", ".join(f"{m[:12]} ({c} boards)" for m, c in sorted(others.items()))
        raise InputDataError(
            f"the scans were inspected with another model than the configured one: {records} names "
            f"{listed}, the configured model is {model_sha256[:12]}; calibrate with the model the line "
            f"runs, or record new scans with this model"
        )


def _blocks(scan: Path) -> Iterator[tuple[int, np.ndarray]]:
    """(first line, lines) of a scan in order: one file, or one recorded frame, at a time."""
    if is_recording(scan):
        source = RecordingSource(scan)
        try:
            for strip in source.strips():
                yield strip.first_line, strip.lines
        finally:
            source.close()
        return
    offset = 0
    for f in scan_files(scan):
        img = read_scan_image(f)
        yield offset, img
        offset += len(img)


def board_pixels(scan: Path, start: int, end: int) -> np.ndarray | None:
    """Lines [start, end) of a scan, reading one block at a time (scans can be long)."""
    parts: list[np.ndarray] = []
    for offset, img in _blocks(scan):
        if offset >= end:
            break
        lo, hi = max(start, offset), min(end, offset + len(img))
        if hi > lo:
            parts.append(img[lo - offset:hi - offset])
    return np.concatenate(parts, axis=0) if parts else None
