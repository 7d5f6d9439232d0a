"""Per-family training steps (the loop is generic and asks this table for the step)."""

from __future__ import annotations

from edge_inspect.training.steps.base import AdversarialStep
from edge_inspect.training.steps.ganomaly import GanomalyStep
from edge_inspect.training.steps.skip import SkipStep

__all__ = ["AdversarialStep", "GanomalyStep", "SkipStep", "STEPS"]

STEPS: dict[str, type[AdversarialStep]] = {
    "ganomaly": GanomalyStep,
    "skip_ganomaly": SkipStep,
    "skip_attention": SkipStep,
    "skip_ganomaly_pp": SkipStep,
}
