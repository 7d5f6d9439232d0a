"""What a TensorRT plan is tied to, checked when it is loaded: its manifest (`<plan>.json`, written
by `edge-inspect build-engine`) must match the plan's sha256, this machine's TensorRT version and
the GPU model and compute capability. The checks are pure functions, tested without TensorRT;
the run-time backend uses them without importing the build-time `export` package."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_inspect.errors import InputDataError
from edge_inspect.inference.manifest import (
    manifest_path,
    manifest_trained_on,
    read_manifest,
    sha256_file,
)

ENGINE_FORMAT = "edge-inspect-tensorrt-plan"


@dataclass(frozen=True)
class RuntimeInfo:
    """What a plan is tied to on the machine that loads it."""

    tensorrt: str
    gpu_name: str
    compute_capability: str


def rebuild_hint(manifest: dict | None, plan: Path) -> str:
    onnx = (manifest or {}).get("onnx", {}).get("file") or "MODEL.onnx"
    return f"rebuild it on this machine: edge-inspect build-engine {onnx} --out {plan}"


def check_engine_manifest(manifest: dict, plan_sha256: str, runtime: RuntimeInfo) -> list[str]:
    """Every reason this plan must not be loaded here (empty: fine). Pure, for tests and doctor."""
    problems: list[str] = []
    if manifest.get("format") != ENGINE_FORMAT:
        problems.append(f"manifest format is {manifest.get('format')!r}, not {ENGINE_FORMAT!r}")
    want = manifest.get("sha256")
    if want != plan_sha256:
        problems.append(f"sha256 {plan_sha256[:12]} does not match the manifest ({str(want)[:12]}): "
                        "the plan was changed or corrupted")
    trt = manifest.get("tensorrt")
    if trt != runtime.tensorrt:
        problems.append(f"built with TensorRT {trt}, this machine has {runtime.tensorrt}")
    gpu = manifest.get("gpu") or {}
    if gpu.get("name") != runtime.gpu_name:
        problems.append(f"built for GPU {gpu.get('name')!r}, this machine has {runtime.gpu_name!r}")
    if str(gpu.get("compute_capability")) != runtime.compute_capability:
        problems.append(f"built for compute capability {gpu.get('compute_capability')}, "
                        f"this GPU is {runtime.compute_capability}")
    if not isinstance(manifest.get("model_sha256"), str):
        problems.append("manifest lacks model_sha256 (the ONNX the plan was built from)")
    return problems


def verify_engine(plan: Path, runtime: RuntimeInfo) -> dict[str, Any]:
    """The plan's manifest after all checks; InputDataError naming every problem otherwise."""
    plan = Path(plan)
    if not plan.is_file():
        raise InputDataError(f"{plan}: engine file not found (make one with edge-inspect build-engine)")
    manifest = read_manifest(plan)
    if manifest is None:
        raise InputDataError(f"{plan}: no manifest {manifest_path(plan).name} beside it; {rebuild_hint(None, plan)}")
    problems = check_engine_manifest(manifest, sha256_file(plan), runtime)
    if problems:
        raise InputDataError(f"{plan}: refused: " + "; ".join(problems) + f"; {rebuild_hint(manifest, plan)}")
    return manifest


def engine_trained_on(plan: Path, manifest: dict) -> dict | None:
    """What the plan's model was trained on: the `trained_on` of the ONNX it was built from,
    when that ONNX (named in the plan's manifest) still lies beside the plan with its manifest
    and is the same file; None otherwise (then nobody can tell)."""
    onnx = manifest.get("onnx") or {}
    if not onnx.get("file"):
        return None
    source = Path(plan).parent / onnx["file"]
    if (read_manifest(source) or {}).get("sha256") != manifest.get("model_sha256"):
        return None
    return manifest_trained_on(source)


def import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise InputDataError(
            "TensorRT is not installed: pip install 'edge-inspect[gpu]' on a machine with an NVIDIA GPU "
            f"(or use inference.backend.type: onnxruntime / torch) ({exc})"
        ) from None
    return trt
