"""TensorRT engine build (`edge-inspect build-engine`) and the engine manifest.

A serialized plan only runs on the TensorRT version and GPU model it was built for, and a plan
that silently changed would score wrongly; so every plan gets `<plan>.json` with its sha256,
the ONNX it came from, the TensorRT version, GPU name and compute capability, and loading
refuses any mismatch with a message saying how to rebuild (`inference/engine_manifest.py`, pure
functions tested without TensorRT). The build itself needs TensorRT and a GPU.

Precision: the network is created strongly typed, so tensor types come from the ONNX graph;
an FP16 engine comes from `edge-inspect export --fp16` (TensorRT 11 removed BuilderFlag.FP16;
strongly typed is its only mode and the flag is ignored there).
"""

from __future__ import annotations

import datetime as _dt
import json
import threading
import time
from pathlib import Path
from typing import Any

import structlog

from edge_inspect.atomic import write_atomic
from edge_inspect.errors import InputDataError
from edge_inspect.inference.engine_manifest import (
    ENGINE_FORMAT,
    RuntimeInfo,
    import_tensorrt,
)
from edge_inspect.inference.manifest import (
    manifest_path,
    read_manifest,
    sha256_file,
    verify_model_file,
)
from edge_inspect.progress import Progress

log = structlog.get_logger(__name__)


def check_profile(min_batch: int, opt_batch: int, max_batch: int) -> None:
    """1 <= min <= opt <= max, or a usage error naming the values."""
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise InputDataError(
            f"batch profile must satisfy 1 <= min <= opt <= max, got {min_batch}/{opt_batch}/{max_batch}")


