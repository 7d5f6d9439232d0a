"""Progress of long work: a tqdm bar with rate and ETA on a terminal (checked through a real
pseudo-terminal), JSON `progress` events elsewhere (a pipe, systemd); the module in-process and
the CLI as a user runs it."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import socket
import struct
import subprocess
import sys
import termios
import time

import pytest
from conftest import ROOT, run_cli
from structlog.testing import capture_logs

from edge_inspect.export.engine import PhaseBars
from edge_inspect.logging import interactive_stderr, under_systemd
from edge_inspect.progress import Progress


def test_structured_events_with_rate_eta_and_a_closing_event():
    with capture_logs() as logs:
        with Progress("scoring", total=200, unit="lines", every_s=0, console=False) as p:
            time.sleep(0.05)
            p.set(50)
            p.update(50)
    ev = [e for e in logs if e["event"] == "progress"]
    assert [e["done"] for e in ev] == [50, 100, 100]
    assert ev[0]["task"] == "scoring" and ev[0]["unit"] == "lines" and ev[0]["total"] == 200
    assert ev[0]["percent"] == 25.0 and ev[0]["rate_per_s"] > 0 and ev[0]["eta_s"] > 0
    assert ev[-1]["finished"] is True and "finished" not in ev[0]


def test_quiet_when_the_work_ends_before_the_first_interval():
    with capture_logs() as logs:
        with Progress("short", total=10, every_s=60, console=False) as p:
            for _ in range(10):
                p.update()
    assert [e for e in logs if e["event"] == "progress"] == []


def test_eta_is_the_sooner_of_the_rate_and_the_time_cap():
    p = Progress("train", total=100, unit="steps", max_seconds=5.0, every_s=60, console=False)
    p.set(10)
    t = p.started + 1.0  # 10 steps/s: 9 s of steps left, but the cap ends the run in 4 s
    assert p.eta_s(t) == pytest.approx(4.0)
    assert p.eta_s(p.started + 0.5) == pytest.approx(4.5)   # 20 steps/s: 4.5 s left, cap 4.5 s
    p.set(90)
    assert p.eta_s(p.started + 3.0) == pytest.approx(10 / 30)  # the steps now end first
    assert Progress("x", console=False).eta_s() is None        # no total, no cap: no ETA
    p.close()


def test_bar_shows_rate_and_the_time_cap(capsys):
    with Progress("train", total=1000, unit="steps", max_seconds=3600, console=True) as p:
        p.update(5)
    err = capsys.readouterr().err
    assert re.search(r"train:\s+0%\|.*\| 5\.00/1\.00k \[.*steps/s, time cap in (59:5\d|1:00:00)\]", err), err


def test_tensorrt_build_phases_become_bars_with_their_steps():
    """PhaseBars is what TensorRT's IProgressMonitor calls into (export/engine.py)."""
    bars = PhaseBars()
    with capture_logs() as logs:
        from edge_inspect import progress

        progress.set_interval(0)
        try:
            bars.phase_start("Building engine", None, 4)
            bars.phase_start("Tactic selection", "Building engine", 10)
            for step in range(10):
                assert bars.step_complete("Tactic selection", step)
            for step in range(4):
                assert bars.step_complete("Building engine", step)
            bars.phase_finish("Tactic selection")
            bars.phase_finish("Building engine")
        finally:
            progress.set_interval(progress.DEFAULT_EVERY_S)
    ev = [e for e in logs if e["event"] == "progress"]
    assert {e["task"] for e in ev} == {"build-engine Building engine"}   # sub-phases are notes
    assert [e["done"] for e in ev] == [1, 2, 3, 4, 4] and ev[-1]["finished"]
    assert ev[0]["phase"] == "Tactic selection" and ev[0]["total"] == 4


def test_terminal_or_systemd(tmp_path):
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as tty:
            assert interactive_stderr({}, tty)
            assert not interactive_stderr({"NOTIFY_SOCKET": "@x"}, tty)
            st = os.fstat(slave)
            assert under_systemd({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, tty)
            # a shell started from a user service inherits JOURNAL_STREAM naming another stream
            assert interactive_stderr({"JOURNAL_STREAM": "8:12345"}, tty)
        a, b = socket.socketpair()
        with a, b, os.fdopen(a.fileno(), "w", closefd=False) as sock_stream:
            st = os.fstat(a.fileno())
            assert under_systemd({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, sock_stream)
            assert not interactive_stderr({}, sock_stream)
        with open(tmp_path / "log", "w") as f:
            assert not interactive_stderr({}, f)
    finally:
        os.close(master)
        os.close(slave)


def _cfg(tmp_path):
    from test_cli import config_file

    return config_file(tmp_path)


def test_replay_on_a_terminal_draws_a_bar_with_rate_and_eta(tmp_path, small_scan):
    """stdout and stderr on one pseudo-terminal, as in an operator's shell: the bar shows lines,
    rate and ETA, and the board lines are printed above it, never glued to it."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
    proc = subprocess.Popen([sys.executable, "-m", "edge_inspect.cli", "replay", str(small_scan), "--config",
                             str(_cfg(tmp_path)), "--out", str(tmp_path / "rec")],
                            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    out = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 120)
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
        proc.wait(timeout=60)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-2000:]
    bar = [seg for seg in re.split(r"[\r\n]", text) if "replay small_scan" in seg and "lines/s" in seg]
    assert bar, text[-2000:]
    assert any(re.search(r"\d+%\|.*\[\d\d:\d\d<\d\d:\d\d, +[\d.]+k?lines/s\]", seg) for seg in bar), bar[-3:]
    screen_lines = [line.rstrip("\r").split("\r")[-1] for line in text.split("\n")]  # the tty sends \r\n
    board_lines = [line for line in screen_lines if "lines " in line and "tiles" in line and "score" in line]
    assert len(board_lines) == 6 and all(line.startswith("board ") for line in board_lines), board_lines


def test_replay_into_a_pipe_logs_progress_events_not_a_bar(tmp_path, small_scan):
    r = run_cli("--progress-every", "0", "replay", small_scan, "--config", _cfg(tmp_path), "--out", tmp_path / "rec")
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr and "lines/s" not in r.stderr
    ev = [json.loads(line) for line in r.stderr.splitlines() if line.startswith("{")]
    prog = [e for e in ev if e.get("event") == "progress"]
    assert prog and all(e["task"] == f"replay {small_scan.parent.name}/scan.png" for e in prog)
    height = json.loads((small_scan.parent / "ground_truth.json").read_text())["height"]
    assert prog[-1]["finished"] and prog[-1]["done"] == prog[-1]["total"] == height
    assert [e["done"] for e in prog] == sorted(e["done"] for e in prog)
