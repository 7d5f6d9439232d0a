"""Training on good tiles only (needs torch: the ``train`` extra). The settings it reads are
``edge_inspect.training_config`` and the tiles come from ``edge_inspect.datasets``; both work
without torch."""
