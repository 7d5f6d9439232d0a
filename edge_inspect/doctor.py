"""`edge-inspect doctor`: what this machine can run, and why not.

Each probe is guarded: a missing or broken library is a finding, never a crash, so the command
always exits 0 and its output can be pasted into a support ticket. GenTL producers are only
listed (no harvester is opened: that can take seconds and grab a camera another process uses).
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Finding:
    name: str
    ok: bool
    detail: str


@dataclass
class DoctorReport:
    findings: list[Finding] = field(default_factory=list)
    backends: dict[str, str] = field(default_factory=dict)  # backend -> "usable" or why not
    producers: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"edge-inspect doctor: Python {platform.python_version()} on {platform.platform()}"]
        out += [f"  [{'ok' if f.ok else '--'}] {f.name:12s} {f.detail}" for f in self.findings]
        out.append("backends:")
        out += [f"  {name:18s} {why}" for name, why in self.backends.items()]
        out.append("GenTL producers:" + ("" if self.producers else " none found"))
        out += [f"  {p}" for p in self.producers]
        return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _onnxruntime() -> tuple[Finding, str]:
    try:
        import onnxruntime as ort
    except Exception as exc:
        return Finding("onnxruntime", False, f"not importable ({_first_line(exc)}); pip install 'edge-inspect[cpu]'"), \
            "not usable: onnxruntime is not installed"
    providers = ", ".join(ort.get_available_providers())
    return Finding("onnxruntime", True, f"{ort.__version__}, providers: {providers}"), "usable"


def _torch() -> tuple[Finding, str, str]:
    try:
        import torch
    except Exception as exc:
        why = "not usable: torch is not installed (pip install 'edge-inspect[train]')"
        return Finding("torch", False, f"not importable ({_first_line(exc)})"), why, why
    try:
        if torch.cuda.is_available():
            names = [f"cuda:{i} {torch.cuda.get_device_name(i)} (sm {'.'.join(map(str, torch.cuda.get_device_capability(i)))})"
                     for i in range(torch.cuda.device_count())]
            detail = f"{torch.__version__}, CUDA {torch.version.cuda}: " + "; ".join(names)
            return Finding("torch", True, detail), "usable", "usable"
        cuda_why = ("not usable: this torch is a CPU build" if not torch.version.cuda
                    else f"not usable: torch (CUDA {torch.version.cuda}) sees no GPU/driver")
        return Finding("torch", True, f"{torch.__version__}, CUDA: no ({cuda_why[12:]})"), "usable", cuda_why
    except Exception as exc:
        why = f"not usable: torch CUDA probe failed ({_first_line(exc)})"
        return Finding("torch", True, f"{torch.__version__}, CUDA probe failed"), "usable", why


def _tensorrt() -> tuple[Finding, str | None]:
    try:
        import tensorrt as trt
    except Exception as exc:
        return Finding("tensorrt", False, f"not importable ({_first_line(exc)}); pip install 'edge-inspect[gpu]'"), \
            "TensorRT is not installed"
    return Finding("tensorrt", True, trt.__version__), None


def _pycuda() -> tuple[Finding, str | None]:
    try:
        import pycuda.driver as cuda
    except Exception as exc:
        return Finding("pycuda", False, f"not importable ({_first_line(exc)}); pip install 'edge-inspect[gpu]'"), \
            "pycuda is not installed"
    try:
        cuda.init()
        v = cuda.get_driver_version()
        devs = [f"{i}: {cuda.Device(i).name()} (sm {'.'.join(map(str, cuda.Device(i).compute_capability()))})"
                for i in range(cuda.Device.count())]
    except Exception as exc:
        return Finding("pycuda", False, f"imported, but the CUDA driver is not usable ({_first_line(exc)})"), \
            "no usable CUDA driver"
    if not devs:
        return Finding("pycuda", False, f"driver CUDA {v // 1000}.{(v % 1000) // 10}, no GPU"), "no GPU"
    return Finding("pycuda", True, f"driver CUDA {v // 1000}.{(v % 1000) // 10}; " + "; ".join(devs)), None


def gentl_producers(env: dict[str, str] | None = None) -> list[str]:
    """Every *.cti in the GENICAM_GENTL64_PATH folders, plus the genicam wheel's viky.cti
    (simulated cameras), as 'path (where found)'. Listing only."""
    env = os.environ if env is None else env
    found: list[str] = []
    seen: set[str] = set()
    for folder in filter(None, env.get("GENICAM_GENTL64_PATH", "").split(os.pathsep)):
        p = Path(folder)
        ctis = sorted(p.glob("*.cti")) if p.is_dir() else []
        if not p.is_dir():
            found.append(f"{p} (GENICAM_GENTL64_PATH folder does not exist)")
        for cti in ctis:
            if str(cti) not in seen:
                seen.add(str(cti))
                found.append(f"{cti} (GENICAM_GENTL64_PATH)")
    try:
        spec = importlib.util.find_spec("genicam")
    except (ImportError, ValueError):
        spec = None
    for loc in (spec.submodule_search_locations or []) if spec else []:
        for cti in sorted(Path(loc).rglob("viky.cti")):
            if str(cti) not in seen:
                seen.add(str(cti))
                found.append(f"{cti} (genicam wheel, simulated cameras)")
    return found


def run_doctor() -> DoctorReport:
    rep = DoctorReport()
    f_ort, ort_why = _onnxruntime()
    f_torch, torch_cpu, torch_cuda = _torch()
    f_trt, trt_why = _tensorrt()
    f_pc, pc_why = _pycuda()
    rep.findings += [f_ort, f_torch, f_trt, f_pc]
    try:
        import harvesters  # noqa: F401 - presence only, nothing is opened

        rep.findings.append(Finding("harvesters", True, "importable (camera extra)"))
    except Exception as exc:
        rep.findings.append(Finding("harvesters", False, f"not importable ({_first_line(exc)}); pip install 'edge-inspect[camera]'"))
    rep.backends["onnxruntime (cpu)"] = ort_why
    rep.backends["torch cpu"] = torch_cpu
    rep.backends["torch cuda"] = torch_cuda
    why_not = [w for w in (trt_why, pc_why) if w]
    rep.backends["tensorrt"] = "usable" if not why_not else "not usable: " + "; ".join(why_not)
    rep.producers = gentl_producers()
    rep.findings.insert(0, Finding("python", True, sys.executable))
    return rep
