"""TensorRT engine (from `edge-inspect build-engine`) run through pycuda.

UNTESTED HERE: this project's CI box has no GPU, TensorRT or pycuda. The manifest checks it
relies on are pure functions in `edge_inspect.inference.engine_manifest`, tested on the CPU.

Data path per batch (one stream slot): uint8 tiles, read straight from the pinned tile ring
(`allocate_ring`) or staged once into pinned memory -> H2D of the bytes -> execute_async_v3 with
name-based tensor addresses (set once per slot: buffers never move) -> D2H of the float32 scores
only -> event. Each slot has its own execution context, stream, event and buffers, so `streams`
batches can be in flight (`inference.in_flight`: `score()` overlaps the chunks of a large batch,
`submit()`/`collect()` let the pipeline keep two batches in flight; the tiles of a submitted
batch must stay untouched until collected).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import structlog

from edge_inspect.config import TensorRTBackendConfig
from edge_inspect.errors import EdgeInspectError, InputDataError
from edge_inspect.inference.cuda_memory import CudaDevice, PinnedRing, StreamSlot
from edge_inspect.inference.engine_manifest import (
    RuntimeInfo,
    engine_trained_on,
    import_tensorrt,
    rebuild_hint,
    verify_engine,
)
from edge_inspect.inference.in_flight import InFlight

log = structlog.get_logger(__name__)


class TensorRTBackend(InFlight):
    name = "tensorrt"

    def __init__(self, cfg: TensorRTBackendConfig) -> None:
        trt = import_tensorrt()
        self._trt = trt
        self._dev = CudaDevice(cfg.device)
        self._cuda = self._dev._cuda
        plan = Path(cfg.engine)
        runtime_info = RuntimeInfo(trt.__version__, self._dev.name, self._dev.compute_capability)
        manifest = verify_engine(plan, runtime_info)
        self.model_sha256: str = manifest["model_sha256"]
        self.trained_on = engine_trained_on(plan, manifest)
        self.precision = manifest.get("precision", "unknown")
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._slots: list[StreamSlot] = []
        self._ring: PinnedRing | None = None
        with self._dev.active():
            self._runtime = trt.Runtime(self._logger)
            self._engine = self._runtime.deserialize_cuda_engine(plan.read_bytes())
            if self._engine is None:
                raise InputDataError(f"{plan}: TensorRT could not deserialize the plan; {rebuild_hint(manifest, plan)}")
            self._inspect(plan)
            for _ in range(cfg.streams):
                slot = StreamSlot.allocate(self._cuda, self._max_batch, self.tile_size, self.channels, self.score_names)
                ctx = self._engine.create_execution_context()
                if ctx is None:
                    raise InputDataError(f"{plan}: cannot create an execution context (GPU memory?)")
                ctx.set_tensor_address(self._input, int(slot.d_in))
                for name in self.score_names:
                    ctx.set_tensor_address(name, int(slot.d_out[name]))
                slot.context = ctx
                self._slots.append(slot)
        log.info("backend.tensorrt", engine=str(plan), gpu=self._dev.name, precision=self.precision,
                 batch=f"{self._min_batch}..{self._max_batch}", streams=cfg.streams, model=self.model_sha256[:12])

    def _inspect(self, plan: Path) -> None:
        """Find the one uint8 NHWC input and the float32 [batch] outputs by name and mode."""
        trt, eng = self._trt, self._engine
        inputs, outputs = [], []
        for i in range(eng.num_io_tensors):
            name = eng.get_tensor_name(i)
            (inputs if eng.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(name)
        if len(inputs) != 1:
            raise InputDataError(f"{plan}: expected one input tensor, found {inputs}")
        self._input = inputs[0]
        if eng.get_tensor_dtype(self._input) != trt.DataType.UINT8:
            raise InputDataError(f"{plan}: input {self._input} is {eng.get_tensor_dtype(self._input)}, expected UINT8")
        shape = tuple(eng.get_tensor_shape(self._input))
        if len(shape) != 4 or shape[1] != shape[2] or shape[3] not in (1, 3):
            raise InputDataError(f"{plan}: input shape {shape} is not [batch, T, T, 1|3]")
        for name in outputs:
            if eng.get_tensor_dtype(name) != trt.DataType.FLOAT:
                raise InputDataError(f"{plan}: output {name} is {eng.get_tensor_dtype(name)}, expected FLOAT")
        self.tile_size, self.channels = int(shape[1]), int(shape[3])
        self.score_names: tuple[str, ...] = tuple(outputs)
        pmin, _, pmax = eng.get_tensor_profile_shape(self._input, 0)
        self._min_batch, self._max_batch = int(pmin[0]), int(pmax[0])

    # -- pinned ring -----------------------------------------------------------------------
    def allocate_ring(self, capacity: int, tile_size: int, channels: int) -> np.ndarray:
        """Pinned tile-ring slots; the pipeline passes them to TileRing(..., slots=...)."""
        with self._dev.active():
            self._ring = PinnedRing(self._cuda, capacity, tile_size, channels)
        return self._ring.array

    # -- one batch on one slot (InFlight does the rest) -------------------------------------
    def _launch(self, slot: StreamSlot, tiles: np.ndarray) -> None:
        cuda = self._cuda
        n = len(tiles)
        with self._dev.active():
            run = max(n, self._min_batch)  # below the profile's min: pad with staging rows
            if run == n and self._ring is not None and self._ring.contains(tiles):
                src = tiles
            else:
                slot.h_stage[:n] = tiles
                src = slot.h_stage[:run]
            cuda.memcpy_htod_async(slot.d_in, src, slot.stream)
            ctx = slot.context
            if not ctx.set_input_shape(self._input, (run, self.tile_size, self.tile_size, self.channels)):
                raise EdgeInspectError(f"TensorRT refused batch {run} (profile {self._min_batch}..{self._max_batch})")
            if not ctx.execute_async_v3(slot.stream.handle):
                raise EdgeInspectError("TensorRT execute_async_v3 failed (see the TensorRT log)")
            for name in self.score_names:
                cuda.memcpy_dtoh_async(slot.h_out[name][:n], slot.d_out[name], slot.stream)
            slot.done.record(slot.stream)

    def _finish(self, slot: StreamSlot, n: int) -> dict[str, np.ndarray]:
        with self._dev.active():
            slot.done.synchronize()
        return {name: out[:n].copy() for name, out in slot.h_out.items()}

    def close(self) -> None:
        if not self._slots and self._ring is None:
            return
        with self._dev.active():
            for slot in self._slots:
                slot.free()
            self._slots = []
            self._ring = None
            self._engine = None
            self._runtime = None
        self._dev.release()
