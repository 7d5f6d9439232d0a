"""From scored scans to a proposed calibration, with every refusal an operator can act on."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import structlog

from edge_inspect.decision.calibration_file import BoardRule, Calibration, TargetRule
from edge_inspect.errors import InputDataError
from edge_inspect.recalibration.scoring import BoardScores, ScanScores
from edge_inspect.recalibration.thresholds import (
    ThresholdChoice,
    board_statistic,
    clopper_pearson_upper,
    find_outliers,
    min_boards_for,
    pick_threshold,
    rejected,
)

log = structlog.get_logger(__name__)


class CalibrationRefused(InputDataError):
    """The data cannot support a threshold; the message says what to record instead."""


@dataclass(frozen=True)
class ScanRate:
    """What the proposed threshold does to the good boards of one scan."""

    scan: Path
    boards: int
    rejected: int
    upper_bound: float  # one-sided 95 % Clopper-Pearson bound for `rejected` in `boards`

    @property
    def rate(self) -> float:
        return self.rejected / self.boards if self.boards else 0.0


@dataclass
class Proposal:
    calibration: Calibration
    choice: ThresholdChoice
    rule: BoardRule
    good: list[BoardScores]
    good_stats: np.ndarray
    defect: list[BoardScores] = field(default_factory=list)
    defect_stats: np.ndarray = field(default_factory=lambda: np.zeros(0))
    good_scans: list[Path] = field(default_factory=list)
    defect_scans: list[Path] = field(default_factory=list)
    incomplete_left_out: int = 0
    current: Calibration | None = None
    current_comparable: bool = False   # same model and score: its threshold means the same thing
    current_good_rejects: int | None = None
    caught: int | None = None          # defect boards rejected at the proposed threshold
    training_scans: list[Path] = field(default_factory=list)  # good or defect scans the model learned
    per_scan: list[ScanRate] = field(default_factory=list)  # the good boards' false rejects, scan by scan

    @property
    def unlike_scans(self) -> list[ScanRate]:
        """Good scans whose own measured rate is above the pooled bound: their boards are not
        like the rest, and boards like theirs will be rejected more often than the bound says."""
        return [r for r in self.per_scan if r.rate > self.choice.frr_upper95]

    @property
    def detection(self) -> float | None:
        return self.caught / len(self.defect) if self.caught is not None and self.defect else None

    @property
    def optimistic(self) -> list[Path]:
        """Good scans that were training data: with any, the false-reject estimate leans low."""
        return [s for s in self.good_scans if s in self.training_scans]


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def target_words(target_frr: float, rule: TargetRule) -> str:
    if rule == "bound":
        return f"at most {100 * target_frr:g} % with 95 % confidence"
    return f"{100 * target_frr:g} % measured on the calibration boards"


def refuse_if_too_few(n: int, target_frr: float, rule: TargetRule) -> None:
    need = min_boards_for(target_frr, rule)
    if n < need:
        why = (f"with {n} boards even none rejected leaves the 95 % bound above {100 * target_frr:g} %"
               if rule == "bound" else f"with {n} boards no false reject can be allowed, so the target cannot be checked")
        raise CalibrationRefused(
            f"need at least {need} good boards for a false-reject target of {target_words(target_frr, rule)}, "
            f"got {n}; record more ({why})"
        )


def refuse_if_outliers(stats: np.ndarray) -> None:
    out = find_outliers(stats)
    if out.too_many:
        n_out, n = int(out.mask.sum()), int(np.isfinite(stats).sum())
        raise CalibrationRefused(
            f"{n_out} of {n} boards score far above the rest (over {out.limit:.4g}, the median "
            f"{out.median:.4g} plus 5 times the typical spread): these scans contain defects or are not "
            f"the same product; remove them or pass them as --defect-scans"
        )


def _counted_defect_boards(scans: list[ScanScores]) -> list[BoardScores]:
    """With ground truth beside a scan only its boards that have defects count; without, every
    board of a defect scan is taken to be defective."""
    boards: list[BoardScores] = []
    for s in scans:
        boards += [b for b in s.complete if s.truth is None or b.defective]
    return boards


def drift_reference(good_stats: np.ndarray, threshold: float, most: int = 500) -> list[float] | None:
    """The good boards the new threshold accepts (the service's drift monitor sees only accepted
    boards), ascending; more than `most` are thinned to evenly spaced order statistics."""
    kept = np.sort(good_stats[~rejected(good_stats, threshold) & np.isfinite(good_stats)])
    if len(kept) > most:
        kept = kept[np.linspace(0, len(kept) - 1, most).round().astype(int)]
    return [round(float(x), 6) for x in kept] or None


def build_proposal(
    good_scans: list[ScanScores],
    defect_scans: list[ScanScores],
    target_frr: float,
    score: str,
    rule: BoardRule,
    model_sha256: str,
    version: str,
    current: Calibration | None,
    training_scans: list[Path] | None = None,
    target_rule: TargetRule = "measured",
) -> Proposal:
    good = [b for s in good_scans for b in s.complete]
    left_out = sum(len(s.boards) - len(s.complete) for s in good_scans)
    refuse_if_too_few(len(good), target_frr, target_rule)
    good_stats = np.array([board_statistic(b.tile_scores, rule) for b in good], np.float64)
    refuse_if_outliers(good_stats)
    choice = pick_threshold(good_stats, target_frr, target_rule)

    per_scan, first = [], 0
    for s in good_scans:
        n = len(s.complete)
        k = int(rejected(good_stats[first:first + n], choice.threshold).sum())
        per_scan.append(ScanRate(s.scan, n, k, clopper_pearson_upper(k, n) if n else 1.0))
        first += n

    defect = _counted_defect_boards(defect_scans)
    defect_stats = np.array([board_statistic(b.tile_scores, rule) for b in defect], np.float64)
    caught = int(rejected(defect_stats, choice.threshold).sum()) if defect else None

    comparable = current is not None and current.score == score and (
        not current.model or model_sha256.startswith(current.model))
    current_rejects = None
    if current is not None and current.score == score:
        cur_stats = np.array([board_statistic(b.tile_scores, current.board_rule) for b in good])
        current_rejects = int(rejected(cur_stats, current.tile_threshold).sum())

    detection = caught / len(defect) if caught is not None and defect else None
    good_names = ", ".join(str(s.scan) for s in good_scans)
    source = (f"{len(good)} good boards from {len(good_scans)} scan(s): {good_names}; "
              f"{choice.exceedances} over the threshold, FRR at most {_pct(choice.frr_upper95)} "
              f"with 95 % confidence")
    if defect_scans:
        source += (f"; {len(defect)} defect boards from {len(defect_scans)} scan(s): "
                   + ", ".join(str(s.scan) for s in defect_scans) + f", {caught} caught")
    if training_scans:
        source += (f"; training data of the model, allowed: {', '.join(map(str, training_scans))} "
                   "(the false-reject estimate is optimistic)")
    now = datetime.now(timezone.utc)
    cal = Calibration(
        version=version, created=now.isoformat(timespec="seconds"), model=model_sha256, score=score,
        tile_threshold=choice.threshold, board_rule=rule, target_frr=target_frr, target_rule=target_rule,
        expected_frr=choice.expected_frr, expected_detection=detection, source=source,
        good_scores=drift_reference(good_stats, choice.threshold),
    )
    log.info("calibration_proposed", version=version, threshold=choice.threshold, good=len(good),
             exceedances=choice.exceedances, frr_upper95=choice.frr_upper95, defect=len(defect), caught=caught)
    return Proposal(
        calibration=cal, choice=choice, rule=rule, good=good, good_stats=good_stats, defect=defect,
        defect_stats=defect_stats, good_scans=[s.scan for s in good_scans],
        defect_scans=[s.scan for s in defect_scans], incomplete_left_out=left_out, current=current,
        current_comparable=comparable, current_good_rejects=current_rejects, caught=caught,
        training_scans=list(training_scans or []), per_scan=per_scan,
    )


def summary_lines(p: Proposal) -> list[str]:
    """What a line operator needs in one read: how much was measured, what the current
    threshold does, what the proposed one will do."""
    n = len(p.good)
    head = f"Boards scored: {n} good ({len(p.good_scans)} scan{'s' if len(p.good_scans) != 1 else ''})"
    head += f", {len(p.defect)} defect" if p.defect_scans else ", no defect boards given"
    if p.incomplete_left_out:
        head += f" ({p.incomplete_left_out} incomplete boards left out)"
    lines = [head]
    c = p.current
    if c is None:
        lines.append("Current threshold: none (no current calibration file)")
    elif p.current_good_rejects is None:
        lines.append(f"Current threshold {c.tile_threshold:.4f} is for score {c.score!r}, not {p.calibration.score!r}: not compared")
    else:
        note = "" if p.current_comparable else " (set for another model)"
        lines.append(f"Current threshold {c.tile_threshold:.4f}{note}: {p.current_good_rejects} of {n} good boards "
                     f"rejected ({_pct(p.current_good_rejects / n)})")
    ch = p.choice
    cal = p.calibration
    lines.append(f"Target false-reject rate: {target_words(cal.target_frr or 0.0, cal.target_rule)}")
    prop = (f"Proposed threshold {ch.threshold:.4f}: {ch.exceedances} of {n} good boards rejected (measured "
            f"false-reject rate {_pct(ch.expected_frr)}; at most {_pct(ch.frr_upper95)} with 95 % confidence, "
            f"Clopper-Pearson upper bound)")
    if p.caught is not None:
        prop += f"; catches {p.caught} of {len(p.defect)} defect boards"
    elif p.defect_scans:
        prop += "; the defect scans hold no defective boards"
    lines.append(prop)
    if len(p.per_scan) > 1:
        lines.append("Per scan: " + "; ".join(f"{r.scan} {r.rejected} of {r.boards} ({_pct(r.rate)}, at most "
                                              f"{_pct(r.upper_bound)})" for r in p.per_scan))
    for r in p.unlike_scans:
        lines.append(f"Unlike the rest: {r.scan} has {_pct(r.rate)} of its good boards over the threshold, more "
                     f"than the pooled bound ({_pct(p.choice.frr_upper95)}); boards like its will be rejected more "
                     f"often than the bound says: calibrate on more scans like it, or find out why it differs")
    if p.optimistic:
        lines.append(f"Optimistic: {len(p.optimistic)} of the good scans were training data of the model "
                     f"({', '.join(map(str, p.optimistic))}); boards it learned score low, so on fresh boards "
                     f"the false-reject rate is likely higher than measured here")
    return lines


def false_reject_statement(p: Proposal) -> str:
    """The proposal's promise in plain words, for the report and summary.json."""
    ch = p.choice
    text = (f"The proposed threshold {ch.threshold:.4f} rejects {ch.exceedances} of the {ch.n} good boards calibrated "
            f"on: a measured false-reject rate of {_pct(ch.expected_frr)}. On good boards like these "
            f"the false-reject rate is at most {_pct(ch.frr_upper95)} with 95 % confidence (one-sided "
            f"Clopper-Pearson upper bound for {ch.exceedances} in {ch.n}; the threshold is placed by these boards' own "
            f"scores, for which the bound holds whatever their distribution).")
    if p.optimistic:
        text += (" Optimistic: some of these good boards were training data of the model, which scores boards "
                 "it learned lower than fresh ones.")
    return text
