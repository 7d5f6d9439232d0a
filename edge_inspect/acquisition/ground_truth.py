"""The ground truth `synth` writes beside its scans (DIR/ground_truth.json next to DIR/scan.png or
DIR/scan/), and the comparison of board verdicts with it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from edge_inspect.errors import InputDataError


#: size classes of a defect by the smaller side of its box (20 px: the "large" of the summary)
SIZE_CLASSES: tuple[tuple[int, str], ...] = ((20, "< 20 px"), (50, "20-49 px"), (1 << 30, ">= 50 px"))


def size_class(defect: dict) -> str:
    side = min(defect["w"], defect["h"])
    return next(label for limit, label in SIZE_CLASSES if side < limit)


@dataclass
class DefectTally:
    """Defects of one type and size: how many, how many sat on a rejected board, and how many
    a reported region (tiles over the threshold) overlaps."""

    defects: int = 0
    board_rejected: int = 0
    located: int = 0


@dataclass
class TruthComparison:
    boards_truth: int = 0
    defective: int = 0
    defective_rejected: int = 0
    large_defective: int = 0          # boards with a defect of at least min_defect_px in w and h
    large_defective_rejected: int = 0
    good: int = 0
    good_rejected: int = 0
    unmatched_verdicts: int = 0
    missed_boards: list[int] = field(default_factory=list)   # truth boards with no verdict
    missed_large: list[int] = field(default_factory=list)    # large-defect boards accepted
    by_type: dict[str, dict[str, DefectTally]] = field(default_factory=dict)  # type -> size class -> tally

    @property
    def good_reject_rate(self) -> float:
        return self.good_rejected / self.good if self.good else 0.0


def resolve_scan(path: Path) -> Path:
    """A `synth` output folder (with ground_truth.json) means its scan (scan.png or the scan/
    frame folder), not every image in it (mask.png is not part of the scan); any other path is
    taken as it is."""
    if path.is_dir() and (path / "ground_truth.json").is_file():
        for candidate in (path / "scan.png", path / "scan"):
            if candidate.exists():
                return candidate
        raise InputDataError(f"{path}: synth folder without scan.png or scan/")
    return path


def truth_path_for(scan: Path) -> Path | None:
    """`synth` writes DIR/scan.png or DIR/scan/ next to DIR/ground_truth.json."""
    p = scan.parent / "ground_truth.json"
    return p if p.is_file() else None


def load_truth(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data["boards"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputDataError(f"{path}: not a ground-truth file ({exc})") from None
    return data


def compare(records: list[dict], truth: dict, min_defect_px: int = 20) -> TruthComparison:
    """Match each truth board to the verdict overlapping it most in lines."""
    c = TruthComparison(boards_truth=len(truth["boards"]))
    used: set[int] = set()
    for tb in truth["boards"]:
        best, best_overlap = None, 0
        for i, r in enumerate(records):
            overlap = min(r["end_line"], tb["end_line"]) - max(r["start_line"], tb["start_line"])
            if overlap > best_overlap:
                best, best_overlap = i, overlap
        defects = tb.get("defects", [])
        large = any(d["w"] >= min_defect_px and d["h"] >= min_defect_px for d in defects)
        rejected = False
        if best is None:
            c.missed_boards.append(tb["index"])
        else:
            used.add(best)
            rejected = records[best]["verdict"] == "reject"
        for d in defects:
            tally = c.by_type.setdefault(d["type"], {}).setdefault(size_class(d), DefectTally())
            tally.defects += 1
            tally.board_rejected += rejected
            tally.located += best is not None and _located(d, records[best])
        if defects:
            c.defective += 1
            c.defective_rejected += rejected
        else:
            c.good += 1
            c.good_rejected += rejected
        if large:
            c.large_defective += 1
            c.large_defective_rejected += rejected
            if not rejected:
                c.missed_large.append(tb["index"])
    c.unmatched_verdicts = len(records) - len(used)
    return c


def _located(defect: dict, record: dict) -> bool:
    """Does a region the record reports (board coordinates) overlap the defect (scan coordinates)?"""
    y0 = record["start_line"]
    return any(r["x"] < defect["x"] + defect["w"] and defect["x"] < r["x"] + r["w"]
               and y0 + r["y"] < defect["y"] + defect["h"] and defect["y"] < y0 + r["y"] + r["h"]
               for r in record.get("defects") or [])
