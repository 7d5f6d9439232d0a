"""Evaluation of trained models on labelled test data (metrics in pure numpy, no torch)."""
