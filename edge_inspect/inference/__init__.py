"""Inference: the tile ring, the batcher and the scoring backends."""
