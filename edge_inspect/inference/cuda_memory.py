"""pycuda memory for the TensorRT backend: the device's primary context, the pinned tile ring,
and per-stream device/host buffers.

Why the primary context: it is the context the CUDA runtime (TensorRT, torch) uses, so pycuda,
TensorRT and torch can share one process and one GPU memory space. This is what
`pycuda.autoprimaryctx` does, but for a chosen device index and pushed per call, because the
backend is built on one thread and scores on another (a CUDA context is current per thread).

UNTESTED HERE: needs pycuda and an NVIDIA driver; this project's CI box has neither.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_inspect.errors import InputDataError


def import_pycuda() -> Any:
    """`pycuda.driver`, initialised, or a one-line error saying what to install."""
    try:
        import pycuda.driver as cuda
    except ImportError as exc:
        raise InputDataError(
            f"pycuda is not installed: pip install 'edge-inspect[gpu]' (needs the CUDA toolkit to build) ({exc})"
        ) from None
    try:
        cuda.init()
    except Exception as exc:  # pycuda raises its own LogicError/RuntimeError without a driver
        raise InputDataError(f"CUDA driver not usable: {exc}") from None
    return cuda


class CudaDevice:
    """One GPU's primary context, retained for the backend's lifetime."""

    def __init__(self, index: int) -> None:
        cuda = import_pycuda()
        self._cuda = cuda
        count = cuda.Device.count()
        if index >= count:
            raise InputDataError(f"inference.backend.device is {index} but the driver sees {count} CUDA device(s)")
        self.index = index
        self.device = cuda.Device(index)
        self.name: str = self.device.name()
        major, minor = self.device.compute_capability()
        self.compute_capability = f"{major}.{minor}"
        self.context = self.device.retain_primary_context()

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Make the primary context current on this thread for the block."""
        self.context.push()
        try:
            yield
        finally:
            self._cuda.Context.pop()

    def release(self) -> None:
        self.context = None


class PinnedRing:
    """The pipeline's tile ring in page-locked host memory, so H2D copies read the ring slots
    directly (no staging copy) and run asynchronously. PORTABLE: pinned for every context."""

    def __init__(self, cuda: Any, capacity: int, tile_size: int, channels: int) -> None:
        flags = cuda.host_alloc_flags.PORTABLE
        self.array: np.ndarray = cuda.pagelocked_empty((capacity, tile_size, tile_size, channels), np.uint8,
                                                      mem_flags=flags)
        self.array.fill(0)

    def contains(self, tiles: np.ndarray) -> bool:
        """True when `tiles` is a contiguous view into the ring (pinned, so no staging needed)."""
        if not tiles.flags.c_contiguous:
            return False
        off = tiles.__array_interface__["data"][0] - self.array.__array_interface__["data"][0]
        return 0 <= off and off + tiles.nbytes <= self.array.nbytes


@dataclass
class StreamSlot:
    """Everything one batch in flight needs: a stream, an event, device input/output buffers,
    pinned staging for tiles that are not in the pinned ring, pinned score outputs, and the
    TensorRT execution context bound to these addresses."""

    stream: Any
    done: Any
    d_in: Any
    d_out: dict[str, Any]
    h_stage: np.ndarray
    h_out: dict[str, np.ndarray]
    context: Any = None
    busy: Any = None

    @classmethod
    def allocate(cls, cuda: Any, max_batch: int, tile_size: int, channels: int,
                 outputs: tuple[str, ...]) -> StreamSlot:
        tile_bytes = tile_size * tile_size * channels
        return cls(
            stream=cuda.Stream(),
            done=cuda.Event(),
            d_in=cuda.mem_alloc(max_batch * tile_bytes),
            d_out={n: cuda.mem_alloc(max_batch * 4) for n in outputs},
            h_stage=cuda.pagelocked_empty((max_batch, tile_size, tile_size, channels), np.uint8),
            h_out={n: cuda.pagelocked_empty(max_batch, np.float32) for n in outputs},
        )

    def free(self) -> None:
        self.done.synchronize()
        self.d_in.free()
        for d in self.d_out.values():
            d.free()
        self.context = None
