from pathlib import Path

import pytest

from edge_inspect.config import Config, load_config
from edge_inspect.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("name", ["demo.yaml", "edge-inspect.yaml"])
def test_shipped_configs_load(name):
    cfg = load_config(ROOT / "config" / name)
    assert isinstance(cfg, Config)


def test_every_problem_reported_at_once_with_key_path(tmp_path):
    p = write(tmp_path, """
camera:
  lines_per_frme: 64          # typo
tiling:
  tile_size: "big"            # wrong type
  segmenter:
    enter_fraction: 1.5       # out of range
inference:
  batch_size: 0
""")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert e.value.exit_code == 78
    assert "4 configuration problem(s)" in msg
    assert "camera.lines_per_frme: unknown key (typo?)" in msg
    assert "tiling.tile_size:" in msg
    assert "tiling.segmenter.enter_fraction:" in msg
    assert "inference.batch_size:" in msg


def test_cross_field_rules(tmp_path):
    p = write(tmp_path, "tiling: {tile_size: 256, stride: 300}\n")
    with pytest.raises(ConfigError, match="stride must not exceed tile_size"):
        load_config(p)


def test_unknown_backend_type(tmp_path):
    p = write(tmp_path, "inference: {backend: {type: tensorflow}}\n")
    with pytest.raises(ConfigError, match="inference.backend"):
        load_config(p)


@pytest.mark.parametrize("text,match", [
    ("camera: [1, 2\n", "not valid YAML at line"),
    ("- a\n- b\n", "top level of the configuration must be a mapping"),
])
def test_malformed_yaml(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        load_config(write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_empty_file_gives_defaults(tmp_path):
    assert load_config(write(tmp_path, "")) == Config()


@pytest.mark.parametrize("text,fragment", [
    ("inference: {ring_tiles: 100000000000}", "inference.ring_tiles: Input should be less than or equal to 65536"),
    ("camera: {line_rate_hz: 1e-300}", "camera.line_rate_hz: Input should be greater than or equal to 1"),
    ("camera: {line_rate_hz: .inf}", "camera.line_rate_hz: Input should be a finite number"),
    ("camera: {line_rate_hz: 1e9}", "camera.line_rate_hz: Input should be less than or equal to 10000000"),
    ("source: {line_rate_hz: .nan}", "source.genicam.line_rate_hz: Input should be a finite number"),
    ("service: {stall_after_s: 1e300}", "service.stall_after_s: Input should be less than or equal to 86400"),
    ("inference: {max_wait_ms: .inf}", "inference.max_wait_ms: Input should be a finite number"),
    ("sinks: [{type: tcp, host: h, port: 1, backoff_s: [0.1, 1e300]}]", "backoff_s must be (first, largest)"),
    ("records: {jsonl_max_mb: 1e308}", "records.jsonl_max_mb: Input should be less than or equal to 1000000"),
])
def test_values_that_would_overflow_or_never_end_are_refused(tmp_path, text, fragment):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text + "\n"))
    assert fragment in str(e.value)


def test_duplicate_keys_name_the_key_and_both_lines(tmp_path):
    p = write(tmp_path, """camera:
  lines_per_frame: 64
inference:
  batch_size: 8
  batch_size: 16
camera:
  line_rate_hz: 100
""")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value) == (f"{p}: 2 configuration problem(s):\n"
                            "  inference.batch_size: given twice, at line 4 and line 5\n"
                            "  camera: given twice, at line 1 and line 6")


@pytest.mark.parametrize("text,match", [
    ("created: 2026-13-01\n", "month must be in 1..12"),
    ("a: " + "[" * 5000 + "\n", "nested too deeply|not valid YAML"),
])
def test_yaml_that_python_cannot_build_is_a_config_error(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        load_config(write(tmp_path, text))
