"""Anomaly networks, their scoring graph and checkpoints (torch: the ``train`` extra), except
``names``, which the torch-free config schema reads."""
