"""`edge-inspect doctor` reports, never fails."""

from __future__ import annotations

from pathlib import Path

from conftest import run_cli

from edge_inspect.doctor import gentl_producers, run_doctor


def test_doctor_cli_exits_0_and_names_every_backend() -> None:
    r = run_cli("doctor")
    assert r.returncode == 0, r.stderr
    for word in ("onnxruntime", "torch cpu", "torch cuda", "tensorrt", "pycuda", "GenTL producers"):
        assert word in r.stdout
    assert "Traceback" not in r.stderr


def test_doctor_says_why_tensorrt_is_not_usable() -> None:
    rep = run_doctor()
    assert rep.backends["onnxruntime (cpu)"] == "usable"
    trt = rep.backends["tensorrt"]
    assert trt == "usable" or trt.startswith("not usable: ")


def test_gentl_producers_from_env(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "vendor.cti").write_bytes(b"")
    (tmp_path / "a" / "readme.txt").write_text("x")
    env = {"GENICAM_GENTL64_PATH": f"{tmp_path / 'a'}:{tmp_path / 'missing'}"}
    found = gentl_producers(env)
    assert f"{tmp_path / 'a' / 'vendor.cti'} (GENICAM_GENTL64_PATH)" in found
    assert any("missing" in f and "does not exist" in f for f in found)
    assert not any("readme" in f for f in found)
