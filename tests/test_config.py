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
