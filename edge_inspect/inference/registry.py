"""Backend plugins chosen by the config's `backend.type`; imported only when selected, so a CPU
box never needs TensorRT or torch."""

from __future__ import annotations

import importlib
from pathlib import Path

from edge_inspect.errors import ConfigError
from edge_inspect.inference.base import Backend

_PLUGINS = {
    "onnxruntime": ("edge_inspect.inference.onnxruntime_backend", "OnnxRuntimeBackend"),
    "torch": ("edge_inspect.inference.torch_backend", "TorchBackend"),
    "tensorrt": ("edge_inspect.inference.tensorrt_backend", "TensorRTBackend"),
}


def create_backend(cfg) -> Backend:
    """The backend for `cfg.type`; a missing optional library is the plugin's own one-line error."""
    try:
        module, cls = _PLUGINS[cfg.type]
    except KeyError:
        raise ConfigError(
            f"inference.backend.type: unknown backend {cfg.type!r} (known: {', '.join(_PLUGINS)})"
        ) from None
    return getattr(importlib.import_module(module), cls)(cfg)


def create_configured_backend(cfg) -> Backend:
    """The backend of the configuration's `inference.backend`: a model file it names that does not
    exist is a configuration problem (exit 78, like a missing calibration), not bad data."""
    key = "engine" if cfg.type == "tensorrt" else "model"
    path = Path(cfg.model)
    if not path.is_file():
        raise ConfigError(f"inference.backend.{key}: {path}: model file not found")
    return create_backend(cfg)
