"""Backend selection, the torch backend against ONNX Runtime on the CPU, engine-manifest
refusals (pure, no TensorRT), and GPU tests that run only where CUDA/TensorRT exist."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from structlog.testing import capture_logs

from edge_inspect import progress
from edge_inspect.config import (
    Config,
    OnnxRuntimeBackendConfig,
    TensorRTBackendConfig,
    TorchBackendConfig,
)
from edge_inspect.errors import ConfigError, InputDataError
from edge_inspect.export.engine import check_profile
from edge_inspect.inference.engine_manifest import (
    ENGINE_FORMAT,
    RuntimeInfo,
    check_engine_manifest,
    verify_engine,
)
from edge_inspect.inference.manifest import sha256_file
from edge_inspect.inference.registry import create_backend
from edge_inspect.inference.ring import TileRing

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
HAS_PYCUDA = importlib.util.find_spec("pycuda") is not None


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


needs_cuda = pytest.mark.skipif(not _cuda(), reason="no CUDA device visible to torch (GPU test)")
needs_trt = pytest.mark.skipif(not (HAS_TRT and HAS_PYCUDA),
                               reason="TensorRT and pycuda are not installed (pip install 'edge-inspect[gpu]')")


def _checkpoint(onnx: Path) -> Path:
    return onnx.parent / "model" / "model.pt"


def _tiles(n: int, nc: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 256, 256, nc), dtype=np.uint8)


# -- selection -------------------------------------------------------------------------------
def test_config_selects_backend_by_type() -> None:
    cfg = Config.model_validate({"inference": {"backend": {"type": "torch", "model": "m.pt", "device": "cuda:1",
                                                           "batch_sizes": [8, 1]}}})
    assert isinstance(cfg.inference.backend, TorchBackendConfig)
    cfg = Config.model_validate({"inference": {"backend": {"type": "tensorrt", "engine": "e.plan", "streams": 2}}})
    assert isinstance(cfg.inference.backend, TensorRTBackendConfig)
    assert cfg.inference.backend.model == Path("e.plan")  # what the service watches for reloads
    assert isinstance(Config().inference.backend, OnnxRuntimeBackendConfig)


def test_bad_backend_config_lists_every_problem(tmp_path: Path) -> None:
    from edge_inspect.config import load_config

    f = tmp_path / "c.yaml"
    f.write_text("inference:\n  backend: {type: torch, device: gpu, batch_sizes: [0], fp61: true}\n")
    with pytest.raises(ConfigError) as e:
        load_config(f)
    msg = str(e.value)
    assert "inference.backend.torch.device" in msg and "batch_sizes.0" in msg and "fp61: unknown key" in msg


def test_unknown_backend_type_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown backend 'openvino'"):
        create_backend(SimpleNamespace(type="openvino"))


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here; this checks the message without it")
def test_tensorrt_without_library_says_so(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="^TensorRT is not installed: pip install 'edge-inspect\\[gpu\\]'"):
        create_backend(TensorRTBackendConfig(type="tensorrt", engine=tmp_path / "x.plan"))


def test_ring_accepts_supplied_slots() -> None:
    slots = np.zeros((8, 16, 16, 3), np.uint8)
    ring = TileRing(8, 16, 3, slots=slots)
    assert ring.slots is slots
    with pytest.raises(ValueError, match="ring slots must be"):
        TileRing(8, 16, 1, slots=slots)


# -- engine manifest (pure) ------------------------------------------------------------------
RT = RuntimeInfo(tensorrt="10.9.0.34", gpu_name="NVIDIA H100 80GB HBM3", compute_capability="9.0")


def _manifest(**over) -> dict:
    m = {"format": ENGINE_FORMAT, "sha256": "a" * 64, "tensorrt": RT.tensorrt, "model_sha256": "b" * 64,
         "gpu": {"name": RT.gpu_name, "compute_capability": RT.compute_capability},
         "onnx": {"file": "demo_fp16.onnx"}}
    m.update(over)
    return m


def test_engine_manifest_accepts_its_own_machine() -> None:
    assert check_engine_manifest(_manifest(), "a" * 64, RT) == []


@pytest.mark.parametrize("over,plan_sha,expect", [
    ({}, "c" * 64, "does not match the manifest"),
    ({"tensorrt": "10.3.0"}, "a" * 64, "built with TensorRT 10.3.0, this machine has 10.9.0.34"),
    ({"gpu": {"name": "NVIDIA RTX A2000", "compute_capability": "8.6"}}, "a" * 64, "built for GPU 'NVIDIA RTX A2000'"),
    ({"gpu": {"name": RT.gpu_name, "compute_capability": "8.9"}}, "a" * 64, "compute capability 8.9"),
    ({"format": "onnx"}, "a" * 64, "manifest format"),
])
def test_engine_manifest_mismatch_is_named(over: dict, plan_sha: str, expect: str) -> None:
    problems = check_engine_manifest(_manifest(**over), plan_sha, RT)
    assert any(expect in p for p in problems), problems


def test_verify_engine_refuses_with_rebuild_hint(tmp_path: Path) -> None:
    plan = tmp_path / "demo.plan"
    plan.write_bytes(b"not really a plan")
    with pytest.raises(InputDataError, match="no manifest demo.plan.json"):
        verify_engine(plan, RT)
    m = _manifest(sha256=sha256_file(plan))
    (tmp_path / "demo.plan.json").write_text(json.dumps(m))
    assert verify_engine(plan, RT)["model_sha256"] == "b" * 64
    other = RuntimeInfo("10.9.0.34", "NVIDIA L4", "8.9")
    with pytest.raises(InputDataError) as e:
        verify_engine(plan, other)
    msg = str(e.value)
    assert "refused" in msg and "NVIDIA L4" in msg and "edge-inspect build-engine demo_fp16.onnx --out" in msg
    plan.write_bytes(b"tampered")
    with pytest.raises(InputDataError, match="plan was changed or corrupted"):
        verify_engine(plan, RT)
    with pytest.raises(InputDataError, match="engine file not found"):
        verify_engine(tmp_path / "missing.plan", RT)


def test_batch_profile_checked() -> None:
    check_profile(1, 16, 64)
    with pytest.raises(InputDataError, match="1 <= min <= opt <= max"):
        check_profile(8, 4, 64)


# -- torch backend on the CPU ----------------------------------------------------------------
@pytest.mark.train
def test_torch_cpu_matches_onnxruntime(tiny_model) -> None:
    onnx, _ = tiny_model(3)
    ort_b = create_backend(OnnxRuntimeBackendConfig(model=onnx))
    tb = create_backend(TorchBackendConfig(type="torch", model=_checkpoint(onnx), onnx=onnx, device="cpu"))
    try:
        assert tb.name == "torch" and tb.precision == "fp32"
        assert tb.model_sha256 == ort_b.model_sha256  # same model name for calibration and records
        assert (tb.tile_size, tb.channels, tb.score_names) == (ort_b.tile_size, ort_b.channels, ort_b.score_names)
        tiles = _tiles(5, 3)
        want, got = ort_b.score(tiles), tb.score(tiles)
        for name in tb.score_names:  # normalised scores: 2 % of a robust sigma is float rounding
            assert got[name].dtype == np.float32 and got[name].shape == (5,)
            np.testing.assert_allclose(got[name], want[name], rtol=1e-3, atol=2e-2, err_msg=name)
        # the async pair and the ring hook behave the same on the CPU
        ring = TileRing(8, 256, 3, slots=tb.allocate_ring(8, 256, 3))
        ring.slots[:5] = tiles
        t = tb.submit(ring.view(0, 5))
        np.testing.assert_allclose(tb.collect(t)["image_l1"], want["image_l1"], rtol=1e-3, atol=1e-4)
        assert all(len(v) == 0 for v in tb.score(tiles[:0]).values())
        with pytest.raises(InputDataError, match="takes uint8"):
            tb.score(tiles[..., :1])
    finally:
        tb.close()
        ort_b.close()


@pytest.mark.train
def test_torch_refuses_onnx_of_another_checkpoint(tiny_model) -> None:
    onnx3, _ = tiny_model(3)
    onnx1, _ = tiny_model(1)
    with pytest.raises(InputDataError, match="was exported from checkpoint"):
        create_backend(TorchBackendConfig(type="torch", model=_checkpoint(onnx3), onnx=onnx1))


@pytest.mark.train
@pytest.mark.skipif(_cuda(), reason="CUDA is available here; this checks the message without it")
def test_torch_cuda_without_gpu_says_so(tiny_model) -> None:
    onnx, _ = tiny_model(3)
    with pytest.raises(InputDataError, match="torch sees no CUDA device"):
        create_backend(TorchBackendConfig(type="torch", model=_checkpoint(onnx), device="cuda:0"))


# -- GPU (skipped on the CPU box) ------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.train
@needs_cuda
def test_torch_cuda_fp16_graphs_rank_like_cpu(tiny_model) -> None:
    from edge_inspect.export.parity import spearman

    onnx, _ = tiny_model(3)
    ck = _checkpoint(onnx)
    cpu = create_backend(TorchBackendConfig(type="torch", model=ck, device="cpu"))
    gpu = create_backend(TorchBackendConfig(type="torch", model=ck, device="cuda:0", batch_sizes=[1, 4, 8]))
    try:
        tiles = _tiles(21, 3, seed=3)  # 21 = 8 + 8 + 5: split, both slots, padded bucket
        want = cpu.score(tiles)
        ring = TileRing(32, 256, 3, slots=gpu.allocate_ring(32, 256, 3))
        ring.slots[:21] = tiles
        for got in (gpu.score(tiles), gpu.score(ring.view(0, 21))):
            for name in gpu.score_names:
                assert got[name].shape == (21,)
                np.testing.assert_allclose(got[name], want[name], rtol=5e-2, atol=2e-2, err_msg=name)
                assert spearman(got[name], want[name]) > 0.99
        t1, t2 = gpu.submit(tiles[:8]), gpu.submit(tiles[8:16])  # two batches in flight
        np.testing.assert_allclose(gpu.collect(t2)["image_l1"], want["image_l1"][8:16], rtol=5e-2, atol=2e-2)
        np.testing.assert_allclose(gpu.collect(t1)["image_l1"], want["image_l1"][:8], rtol=5e-2, atol=2e-2)
    finally:
        gpu.close()
        cpu.close()


@pytest.mark.gpu
@pytest.mark.train
@needs_trt
def test_tensorrt_engine_build_load_and_refuse(tiny_model, tmp_path: Path) -> None:
    from edge_inspect.export.engine import build_engine
    from edge_inspect.export.onnx_export import export_onnx

    onnx, _ = tiny_model(3)
    f16 = tmp_path / "tiny_fp16.onnx"
    export_onnx(_checkpoint(onnx), f16, fp16=True)
    plan = tmp_path / "tiny.plan"
    progress.set_interval(0)  # every step an event, so the build's phases show
    try:
        with capture_logs() as logs:
            m = build_engine(f16, plan, min_batch=1, opt_batch=8, max_batch=16, workspace_mb=512,
                             timing_cache=tmp_path / "tc.bin")
    finally:
        progress.set_interval(progress.DEFAULT_EVERY_S)
    assert plan.is_file() and (tmp_path / "tc.bin").is_file()
    assert any(e["event"] == "progress" and e["task"].startswith("build-engine ") for e in logs), logs
    assert m["precision"] == "fp16" and m["model_sha256"] == sha256_file(f16)
    ref = create_backend(OnnxRuntimeBackendConfig(model=f16))
    trt_b = create_backend(TensorRTBackendConfig(type="tensorrt", engine=plan))
    try:
        tiles = _tiles(37, 3, seed=5)  # 16 + 16 + 5 over two streams
        want, got = ref.score(tiles), trt_b.score(tiles)
        for name in trt_b.score_names:
            np.testing.assert_allclose(got[name], want[name], rtol=5e-2, atol=2e-2, err_msg=name)
        ring = TileRing(64, 256, 3, slots=trt_b.allocate_ring(64, 256, 3))
        ring.slots[:16] = tiles[:16]
        np.testing.assert_allclose(trt_b.score(ring.view(0, 16))["image_l1"], want["image_l1"][:16], rtol=5e-2, atol=2e-2)
    finally:
        trt_b.close()
        ref.close()
    with open(plan, "ab") as f:
        f.write(b"\0")
    with pytest.raises(InputDataError, match="changed or corrupted.*build-engine"):
        create_backend(TensorRTBackendConfig(type="tensorrt", engine=plan))
