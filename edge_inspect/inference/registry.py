"""Backend plugins chosen by the config's `backend.type`; imported only when selected, so a CPU
box never needs TensorRT or torch."""

from __future__ import annotations

import importlib

from edge_inspect.inference.base import Backend

_PLUGINS = {
    "onnxruntime": ("edge_inspect.inference.onnxruntime_backend", "OnnxRuntimeBackend"),
}


def create_backend(cfg) -> Backend:
    module, cls = _PLUGINS[cfg.type]
    return getattr(importlib.import_module(module), cls)(cfg)
