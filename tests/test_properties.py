"""Property-based tests (Hypothesis): whatever a configuration file, a calibration file, a
recording or a scan holds, the real CLI ends with exit 0, 1, 2 or 78 and at most one clear
error line, never a traceback; and whatever it accepts, no board passes unseen (an incomplete
board is always a reject).

The CLI runs in this process (`edge_inspect.cli.main`, the console entry point itself) so that
hundreds of generated cases run in seconds; the subprocess tests elsewhere cover the process
boundary. EI_PROPERTY_SCALE=N multiplies the number of cases (benchmarks/RESULTS.md: counts)."""

from __future__ import annotations

import copy
import io
import json
import os
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import structlog
import yaml
from conftest import DEMO_CAL, DEMO_MODEL

from edge_inspect.acquisition.base import Strip
from edge_inspect.acquisition.recording import Recorder
from edge_inspect.acquisition.synthetic import SynthSpec, write_synthetic_scans
from edge_inspect.cli import main
from edge_inspect.config import Config
from edge_inspect.decision.calibration_file import load_calibration
from edge_inspect.errors import ConfigError

hypothesis = pytest.importorskip("hypothesis", reason="dev extra (hypothesis) not installed")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SCALE = int(os.environ.get("EI_PROPERTY_SCALE", "1"))


