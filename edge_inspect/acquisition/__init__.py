"""Acquisition: sources that deliver strips of camera lines (camera, replay, synthetic)."""
