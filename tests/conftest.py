"""Shared fixtures: real synthetic scans and the shipped demo model, no mocks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_inspect.acquisition.synthetic import SynthSpec, write_synthetic_scans
from edge_inspect.config import Config, load_config

ROOT = Path(__file__).resolve().parents[1]
DEMO_MODEL = ROOT / "engines" / "demo.onnx"
DEMO_CAL = ROOT / "calibration" / "current.yaml"


@pytest.fixture(scope="session")
def demo_cfg() -> Config:
    """The demo config with its paths made absolute, so tests can run from any folder."""
    cfg = load_config(ROOT / "config" / "demo.yaml")
    backend = cfg.inference.backend.model_copy(update={"model": DEMO_MODEL})
    return cfg.model_copy(update={
        "inference": cfg.inference.model_copy(update={"backend": backend}),
        "decision": cfg.decision.model_copy(update={"calibration": DEMO_CAL}),
    })


@pytest.fixture(scope="session")
def small_scan(tmp_path_factory) -> Path:
    """Six boards at 512 px, half with defects; boards the demo model never saw."""
    out = tmp_path_factory.mktemp("small_scan")
    write_synthetic_scans(out, SynthSpec(boards=6, defect_rate=0.5, seed=4242, width=512,
                                         board_lines=(300, 600)))
    return out / "scan.png"


def run_cli(*args: str, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real console entry point in a subprocess: exit code, stdout and stderr as a user sees them."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "edge_inspect.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)
