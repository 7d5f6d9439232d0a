"""edge-inspect: line-scan surface inspection with GANomaly-family anomaly models."""

__version__ = "0.1.0"
