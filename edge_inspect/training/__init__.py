"""Training on good tiles only. ``config`` and ``datasets`` work without torch; ``loop`` needs it."""

from edge_inspect.training.config import TrainingConfig

__all__ = ["TrainingConfig"]
