"""Shared fixtures: real synthetic scans and the shipped demo model, no mocks."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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


@pytest.fixture
def site(tmp_path) -> dict[str, Path]:
    """The demo config with the shipped model and a tmp copy of the shipped calibration (the
    repository's calibration/ is never touched)."""
    cal = tmp_path / "calibration" / "current.yaml"
    cal.parent.mkdir()
    cal.write_bytes(DEMO_CAL.read_bytes())
    data = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    data["inference"]["backend"]["model"] = str(DEMO_MODEL)
    data["decision"]["calibration"] = str(cal)
    data["output"]["records_dir"] = str(tmp_path / "records")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(data))
    return {"cfg": cfg, "cal": cal, "dir": cal.parent, "tmp": tmp_path}


def run_cli(*args: str, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real console entry point in a subprocess: exit code, stdout and stderr as a user sees them."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "edge_inspect.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)


def _can_mount_tmpfs() -> bool:
    import shutil
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt || "
                            "mount -t tmpfs -o size=64k tmpfs /tmp"], capture_output=True, timeout=30)
    return probe.returncode == 0


CAN_MOUNT_TMPFS = _can_mount_tmpfs()
needs_small_disk = pytest.mark.skipif(not CAN_MOUNT_TMPFS,
                                      reason="no user+mount namespaces here (unshare -rm) to mount a small tmpfs")


def run_cli_on_small_disk(disk: Path, size: str, *args: str, fill: bool = False,
                          timeout: float = 300) -> subprocess.CompletedProcess:
    """The real CLI with a real full disk: a `size` tmpfs mounted at `disk` in a private mount
    namespace (unshare -rm: no root needed where user namespaces are allowed), filled first when
    `fill`. The tmpfs vanishes with the namespace, so its content is copied to `disk`.after/
    once the command has ended."""
    disk.mkdir(parents=True, exist_ok=True)
    after = disk.with_name(disk.name + ".after")
    after.mkdir()
    cli = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "edge_inspect.cli", *map(str, args)])
    script = (f"mount -t tmpfs -o size={size} tmpfs {shlex.quote(str(disk))} || exit 99\n"
              + (f"cat /dev/zero > {shlex.quote(str(disk / 'filler'))} 2>/dev/null\n" if fill else "")
              + f"{cli}\nrc=$?\nrm -f {shlex.quote(str(disk / 'filler'))}\n"
              f"cp -a {shlex.quote(str(disk))}/. {shlex.quote(str(after))}/\nexit $rc\n")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    r = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=ROOT, capture_output=True, text=True,
                       timeout=timeout, env=env)
    assert r.returncode != 99, f"could not mount the tmpfs: {r.stderr}"
    return r


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """make(nc) -> (onnx path, calibration path): a tiny GANomaly trained for one epoch and
    exported by the real train/export code; fast enough that scoring never limits a test."""
    pytest.importorskip("torch")
    import numpy as np

    from edge_inspect.export.onnx_export import export_onnx
    from edge_inspect.recalibration.initial import write_initial_calibration
    from edge_inspect.training.loop import train
    from edge_inspect.training_config import TrainingConfig

    made: dict[int, tuple[Path, Path]] = {}

    def make(nc: int) -> tuple[Path, Path]:
        if nc not in made:
            d = tmp_path_factory.mktemp(f"tiny{nc}")
            tc = TrainingConfig(nc=nc, ngf=4, ndf=4, nz=8, max_channels=8, epochs=1, batch_size=8)
            tiles = np.random.default_rng(nc).integers(0, 255, (24, 256, 256, nc), dtype=np.uint8)
            result = train(tc, tiles, d / "model")
            manifest = export_onnx(result.checkpoint, d / "tiny.onnx")
            write_initial_calibration(d / "model" / "validation_scores.npz", "residual_max",
                                      manifest["sha256"], d / "current.yaml")
            made[nc] = (d / "tiny.onnx", d / "current.yaml")
        return made[nc]

    return make
