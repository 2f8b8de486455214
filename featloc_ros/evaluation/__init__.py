"""Evaluation helpers shared by tests and benchmarks: dataset loaders and pose metrics."""
