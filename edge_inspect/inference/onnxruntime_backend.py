"""ONNX Runtime on the CPU: the backend every machine has."""

from __future__ import annotations

import os

import numpy as np

from edge_inspect.config import OnnxRuntimeBackendConfig
from edge_inspect.errors import InputDataError
from edge_inspect.inference.base import SyncSubmit
from edge_inspect.inference.manifest import manifest_trained_on, verify_model_file


class OnnxRuntimeBackend(SyncSubmit):
    name = "onnxruntime"

    def __init__(self, cfg: OnnxRuntimeBackendConfig) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise InputDataError(
                "onnxruntime is not installed: pip install 'edge-inspect[cpu]'"
            ) from None
        self.model_sha256 = verify_model_file(cfg.model)
        self.trained_on = manifest_trained_on(cfg.model)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = cfg.threads or (os.cpu_count() or 1)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        # Memory patterns are planned and cached per input shape, each holding its own blocks of
        # the CPU arena; the service's batches vary in size (1..batch_size), so with patterns the
        # arena grows by tens of MB over hours as new sizes turn up, and never shrinks. Without
        # them (and after warm_up) it stays flat, at the same speed (benchmarks/RESULTS.md).
        opts.enable_mem_pattern = False
        try:
            self._session = ort.InferenceSession(str(cfg.model), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputDataError(f"{cfg.model}: not a loadable ONNX model ({first[:200]})") from None
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or inputs[0].type != "tensor(uint8)" or len(inputs[0].shape) != 4:
            raise InputDataError(
                f"{cfg.model}: expected one uint8 input [batch, T, T, C], got "
                + ", ".join(f"{i.name} {i.type} {i.shape}" for i in inputs)
            )
        shape = inputs[0].shape
        if not (isinstance(shape[1], int) and shape[1] == shape[2] and shape[3] in (1, 3)):
            raise InputDataError(f"{cfg.model}: input shape {shape} is not [batch, T, T, 1|3]")
        self._input = inputs[0].name
        self.tile_size = int(shape[1])
        self.channels = int(shape[3])
        self.score_names = tuple(o.name for o in self._session.get_outputs())

    def score(self, tiles: np.ndarray) -> dict[str, np.ndarray]:
        outs = self._session.run(None, {self._input: tiles})
        return {n: np.asarray(o, dtype=np.float32).reshape(-1) for n, o in zip(self.score_names, outs)}

    def close(self) -> None:
        self._session = None