def make_engine_manifest(*, plan: Path, onnx: Path, onnx_manifest: dict | None, runtime: RuntimeInfo,
                         input_name: str, tile_size: int, channels: int, outputs: list[str],
                         profile: tuple[int, int, int], workspace_mb: int, timing_cache: Path | None,
                         build_seconds: float) -> dict[str, Any]:
    """The manifest written beside a plan (pure apart from hashing the two files)."""
    onnx_sha = sha256_file(onnx)
    om = onnx_manifest or {}
    return {
        "format": ENGINE_FORMAT,
        "file": plan.name,
        "sha256": sha256_file(plan),
        "bytes": plan.stat().st_size,
        # calibrations and records name the ONNX model; the plan is that model on this GPU
        "model_sha256": onnx_sha,
        "onnx": {"file": onnx.name, "sha256": onnx_sha, "precision": om.get("precision")},
        "precision": om.get("precision") or "unknown",
        "tensorrt": runtime.tensorrt,
        "gpu": {"name": runtime.gpu_name, "compute_capability": runtime.compute_capability},
        "input": {"name": input_name, "dtype": "uint8", "layout": "NHWC", "shape": ["batch", tile_size, tile_size, channels]},
        "outputs": outputs,
        "output_dtype": "float32",
        "tile_size": tile_size,
        "channels": channels,
        "profile": {"min": profile[0], "opt": profile[1], "max": profile[2]},
        "workspace_mb": workspace_mb,
        "timing_cache": str(timing_cache) if timing_cache else None,
        "decision_score": om.get("decision_score"),
        "build_seconds": round(build_seconds, 1),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def build_engine(onnx: Path, out: Path, *, min_batch: int = 1, opt_batch: int = 16, max_batch: int = 64,
                 workspace_mb: int = 2048, timing_cache: Path | None = None, device: int = 0) -> dict[str, Any]:
    """Build `out` (.plan) from `onnx` and write `<out>.json`; returns the manifest. Build phases
    show as progress bars (PhaseBars), other steps as log lines.

    UNTESTED HERE (no TensorRT/GPU on the CI box): see README "GPU backends"."""
    onnx, out = Path(onnx), Path(out)
    check_profile(min_batch, opt_batch, max_batch)
    verify_model_file(onnx)  # refuses an ONNX that differs from its own manifest
    onnx_manifest = read_manifest(onnx)
    trt = import_tensorrt()
    from edge_inspect.inference.cuda_memory import CudaDevice

    dev = CudaDevice(device)
    runtime = RuntimeInfo(trt.__version__, dev.name, dev.compute_capability)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly_typed is not None:  # TensorRT 10: opt in; 11: always on (flag deprecated)
        flags |= 1 << int(strongly_typed)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise InputDataError(f"{onnx}: TensorRT cannot parse it: {errors[:500]}")
    if network.num_inputs != 1:
        raise InputDataError(f"{onnx}: expected one input (tiles), found {network.num_inputs}")
    inp = network.get_input(0)
    shape = tuple(inp.shape)
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] not in (1, 3) or shape[1] <= 0:
        raise InputDataError(f"{onnx}: input {inp.name} has shape {shape}, expected [batch, T, T, 1|3]")
    tile, channels = int(shape[1]), int(shape[3])
    outputs = [network.get_output(i).name for i in range(network.num_outputs)]

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, (min_batch, tile, tile, channels), (opt_batch, tile, tile, channels),
                      (max_batch, tile, tile, channels))
    config.add_optimization_profile(profile)
    cache_blob = b""
    if timing_cache is not None and Path(timing_cache).is_file():
        cache_blob = Path(timing_cache).read_bytes()
        log.info("build_engine.timing_cache", path=str(timing_cache), bytes=len(cache_blob))
    cache = config.create_timing_cache(cache_blob)
    if not config.set_timing_cache(cache, False):
        log.warning("build_engine.timing_cache_mismatch", path=str(timing_cache),
                    action="the cache does not match this TensorRT/GPU; starting a fresh one")
        config.set_timing_cache(config.create_timing_cache(b""), False)
    monitor = _progress_monitor(trt)
    config.progress_monitor = monitor  # must outlive the build

    log.info("build_engine.start", out=out.name, tensorrt=runtime.tensorrt, gpu=runtime.gpu_name,
             compute_capability=runtime.compute_capability, batch=f"{min_batch}/{opt_batch}/{max_batch}",
             workspace_mb=workspace_mb)
    t0 = time.monotonic()
    with dev.active():
        serialized = builder.build_serialized_network(network, config)
    seconds = time.monotonic() - t0
    if serialized is None:
        raise InputDataError(f"{onnx}: TensorRT engine build failed (see the TensorRT messages above)")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, bytes(memoryview(serialized)))
    if timing_cache is not None:
        write_atomic(Path(timing_cache), bytes(memoryview(config.get_timing_cache().serialize())))
    manifest = make_engine_manifest(
        plan=out, onnx=onnx, onnx_manifest=onnx_manifest, runtime=runtime, input_name=inp.name,
        tile_size=tile, channels=channels, outputs=outputs, profile=(min_batch, opt_batch, max_batch),
        workspace_mb=workspace_mb, timing_cache=timing_cache, build_seconds=seconds,
    )
    write_atomic(manifest_path(out), json.dumps(manifest, indent=2))
    dev.release()
    return manifest


class PhaseBars:
    """TensorRT's build phases as progress bars: one per top-level phase with its steps as the
    total, the sub-phase running as its note. TensorRT calls in from several threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth: dict[str, int] = {}
        self._bars: dict[str, Progress] = {}

    def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
        with self._lock:
            depth = 0 if not parent_phase else self._depth.get(parent_phase, 0) + 1
            self._depth[phase_name] = depth
            if depth == 0:
                self._bars[phase_name] = Progress(f"build-engine {phase_name}", total=num_steps, unit="steps")
            elif depth == 1 and parent_phase in self._bars:
                self._bars[parent_phase].note(phase_name)

    def step_complete(self, phase_name: str, step: int) -> bool:
        with self._lock:
            bar = self._bars.get(phase_name)
            if bar is not None:
                bar.set(step + 1)
        return True  # False would cancel the build

    def phase_finish(self, phase_name: str) -> None:
        with self._lock:
            self._depth.pop(phase_name, None)
            bar = self._bars.pop(phase_name, None)
            if bar is not None:
                bar.close()


def _progress_monitor(trt: Any) -> Any:
    """An IProgressMonitor that hands TensorRT's calls to PhaseBars."""

    class _Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.bars = PhaseBars()

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self.bars.phase_start(phase_name, parent_phase, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            return self.bars.step_complete(phase_name, step)

        def phase_finish(self, phase_name: str) -> None:
            self.bars.phase_finish(phase_name)

    return _Monitor()
