"""Scans the model was trained on are no test of it: good boards it learned score lower than
fresh ones, so a false-reject rate measured on them is optimistic (4.3 % promised, 10 % seen on
fresh boards, in issue 14). Training records what it read (files with their sha256, in the
checkpoint and the ONNX manifest); calibrate compares every file of every scan with that list
before it scores anything."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import structlog

from edge_inspect.acquisition.scan_sets import ScanSet, scan_hashes
from edge_inspect.recalibration.proposal import CalibrationRefused

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class TrainingScan:
    """A scan of which a file is one the model was trained on."""

    flag: str          # the option it was given with: --scans or --defect-scans
    given: Path        # the argument
    scan: Path
    file: Path         # the file whose sha256 training recorded
    trained_as: str    # that file's path as training recorded it


def find_training_scans(sets: list[tuple[str, ScanSet]], trained_on: dict) -> list[TrainingScan]:
    """Every scan holding a file with the sha256 of a training file."""
    known = {f.get("sha256"): str(f.get("path")) for f in trained_on.get("files") or [] if isinstance(f, dict)}
    found = []
    for flag, scan_set in sets:
        for scan in scan_set.scans:
            match = next(((f, d) for f, d in scan_hashes(scan).items() if d in known), None)
            if match is not None:
                found.append(TrainingScan(flag, scan_set.path, scan, match[0], known[match[1]]))
    return found


def check_training_scans(sets: list[tuple[str, ScanSet]], trained_on: dict | None,
                         allow: bool) -> list[TrainingScan]:
    """The training scans among `sets`, allowed only with `allow` (the caller then says the
    estimate is optimistic); refused otherwise. A model that does not say what it was trained
    on is accepted with a warning: the check cannot be made."""
    if trained_on is None:
        log.warning("training_scans_unchecked",
                    reason="the model's manifest does not record what it was trained on (exported before "
                           "edge-inspect recorded it): scans it was trained on cannot be told from fresh ones")
        return []
    found = find_training_scans(sets, trained_on)
    if found and not allow:
        t = found[0]
        more = f" ({len(found) - 1} more scan(s) likewise)" if len(found) > 1 else ""
        raise CalibrationRefused(
            f"{t.flag} {t.given}: {t.scan} was training data of the model ({t.file.name} has the sha256 of "
            f"training file {t.trained_as}){more}; a false-reject rate measured on boards the model learned "
            f"is optimistic: calibrate on scans it never saw, or pass --allow-training-scans"
        )
    return found
