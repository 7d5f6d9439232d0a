"""Model manifests: the sha256 that ties a model file to its calibration and records."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from edge_inspect.errors import InputDataError


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def manifest_path(model: Path) -> Path:
    return model.with_name(model.name + ".json")


def read_manifest(model: Path) -> dict | None:
    """The model's manifest, or None when it has none; a manifest that is unreadable is an error."""
    path = manifest_path(model)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputDataError(f"{path}: unreadable model manifest ({exc})") from None
    if not isinstance(data, dict):
        raise InputDataError(f"{path}: model manifest must be a JSON object")
    return data


def manifest_trained_on(model: Path) -> dict | None:
    """What the model was trained on (`trained_on`, which export copies from the checkpoint:
    kind, path, files with their sha256), or None when its manifest does not say (models
    exported before it was recorded)."""
    found = (read_manifest(model) or {}).get("trained_on")
    return found if isinstance(found, dict) else None


def verify_model_file(model: Path) -> str:
    """Return the model's sha256, refusing a file that differs from its manifest."""
    if not model.is_file():
        raise InputDataError(f"{model}: model file not found")
    digest = sha256_file(model)
    manifest = read_manifest(model)
    if manifest is not None and manifest.get("sha256") not in (None, digest):
        raise InputDataError(
            f"{model}: sha256 {digest[:12]} does not match its manifest "
            f"({str(manifest.get('sha256'))[:12]}); the file was changed or corrupted: re-export it"
        )
    return digest