def cases(n: int) -> settings:
    return settings(max_examples=n * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def cli(*args: object) -> tuple[int, str, str]:
    """The console entry point in this process: exit code, stdout, stderr. main() configures
    structlog for its command; that global configuration is put back afterwards."""
    saved = structlog.get_config()
    out, err = io.StringIO(), io.StringIO()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as exc:  # argparse's usage errors
                code = exc.code
    finally:
        structlog.configure(**saved)
    return code, out.getvalue(), err.getvalue()


def assert_clean(code: int, err: str, allowed: set[int]) -> None:
    """An allowed exit code, no traceback, and a failure says so in exactly one error line
    (a configuration error lists its problems indented under that line)."""
    event(f"exit {code}")  # shown by --hypothesis-show-statistics: how the cases ended
    assert code in allowed, (code, err[-3000:])
    assert "Traceback" not in err, err[-3000:]
    errors = [x for x in err.splitlines() if x.startswith("edge-inspect") and ": error:" in x]
    if code in (1, 2, 78):
        assert len(errors) == 1, err[-3000:]
    else:
        assert not errors, err[-3000:]


def assert_fail_safe(records: Path) -> None:
    """Every record has a verdict; an incomplete board is never accepted."""
    if not records.is_file():
        return
    for line in records.read_text().splitlines():
        rec = json.loads(line)
        assert rec["verdict"] in ("accept", "reject")
        assert not rec["incomplete"] or rec["verdict"] == "reject", rec


@pytest.fixture(scope="module")
def tiny_scan(tmp_path_factory) -> Path:
    """Two short boards, 256 px wide: a replay takes a fraction of a second."""
    out = tmp_path_factory.mktemp("tiny_scan")
    write_synthetic_scans(out, SynthSpec(boards=2, defect_rate=0.5, seed=7, width=256,
                                         board_lines=(260, 320), gap_lines=(32, 48)))
    return out / "scan.png"


@pytest.fixture(scope="module")
def base_config() -> dict:
    return {"inference": {"backend": {"type": "onnxruntime", "model": str(DEMO_MODEL), "threads": 1}},
            "decision": {"calibration": str(DEMO_CAL)}}


def write_yaml(folder: Path, data: Any, name: str = "cfg.yaml") -> Path:
    p = folder / name
    p.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return p


# -- values -------------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.integers(-3, 300),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0, 1, 0.5, -1, 1e-300, 1e300]),
    st.sampled_from([2**31, 2**63, 2**70, 10**9, 10**12]),  # sizes past C integers and memory
    st.text(max_size=12), st.sampled_from(["image", "frame", "max", "onnxruntime", "torch", "tensorrt", "json"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)


def _leaf_paths(model: type, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key of the configuration schema (nested sections walked), paths and training left out."""
    from pydantic import BaseModel
    out = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _leaf_paths(ann, (*prefix, name))
        elif field.annotation is not Path and "Path" not in str(field.annotation):
            out.append((*prefix, name))
    return out


CONFIG_PATHS = [p for p in _leaf_paths(Config) if p[0] != "training"] + [
    ("inference", "backend", "type"), ("inference", "backend", "threads"), ("no_such_section",),
    ("camera", "no_such_key")]


def _near_default(path: tuple[str, ...]) -> st.SearchStrategy:
    """Mostly valid values for a key: around its default, or one of its allowed words."""
    import typing
    node: Any = Config()
    field = None
    for key in path:
        field = type(node).model_fields.get(key) if hasattr(type(node), "model_fields") else None
        node = getattr(node, key, None)
    if field is not None and typing.get_origin(field.annotation) is typing.Literal:
        return st.sampled_from(typing.get_args(field.annotation))
    if isinstance(node, bool):
        return st.booleans()
    if isinstance(node, int):
        return st.integers(max(0, node // 2), node * 2 + 1)
    if isinstance(node, float):
        return st.floats(node / 2, node * 2 + 1.0)
    return values


def config_overrides() -> st.SearchStrategy:
    pairs = st.sampled_from(CONFIG_PATHS).flatmap(
        lambda path: st.tuples(st.just(path), st.one_of(_near_default(path), _near_default(path), values)))
    return st.lists(pairs, min_size=1, max_size=4).map(dict)


def _set(data: dict, path: tuple[str, ...], value: Any) -> None:
    node = data
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value


# -- configuration files ------------------------------------------------------------------------

@given(st.one_of(st.binary(max_size=400), st.text(max_size=400)))
@cases(300)
def test_any_bytes_as_a_configuration_file(data):
    with tempfile.TemporaryDirectory() as d:
        cfg = Path(d) / "cfg.yaml"
        if isinstance(data, str):
            cfg.write_text(data, encoding="utf-8")
        else:
            cfg.write_bytes(data)
        code, _, err = cli("replay", Path(d) / "missing.png", "--config", cfg)
    assert_clean(code, err, {1, 78})
    if code == 1:
        assert "scan not found" in err


@given(config_overrides())
@cases(40)
def test_generated_configurations_replay_or_are_refused(tiny_scan, base_config, overrides):
    cfg = copy.deepcopy(base_config)
    for path, value in overrides.items():
        _set(cfg, path, value)
    with tempfile.TemporaryDirectory() as d:
        code, _, err = cli("replay", tiny_scan, "--config", write_yaml(Path(d), cfg), "--out", Path(d) / "rec")
        assert_clean(code, err, {0, 1, 78})
        assert_fail_safe(Path(d) / "rec" / "boards.jsonl")


# -- calibration files --------------------------------------------------------------------------

CAL = yaml.safe_load(DEMO_CAL.read_text())
CAL_KEYS = [*CAL, "board_rule.type", "board_rule.k", "board_rule.min_count", "unknown"]
calibration_changes = st.dictionaries(st.sampled_from(CAL_KEYS), st.one_of(values, st.just("<delete>")),
                                      min_size=1, max_size=3)


def _mutated_calibration(changes: dict) -> dict:
    data = copy.deepcopy(CAL)
    for key, value in changes.items():
        *parents, leaf = key.split(".")
        node = data
        for k in parents:
            if not isinstance(node.get(k), dict):
                node[k] = {}
            node = node[k]
        if value == "<delete>":
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return data


@given(calibration_changes)
@cases(400)
def test_a_calibration_file_loads_only_when_the_decision_can_rely_on_it(changes):
    with tempfile.TemporaryDirectory() as d:
        path = write_yaml(Path(d), _mutated_calibration(changes), "cal.yaml")
        try:
            cal = load_calibration(path)
        except ConfigError as exc:
            assert str(exc).startswith(f"{path}: ")
            return
    assert np.isfinite(cal.tile_threshold) and cal.tile_threshold >= 0
    assert cal.model and len(cal.model) >= 12 and int(cal.model, 16) >= 0


@given(calibration_changes)
@cases(30)
def test_generated_calibrations_through_the_cli(tiny_scan, base_config, changes):
    with tempfile.TemporaryDirectory() as d:
        cal = write_yaml(Path(d), _mutated_calibration(changes), "cal.yaml")
        cfg = copy.deepcopy(base_config)
        cfg["decision"]["calibration"] = str(cal)
        code, _, err = cli("replay", tiny_scan, "--config", write_yaml(Path(d), cfg), "--out", Path(d) / "rec")
        assert_clean(code, err, {0, 78})
        assert_fail_safe(Path(d) / "rec" / "boards.jsonl")


# -- recordings ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_recording(tiny_scan, tmp_path_factory) -> Path:
    """tiny_scan as a recording: 64-line frames, 4 per chunk, the last one short."""
    import cv2
    img = cv2.cvtColor(cv2.imread(str(tiny_scan)), cv2.COLOR_BGR2RGB)
    out = tmp_path_factory.mktemp("tiny_rec") / "rec"
    with Recorder(out, width=img.shape[1], channels=3, lines_per_frame=64, max_file_frames=4) as rec:
        for i in range(0, len(img), 64):
            rec.write(Strip(img[i:i + 64], i, i * 10_000, i // 64))
    return out


def _copy_recording(src: Path, dst: Path) -> Path:
    import shutil
    shutil.copytree(src, dst)
    return dst


META_KEYS = ["format", "version", "width", "channels", "pixel_format", "lines_per_frame", "closed", "frames",
             "chunks", "short_frames", "camera"]


@given(st.one_of(
    st.binary(max_size=300),
    st.dictionaries(st.sampled_from(META_KEYS), st.one_of(values, st.just("<delete>")), min_size=1, max_size=3),
))
@cases(100)
def test_any_recording_metadata(tiny_recording, base_config, change):
    with tempfile.TemporaryDirectory() as d:
        rec = _copy_recording(tiny_recording, Path(d) / "rec")
        meta_file = rec / "recording.json"
        if isinstance(change, bytes):
            meta_file.write_bytes(change)
        else:
            meta = json.loads(meta_file.read_text())
            for key, value in change.items():
                if value == "<delete>":
                    meta.pop(key, None)
                else:
                    meta[key] = value
            meta_file.write_text(json.dumps(meta))
        code, _, err = cli("replay", rec, "--config", write_yaml(Path(d), base_config), "--out", Path(d) / "out")
        assert_clean(code, err, {0, 1})
        assert_fail_safe(Path(d) / "out" / "boards.jsonl")


@given(st.data())
@cases(100)
def test_any_damage_to_a_recording_chunk(tiny_recording, base_config, data):
    """Bytes flipped anywhere or a chunk cut short: a clean exit 1, or exit 0 when the damage
    hit nothing the frames depend on; every board recorded is fail-safe either way."""
    with tempfile.TemporaryDirectory() as d:
        rec = _copy_recording(tiny_recording, Path(d) / "rec")
        chunks = sorted(rec.glob("chunk_*.npz"))
        chunk = data.draw(st.sampled_from(chunks))
        raw = bytearray(chunk.read_bytes())
        if data.draw(st.booleans()):
            chunk.write_bytes(bytes(raw[:data.draw(st.integers(0, len(raw) - 1))]))
        else:
            for pos in data.draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=4)):
                raw[pos] ^= data.draw(st.integers(1, 255))
            chunk.write_bytes(bytes(raw))
        code, _, err = cli("replay", rec, "--config", write_yaml(Path(d), base_config), "--out", Path(d) / "out")
        assert_clean(code, err, {0, 1})
        assert_fail_safe(Path(d) / "out" / "boards.jsonl")


# -- scans --------------------------------------------------------------------------------------

@given(st.binary(max_size=2000), st.sampled_from([".png", ".npy", ".tif", ".jpg", ".bmp"]))
@cases(100)
def test_any_bytes_as_a_scan_file(base_config, data, suffix):
    with tempfile.TemporaryDirectory() as d:
        scan = Path(d) / f"scan{suffix}"
        scan.write_bytes(data)
        code, _, err = cli("replay", scan, "--config", write_yaml(Path(d), base_config), "--out", Path(d) / "rec")
        assert_clean(code, err, {0, 1})


@given(
    st.sampled_from([np.uint8, np.uint16, np.float32, np.int64, np.bool_]),
    st.lists(st.integers(0, 700), min_size=1, max_size=4),
    st.integers(0, 255),
    st.sampled_from([".npy", ".png", "folder"]),
)
@cases(80)
def test_any_array_as_a_scan(base_config, dtype, shape, level, kind):
    """Arrays of any type and shape as a .npy scan, a PNG (what OpenCV can write) or a folder of
    two frames; bright enough (level) to hold boards or not."""
    import cv2
    if int(np.prod(shape)) > 1_000_000:  # a replay of more than a few boards adds time, not cases
        shape = [min(s, 100) for s in shape]
    arr = np.full(shape, level, dtype=np.uint8).astype(dtype)
    with tempfile.TemporaryDirectory() as d:
        if kind == ".npy":
            scan = Path(d) / "scan.npy"
            np.save(scan, arr)
        else:
            scan = Path(d) / ("scan.png" if kind == ".png" else "frames")
            frames = [scan] if kind == ".png" else [scan / "a.png", scan / "b.png"]
            if kind == "folder":
                scan.mkdir()
            for f in frames:
                try:
                    written = cv2.imwrite(str(f), arr)
                except cv2.error:
                    written = False
                if not written:
                    f.write_bytes(b"not writable as an image by OpenCV")
        code, _, err = cli("replay", scan, "--config", write_yaml(Path(d), base_config), "--out", Path(d) / "rec")
        assert_clean(code, err, {0, 1})
        assert_fail_safe(Path(d) / "rec" / "boards.jsonl")
