"""A training checkpoint scored by torch, on the CPU or a CUDA GPU.

Why it exists: it needs no export step (commissioning, checking a fresh checkpoint on the line
PC) and it is the reference the ONNX and TensorRT paths are compared with. torch is imported
only when this backend is selected.

On CUDA (untested here: this project's CI box has no GPU, see README "GPU backends"):

* FP16 weights and activations (scores stay FP32, as in the FP16 ONNX export), channels_last
  weights; the uint8 NHWC input permuted to NCHW is already channels_last-strided, so no
  layout copy happens;
* one CUDA graph per configured batch size and per stream slot; a partial batch is padded up to
  the nearest captured size (the padding rows' scores are dropped), a larger batch is split;
* pinned host staging (or the pinned tile ring from `allocate_ring`), two stream slots
  (`inference.in_flight`): `score()` keeps two chunks of one large batch in flight, and
  `submit()`/`collect()` let the pipeline keep two batches in flight (H2D of batch n+1 overlaps
  compute of batch n); the tiles of a submitted batch must stay untouched until its `collect()`
  (the H2D copy reads them asynchronously).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from edge_inspect.config import TorchBackendConfig
from edge_inspect.errors import InputDataError
from edge_inspect.inference.base import Ticket
from edge_inspect.inference.in_flight import InFlight
from edge_inspect.inference.manifest import (
    read_manifest,
    sha256_file,
    verify_model_file,
)

log = structlog.get_logger(__name__)


def model_identity(checkpoint: Path, checkpoint_sha256: str, onnx: Path | None) -> str:
    """The sha256 that names this model in calibrations and records.

    Calibrations are made for an ONNX file; a checkpoint scored by torch is that model when the
    ONNX was exported from it (its manifest says so). Without `onnx` it is the checkpoint's own
    sha256, which only a calibration without a `model` key accepts."""
    if onnx is None:
        return checkpoint_sha256
    onnx_sha = verify_model_file(Path(onnx))
    manifest = read_manifest(Path(onnx)) or {}
    src = manifest.get("source_checkpoint_sha256")
    if src is None:
        raise InputDataError(f"{onnx}: its manifest does not name the checkpoint it was exported from")
    if src != checkpoint_sha256:
        raise InputDataError(
            f"{onnx} was exported from checkpoint {str(src)[:12]}, not from {checkpoint} "
            f"({checkpoint_sha256[:12]}); point inference.backend.onnx at its own export"
        )
    return onnx_sha


@dataclass
class _Slot:
    """One batch in flight on the GPU: its stream, staging buffers, graphs and done-event."""

    stream: Any
    host_in: Any                     # pinned uint8 [Bmax, T, T, C]
    host_out: dict[str, Any]         # pinned float32 [Bmax] per score
    done: Any                        # torch.cuda.Event recorded after the D2H copies
    graphs: dict[int, tuple[Any, Any, tuple[Any, ...]]] = field(default_factory=dict)
    busy: Ticket | None = None


class TorchBackend(InFlight):
    name = "torch"

    def __init__(self, cfg: TorchBackendConfig) -> None:
        try:
            import torch
        except ImportError:
            raise InputDataError(
                "torch is not installed: pip install 'edge-inspect[train]' (the torch backend "
                "scores a training checkpoint), or use inference.backend.type: onnxruntime"
            ) from None
        from edge_inspect.models.checkpoint import checkpoint_trained_on, load_checkpoint

        self._torch = torch
        ckpt = Path(cfg.model)
        if not ckpt.is_file():
            raise InputDataError(f"{ckpt}: checkpoint not found (the torch backend takes model.pt from train)")
        self.model_sha256 = model_identity(ckpt, sha256_file(ckpt), cfg.onnx)
        model, _ = load_checkpoint(ckpt)
        self.trained_on = checkpoint_trained_on(ckpt)
        self.device = torch.device(cfg.device)
        self.cuda = self.device.type == "cuda"
        if self.cuda:
            if not torch.cuda.is_available():
                raise InputDataError(
                    f"inference.backend.device is {cfg.device} but torch sees no CUDA device (torch "
                    f"{torch.__version__}, CUDA build {torch.version.cuda or 'none'}); use device: cpu"
                )
            index = self.device.index or 0
            if index >= torch.cuda.device_count():
                raise InputDataError(
                    f"inference.backend.device is {cfg.device} but torch sees {torch.cuda.device_count()} CUDA device(s)"
                )
            self.device = torch.device("cuda", index)
        elif cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.half = bool(cfg.fp16 and self.cuda)
        if self.half:  # same construction as the FP16 ONNX export: nets in half, scores in FP32
            model = model.as_half()
        model = model.eval().to(self.device)
        if self.cuda and cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        for p in model.parameters():
            p.requires_grad_(False)
        self._model = model
        self.tile_size = int(model.tile)
        self.channels = int(model.channels)
        self.score_names: tuple[str, ...] = tuple(model.score_names)
        self.precision = "fp16" if self.half else "fp32"
        self.batch_sizes = sorted(set(cfg.batch_sizes))
        self._max_batch = self.batch_sizes[-1]
        self._slots: list[_Slot] = []
        self._ring: Any = None  # pinned torch tensor behind allocate_ring's array
        if self.cuda:
            self._setup_cuda(cfg.cuda_graphs, streams=2)
        log.info("backend.torch", device=str(self.device), precision=self.precision,
                 graphs=bool(self.cuda and cfg.cuda_graphs), batch_sizes=self.batch_sizes,
                 model=self.model_sha256[:12])

    # -- CUDA setup (untested here) --------------------------------------------------------
    def _setup_cuda(self, graphs: bool, streams: int) -> None:
        torch = self._torch
        torch.backends.cudnn.benchmark = True
        t, c, bmax = self.tile_size, self.channels, self._max_batch
        with torch.cuda.device(self.device):
            for _ in range(streams):
                slot = _Slot(
                    stream=torch.cuda.Stream(device=self.device),
                    host_in=torch.empty((bmax, t, t, c), dtype=torch.uint8, pin_memory=True),
                    host_out={n: torch.empty(bmax, dtype=torch.float32, pin_memory=True) for n in self.score_names},
                    done=torch.cuda.Event(),
                )
                if graphs:
                    self._capture(slot)
                self._slots.append(slot)
            torch.cuda.synchronize(self.device)

    def _capture(self, slot: _Slot) -> None:
        """One graph per batch size on this slot's stream, largest first, sharing one memory pool
        (graphs of one slot never run concurrently)."""
        torch = self._torch
        t, c = self.tile_size, self.channels
        pool = None
        with torch.inference_mode():
            for b in sorted(self.batch_sizes, reverse=True):
                static_in = torch.zeros((b, t, t, c), dtype=torch.uint8, device=self.device)
                warm = torch.cuda.Stream(device=self.device)
                warm.wait_stream(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(warm):
                    for _ in range(3):  # cudnn autotuning and lazy init must happen outside capture
                        self._model(static_in)
                torch.cuda.current_stream(self.device).wait_stream(warm)
                torch.cuda.synchronize(self.device)
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g, pool=pool, stream=slot.stream):
                    outs = tuple(self._model(static_in))
                pool = g.pool()
                slot.graphs[b] = (g, static_in, outs)

    # -- pinned ring -----------------------------------------------------------------------
    def allocate_ring(self, capacity: int, tile_size: int, channels: int) -> np.ndarray:
        """Tile-ring slots in pinned host memory (CUDA) so H2D reads the ring directly; plain
        memory on the CPU. The pipeline passes this to TileRing(..., slots=...)."""
        torch = self._torch
        shape = (capacity, tile_size, tile_size, channels)
        if not self.cuda:
            return np.zeros(shape, np.uint8)
        self._ring = torch.zeros(shape, dtype=torch.uint8, pin_memory=True)
        return self._ring.numpy()

    def _pinned_view(self, tiles: np.ndarray) -> Any:
        """`tiles` as a pinned torch tensor without a copy when it lies inside the pinned ring."""
        ring = self._ring
        if ring is None or not tiles.flags.c_contiguous:
            return None
        off = tiles.__array_interface__["data"][0] - ring.data_ptr()
        if 0 <= off and off + tiles.nbytes <= ring.numel():  # a slice of the pinned tensor itself
            return ring.view(-1)[off:off + tiles.nbytes].view(tiles.shape)
        return None

    # -- scoring (on CUDA, InFlight drives the two slots) ---------------------------------
    def score(self, tiles: np.ndarray) -> dict[str, np.ndarray]:
        """Synchronous: float32 [B] per score."""
        if self.cuda:
            return super().score(tiles)
        self.check_tiles(tiles)
        return self._score_cpu(tiles) if len(tiles) else self.empty_scores()

    def submit(self, tiles: np.ndarray) -> Ticket:
        """On CUDA returns at once (see InFlight.submit); on the CPU the work is done here."""
        if self.cuda:
            return super().submit(tiles)
        return Ticket(n=len(tiles), result=self.score(tiles))

    def _launch(self, slot: _Slot, tiles: np.ndarray) -> None:
        torch = self._torch
        n = len(tiles)
        src = self._pinned_view(tiles)
        if src is None:  # stage through this slot's pinned buffer (one host memcpy)
            slot.host_in[:n].numpy()[...] = tiles
            src = slot.host_in[:n]
        bucket = next((b for b in self.batch_sizes if b >= n), None) if slot.graphs else None
        with torch.cuda.stream(slot.stream), torch.inference_mode():
            if bucket is not None:
                g, static_in, outs = slot.graphs[bucket]
                static_in[:n].copy_(src, non_blocking=True)  # rows n..bucket keep old bytes: padding
                g.replay()
            else:
                x = src.to(self.device, non_blocking=True)
                outs = tuple(self._model(x))
            for name, o in zip(self.score_names, outs):
                slot.host_out[name][:n].copy_(o[:n].float(), non_blocking=True)
            slot.done.record(slot.stream)

    def _finish(self, slot: _Slot, n: int) -> dict[str, np.ndarray]:
        slot.done.synchronize()
        return {name: slot.host_out[name][:n].numpy().copy() for name in self.score_names}

    def _score_cpu(self, tiles: np.ndarray) -> dict[str, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            outs = self._model(torch.from_numpy(np.ascontiguousarray(tiles)))
        return {name: o.float().numpy().reshape(-1).copy() for name, o in zip(self.score_names, outs)}

    def close(self) -> None:
        if self.cuda:
            for slot in self._slots:
                slot.done.synchronize()
        self._slots = []
        self._model = None
        self._ring = None
