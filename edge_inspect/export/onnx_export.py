"""Export the scoring graph (uint8 tiles in, named scores out) to ONNX, check it, write a manifest.

The graph includes preprocessing, so every backend takes the same uint8 NHWC tiles. Each export
is verified against torch in ONNX Runtime (CPU) before the manifest is written: a model file
with a manifest has passed the parity check.
"""

from __future__ import annotations

import datetime as _dt
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch

from edge_inspect.atomic import atomic_path, write_atomic
from edge_inspect.errors import EdgeInspectError
from edge_inspect.inference.manifest import manifest_path, sha256_file
from edge_inspect.models.checkpoint import checkpoint_trained_on, load_checkpoint
from edge_inspect.models.scoring import ScoringModel
from edge_inspect.progress import Progress

__all__ = ["INPUT_NAME", "OPSET", "export_onnx", "export_scoring_model", "check_onnx"]

log = structlog.get_logger(__name__)

INPUT_NAME = "tiles"
OPSET = 17
# parity limits, |ort - torch| <= atol + rtol * |torch|, per score
_TOL = {False: (1e-4, 1e-3), True: (2e-2, 5e-2)}


def export_scoring_model(model: ScoringModel, out: Path, opset: int = OPSET) -> None:
    """Trace ``model`` to ONNX with a dynamic batch axis (TorchScript exporter: plain static graph)."""
    model.eval()
    example = torch.zeros((2, model.tile, model.tile, model.channels), dtype=torch.uint8)
    names = list(model.score_names)
    axes = {INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in names}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        torch.onnx.export(
            model,
            (example,),
            str(out),
            input_names=[INPUT_NAME],
            output_names=names,
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


def check_onnx(
    model: ScoringModel,
    onnx_path: Path,
    fp16: bool = False,
    batches: tuple[int, ...] = (1, 5),
    seed: int = 0,
    reference: ScoringModel | None = None,
) -> dict[str, float]:
    """Run the ONNX file in ONNX Runtime (CPU) and compare to torch; raise on a large difference.

    The reference is the FP32 torch model (``reference`` or ``model``), so an FP16 export is
    judged against what it approximates. Returns the max abs difference per score.
    """
    import onnxruntime as ort

    ref = reference if reference is not None else model
    ref.eval()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise EdgeInspectError(f"{onnx_path}: exported model does not load in ONNX Runtime ({exc})") from None
    rng = np.random.default_rng(seed)
    atol, rtol = _TOL[fp16]
    names = list(model.score_names)
    # the limits are in raw units: a normalised score's difference is compared times its scale
    norm = ref.normalization()
    worst = dict.fromkeys(names, 0.0)
    for b in batches:
        tiles = rng.integers(0, 256, size=(b, model.tile, model.tile, model.channels), dtype=np.uint8)
        with torch.no_grad():
            want = [t.numpy() for t in ref(torch.from_numpy(tiles))]
        got = sess.run(names, {INPUT_NAME: tiles})
        for name, w, g in zip(names, want, got):
            if g.shape != (b,) or g.dtype != np.float32:
                raise EdgeInspectError(f"{onnx_path}: output {name} is {g.dtype} {g.shape}, expected float32 ({b},)")
            diff = np.abs(g - w)
            worst[name] = max(worst[name], float(diff.max()))
            centre, scale = norm.get(name, (0.0, 1.0))
            if not np.all(diff * scale <= atol + rtol * np.abs(w * scale + centre)):
                raise EdgeInspectError(
                    f"{onnx_path}: ONNX Runtime differs from torch on {name} at batch {b}: "
                    f"max abs diff {diff.max():.3g} (torch {w.tolist()}, onnx {g.tolist()})"
                )
    return worst


def export_onnx(checkpoint: Path, out: Path, fp16: bool = False, opset: int = OPSET) -> dict[str, Any]:
    """Export a training checkpoint to ``out`` (ONNX) plus ``<out>.json`` manifest; returns it.

    FP16 casts the generator's weights and activations to half inside the graph; the input stays
    uint8 and the scores stay float32, so backends need no change.
    """
    import onnx

    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    out = Path(out)
    with Progress(f"export {out.name}", total=3, unit="steps") as bar:
        bar.note("loading the checkpoint")
        model, cfg = load_checkpoint(Path(checkpoint))
        fp32_ref = model
        if fp16:
            model = model.as_half().eval()
        bar.update()
        with atomic_path(out) as tmp:  # checked before it replaces anything
            bar.note("tracing the scoring graph")
            export_scoring_model(model, tmp, opset)
            bar.update()
            bar.note("checking it against torch in ONNX Runtime")
            onnx.checker.check_model(str(tmp))
            diffs = check_onnx(model, tmp, fp16=fp16, reference=fp32_ref)
            bar.update()

    tile, channels = model.tile, model.channels
    manifest: dict[str, Any] = {
        "file": out.name,
        "sha256": sha256_file(out),
        "bytes": out.stat().st_size,
        "format": "onnx",
        "opset": opset,
        "input": {"name": INPUT_NAME, "shape": ["batch", tile, tile, channels], "dtype": "uint8", "layout": "NHWC"},
        "outputs": list(model.score_names),
        "decision_score": cfg.decision(),
        "output_dtype": "float32",
        "tile_size": tile,
        "channels": channels,
        "precision": "fp16" if fp16 else "fp32",
        "model": {**cfg.model_dump(mode="json"), "residual_kernel": model.residual_kernel},
        "source_checkpoint": str(Path(checkpoint).name),
        "source_checkpoint_sha256": sha256_file(Path(checkpoint)),
        # what training read (files and sha256): calibrate refuses those scans as fresh boards
        "trained_on": checkpoint_trained_on(Path(checkpoint)),
        "parity_max_abs_diff": diffs,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, **_ort_version()},
    }
    write_atomic(manifest_path(out), json.dumps(manifest, indent=2))
    log.info("export.done", out=str(out), bytes=manifest["bytes"], precision=manifest["precision"],
             sha256=manifest["sha256"][:12], max_abs_diff=max(diffs.values()))
    return manifest


def _ort_version() -> dict[str, str]:
    try:
        import onnxruntime as ort
    except ImportError:
        return {}
    return {"onnxruntime": ort.__version__}
