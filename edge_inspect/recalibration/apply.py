"""Putting a calibration into service: dated history, atomic replacement of the current file,
rollback, and telling a running service to reload. Every write goes through
`edge_inspect.atomic` (temp file, fsync, rename), so an interrupted apply leaves the old current
file as it was."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import structlog

from edge_inspect.atomic import write_atomic
from edge_inspect.decision.calibration_file import (
    Calibration,
    load_calibration,
    write_calibration,
)
from edge_inspect.errors import EdgeInspectError, InputDataError

log = structlog.get_logger(__name__)

SERVICE = "edge-inspect.service"


def history_dir(current: Path) -> Path:
    return current.parent / "history"


def new_version(current: Path) -> str:
    """UTC timestamp; a suffix keeps two calibrations made in the same second apart (versions
    still sort by time as text)."""
    base = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    hist = history_dir(current)
    version, i = base, 1
    while (hist / f"{version}.yaml").exists():
        i += 1
        version = f"{base}-{i}"
    return version


def _archive_current(current: Path) -> Calibration | None:
    """The calibration being replaced must stay restorable: make sure history holds it (the
    first one, written by `export`, never went through history)."""
    if not current.exists():
        return None
    try:
        cal = load_calibration(current)
    except EdgeInspectError as exc:
        log.warning("current_calibration_unreadable", path=str(current), error=str(exc))
        return None
    dest = history_dir(current) / f"{cal.version}.yaml"
    if not dest.exists():
        write_atomic(dest, current.read_bytes())
    return cal


def apply_calibration(cal: Calibration, current: Path) -> Path:
    """History first (the new one and the one it replaces), then the current file in one rename."""
    _archive_current(current)
    dest = history_dir(current) / f"{cal.version}.yaml"
    write_calibration(dest, cal)
    write_calibration(current, cal)
    log.info("calibration_applied", version=cal.version, current=str(current), history=str(dest))
    return dest


def history(current: Path) -> list[tuple[str, Path]]:
    """(version, file) of every readable history entry, oldest first."""
    out = []
    for f in sorted(history_dir(current).glob("*.yaml")):
        try:
            out.append((load_calibration(f).version, f))
        except EdgeInspectError as exc:
            log.warning("history_entry_unreadable", path=str(f), error=str(exc))
    return sorted(out)


def rollback(current: Path, model_sha256: str) -> tuple[Calibration, Calibration | None]:
    """Restore the newest history entry older than the current calibration; return it and the
    one it replaced. A calibration of another model is refused: the service would not start."""
    now = _archive_current(current)
    entries = history(current)
    older = [(v, f) for v, f in entries if now is None or v < now.version]
    if not older:
        where = history_dir(current)
        raise InputDataError(
            f"no earlier calibration to roll back to in {where}"
            + (f" (the current one, {now.version}, is the oldest)" if now is not None else "")
        )
    _, path = older[-1]
    target = load_calibration(path)
    if target.model and not model_sha256.startswith(target.model):
        raise InputDataError(
            f"the previous calibration {target.version} ({path}) belongs to model {target.model[:12]}, "
            f"but the configured model is {model_sha256[:12]}: the service would refuse it; switch the "
            f"model back first, or calibrate this model (edge-inspect calibrate)"
        )
    write_atomic(current, path.read_bytes())
    log.info("calibration_rolled_back", version=target.version, replaced=now.version if now else None)
    return target, now


def _is_edge_inspect(pid: int) -> bool:
    """A stale pid file may name an unrelated process by now: never signal that one."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.exists():
        return True  # no /proc (not Linux): trust the pid file
    try:
        text = cmdline.read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return False
    return "edge-inspect" in text or "edge_inspect" in text


def notify_service(pid_file: Path | None) -> str:
    """Ask a running service to reload its calibration; return what happened in one sentence."""
    if pid_file is not None:
        try:
            pid = int(pid_file.read_text(encoding="utf-8").split()[0])
        except (OSError, ValueError, IndexError):
            pid = None
            log.warning("pid_file_unreadable", path=str(pid_file))
        if pid is not None and pid > 0:
            if not _is_edge_inspect(pid):
                log.warning("pid_not_edge_inspect", pid=pid, path=str(pid_file))
            else:
                try:
                    os.kill(pid, signal.SIGHUP)
                    return f"sent SIGHUP to edge-inspect (pid {pid}): it reloads the calibration now"
                except ProcessLookupError:
                    log.info("pid_not_running", pid=pid, path=str(pid_file))
                except PermissionError:
                    return (f"not allowed to signal edge-inspect (pid {pid}); run this as the service's user "
                            f"or reload it yourself (systemctl reload {SERVICE})")
    systemctl = shutil.which("systemctl")
    if systemctl:
        try:
            active = subprocess.run([systemctl, "is-active", "--quiet", SERVICE], timeout=10,
                                    capture_output=True)
            if active.returncode == 0:
                r = subprocess.run([systemctl, "reload", SERVICE], capture_output=True, text=True, timeout=30)
                if r.returncode == 0:
                    return f"reloaded {SERVICE}: the new calibration is in use"
                why = (r.stderr or r.stdout).strip().splitlines()[:1]
                return (f"systemctl reload {SERVICE} failed ({why[0] if why else f'exit {r.returncode}'}); "
                        f"the new calibration applies at next start")
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("systemctl_failed", error=str(exc))
    return "no running service found; the new calibration applies at next start"
